#!/bin/sh
# Make sure the system programs `make test` needs exist: mosquitto (the broker every firmware test talks
# to), socat (the pty the deploy tests put mpremote on) and tmux (the terminal the demo test watches).
# Installed from apt when root, else named with the command that installs them: a missing one fails
# set-up instead of skipping tests. Each Debian package is named like its program.
PATH="$PATH:/usr/sbin:/sbin"
missing=""
for program in mosquitto socat tmux; do
    command -v "$program" >/dev/null 2>&1 || missing="$missing $program"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "setup: installing$missing from apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || exit 1
else
    echo "setup: missing$missing; install with: sudo apt-get install$missing" >&2
    exit 1
fi
