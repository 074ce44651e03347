"""Open OnDemand: a batch-connect app that starts the dashboard or JupyterLab on a node.

The app (``manifest.yml``, ``form.yml``, ``submit.yml.erb``, ``template/…``,
``view.html.erb``, ``info.md.erb``) is generated from a site profile by
:func:`build_app` (``candle-lab ondemand build --site NAME DEST``), so that the form
offers exactly the profile's partitions, GPU types and limits; regenerate it after
editing the profile. The profile is copied into the app (``template/site_profile.yaml``)
and the session's job checks the form's choices against it with :func:`check_form`
(``candle-lab ondemand check``) before anything starts; ``submit.yml.erb`` refuses
choices outside the profile before anything is submitted.

The session runs behind OnDemand's ``/node/<host>/<port>/`` proxy, protected by a
password generated for the session that the portal's *Connect* button posts to the
login page.

:mod:`~candle_lab.ondemand.form` holds the form's fields and :func:`check_form`;
:mod:`~candle_lab.ondemand.app` makes the app's files from the templates in
``templates/`` (package data, laid out as the app is).
"""

from __future__ import annotations

from candle_lab.ondemand.app import (
    APP_NAME,
    AppFile,
    AppOptions,
    app_files,
    app_options,
    build_app,
    form_data,
    form_yml,
    manifest_yml,
    render_template,
    site_profile_path,
)
from candle_lab.ondemand.form import (
    FIELDS,
    MODES,
    NO_GPU,
    SAFE_PATH,
    SAFE_PATH_TEXT,
    PartitionLimits,
    Session,
    check_form,
    parse_assignments,
    partition_limits,
)

__all__ = [
    "APP_NAME",
    "FIELDS",
    "MODES",
    "NO_GPU",
    "SAFE_PATH",
    "SAFE_PATH_TEXT",
    "AppFile",
    "AppOptions",
    "PartitionLimits",
    "Session",
    "app_files",
    "app_options",
    "build_app",
    "check_form",
    "form_data",
    "form_yml",
    "manifest_yml",
    "parse_assignments",
    "partition_limits",
    "render_template",
    "site_profile_path",
]
