"""Official-format StyleGAN1 networks for tests: fabricated pickles and an independent reference.

Written from the semantics in DESIGN.md sections 2 and 9 (no NVIDIA code), and deliberately
independent of ``stylegan_fast``: only numpy, torch and the standard library.

- ``official_networks`` builds ``(G, D, Gs)`` stand-ins for ``dnnlib.tflib.network.Network`` with
  random float32 variables under the official names and layouts (TF: dense [in, out], conv
  [kh, kw, in, out], weights stored unscaled; mapping weights carry the 1/lrmul = 100x factor).
- ``write_official_pickle`` writes them exactly as NVIDIA's numpy-1.x era files do; only the
  globals in ``OFFICIAL_GLOBALS`` occur. ``read_official_pickle`` reads them back (restricted).
- ``official_generator`` / ``official_discriminator`` compute, in float64 NCHW, what the TF
  networks output from those raw variables at lod 0 with the constant ``noise{i}`` maps.
"""
import io
import math
import pickle
import pickletools

import numpy as np
import torch
import torch.nn.functional as F

SQRT2 = math.sqrt(2.0)
OFFICIAL_GLOBALS = frozenset({
    "numpy.core.multiarray _reconstruct", "numpy ndarray", "numpy dtype",
    "numpy.core.multiarray scalar", "dnnlib.tflib.network Network"})


class Network:
    """Pickles like dnnlib.tflib.network.Network: NEWOBJ of that global, then BUILD(state dict).

    State keys, in order: version, name, static_kwargs, components, build_module_src,
    build_func_name, variables (a list of (local name, numpy value)). Attributes mirror them.
    """

    def __init__(self, **state):
        self.__dict__.update(state)

    def __getstate__(self):
        return dict(self.__dict__)

    def __setstate__(self, state):
        self.__dict__.update(state)


def _network(name, func, static_kwargs, components, variables):
    src = f"def {func}(*args, **kwargs):\n    raise RuntimeError('never executed')\n"
    return Network(version=3, name=name, static_kwargs=dict(static_kwargs),
                   components=dict(components), build_module_src=src, build_func_name=func,
                   variables=list(variables))


def _channels(fmap_base, fmap_max):
    """C_R = nf(log2 R - 1) = min(fmap_base // (R // 2), fmap_max) (fmap_decay 1)."""
    return lambda r: min(fmap_base // (r // 2), fmap_max)


def _generator_vars(randn, res_log2, nc, ch, latent, dlatent, mapping_layers):
    """(own, mapping, synthesis) variable lists of one G (or Gs), random, official order/layout."""
    own = [("lod", np.float32(0.0)), ("dlatent_avg", randn(dlatent, s=0.5))]
    mapping = []
    for i in range(mapping_layers):
        fan_in = latent if i == 0 else dlatent
        mapping += [(f"Dense{i}/weight", randn(fan_in, dlatent, s=100.0)),  # N(0, 1/lrmul)
                    (f"Dense{i}/bias", randn(dlatent, s=0.2))]
    num_layers = 2 * (res_log2 - 1)
    syn = [("lod", np.float32(0.0))]
    syn += [(f"noise{i}", randn(1, 1, 4 << (i // 2), 4 << (i // 2))) for i in range(num_layers)]

    def layer(scope, cin, cout, conv=True):
        if conv:
            syn.append((f"{scope}/weight", randn(3, 3, cin, cout)))
        syn.extend([(f"{scope}/Noise/weight", randn(cout, s=0.2)),
                    (f"{scope}/bias", randn(cout, s=0.2)),
                    (f"{scope}/StyleMod/weight", randn(dlatent, 2 * cout)),
                    (f"{scope}/StyleMod/bias", randn(2 * cout, s=0.2))])

    syn.append(("4x4/Const/const", randn(1, ch(4), 4, 4)))
    layer("4x4/Const", ch(4), ch(4), conv=False)
    layer("4x4/Conv", ch(4), ch(4))
    for r in range(2, res_log2 + 1):
        R = 1 << r
        if R > 4:
            layer(f"{R}x{R}/Conv0_up", ch(R // 2), ch(R))
            layer(f"{R}x{R}/Conv1", ch(R), ch(R))
        syn += [(f"ToRGB_lod{res_log2 - r}/weight", randn(1, 1, ch(R), nc)),
                (f"ToRGB_lod{res_log2 - r}/bias", randn(nc, s=0.2))]
    return own, mapping, syn


def official_networks(resolution, num_channels=3, fmap_base=8192, fmap_max=512, latent_size=512,
                      dlatent_size=512, mapping_layers=8, mbstd_group_size=4, seed=0,
                      static_kwargs=None):
    """{"G", "D", "Gs"}: official-layout networks with random float32 weights (seeded).

    Gs has G's variable names but other values. Biases, noise strengths, style biases and
    dlatent_avg are non-zero so that a mis-mapped one shows. static_kwargs holds num_channels,
    resolution, label_size=0 and every argument that differs from its default (mapping also
    dlatent_broadcast; D also mbstd_group_size); a given ``static_kwargs`` is merged over all five.
    """
    res_log2 = round(math.log2(resolution))
    assert resolution == 1 << res_log2 and resolution >= 4, resolution
    rng = np.random.RandomState(seed)

    def randn(*shape, s=1.0):  # float32 N(0, s^2)
        return (rng.standard_normal(shape) * s).astype(np.float32)

    ch = _channels(fmap_base, fmap_max)
    num_layers = 2 * (res_log2 - 1)
    base = {"num_channels": num_channels, "resolution": resolution, "label_size": 0}
    base.update({k: v for k, v, default in [
        ("fmap_base", fmap_base, 8192), ("fmap_max", fmap_max, 512),
        ("latent_size", latent_size, 512), ("dlatent_size", dlatent_size, 512),
        ("mapping_fmaps", dlatent_size, 512), ("mapping_layers", mapping_layers, 8)]
        if v != default})
    extra = dict(static_kwargs or {})
    kw_g = {**base, **extra}
    kw_map = {**base, "dlatent_broadcast": num_layers, **extra}
    d_own = {"mbstd_group_size": mbstd_group_size} if mbstd_group_size != 4 else {}
    kw_d = {**base, **d_own, **extra}

    def generator(name):
        own, mapping, syn = _generator_vars(randn, res_log2, num_channels, ch, latent_size,
                                            dlatent_size, mapping_layers)
        comps = {"mapping": _network("G_mapping", "G_mapping", kw_map, {}, mapping),
                 "synthesis": _network("G_synthesis", "G_synthesis", kw_g, {}, syn)}
        return _network(name, "G_style", kw_g, comps, own)

    G, Gs = generator("G"), generator("Gs")
    d = [("lod", np.float32(0.0))]
    for r in range(res_log2, 1, -1):
        R = 1 << r
        d += [(f"FromRGB_lod{res_log2 - r}/weight", randn(1, 1, num_channels, ch(R))),
              (f"FromRGB_lod{res_log2 - r}/bias", randn(ch(R), s=0.2))]
        if R > 4:
            d += [(f"{R}x{R}/Conv0/weight", randn(3, 3, ch(R), ch(R))),
                  (f"{R}x{R}/Conv0/bias", randn(ch(R), s=0.2)),
                  (f"{R}x{R}/Conv1_down/weight", randn(3, 3, ch(R), ch(R // 2))),
                  (f"{R}x{R}/Conv1_down/bias", randn(ch(R // 2), s=0.2))]
    c4, c0 = ch(4), min(fmap_base, fmap_max)
    d += [("4x4/Conv/weight", randn(3, 3, c4 + (mbstd_group_size > 1), c4)),  # + stddev channel
          ("4x4/Conv/bias", randn(c4, s=0.2)),
          ("4x4/Dense0/weight", randn(c4 * 16, c0)), ("4x4/Dense0/bias", randn(c0, s=0.2)),
          ("4x4/Dense1/weight", randn(c0, 1)), ("4x4/Dense1/bias", randn(1, s=0.2))]
    D = _network("D", "D_basic", kw_d, {}, d)
    return {"G": G, "D": D, "Gs": Gs}


# The objects behind the official global names (numpy 1.x and 2.x alike).
_RECONSTRUCT = np.zeros(1, np.float32).__reduce__()[0]
_SCALAR = np.float32(0).__reduce__()[0]
_GLOBALS = [(_RECONSTRUCT, "numpy.core.multiarray", "_reconstruct"),
            (np.ndarray, "numpy", "ndarray"),
            (np.dtype, "numpy", "dtype"), (_SCALAR, "numpy.core.multiarray", "scalar"),
            (Network, "dnnlib.tflib.network", "Network")]


class _OfficialPickler(pickle._Pickler):
    """Pure-Python pickler writing only the official global names (numpy 1.x module paths)."""

    def reducer_override(self, obj):
        if type(obj) is np.ndarray:  # never protocol-5 buffers: always _reconstruct + bytes
            return obj.__reduce__()
        return NotImplemented

    def save_global(self, obj, name=None):
        found = [(m, n) for o, m, n in _GLOBALS if o is obj]
        if not found:
            raise pickle.PicklingError(f"not an official StyleGAN1 global: {obj!r}")
        module, name = found[0]
        if self.proto >= 4:
            self.save(module)
            self.save(name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode("ascii"))
        self.memoize(obj)


def write_official_pickle(path, networks, protocol=4, order=("G", "D", "Gs")):
    """Pickle tuple(networks[k] for k in order) to path as NVIDIA's released files are.

    protocol 4 (the released files) writes STACK_GLOBAL, protocol 3 GLOBAL; below 3, bytes would
    need the extra global codecs.encode, so they are refused.
    """
    if protocol < 3:
        raise ValueError(f"protocol {protocol}: official-format pickles need protocol >= 3")
    buf = io.BytesIO()
    _OfficialPickler(buf, protocol=protocol).dump(tuple(networks[k] for k in order))
    with open(path, "wb") as f:
        f.write(buf.getvalue())
    return path


class _OfficialUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        for obj, m, n in _GLOBALS:
            if (m, n) == (module, name):
                return obj
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed")


def read_official_pickle(path):
    """Load a pickle written by write_official_pickle (only OFFICIAL_GLOBALS are resolved)."""
    with open(path, "rb") as f:
        return _OfficialUnpickler(f, encoding="latin1").load()


_STRING_OPS = {"UNICODE", "BINUNICODE", "SHORT_BINUNICODE", "BINUNICODE8",
               "STRING", "BINSTRING", "SHORT_BINSTRING"}


def official_globals(path):
    """Set of "module name" strings of every global a pickle references (GLOBAL, STACK_GLOBAL).

    Simulates the unpickler's stack and memo symbolically (strings only) via pickletools metadata.
    """
    mark, found, stack, memo = object(), set(), [], {}
    with open(path, "rb") as f:
        for op, arg, _ in pickletools.genops(f):
            if op.name in ("GLOBAL", "INST"):
                found.add(arg)
            elif op.name == "STACK_GLOBAL":
                found.add(f"{stack[-2]} {stack[-1]}")
            if op.name == "MEMOIZE":
                memo[len(memo)] = stack[-1]
                continue
            if op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                memo[arg] = stack[-1]
                continue
            if op.name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
                continue
            before = op.stack_before
            if pickletools.markobject in before:  # pops to the mark, then the items below it
                del stack[len(stack) - 1 - stack[::-1].index(mark):]
                before = before[:before.index(pickletools.markobject)]
            del stack[len(stack) - len(before):]
            if op.name == "MARK":
                stack.append(mark)
            else:
                value = arg if op.name in _STRING_OPS else None
                stack.extend([value] * len(op.stack_after))
    return found


# ---------------------------------------------------------------- reference forward passes (f64)

def _vars(net):
    return {k: torch.as_tensor(np.asarray(v, dtype=np.float64)) for k, v in net.variables}


def _scaled(w, gain, lrmul=1.0):
    """Equalized lr: w * gain / sqrt(fan_in) * lrmul, fan_in = prod of all dims but the last."""
    return w * (gain / math.sqrt(w[..., 0].numel()) * lrmul)


def _lrelu(x):
    return F.leaky_relu(x, 0.2)


def _col(b):
    return b.view(1, -1, 1, 1)


def _conv(x, w_hwio, stride=1, padding=None):
    """TF conv2d (cross-correlation, SAME for odd k, stride 1) with an HWIO filter."""
    k = w_hwio.shape[0]
    return F.conv2d(x, w_hwio.permute(3, 2, 0, 1), stride=stride,
                    padding=k // 2 if padding is None else padding)


def _blur(x):
    """Depthwise [1,2,1] x [1,2,1] / 16, zero padding 1."""
    f = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype)
    f = (torch.outer(f, f) / 16).expand(x.shape[1], 1, 3, 3)
    return F.conv2d(x, f, padding=1, groups=x.shape[1])


def _summed_kernel(w):
    """[3,3,a,b] -> [4,4,a,b]: zero-pad to 5x5, sum of the four shifted 4x4 windows."""
    p = w.new_zeros((5, 5) + tuple(w.shape[2:]))
    p[1:4, 1:4] = w
    return p[1:, 1:] + p[:-1, 1:] + p[1:, :-1] + p[:-1, :-1]


def _fused_up(x, w):
    """TF conv2d_transpose(x, w4, [N, out, 2H, 2W], strides 2, SAME), w4 = summed w^T [4,4,out,in].

    It is the gradient of conv2d(y, w4 as HWIO from `out` to `in` channels, stride 2, pad 1);
    torch's conv_transpose2d takes that same conv weight [in, out, 4, 4] (no flip).
    """
    w4 = _summed_kernel(w.permute(0, 1, 3, 2))  # [4, 4, out, in]
    return F.conv_transpose2d(x, w4.permute(3, 2, 0, 1), stride=2, padding=1)


def _fused_down(x, w):
    """TF conv2d(x, 0.25 * summed w [4,4,in,out], strides 2, SAME = pad 1 each side), no flip."""
    return _conv(x, _summed_kernel(w) * 0.25, stride=2, padding=1)


def official_generator(Gs, latents, truncation_psi=0.7, truncation_cutoff=8):
    """Gs(z) at lod 0 with the constant noise maps, no labels: images [N, num_channels, R, R] f64.

    mapping: x = z * rsqrt(mean(z^2) + 1e-8); per Dense{i}: x = lrelu(x @ (W * sqrt2/sqrt(in)
    * lrmul) + b * lrmul), lrmul 0.01; w broadcast per layer; truncation w = avg + (w - avg) * c,
    c = psi for layers < cutoff else 1 (skipped when psi or cutoff is None).
    synthesis: const -> epilogue -> conv -> epilogue; per R >= 8: up-conv (nearest x2 + conv,
    fused transposed conv at R >= 128) -> blur -> epilogue -> conv -> epilogue; ToRGB_lod0.
    """
    mapping, syn = Gs.components["mapping"], _vars(Gs.components["synthesis"])
    mp, own = _vars(mapping), _vars(Gs)
    lrmul = mapping.static_kwargs.get("mapping_lrmul", 0.01)
    x = torch.as_tensor(np.asarray(latents), dtype=torch.float64)
    x = x * torch.rsqrt((x * x).mean(1, keepdim=True) + 1e-8)
    i = 0
    while f"Dense{i}/weight" in mp:
        x = _lrelu(x @ _scaled(mp[f"Dense{i}/weight"], SQRT2, lrmul) + mp[f"Dense{i}/bias"] * lrmul)
        i += 1
    num_layers = sum(1 for k in syn if k.startswith("noise"))
    w = x[:, None, :].expand(-1, num_layers, -1)  # [N, num_layers, dlatent]
    if truncation_psi is not None and truncation_cutoff is not None:
        coefs = torch.ones(num_layers, 1, dtype=torch.float64)
        coefs[torch.arange(num_layers) < truncation_cutoff] = float(truncation_psi)
        avg = own["dlatent_avg"]
        w = avg + (w - avg) * coefs
    return _synthesis(syn, w)


def _epilogue(v, x, i, scope, w):
    """noise*strength[c] -> +bias -> lrelu -> instance norm -> x * (s + 1) + b, [s, b] = A(w_i)."""
    c = x.shape[1]
    x = x + v[f"noise{i}"] * _col(v[f"{scope}/Noise/weight"])  # noise [1, 1, H, W]
    x = _lrelu(x + _col(v[f"{scope}/bias"]))
    x = x - x.mean((2, 3), keepdim=True)
    x = x * torch.rsqrt((x * x).mean((2, 3), keepdim=True) + 1e-8)
    style = w[:, i] @ _scaled(v[f"{scope}/StyleMod/weight"], 1.0) + v[f"{scope}/StyleMod/bias"]
    return x * (style[:, :c, None, None] + 1) + style[:, c:, None, None]  # style [N, 2C]


def _synthesis(v, w):
    num_layers = w.shape[1]
    res_log2 = num_layers // 2 + 1
    x = v["4x4/Const/const"].expand(w.shape[0], -1, -1, -1)  # [N, C4, 4, 4]
    x = _epilogue(v, x, 0, "4x4/Const", w)
    x = _epilogue(v, _conv(x, _scaled(v["4x4/Conv/weight"], SQRT2)), 1, "4x4/Conv", w)
    for k in range(1, res_log2 - 1):
        R = 4 << k
        s = f"{R}x{R}"
        wt = _scaled(v[f"{s}/Conv0_up/weight"], SQRT2)
        if R >= 128:
            x = _fused_up(x, wt)
        else:
            x = _conv(x.repeat_interleave(2, 2).repeat_interleave(2, 3), wt)
        x = _epilogue(v, _blur(x), 2 * k, f"{s}/Conv0_up", w)
        x = _conv(x, _scaled(v[f"{s}/Conv1/weight"], SQRT2))
        x = _epilogue(v, x, 2 * k + 1, f"{s}/Conv1", w)
    return _conv(x, _scaled(v["ToRGB_lod0/weight"], 1.0)) + _col(v["ToRGB_lod0/bias"])


def _minibatch_stddev(x, group_size):
    """Appends a channel: per group of G = min(group_size, N) samples (sample n in member n % M,
    M = N / G), mean over C,H,W of sqrt(var over the group + 1e-8); tiled over H, W."""
    n, c, h, wd = x.shape
    g = min(group_size, n)
    y = x.reshape(g, n // g, c, h, wd)  # TF reshape: sample n at (n // M, n % M)
    y = torch.sqrt(((y - y.mean(0)) ** 2).mean(0) + 1e-8).mean((1, 2, 3))  # [M]
    y = y.repeat(g).view(n, 1, 1, 1).expand(n, 1, h, wd)  # tf.tile: [M] block repeated G times
    return torch.cat([x, y], 1)


def official_discriminator(D, images):
    """D(images) at lod 0, no labels: scores [N, 1] f64.

    FromRGB_lod0 + lrelu; per R down to 8: lrelu(conv0) -> blur -> down-conv (conv + 2x2 avg,
    fused 0.25-summed stride-2 conv at R >= 128) + b, lrelu; 4x4: minibatch stddev -> lrelu(conv)
    -> lrelu(dense0 on NCHW flatten) -> dense1 (gain 1).
    """
    v = _vars(D)
    x = torch.as_tensor(np.asarray(images), dtype=torch.float64)
    R = x.shape[2]
    x = _lrelu(_conv(x, _scaled(v["FromRGB_lod0/weight"], SQRT2)) + _col(v["FromRGB_lod0/bias"]))
    while R > 4:
        s = f"{R}x{R}"
        x = _lrelu(_conv(x, _scaled(v[f"{s}/Conv0/weight"], SQRT2)) + _col(v[f"{s}/Conv0/bias"]))
        x = _blur(x)
        wt = _scaled(v[f"{s}/Conv1_down/weight"], SQRT2)
        x = _fused_down(x, wt) if R >= 128 else F.avg_pool2d(_conv(x, wt), 2)
        x = _lrelu(x + _col(v[f"{s}/Conv1_down/bias"]))
        R //= 2
    group_size = D.static_kwargs.get("mbstd_group_size", 4)
    if group_size > 1:
        x = _minibatch_stddev(x, group_size)
    x = _lrelu(_conv(x, _scaled(v["4x4/Conv/weight"], SQRT2)) + _col(v["4x4/Conv/bias"]))
    x = x.reshape(x.shape[0], -1)  # NCHW flatten, [N, C4 * 16]
    x = _lrelu(x @ _scaled(v["4x4/Dense0/weight"], SQRT2) + v["4x4/Dense0/bias"])
    return x @ _scaled(v["4x4/Dense1/weight"], 1.0) + v["4x4/Dense1/bias"]
