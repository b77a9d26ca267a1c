"""The op benchmark's cases: op x backend x dtype x shape x mode, their inputs and minimum traffic.

Shared by ``stylegan-fast bench`` (:mod:`.op_bench`), ``--traffic`` (:mod:`.traffic`) and
``benchmarks/bench_ops.py``. What each backend name means is in :mod:`.baselines`.

The minimum memory traffic of an op (:func:`minimum_traffic`, the one definition; GB/s and the
traffic report count it) is what a kernel must move at the least, tensor by tensor:

* forward: read every input given once (x, the small tensors, a given noise map: noise drawn from
  a seed costs nothing), write y once and, when a gradient is wanted, the state saved for the
  backward once (bias_act: the uint8 mask, if the activation needs one; adain and
  style_epilogue: the float32 mean and rstd [N, C]);
* backward: read dy, the saved state and the inputs the backward needs once (bias_act with a
  smooth activation, ``bias_act_swish``: x and b; adain: x, style_scale; style_epilogue: x, bias,
  noise_strength, a given noise, style_scale; noise_inject: a given noise, and strength only for a
  noise gradient), write each gradient wanted once (dx; noise_inject passes dy through as dx, so
  writes none).

The resampling ops (``upsample2d``, ``downsample2d``, ``filter2d``: NVIDIA's helpers on
``upfirdn2d`` with the [1, 3, 3, 1] filter of StyleGAN2) read x and write y of another size:
forward x + y, backward dy (y's size) + dx (x's), the filter besides; they save nothing. Their
``eager`` baseline is the op's plain definition (zero insertion, padding, a convolution per
plane, stride), ``compile`` that definition compiled. Their shapes are StyleGAN2's
(:attr:`Preset.resample_shapes`).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .. import ops
from ..ops._common import compute_dtype
from ..ops.backends import EAGER
from ..ops.bias_act import needs_mask
from .baselines import BASELINES, compiled, on_backend
from .records import format_shape

EPILOGUE_OPS = ("bias_act", "bias_act_swish", "noise_inject", "adain", "style_epilogue")
RESAMPLE_OPS = ("upsample2d", "downsample2d", "filter2d")
OPS = EPILOGUE_OPS + RESAMPLE_OPS
MODES = ("fwd", "fwd+bwd")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


@dataclass(frozen=True)
class OpSpec:
    """How to call one op (its functions, its small fp32 tensors and fixed options), and what
    its minimum traffic is made of (:func:`minimum_traffic`)."""
    reference: Callable  # the plain differentiable definition (what ``eager`` runs)
    public: Callable
    per_channel: tuple = ()  # names of [C] tensors
    per_sample: tuple = ()  # names of [N, C] tensors
    takes_noise: bool = False  # has a ``noise`` argument (None: drawn in the op)
    options: dict = field(default_factory=dict)
    saved: tuple = ()  # state the forward saves for the backward when a gradient is wanted
    backward_reads: tuple = ()  # inputs the backward reads (beside dy and the saved state)
    dnoise_reads: tuple = ()  # inputs the backward reads only for a gradient of the noise
    dx_is_dy: bool = False  # the backward passes dy through as dx (nothing written)
    impl: str = ""  # the registered op it times, when the case's name is another ("": the name)
    fir_taps: tuple = ()  # resampling ops: the filter's taps (setup_filter), passed as ``f``
    output_hw: Callable = None  # resampling ops: (H, W) -> the output's (H, W)


OP_SPECS = {
    "bias_act": OpSpec(ops.bias_act_reference, ops.bias_act, per_channel=("b",),
                       options={"act": "lrelu", "alpha": 0.2, "gain": 1.0}, saved=("mask",)),
    # a smooth activation: the backward reads x (and b) instead of a mask
    "bias_act_swish": OpSpec(ops.bias_act_reference, ops.bias_act, per_channel=("b",),
                             options={"act": "swish"}, backward_reads=("x", "b"), impl="bias_act"),
    "noise_inject": OpSpec(ops.noise_inject_reference, ops.noise_inject,
                           per_channel=("strength",), takes_noise=True,
                           backward_reads=("noise",), dnoise_reads=("strength",), dx_is_dy=True),
    "adain": OpSpec(ops.adain_reference, ops.adain, per_sample=("style_scale", "style_bias"),
                    saved=("mean", "rstd"), backward_reads=("x", "style_scale")),
    "style_epilogue": OpSpec(ops.style_epilogue_reference, ops.style_epilogue,
                             per_channel=("bias", "noise_strength"),
                             per_sample=("style_scale", "style_bias"), takes_noise=True,
                             saved=("mean", "rstd"),
                             backward_reads=("x", "bias", "noise_strength", "noise",
                                             "style_scale")),
    "upsample2d": OpSpec(on_backend(ops.upsample2d, EAGER), ops.upsample2d, impl="upfirdn2d",
                         fir_taps=(1, 3, 3, 1), output_hw=lambda h, w: (2 * h, 2 * w),
                         backward_reads=("f",)),
    "downsample2d": OpSpec(on_backend(ops.downsample2d, EAGER), ops.downsample2d,
                           impl="upfirdn2d", fir_taps=(1, 3, 3, 1),
                           output_hw=lambda h, w: (h // 2, w // 2),
                           backward_reads=("f",)),
    "filter2d": OpSpec(on_backend(ops.filter2d, EAGER), ops.filter2d, impl="upfirdn2d",
                       fir_taps=(1, 3, 3, 1), output_hw=lambda h, w: (h, w), backward_reads=("f",)),
}


def output_shape(op: str, shape: tuple) -> tuple:
    """The op's output shape for an x of ``shape``."""
    n, c, h, w = shape
    hw = OP_SPECS[op].output_hw
    return (n, c, *hw(h, w)) if hw else tuple(shape)


@dataclass(frozen=True)
class Preset:
    shapes: tuple
    dtypes: tuple
    modes: tuple = MODES
    reps: int = 30
    warmup: int = 5
    resample_shapes: tuple = ()  # the resampling ops' shapes (default: ``shapes``)

    def shapes_for(self, op: str) -> tuple:
        return self.resample_shapes or self.shapes if op in RESAMPLE_OPS else self.shapes


PRESETS = {
    # CPU-friendly: one tiny odd shape keeps the compile backend's start-up cost bearable.
    "smoke": Preset(shapes=((2, 8, 9, 7),), dtypes=("float32",), reps=5, warmup=2),
    # bfloat16 first (what AMP training runs), so that a time budget cuts float32 first.
    "gpu": Preset(shapes=((32, 512, 32, 32), (16, 128, 128, 128), (4, 32, 512, 512),
                          (4, 16, 1024, 1024)),
                  dtypes=("bfloat16", "float32"),
                  resample_shapes=((8, 512, 16, 16), (8, 256, 64, 64), (4, 128, 256, 256),
                                   (4, 32, 1024, 1024))),
}


@dataclass(frozen=True)
class Case:
    op: str
    backend: str
    dtype: str
    shape: tuple
    mode: str
    device: str

    @property
    def group(self) -> tuple:
        """Cases that differ only in backend share a group (for speedups)."""
        return (self.op, self.dtype, self.shape, self.mode, self.device)

    @property
    def name(self) -> str:
        return f"{self.op}-{self.backend}-{self.dtype}-{format_shape(self.shape)}-{self.mode}"


def parse_shape(text: str) -> tuple:
    """``'4x16x64x64'`` -> (4, 16, 64, 64)."""
    try:
        dims = tuple(int(s) for s in text.lower().split("x"))
    except ValueError:
        dims = ()
    if len(dims) != 4 or min(dims) < 1:
        raise ValueError(f"shape {text!r} must be NxCxHxW with positive sizes")
    return dims


def canonical_dtype(name: str) -> str:
    name = DTYPE_ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {', '.join(DTYPES)}")
    return name


def implements(op: str, backend: str) -> bool:
    """Whether ``backend`` (a baseline, or a registered backend) has an implementation of ``op``."""
    if backend in BASELINES:
        return True
    try:
        ops.backends.get_impl(OP_SPECS[op].impl or op, backend)
    except ops.BackendUnavailableError:
        return False
    return True


def make_cases(op_names: list, backends: list, dtypes: list, shapes, modes: list,
               device: str) -> list[Case]:
    """All combinations that a backend implements; the backends of one group run in a row,
    baselines first. ``shapes``: a list for every op, or a function op -> list (a preset's
    :meth:`Preset.shapes_for`); the i-th shape of every op comes before the (i+1)-th."""
    backends = [b for b in BASELINES if b in backends] + [b for b in dict.fromkeys(backends)
                                                          if b not in BASELINES]
    per_op = {op: list(shapes(op) if callable(shapes) else shapes) for op in op_names}
    rounds = max((len(s) for s in per_op.values()), default=0)
    return [Case(op, backend, dtype, tuple(per_op[op][i]), mode, device)
            for dtype in dtypes for i in range(rounds) for op in op_names if i < len(per_op[op])
            for mode in modes for backend in backends if implements(op, backend)]


# ---------------------------------------------------------------- inputs and calls
@dataclass
class OpInputs:
    """The keyword arguments of one call of ``op``; ``grad_inputs`` (by name) are those that get
    gradients."""
    op: str
    kwargs: dict
    grad_inputs: dict

    @property
    def x(self) -> torch.Tensor:
        return self.kwargs["x"]


def make_inputs(case: Case, *, explicit_noise: bool = False, seed: int = 0,
                channels_last: bool = False) -> OpInputs:
    """Fresh random (never zero) inputs: x in the case dtype (NCHW, or ``channels_last``), small
    tensors in float32, and ``noise=None`` unless ``explicit_noise`` (then a fixed [N, 1, H, W]
    map)."""
    spec = OP_SPECS[case.op]
    n, c, h, w = case.shape
    gen = torch.Generator(device=case.device).manual_seed(seed)

    def randn(*shape, dtype=torch.float32, scale=1.0):
        t = torch.randn(shape, generator=gen, device=case.device, dtype=torch.float32)
        return (t * scale).to(dtype)

    x_dtype = DTYPES[case.dtype]
    x = randn(n, c, h, w, dtype=x_dtype)
    tensors = {"x": x.to(memory_format=torch.channels_last) if channels_last else x}
    tensors.update({name: randn(c, scale=0.2) for name in spec.per_channel})
    tensors.update({name: randn(n, c, scale=0.2) for name in spec.per_sample})
    grad_inputs = dict(tensors) if case.mode == "fwd+bwd" else {}
    for t in grad_inputs.values():
        t.requires_grad_()
    kwargs = dict(tensors, **spec.options)
    if spec.fir_taps:
        kwargs["f"] = ops.setup_filter(list(spec.fir_taps), device=case.device)
    if spec.takes_noise:
        kwargs["noise"] = randn(n, 1, h, w, dtype=x_dtype) if explicit_noise else None
    return OpInputs(case.op, kwargs, grad_inputs)


@functools.cache
def _compiled_public(op: str) -> Callable:
    """``torch.compile`` of the public op, one per process (each shape specializes)."""
    return compiled(OP_SPECS[op].public)


def op_function(op: str, backend: str) -> Callable:
    """A callable taking the op's keyword arguments, running it on ``backend`` (``eager``: the
    plain definition; ``compile``: the compiled plain definition)."""
    public = _compiled_public(op) if backend == "compile" else OP_SPECS[op].public
    return on_backend(public, backend)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def minimum_traffic(inputs: OpInputs, direction: str) -> dict[str, tuple[int, int]]:
    """The minimum traffic of ``inputs.op`` in ``direction`` (``fwd`` or ``bwd``), as
    {tensor: (bytes read, bytes written)} (see the module docstring). Tensors are named as the
    op's arguments, ``y``, ``dy``, ``mask``, ``mean``, ``rstd``, and ``d<argument>`` for the
    gradients (``dx``, ``db``, ...). A gradient is wanted when ``inputs.grad_inputs`` is not
    empty; the backward writes one for each of them."""
    spec = OP_SPECS[inputs.op]
    x = inputs.x
    given = {name: t for name, t in inputs.kwargs.items() if isinstance(t, torch.Tensor)}
    stats = x.shape[0] * x.shape[1] * torch.empty(0, dtype=compute_dtype(x)).element_size()
    mask = (x.numel() if "mask" in spec.saved
            and needs_mask(spec.options["act"], spec.options.get("clamp")) else 0)
    saved = {name: size for name, size in (("mask", mask), ("mean", stats), ("rstd", stats))
             if name in spec.saved and size}
    grads = inputs.grad_inputs
    y_bytes = math.prod(output_shape(inputs.op, tuple(x.shape))) * x.element_size()
    if direction == "fwd":
        traffic = {name: (_nbytes(t), 0) for name, t in given.items()}
        traffic["y"] = (0, y_bytes)
        if grads:
            traffic.update((name, (0, size)) for name, size in saved.items())
        return traffic
    if direction != "bwd":
        raise ValueError(f"direction must be fwd or bwd, got {direction!r}")
    reads = list(spec.backward_reads) + (list(spec.dnoise_reads) if "noise" in grads else [])
    traffic = {"dy": (y_bytes, 0), **{name: (size, 0) for name, size in saved.items()}}
    traffic.update((name, (_nbytes(given[name]), 0)) for name in reads if name in given)
    traffic.update((f"d{name}", (0, _nbytes(t))) for name, t in grads.items()
                   if not (name == "x" and spec.dx_is_dy))
    return traffic


def min_bytes(inputs: OpInputs, mode: str) -> int:
    """Minimum memory traffic of one rep (:func:`minimum_traffic`): its forward, and for
    ``fwd+bwd`` its backward too."""
    directions = ("fwd", "bwd") if mode == "fwd+bwd" else ("fwd",)
    return sum(read + written for direction in directions
               for read, written in minimum_traffic(inputs, direction).values())
