"""The Panel app: form and monitor state (``forms``, ``state``), charts, views, serving."""
