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

``filtered_lrelu`` (StyleGAN3's op) runs as four kinds of StyleGAN3 layer
(:data:`FILTERED_LRELU_OPS`, ``--ops filtered_lrelu`` for all four; :class:`FilteredLayer`):
``flrelu_t``, a StyleGAN3-T layer at a constant sampling rate (up 2, down 2, 12-tap separable
Kaiser lowpass filters); ``flrelu_t_up``, a T layer that doubles the sampling rate (up 4 with 24
taps, down 2 with 12); ``flrelu_r``, a StyleGAN3-R layer (1x1 convolution before it; a 12x12
radial jinc down filter); ``flrelu_torgb``, ToRGB (no filters, gain 1, slope 1). Each has a bias
and clamp 256; the filters come from StyleGAN3's own design (:func:`lowpass_filter`), the padding
from its formula, for an output of the layer's next size (:meth:`FilteredLayer.output_size`).
Forward reads x, b and the filters and writes y and, when a gradient is wanted, the signs (2 bits
per element of the region of the upsampled tensor that fd reads,
:func:`stylegan_fast.ops.filtered_lrelu.geometry`); backward reads dy, the signs and the filters
and writes dx and db (the [C] bias and the filters, counted too, are a few hundred bytes:
negligible). The ``eager`` baseline is ``filtered_lrelu_reference`` (NVIDIA's four steps, the
upsampled tensor at full size, autograd saving what it saves), ``compile`` that compiled.
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
from ..ops.filtered_lrelu import geometry
from .baselines import BASELINES, compiled, on_backend
from .records import format_shape

EPILOGUE_OPS = ("bias_act", "bias_act_swish", "noise_inject", "adain", "style_epilogue")
RESAMPLE_OPS = ("upsample2d", "downsample2d", "filter2d")
FILTERED_LRELU_OPS = ("flrelu_t", "flrelu_t_up", "flrelu_r", "flrelu_torgb")
OPS = EPILOGUE_OPS + RESAMPLE_OPS + FILTERED_LRELU_OPS
OP_GROUPS = {"filtered_lrelu": FILTERED_LRELU_OPS}  # names that --ops expands (expand_ops)
MODES = ("fwd", "fwd+bwd")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DTYPE_ALIASES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


# ---------------------------------------------------------------- StyleGAN3's layers
MARGIN = 10  # StyleGAN3's margin around each layer's feature map, pixels per side
CLAMP = 256  # StyleGAN3's conv_clamp


def _kaiser_beta(taps: int, width: float) -> float:
    """scipy.signal.kaiser_beta(kaiser_atten(taps, width)), width relative to Nyquist."""
    atten = 2.285 * (taps - 1) * math.pi * width + 7.95
    if atten > 50:
        return 0.1102 * (atten - 8.7)
    return 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21) if atten > 21 else 0.0


def lowpass_filter(taps: int, cutoff: float, width: float, fs: float, radial: bool = False,
                   device="cpu") -> torch.Tensor:
    """StyleGAN3's ``design_lowpass_filter`` without scipy: a Kaiser-windowed sinc, float32 [taps]
    (what ``scipy.signal.firwin(taps, cutoff, width=width, fs=fs)`` returns), or with ``radial``
    a Kaiser-windowed jinc [taps, taps]; both normalized to sum 1. Frequencies in any unit (that
    of ``fs``)."""
    window = torch.kaiser_window(taps, periodic=False, beta=_kaiser_beta(taps, width / (fs / 2)),
                                 dtype=torch.float64)
    t = torch.arange(taps, dtype=torch.float64) - (taps - 1) / 2
    if radial:
        r = torch.hypot(t[:, None], t[None, :]) / fs
        jinc = torch.special.bessel_j1(2 * math.pi * cutoff * r) / (math.pi * r.clamp_min(1e-30))
        f = torch.where(r > 0, jinc, torch.full_like(r, cutoff)) * torch.outer(window, window)
    else:
        c = cutoff / (fs / 2)
        f = c * torch.sinc(c * t) * window
    return (f / f.sum()).to(torch.float32).to(device)


@dataclass(frozen=True)
class Lowpass:
    """A filter of StyleGAN3's design (:func:`lowpass_filter`), frequencies in units of the
    layer's input sampling rate."""
    taps: int
    cutoff: float
    width: float  # twice StyleGAN3's half width
    fs: float  # the upsampled tensor's sampling rate
    radial: bool = False

    def build(self, device) -> torch.Tensor:
        return lowpass_filter(self.taps, self.cutoff, self.width, self.fs, self.radial, device)


@dataclass(frozen=True)
class FilteredLayer:
    """One kind of StyleGAN3 layer's ``filtered_lrelu`` call: its x is the convolution's output
    [N, C, H, W] (``size`` + ``conv_kernel`` - 1 per axis for a feature map of ``size``), its
    output the next feature map (:meth:`output_size`), its padding StyleGAN3's formula for
    that (:meth:`padding`)."""
    up: int = 1
    down: int = 1
    fu: Lowpass = None  # None: no filter (ToRGB)
    fd: Lowpass = None
    conv_kernel: int = 1
    rate: int = 1  # output sampling rate / input sampling rate (2: a resolution-changing layer)
    gain: float = math.sqrt(2)
    slope: float = 0.2
    clamp: float = CLAMP

    def output_size(self, n: int) -> int:
        """The output's length along an axis where x has ``n`` pixels: the feature map's
        ``size`` = ``n`` - ``conv_kernel`` + 1, or with ``rate`` 2, its sampling rate doubled
        inside the same margin (``MARGIN``, less on maps under 21 pixels)."""
        size = n - (self.conv_kernel - 1)
        margin = min(MARGIN, max(size - 1, 0) // 2)
        return self.rate * (size - 2 * margin) + 2 * margin

    def padding(self, h: int, w: int) -> list:
        """[x0, x1, y0, y1] as StyleGAN3's SynthesisLayer computes it (symmetric interpretation,
        its Appendix C.3) for an output of :meth:`output_size`."""
        taps = sum(f.taps - 1 if f else 0 for f in (self.fu, self.fd))
        pads = []
        for n in (w, h):
            total = (self.output_size(n) - 1) * self.down + 1 - n * self.up + taps
            low = (total + self.up) // 2
            pads += [low, total - low]
        return pads

    def kwargs(self, h: int, w: int, device) -> dict:
        """The keyword arguments of ``filtered_lrelu`` beside x and b."""
        return {"fu": self.fu.build(device) if self.fu else None,
                "fd": self.fd.build(device) if self.fd else None, "up": self.up,
                "down": self.down, "padding": self.padding(h, w), "gain": self.gain,
                "slope": self.slope, "clamp": self.clamp}


# StyleGAN3's filters at 256 px (its SynthesisNetwork, filter_size 6, lrelu_upsampling 2), in units
# of the input sampling rate: layer 8 (a constant rate of 128: in cutoff 2 ** -2.5, out 1/4),
# layer 7 (64 -> 128: in cutoff 1/4, out 2 ** -1.5, both of 64), and StyleGAN3-R's layer 8, as T's
# with a radial down filter.
_IN_CUTOFF = 2 ** -2.5  # the previous layer's cutoff, of the sampling rate
FLRELU_T = FilteredLayer(up=2, down=2, fu=Lowpass(12, _IN_CUTOFF, 1 - 2 * _IN_CUTOFF, 2),
                         fd=Lowpass(12, 0.25, 0.5, 2), conv_kernel=3)
FLRELU_T_UP = FilteredLayer(up=4, down=2, fu=Lowpass(24, 0.25, 0.5, 4),
                            fd=Lowpass(12, 2 * _IN_CUTOFF, 2 * (1 - 2 * _IN_CUTOFF), 4),
                            conv_kernel=3, rate=2)
FLRELU_R = FilteredLayer(up=2, down=2, fu=Lowpass(12, _IN_CUTOFF, 1 - 2 * _IN_CUTOFF, 2),
                         fd=Lowpass(12, 0.25, 0.5, 2, radial=True), conv_kernel=1)
FLRELU_TORGB = FilteredLayer(gain=1.0, slope=1.0)


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
    layer: FilteredLayer = None  # filtered_lrelu: the StyleGAN3 layer it is called as


def _filtered_lrelu_spec(layer: FilteredLayer) -> OpSpec:
    return OpSpec(ops.filtered_lrelu_reference, ops.filtered_lrelu, per_channel=("b",),
                  saved=("signs",), backward_reads=("fu", "fd"), impl="filtered_lrelu",
                  output_hw=lambda h, w: (layer.output_size(h), layer.output_size(w)),
                  layer=layer)


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
    "flrelu_t": _filtered_lrelu_spec(FLRELU_T),
    "flrelu_t_up": _filtered_lrelu_spec(FLRELU_T_UP),
    "flrelu_r": _filtered_lrelu_spec(FLRELU_R),
    "flrelu_torgb": _filtered_lrelu_spec(FLRELU_TORGB),
}


def expand_ops(names) -> list:
    """``--ops`` names with each group of :data:`OP_GROUPS` replaced by its ops (order kept, no
    repeats)."""
    return list(dict.fromkeys(op for name in names for op in OP_GROUPS.get(name, (name,))))


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
    filtered_lrelu_shapes: dict = field(default_factory=dict)  # op -> its shapes (default: shapes)

    def shapes_for(self, op: str) -> tuple:
        if op in self.filtered_lrelu_shapes:
            return self.filtered_lrelu_shapes[op]
        return self.resample_shapes or self.shapes if op in RESAMPLE_OPS else self.shapes


PRESETS = {
    # CPU-friendly: one tiny odd shape keeps the compile backend's start-up cost bearable.
    "smoke": Preset(shapes=((2, 8, 9, 7),), dtypes=("float32",), reps=5, warmup=2),
    # bfloat16 first (what AMP training runs), so that a time budget cuts float32 first.
    "gpu": Preset(shapes=((32, 512, 32, 32), (16, 128, 128, 128), (4, 32, 512, 512),
                          (4, 16, 1024, 1024)),
                  dtypes=("bfloat16", "float32"),
                  resample_shapes=((8, 512, 16, 16), (8, 256, 64, 64), (4, 128, 256, 256),
                                   (4, 32, 1024, 1024)),
                  # StyleGAN3 at 256 px, batch 16: x is the convolution's output (T: 3x3, the map
                  # + 2; R: 1x1), C as the networks have them. T: layers 0-2 (36 px maps, 512
                  # channels), 8 (148 px, 512), 12 (276 px, 128); T up: layers 3 (36 -> 52),
                  # 7 (84 -> 148, 512 channels), 10 (148 -> 276, 256); R: layers 0 (1024
                  # channels at 36 px), 9 (724 at 148 px), 11 (362 at 276 px); ToRGB at 256 and
                  # 1024 px (3 channels).
                  filtered_lrelu_shapes={
                      "flrelu_t": ((16, 512, 38, 38), (16, 512, 150, 150), (16, 128, 278, 278)),
                      "flrelu_t_up": ((16, 512, 38, 38), (16, 512, 86, 86),
                                      (16, 256, 150, 150)),
                      "flrelu_r": ((16, 1024, 36, 36), (16, 724, 148, 148), (16, 362, 276, 276)),
                      "flrelu_torgb": ((16, 3, 256, 256), (4, 3, 1024, 1024)),
                  }),
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
    if spec.layer:
        kwargs.update(spec.layer.kwargs(h, w, case.device))
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
    op's arguments, ``y``, ``dy``, ``mask``, ``mean``, ``rstd``, ``signs`` and ``d<argument>``
    for the gradients (``dx``, ``db``, ...). A gradient is wanted when ``inputs.grad_inputs`` is not
    empty; the backward writes one for each of them."""
    spec = OP_SPECS[inputs.op]
    x = inputs.x
    given = {name: t for name, t in inputs.kwargs.items() if isinstance(t, torch.Tensor)}
    stats = x.shape[0] * x.shape[1] * torch.empty(0, dtype=compute_dtype(x)).element_size()
    mask = (x.numel() if "mask" in spec.saved
            and needs_mask(spec.options["act"], spec.options.get("clamp")) else 0)
    signs = 0
    if "signs" in spec.saved:
        kwargs = inputs.kwargs
        geo = geometry(x.shape[2], x.shape[3], kwargs.get("fu"), kwargs.get("fd"),
                       kwargs.get("up", 1), kwargs.get("down", 1), kwargs.get("padding", 0))
        signs = x.shape[0] * x.shape[1] * geo.sign_bytes
    saved = {name: size for name, size in (("mask", mask), ("mean", stats), ("rstd", stats),
                                           ("signs", signs)) if name in spec.saved and size}
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
