#!/bin/sh
# Make sure the system programs `make test` needs exist: mosquitto (the broker every firmware test
# talks to) and socat (the pty the deploy tests put mpremote on). Installed from apt when root, else
# named with the command that installs them: a missing one fails set-up instead of skipping tests.
PATH="$PATH:/usr/sbin:/sbin"
missing=""
for pair in mosquitto:mosquitto socat:socat; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing="$missing ${pair#*:}"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "setup: installing$missing from apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || exit 1
else
    echo "setup: missing$missing; install with: sudo apt-get install$missing" >&2
    exit 1
fi
