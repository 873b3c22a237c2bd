#!/usr/bin/env bash
# Install fastlookup on a fresh Debian machine and run the service on its
# embedded defaults: memory cache only, upstream from /etc/resolv.conf, the
# socket at /run/fastlookup/fastlookup.sock. Extra arguments go to
# `fastlookup serve` (e.g. --config /etc/fastlookup/fastlookup.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-system.sh run
bash scripts/venv.sh
exec .venv/bin/fastlookup serve "$@"
