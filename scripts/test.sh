#!/usr/bin/env bash
# Install everything the test suite runs for real (redis-server, rbldnsd,
# unbound, ucspi-tcp, postfix, the Python deps in .venv) and run pytest.
# Extra arguments go to pytest. Exit status is pytest's, except that
# "no tests collected" (5) is a failure too.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh test
bash scripts/venv.sh test,bench
# Wheels for the Docker test, which builds offline from them (tests/test_docker.py).
bash scripts/wheelhouse.sh .wheelhouse
set +e
.venv/bin/python -m pytest "$@"
rc=$?
set -e
if [ $rc -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit $rc
