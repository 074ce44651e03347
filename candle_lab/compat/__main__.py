"""Run a CANDLE benchmark script unchanged: ``python -m candle_lab.compat SCRIPT [ARGS...]``.

``import candle`` in the script (and in the modules it imports) gives candle_lab's
compatibility subset when no real CANDLE library is installed. The script runs as
``__main__`` with its own folder first on ``sys.path`` and ``ARGS`` as its command line.
"""

from __future__ import annotations

import logging
import os
import runpy
import sys
from collections.abc import Sequence

from candle_lab.compat import install_candle


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stderr.write(__doc__ or "")
        return 0 if args else 2
    script = args[0]
    if not os.path.isfile(script):
        sys.stderr.write(f"candle_lab.compat: no such script: {script}\n")
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    subset = install_candle()
    logging.getLogger("candle_lab.compat").info(
        "import candle: %s", "candle_lab's compatibility subset" if subset else "the installed CANDLE library"
    )
    sys.argv = [script, *args[1:]]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")
    return 0


if __name__ == "__main__":
    sys.exit(main())
