#!/usr/bin/env bash
# Install the Debian packages fastlookup's tests and benchmarks run for real:
# redis-server, rbldnsd, unbound, ucspi-tcp (tcpserver, rblsmtpd), postfix,
# python3-venv. No package may start a system-wide daemon on a
# standard port, so a temporary policy-rc.d refuses every start while we install.
set -euo pipefail

# "run": what the service needs (Python and venv); "test" (default): everything
# the tests and the benchmark harness start for real.
RUN_PKGS=(python3 python3-venv python3-pip)
# nsd: a real primary for the AXFR/IXFR mirror tests; socat: the docs' "Try it" probes;
# libidn12 libgnutls-dane0 libdb5.3 libnsl2 libpcre2-8-0: libraries of the unpacked Exim.
TEST_PKGS=(python3-dev gcc redis-server redis-tools rbldnsd unbound ucspi-tcp postfix procps iproute2
           nsd socat libidn12 libgnutls-dane0 libdb5.3 libnsl2 libpcre2-8-0)
case "${1:-test}" in
    run) PKGS=("${RUN_PKGS[@]}") ;;
    test) PKGS=("${RUN_PKGS[@]}" "${TEST_PKGS[@]}") ;;
    *) echo "usage: $0 [run|test]" >&2; exit 2 ;;
esac

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
unpack_exim() {
    # Exim is unpacked, not installed (it conflicts with postfix): see unpack-exim.sh.
    if [ "${1:-test}" = test ]; then
        $SUDO bash "$(dirname "$0")/unpack-exim.sh" >/dev/null
    fi
}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if [ ${#missing[@]} -eq 0 ]; then
    unpack_exim "${1:-test}"
    exit 0
fi

policy=/usr/sbin/policy-rc.d
had_policy=0
[ -e "$policy" ] && had_policy=1
if [ $had_policy -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
    $SUDO chmod 755 "$policy"
    trap '$SUDO rm -f "$policy"' EXIT
fi

export DEBIAN_FRONTEND=noninteractive
# postfix asks for a mailer type; "No configuration" installs it without a running MTA.
echo "postfix postfix/main_mailer_type select No configuration" | $SUDO debconf-set-selections
APT=($SUDO apt-get -y -q -o DPkg::Lock::Timeout=600 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
"${APT[@]}" install --no-install-recommends "${missing[@]}" || {
    "${APT[@]}" update
    "${APT[@]}" install --no-install-recommends "${missing[@]}"
}
unpack_exim "${1:-test}"
