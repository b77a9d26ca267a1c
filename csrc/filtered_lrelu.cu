// filtered_lrelu: both passes of stylegan_fast/ops/filtered_lrelu.py (StyleGAN3's bias, upsample,
// FIR filter, leaky ReLU, clamp, FIR filter, downsample, and its masked backward) in ONE fused
// kernel, templated on the pass (MASKED), the factors up1 / down2 and the storage types.
//
// One pass, for a plane z [H, W] of z [N, C, H, W] (x in the forward pass, dy in the masked one):
//
//   u[i, j]  = z[i / up1, j / up1] (+ b[c] in forward)  if up1 | i, up1 | j and inside z, else 0
//   v[r, s]  = gain1 * sum_{ky < K1h, kx < K1w} u[r + ky - pad1_y, s + kx - pad1_x] * w1[ky, kx]
//              for (r, s) in the region [0, RH) x [0, RW)
//   a[r, s]  = forward: clamp(leaky_relu(v, slope) * gain, -clamp, clamp), code[r, s] saved
//              masked:  v * m,  m = gain * (1 | slope | 0) from code[r, s]
//              and a = 0 outside the region
//   y[o, p]  = gain2 * sum_{ky < K2h, kx < K2w} a[o * down2 + ky - pad2_y,
//                                                 p * down2 + kx - pad2_x] * w2[ky, kx]
//   w[ky, kx] = g[ky, kx] if flip else g[KH - 1 - ky, KW - 1 - kx],  g = f (x) f for a 1-D f
//
// forward: gain1 = up ** 2, gain2 = 1, pad2 = 0, f1 = fu, f2 = fd, up1 = up, down2 = down;
//   code = NEGATIVE (1) if v <= 0, + CLAMPED (2) if |leaky_relu(v) * gain| > clamp, packed 4 to a
//   byte along s: signs[n, c, r, s / 4] bits 2 * (s % 4) .. + 1 (bits past RW are 0).
// masked: gain1 = 1, gain2 = scale; it reads the codes (the backward and its own adjoint).
//
// Tiling: a thread block owns an output tile of one plane, TH rows x TW columns of y (a grid-stride
// loop over tiles, planes slowest, or channels fastest for a channels_last z). For it:
//   1. z patch: the z samples the tile's v window reads, zeros outside z, in shared memory (math
//      type A; + b[c] in forward). Polyphase: only the samples, never the inserted zeros.
//   2. stage 1 -> v window [r0, r0 + vh) x [s0a, s0a + vwa) in shared memory, r0 = o0 * down2 -
//      pad2_y, s0a = s0 rounded down to a multiple of 4 (s0 = p0 * down2 - pad2_x), vwa a multiple
//      of 4, so that 4 consecutive window columns (a quad, one thread) are one byte of signs.
//      Separable f1: x pass (z patch -> h1 [zh, vwa]), then y pass (h1 -> v); 2-D f1: directly.
//      Polyphase along both axes: only the taps that hit samples of z (k0 = (-t) mod up1, every
//      up1-th tap after it). The activation is applied as v is stored; v never exists at full size
//      in global memory. Forward windows also cover the tile's *own* part of the region, rows
//      [o0 * down2, (o0 + th) * down2) and columns [p0 * down2, (p0 + tw) * down2) (to RH / RW
//      for the last tiles), which partitions the region; TW * down2 is a multiple of 4 unless a
//      plane row is one tile, so own column ranges are whole bytes: every byte of signs is written
//      by exactly one block, from its 4 codes (no read-modify-write, no overlap).
//   3. stage 2 -> y: separable f2: x pass (v -> h2 [vh2, tw]), then y pass; 2-D f2: directly.
// Shared memory (A elements): w1, w2 (the filters, flipped as the pass applies them), region R0
// (v; and the z patch when f1 is separable) and R1 (the z patch when f1 is 2-D; h1; h2); the
// filters are not scaled: gain1 and gain2 multiply the sums. The launcher picks the largest tile
// (from 32 x 32 outputs, halving the longer side) that fits 48 KiB; when even 1 x 1 does not, the
// largest that fits the device's opt-in maximum (raising a clear error when none does).
// Math in float32 (float64 for float64 z); coordinates within a plane are 32-bit (checked), memory
// offsets 64-bit.
#include <algorithm>
#include <numeric>
#include <type_traits>
#include <utility>

#include "plane.cuh"  // dispatch, Tag

namespace sgf {
namespace {

constexpr int kSmemDefault = 48 * 1024;  // dynamic shared memory without the opt-in
constexpr int kMaxTile = 32;             // output tile rows / columns at most

// The pass, as compile-time constants: the kernel's last template argument (a type, so that the
// SASS report reads no vector width from it). UP / DOWN = 0: the factors come from the geometry.
template <bool MASKED, int UP, int DOWN> struct Pass {
  static constexpr bool kMasked = MASKED;  // masked pass (reads codes), else forward (writes)
  static constexpr int kUp = UP;           // up1 in {1, 2, 4}, or 0: runtime g.up
  static constexpr int kDown = DOWN;       // down2 in {1, 2, 4}, or 0: runtime g.down
};

// Everything but the pointers, by value. Fields after `act_gain_slope` are the launcher's tiling.
struct FlGeometry {
  int64_t sz_n, sz_c, sz_h, sz_w;   // z's strides, elements
  int64_t sy_n, sy_c, sy_h, sy_w;   // y's strides, elements
  int64_t ss_n, ss_c, ss_h, ss_w;   // signs' strides, bytes (unused without signs)
  int64_t N, C;                     // samples, channels: N * C planes
  int H, W;                         // z plane
  int RH, RW;                       // the region of v
  int OH, OW;                       // y plane
  int K1h, K1w, K2h, K2w;           // filter taps along y, x (a separable filter: K x K)
  int T1, T2;                       // filter array lengths: K (separable) or KH * KW
  bool sep1, sep2;                  // f1 / f2 is 1-D (separable)
  bool flip;                        // correlate with the filters (no flip)
  int up, down;                     // up1, down2 >= 1
  int pad1_x, pad1_y, pad2_x, pad2_y;  // leading paddings (negative crops)
  double gain1, gain2;              // stage gains
  double act_gain;                  // forward: multiplies leaky_relu(v); masked: m of a positive
  double slope;                     // forward: leaky_relu's slope
  double clamp;                     // forward: clamp bound (inf: none)
  double act_gain_slope;            // masked: m of a not-positive element, gain * slope
  // tiling
  int TH, TW;                       // output tile
  int VWA;                          // pitch of v and h1 rows (a multiple of 4)
  int ZW;                           // pitch of z patch rows
  int off_w1, off_w2, off_r0, off_r1;  // shared memory offsets, A elements (multiples of 4)
  bool c_fastest;                   // tile order: channels fastest (channels_last z)
  int64_t tiles_x, tiles_y, tiles;  // tiles along p, o; total
};

// Floor division, modulo and ceil division by b > 0, right for negative a.
__host__ __device__ __forceinline__ int floor_div(int a, int b) {
  const int q = a / b;
  return q * b > a ? q - 1 : q;
}
__host__ __device__ __forceinline__ int floor_mod(int a, int b) { return a - floor_div(a, b) * b; }
__host__ __device__ __forceinline__ int ceil_div_floor(int a, int b) { return -floor_div(-a, b); }

// w[i] = the filter as the pass applies it: f reversed (flat: both axes of a 2-D f) unless flip.
template <typename A>
__device__ __forceinline__ void prepare_fir(const float* __restrict__ f, int taps, bool flip,
                                            A* __restrict__ w) {
  for (int i = threadIdx.x; i < taps; i += blockDim.x) {
    w[i] = static_cast<A>(f[flip ? i : taps - 1 - i]);
  }
}

template <typename T, typename O, class P>
__global__ void __launch_bounds__(kThreads, 2)
filtered_lrelu_kernel(const T* __restrict__ z,             // [N, C, H, W], strides g.sz_*
                      const acc_t<T>* __restrict__ bias,   // [C] math type, or nullptr (forward)
                      const float* __restrict__ f1,        // [K1] if g.sep1, else [K1h, K1w]
                      const float* __restrict__ f2,        // [K2] if g.sep2, else [K2h, K2w]
                      O* __restrict__ y,                   // [N, C, OH, OW], strides g.sy_*
                      uint8_t* __restrict__ signs,         // [N, C, RH, RW/4] codes: out, or in
                      const FlGeometry g) {                // sizes, factors, tiling (by value)
  using A = acc_t<T>;
  constexpr bool kMasked = P::kMasked;
  const int up = P::kUp > 0 ? P::kUp : g.up;
  const int down = P::kDown > 0 ? P::kDown : g.down;
  extern __shared__ __align__(16) unsigned char smem[];
  A* const sm = reinterpret_cast<A*>(smem);
  A* const w1 = sm + g.off_w1;
  A* const w2 = sm + g.off_w2;
  A* const vb = sm + g.off_r0;                 // v window (a after the activation)
  A* const hb = sm + g.off_r1;                 // h1, then h2
  A* const zb = g.sep1 ? vb : hb;              // z patch
  prepare_fir(f1, g.T1, g.flip, w1);
  prepare_fir(f2, g.T2, g.flip, w2);
  const A gain1 = static_cast<A>(g.gain1), gain2 = static_cast<A>(g.gain2);
  const A act_gain = static_cast<A>(g.act_gain), slope = static_cast<A>(g.slope);
  const A clampv = static_cast<A>(g.clamp), m_neg = static_cast<A>(g.act_gain_slope);
  const int nt = static_cast<int>(blockDim.x), tid = static_cast<int>(threadIdx.x);

  for (int64_t tile = blockIdx.x; tile < g.tiles; tile += gridDim.x) {
    int64_t n, c, rest;
    int tx, ty;
    if (g.c_fastest) {  // tile = ((n * tiles_y + ty) * tiles_x + tx) * C + c
      c = tile % g.C;
      rest = tile / g.C;
      tx = static_cast<int>(rest % g.tiles_x);
      rest /= g.tiles_x;
      ty = static_cast<int>(rest % g.tiles_y);
      n = rest / g.tiles_y;
    } else {            // tile = ((n * C + c) * tiles_y + ty) * tiles_x + tx
      tx = static_cast<int>(tile % g.tiles_x);
      rest = tile / g.tiles_x;
      ty = static_cast<int>(rest % g.tiles_y);
      rest /= g.tiles_y;
      n = rest / g.C;
      c = rest - n * g.C;
    }
    const int o0 = ty * g.TH, th = min(g.TH, g.OH - o0);
    const int p0 = tx * g.TW, tw = min(g.TW, g.OW - p0);
    // The v window: rows [r0, r0 + vh), columns [s0a, s0a + vwa).
    const int r0 = o0 * down - g.pad2_y;
    const int s0 = p0 * down - g.pad2_x;
    const int s0a = s0 & ~3;                   // floor to a multiple of 4
    int vh = (th - 1) * down + g.K2h, vw = (tw - 1) * down + g.K2w;
    if (!kMasked) {                            // cover the tile's own region part (signs)
      vh = max(vh, th * down);
      vw = max(vw, tw * down);
    }
    const int vwa = (s0 - s0a + vw + 3) & ~3;
    const int nq = vwa >> 2;                   // quads per window row
    // The z patch: z rows [zr0, zr0 + zh), columns [zc0, zc0 + zw): the samples among u rows
    // [ur0, ur0 + vh + K1h - 1) and columns [uc0, uc0 + vwa + K1w - 1).
    const int ur0 = r0 - g.pad1_y, uc0 = s0a - g.pad1_x;
    const int zr0 = ceil_div_floor(ur0, up), zc0 = ceil_div_floor(uc0, up);
    const int zh = max(0, floor_div(ur0 + vh + g.K1h - 2, up) + 1 - zr0);
    const int zw = max(0, floor_div(uc0 + vwa + g.K1w - 2, up) + 1 - zc0);
    const int64_t zoff = n * g.sz_n + c * g.sz_c;
    const int64_t soff = n * g.ss_n + c * g.ss_c;
    const int64_t yoff = n * g.sy_n + c * g.sy_c;

    __syncthreads();  // the previous tile's reads of the shared buffers are done
    // 1. the z patch
    {
      A b = A(0);
      if constexpr (!kMasked) {
        if (bias != nullptr) b = bias[c];
      }
      for (int i = tid; i < zh * zw; i += nt) {
        const int zr = i / zw, zc = i - zr * zw;
        const int iy = zr0 + zr, ix = zc0 + zc;
        A v = A(0);
        if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) {
          v = static_cast<A>(to_acc(z[zoff + int64_t(iy) * g.sz_h + int64_t(ix) * g.sz_w])) + b;
        }
        zb[zr * g.ZW + zc] = v;
      }
    }
    __syncthreads();
    // 2. stage 1. Separable: x pass h1[zr, sl] = sum_kx u[zr0 + zr (as a u row), uc0 + sl + kx]
    // * w1[kx] over the taps that hit samples.
    if (g.sep1) {
      for (int i = tid; i < zh * vwa; i += nt) {
        const int zr = i / vwa, sl = i - zr * vwa;
        const int t = uc0 + sl;                // u column of tap 0
        const int k0 = floor_mod(-t, up);      // first tap on a sample
        const A* zp = zb + zr * g.ZW + ((t + k0) / up - zc0);
        A acc = A(0);
        for (int k = k0; k < g.K1w; k += up, ++zp) acc += *zp * w1[k];
        hb[zr * g.VWA + sl] = acc;
      }
      __syncthreads();
    }
    // v by quads (row rl, columns 4 ql .. 4 ql + 3 of the window), activation, codes.
    // Forward: the tile's own part of the region (the tiles' parts partition it), whose signs
    // bytes this block writes.
    [[maybe_unused]] const int own_r0 = o0 * down;
    [[maybe_unused]] const int own_r1 = o0 + th == g.OH ? g.RH : (o0 + th) * down;
    [[maybe_unused]] const int own_c0 = p0 * down;
    [[maybe_unused]] const int own_c1 = p0 + tw == g.OW ? g.RW : (p0 + tw) * down;
    for (int i = tid; i < vh * nq; i += nt) {
      const int rl = i / nq, sl = (i - rl * nq) * 4;
      const int r = r0 + rl, sq = s0a + sl;    // region coordinates of the quad's first element
      const bool row_in = r >= 0 && r < g.RH;
      A acc[4] = {A(0), A(0), A(0), A(0)};
      if (row_in) {
        const int t = ur0 + rl;                // u row of tap 0
        const int k0 = floor_mod(-t, up);
        const int zi = (t + k0) / up - zr0;    // patch row of tap k0
        if (g.sep1) {  // y pass over h1
          const A* hp = hb + zi * g.VWA + sl;
          for (int k = k0; k < g.K1h; k += up, hp += g.VWA) {
            A h[4];
            load_vec<4>(hp, h);
            const A wk = w1[k];
#pragma unroll
            for (int j = 0; j < 4; ++j) acc[j] += h[j] * wk;
          }
        } else {       // 2-D: rows and columns polyphase
          int kx0[4], zj[4];
#pragma unroll
          for (int j = 0; j < 4; ++j) {
            const int tc = uc0 + sl + j;
            kx0[j] = floor_mod(-tc, up);
            zj[j] = (tc + kx0[j]) / up - zc0;
          }
          const A* zrow = zb + zi * g.ZW;
          const A* wrow = w1 + k0 * g.K1w;
          for (int ky = k0; ky < g.K1h; ky += up, zrow += g.ZW, wrow += up * g.K1w) {
#pragma unroll
            for (int j = 0; j < 4; ++j) {
              const A* zp = zrow + zj[j];
              A sum = A(0);
              for (int kx = kx0[j]; kx < g.K1w; kx += up, ++zp) sum += *zp * wrow[kx];
              acc[j] += sum;
            }
          }
        }
      }
      A a[4];
      if constexpr (kMasked) {
        uint32_t byte = 0;
        if (row_in && sq >= 0 && sq < g.RW) {
          byte = signs[soff + int64_t(r) * g.ss_h + int64_t(sq >> 2) * g.ss_w];
        }
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int s = sq + j;
          const uint32_t code = (byte >> (2 * j)) & 3u;
          const A m = (code & 2u) ? A(0) : (code & 1u) ? m_neg : act_gain;
          a[j] = row_in && s >= 0 && s < g.RW ? acc[j] * gain1 * m : A(0);
        }
      } else {
        uint32_t byte = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int s = sq + j;
          const bool in = row_in && s >= 0 && s < g.RW;
          const A v = acc[j] * gain1;
          A t = (v > A(0) ? v : v * slope) * act_gain;
          const uint32_t code = (v <= A(0) ? 1u : 0u) | (fabs(t) > clampv ? 2u : 0u);
          t = t > clampv ? clampv : (t < -clampv ? -clampv : t);
          a[j] = in ? t : A(0);
          byte |= (in ? code : 0u) << (2 * j);
        }
        if (signs != nullptr && r >= own_r0 && r < own_r1 && sq >= own_c0 && sq < own_c1) {
          signs[soff + int64_t(r) * g.ss_h + int64_t(sq >> 2) * g.ss_w] =
              static_cast<uint8_t>(byte);
        }
      }
      store_vec<4>(vb + rl * g.VWA + sl, a);
    }
    __syncthreads();
    // 3. stage 2: y[o0 + ol, p0 + pl] from window rows ol * down + ky, columns off + pl * down
    // + kx.
    const int off = s0 - s0a;
    if (g.sep2) {      // x pass: h2[rl, pl] for the rows stage 2 reads
      const int vh2 = (th - 1) * down + g.K2h;
      for (int i = tid; i < vh2 * tw; i += nt) {
        const int rl = i / tw, pl = i - rl * tw;
        const A* vp = vb + rl * g.VWA + off + pl * down;
        A acc = A(0);
        for (int k = 0; k < g.K2w; ++k) acc += vp[k] * w2[k];
        hb[rl * g.TW + pl] = acc;
      }
      __syncthreads();
    }
    for (int i = tid; i < th * tw; i += nt) {
      const int ol = i / tw, pl = i - ol * tw;
      A acc = A(0);
      if (g.sep2) {    // y pass over h2
        const A* hp = hb + ol * down * g.TW + pl;
        for (int k = 0; k < g.K2h; ++k, hp += g.TW) acc += *hp * w2[k];
      } else {
        const A* vp = vb + ol * down * g.VWA + off + pl * down;
        const A* wp = w2;
        for (int ky = 0; ky < g.K2h; ++ky, vp += g.VWA, wp += g.K2w) {
          for (int kx = 0; kx < g.K2w; ++kx) acc += vp[kx] * wp[kx];
        }
      }
      y[yoff + int64_t(o0 + ol) * g.sy_h + int64_t(p0 + pl) * g.sy_w] = from_acc<O>(acc * gain2);
    }
  }
}

// ------------------------------------------------------------------ launch planning
inline int round4(int64_t v) { return static_cast<int>((v + 3) & ~int64_t(3)); }

// Shared memory offsets and total (A elements) of a TH x TW output tile; sets g's tiling fields.
int64_t plan_smem(FlGeometry& g, bool masked) {
  const int64_t d = g.down, TH = g.TH, TW = g.TW;
  int64_t vh = (TH - 1) * d + g.K2h, vw = (TW - 1) * d + g.K2w;
  if (!masked) {
    vh = std::max(vh, TH * d);
    vw = std::max(vw, TW * d);
  }
  // forward windows start at a multiple of 4 (pad2 = 0, TW * down a multiple of 4, or one tile
  // along x); masked ones up to 3 columns before s0.
  const int64_t vwa = (vw + (masked ? 3 : 0) + 3) & ~int64_t(3);
  const int64_t zh = (vh + g.K1h - 1 + g.up - 1) / g.up;   // at most this many samples
  const int64_t zw = (vwa + g.K1w - 1 + g.up - 1) / g.up;
  const int64_t v = vh * vwa, zp = zh * zw, h1 = zh * vwa;
  const int64_t h2 = ((TH - 1) * d + g.K2h) * TW;
  const int64_t r0 = std::max(v, g.sep1 ? zp : int64_t(0));
  const int64_t r1 = std::max(g.sep1 ? h1 : zp, g.sep2 ? h2 : int64_t(0));
  g.VWA = static_cast<int>(vwa);
  g.ZW = static_cast<int>(zw);
  g.off_w1 = 0;
  g.off_w2 = round4(g.T1);
  g.off_r0 = g.off_w2 + round4(g.T2);
  const int64_t off_r1 = g.off_r0 + ((r0 + 3) & ~int64_t(3));
  g.off_r1 = static_cast<int>(std::min<int64_t>(off_r1, 0x7fffffff));
  return off_r1 + r1;
}

// The largest tile (from kMaxTile x kMaxTile outputs, halving the longer side) whose shared
// memory fits `budget` bytes; false when even the smallest does not. Forward: TW * down a
// multiple of 4 unless one tile spans the plane's width (then own column ranges are whole bytes).
bool plan_tiles(FlGeometry& g, bool masked, int64_t a_bytes, int64_t budget, int64_t& bytes) {
  const int align = masked ? 1 : 4 / std::gcd(g.down, 4);
  g.TH = std::min(g.OH, kMaxTile);
  g.TW = std::min(g.OW, kMaxTile);  // kMaxTile is a multiple of 4; OW <= it: one tile along x
  for (;;) {
    bytes = plan_smem(g, masked) * a_bytes;
    if (bytes <= budget) break;
    const int tw_half = (((g.TW + 1) / 2 + align - 1) / align) * align;
    if (g.TH >= g.TW && g.TH > 1) {
      g.TH = (g.TH + 1) / 2;
    } else if (tw_half < g.TW) {
      g.TW = tw_half;
    } else if (g.TH > 1) {
      g.TH = (g.TH + 1) / 2;
    } else {
      return false;
    }
  }
  g.tiles_x = ceil_div(g.OW, g.TW);
  g.tiles_y = ceil_div(g.OH, g.TH);
  g.tiles = g.N * g.C * g.tiles_x * g.tiles_y;
  return true;
}

// Call f(Pass<MASKED, UP, DOWN>{}): up and down in {1, 2, 4} as constants, else both at runtime.
template <bool MASKED, class F>
void dispatch_factors(int up, int down, F&& f) {
  auto with_down = [&](auto up_c) {
    constexpr int U = decltype(up_c)::value;
    switch (down) {
      case 1: f(Pass<MASKED, U, 1>{}); return true;
      case 2: f(Pass<MASKED, U, 2>{}); return true;
      case 4: f(Pass<MASKED, U, 4>{}); return true;
      default: return false;
    }
  };
  bool done = false;
  switch (up) {
    case 1: done = with_down(std::integral_constant<int, 1>{}); break;
    case 2: done = with_down(std::integral_constant<int, 2>{}); break;
    case 4: done = with_down(std::integral_constant<int, 4>{}); break;
    default: break;
  }
  if (!done) f(Pass<MASKED, 0, 0>{});
}

// Blocks for a grid-stride loop over `tiles`: all of them, up to 32 per SM.
inline unsigned grid_for_flrelu_tiles(int64_t tiles) {
  const int64_t cap = static_cast<int64_t>(num_sms()) * 32;
  return static_cast<unsigned>(tiles < cap ? tiles : cap);
}

}  // namespace

void filtered_lrelu(const FilteredLReluArgs& a, cudaStream_t stream) {
  if (a.N * a.C * a.OH * a.OW == 0) return;
  TORCH_CHECK(a.K1h >= 1 && a.K1w >= 1 && a.K2h >= 1 && a.K2w >= 1 &&
                  a.K1h <= kFilteredLReluMaxTaps && a.K1w <= kFilteredLReluMaxTaps &&
                  a.K2h <= kFilteredLReluMaxTaps && a.K2w <= kFilteredLReluMaxTaps &&
                  (!a.sep1 || a.K1h == a.K1w) && (!a.sep2 || a.K2h == a.K2w),
              "filtered_lrelu cuda: filters must have 1 to ", kFilteredLReluMaxTaps,
              " taps per axis, got ", a.K1h, " x ", a.K1w, " and ", a.K2h, " x ", a.K2w);
  constexpr int64_t kIntMax = 0x7fffffff;
  TORCH_CHECK(a.up >= 1 && a.up < 65536 && a.down >= 1 && a.down < 65536,
              "filtered_lrelu cuda: up and down must be in [1, 65536)");
  auto small = [](int64_t v) { return v > -(int64_t(1) << 28) && v < (int64_t(1) << 28); };
  TORCH_CHECK(small(a.pad1_x) && small(a.pad1_y) && small(a.pad2_x) && small(a.pad2_y),
              "filtered_lrelu cuda: padding out of range");
  // Every plane coordinate the kernel forms (o * down, u rows, z rows, region) must fit an int.
  auto span = [&](int64_t size, int64_t region, int64_t out) {
    return size * a.up + region + (out + kMaxTile) * a.down + 4 * (int64_t(1) << 28) + 256 <
           kIntMax;
  };
  TORCH_CHECK(span(a.H, a.RH, a.OH) && span(a.W, a.RW, a.OW),
              "filtered_lrelu cuda: plane sizes too large for 32-bit coordinates");
  FlGeometry g{};
  g.sz_n = a.sz_n; g.sz_c = a.sz_c; g.sz_h = a.sz_h; g.sz_w = a.sz_w;
  g.sy_n = a.sy_n; g.sy_c = a.sy_c; g.sy_h = a.sy_h; g.sy_w = a.sy_w;
  g.ss_n = a.ss_n; g.ss_c = a.ss_c; g.ss_h = a.ss_h; g.ss_w = a.ss_w;
  g.N = a.N; g.C = a.C;
  g.H = static_cast<int>(a.H); g.W = static_cast<int>(a.W);
  g.RH = static_cast<int>(a.RH); g.RW = static_cast<int>(a.RW);
  g.OH = static_cast<int>(a.OH); g.OW = static_cast<int>(a.OW);
  g.K1h = a.K1h; g.K1w = a.K1w; g.K2h = a.K2h; g.K2w = a.K2w;
  g.sep1 = a.sep1; g.sep2 = a.sep2;
  g.T1 = a.sep1 ? a.K1w : a.K1h * a.K1w;
  g.T2 = a.sep2 ? a.K2w : a.K2h * a.K2w;
  g.flip = a.flip;
  g.up = static_cast<int>(a.up); g.down = static_cast<int>(a.down);
  g.pad1_x = static_cast<int>(a.pad1_x); g.pad1_y = static_cast<int>(a.pad1_y);
  g.pad2_x = a.masked ? static_cast<int>(a.pad2_x) : 0;
  g.pad2_y = a.masked ? static_cast<int>(a.pad2_y) : 0;
  g.gain1 = a.gain1; g.gain2 = a.gain2;
  g.act_gain = a.gain; g.slope = a.slope; g.clamp = a.clamp;
  g.act_gain_slope = a.gain * a.slope;
  g.c_fastest = a.sz_c == 1 && a.C > 1;
  const int64_t a_bytes = a.dtype == DType::Double ? 8 : 4;
  int64_t smem = 0;
  if (!plan_tiles(g, a.masked, a_bytes, kSmemDefault, smem)) {
    int dev = 0, optin = 0;
    C10_CUDA_CHECK(cudaGetDevice(&dev));
    C10_CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    TORCH_CHECK(plan_tiles(g, a.masked, a_bytes, optin, smem),
                "filtered_lrelu cuda: even a 1 x 1 output tile needs ", smem, " bytes of shared "
                "memory per block (filters ", a.K1h, " x ", a.K1w, " and ", a.K2h, " x ", a.K2w,
                ", up ", a.up, ", down ", a.down, "), more than this device's ", optin,
                " bytes; use the ref or triton backend");
  }
  dispatch(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    dispatch_out<T>("filtered_lrelu", a.dtype, a.out_dtype, [&](auto out_tag) {
      using O = typename decltype(out_tag)::type;
      auto launch = [&](auto pass) {
        using P = decltype(pass);
        auto kernel = filtered_lrelu_kernel<T, O, P>;
        if (smem > kSmemDefault) {
          C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              static_cast<int>(smem)));
        }
        kernel<<<grid_for_flrelu_tiles(g.tiles), kThreads, static_cast<size_t>(smem), stream>>>(
            static_cast<const T*>(a.z), static_cast<const A*>(a.bias), a.f1, a.f2,
            static_cast<O*>(a.y), a.signs, g);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (a.masked) {
        dispatch_factors<true>(g.up, g.down, launch);
      } else if constexpr (std::is_same_v<T, O>) {  // the forward pass keeps z's dtype
        dispatch_factors<false>(g.up, g.down, launch);
      } else {
        TORCH_CHECK(false, "filtered_lrelu cuda: the forward pass writes y in x's dtype");
      }
    });
  });
}

}  // namespace sgf
