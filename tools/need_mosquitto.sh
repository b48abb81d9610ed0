#!/bin/sh
# Make sure a mosquitto binary exists: install it from apt when root, else say how.
PATH="$PATH:/usr/sbin:/sbin"
command -v mosquitto >/dev/null 2>&1 && exit 0
if [ "$(id -u)" = 0 ]; then
    echo "setup: installing mosquitto from apt"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null || exit 1
else
    echo "setup: mosquitto is missing; install it with: sudo apt-get install mosquitto" >&2
    exit 1
fi
