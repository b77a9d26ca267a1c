"""Where a model benchmark step spends its time: wall time, device busy time, the top ops with
their input shapes, and the step's convolution census.

    python benchmarks/profile_model_step.py [--op train_step|generate|d_r1_step]
        [--resolution 256] [--batch 16] [--dtype bfloat16] [--backends eager,cuda]
        [--channel-max 512] [--r1-interval 1] [--device cuda] [--steps 3] [--top 20]
        [--cudnn-benchmark]

For each backend: builds the step of ``stylegan-fast bench --model`` (stylegan_fast/bench/
model_steps.py; ``d_r1_step``: D on reals with R1 only), runs two warm-up steps, times ``--steps``
steps (median, device synchronized), then records one step with torch.profiler
(``record_shapes``) and prints the kernels' total GPU time against the wall time (a step whose GPU
is busy only a fraction of the time is bound by the host: launches, synchronizations, Python);
the ``--top`` ops with their input shapes, ranked by the device time of the kernels they launched
(on CPU: by their own CPU time); on CUDA the top kernels by name; the top ops by host time; then
the convolution census of one more step (stylegan_fast/bench/conv_census.py: every convolution's
kind and kernel, flagged where the kernel exceeds the layers'). Runs on CPU too (the official
networks at 256 px take a while there: try --channel-max 32 --resolution 64 --batch 4).
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from stylegan_fast.bench.conv_census import census, format_census, layer_kernel  # noqa: E402
from stylegan_fast.bench.model_cases import ModelCase, Networks  # noqa: E402
from stylegan_fast.bench.model_steps import STEPS, prepare_step  # noqa: E402
from stylegan_fast.bench.timing import default_device, synchronize, time_reps_ms  # noqa: E402

SHAPES_WIDTH = 150  # characters of the input shapes printed per op


def device_time_us(event) -> float:
    """The event's own device time in us (the attribute's name changed across torch versions)."""
    for name in ("self_device_time_total", "self_cuda_time_total"):
        if hasattr(event, name):
            return float(getattr(event, name))
    return 0.0


def print_top(title: str, events, time_us, top: int, shapes: bool = False) -> None:
    print(f"{'ms':>9} {'calls':>6}  {title}")
    for e in sorted(events, key=time_us, reverse=True)[:top]:
        line = f"{time_us(e) / 1e3:9.2f} {e.count:6d}  {e.key[:60]}"
        if shapes:
            line = f"{line:<80} {str(e.input_shapes)[:SHAPES_WIDTH]}"
        print(line)


def profile_backend(args, backend: str) -> None:
    case = ModelCase(args.op, backend, args.dtype, args.resolution, args.batch, args.device,
                     Networks(channel_max=args.channel_max), args.r1_interval)
    step = prepare_step(case)
    on_gpu = torch.device(args.device).type == "cuda"
    wall = statistics.median(time_reps_ms(step, lambda: None, args.device, 2, args.steps))
    activities = [ProfilerActivity.CPU] + [ProfilerActivity.CUDA] * on_gpu
    with profile(activities=activities, record_shapes=True) as prof:
        step()
        synchronize(args.device)
    events = prof.key_averages(group_by_input_shape=True)
    ops = [e for e in events if e.device_type.name == "CPU"]
    steps = f" ({case.steps_per_call} steps)" if case.steps_per_call > 1 else ""
    if on_gpu:
        kernels = [e for e in events if e.device_type.name == "CUDA"]
        busy = f"; kernels {sum(map(device_time_us, kernels)) / 1e3:.1f} ms of GPU time"
    else:
        kernels, busy = [], " (CPU: the ops' own CPU time below)"
    print(f"\n== {case.name}: {wall:.1f} ms per call{steps} (median of {args.steps}){busy}")
    print_top(f"op and its input shapes (top {args.top} by the "
              f"{'GPU time of the kernels it launched' if on_gpu else 'own CPU time'})",
              ops, device_time_us if on_gpu else (lambda e: e.self_cpu_time_total), args.top,
              shapes=True)
    if on_gpu:
        print_top(f"kernel (top {args.top} by GPU time)", kernels, device_time_us, args.top)
    print_top(f"op (top {args.top} by own host time)", prof.key_averages(),
              lambda e: e.self_cpu_time_total, args.top)
    calls = census(step)
    print("\n" + format_census(calls, layer_kernel(*step.models),
                               f"convolution census of one more call: {len(calls)} convolutions"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--op", choices=sorted(STEPS), default="train_step")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="bfloat16")
    parser.add_argument("--backends", help="comma list (default: eager,cuda on a GPU, else "
                                            "eager,ref)")
    parser.add_argument("--channel-max", type=int, default=512,
                        help="channels per layer at most (512: the official networks)")
    parser.add_argument("--r1-interval", type=int, default=1,
                        help="train_step: lazy R1, one call runs this many steps")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--cudnn-benchmark", action="store_true",
                        help="torch.backends.cudnn.benchmark = True (autotuned convolutions)")
    args = parser.parse_args(argv)
    torch.backends.cudnn.benchmark = args.cudnn_benchmark
    backends = args.backends or ("eager,cuda" if torch.device(args.device).type == "cuda"
                                 else "eager,ref")
    for backend in [b.strip() for b in backends.split(",") if b.strip()]:
        profile_backend(args, backend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
