"""csrc/filtered_lrelu.cu's index math, checked without a GPU: a line-by-line Python emulation of
its launch planning (plan_smem, plan_tiles) and of its kernel's tile loop (z patch, stage 1 by
quads, activation and codes, stage 2, the shared-memory offsets and aliasing) against the ref
backend's ``Reference.forward`` / ``Reference.masked``. Between two __syncthreads the emulation
also checks that no shared element is both read and written (no race), that every access stays
inside the block's dynamic shared memory, and that every byte of signs is written exactly once.
Keep it in step with the kernel: the same formulas, C++ integer semantics."""
import importlib
import math

import numpy as np
import pytest
import torch

module = importlib.import_module("stylegan_fast.ops.filtered_lrelu")  # ops.filtered_lrelu: the op

MAX_TILE = 32      # kMaxTile
SMEM_DEFAULT = 48 * 1024


def cdiv(a: int, b: int) -> int:
    """C++ '/' on ints: truncation toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def floor_div(a, b):
    q = cdiv(a, b)
    return q - 1 if q * b > a else q


def floor_mod(a, b):
    return a - floor_div(a, b) * b


def ceil_div_floor(a, b):
    return -floor_div(-a, b)


def round4(v):
    return (v + 3) & ~3


def plan_smem(g, masked):
    d, TH, TW = g["down"], g["TH"], g["TW"]
    vh, vw = (TH - 1) * d + g["K2h"], (TW - 1) * d + g["K2w"]
    if not masked:
        vh, vw = max(vh, TH * d), max(vw, TW * d)
    vwa = (vw + (3 if masked else 0) + 3) & ~3
    zh = (vh + g["K1h"] - 1 + g["up"] - 1) // g["up"]
    zw = (vwa + g["K1w"] - 1 + g["up"] - 1) // g["up"]
    v, zp, h1 = vh * vwa, zh * zw, zh * vwa
    h2 = ((TH - 1) * d + g["K2h"]) * TW
    r0 = max(v, zp if g["sep1"] else 0)
    r1 = max(h1 if g["sep1"] else zp, h2 if g["sep2"] else 0)
    g["VWA"], g["ZW"] = vwa, zw
    g["off_w1"] = 0
    g["off_w2"] = round4(g["T1"])
    g["off_r0"] = g["off_w2"] + round4(g["T2"])
    g["off_r1"] = g["off_r0"] + ((r0 + 3) & ~3)
    return g["off_r1"] + r1


def plan_tiles(g, masked, a_bytes, budget):
    align = 1 if masked else 4 // math.gcd(g["down"], 4)
    g["TH"], g["TW"] = min(g["OH"], MAX_TILE), min(g["OW"], MAX_TILE)
    while True:
        nbytes = plan_smem(g, masked) * a_bytes
        if nbytes <= budget:
            break
        tw_half = cdiv(cdiv(g["TW"] + 1, 2) + align - 1, align) * align
        if g["TH"] >= g["TW"] and g["TH"] > 1:
            g["TH"] = cdiv(g["TH"] + 1, 2)
        elif tw_half < g["TW"]:
            g["TW"] = tw_half
        elif g["TH"] > 1:
            g["TH"] = cdiv(g["TH"] + 1, 2)
        else:
            return None
    g["tiles_x"] = -(-g["OW"] // g["TW"])
    g["tiles_y"] = -(-g["OH"] // g["TH"])
    g["tiles"] = g["N"] * g["C"] * g["tiles_x"] * g["tiles_y"]
    return nbytes


class Shared:
    """The block's dynamic shared memory (A elements), with a read/write log per phase."""

    def __init__(self, size):
        self.mem = [float("nan")] * size
        self.reads, self.writes = set(), set()

    def __getitem__(self, i):
        assert 0 <= i < len(self.mem), (i, len(self.mem))
        self.reads.add(i)
        value = self.mem[i]
        assert not math.isnan(value), f"read of an unwritten shared element {i}"
        return value

    def __setitem__(self, i, value):
        assert 0 <= i < len(self.mem), (i, len(self.mem))
        assert i not in self.writes, f"shared element {i} written twice in one phase"
        self.writes.add(i)
        self.mem[i] = value

    def sync(self):
        race = self.reads & self.writes
        assert not race, f"read and written between two barriers: {sorted(race)[:5]}"
        self.reads, self.writes = set(), set()


def emulate(masked, z, bias, f1, f2, signs, up, down, pad1, pad2, region, out_size, gain1,
            gain2, act_gain, slope, clamp, flip, budget=SMEM_DEFAULT, channels_last=False):
    """The launcher and the kernel on float64 numpy arrays (A = double: 8-byte elements)."""
    N, C, H, W = z.shape
    f1 = f1.numpy().astype(np.float64)
    f2 = f2.numpy().astype(np.float64)
    g = {"N": N, "C": C, "H": H, "W": W, "RH": region[0], "RW": region[1], "OH": out_size[0],
         "OW": out_size[1], "K1h": f1.shape[0], "K1w": f1.shape[-1], "K2h": f2.shape[0],
         "K2w": f2.shape[-1], "sep1": f1.ndim == 1, "sep2": f2.ndim == 1, "up": up,
         "down": down, "pad1_x": pad1[0], "pad1_y": pad1[1],
         "pad2_x": pad2[0] if masked else 0, "pad2_y": pad2[1] if masked else 0}
    g["T1"], g["T2"] = f1.size, f2.size
    if budget < 1:  # a fraction of what a whole plane needs (several tiles), or the least
        smallest = dict(g)
        assert plan_tiles(smallest, masked, 8, 0) is None
        budget = max(int(plan_tiles(dict(g), masked, 8, SMEM_DEFAULT) * budget),
                     plan_smem(smallest, masked) * 8)
    nbytes = plan_tiles(g, masked, 8, budget)
    assert nbytes is not None
    sm = Shared(nbytes // 8)
    y = np.full((N, C, *out_size), np.nan)
    written = np.zeros((N, C, region[0], (region[1] + 3) // 4), dtype=np.int64)
    flat1, flat2 = f1.reshape(-1), f2.reshape(-1)
    for i in range(g["T1"]):  # prepare_fir
        sm[g["off_w1"] + i] = flat1[i if flip else g["T1"] - 1 - i]
    for i in range(g["T2"]):
        sm[g["off_w2"] + i] = flat2[i if flip else g["T2"] - 1 - i]
    w1, w2, vb, hb = g["off_w1"], g["off_w2"], g["off_r0"], g["off_r1"]
    zb = vb if g["sep1"] else hb
    m_neg = act_gain * slope
    for tile in range(g["tiles"]):
        if channels_last:
            c, rest = tile % C, tile // C
            tx, rest = rest % g["tiles_x"], rest // g["tiles_x"]
            ty, n = rest % g["tiles_y"], rest // g["tiles_y"]
        else:
            tx, rest = tile % g["tiles_x"], tile // g["tiles_x"]
            ty, rest = rest % g["tiles_y"], rest // g["tiles_y"]
            n, c = rest // C, rest % C
        o0 = ty * g["TH"]
        th = min(g["TH"], g["OH"] - o0)
        p0 = tx * g["TW"]
        tw = min(g["TW"], g["OW"] - p0)
        r0 = o0 * down - g["pad2_y"]
        s0 = p0 * down - g["pad2_x"]
        s0a = s0 & ~3
        vh, vw = (th - 1) * down + g["K2h"], (tw - 1) * down + g["K2w"]
        if not masked:
            vh, vw = max(vh, th * down), max(vw, tw * down)
        vwa = (s0 - s0a + vw + 3) & ~3
        nq = vwa >> 2
        ur0, uc0 = r0 - g["pad1_y"], s0a - g["pad1_x"]
        zr0, zc0 = ceil_div_floor(ur0, up), ceil_div_floor(uc0, up)
        zh = max(0, floor_div(ur0 + vh + g["K1h"] - 2, up) + 1 - zr0)
        zw = max(0, floor_div(uc0 + vwa + g["K1w"] - 2, up) + 1 - zc0)
        sm.sync()
        sm.mem[vb:] = [float("nan")] * (len(sm.mem) - vb)  # no data survives from the last tile
        size_r0, size_r1 = hb - vb, len(sm.mem) - hb
        assert zw <= g["ZW"] and vwa <= g["VWA"] and vh * g["VWA"] <= size_r0
        assert zh * g["ZW"] <= (size_r0 if g["sep1"] else size_r1)
        assert not g["sep1"] or zh * g["VWA"] <= size_r1
        assert not g["sep2"] or ((th - 1) * down + g["K2h"]) * g["TW"] <= size_r1
        b = bias[c] if (not masked and bias is not None) else 0.0
        for i in range(zh * zw):  # 1. the z patch
            zr, zc = cdiv(i, zw), i - cdiv(i, zw) * zw
            iy, ix = zr0 + zr, zc0 + zc
            v = 0.0
            if 0 <= iy < H and 0 <= ix < W:
                v = float(z[n, c, iy, ix]) + b
            sm[zb + zr * g["ZW"] + zc] = v
        sm.sync()
        if g["sep1"]:  # 2. stage 1, x pass
            for i in range(zh * vwa):
                zr = cdiv(i, vwa)
                sl = i - zr * vwa
                t = uc0 + sl
                k0 = floor_mod(-t, up)
                zp = zb + zr * g["ZW"] + (cdiv(t + k0, up) - zc0)
                acc, k = 0.0, k0
                while k < g["K1w"]:
                    acc += sm[zp] * sm[w1 + k]
                    k += up
                    zp += 1
                sm[hb + zr * g["VWA"] + sl] = acc
            sm.sync()
        own_r0, own_c0 = o0 * down, p0 * down
        own_r1 = g["RH"] if o0 + th == g["OH"] else (o0 + th) * down
        own_c1 = g["RW"] if p0 + tw == g["OW"] else (p0 + tw) * down
        for i in range(vh * nq):  # v by quads
            rl = cdiv(i, nq)
            sl = (i - rl * nq) * 4
            r, sq = r0 + rl, s0a + sl
            row_in = 0 <= r < g["RH"]
            acc = [0.0] * 4
            if row_in:
                t = ur0 + rl
                k0 = floor_mod(-t, up)
                zi = cdiv(t + k0, up) - zr0
                if g["sep1"]:
                    hp, k = hb + zi * g["VWA"] + sl, k0
                    while k < g["K1h"]:
                        wk = sm[w1 + k]
                        for j in range(4):
                            acc[j] += sm[hp + j] * wk
                        k += up
                        hp += g["VWA"]
                else:
                    kx0, zj = [0] * 4, [0] * 4
                    for j in range(4):
                        tc = uc0 + sl + j
                        kx0[j] = floor_mod(-tc, up)
                        zj[j] = cdiv(tc + kx0[j], up) - zc0
                    zrow, wrow, ky = zb + zi * g["ZW"], w1 + k0 * g["K1w"], k0
                    while ky < g["K1h"]:
                        for j in range(4):
                            zp, ssum, kx = zrow + zj[j], 0.0, kx0[j]
                            while kx < g["K1w"]:
                                ssum += sm[zp] * sm[wrow + kx]
                                kx += up
                                zp += 1
                            acc[j] += ssum
                        ky += up
                        zrow += g["ZW"]
                        wrow += up * g["K1w"]
            a = [0.0] * 4
            if masked:
                byte = 0
                if row_in and 0 <= sq < g["RW"]:
                    byte = int(signs[n, c, r, sq >> 2])
                for j in range(4):
                    s = sq + j
                    code = (byte >> (2 * j)) & 3
                    m = 0.0 if code & 2 else (m_neg if code & 1 else act_gain)
                    a[j] = acc[j] * gain1 * m if row_in and 0 <= s < g["RW"] else 0.0
            else:
                byte = 0
                for j in range(4):
                    s = sq + j
                    inside = row_in and 0 <= s < g["RW"]
                    v = acc[j] * gain1
                    t = (v if v > 0 else v * slope) * act_gain
                    code = (1 if v <= 0 else 0) | (2 if abs(t) > clamp else 0)
                    t = clamp if t > clamp else (-clamp if t < -clamp else t)  # noqa: FURB136
                    a[j] = t if inside else 0.0
                    byte |= (code if inside else 0) << (2 * j)
                if signs is not None and own_r0 <= r < own_r1 and own_c0 <= sq < own_c1:
                    signs[n, c, r, sq >> 2] = byte
                    written[n, c, r, sq >> 2] += 1
            for j in range(4):
                sm[vb + rl * g["VWA"] + sl + j] = a[j]
        sm.sync()
        off = s0 - s0a  # 3. stage 2
        if g["sep2"]:
            vh2 = (th - 1) * down + g["K2h"]
            for i in range(vh2 * tw):
                rl = cdiv(i, tw)
                pl = i - rl * tw
                vp = vb + rl * g["VWA"] + off + pl * down
                sm[hb + rl * g["TW"] + pl] = sum(sm[vp + k] * sm[w2 + k] for k in range(g["K2w"]))
            sm.sync()
        for i in range(th * tw):
            ol = cdiv(i, tw)
            pl = i - ol * tw
            if g["sep2"]:
                hp = hb + ol * down * g["TW"] + pl
                acc = sum(sm[hp + k * g["TW"]] * sm[w2 + k] for k in range(g["K2h"]))
            else:
                vp = vb + ol * down * g["VWA"] + off + pl * down
                acc = sum(sm[vp + ky * g["VWA"] + kx] * sm[w2 + ky * g["K2w"] + kx]
                          for ky in range(g["K2h"]) for kx in range(g["K2w"]))
            assert np.isnan(y[n, c, o0 + ol, p0 + pl])
            y[n, c, o0 + ol, p0 + pl] = acc * gain2
    assert not np.isnan(y).any()
    if signs is not None and not masked:
        assert (written == 1).all(), "every byte of signs written exactly once"
    return y, g


def fir(shape, seed):
    f = torch.rand(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (f + 0.1).float()


# (fu shape, fd shape, up, down, padding [x0, x1, y0, y1], clamp)
CASES = [
    ((4,), (3,), 2, 2, [3, 2, 2, 3], 0.7),
    ((6,), (2, 3), 2, 2, [4, 3, 5, 2], math.inf),
    ((3, 5), (4, 2), 3, 1, [-1, 2, 3, -2], 1.0),
    ((1,), (5,), 1, 4, [2, 3, 2, 3], 0.5),
    ((8,), (1,), 4, 1, [2, -3, 1, 0], math.inf),
    ((1,), (1,), 1, 3, [0, 0, 1, 0], 0.4),
    ((2, 3), (2,), 4, 2, [3, 1, -2, 4], 0.9),
    ((5,), (3, 3), 1, 1, [-1, 3, 2, 2], math.inf),
    ((3,), (7,), 2, 4, [5, 6, 4, 7], 0.6),
    ((4,), (4,), 3, 3, [2, 3, 3, 2], 0.8),
    ((2, 2), (2, 2), 1, 2, [1, 1, 0, 1], math.inf),
]
BUDGETS = [SMEM_DEFAULT, 0.6, 0.3]  # whole planes; fractions of that: a few tiles per plane


@pytest.mark.parametrize("budget", BUDGETS)
@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"case{i}" for i in range(len(CASES))])
def test_kernel_emulation_matches_reference(index, budget):
    """Forward (y and signs), the backward's masked pass and its adjoint (pad2 > 0)."""
    fu_shape, fd_shape, up, down, padding, clamp = CASES[index]
    fu, fd = fir(fu_shape, 1), fir(fd_shape, 2)
    seed = 10 * index + BUDGETS.index(budget)
    gen = torch.Generator().manual_seed(seed)
    n, c, h, w = 1, 2, 5, 7
    x = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    b = torch.randn(c, generator=gen, dtype=torch.float64)
    geo = module.geometry(h, w, fu, fd, up, down, padding)
    region, out = (geo.region_h, geo.region_w), (geo.out_h, geo.out_w)
    gain, slope, flip = 1.3, 0.2, bool(seed % 2)
    pad = (padding[0], padding[2])
    (uw, uh), (dw, dh) = module.filter_taps(fu), module.filter_taps(fd)
    y_ref, s_ref = module.Reference.forward(x, fu, fd, b, up, down, pad, region, out, gain,
                                            slope, clamp, flip, torch.float64, True)
    signs = np.zeros(s_ref.shape, dtype=np.uint8)
    y, g = emulate(False, x.numpy(), b.numpy(), fu, fd, signs, up, down, pad, (0, 0), region,
                   out, gain1=float(up * up), gain2=1.0, act_gain=gain, slope=slope, clamp=clamp,
                   flip=flip, budget=budget, channels_last=seed % 3 == 0)
    assert budget == SMEM_DEFAULT or g["tiles"] > n * c or out == (1, 1)  # several tiles
    np.testing.assert_allclose(y, y_ref.numpy(), rtol=1e-10, atol=1e-12)
    assert np.array_equal(signs, s_ref.numpy())
    # the backward's masked pass (on random codes), then its adjoint, whose pad2 is > 0
    codes = torch.randint(0, 4, (n, c, *region), generator=gen, dtype=torch.uint8)
    packed = module.pack_signs(codes)
    scale = float(up * up)
    dy = torch.randn(n, c, *out, generator=gen, dtype=torch.float64)
    pad1, pad2 = (dw - 1, dh - 1), (uw - 1 - pad[0], uh - 1 - pad[1])
    dx_ref = module.Reference.masked(dy, fd, fu, packed, down, up, pad1, pad2, region, (h, w),
                                     gain, slope, scale, not flip, torch.float64)
    dx, _ = emulate(True, dy.numpy(), None, fd, fu, packed.numpy(), down, up, pad1, pad2, region,
                    (h, w), gain1=1.0, gain2=scale, act_gain=gain, slope=slope, clamp=0.0,
                    flip=not flip, budget=budget)
    np.testing.assert_allclose(dx, dx_ref.numpy(), rtol=1e-10, atol=1e-12)
    ddx = torch.randn(n, c, h, w, generator=gen, dtype=torch.float64)
    pad1b, pad2b = (uw - 1 - pad2[0], uh - 1 - pad2[1]), (dw - 1 - pad1[0], dh - 1 - pad1[1])
    ddy_ref = module.Reference.masked(ddx, fu, fd, packed, up, down, pad1b, pad2b, region, out,
                                      gain, slope, scale, flip, torch.float64)
    ddy, _ = emulate(True, ddx.numpy(), None, fu, fd, packed.numpy(), up, down, pad1b, pad2b,
                     region, out, gain1=1.0, gain2=scale, act_gain=gain, slope=slope, clamp=0.0,
                     flip=flip, budget=budget, channels_last=True)
    np.testing.assert_allclose(ddy, ddy_ref.numpy(), rtol=1e-10, atol=1e-12)


def test_masked_pass_with_large_padding_reads_zeros_outside_the_region():
    """pad2 larger than the filter and an output past the region: zeros outside it."""
    gen = torch.Generator().manual_seed(5)
    f1, f2 = fir((3,), 3), fir((2, 4), 4)
    z = torch.randn(1, 2, 4, 6, generator=gen, dtype=torch.float64)
    region, out = (9, 11), (8, 7)
    codes = torch.randint(0, 4, (1, 2, *region), generator=gen, dtype=torch.uint8)
    packed = module.pack_signs(codes)
    ref = module.Reference.masked(z, f1, f2, packed, 2, 2, (1, 2), (5, 3), region, out, 1.4, 0.3,
                                  4.0, False, torch.float64)
    for budget in BUDGETS:
        got, _ = emulate(True, z.numpy(), None, f1, f2, packed.numpy(), 2, 2, (1, 2), (5, 3),
                         region, out, gain1=1.0, gain2=4.0, act_gain=1.4, slope=0.3, clamp=0.0,
                         flip=False, budget=budget)
        np.testing.assert_allclose(got, ref.numpy(), rtol=1e-10, atol=1e-12)
