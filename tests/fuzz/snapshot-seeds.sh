#!/bin/sh
# Seeds from real snapshots: boot the test guest with every device khyve has, take checkpoints
# while its drivers run (mode=selftest, then mode=blk), and cut them into inputs for the state
# and snapfile targets.  Needs /dev/kvm, `make all` and `make fuzz-build`.
#
#	tests/fuzz/snapshot-seeds.sh [OUTDIR]	(default build-fuzz/snapseeds; OUTDIR/state/ and
#						OUTDIR/snapfile/ hold the inputs)
#
# What is kept in git (tests/fuzz/corpus/state/, corpus/snapfile/) was made with this script.
set -eu
out=${1:-build-fuzz/snapseeds}
build=${KHYVE_BUILD:-build}
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$out/state" "$out/snapfile"
pid=
truncate -s 8M "$tmp/disk.img"
truncate -s 4M "$tmp/ahci.img"

# snap MODE NAME PATTERN: run the guest in MODE, checkpoint into $tmp/NAME.snap as soon as its
# console shows PATTERN (the drivers are at work then).
snap() {
	"$build/khyve" -c 2 -m 64M -s 0,hostbridge -s 31,lpc -s "3,virtio-blk,$tmp/disk.img" \
		-s 4,virtio-net,slirp -s 5,virtio-rnd -s 6,e1000,slirp -s "7,ahci,hd:$tmp/ahci.img" \
		-s 8,fbuf,tcp=off,w=640,h=480 -l com1,stdio -o "boot.kernel=$build/testguest" \
		-o "boot.cmdline=$1" -o "ctl.socket=$tmp/ctl.sock" fuzzseed >"$tmp/console" 2>&1 &
	pid=$!
	n=0
	until grep -q "$3" "$tmp/console"; do
		n=$((n + 1))
		if [ $n -gt 600 ]; then
			cat "$tmp/console"
			exit 1
		fi
		sleep 0.1
	done
	if ! "$build/khyvectl" --vm=fuzzseed --socket="$tmp/ctl.sock" --checkpoint="$tmp/$2.snap"; then
		cat "$tmp/console"
		exit 1
	fi
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=
	rm -rf "$tmp/state"
	mkdir "$tmp/state"
	FUZZ_SNAPSHOT="$tmp/$2.snap" FUZZ_WRITE_SEEDS="$tmp/state" build-fuzz/fuzz/fuzz_state
	for f in "$tmp/state"/*; do
		mv "$f" "$out/state/$2-$(basename "$f")"
	done
	FUZZ_SNAPSHOT="$tmp/$2.snap" FUZZ_WRITE_SEEDS="$out/snapfile" build-fuzz/fuzz/fuzz_snapfile
	mv "$out/snapfile/snapshot" "$out/snapfile/$2"
}

snap mode=selftest selftest "^ok atkbdc"
snap "mode=blk rering=0" blk "^seq 3$"
ls -l "$out/state" "$out/snapfile"
