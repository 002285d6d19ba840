#!/bin/sh
# Run libFuzzer targets: tests/fuzz/run.sh SECONDS BUILD_DIR TARGET_BINARY...
#
# For each target: write its own seeds (FUZZ_WRITE_SEEDS) into BUILD_DIR/seeds/NAME, replay
# the regression corpus tests/fuzz/corpus/NAME one input at a time, then fuzz for SECONDS
# from a fresh working corpus (BUILD_DIR/corpus/NAME, new inputs go there) plus the
# regression corpus and the seeds.  One line per target: execs/s, edges, corpus size,
# crashes (and slow inputs); a crashing, leaking, hanging or out-of-memory input is saved under
# BUILD_DIR/crashes/NAME/ and makes the script exit 1 after every target ran.
set -u
secs=$1
out=$2
shift 2
fail=0
for bin in "$@"; do
	name=$(basename "$bin")
	name=${name#fuzz_}
	reg=tests/fuzz/corpus/$name
	seeds=$out/seeds/$name
	work=$out/corpus/$name
	crashes=$out/crashes/$name
	log=$out/logs/$name.log
	rm -rf "$seeds" "$work" "$crashes"
	mkdir -p "$seeds" "$work" "$crashes" "$out/logs"
	if ! FUZZ_WRITE_SEEDS=$seeds "$bin" >"$log" 2>&1; then
		echo "fuzz $name: writing the seeds failed:"
		tail -n 20 "$log"
		fail=1
		continue
	fi
	# Every regression input on its own first: a fixed crash that comes back fails here,
	# with the input's name in the log.
	if [ -d "$reg" ] && [ -n "$(ls -A "$reg")" ] &&
	    ! "$bin" -artifact_prefix="$crashes/" "$reg"/* >>"$log" 2>&1; then
		echo "fuzz $name: a regression input fails:"
		grep -E 'Running:|ERROR|SUMMARY|check failed' "$log" | tail -n 10
		fail=1
		continue
	fi
	"$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=20 -rss_limit_mb=2048 \
		-artifact_prefix="$crashes/" "$work" $([ -d "$reg" ] && echo "$reg") "$seeds" \
		>>"$log" 2>&1
	rc=$?
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
	# The last status line ("#N DONE cov: E ft: F corp: C/S ...") has the coverage.
	cov=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.* cov: \([0-9]*\).*/\1/p')
	ft=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
	corp=$(find "$work" "$seeds" $([ -d "$reg" ] && echo "$reg") -type f | wc -l)
	# libFuzzer's slow-unit-* files are inputs that took over 10 s (on a loaded machine, a
	# large but legal one can): reported, not failed; a hang is a timeout-* (-timeout).
	nslow=$(ls "$crashes" | grep -c '^slow-unit-')
	ncrash=$(ls "$crashes" | grep -vc '^slow-unit-')
	[ "$rc" -ne 0 ] && [ "$ncrash" -eq 0 ] && ncrash=1
	line="fuzz $name: ${eps:-?} execs/s, ${cov:-?} edges (${ft:-?} features), $corp inputs in corpus, $ncrash crashes"
	[ "$nslow" -ne 0 ] && line="$line, $nslow slow inputs (over 10 s) in $crashes"
	echo "$line"
	if [ "$ncrash" -ne 0 ]; then
		fail=1
		grep -E 'ERROR|SUMMARY|check failed|Test unit written' "$log" | head -n 10
	fi
done
[ "$fail" -eq 0 ] && echo "fuzz: ok ($# targets, ${secs}s each)"
exit $fail
