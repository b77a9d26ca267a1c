#!/usr/bin/env bash
# One command for a GPU machine with no network: doctor, the test suite, the host overhead of
# every op, the op and model benchmarks and their plot.
#
#   bash benchmarks/gpu_check.sh [OUTDIR]        (OUTDIR defaults to $OUT)
#
# Needs a python3 that already has torch, triton, pytest, pytest-benchmark, pytest-timeout, ninja,
# numpy and matplotlib (for the plot only); runs the checkout in place (PYTHONPATH=.) and installs nothing. Each step has its own
# timeout and log file in OUTDIR, and a failing step does not stop the next. The whole script stays
# under TOTAL_SECONDS (default 470, under 8 minutes). Exits non-zero if the tests failed.
#
# Results in OUTDIR: overhead.jsonl (`bench --overhead`: host time per call of every op on a tiny
# tensor, per backend, against eager and through the torch.library custom op), ops.jsonl (each
# record with the call time `median_ms` and the kernel time `kernel_ms` from a CUDA-graph replay,
# and GB/s and % of copy bandwidth from each: the tables' "ms"/"%peak" and "kern ms"/"k%peak"
# columns; docs/benchmarks.md), clusters.jsonl, models.jsonl (max_batch.jsonl, r1_step.jsonl),
# bench.png and a log per step.
#
# Environment: GPU_CHECK_PRESET (bench preset, default gpu; smoke for a CPU try-out),
#              TOTAL_SECONDS (overall limit), GPU_CHECK_WORKERS (pytest-xdist workers for the
#              tests when xdist is installed, default 8: Triton compiles each specialization on
#              first use, so one process spends minutes compiling), GPU_CHECK_MEMCHECK=1 (also run
#              the cuda backend's op tests under compute-sanitizer memcheck, beside the tests,
#              for at most GPU_CHECK_MEMCHECK_SECONDS, default 240), GPU_CHECK_CLUSTER_SECONDS
#              (the cluster benchmark's budget, default 90), GPU_CHECK_OP_ARGS (more flags for
#              the op bench of bias_act, noise_inject and adain), GPU_CHECK_FLRELU_ARGS (more
#              flags for the filtered_lrelu op bench, e.g. "--dtypes bfloat16 --modes fwd+bwd"),
#              GPU_CHECK_MODEL_ARGS (more `bench --model` flags, e.g. "--resolutions 256
#              --dtypes float32" to spend the model budget on fewer cases),
#              GPU_CHECK_TEST_SECONDS (the test step's limit, default 270: the whole suite took
#              187 s on 14 workers on an H200), GPU_CHECK_MAX_BATCH=1 (also search the largest 1024 px batch within 16/24 GiB;
#              several minutes: give it TOTAL_SECONDS to spare), GPU_CHECK_MAX_BATCH_ARGS (its
#              `bench --max-batch` flags, default "--dtypes bfloat16"), GPU_CHECK_SKIP (step
#              names to skip, e.g. "clusters bench-epilogue" for a rerun that has them already),
#              GPU_CHECK_R1=1 (what R1 costs: benchmarks/r1_step.py, the training step and D's R1
#              step at 256 px, batch 16, bfloat16, official networks, every backend and each on
#              PyTorch's convolutions (X+F.conv2d), before the op benches; and the model bench
#              with GPU_CHECK_R1_MODEL_ARGS, default "--r1-interval 1,16 --conv-census": R1
#              every step and lazy every 16th, and every convolution's kernel),
#              GPU_CHECK_R1_ARGS (more r1_step.py flags, e.g. "--resolutions 256,1024").
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
    if [[ " ${GPU_CHECK_SKIP:-} " == *" $name "* ]]; then
        STATUS_LINES+=("$(printf '%-10s skipped (GPU_CHECK_SKIP)' "$name")")
        return 0
    fi
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

# run_step_in_background NAME LIMIT_SECONDS LOGFILE COMMAND...: run_step in a background job; its
# status line is collected by wait_for_background_steps.
BACKGROUND_STATUS="$OUTDIR/.background-status"
: > "$BACKGROUND_STATUS"
run_step_in_background() {
    (
        STATUS_LINES=()
        run_step "$@"
        printf '%s\n' "${STATUS_LINES[@]}" >> "$BACKGROUND_STATUS"
    ) &
}
wait_for_background_steps() {
    wait
    local line
    while IFS= read -r line; do STATUS_LINES+=("$line"); done < "$BACKGROUND_STATUS"
    : > "$BACKGROUND_STATUS"
}

run_step nvidia-smi 20 nvidia-smi.txt nvidia-smi
# Build the CUDA extension for this GPU first, so that the tests and benchmarks include `cuda`.
run_step build-ext 180 build-ext.log python3 -m stylegan_fast.cli build-ext
run_step doctor 60 doctor.txt python3 -m stylegan_fast.cli doctor
# Triton compiles each kernel specialization on first use: the tests run on several workers when
# pytest-xdist is there. The memcheck run (the cuda backend's op tests and the cluster kernels under
# compute-sanitizer) runs beside them: both check correctness, neither is timed.
XDIST=() MEMCHECK_XDIST=()
if python3 -c "import xdist" 2>/dev/null; then
    XDIST=(-n "${GPU_CHECK_WORKERS:-8}") MEMCHECK_XDIST=(-n 4)
fi
SANITIZER="$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer \
    /opt/nvidia/*/compute-sanitizer/compute-sanitizer 2>/dev/null | head -n 1)"
if [ "${GPU_CHECK_MEMCHECK:-0}" = "1" ]; then
    run_step_in_background memcheck "${GPU_CHECK_MEMCHECK_SECONDS:-240}" memcheck.log "${SANITIZER:-compute-sanitizer}" \
        --tool memcheck \
        --error-exitcode 3 python3 -m pytest tests/ops -q -p no:cacheprovider \
        -k "(cuda-cuda or clusters) and not build" "${MEMCHECK_XDIST[@]}"
fi
run_step tests "${GPU_CHECK_TEST_SECONDS:-270}" tests.log python3 -m pytest tests -q --maxfail=20 -p no:cacheprovider \
    "${XDIST[@]}" --junitxml="$OUTDIR/tests.xml"
TESTS_RC=$?
wait_for_background_steps
# The sm_90 thread-block-cluster kernels (opt-in, STYLEGAN_FAST_CUDA_CLUSTERS=1) against the
# two-sweep kernels at the 256-1024 px layers' shapes: correctness, which path ran, and timings
# (tests/ops/test_cuda_clusters.py, part of the tests above, checks them against ref too).
run_step clusters $((${GPU_CHECK_CLUSTER_SECONDS:-90} + 60)) clusters.log \
    python3 benchmarks/bench_clusters.py --jsonl "$OUTDIR/clusters.jsonl" --reps 10 --warmup 3 \
    --budget-seconds "${GPU_CHECK_CLUSTER_SECONDS:-90}"
# Each bench stops starting new cases at its --budget-seconds and appends every finished case to
# its JSONL, so a step killed by its timeout still leaves results. What the tests leave (minus 40 s
# for the plot and the summary) is shared: the fused epilogue's op bench first (the project's
# central claim, every backend, up to 30%, at most 150 s), the resampling ops (up to 20%, at most
# 90 s), filtered_lrelu (up to 20%, at most 90 s), the other ops (up to 40% of what is left, at
# most 150 s; GPU_CHECK_OP_ARGS narrows them, e.g. "--backends eager,triton,cuda"), then the model
# bench (256 px first, then 1024 px) the rest; each step's timeout gives the case in flight 60 s
# more.
budget_for() {  # budget_for PERCENT MAX: seconds for the next bench, at least 1
    local left=$((TOTAL_SECONDS - SECONDS - 40 - 60))
    local budget=$((left * $1 / 100))
    if [ "$budget" -gt "$2" ]; then budget="$2"; fi
    if [ "$budget" -lt 1 ]; then budget=1; fi
    echo "$budget"
}
MODEL_R1_ARGS=""
if [ "${GPU_CHECK_R1:-0}" = "1" ]; then
    # What R1 costs, asked for first: each backend against eager, and against itself on
    # PyTorch's convolutions (whose double backward builds feature-map-sized kernels).
    BUDGET=$(budget_for 30 150)
    # shellcheck disable=SC2086  # GPU_CHECK_R1_ARGS is a list of flags
    run_step r1-step $((BUDGET + 60)) r1-step.log python3 benchmarks/r1_step.py \
        --resolutions 256 --batch 16 --channel-max 512 --dtype bfloat16 --device cuda \
        --jsonl "$OUTDIR/r1_step.jsonl" --budget-seconds "$BUDGET" ${GPU_CHECK_R1_ARGS:-}
    MODEL_R1_ARGS="${GPU_CHECK_R1_MODEL_ARGS:---r1-interval 1,16 --conv-census}"
fi
# Host overhead per call (issue 32): every op on a 1x2x4x4 tensor, fwd and fwd+bwd, eager against
# the fused backends and their custom-op path; about 20-40 s.
run_step overhead 60 overhead.log python3 -m stylegan_fast.cli bench --overhead --device cuda \
    --jsonl "$OUTDIR/overhead.jsonl" --budget-seconds 45
BUDGET=$(budget_for 30 150)
run_step bench-epilogue $((BUDGET + 60)) bench-epilogue.log python3 -m stylegan_fast.cli bench \
    --preset "$PRESET" --ops style_epilogue --jsonl "$OUTDIR/ops.jsonl" --budget-seconds "$BUDGET"
BUDGET=$(budget_for 20 90)
# The resampling ops (upfirdn2d's upsample2d, downsample2d, filter2d at StyleGAN2's shapes) against
# their conv-based definition: they decide whether stylegan_fast.nn's blur and box downsampling
# should stay on upfirdn2d's kernels on a GPU.
run_step bench-resample $((BUDGET + 60)) bench-resample.log python3 -m stylegan_fast.cli bench \
    --preset "$PRESET" --ops upsample2d,downsample2d,filter2d --jsonl "$OUTDIR/ops.jsonl" \
    --budget-seconds "$BUDGET"
BUDGET=$(budget_for 20 90)
# filtered_lrelu (StyleGAN3's op) at StyleGAN3-T/R layer shapes at 256 px (T: up 2 / down 2 with
# 12-tap filters, T up: up 4 / down 2 with 24 / 12 taps, R: a radial 12x12 down filter, ToRGB),
# against its plain definition (the upsampled tensor at full size) and its torch.compile.
# shellcheck disable=SC2086  # GPU_CHECK_FLRELU_ARGS is a list of flags
run_step bench-flrelu $((BUDGET + 60)) bench-flrelu.log python3 -m stylegan_fast.cli bench \
    --preset "$PRESET" --ops filtered_lrelu --jsonl "$OUTDIR/ops.jsonl" \
    --budget-seconds "$BUDGET" ${GPU_CHECK_FLRELU_ARGS:-}
BUDGET=$(budget_for 40 150)
# shellcheck disable=SC2086  # GPU_CHECK_OP_ARGS is a list of flags
run_step bench $((BUDGET + 60)) bench.log python3 -m stylegan_fast.cli bench --preset "$PRESET" \
    --ops bias_act,noise_inject,adain --jsonl "$OUTDIR/ops.jsonl" --budget-seconds "$BUDGET" \
    ${GPU_CHECK_OP_ARGS:-}
BUDGET=$(budget_for 100 300)
# shellcheck disable=SC2086  # GPU_CHECK_MODEL_ARGS, MODEL_R1_ARGS are lists of flags
run_step models $((BUDGET + 60)) models.log python3 -m stylegan_fast.cli bench --model \
    --preset "$PRESET" --jsonl "$OUTDIR/models.jsonl" --budget-seconds "$BUDGET" \
    ${MODEL_R1_ARGS} ${GPU_CHECK_MODEL_ARGS:-}
if [ "${GPU_CHECK_MAX_BATCH:-0}" = "1" ]; then
    BUDGET=$(budget_for 100 400)
    # shellcheck disable=SC2086  # GPU_CHECK_MAX_BATCH_ARGS is a list of flags
    run_step max-batch $((BUDGET + 60)) max-batch.log python3 -m stylegan_fast.cli bench \
        --max-batch --jsonl "$OUTDIR/max_batch.jsonl" --budget-seconds "$BUDGET" \
        ${GPU_CHECK_MAX_BATCH_ARGS:---dtypes bfloat16}
fi
RESULTS=()
for name in ops models max_batch; do
    if [ -s "$OUTDIR/$name.jsonl" ]; then RESULTS+=(--results "$OUTDIR/$name.jsonl"); fi
done
if [ "${#RESULTS[@]}" -gt 0 ]; then
    run_step plot 30 plot.log python3 -m stylegan_fast.cli bench --plot "$OUTDIR/bench.png" \
        "${RESULTS[@]}"
fi

rm -f "$BACKGROUND_STATUS"
echo
echo "== summary (${SECONDS}s, results in $OUTDIR)"
printf '%s\n' "${STATUS_LINES[@]}"
if [ -f "$OUTDIR/tests.log" ]; then
    echo "tests: $(grep -E '(passed|failed|error|no tests ran)' "$OUTDIR/tests.log" | tail -n 1)"
fi
if [ -f "$OUTDIR/overhead.log" ]; then
    echo
    echo "== host overhead per call (tail of overhead.log)"
    sed -n '/^host time vs eager/,$p' "$OUTDIR/overhead.log" | tail -n 30
fi
for log in bench-epilogue.log bench-resample.log bench-flrelu.log bench.log; do
    if [ -f "$OUTDIR/$log" ]; then
        echo
        echo "== op benchmark table (tail of $log)"
        tail -n 40 "$OUTDIR/$log"
    fi
done
if [ -f "$OUTDIR/clusters.log" ]; then
    echo
    echo "== cluster kernels vs two sweeps (tail of clusters.log)"
    tail -n 52 "$OUTDIR/clusters.log"
fi
if [ -f "$OUTDIR/r1-step.log" ]; then
    echo
    echo "== R1 steps per backend, and on PyTorch's convolutions (tail of r1-step.log)"
    tail -n 20 "$OUTDIR/r1-step.log"
fi
for log in models.log max-batch.log; do
    if [ -f "$OUTDIR/$log" ]; then
        echo
        echo "== model benchmark table (tail of $log)"
        # With --conv-census the census tables follow the model table: show both.
        if [ "$log" = models.log ] && grep -q "^convolution census" "$OUTDIR/$log"; then
            sed '/^convolution census/,$d' "$OUTDIR/$log" | tail -n 40
            sed -n '/^convolution census/,$p' "$OUTDIR/$log" | tail -n 150
        else
            tail -n 25 "$OUTDIR/$log"
        fi
    fi
done
if [ "$TESTS_RC" -ne 0 ]; then
    echo "FAILED: the tests exited with status $TESTS_RC"
    exit 1
fi
