"""Run every benchmark and print its figures side by side with the peers.

python -m benchmarks            # full run
python -m benchmarks --quick    # smaller sizes, for a smoke check
python -m benchmarks --only proposal simulate
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import time
from pathlib import Path

SECTIONS = ("dispatch", "proposal", "simulate", "quality", "pareto", "conditional", "scale", "slurm_startup",
            "dashboard", "planner")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (minutes, not tens of minutes)")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--json", type=Path, default=None, help="also write all rows to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    results = {}
    for name in args.only:
        module = importlib.import_module(f"benchmarks.{name}")
        start = time.perf_counter()
        if name == "simulate" and "proposal" in results:
            results[name] = module.main(quick=args.quick, proposal_rows=results["proposal"])
        else:
            results[name] = module.main(quick=args.quick)
        print(f"  ({name}: {time.perf_counter() - start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
