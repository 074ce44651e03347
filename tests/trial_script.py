"""A script model: reads --x (and $CANDLE_LAB_PARAMS), prints IMPROVE_RESULT or misbehaves."""

import argparse
import json
import os
import subprocess
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--x", type=float, required=True)
parser.add_argument("--mode", default="ok")
args, _ = parser.parse_known_args()
with open(os.environ["CANDLE_LAB_PARAMS"]) as f:
    params = json.load(f)
assert params["x"] == args.x
print("training...")
if args.mode == "ok":
    print(f"IMPROVE_RESULT {(args.x - 0.25) ** 2}")
elif args.mode == "file":
    with open(os.path.join(os.environ["CANDLE_LAB_RUN_DIR"], "result.txt"), "w") as f:
        json.dump({"val_loss": args.x, "val_acc": 1 - args.x}, f)
elif args.mode == "garbage":
    print("IMPROVE_RESULT banana")
elif args.mode == "fail":
    print("about to fail", file=sys.stderr)
    sys.exit(3)
elif args.mode == "hang":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.path.join(os.environ["CANDLE_LAB_RUN_DIR"], "child.pid"), "w") as f:
        f.write(str(child.pid))
    time.sleep(120)
