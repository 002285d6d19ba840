#!/bin/sh
# Build the khyve test kernel: Debian's linux-source-6.1, `make tinyconfig`, the fragment
# tests/linux/khyve.config, the one-line int3 patch.  The result is cached in build/linux/
# (vmlinux, its .config, a stamp of what it was built from) and not rebuilt while the fragment,
# the patch and the source are unchanged.  6 to 10 minutes on 2 cores.
#
#   tests/linux/build.sh [--force]        (OUT=dir to build elsewhere, JOBS=n)
#   EXTRA_CONFIG=file tests/linux/build.sh  appends another fragment (e.g. rcutorture)
#
# Needs: linux-source-6.1 (Debian) and the kernel's build tools: bc flex bison libelf-dev
# (apt-get install linux-source-6.1 bc flex bison libelf-dev).
set -eu

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
out=${OUT:-$root/build/linux}
tarball=${LINUX_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
jobs=${JOBS:-$(nproc)}
force=${1:-}

if [ ! -r "$tarball" ]; then
	echo "build.sh: $tarball is missing: apt-get install linux-source-6.1 bc flex bison libelf-dev" >&2
	exit 1
fi
for tool in bc flex bison make gcc; do
	command -v $tool >/dev/null 2>&1 || { echo "build.sh: $tool is missing (apt-get install bc flex bison libelf-dev)" >&2; exit 1; }
done

mkdir -p "$out"
stamp=$( (ls -l "$tarball"; cat "$here/khyve.config" "$here/int3-selftest.patch" \
	${EXTRA_CONFIG:+"$EXTRA_CONFIG"}) | sha256sum | cut -d' ' -f1)
if [ "$force" != --force ] && [ -f "$out/vmlinux" ] && [ "$(cat "$out/stamp" 2>/dev/null)" = "$stamp" ]; then
	echo "build.sh: $out/vmlinux is up to date"
	exit 0
fi

src=$out/src
rm -rf "$src" "$out/vmlinux" "$out/stamp"
mkdir -p "$src"
echo "build.sh: unpacking $tarball"
tar xf "$tarball" -C "$src" --strip-components=1
cd "$src"
patch -p1 < "$here/int3-selftest.patch"
make -s tinyconfig
cat "$here/khyve.config" ${EXTRA_CONFIG:+"$EXTRA_CONFIG"} > "$out/fragment.config"
scripts/kconfig/merge_config.sh -m .config "$out/fragment.config" >/dev/null
make -s olddefconfig

# Every option the fragment asks for must have survived olddefconfig (a dependency missing from
# the fragment silently drops an option otherwise).
grep -E '^CONFIG_[A-Za-z0-9_]+=' "$out/fragment.config" | while IFS= read -r line; do
	grep -qxF "$line" .config || { echo "build.sh: $line did not stick" >&2; echo x; }
done > "$out/missing"
if [ -s "$out/missing" ]; then
	echo "build.sh: the fragment does not hold together; fix tests/linux/khyve.config" >&2
	exit 1
fi

echo "build.sh: building vmlinux with $jobs jobs"
# At the lowest priority: make check builds it while the other e2e tests run their guests,
# whose timer checks must not starve.
nice -n 19 make -s -j"$jobs" vmlinux
cp vmlinux "$out/vmlinux.tmp"
cp .config "$out/config"
mv "$out/vmlinux.tmp" "$out/vmlinux"
echo "$stamp" > "$out/stamp"
echo "build.sh: $out/vmlinux"
