#!/usr/bin/env bash
# Unpack Debian's Exim (exim4-daemon-light) into /opt/fastlookup-test/exim for the
# tests: Debian's exim4 packages conflict with postfix (both provide
# mail-transport-agent), so Exim is not installed, only unpacked. Its binary runs
# `exim4 -C FILE -bh IP` (a whole SMTP session on stdin/stdout, ACLs really run)
# once the Debian-exim system user exists; its libraries come from
# install-system.sh's package list. Idempotent; prints the binary's path.
set -euo pipefail
DEST=${FASTLOOKUP_EXIM_DIR:-/opt/fastlookup-test/exim}
BIN="$DEST/usr/sbin/exim4"
if [ ! -x "$BIN" ]; then
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    chmod 755 "$tmp"   # apt's _apt user downloads into it
    (cd "$tmp" && apt-get -q -o DPkg::Lock::Timeout=600 download exim4-daemon-light >/dev/null 2>&1) || {
        apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
        (cd "$tmp" && apt-get -q -o DPkg::Lock::Timeout=600 download exim4-daemon-light >/dev/null)
    }
    mkdir -p "$DEST"
    dpkg-deb -x "$tmp"/exim4-daemon-light_*.deb "$DEST"
fi
getent group Debian-exim >/dev/null || groupadd --system Debian-exim
getent passwd Debian-exim >/dev/null || useradd --system --gid Debian-exim \
    --home-dir /var/spool/exim4 --no-create-home --shell /usr/sbin/nologin Debian-exim
"$BIN" -C /dev/null -bV >/dev/null 2>&1 || { echo "unpacked exim at $BIN does not run: $("$BIN" -C /dev/null -bV 2>&1 | head -1)" >&2; exit 1; }
echo "$BIN"
