// upfirdn2d: one *pass* of stylegan_fast/ops/upfirdn2d.py's docstring (upsample, FIR filter,
// downsample, NVIDIA's StyleGAN2/3 semantics):
//
//   y[n, c, oy, ox] = gain * sum_{ky < KH, kx < KW} u[n, c, oy * down_y + ky - pad_y,
//                                                     ox * down_x + kx - pad_x] * w[ky, kx]
//   u[n, c, t, s]   = x[n, c, t / up_y, s / up_x]  if up_y | t, up_x | s and inside x, else 0
//   w[ky, kx]       = g[ky, kx] if flip else g[KH - 1 - ky, KW - 1 - kx]
//   g               = outer(f, f) if separable (f [K], KH = KW = K) else f ([KH, KW])
//
// Polyphase: along an axis, output o starts at t0 = o * down - pad on the zero-inserted u; only the
// taps k with up | t0 + k read x. The first is k0 = (-t0) mod up (floor modulo: t0 may be
// negative), at input row (or column) i0 = (t0 + k0) / up (exact), and the next ones follow every
// up taps, at i0 + 1, i0 + 2, ...: ceil((K - k0) / up) taps per axis, none when k0 >= K. No
// multiply by an inserted zero is ever made.
//
// The filter w, flipped as `flip` says and multiplied by gain (as the reference does: the outer
// product first, then gain), is prepared once per block in shared memory in the math type A
// (float32, float64 for float64 x). Math in A; y converted to its storage type once.
//
// Two kernels, both 256 threads per block, grid-stride over tiles:
//   * tile (NCHW y, x of any strides): a block owns PB planes x TH rows x TW columns of y (PB > 1
//     only when the tile is a whole plane, so that the block's outputs are one contiguous run of
//     an NCHW y). It loads, once, the patch of x those outputs read (PB x PH x PW samples, zeros
//     outside x) into shared memory, then every thread sums its outputs' taps from there (threads
//     along ox: consecutive threads write consecutive y). Per-row and per-column tap starts
//     (k0, patch index of i0) are tabulated per tile: no division in the tap loops.
//   * gather (channels_last y; and NCHW y where a patch would waste reads: down_y > KH skips
//     rows of x, or the tile would be tiny): a block owns one output row (n, oy), XT columns x
//     CT channels; each thread reads its taps from global memory through the read-only cache, the
//     tap ranges clipped to x beforehand (no per-tap bounds test). Threads run along c for a
//     channels_last y, along ox for an NCHW y.
// Coordinates within a plane are 32-bit (the launcher checks that they fit), memory offsets 64-bit.
#include <type_traits>

#include "plane.cuh"  // dispatch, Tag

namespace sgf {
namespace {

constexpr int kSmemBudget = 48 * 1024;  // dynamic shared memory per block (no opt-in needed)
constexpr int kMaxPlanesPerTile = 256;  // PB bound (plane offset tables: 16 bytes per plane)

// Everything but the pointers, by value. Fields after `gain` are the launcher's tiling.
struct Geometry {
  int64_t sx_n, sx_c, sx_h, sx_w;   // x's strides, elements
  int64_t sy_n, sy_c, sy_h, sy_w;   // y's strides, elements
  int64_t N, C;                     // samples, channels: N * C planes
  int H, W, OH, OW;                 // input and output plane sizes
  int KH, KW;                       // filter taps along y, x
  int up_x, up_y, down_x, down_y;   // >= 1
  int pad_x, pad_y;                 // leading padding on u (negative crops)
  bool separable, flip;             // f is 1-D (w = f (x) f); correlate with f itself
  double gain;                      // folded into the prepared filter
  // tile kernel: PB planes x TH rows x TW columns of y per tile, from PB x PH x PW samples of x
  int TH, TW, PB, PH, PW;
  int64_t tiles_x, tiles_y;         // tiles along ox, oy (tiles along planes: the rest)
  // gather kernel: one row (n, oy) of y, XT columns x CT channels per tile
  int XT, CT;
  bool nhwc;                        // gather: threads along c (channels_last y), else along ox
  int64_t tiles_c;                  // gather: tiles along c (along ox: tiles_x)
  int64_t tiles;                    // total tiles of the launched kernel
};

// Floor division and modulo by b > 0, right for negative a.
__host__ __device__ __forceinline__ int floor_div(int a, int b) {
  const int q = a / b;
  return q * b > a ? q - 1 : q;
}
__host__ __device__ __forceinline__ int floor_mod(int a, int b) { return a - floor_div(a, b) * b; }

// The polyphase start of output o along an axis: first contributing tap k0 (>= K: none) and the
// x index i0 it reads; tap k0 + j * up reads i0 + j.
struct Phase { int k0, i0; };
__host__ __device__ __forceinline__ Phase phase_of(int o, int up, int down, int pad) {
  const int t0 = o * down - pad;
  const int k0 = floor_mod(-t0, up);
  return Phase{k0, (t0 + k0) / up};  // t0 + k0 is a multiple of up: the division is exact
}

// Taps of an axis that read x for a start k0: ceil((K - k0) / up), 0 when k0 >= K.
__host__ __device__ __forceinline__ int tap_count(int k0, int K, int up) {
  return k0 < K ? (K - 1 - k0) / up + 1 : 0;
}

// w[ky * KW + kx] = gain * g[flipped (ky, kx)] in A, by the whole block (the caller syncs).
template <typename A>
__device__ __forceinline__ void prepare_filter(const float* __restrict__ f, const Geometry& g,
                                               A* __restrict__ w) {
  const int taps = g.KH * g.KW;
  for (int i = threadIdx.x; i < taps; i += blockDim.x) {
    const int ky = i / g.KW, kx = i - ky * g.KW;
    const int sy = g.flip ? ky : g.KH - 1 - ky, sx = g.flip ? kx : g.KW - 1 - kx;
    const A v = g.separable ? static_cast<A>(f[sy]) * static_cast<A>(f[sx])
                            : static_cast<A>(f[sy * g.KW + sx]);
    w[i] = v * static_cast<A>(g.gain);
  }
}

// Shared memory of the tile kernel, in this order (8-byte items first, so that every array is
// aligned for A = double): x plane offsets [PB], y plane offsets [PB], row starts [TH], column
// starts [TW] (int2: k0, patch index of i0), filter [KH * KW], patch [PB * PH * PW].
__host__ __device__ __forceinline__ int64_t tile_smem_bytes(const Geometry& g, int64_t a_bytes) {
  return int64_t(g.PB) * 16 + int64_t(g.TH + g.TW) * 8 +
         (int64_t(g.KH) * g.KW + int64_t(g.PB) * g.PH * g.PW) * a_bytes;
}

// ------------------------------------------------------------------ tile kernel (NCHW y)
template <typename T, typename O>
__global__ void __launch_bounds__(kThreads)
upfirdn2d_tile_kernel(const T* __restrict__ x,      // [N, C, H, W], strides g.sx_*
                      const float* __restrict__ f,  // [K] if g.separable, else [KH, KW]
                      O* __restrict__ y,            // [N, C, OH, OW], strides g.sy_* (NCHW)
                      const Geometry g) {           // sizes, factors, tiling (by value)
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem[];
  int64_t* xoff = reinterpret_cast<int64_t*>(smem);
  int64_t* yoff = xoff + g.PB;
  int2* rows = reinterpret_cast<int2*>(yoff + g.PB);
  int2* cols = rows + g.TH;
  A* w = reinterpret_cast<A*>(cols + g.TW);
  A* patch = w + g.KH * g.KW;
  prepare_filter(f, g, w);

  const int64_t planes = g.N * g.C;
  const int plane_len = g.PH * g.PW;
  for (int64_t tile = blockIdx.x; tile < g.tiles; tile += gridDim.x) {
    const int64_t tp = tile / (g.tiles_y * g.tiles_x);
    const int64_t rest = tile - tp * g.tiles_y * g.tiles_x;
    const int oy0 = static_cast<int>(rest / g.tiles_x) * g.TH;
    const int ox0 = static_cast<int>(rest % g.tiles_x) * g.TW;
    const int64_t q0 = tp * g.PB;                       // first plane n * C + c
    const int np = static_cast<int>(planes - q0 < g.PB ? planes - q0 : g.PB);
    // The patch starts at the first x row / column any output of the tile reads.
    const int iy_base = -floor_div(g.pad_y - oy0 * g.down_y, g.up_y);  // ceil((oy0*dy - py)/uy)
    const int ix_base = -floor_div(g.pad_x - ox0 * g.down_x, g.up_x);

    __syncthreads();  // the previous tile's reads of the tables and patch are done
    for (int i = threadIdx.x; i < np + g.TH + g.TW; i += blockDim.x) {
      if (i < np) {
        const int64_t q = q0 + i, n = q / g.C, c = q - n * g.C;
        xoff[i] = n * g.sx_n + c * g.sx_c;
        yoff[i] = n * g.sy_n + c * g.sy_c;
      } else if (i < np + g.TH) {  // (rows and columns past y's edge are never read)
        const int ty = i - np;
        if (oy0 + ty < g.OH) {
          const Phase p = phase_of(oy0 + ty, g.up_y, g.down_y, g.pad_y);
          rows[ty] = make_int2(p.k0, (p.i0 - iy_base) * g.PW);
        }
      } else {
        const int tx = i - np - g.TH;
        if (ox0 + tx < g.OW) {
          const Phase p = phase_of(ox0 + tx, g.up_x, g.down_x, g.pad_x);
          cols[tx] = make_int2(p.k0, p.i0 - ix_base);
        }
      }
    }
    __syncthreads();
    // Patch element (p, r, s) = x[plane q0 + p, iy_base + r, ix_base + s], 0 outside x; its
    // linear index is the walker's, consecutive threads along s.
    const int patch_len = np * plane_len;
    if (static_cast<int>(threadIdx.x) < patch_len) {
      Walker e(threadIdx.x, g.PH, g.PW);
      const Walker::Stride step = e.stride(blockDim.x);
      for (int i = threadIdx.x; i < patch_len; i += blockDim.x) {
        const int iy = iy_base + static_cast<int>(e.m), ix = ix_base + static_cast<int>(e.i);
        A v = A(0);
        if (iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) {
          v = static_cast<A>(to_acc(x[xoff[e.o] + iy * g.sx_h + ix * g.sx_w]));
        }
        patch[i] = v;
        e.advance(step);
      }
    }
    __syncthreads();
    // Outputs (p, ty, tx) of the tile, tx fastest.
    const int out_len = np * g.TH * g.TW;
    if (static_cast<int>(threadIdx.x) < out_len) {
      Walker e(threadIdx.x, g.TH, g.TW);
      const Walker::Stride step = e.stride(blockDim.x);
      for (int i = threadIdx.x; i < out_len; i += blockDim.x) {
        const int ty = static_cast<int>(e.m), tx = static_cast<int>(e.i);
        const int oy = oy0 + ty, ox = ox0 + tx;
        if (oy < g.OH && ox < g.OW) {
          const int2 rs = rows[ty], cs = cols[tx];
          const A* pr = patch + static_cast<int>(e.o) * plane_len + rs.y + cs.y;
          A acc = A(0);
          for (int ky = rs.x; ky < g.KH; ky += g.up_y, pr += g.PW) {
            const A* wr = w + ky * g.KW;
            const A* pc = pr;
            for (int kx = cs.x; kx < g.KW; kx += g.up_x, ++pc) acc += *pc * wr[kx];
          }
          y[yoff[e.o] + oy * g.sy_h + ox * g.sy_w] = from_acc<O>(acc);
        }
        e.advance(step);
      }
    }
  }
}

// ------------------------------------------------------------------ gather kernel
template <typename T, typename O>
__global__ void __launch_bounds__(kThreads)
upfirdn2d_gather_kernel(const T* __restrict__ x,      // [N, C, H, W], strides g.sx_*
                        const float* __restrict__ f,  // [K] if g.separable, else [KH, KW]
                        O* __restrict__ y,            // [N, C, OH, OW], strides g.sy_*
                        const Geometry g) {           // sizes, factors, tiling (by value)
  using A = acc_t<T>;
  extern __shared__ __align__(16) unsigned char smem[];
  A* w = reinterpret_cast<A*>(smem);
  prepare_filter(f, g, w);
  __syncthreads();

  // This thread's column and channel within a tile: threads along c (nhwc) or along ox.
  const int lane_c = g.nhwc ? static_cast<int>(threadIdx.x) % g.CT
                            : static_cast<int>(threadIdx.x) / g.XT;
  const int lane_x = g.nhwc ? static_cast<int>(threadIdx.x) / g.CT
                            : static_cast<int>(threadIdx.x) % g.XT;
  for (int64_t tile = blockIdx.x; tile < g.tiles; tile += gridDim.x) {
    // tile = (row * tiles_x + column block) * tiles_c + channel block, row = n * OH + oy
    const int64_t tc = tile % g.tiles_c, t1 = tile / g.tiles_c;
    const int64_t tx = t1 % g.tiles_x, row = t1 / g.tiles_x;
    const int64_t n = row / g.OH;
    const int oy = static_cast<int>(row - n * g.OH);
    const int ox = static_cast<int>(tx) * g.XT + lane_x;
    const int64_t c = tc * g.CT + lane_c;
    if (ox >= g.OW || c >= g.C) continue;
    // Taps j (rows) and i (columns) that land inside x: [j_lo, j_hi) x [i_lo, i_hi).
    const Phase py = phase_of(oy, g.up_y, g.down_y, g.pad_y);
    const Phase px = phase_of(ox, g.up_x, g.down_x, g.pad_x);
    const int j_lo = max(0, -py.i0), j_hi = min(tap_count(py.k0, g.KH, g.up_y), g.H - py.i0);
    const int i_lo = max(0, -px.i0), i_hi = min(tap_count(px.k0, g.KW, g.up_x), g.W - px.i0);
    const int64_t plane = n * g.sx_n + c * g.sx_c;
    A acc = A(0);
    for (int j = j_lo; j < j_hi; ++j) {
      const int64_t xr = plane + int64_t(py.i0 + j) * g.sx_h;
      const A* wr = w + (py.k0 + j * g.up_y) * g.KW + px.k0;
      for (int i = i_lo; i < i_hi; ++i) {
        acc += static_cast<A>(to_acc(x[xr + int64_t(px.i0 + i) * g.sx_w])) * wr[i * g.up_x];
      }
    }
    y[n * g.sy_n + c * g.sy_c + int64_t(oy) * g.sy_h + int64_t(ox) * g.sy_w] = from_acc<O>(acc);
  }
}

// ------------------------------------------------------------------ launch planning
inline int64_t even_split(int64_t size, int64_t most) {  // ceil(size / ceil(size / most))
  return ceil_div(size, ceil_div(size, most));
}

inline int next_pow2_int(int64_t v, int cap) {
  int p = 1;
  while (p < v && p < cap) p <<= 1;
  return p;
}

// Patch extent along an axis for T outputs: the multiples of up in a run of (T - 1) * down + K
// consecutive u positions, at most ceil(((T - 1) * down + K) / up).
inline int patch_extent(int64_t T, int down, int K, int up) {
  return static_cast<int>(ceil_div((T - 1) * down + K, up));
}

// Tile the NCHW y for the tile kernel; false when the gather kernel is the better choice.
bool plan_tile(Geometry& g, int64_t a_bytes) {
  if (g.down_y > g.KH) return false;  // the patch would load rows of x no output reads
  const int64_t planes = g.N * g.C;
  const int64_t total = planes * g.OH * g.OW;
  const int64_t want_tiles = 2 * static_cast<int64_t>(num_sms());
  for (int64_t target = 1024;; target /= 2) {  // outputs per tile: 4 per thread, fewer if small
    int64_t TW = even_split(g.OW, 64);
    int64_t TH = even_split(g.OH, target / TW > 1 ? target / TW : 1);
    int64_t PB = 1;
    if (TH == g.OH && TW == g.OW) {
      PB = target / (TH * TW);
      PB = PB < 1 ? 1 : PB > kMaxPlanesPerTile ? kMaxPlanesPerTile : PB;
      PB = PB > planes ? planes : PB;
    }
    for (;;) {  // shrink until the shared memory fits
      g.TH = static_cast<int>(TH); g.TW = static_cast<int>(TW); g.PB = static_cast<int>(PB);
      g.PH = patch_extent(TH, g.down_y, g.KH, g.up_y);
      g.PW = patch_extent(TW, g.down_x, g.KW, g.up_x);
      if (tile_smem_bytes(g, a_bytes) <= kSmemBudget) break;
      if (PB > 1) PB = ceil_div(PB, 2);
      else if (TH >= TW && TH > 1) TH = ceil_div(TH, 2);
      else if (TW > 1) TW = ceil_div(TW, 2);
      else return false;
    }
    g.tiles_x = ceil_div(g.OW, g.TW);
    g.tiles_y = ceil_div(g.OH, g.TH);
    g.tiles = ceil_div(planes, g.PB) * g.tiles_y * g.tiles_x;
    if (g.tiles >= want_tiles || target <= 256) break;
  }
  const int64_t per_tile = int64_t(g.PB) * g.TH * g.TW;
  return per_tile >= 128 || per_tile >= total;
}

// Tile y's rows for the gather kernel: CT channels x XT columns, threads along the dim
// contiguous in y.
void plan_gather(Geometry& g) {
  if (g.nhwc) {
    g.CT = next_pow2_int(g.C, kThreads);
    g.XT = kThreads / g.CT;
  } else {
    g.XT = next_pow2_int(g.OW, kThreads);
    g.CT = kThreads / g.XT;
  }
  g.tiles_x = ceil_div(g.OW, g.XT);
  g.tiles_c = ceil_div(g.C, g.CT);
  g.tiles = g.N * g.OH * g.tiles_x * g.tiles_c;
}

// Blocks for a grid-stride loop over `tiles`: all of them, up to 32 per SM.
inline unsigned grid_for_tiles(int64_t tiles) {
  const int64_t cap = static_cast<int64_t>(num_sms()) * 32;
  return static_cast<unsigned>(tiles < cap ? tiles : cap);
}

}  // namespace

void upfirdn2d_forward(const UpFirDn2dArgs& a, cudaStream_t stream) {
  if (a.N * a.C * a.OH * a.OW == 0) return;
  TORCH_CHECK(a.KH >= 1 && a.KW >= 1 && int64_t(a.KH) * a.KW <= kUpFirDn2dMaxTaps,
              "upfirdn2d cuda: the filter has ", a.KH, " x ", a.KW, " taps; at most ",
              kUpFirDn2dMaxTaps, " are supported");
  constexpr int64_t kIntMax = 0x7fffffff;
  auto factor = [](int64_t v) { return v >= 1 && v < kIntMax; };
  TORCH_CHECK(factor(a.up_x) && factor(a.up_y) && factor(a.down_x) && factor(a.down_y),
              "upfirdn2d cuda: up and down must be in [1, 2^31)");
  TORCH_CHECK(a.pad_x > -kIntMax && a.pad_x < kIntMax && a.pad_y > -kIntMax && a.pad_y < kIntMax,
              "upfirdn2d cuda: padding out of the 32-bit range");
  // Every plane coordinate the kernels form (o * down - pad + k, i0 + j, ...) must fit an int.
  auto span = [](int64_t size, int64_t out, int64_t up, int64_t down, int64_t pad, int64_t taps) {
    return size + (out + 1) * down + (pad < 0 ? -pad : pad) + taps + up < kIntMax;
  };
  TORCH_CHECK(span(a.H, a.OH, a.up_y, a.down_y, a.pad_y, a.KH) &&
                  span(a.W, a.OW, a.up_x, a.down_x, a.pad_x, a.KW),
              "upfirdn2d cuda: plane sizes and padding too large for 32-bit coordinates");
  Geometry g{};
  g.sx_n = a.sx_n; g.sx_c = a.sx_c; g.sx_h = a.sx_h; g.sx_w = a.sx_w;
  g.sy_n = a.sy_n; g.sy_c = a.sy_c; g.sy_h = a.sy_h; g.sy_w = a.sy_w;
  g.N = a.N; g.C = a.C;
  g.H = static_cast<int>(a.H); g.W = static_cast<int>(a.W);
  g.OH = static_cast<int>(a.OH); g.OW = static_cast<int>(a.OW);
  g.KH = a.KH; g.KW = a.KW;
  g.up_x = static_cast<int>(a.up_x); g.up_y = static_cast<int>(a.up_y);
  g.down_x = static_cast<int>(a.down_x); g.down_y = static_cast<int>(a.down_y);
  g.pad_x = static_cast<int>(a.pad_x); g.pad_y = static_cast<int>(a.pad_y);
  g.separable = a.separable; g.flip = a.flip; g.gain = a.gain;
  g.nhwc = a.nhwc;
  g.tiles_c = 1;
  dispatch(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    dispatch_out<T>("upfirdn2d", a.dtype, a.out_dtype, [&](auto out_tag) {
      using O = typename decltype(out_tag)::type;
      const auto* x = static_cast<const T*>(a.x);
      auto* y = static_cast<O*>(a.y);
      if (!a.nhwc && plan_tile(g, sizeof(A))) {
        const size_t smem = static_cast<size_t>(tile_smem_bytes(g, sizeof(A)));
        upfirdn2d_tile_kernel<T, O><<<grid_for_tiles(g.tiles), kThreads, smem, stream>>>(
            x, a.f, y, g);
      } else {
        plan_gather(g);
        const size_t smem = sizeof(A) * static_cast<size_t>(a.KH) * a.KW;
        upfirdn2d_gather_kernel<T, O><<<grid_for_tiles(g.tiles), kThreads, smem, stream>>>(
            x, a.f, y, g);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

}  // namespace sgf
