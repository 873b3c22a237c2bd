#!/usr/bin/env bash
# Build a local wheelhouse: fastlookup, its dependencies and its build
# requirements, as wheels in .wheelhouse/ (or $1). The Docker test replays the
# Dockerfile's `pip wheel` against it with --no-index, so the test suite needs
# no package index beyond installing its own packages (which this does, once,
# through pip's configured index).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.wheelhouse}
mkdir -p "$out"
build_requires=$(.venv/bin/python - <<'PY'
import tomllib
print(" ".join(tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"]))
PY
)
# shellcheck disable=SC2086  # one word per requirement
.venv/bin/python -m pip wheel -q --wheel-dir "$out" $build_requires .
echo "wheelhouse: $(ls "$out" | wc -l) wheels in $out"
