"""Where a model benchmark step spends its time: wall time, GPU busy time, and the top ops.

    python benchmarks/profile_model_step.py [--op train_step|generate] [--resolution 256]
        [--batch 16] [--dtype bfloat16] [--backends eager,cuda] [--steps 3] [--top 20]
        [--cudnn-benchmark]

For each backend: builds the step of ``stylegan-fast bench --model`` (stylegan_fast/bench/
model_steps.py), runs two warm-up steps, times ``--steps`` steps (median, device synchronized),
then records one step with torch.profiler and prints the kernels' total GPU time against the wall
time (a step whose GPU is busy only a fraction of the time is bound by the host: launches,
synchronizations, Python) and the ``--top`` ops by GPU time and by host time.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from stylegan_fast.bench.model_cases import ModelCase  # noqa: E402
from stylegan_fast.bench.model_steps import Generation, TrainingStep  # noqa: E402

STEPS = {"train_step": TrainingStep, "generate": Generation}


def timed_steps(step, count: int) -> list:
    times = []
    for _ in range(count):
        torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def device_time_us(event) -> float:
    """The event's own GPU time in us (the attribute's name changed across torch versions)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def profile_backend(args, backend: str) -> None:
    case = ModelCase(args.op, backend, args.dtype, args.resolution, args.batch, "cuda")
    step = STEPS[args.op](case)
    for _ in range(2):
        step()
    wall = statistics.median(timed_steps(step, args.steps))
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    events = prof.key_averages()
    gpu_us = sum(device_time_us(e) for e in events if e.device_type.name == "CUDA")
    print(f"\n== {case.name}: {wall:.1f} ms per step (median of {args.steps}); kernels "
          f"{gpu_us / 1e3:.1f} ms of GPU time in the profiled step")
    by_gpu = sorted(events, key=device_time_us, reverse=True)[:args.top]
    print(f"{'GPU ms':>9} {'calls':>6}  op (top {args.top} by own GPU time)")
    for e in by_gpu:
        print(f"{device_time_us(e) / 1e3:9.2f} {e.count:6d}  {e.key[:110]}")
    by_cpu = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:args.top]
    print(f"{'host ms':>9} {'calls':>6}  op (top {args.top} by own host time)")
    for e in by_cpu:
        print(f"{e.self_cpu_time_total / 1e3:9.2f} {e.count:6d}  {e.key[:110]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", choices=sorted(STEPS), default="train_step")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--backends", default="eager,cuda", help="comma list")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True (autotuned convolutions)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("profile_model_step: needs a CUDA GPU", file=sys.stderr)
        return 2
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        profile_backend(args, backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
