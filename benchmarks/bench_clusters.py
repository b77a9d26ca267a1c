"""The cuda backend's sm_90 thread-block-cluster kernels against its two-sweep kernels.

For ``style_epilogue`` at the high-resolution layers' shapes, in float32 and bfloat16, NCHW and
channels_last, forward and forward+backward, each case

* runs both paths on the same inputs (explicit noise map) and checks each against a float64
  evaluation of the op's definition, and the cluster path against the two-sweep path;
* records which kernels ran (torch.profiler), so a cluster launch that was not possible (and fell
  back to the two-sweep kernels) shows up as ``cluster_kernel_ran: false``, not as a tie;
* times both (CUDA events, median after warm-up) and reports ms, GB/s of the op's minimum traffic,
  % of the copy bandwidth measured in the same run, and the speedup of clusters over two sweeps.

    python benchmarks/bench_clusters.py [--jsonl FILE] [--reps 30] [--warmup 5]
                                        [--budget-seconds S]

Needs a CUDA GPU and the cuda backend (``stylegan-fast build-ext`` first). The cluster kernels are
chosen by ``STYLEGAN_FAST_CUDA_CLUSTERS=1``, read at each launch: this script sets it per path.
Exits 1 if a case is wrong, 0 otherwise (also where clusters are not possible: see the records).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time

import torch

from stylegan_fast import ops
from stylegan_fast.bench.op_cases import Case, make_inputs, min_bytes, op_function
from stylegan_fast.bench.timing import copy_bandwidth_gbps, synchronize, time_reps_ms

ENV_VAR = "STYLEGAN_FAST_CUDA_CLUSTERS"
SHAPES = ((4, 64, 256, 256), (4, 32, 512, 512), (4, 16, 1024, 1024))
DTYPES = ("float32", "bfloat16")
LAYOUTS = ("NCHW", "channels_last")
MODES = ("fwd", "fwd+bwd")
# Largest error against the float64 definition, relative to its largest magnitude.
TOLERANCE = {"float32": 1e-4, "bfloat16": 2e-2}


@contextlib.contextmanager
def clusters(on: bool):
    """Run the block with the cluster kernels requested (on) or not."""
    old = os.environ.get(ENV_VAR)
    os.environ[ENV_VAR] = "1" if on else "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


def outputs(fn, inputs, dy):
    """The op's output and, when it has grad inputs, their gradients (float64 copies)."""
    for t in inputs.grad_inputs.values():
        t.grad = None
    y = fn(**inputs.kwargs)
    result = [y.detach().double()]
    if inputs.grad_inputs:
        grads = torch.autograd.grad(y, list(inputs.grad_inputs.values()), dy)
        result += [g.double() for g in grads]
    return result


def reference_outputs(inputs, dy):
    """The same quantities from the op's definition evaluated in float64."""
    kwargs = {k: (v.detach().double().requires_grad_(k in inputs.grad_inputs)
                  if isinstance(v, torch.Tensor) else v) for k, v in inputs.kwargs.items()}
    y = ops.style_epilogue_reference(**kwargs)
    result = [y.detach()]
    if inputs.grad_inputs:
        result += list(torch.autograd.grad(y, [kwargs[k] for k in inputs.grad_inputs],
                                           dy.double()))
    return result


def relative_error(got: list, want: list) -> float:
    return max(((g - w).abs().max() / w.abs().max().clamp_min(1e-30)).item()
               for g, w in zip(got, want))


def kernels_run(step) -> set:
    """Names of the CUDA kernels one call of ``step`` launches."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return {event.key for event in prof.key_averages()}


def run_case(shape, dtype, layout, mode, reps, warmup, copy_gbps) -> list[dict]:
    case = Case("style_epilogue", "cuda", dtype, shape, mode, "cuda")
    inputs = make_inputs(case, explicit_noise=True, channels_last=layout == "channels_last")
    fn = op_function("style_epilogue", "cuda")
    dy = torch.randn_like(inputs.x)
    want = reference_outputs(inputs, dy)
    kwargs = inputs.kwargs

    def step():
        y = fn(**kwargs)
        if inputs.grad_inputs:
            y.backward(dy)

    def reset():
        for t in inputs.grad_inputs.values():
            t.grad = None

    records, results = [], {}
    for on in (False, True):
        with clusters(on):
            got = outputs(fn, inputs, dy)
            names = kernels_run(step)
            median_ms = statistics.median(time_reps_ms(step, reset, "cuda", warmup, reps))
        results[on] = got
        gbps = min_bytes(inputs, mode) / (median_ms * 1e-3) / 1e9
        records.append(dict(
            op="style_epilogue", backend="cuda", path="clusters" if on else "two-sweep",
            dtype=dtype, layout=layout, shape="x".join(map(str, shape)), mode=mode,
            median_ms=median_ms, gbps=gbps, pct_peak_bw=100 * gbps / copy_gbps,
            cluster_kernel_ran=any("cluster_kernel" in name for name in names),
            error_vs_float64=relative_error(got, want)))
    records[1]["error_vs_two_sweep"] = relative_error(results[True], results[False])
    records[1]["speedup_vs_two_sweep"] = records[0]["median_ms"] / records[1]["median_ms"]
    for record in records:
        record["ok"] = record["error_vs_float64"] <= TOLERANCE[dtype]
    return records


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jsonl", help="append one JSON record per path and case")
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--budget-seconds", type=float, default=float("inf"),
                        help="start no new case after this many seconds")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench_clusters: needs a CUDA GPU", file=sys.stderr)
        return 2
    status = ops.available_backends("cuda")["cuda"]
    if not status.available:
        print(f"bench_clusters: the cuda backend is not available: {status.reason}",
              file=sys.stderr)
        return 2
    major, minor = torch.cuda.get_device_capability()
    copy_gbps = copy_bandwidth_gbps("cuda")
    print(f"{torch.cuda.get_device_name()} (sm_{major}{minor}), copy bandwidth {copy_gbps:.1f} "
          f"GB/s; clusters are used on sm_90 only")
    header = (f"{'shape':>16} {'dtype':>8} {'layout':>13} {'mode':>7} {'path':>9} {'ran':>4} "
              f"{'ms':>8} {'GB/s':>7} {'%peak':>6} {'err':>8} {'x 2-sweep':>9}")
    print(header)
    failed, started = False, time.monotonic()
    for shape in SHAPES:
        for dtype in DTYPES:
            for layout in LAYOUTS:
                for mode in MODES:
                    if time.monotonic() - started > args.budget_seconds:
                        print("(time budget spent: remaining cases skipped)")
                        return 1 if failed else 0
                    records = run_case(shape, dtype, layout, mode, args.reps, args.warmup,
                                       copy_gbps)
                    for r in records:
                        failed |= not r["ok"]
                        speedup = r.get("speedup_vs_two_sweep")
                        print(f"{r['shape']:>16} {dtype:>8} {layout:>13} {mode:>7} "
                              f"{r['path']:>9} {'yes' if r['cluster_kernel_ran'] else 'no':>4} "
                              f"{r['median_ms']:8.4f} {r['gbps']:7.1f} {r['pct_peak_bw']:6.1f} "
                              f"{r['error_vs_float64']:8.1e} "
                              f"{'' if speedup is None else f'{speedup:.2f}':>9}"
                              f"{'' if r['ok'] else '  WRONG'}")
                        if args.jsonl:
                            with open(args.jsonl, "a") as f:
                                f.write(json.dumps(r) + "\n")
                    synchronize("cuda")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
