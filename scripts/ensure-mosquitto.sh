#!/bin/sh
# Make sure the Mosquitto broker is installed (Courier's tests and `make run` start it).
set -eu
if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then
    exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Mosquitto with apt-get..." >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto mosquitto-clients >/dev/null
    exit 0
fi
echo "Mosquitto is not installed and cannot be installed automatically (need root and apt-get)." >&2
echo "Install it, e.g. 'sudo apt-get install mosquitto', or 'brew install mosquitto', then retry." >&2
exit 1
