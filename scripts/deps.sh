#!/bin/sh
# Install what building and testing khyve needs, if it is missing (Debian).
set -e
need="gcc make clang-format pkg-config libjson-c-dev libxxhash-dev libcmocka-dev python3 acpica-tools libslirp-dev libglib2.0-dev libsodium-dev iproute2"
# The console: VNC server.
need="$need libvncserver-dev zlib1g-dev console-setup-linux"
# Console tests: VNC clients, pictures, noVNC in a headless browser.
need="$need vncsnapshot imagemagick novnc websockify chromium"
# Fuzzing (make fuzz, make fuzz-smoke): clang and its libFuzzer/sanitizer runtimes.
need="$need clang libclang-rt-dev"
# The sandbox (seccomp filter).
need="$need libseccomp-dev"
# Firmware boot tests: SeaBIOS, GRUB rescue images, boot sectors.
need="$need seabios grub-pc-bin grub-common xorriso mtools nasm"
# Man page checks (tests/e2e/test_cli.py renders khyve.8).
need="$need groff-base"
# Coverage tables (make coverage).
need="$need gcovr"
# The gdb stub's test (tests/e2e/test_gdb.py) drives Debian's gdb.
need="$need gdb"
# The Linux test kernel (tests/linux/build.sh, when no prebuilt image is given): its source and
# the kernel's build tools.
need="$need linux-source-6.1 bc flex bison libelf-dev"
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
# Wait for another apt run instead of failing on its lock (several builds may run at once).
lock=""
command -v flock >/dev/null 2>&1 && lock="flock /tmp/khyve-apt.lock"
$SUDO $lock apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO $lock apt-get -o DPkg::Lock::Timeout=600 install -y -qq $missing >/dev/null
