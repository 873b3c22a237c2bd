#!/bin/sh
# Apply the mounted main.cf snippet with postconf, then run Postfix in the
# foreground (Postfix >= 3.3), logging to stdout.
set -eu
if [ -r /etc/postfix/fastlookup.cf ]; then
    sed -e '/^[[:space:]]*#/d' -e '/^[[:space:]]*$/d' /etc/postfix/fastlookup.cf |
        while IFS= read -r line; do postconf -e "$line"; done
fi
postconf -e "myhostname = $(hostname -f 2>/dev/null || hostname)"
exec postfix start-fg
