#!/bin/sh
# Install what building and testing khyve needs, if it is missing (Debian).
set -e
need="gcc make clang-format pkg-config libjson-c-dev libxxhash-dev libcmocka-dev python3 acpica-tools libslirp-dev libglib2.0-dev"
missing=""
for p in $need; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "khyve: installing:$missing"
if [ "$(id -u)" != 0 ]; then
	SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq $missing >/dev/null
