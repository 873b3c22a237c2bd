#!/usr/bin/env bash
# Create .venv (if needed) and install fastlookup into it with the given extras.
# Usage: scripts/venv.sh [EXTRAS]   e.g. scripts/venv.sh test,bench
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
spec="."
[ -n "${1:-}" ] && spec=".[${1}]"
.venv/bin/python -m pip install -q -e "$spec"
