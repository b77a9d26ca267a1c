// Per-plane passes: the reduction skeleton shared by adain, style_epilogue, the bias gradient of
// bias_act and the strength gradient of noise_inject.
//
// A tensor is seen as N samples x C channels x L positions, stored either as
//   rows: [N][C][L] (NCHW: each (n, c) plane contiguous), or
//   cols: [N][L][C] (NHWC / channels_last: each plane strided by C).
// Each plane is cut into S segments of seg_len positions. A *unit* of work is one segment of one
// plane (rows; a group of G lanes, G = 1..32, so that tiny planes share a warp) or one segment of a
// tile of G * V channels (cols; a 256-thread block of G threads along C times 256 / G along L).
//
// A pass runs an Op (see below) over every element of its units in up to two sweeps:
//   pass A: per-(n, c) statistics (Welford, or K plain sums) of a value computed per element;
//           written as per-unit partials, or, when S == 1 and pass B follows ("fused"), finalized
//           in place by the op (store_a) and read back by pass B in the same kernel;
//   pass B: an output value per element (written when the op has one) and K per-channel sums.
// Partials live at [(n * C + c) * S + s] and are reduced in a fixed order by the finalize kernels:
// every result is deterministic (no atomics).
//
// Op interface (a trivially copyable struct passed by value to the kernel):
//   using T, A, In1;                storage type, math type, storage type of the 2nd big input
//   using AccA;                     Welford<A> or Sums<A, KA>
//   static constexpr int KA, KB;    values per element added to pass A / pass B accumulators
//   static constexpr bool kWelfordA, kWritesB;
//   const T* in0; const In1* in1;   big inputs at the element offset (in1 may be nullptr)
//   T* out;                         pass B output (when kWritesB)
//   const A* noise; int64_t noise_stride;   noise[n * noise_stride + l], or nullptr
//   PA params_a(n, c); void elem_a(PA, v0, v1, nz, A (&out)[KA]); void store_a(n, c, AccA)
//   PB params_b(n, c, PA); A elem_b(PB, v0, v1, nz, A (&sums)[KB])   (params_b gets params_a's
//   result for (n, c), so that its values need not be loaded again)
#pragma once

#include <c10/core/Allocator.h>
#include <c10/cuda/CUDACachingAllocator.h>

#include <type_traits>

#include "common.cuh"

namespace sgf {

constexpr int kPassA = 1;
constexpr int kPassB = 2;

struct PlaneGeometry {
  int64_t N, C, L;    // samples, channels, positions per plane
  bool cols;          // layout: false rows [N][C][L], true cols [N][L][C]
  int group;          // rows: lanes per unit; cols: threads along C (a power of two <= 32)
  int64_t ctiles;     // cols: channel tiles of group * V channels (rows: 1)
  int64_t segments;   // S, segments per plane
  int64_t seg_len;    // positions per segment
  int64_t units;      // rows: N * C * S lane groups; cols: N * ctiles * S blocks
  unsigned blocks;    // grid size
  bool fused() const { return segments == 1; }
};

// Per-lane vectors in flight per loop iteration (rows) and rows per thread (cols).
template <int V> __host__ __device__ constexpr int rows_unroll() { return V >= 8 ? 2 : 4; }
template <int V> __host__ __device__ constexpr int cols_unroll() { return V >= 8 ? 2 : 4; }

inline int next_pow2(int64_t v) {
  int p = 1;
  while (p < v && p < 32) p <<= 1;
  return p;
}

// Choose the geometry for V-wide vectors: split planes only as far as needed to give every SM
// work (about 12 warps) and to bound a unit's work; S == 1 lets pass A and B fuse.
template <int V>
PlaneGeometry plan_planes(int64_t N, int64_t C, int64_t L, bool cols) {
  PlaneGeometry g{};
  g.N = N; g.C = C; g.L = L; g.cols = cols;
  const int64_t sms = num_sms();
  if (!cols) {
    const int U = rows_unroll<V>();
    g.group = next_pow2(ceil_div(L, V));
    g.ctiles = 1;
    const int64_t planes = N * C;
    const int64_t target_units = sms * 12 * (32 / g.group);
    const int64_t max_seg = 32768;  // positions per unit
    int64_t S = ceil_div(target_units, planes);
    S = S > ceil_div(L, max_seg) ? S : ceil_div(L, max_seg);
    const int64_t most = ceil_div(L, static_cast<int64_t>(g.group) * V * U);
    S = S < most ? S : most;
    S = S < 1 ? 1 : S;
    const int64_t span = static_cast<int64_t>(g.group) * V;  // keep segments vector-aligned
    g.seg_len = ceil_div(ceil_div(L, S), span) * span;
    g.segments = ceil_div(L, g.seg_len);
    g.units = planes * g.segments;
    g.blocks = static_cast<unsigned>(ceil_div(g.units, kThreads / g.group));
  } else {
    g.group = next_pow2(ceil_div(C, V));
    const int64_t rows_per_block = kThreads / g.group;
    g.ctiles = ceil_div(C, static_cast<int64_t>(g.group) * V);
    const int64_t tiles = N * g.ctiles;
    const int64_t target_blocks = sms * 2;
    const int64_t max_rows = 262144 / (static_cast<int64_t>(g.group) * V) > rows_per_block
                                 ? 262144 / (static_cast<int64_t>(g.group) * V) : rows_per_block;
    int64_t S = ceil_div(target_blocks, tiles);
    S = S > ceil_div(L, max_rows) ? S : ceil_div(L, max_rows);
    const int64_t most = ceil_div(L, rows_per_block * cols_unroll<V>());
    S = S < most ? S : most;
    S = S < 1 ? 1 : S;
    g.seg_len = ceil_div(L, S);
    g.segments = ceil_div(L, g.seg_len);
    g.units = tiles * g.segments;
    g.blocks = static_cast<unsigned>(g.units);
  }
  return g;
}

// ------------------------------------------------------------------ element loops
// Pass A over U loaded V-vectors of one plane (rows): op.elem_a of every element of the vectors
// with ok[j], added to acc (Welford: as one two-pass chunk).
template <class Op, int U, int V, class PA>
__device__ __forceinline__ void rows_accumulate_a(const Op& op, const PA& pa,
                                                  const typename Op::A (&x0)[U][V],
                                                  const typename Op::A (&x1)[U][V],
                                                  const typename Op::A (&nz)[U][V],
                                                  const bool (&ok)[U], typename Op::AccA& acc) {
  using A = typename Op::A;
  if constexpr (Op::kWelfordA) {
    A vals[U * V];
    bool oks[U * V];
#pragma unroll
    for (int j = 0; j < U; ++j) {
#pragma unroll
      for (int k = 0; k < V; ++k) {
        A e[Op::KA];
        op.elem_a(pa, x0[j][k], x1[j][k], nz[j][k], e);
        vals[j * V + k] = e[0];
        oks[j * V + k] = ok[j];
      }
    }
    acc.add_chunk(vals, oks);
  } else {
#pragma unroll
    for (int j = 0; j < U; ++j) {
      if (!ok[j]) continue;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        A e[Op::KA];
        op.elem_a(pa, x0[j][k], x1[j][k], nz[j][k], e);
        acc.add(e);
      }
    }
  }
}

// Pass B of one V-vector of one plane (rows): outputs o[], and their KB sums added to acc.
template <class Op, int V, class PB>
__device__ __forceinline__ void rows_apply_b(const Op& op, const PB& pb,
                                             const typename Op::A (&x0)[V],
                                             const typename Op::A (&x1)[V],
                                             const typename Op::A (&nz)[V],
                                             typename Op::A (&o)[V],
                                             Sums<typename Op::A, Op::KB>& acc) {
#pragma unroll
  for (int k = 0; k < V; ++k) {
    typename Op::A e[Op::KB > 0 ? Op::KB : 1];
    o[k] = op.elem_b(pb, x0[k], x1[k], nz[k], e);
    if constexpr (Op::KB > 0) acc.add(e);
  }
}

// Pass A over U loaded rows of V channels each (cols): per channel v, op.elem_a of the rows with
// ok[j], added to acc[v] (Welford: as one two-pass chunk).
template <class Op, int U, int V, class PA>
__device__ __forceinline__ void cols_accumulate_a(const Op& op, const PA (&pa)[V],
                                                  const typename Op::A (&x0)[U][V],
                                                  const typename Op::A (&x1)[U][V],
                                                  const typename Op::A (&nz)[U],
                                                  const bool (&ok)[U],
                                                  typename Op::AccA (&acc)[V]) {
  using A = typename Op::A;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    if constexpr (Op::kWelfordA) {
      A vals[U];
#pragma unroll
      for (int j = 0; j < U; ++j) {
        A e[Op::KA];
        op.elem_a(pa[v], x0[j][v], x1[j][v], nz[j], e);
        vals[j] = e[0];
      }
      acc[v].add_chunk(vals, ok);
    } else {
#pragma unroll
      for (int j = 0; j < U; ++j) {
        if (!ok[j]) continue;
        A e[Op::KA];
        op.elem_a(pa[v], x0[j][v], x1[j][v], nz[j], e);
        acc[v].add(e);
      }
    }
  }
}

// Pass B of one row of V channels (cols): outputs o[], and their KB sums added to acc[v].
template <class Op, int V, class PB>
__device__ __forceinline__ void cols_apply_b(const Op& op, const PB (&pb)[V],
                                             const typename Op::A (&x0)[V],
                                             const typename Op::A (&x1)[V],
                                             typename Op::A nz, typename Op::A (&o)[V],
                                             Sums<typename Op::A, Op::KB> (&acc)[V]) {
#pragma unroll
  for (int v = 0; v < V; ++v) {
    typename Op::A e[Op::KB > 0 ? Op::KB : 1];
    o[v] = op.elem_b(pb[v], x0[v], x1[v], nz, e);
    if constexpr (Op::KB > 0) acc[v].add(e);
  }
}

// ------------------------------------------------------------------ rows: [N][C][L]
// One lane group (G lanes) per unit (plane n*C+c, segment s); 256 / G units per block.
template <class Op, int V>
__global__ void __launch_bounds__(kThreads)
plane_rows_kernel(const Op op,                              // the pass's tensors and math
                  const PlaneGeometry g,                    // see plan_planes (rows)
                  const int passes,                         // kPassA | kPassB
                  typename Op::AccA* __restrict__ part_a,   // [N*C*S] pass A partials (unfused)
                  Sums<typename Op::A, Op::KB>* __restrict__ part_b) {  // [N*C*S] or nullptr
  using A = typename Op::A;
  constexpr int U = rows_unroll<V>();
  const int G = g.group;
  const int glane = threadIdx.x & (G - 1);
  const int64_t unit = static_cast<int64_t>(blockIdx.x) * (kThreads / G) + threadIdx.x / G;
  const bool valid = unit < g.units;
  const int64_t u = valid ? unit : 0;
  const int64_t s = u % g.segments;
  const int64_t plane = u / g.segments;  // n * C + c
  const int64_t n = plane / g.C;
  const int64_t c = plane - n * g.C;
  const int64_t begin = s * g.seg_len;
  const int64_t end = valid ? (begin + g.seg_len < g.L ? begin + g.seg_len : g.L) : begin;
  const int64_t base = plane * g.L;
  // Writes the unit's results. One flag, computed before the reductions: `valid` recomputed
  // after them kept unit's high word alive across their subroutine calls (64-bit and IEEE
  // division), which ptxas spilled (4 bytes, EpilogueForwardOp<half / bf16>, V = 1).
  const bool leader = valid && glane == 0;
  const A* nz_plane = op.noise ? op.noise + n * op.noise_stride : nullptr;
  const int64_t span = static_cast<int64_t>(G) * V;

  // U vectors of V positions each, span apart, from position h0: the big inputs and the noise.
  A x0[U][V], x1[U][V], nz[U][V];
  bool ok[U];
  auto load = [&](int64_t h0) {
#pragma unroll
    for (int j = 0; j < U; ++j) {
      const int64_t h = h0 + j * span;
      ok[j] = h < end;
#pragma unroll
      for (int k = 0; k < V; ++k) x1[j][k] = nz[j][k] = A(0);
      if (ok[j]) {
        load_acc<V>(op.in0 + base + h, x0[j]);
        if (op.in1) load_acc<V>(op.in1 + base + h, x1[j]);
        if (nz_plane) load_acc<V>(nz_plane + h, nz[j]);
      }
    }
  };

  if (passes & kPassA) {
    typename Op::AccA acc;
    acc.zero();
    const auto pa = op.params_a(n, c);
    for (int64_t h0 = begin + glane * V; h0 < end; h0 += span * U) {
      load(h0);
      rows_accumulate_a<Op, U, V>(op, pa, x0, x1, nz, ok, acc);
    }
    acc = group_reduce(acc, G);
    if (passes & kPassB) {            // fused (S == 1): finalize, then pass B reads it back
      if (leader) op.store_a(n, c, acc);
      __syncwarp();
    } else if (leader) {
      part_a[plane * g.segments + s] = acc;
    }
  }

  if (passes & kPassB) {
    Sums<A, Op::KB> acc;
    acc.zero();
    const auto pb = op.params_b(n, c, op.params_a(n, c));
    for (int64_t h0 = begin + glane * V; h0 < end; h0 += span * U) {
      load(h0);
#pragma unroll
      for (int j = 0; j < U; ++j) {
        if (!ok[j]) continue;
        A o[V];
        rows_apply_b<Op, V>(op, pb, x0[j], x1[j], nz[j], o, acc);
        if constexpr (Op::kWritesB) store_acc<V>(op.out + base + h0 + j * span, o);
      }
    }
    if constexpr (Op::KB > 0) {
      acc = group_reduce(acc, G);
      if (leader && part_b != nullptr) part_b[plane * g.segments + s] = acc;
    }
  }
}

// ------------------------------------------------------------------ cols: [N][L][C]
// One block per unit (sample n, channel tile, segment s): TX = G threads along C, each owning V
// adjacent channels, times TY = 256 / G threads along L. Reductions over L: an xor butterfly over
// the lanes of a warp that share channels, then the 8 warps merged in order through shared memory.
template <class Acc, int V>
__device__ __forceinline__ void cols_block_reduce(Acc (&acc)[V], int TX, unsigned char* smem) {
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int v = 0; v < V; ++v) {
    for (int offset = TX; offset < 32; offset <<= 1) {
      acc[v] = merge_lane_pair(acc[v], acc[v].shfl_xor(offset), (lane & offset) == 0);
    }
  }
  Acc* red = reinterpret_cast<Acc*>(smem);  // [kWarps][TX * V]
  if (lane < TX) {
#pragma unroll
    for (int v = 0; v < V; ++v) red[warp * TX * V + lane * V + v] = acc[v];
  }
  __syncthreads();
  if (threadIdx.x < TX) {
#pragma unroll
    for (int v = 0; v < V; ++v) {
      Acc total = red[threadIdx.x * V + v];
      for (int w = 1; w < kWarps; ++w) total.merge(red[w * TX * V + threadIdx.x * V + v]);
      acc[v] = total;
    }
  }
  __syncthreads();  // red is reused by the next reduction
}

template <typename A, class AccA, int KB, int V>
__host__ __device__ constexpr size_t cols_smem_bytes() {
  return static_cast<size_t>(kWarps) * 32 * V *
         (sizeof(AccA) > sizeof(Sums<A, KB>) ? sizeof(AccA) : sizeof(Sums<A, KB>));
}

template <class Op, int V>
__global__ void __launch_bounds__(kThreads)
plane_cols_kernel(const Op op,                              // the pass's tensors and math
                  const PlaneGeometry g,                    // see plan_planes (cols)
                  const int passes,                         // kPassA | kPassB
                  typename Op::AccA* __restrict__ part_a,   // [N*C*S] pass A partials (unfused)
                  Sums<typename Op::A, Op::KB>* __restrict__ part_b) {  // [N*C*S] or nullptr
  using A = typename Op::A;
  constexpr int U = cols_unroll<V>();
  __shared__ __align__(16) unsigned char smem[cols_smem_bytes<A, typename Op::AccA, Op::KB, V>()];
  const int TX = g.group;
  const int TY = kThreads / TX;
  const int tx = threadIdx.x & (TX - 1);
  const int ty = threadIdx.x / TX;
  const int64_t unit = blockIdx.x;
  const int64_t s = unit % g.segments;
  const int64_t tile = unit / g.segments;
  const int64_t ct = tile % g.ctiles;
  const int64_t n = tile / g.ctiles;
  const int64_t c0 = (ct * TX + tx) * V;
  const bool active = c0 < g.C;           // with V > 1, C % V == 0: all V channels exist
  const int64_t cp = active ? c0 : 0;     // a valid channel for parameter reads
  const int64_t begin = s * g.seg_len;
  const int64_t end = begin + g.seg_len < g.L ? begin + g.seg_len : g.L;
  const A* nz_sample = op.noise ? op.noise + n * op.noise_stride : nullptr;
  // From an unsigned value: its high word is known 0. As int64_t(TY) * U it took a register,
  // which ptxas spilled (4 bytes, plane_cols_kernel<BiasActGradOp<float>, 4>, sm_90).
  const int64_t row_step = static_cast<uint32_t>(TY * U);

  // U positions (TY apart) from l0, V channels each: the big inputs; one noise value per position.
  A x0[U][V], x1[U][V], nz[U];
  bool ok[U];
  auto load = [&](int64_t l0) {
#pragma unroll
    for (int j = 0; j < U; ++j) {
      const int64_t l = l0 + static_cast<int64_t>(j) * TY;
      ok[j] = active && l < end;
      nz[j] = A(0);
#pragma unroll
      for (int k = 0; k < V; ++k) x1[j][k] = A(0);
      if (ok[j]) {
        const int64_t off = (n * g.L + l) * g.C + c0;
        load_acc<V>(op.in0 + off, x0[j]);
        if (op.in1) load_acc<V>(op.in1 + off, x1[j]);
        if (nz_sample) nz[j] = static_cast<A>(nz_sample[l]);
      }
    }
  };

  if (passes & kPassA) {
    typename Op::AccA acc[V];
    decltype(op.params_a(0, 0)) pa[V];
#pragma unroll
    for (int v = 0; v < V; ++v) { acc[v].zero(); pa[v] = op.params_a(n, cp + v); }
    for (int64_t l0 = begin + ty; l0 < end; l0 += row_step) {
      load(l0);
      cols_accumulate_a<Op, U, V>(op, pa, x0, x1, nz, ok, acc);
    }
    cols_block_reduce<typename Op::AccA, V>(acc, TX, smem);
    if (threadIdx.x < TX && active) {
#pragma unroll
      for (int v = 0; v < V; ++v) {
        if (passes & kPassB) op.store_a(n, c0 + v, acc[v]);
        else part_a[(n * g.C + c0 + v) * g.segments + s] = acc[v];
      }
    }
    if (passes & kPassB) __syncthreads();  // store_a's writes, visible to pass B's params_b
  }

  if (passes & kPassB) {
    Sums<A, Op::KB> acc[V];
    decltype(op.params_b(0, 0, op.params_a(0, 0))) pb[V];
#pragma unroll
    for (int v = 0; v < V; ++v) {
      acc[v].zero();
      pb[v] = op.params_b(n, cp + v, op.params_a(n, cp + v));
    }
    for (int64_t l0 = begin + ty; l0 < end; l0 += row_step) {
      load(l0);
#pragma unroll
      for (int j = 0; j < U; ++j) {
        if (!ok[j]) continue;
        A o[V];
        cols_apply_b<Op, V>(op, pb, x0[j], x1[j], nz[j], o, acc);
        if constexpr (Op::kWritesB) {
          store_acc<V>(op.out + (n * g.L + l0 + static_cast<int64_t>(j) * TY) * g.C + c0, o);
        }
      }
    }
    if constexpr (Op::KB > 0) {
      cols_block_reduce<Sums<A, Op::KB>, V>(acc, TX, smem);
      if (threadIdx.x < TX && active && part_b != nullptr) {
#pragma unroll
        for (int v = 0; v < V; ++v) part_b[(n * g.C + c0 + v) * g.segments + s] = acc[v];
      }
    }
  }
}

// ------------------------------------------------------------------ finalize (fixed order)
// mean, rstd [N*C] from the Welford partials [N*C][S].
template <typename A>
__global__ void finalize_welford_kernel(const Welford<A>* __restrict__ part,  // [NC][S]
                                        int64_t NC,                           // planes
                                        int64_t S,                            // segments
                                        A eps,                                // variance epsilon
                                        A* __restrict__ mean,                 // [NC] out
                                        A* __restrict__ rstd) {               // [NC] out
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < NC;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    Welford<A> w = part[i * S];
    for (int64_t s = 1; s < S; ++s) w.merge(part[i * S + s]);
    w.finalize(eps, mean[i], rstd[i]);
  }
}

// out_k[n*C+c] (per plane: over_n false) or out_k[c] (per channel: over_n true) = sum of the
// partials [N][C][S] over s (and n), for k < K; a null out_k is skipped.
template <typename A, int K>
__global__ void finalize_sums_kernel(const Sums<A, K>* __restrict__ part,  // [N][C][S]
                                     int64_t N, int64_t C, int64_t S,      // partials' shape
                                     bool over_n,                          // also sum over n
                                     A* __restrict__ out0,                 // [N*C] or [C], or null
                                     A* __restrict__ out1) {               // [N*C] or [C], or null
  const int64_t count = over_n ? C : N * C;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    A total[K > 0 ? K : 1];
#pragma unroll
    for (int k = 0; k < K; ++k) total[k] = A(0);
    const int64_t n_end = over_n ? N : 1;
    for (int64_t n = 0; n < n_end; ++n) {
      const Sums<A, K>* p = part + ((over_n ? n * C + i : i) * S);
      for (int64_t s = 0; s < S; ++s) {
#pragma unroll
        for (int k = 0; k < K; ++k) total[k] += p[s].v[k];
      }
    }
    if (out0 != nullptr) out0[i] = total[0];
    if constexpr (K > 1) { if (out1 != nullptr) out1[i] = total[1]; }
  }
}

// dnoise[m, l] = sum_{n in m} sum_c g[n, c, l] * strength[c], for a per-sample map (m = n) or a
// shared one (m = 0, summed over n in order). One thread per output position.
template <typename T>
__global__ void noise_grad_kernel(const T* __restrict__ g,                  // [N, C, L] like x
                                  const acc_t<T>* __restrict__ strength,    // [C]
                                  int64_t N, int64_t C, int64_t L,          // sizes
                                  bool nhwc,                                // layout of g
                                  bool shared,                              // out is [1, L]
                                  acc_t<T>* __restrict__ out) {             // [N or 1, L]
  using A = acc_t<T>;
  const int64_t count = (shared ? 1 : N) * L;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < count;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t m = i / L;
    const int64_t l = i - m * L;
    A total = A(0);
    for (int64_t n = shared ? 0 : m; n < (shared ? N : m + 1); ++n) {
      for (int64_t c = 0; c < C; ++c) {
        const int64_t off = nhwc ? (n * L + l) * C + c : (n * C + c) * L + l;
        total += static_cast<A>(to_acc(g[off])) * strength[c];
      }
    }
    out[i] = total;
  }
}

// ------------------------------------------------------------------ host helpers
// Stream-ordered scratch memory from PyTorch's caching allocator (freed when the DataPtr dies,
// safe because later reuse is ordered on the same stream).
inline c10::DataPtr scratch(size_t bytes) {
  return c10::cuda::CUDACachingAllocator::get()->allocate(bytes);
}

// Launch one pass of op: the rows or the cols kernel (kCols must match g.cols).
template <class Op, int V, bool kCols>
void launch_planes(const Op& op, const PlaneGeometry& g, int passes, typename Op::AccA* part_a,
                   Sums<typename Op::A, Op::KB>* part_b, cudaStream_t stream) {
  if constexpr (kCols) {
    plane_cols_kernel<Op, V><<<g.blocks, kThreads, 0, stream>>>(op, g, passes, part_a, part_b);
  } else {
    plane_rows_kernel<Op, V><<<g.blocks, kThreads, 0, stream>>>(op, g, passes, part_a, part_b);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Vector width of the cols kernel: at most 4 channels per thread (8-byte accesses for 16-bit
// types), which keeps the per-channel parameters of 4 channels, not 8, in registers. Measured
// (nvcc 13.0, sm_90, fp16, no spills either way): 8 channels take the epilogue's cols kernels from
// 73 / 108 registers (forward / backward) to 99 / 134, one resident 256-thread block per SM fewer
// (2 instead of 3, 1 instead of 2) for the same bytes per thread, so fewer bytes in flight.
template <typename T> __host__ __device__ constexpr int cols_vec_width() {
  return vec_width<T>() > 4 ? 4 : vec_width<T>();
}

// Call f(std::integral_constant<int, V>, std::bool_constant<cols>) with the widest vectors the
// layout allows: rows need L % V == 0 (vectors never straddle planes), cols C % V == 0; both need
// every big pointer 16-byte aligned (`aligned`). Otherwise V = 1.
template <typename T, class F>
void dispatch_layout(bool cols, bool aligned, int64_t C, int64_t L, F&& f) {
  constexpr int RV = vec_width<T>(), CV = cols_vec_width<T>();
  if (cols) {
    if (aligned && C % CV == 0) f(std::integral_constant<int, CV>{}, std::true_type{});
    else f(std::integral_constant<int, 1>{}, std::true_type{});
  } else {
    if (aligned && L % RV == 0) f(std::integral_constant<int, RV>{}, std::false_type{});
    else f(std::integral_constant<int, 1>{}, std::false_type{});
  }
}

// Sum partials [N][C][S] of K values into out0/out1 (per plane or per channel).
template <typename A, int K>
void launch_finalize_sums(const Sums<A, K>* part, int64_t N, int64_t C, int64_t S, bool over_n,
                          A* out0, A* out1, cudaStream_t stream) {
  const int64_t count = over_n ? C : N * C;
  finalize_sums_kernel<A, K><<<grid_for(count), kThreads, 0, stream>>>(part, N, C, S, over_n,
                                                                       out0, out1);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_noise_grad(const T* g, const acc_t<T>* strength, int64_t N, int64_t C, int64_t L,
                       bool nhwc, bool shared, acc_t<T>* out, cudaStream_t stream) {
  const int64_t count = (shared ? 1 : N) * L;
  noise_grad_kernel<T><<<grid_for(count), kThreads, 0, stream>>>(g, strength, N, C, L, nhwc,
                                                                 shared, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Call f(Tag<T>{}) for the storage type T of `dtype` (use: [&](auto tag) { using T = ...; }).
template <typename T> struct Tag { using type = T; };
template <class F>
void dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float: f(Tag<float>{}); break;
    case DType::Double: f(Tag<double>{}); break;
    case DType::Half: f(Tag<__half>{}); break;
    case DType::BFloat16: f(Tag<__nv_bfloat16>{}); break;
  }
}

// Call f(Tag<O>{}) for an output storage type O beside an input of storage type T: O = T, or a
// float32 output for a 16-bit input, or a 16-bit output for a float32 input (float32
// intermediates and gradients: upfirdn2d's two-pass filters, filtered_lrelu's dx for db).
template <typename T, class F>
void dispatch_out(const char* op, DType in, DType out, F&& f) {
  if (out == in) {
    f(Tag<T>{});
    return;
  }
  if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>) {
    if (out == DType::Float) {
      f(Tag<float>{});
      return;
    }
  } else if constexpr (std::is_same_v<T, float>) {
    if (out == DType::Half) {
      f(Tag<__half>{});
      return;
    }
    if (out == DType::BFloat16) {
      f(Tag<__nv_bfloat16>{});
      return;
    }
  }
  TORCH_CHECK(false, op, " cuda: unsupported dtype pair (input: DType ", static_cast<int>(in),
              ", output: DType ", static_cast<int>(out), "): the output must have the input's "
              "dtype, or be float32 for a float16/bfloat16 input, or float16/bfloat16 for a "
              "float32 input");
}

}  // namespace sgf
