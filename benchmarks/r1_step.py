"""What R1 costs per backend: the training step and D's R1 step, each also on PyTorch's convs.

    python benchmarks/r1_step.py [--resolutions 64,128] [--batch 4] [--channel-max 32]
        [--dtype float32] [--device cpu] [--backends eager,ref,ref+F.conv2d]
        [--steps train,d_r1] [--reps 5] [--warmup 2] [--budget-seconds S] [--jsonl FILE]

Per resolution and step (``train``: the G+D step of ``stylegan-fast bench --model``, R1 every
step; ``d_r1``: D on reals with R1 only; stylegan_fast/bench/model_steps.py), each backend's
median time after warm-up (device synchronized; CUDA events on a GPU), images/s, peak memory
(CUDA) and the speedup over ``eager`` measured in the same run. ``X+F.conv2d`` is backend X with
the layers' convolutions on ``F.conv2d`` / ``F.conv_transpose2d`` (PyTorch's double backward,
with its feature-map-sized kernels) instead of ``stylegan_fast.ops.conv2d``: X against
X+F.conv2d is what the convolutions' derivatives cost, X+F.conv2d against eager what the other
fused ops bring. Default backends: eager, then each available fused backend (``ref`` where there
is none, as on CPU) and its +F.conv2d variant; not ``compile`` (R1's pass is eager there).
Times on CPU say nothing about GPU kernels.
"""
from __future__ import annotations

import argparse
import contextlib
import sys
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch.nn.functional as F  # noqa: E402

from stylegan_fast.bench import model_bench  # noqa: E402
from stylegan_fast.bench.baselines import BASELINES, check_available, default_backends  # noqa: E402
from stylegan_fast.bench.model_cases import ModelCase, Networks  # noqa: E402
from stylegan_fast.bench.runner import exit_status, print_run_header, run_cases  # noqa: E402
from stylegan_fast.bench.table import with_widths  # noqa: E402
from stylegan_fast.bench.timing import check_device, default_device  # noqa: E402
from stylegan_fast.errors import UserError  # noqa: E402
from stylegan_fast.nn import resample  # noqa: E402
from stylegan_fast.ops.backends import EAGER  # noqa: E402

PYTORCH_CONVS = "+F.conv2d"  # the suffix of a backend run on PyTorch's convolutions
STEPS = {"train": "train_step", "d_r1": "d_r1_step"}
# No compile column: compile is not run here.
COLUMNS = tuple(c for c in with_widths(model_bench.COLUMNS, backend=14)
                if c.key != "speedup_vs_compile")


@dataclass(frozen=True)
class R1Case(ModelCase):
    """A model case, optionally with the layers' convolutions on PyTorch's (same group as the
    backend's: its speedup is over the same eager)."""
    pytorch_convs: bool = False

    @property
    def label(self) -> str:
        return self.backend + PYTORCH_CONVS * self.pytorch_convs


@contextlib.contextmanager
def pytorch_convs():
    """``stylegan_fast.nn``'s convolutions on ``F.conv2d`` / ``F.conv_transpose2d`` inside the
    block: ``resample.conv2d`` / ``conv_transpose2d`` replaced, in resample and in every module
    of the package that imported them by name (the equalized layers)."""
    replacements = {resample.conv2d: F.conv2d, resample.conv_transpose2d: F.conv_transpose2d}
    with contextlib.ExitStack() as stack:
        for name, module in list(sys.modules.items()):
            if not name.startswith("stylegan_fast.") or module is None:
                continue
            for attribute in ("conv2d", "conv_transpose2d"):
                original = getattr(module, attribute, None)
                if original in replacements:
                    stack.enter_context(mock.patch.object(module, attribute,
                                                          replacements[original]))
        yield


def run_case(case: R1Case, reps: int, warmup: int) -> dict:
    with pytorch_convs() if case.pytorch_convs else contextlib.nullcontext():
        record = model_bench.run_model_case(case, reps, warmup)
    record["backend"] = case.label
    return record


def default_labels(device: str) -> list:
    fused = [b for b in default_backends(device) if b not in BASELINES] or ["ref"]
    return [EAGER] + [label for b in fused for label in (b, b + PYTORCH_CONVS)]


def make_cases(args, device: str) -> list:
    labels = args.backends or default_labels(device)
    backends = [label.removesuffix(PYTORCH_CONVS) for label in labels]
    check_available(backends, device)
    networks = Networks(channel_max=args.channel_max)
    return [R1Case(STEPS[step], backend, args.dtype, res, args.batch, device, networks,
                   pytorch_convs=label.endswith(PYTORCH_CONVS))
            for res in args.resolutions for step in args.steps
            for label, backend in zip(labels, backends)]


def comma_list(kind=str):
    return lambda text: [kind(item.strip()) for item in text.split(",") if item.strip()]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolutions", type=comma_list(int), default=[64, 128])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channel-max", type=int, default=32,
                        help="channels per layer at most (512: the official networks)")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--backends", type=comma_list(),
                        help=f"comma list; X{PYTORCH_CONVS}: backend X on PyTorch's convolutions")
    parser.add_argument("--steps", type=comma_list(), default=list(STEPS),
                        help=f"comma list of {', '.join(STEPS)}")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--budget-seconds", type=float,
                        help="start no new case once this many seconds have passed")
    parser.add_argument("--jsonl", help="append one JSON record per case to this file")
    args = parser.parse_args(argv)
    unknown = [step for step in args.steps if step not in STEPS]
    if unknown:
        parser.error(f"--steps: unknown {', '.join(unknown)}")
    try:
        check_device(args.device)
        cases = make_cases(args, args.device)
    except UserError as exc:
        parser.error(str(exc))
    print_run_header(args.device, f"R1 steps: {len(cases)} cases, batch {args.batch}, "
                                  f"channel_max {args.channel_max}, median of {args.reps} after "
                                  f"{args.warmup} warm-up")
    records = run_cases(cases, lambda case: run_case(case, args.reps, args.warmup), args, COLUMNS)
    return exit_status(records)


if __name__ == "__main__":
    sys.exit(main())
