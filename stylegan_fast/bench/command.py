"""The ``stylegan-fast bench`` command: its flags, and which benchmark they run."""
from __future__ import annotations

import argparse

from ..errors import UserError
from ..tools.commands import number, parse_device
from .op_cases import OP_GROUPS, OPS, PRESETS, canonical_dtype, parse_shape


def _comma_list(text: str) -> list:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parsed_list(parse):
    """An argparse type: a comma list, each item through ``parse`` (ValueError: a usage error)."""
    def parse_list(text: str) -> list:
        try:
            return [parse(item) for item in _comma_list(text)]
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    return parse_list


def _positive_int(what: str):
    """A parse function for :func:`_parsed_list`: an int > 0, its error naming ``what``."""
    def parse(text: str) -> int:
        try:
            return number(int, positive=True)(text)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{what}: {exc}") from None
    return parse


_resolution = _positive_int("resolution")  # in px (the models check which ones they support)


def _device(text: str):
    """``--device``: one that exists here (None for auto: the runner's default)."""
    return None if parse_device(text) == "auto" else text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=sorted(PRESETS),
                        help="case set (default: gpu when CUDA is available, else smoke)")
    parser.add_argument("--ops", type=_comma_list,
                        help=f"comma list of {', '.join(OPS)}, or a group: "
                             f"{', '.join(OP_GROUPS)} (its ops)")
    parser.add_argument("--backends", type=_comma_list,
                        help="comma list (default: eager, compile and every available fused "
                             "backend; ref on request)")
    parser.add_argument("--dtypes", type=_parsed_list(canonical_dtype),
                        help="comma list of float32, bfloat16, float16")
    parser.add_argument("--shapes", type=_parsed_list(parse_shape),
                        help="comma list of NxCxHxW, e.g. 4x16x64x64,2x8x9x7")
    parser.add_argument("--modes", type=_comma_list, help="comma list of fwd, fwd+bwd")
    parser.add_argument("--device", type=_device,
                        help="cuda, cuda:1, cpu (default, or auto: cuda if available)")
    parser.add_argument("--reps", type=number(int, positive=True),
                        help="timed reps per case (median reported; with --model: steps, "
                             "a lazy-R1 call counting as N)")
    parser.add_argument("--warmup", type=number(int, minimum=0), help="untimed reps before timing")
    parser.add_argument("--jsonl", help="append one JSON record per case to this file")
    parser.add_argument("--budget-seconds", type=number(float, minimum=0),
                        help="start no new case once this many seconds have passed")
    parser.add_argument("--traffic", action="store_true",
                        help="instead of timing: count the bytes each Triton kernel loads and "
                             "stores (Triton's interpreter, CPU tensors, StyleGAN's layer shapes "
                             "from 4x4 to 1024x1024 with N and C scaled down) against the op's "
                             "minimum, forward and backward; --ops, --dtypes, --shapes, --modes, "
                             "--jsonl and --budget-seconds apply (stylegan_fast/bench/traffic.py)")
    parser.add_argument("--overhead", action="store_true",
                        help="instead of the op bench: host time per call of every op on a tiny "
                             "tensor (1x2x4x4, float32), forward and forward + backward, per "
                             "backend (default: eager, the fused backends and each op's default), "
                             "against the eager backend, and through the torch.library custom "
                             "op; torch.utils.benchmark's blocked_autorange. --ops, --backends, "
                             "--dtypes, --shapes, --modes, --device, --jsonl and --budget-seconds "
                             "apply (stylegan_fast/bench/overhead.py, docs/benchmarks.md)")
    models = parser.add_argument_group(
        "model level (stylegan_fast/bench/model_bench.py, max_batch.py, plot.py)")
    models.add_argument("--model", action="store_true",
                        help="time a full training step (G and D with R1, Adam, EMA) and "
                             "generator inference per backend instead of the ops")
    models.add_argument("--max-batch", action="store_true",
                        help="GPU only: the largest batch that trains within 16 and 24 GB caps")
    models.add_argument("--resolutions", type=_parsed_list(_resolution),
                        help="comma list of px for --model / --max-batch (e.g. 256,1024)")
    models.add_argument("--batch", type=number(int, positive=True),
                        help="batch per step for --model (default: preset's)")
    models.add_argument("--r1-interval", type=_parsed_list(_positive_int("R1 interval")),
                        metavar="N[,N...]",
                        help="with --model: lazy R1 as the trainer's --r1-interval, the penalty "
                             "(times N) on every N-th step: mode train+r1/N, one timed call runs "
                             "N steps, ms and img/s per step; a comma list (1,16) times each "
                             "(default: 1, R1 every step)")
    models.add_argument("--conv-census", action="store_true",
                        help="with --model: record every convolution of one more call of each "
                             "training case (kind, kernel size, MACs; flagged where the kernel "
                             "exceeds the layers'), print the table per backend and add "
                             "conv_census_* fields to the record (stylegan_fast/bench/"
                             "conv_census.py; works on CPU)")
    models.add_argument("--ckpt", metavar="FILE",
                        help="with --model: time inference (images/s per backend and dtype) of "
                             "this generator at its resolution: a checkpoint, a run folder or an "
                             "official StyleGAN1 .pkl (e.g. NVIDIA's FFHQ 1024)")
    models.add_argument("--plot", metavar="FILE.png",
                        help="draw speedup and memory bar charts from result files, run nothing")
    models.add_argument("--results", metavar="FILE.jsonl", action="append",
                        help="a results file for --plot (repeatable; default: --jsonl)")


def main(args: argparse.Namespace) -> int:
    """Run what the flags ask for: the host overhead benchmark, the plot, the traffic report, the
    model benchmark and/or max batch, else the ops."""
    if getattr(args, "overhead", False):
        from . import overhead

        return overhead.main(args)  # refuses the other benchmarks' flags
    if args.plot:
        from . import plot

        return plot.main(args)
    if args.traffic:
        from . import traffic

        return traffic.main(args)
    if getattr(args, "ckpt", None) and (not args.model or args.max_batch):
        raise UserError("--ckpt times inference with --model (not --max-batch or the ops)")
    for flag in ("r1_interval", "conv_census"):
        if getattr(args, flag, None) and not args.model:
            raise UserError(f"--{flag.replace('_', '-')} is for the model benchmark (--model)")
    if not (args.model or args.max_batch):
        from . import op_bench

        return op_bench.main(args)
    status = 0
    if args.model:
        from . import model_bench

        status = model_bench.main(args)
    if args.max_batch:
        from . import max_batch

        status = max(status, max_batch.main(args))
    return status
