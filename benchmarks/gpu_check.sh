#!/usr/bin/env bash
# One command for a GPU machine with no network: doctor, the test suite, the op benchmarks.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]        (OUTDIR defaults to $OUT)
#
# Needs a python3 that already has torch, triton, pytest, pytest-benchmark, pytest-timeout, ninja
# and numpy; runs the checkout in place (PYTHONPATH=.) and installs nothing. Each step has its own
# timeout and log file in OUTDIR, and a failing step does not stop the next. The whole script stays
# under TOTAL_SECONDS (default 470, under 8 minutes). Exits non-zero if the tests failed.
#
# Environment: GPU_CHECK_PRESET (bench preset, default gpu; smoke for a CPU try-out),
#              TOTAL_SECONDS (overall limit), GPU_CHECK_MEMCHECK=1 (also run the cuda op tests
#              under compute-sanitizer memcheck; give it TOTAL_SECONDS to spare).
set -u

OUTDIR="${1:-${OUT:-}}"
if [ -z "$OUTDIR" ]; then
    echo "usage: bash benchmarks/gpu_check.sh OUTDIR   (or set \$OUT)" >&2
    exit 2
fi
mkdir -p "$OUTDIR" || exit 2
OUTDIR="$(cd "$OUTDIR" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
PRESET="${GPU_CHECK_PRESET:-gpu}"
TOTAL_SECONDS="${TOTAL_SECONDS:-470}"
SECONDS=0
STATUS_LINES=()

# run_step NAME LIMIT_SECONDS LOGFILE COMMAND...: run with a timeout capped by what is left of
# TOTAL_SECONDS, log stdout and stderr, and remember the exit status (124: timed out).
run_step() {
    local name="$1" limit="$2" log="$3"
    shift 3
    local left=$((TOTAL_SECONDS - SECONDS - 5))
    if [ "$limit" -gt "$left" ]; then limit="$left"; fi
    if [ "$limit" -le 0 ]; then
        STATUS_LINES+=("$(printf '%-10s skipped (no time left)' "$name")")
        return 1
    fi
    echo "== $name (timeout ${limit}s) -> $log"
    timeout -k 10 "$limit" "$@" > "$OUTDIR/$log" 2>&1
    local rc=$?
    local note=""
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then note=" (timed out after ${limit}s)"; fi
    STATUS_LINES+=("$(printf '%-10s exit %3d%s  [%s]' "$name" "$rc" "$note" "$log")")
    return "$rc"
}

run_step nvidia-smi 20 nvidia-smi.txt nvidia-smi
# Build the CUDA extension for this GPU first, so that the tests and benchmarks include `cuda`.
run_step build-ext 180 build-ext.log python3 -m stylegan_fast.cli build-ext
run_step doctor 60 doctor.txt python3 -m stylegan_fast.cli doctor
# Triton compiles each kernel specialization on first use: the test step gets the larger share.
run_step tests 200 tests.log python3 -m pytest tests -q --maxfail=20 -p no:cacheprovider \
    --junitxml="$OUTDIR/tests.xml"
TESTS_RC=$?
if [ "${GPU_CHECK_MEMCHECK:-0}" = "1" ]; then
    run_step memcheck 240 memcheck.log compute-sanitizer --tool memcheck --error-exitcode 3 \
        python3 -m pytest tests/ops -q -k "cuda and not build" -p no:cacheprovider
fi
# The bench stops starting new cases after its budget; what it finished is in ops.jsonl.
BUDGET=$((TOTAL_SECONDS - SECONDS - 70))
if [ "$BUDGET" -gt 200 ]; then BUDGET=200; fi
if [ "$BUDGET" -lt 1 ]; then BUDGET=1; fi
run_step bench 260 bench.log python3 -m stylegan_fast.cli bench --preset "$PRESET" \
    --jsonl "$OUTDIR/ops.jsonl" --budget-seconds "$BUDGET"

echo
echo "== summary (${SECONDS}s, results in $OUTDIR)"
printf '%s\n' "${STATUS_LINES[@]}"
if [ -f "$OUTDIR/tests.log" ]; then
    echo "tests: $(grep -E '(passed|failed|error|no tests ran)' "$OUTDIR/tests.log" | tail -n 1)"
fi
if [ -f "$OUTDIR/bench.log" ]; then
    echo
    echo "== benchmark table (tail of bench.log)"
    tail -n 70 "$OUTDIR/bench.log"
fi
if [ "$TESTS_RC" -ne 0 ]; then
    echo "FAILED: the tests exited with status $TESTS_RC"
    exit 1
fi
