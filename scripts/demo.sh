#!/bin/bash
# The main job: boot the test guest, checkpoint it while it runs, suspend it, restore it, and
# show that its counter continues with no gap and no repeat.
set -euo pipefail
cd "$(dirname "$0")/.."
B=build
dir=$(mktemp -d /tmp/khyve-demo.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]:-}"; do [ -n "$p" ] && kill -9 "$p" 2>/dev/null || true; done
	rm -rf "$dir"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
seqs() { grep -a '^seq ' "$1" | tail -n "${2:-3}" | tr '\n' ' '; echo; }
wait_seq() {	# FILE N: wait until FILE shows at least N seq lines
	for _ in $(seq 600); do
		local n
		n=$(grep -ac '^seq ' "$1" 2>/dev/null || true)
		[ "${n:-0}" -ge "$2" ] && return 0
		sleep 0.2
	done
	echo "demo: timed out waiting for the guest; console:" >&2; tail -5 "$1" >&2; exit 1
}

if [ ! -w /dev/kvm ]; then
	echo "demo: /dev/kvm is missing or not writable: khyve needs KVM" >&2
	exit 1
fi

say "1. the test guest checks every platform device on 2 vCPUs (mode=selftest)"
set +e
$B/khyve -c 2 -m 256M -s 0,hostbridge -s 31,lpc -l com1,stdio -o boot.kernel=$B/testguest \
	-o boot.cmdline=mode=selftest -o ctl.socket=off selftest </dev/null | grep -a -E 'TESTGUEST|^ok'
status=${PIPESTATUS[0]}
set -e
echo "khyve exited with status $status (1 = the guest powered off)"

say "2. boot the counter guest on 2 vCPUs (mode=counter)"
$B/khyve -c 2 -m 512M -s 0,hostbridge -s 31,lpc -l com1,file:$dir/run1.log \
	-o boot.kernel=$B/testguest -o boot.cmdline="mode=counter mem=64M" \
	-o ctl.socket=$dir/demo.sock demo &
pids+=($!)
wait_seq $dir/run1.log 5
echo "guest says: $(seqs $dir/run1.log)"

say "3. checkpoint it while it runs"
$B/khyvectl --vm=demo --socket=$dir/demo.sock --checkpoint=$dir/checkpoint.snap
n=$(grep -ac '^seq ' $dir/run1.log)
wait_seq $dir/run1.log $((n + 3))
echo "still running: $(seqs $dir/run1.log)"

say "4. suspend it: state to a file, khyve exits"
$B/khyvectl --vm=demo --socket=$dir/demo.sock --suspend=$dir/suspend.snap
wait "${pids[0]}" && echo "khyve exited with status $?"
last=$(grep -a '^seq ' $dir/run1.log | tail -1)
echo "last line before suspend: $last"
$B/khyvectl snapshot verify $dir/suspend.snap
echo "file size $(du -h --apparent-size $dir/suspend.snap | cut -f1), on disk $(du -h $dir/suspend.snap | cut -f1) (sparse: untouched memory is not stored)"

say "5. restore the suspended VM: the counter continues"
$B/khyve -r $dir/suspend.snap -l com1,file:$dir/run2.log -o ctl.socket=$dir/demo2.sock demo &
pids+=($!)
wait_seq $dir/run2.log 3
echo "restored guest says: $(seqs $dir/run2.log 3)"
python3 - "$dir/run1.log" "$dir/run2.log" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read() + open(sys.argv[2], "rb").read()
s = [int(m.group(1)) for m in re.finditer(rb"^seq (\d+)$", data, re.M)]
bad = [(a, b) for a, b in zip(s, s[1:]) if b != a + 1]
print("seq 1..%d across suspend and restore: %s" % (s[-1], "no gap, no repeat" if not bad else "BROKEN %r" % bad[:3]))
sys.exit(1 if bad else 0)
PY
$B/khyvectl --vm=demo --socket=$dir/demo2.sock --status

say "6. restore the checkpoint taken in step 3 too: it resumes from that moment"
$B/khyve -r $dir/checkpoint.snap -l com1,file:$dir/run3.log -o ctl.socket=$dir/demo3.sock demo3 &
pids+=($!)
wait_seq $dir/run3.log 3
echo "checkpoint restored, guest says: $(seqs $dir/run3.log 3)"
echo
echo "demo: done"
