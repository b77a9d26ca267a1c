#!/usr/bin/env bash
# One command for a GPU machine with no network: doctor, the test suite, the op and model
# benchmarks and their plot.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]        (OUTDIR defaults to $OUT)
#
# Needs a python3 that already has torch, triton, pytest, pytest-benchmark, pytest-timeout, ninja,
# numpy and matplotlib (for the plot only); runs the checkout in place (PYTHONPATH=.) and installs nothing. Each step has its own
# timeout and log file in OUTDIR, and a failing step does not stop the next. The whole script stays
# under TOTAL_SECONDS (default 470, under 8 minutes). Exits non-zero if the tests failed.
#
# Results in OUTDIR: ops.jsonl, clusters.jsonl, models.jsonl (max_batch.jsonl), bench.png and a
# log per step.
#
# Environment: GPU_CHECK_PRESET (bench preset, default gpu; smoke for a CPU try-out),
#              TOTAL_SECONDS (overall limit), GPU_CHECK_MEMCHECK=1 (also run the cuda op tests
#              under compute-sanitizer memcheck; give it TOTAL_SECONDS to spare),
#              GPU_CHECK_MODEL_ARGS (more `bench --model` flags, e.g. "--resolutions 256
#              --dtypes float32" to spend the model budget on fewer cases),
#              GPU_CHECK_MAX_BATCH=1 (also search the largest 1024 px batch within 16/24 GiB;
#              several minutes: give it TOTAL_SECONDS to spare).
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
# The sm_90 thread-block-cluster kernels (opt-in, STYLEGAN_FAST_CUDA_CLUSTERS=1) against the
# two-sweep kernels at the 256-1024 px layers' shapes: correctness, which path ran, and timings
# (tests/ops/test_cuda_clusters.py, part of the tests above, checks them against ref too).
run_step clusters 150 clusters.log python3 benchmarks/bench_clusters.py \
    --jsonl "$OUTDIR/clusters.jsonl" --reps 10 --warmup 3 --budget-seconds 90
# Each bench stops starting new cases at its --budget-seconds and appends every finished case to
# its JSONL, so a step killed by its timeout still leaves results. What the tests leave (minus 40 s
# for the plot and the summary) is shared: the op bench up to 45% (at most 170 s), the model bench
# (256 px first, then 1024 px) the rest; each step's timeout gives the case in flight 60 s more.
budget_for() {  # budget_for PERCENT MAX: seconds for the next bench, at least 1
    local left=$((TOTAL_SECONDS - SECONDS - 40 - 60))
    local budget=$((left * $1 / 100))
    if [ "$budget" -gt "$2" ]; then budget="$2"; fi
    if [ "$budget" -lt 1 ]; then budget=1; fi
    echo "$budget"
}
BUDGET=$(budget_for 45 170)
run_step bench $((BUDGET + 60)) bench.log python3 -m stylegan_fast.cli bench --preset "$PRESET" \
    --jsonl "$OUTDIR/ops.jsonl" --budget-seconds "$BUDGET"
BUDGET=$(budget_for 100 300)
# shellcheck disable=SC2086  # GPU_CHECK_MODEL_ARGS is a list of flags
run_step models $((BUDGET + 60)) models.log python3 -m stylegan_fast.cli bench --model \
    --preset "$PRESET" --jsonl "$OUTDIR/models.jsonl" --budget-seconds "$BUDGET" \
    ${GPU_CHECK_MODEL_ARGS:-}
if [ "${GPU_CHECK_MAX_BATCH:-0}" = "1" ]; then
    BUDGET=$(budget_for 100 400)
    run_step max-batch $((BUDGET + 60)) max-batch.log python3 -m stylegan_fast.cli bench \
        --max-batch --jsonl "$OUTDIR/max_batch.jsonl" --budget-seconds "$BUDGET"
fi
RESULTS=()
for name in ops models max_batch; do
    if [ -s "$OUTDIR/$name.jsonl" ]; then RESULTS+=(--results "$OUTDIR/$name.jsonl"); fi
done
if [ "${#RESULTS[@]}" -gt 0 ]; then
    run_step plot 30 plot.log python3 -m stylegan_fast.cli bench --plot "$OUTDIR/bench.png" \
        "${RESULTS[@]}"
fi

echo
echo "== summary (${SECONDS}s, results in $OUTDIR)"
printf '%s\n' "${STATUS_LINES[@]}"
if [ -f "$OUTDIR/tests.log" ]; then
    echo "tests: $(grep -E '(passed|failed|error|no tests ran)' "$OUTDIR/tests.log" | tail -n 1)"
fi
if [ -f "$OUTDIR/bench.log" ]; then
    echo
    echo "== op benchmark table (tail of bench.log)"
    tail -n 70 "$OUTDIR/bench.log"
fi
if [ -f "$OUTDIR/clusters.log" ]; then
    echo
    echo "== cluster kernels vs two sweeps (tail of clusters.log)"
    tail -n 52 "$OUTDIR/clusters.log"
fi
for log in models.log max-batch.log; do
    if [ -f "$OUTDIR/$log" ]; then
        echo
        echo "== model benchmark table (tail of $log)"
        tail -n 25 "$OUTDIR/$log"
    fi
done
if [ "$TESTS_RC" -ne 0 ]; then
    echo "FAILED: the tests exited with status $TESTS_RC"
    exit 1
fi
