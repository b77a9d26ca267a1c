"""The convolution census: every convolution one training step runs, with its kind and kernel.

    python -m stylegan_fast.bench.conv_census --step train|d_r1 [--resolution 64] [--batch 4]
        [--channel-max 32] [--backends eager,ref] [--dtype float32] [--device cpu]

PyTorch's own double backward of ``F.conv2d`` (R1) forms the weight-gradient terms as a
convolution whose *kernel is a whole feature map* ([C, N, H, W]); :func:`stylegan_fast.ops.conv2d`
builds every derivative from the layer's own kernel instead. The census makes that visible on any
device, CPU included: :class:`ConvRecorder` (a ``TorchDispatchMode``) records each convolution
below autograd, forward, backward and double backward alike, from every thread that runs it
(autograd runs CUDA backward passes on its own worker threads). :func:`format_census` tabulates
the calls per kind and kernel and flags every row whose kernel exceeds the largest one the
networks' layers have (:func:`layer_kernel`): on a step without feature-map kernels, none.

Why a dispatch mode and not ``torch.profiler``: the profiler names a CPU op's input shapes but
not which argument is the kernel, on CPU it has no kernels to show, and its CUDA kernel names
(cuDNN's) say nothing of the kernel size. The dispatch mode sees the same aten calls the profiler
lists (``aten::convolution``, ``aten::convolution_backward``) with their arguments, on every
device; ``benchmarks/profile_model_step.py`` prints the profiler's view beside it. Under a
dispatch mode ``torch.compile`` runs the frames it would compile eagerly, so ``compile``'s census
is that of the eager code (R1's double backward is eager on that backend anyway).
"""
from __future__ import annotations

import argparse
import collections
import sys
import threading
from typing import Callable, Iterable, List, NamedTuple, Optional, Tuple

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from ..nn import Blur

# The aten overloads a convolution reaches below autograd. ``convolution_backward`` runs with the
# layer's own weight (its kernel is the weight's); every other entry takes (input, weight, ...).
_FORWARD_OPS = ("convolution", "_convolution", "conv2d", "cudnn_convolution",
                "cudnn_convolution_transpose", "mkldnn_convolution", "_slow_conv2d_forward",
                "slow_conv_transpose2d", "slow_conv_dilated2d", "_nnpack_spatial_convolution")
_BACKWARD_OPS = ("convolution_backward",)
KINDS = ("conv", "conv_transpose", "backward")  # the order of the table's rows


class ConvCall(NamedTuple):
    """One convolution: its aten op, kind, input and weight shapes, kernel size and MACs."""
    op: str                # aten overload packet name, e.g. "convolution"
    kind: str              # "conv", "conv_transpose" or "backward" (convolution_backward)
    input_shape: Tuple[int, ...]    # [N, C, H, W] (for backward: the output gradient's)
    weight_shape: Tuple[int, ...]   # [O, C / groups, KH, KW] (transposed: [C, O / groups, ...])
    kernel: Tuple[int, int]         # (KH, KW): the weight's spatial size
    macs: int              # multiply-accumulates of the call (each output of a backward: one conv)
    thread: int            # threading.get_ident() of the thread that ran it


def _macs(numel: int, weight_shape) -> int:
    """MACs of a convolution with ``weight_shape``'s kernel over ``numel`` outputs (plain) or
    inputs (transposed): each of those meets ``weight_shape[1:]``'s elements once."""
    per_element = 1
    for s in weight_shape[1:]:
        per_element *= int(s)
    return int(numel) * per_element


class ConvRecorder(TorchDispatchMode):
    """``with ConvRecorder() as rec: step()``; ``rec.calls`` lists a :class:`ConvCall` per
    convolution run inside, in order. Thread-safe: calls from autograd's worker threads count."""

    def __init__(self):
        super().__init__()
        self.calls: List[ConvCall] = []
        self._lock = threading.Lock()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = func.overloadpacket.__name__
        if name in _FORWARD_OPS or name in _BACKWARD_OPS:
            self._record(name, args, kwargs, out)
        return out

    def _record(self, name: str, args, kwargs, out) -> None:
        if name in _BACKWARD_OPS:
            # convolution_backward(grad_output, input, weight, bias_sizes, stride, padding,
            # dilation, transposed, output_padding, groups, output_mask): the input and the
            # weight gradient each cost one convolution of the forward's size.
            grad_output, x, weight = args[:3]
            transposed = bool(args[7]) if len(args) > 7 else bool(kwargs.get("transposed"))
            mask = args[10] if len(args) > 10 else kwargs.get("output_mask", (True, True, False))
            macs = sum(mask[:2]) * _macs((x if transposed else grad_output).numel(),
                                         weight.shape)
            call = ConvCall(name, "backward", tuple(grad_output.shape), tuple(weight.shape),
                            tuple(weight.shape[2:]), macs, threading.get_ident())
        else:
            x, weight = args[0], args[1]
            transposed = "transpose" in name or _transposed_flag(name, args, kwargs)
            macs = _macs(x.numel() if transposed else out.numel(), weight.shape)
            call = ConvCall(name, "conv_transpose" if transposed else "conv", tuple(x.shape),
                            tuple(weight.shape), tuple(weight.shape[2:]), macs,
                            threading.get_ident())
        with self._lock:
            self.calls.append(call)


def _transposed_flag(name: str, args, kwargs) -> bool:
    """The ``transposed`` argument of aten.convolution / aten._convolution (False elsewhere)."""
    if name not in ("convolution", "_convolution"):
        return False
    if len(args) > 6:
        return bool(args[6])
    return bool(kwargs.get("transposed", False))


def census(step: Callable[[], object]) -> List[ConvCall]:
    """The convolutions one call of ``step`` runs (a training step: forward, backward and R1's
    double backward), in order."""
    with ConvRecorder() as recorder:
        step()
    return recorder.calls


def layer_kernel(*models: nn.Module) -> Tuple[int, int]:
    """(KH, KW): the largest kernel the models' convolution layers run, the bound no convolution
    of their step should exceed. Each layer's 4-D ``weight`` counts with its spatial size, one
    more per axis where the layer fuses resampling into a stride-2 convolution
    (``stylegan_fast.nn.Conv2d`` with ``fused_resample``: a (k+1) x (k+1) kernel);
    :class:`~stylegan_fast.nn.Blur`'s filter too. Other 4-D parameters (G's learned constant
    input) are no kernels."""
    height = width = 1
    for model in models:
        for module in model.modules():
            weight, kernels = getattr(module, "weight", None), []
            if isinstance(weight, torch.Tensor) and weight.dim() == 4:
                kernels.append(tuple(weight.shape[2:]))
            if isinstance(module, Blur):
                kernels.append(tuple(module.fir.shape))
            grow = int(getattr(module, "fused_resample", False)
                       and (getattr(module, "up", False) or getattr(module, "down", False)))
            for kh, kw in kernels:
                height, width = max(height, kh + grow), max(width, kw + grow)
    return height, width


def exceeds(kernel: Tuple[int, ...], bound: Tuple[int, int]) -> bool:
    """Whether ``kernel`` is larger than ``bound`` along either axis."""
    return any(k > b for k, b in zip(kernel, bound))


class CensusRow(NamedTuple):
    """The calls of one kind with one kernel size."""
    kind: str
    kernel: Tuple[int, ...]
    count: int
    macs: int
    flagged: bool  # the kernel exceeds the layers'


def census_rows(calls: Iterable[ConvCall], bound: Tuple[int, int]) -> List[CensusRow]:
    """One row per (kind, kernel), by kind (:data:`KINDS`) then kernel area."""
    counts, macs = collections.Counter(), collections.Counter()
    for call in calls:
        counts[call.kind, call.kernel] += 1
        macs[call.kind, call.kernel] += call.macs
    order = sorted(counts, key=lambda key: (KINDS.index(key[0]) if key[0] in KINDS else len(KINDS),
                                            key[1][0] * key[1][1], key[1]))
    return [CensusRow(kind, kernel, counts[kind, kernel], macs[kind, kernel],
                      exceeds(kernel, bound)) for kind, kernel in order]


def _kernel_text(kernel) -> str:
    return "x".join(str(k) for k in kernel)


def census_fields(calls: List[ConvCall], bound: Tuple[int, int]) -> dict:
    """The census as fields of a benchmark record: ``conv_census_count`` (convolutions),
    ``conv_census_flagged`` (those whose kernel exceeds the layers' ``bound``),
    ``conv_census_largest_kernel`` ([KH, KW] of the largest by area), ``conv_census_layer_kernel``
    (``bound``), ``conv_census_flagged_mac_share`` (the flagged calls' share of all MACs, 0-1)."""
    flagged = [c for c in calls if exceeds(c.kernel, bound)]
    total_macs = sum(c.macs for c in calls)
    largest = max((c.kernel for c in calls), key=lambda k: (k[0] * k[1], k), default=None)
    return {
        "conv_census_count": len(calls),
        "conv_census_flagged": len(flagged),
        "conv_census_largest_kernel": list(largest) if largest else None,
        "conv_census_layer_kernel": list(bound),
        "conv_census_flagged_mac_share": (sum(c.macs for c in flagged) / total_macs
                                          if total_macs else 0.0),
    }


def format_census(calls: List[ConvCall], bound: Tuple[int, int], title: str = "") -> str:
    """A table of the calls per kind and kernel: count, MMACs, a flag on each row whose kernel
    exceeds ``bound`` (the layers' largest), totals, the flagged share of the MACs and how many
    threads ran them."""
    bound_text = _kernel_text(bound)
    lines = [f"{title} (layers' largest kernel {bound_text})" if title else
             f"convolution census (layers' largest kernel {bound_text})",
             f"{'kind':<15} {'kernel':>9} {'calls':>6} {'MMACs':>11}"]
    for row in census_rows(calls, bound):
        flag = f"  flagged: > {bound_text}" if row.flagged else ""
        lines.append(f"{row.kind:<15} {_kernel_text(row.kernel):>9} {row.count:6d} "
                     f"{row.macs / 1e6:11.2f}{flag}")
    fields = census_fields(calls, bound)
    lines.append(f"{'total':<15} {'':>9} {len(calls):6d} "
                 f"{sum(c.macs for c in calls) / 1e6:11.2f}")
    threads = len({c.thread for c in calls})
    lines.append(f"flagged: {fields['conv_census_flagged']} of {len(calls)} convolutions, "
                 f"{100 * fields['conv_census_flagged_mac_share']:.1f}% of the MACs; "
                 f"run on {threads} thread{'s' * (threads != 1)}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ command line
STEP_OPS = {"train": "train_step", "d_r1": "d_r1_step"}


def census_of_case(case) -> str:
    """The census table of one step of ``case`` (a :class:`~.model_cases.ModelCase`)."""
    # Imported here: the recorder above is used on its own (tests, other tools), and the steps
    # bring in the training code.
    from .model_steps import prepare_step

    step = prepare_step(case)
    calls = census(step)
    step.check()
    return format_census(calls, layer_kernel(*step.models), f"{case.name}: {len(calls)} "
                                                            f"convolutions in one step")


def main(argv: Optional[list] = None) -> int:
    from .baselines import check_available
    from .model_cases import ModelCase, Networks

    parser = argparse.ArgumentParser(
        prog="python -m stylegan_fast.bench.conv_census",
        description="Every convolution of one step per backend: kind, kernel size, count, "
                    "MACs; rows whose kernel exceeds the layers' are flagged.")
    parser.add_argument("--step", choices=sorted(STEP_OPS), default="train",
                        help="train: the G+D training step of `bench --model` (R1 every step); "
                             "d_r1: D on reals with R1 only")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--channel-max", type=int, default=32,
                        help="channels per layer at most (512: the official networks)")
    parser.add_argument("--backends", default="eager,ref", help="comma list")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    check_available(backends, args.device)
    networks = Networks(channel_max=args.channel_max)
    for backend in backends:
        case = ModelCase(STEP_OPS[args.step], backend, args.dtype, args.resolution, args.batch,
                         args.device, networks)
        print(census_of_case(case) + "\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
