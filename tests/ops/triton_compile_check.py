"""Compile every Triton kernel specialization our launchers request for sm_90, without a GPU.

Run as a script in a process WITHOUT ``TRITON_INTERPRET`` (the interpreter never compiles, so it
misses what only the compiler rejects). ``JITFunction.run`` is replaced by a function that turns
the launch's arguments into a signature (ints equal to 1 become constexprs, as Triton specializes
them) and compiles it for ``GPUTarget("cuda", 90, 32)`` instead of launching. The launchers are
driven with CPU tensors through the triton backend's forward/backward entry points. Prints
``compiled N kernels`` on success.
"""
import inspect
import os
import sys

assert os.environ.get("TRITON_INTERPRET", "0") != "1", "run without TRITON_INTERPRET"

import torch  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402
from triton.runtime.jit import JITFunction  # noqa: E402

POINTER = {torch.float32: "*fp32", torch.float16: "*fp16", torch.bfloat16: "*bf16",
           torch.float64: "*fp64", torch.uint8: "*u8", torch.int64: "*i64"}
TARGET = GPUTarget("cuda", 90, 32)
compiled = set()


def compile_instead_of_launch(self, *args, grid, warmup, **kwargs):
    bound = inspect.signature(self.fn).bind(*args, **{k: v for k, v in kwargs.items()
                                                     if k in self.arg_names})
    signature, constexprs = {}, {}
    for index, name in enumerate(self.arg_names):
        value = bound.arguments[name]
        if index in self.constexprs or (isinstance(value, int) and not isinstance(value, bool)
                                        and value == 1):
            signature[name] = "constexpr"
            constexprs[(index,)] = value
        elif isinstance(value, torch.Tensor):
            signature[name] = POINTER[value.dtype]
        elif isinstance(value, bool):
            signature[name] = "i1"
        elif isinstance(value, int):
            signature[name] = "i32" if -2**31 <= value < 2**31 else "i64"
        elif isinstance(value, float):
            signature[name] = "fp32"
        else:
            raise TypeError(f"{self.fn.__name__}: argument {name}={value!r}")
    key = (self.fn.__name__, tuple(sorted(signature.items())), repr(sorted(constexprs.items())))
    if key not in compiled:
        options = {"num_warps": kwargs.get("num_warps", 4)}
        triton.compile(ASTSource(self, signature, constexprs), target=TARGET, options=options)
        compiled.add(key)


JITFunction.run = compile_instead_of_launch

from stylegan_fast.ops.bias_act import ACTIVATIONS  # noqa: E402
from stylegan_fast.ops.filtered_lrelu import filter_taps, geometry  # noqa: E402
from stylegan_fast.ops.triton.bias_act import BiasActTriton  # noqa: E402
from stylegan_fast.ops.triton.filtered_lrelu import FilteredLReluTriton  # noqa: E402
from stylegan_fast.ops.triton.noise_inject import NoiseInjectTriton  # noqa: E402
from stylegan_fast.ops.triton.style_epilogue import backward as epilogue_backward  # noqa: E402
from stylegan_fast.ops.triton.style_epilogue import forward as epilogue_forward  # noqa: E402
from stylegan_fast.ops.triton.upfirdn2d import UpFirDn2dTriton  # noqa: E402

assert tl.float32 is not None
SEED = torch.tensor([123])
SMOOTH = [name for name, spec in ACTIVATIONS.items() if spec.smooth]
for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
    small = dtype if dtype == torch.float64 else torch.float32
    for shape in ((2, 8, 4, 4), (2, 3, 130, 129), (1, 1, 1, 1)):
        for channels_last in (False, True):
            x = torch.randn(shape).to(dtype)
            if channels_last:
                x = x.to(memory_format=torch.channels_last)
            n, c, h, w = shape
            b, strength = torch.randn(c, dtype=small), torch.randn(c, dtype=small)
            styles = torch.randn(n, c, dtype=small), torch.randn(n, c, dtype=small)
            for clamp in (None, 0.5):
                y, mask = BiasActTriton.forward(x, b, 1, "lrelu", 0.2, 1.4, clamp, True)
                BiasActTriton.backward(y, mask, 1, "lrelu", 0.2, 1.4, clamp, True)
                BiasActTriton.forward(x, b, 1, "lrelu", 0.2, 1.4, clamp, False)
            BiasActTriton.backward(x, x.new_empty(0, dtype=torch.uint8), 1, "linear", 1.0, 1.0,
                                   None, False)
            for act in SMOOTH:  # every activation's forward; the smooth ones' backward
                for clamp, bias in ((None, b), (0.5, None)):
                    y, _ = BiasActTriton.forward(x, bias, 1, act, 0.2, 1.4, clamp, False)
                    BiasActTriton.backward_smooth(y, x, bias, 1, act, 1.4, clamp, bias is not None)
            for act in ("linear", "relu"):
                BiasActTriton.forward(x, b, 1, act, 0.2, 1.4, None, True)
            for noise in (None, torch.randn(1, 1, h, w, dtype=small)):
                NoiseInjectTriton.forward(x, strength, noise, SEED)
                NoiseInjectTriton.backward(x, strength, noise, SEED, noise is not None)
                y, mean, rstd = epilogue_forward(x, b, *styles, strength, noise, SEED, 0.2, 1.0,
                                                 1e-8, 1.0)
                epilogue_backward(y, x, b, styles[0], strength, noise, SEED, mean, rstd, 0.2, 1.0,
                                  1.0, False)
            y, mean, rstd = epilogue_forward(x, None, *styles, None, None, None, 1.0, 1.0, 1e-8,
                                             1.0, has_act=False)
            epilogue_backward(y, x, None, styles[0], None, None, None, mean, rstd, 1.0, 1.0, 1.0,
                              False, has_act=False)


def upfirdn2d_pass(x, f, separable, up, down, pad, flip, out_dtype=None):
    """One upfirdn2d pass of x, with the output size the op would compute (pad both sides)."""
    kh, kw = (f.shape[0], f.shape[0]) if separable else f.shape
    out_size = ((x.shape[2] * up[1] + 2 * pad[1] - kh) // down[1] + 1,
                (x.shape[3] * up[0] + 2 * pad[0] - kw) // down[0] + 1)
    UpFirDn2dTriton.forward(x, f, separable, up, down, pad, out_size, flip, 1.4,
                            out_dtype or x.dtype)


F4, F12, F3x3, F4x4 = torch.rand(4), torch.rand(12), torch.rand(3, 3), torch.rand(4, 4)
for dtype, out_dtype in ((torch.float32, None), (torch.float16, None), (torch.bfloat16, None),
                         (torch.float64, None), (torch.float32, torch.bfloat16)):
    for channels_last in (False, True):
        x = torch.randn(2, 8, 16, 16).to(dtype)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        upfirdn2d_pass(x, F4, True, (2, 2), (1, 1), (2, 1), False, out_dtype)   # upsample
        upfirdn2d_pass(x, F4, True, (1, 1), (2, 2), (1, 1), True, out_dtype)    # downsample
        upfirdn2d_pass(x, F3x3, False, (1, 1), (1, 1), (1, 1), False, out_dtype)  # blur
        upfirdn2d_pass(x, torch.rand(2, 2), False, (1, 1), (2, 2), (0, 0), False,  # box down
                       out_dtype)
x = torch.randn(2, 8, 16, 16)
for channels_last in (False, True):
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    upfirdn2d_pass(x, F12, True, (2, 2), (1, 1), (6, 5), True)                  # long separable
    upfirdn2d_pass(x, F4x4, False, (2, 2), (1, 1), (2, 2), True)
    upfirdn2d_pass(x, F4x4, False, (1, 1), (2, 2), (1, 1), False)
    upfirdn2d_pass(x, F12.view(1, 12), False, (2, 1), (1, 1), (6, 0), False)   # two-pass: along x
    upfirdn2d_pass(x, F12.view(12, 1), False, (1, 2), (1, 1), (0, 6), False,   # then along y
                   torch.bfloat16)
upfirdn2d_pass(x, torch.rand(12, 12), False, (1, 1), (1, 1), (5, 5), False)
upfirdn2d_pass(torch.randn(1, 1, 1, 1), F4, True, (2, 2), (1, 1), (2, 2), False)  # sizes of 1


def filtered_lrelu_passes(x, fu, fd, up, down, padding, clamp=0.5, bias=True, save_signs=True,
                          grad_dtype=None):
    """filtered_lrelu's forward pass (the op's geometry; padding x0, x1, y0, y1) and the masked
    pass of its backward (in grad_dtype: float32 for a half x whose bias needs a gradient)."""
    h, w = x.shape[2:]
    geo = geometry(h, w, fu, fd, up, down, padding)
    (uw, uh), (dw, dh) = filter_taps(fu), filter_taps(fd)
    region, out = (geo.region_h, geo.region_w), (geo.out_h, geo.out_w)
    b = torch.randn(x.shape[1], dtype=torch.float64 if x.dtype == torch.float64
                    else torch.float32) if bias else None
    _, signs = FilteredLReluTriton.forward(x, fu, fd, b, up, down, (padding[0], padding[2]),
                                           region, out, 1.4, 0.2, clamp, False, x.dtype,
                                           save_signs)
    if save_signs:
        dy = torch.empty((x.shape[0], x.shape[1], *out), dtype=x.dtype,
                         memory_format=torch.channels_last if x.is_contiguous(
                             memory_format=torch.channels_last) else torch.contiguous_format)
        FilteredLReluTriton.masked(dy, fd, fu, signs, down, up, (dw - 1, dh - 1),
                                   (uw - 1 - padding[0], uh - 1 - padding[2]), region, (h, w),
                                   1.4, 0.2, 4.0, True, grad_dtype or x.dtype)


INF, ONE = float("inf"), torch.ones(1, 1)  # no clamp; no filter (the op passes [[1]])
for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.float64):
    for channels_last in (False, True):
        x = torch.randn(2, 8, 20, 20).to(dtype)
        if channels_last:
            x = x.to(memory_format=torch.channels_last)
        filtered_lrelu_passes(x, F12, F12, 2, 2, (11, 10, 11, 10))  # StyleGAN3 layer
        filtered_lrelu_passes(x, ONE, ONE, 1, 1, (0, 0, 0, 0))  # ToRGB: no filters
filtered_lrelu_passes(torch.randn(2, 8, 20, 20).half(), F12, F12, 2, 2, (11, 10, 11, 10),
                      grad_dtype=torch.float32)
for channels_last in (False, True):
    x = torch.randn(2, 8, 12, 12)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    filtered_lrelu_passes(x, torch.rand(24), F12, 4, 2, (20, 19, 21, 18), INF)  # up 4, 24 taps
    filtered_lrelu_passes(x, torch.rand(6), torch.rand(7, 7), 2, 2, (4, 3, 5, 2))  # radial down
    filtered_lrelu_passes(x, F3x3, torch.rand(4, 2), 3, 1, (-1, 2, 3, -2))  # 2-D, up 3, crop
    filtered_lrelu_passes(x, F12, F12, 2, 2, (11, 10, 11, 10), INF, False, False)  # no grad
    filtered_lrelu_passes(x, ONE, torch.rand(32, 32), 1, 4, (16, 15, 16, 15))  # 32 x 32 taps

print(f"compiled {len(compiled)} kernels", file=sys.stderr)
print(f"compiled {len(compiled)} kernels")
