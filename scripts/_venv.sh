# Shared by the set-up scripts: make sure the project's virtualenv exists and holds the
# package with the extras given as arguments. Sourced, not run.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${CANDLE_LAB_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "creating virtualenv $VENV" >&2
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi
extras="$(IFS=,; echo "$*")"
target="$ROOT"
[ -n "$extras" ] && target="$ROOT[$extras]"
echo "installing candle-lab${extras:+[$extras]} into $VENV" >&2
"$VENV/bin/python" -m pip install -q -e "$target"
export PATH="$VENV/bin:$PATH"
