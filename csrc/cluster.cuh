// Per-plane passes on thread-block clusters (sm_90): one read of the big inputs per pass.
//
// The kernels of plane.cuh split a large plane into S segments and, when S > 1, run pass A
// (statistics) and pass B (output) as separate sweeps: every big input is read twice. Here the
// segments of a plane (rows, NCHW) or of a narrow channel tile (cols, channels_last) are the K CTAs
// of one cluster, resident together:
//   pass A: each CTA reads its segment once, keeps it (storage dtype) in its shared memory (the
//           stash) and reduces its statistics; the K CTA totals are merged through distributed
//           shared memory (cluster.map_shared_rank) in rank order, so every CTA holds the same,
//           deterministic result and finalizes it (store_a);
//   pass B: each CTA computes its output from the stash: no second read of the inputs.
// A segment larger than the stash (fp32 1024x1024 planes, wide channels_last tiles) keeps its first
// `stash` positions on chip and reads the rest again in pass B, those first: they are what the
// cluster read last, so with few clusters in flight they come from L2.
//
// Opt-in until a GPU run has verified them: STYLEGAN_FAST_CUDA_CLUSTERS=1 (read at every launch,
// so one process can compare both paths). Only sm_90 devices use them.
#pragma once

#include <cooperative_groups.h>

#include <cstdlib>
#include <type_traits>

#include "plane.cuh"

namespace sgf {

// A cluster launch of a per-plane op: plan_planes' geometry with segments = the cluster size.
struct ClusterPlan {
  PlaneGeometry g;      // segments = K; units = blocks = CTAs (rows: N*C*K, cols: N*ctiles*K)
  int cluster = 0;      // K CTAs per cluster (0: no cluster launch, run plane.cuh's kernels)
  int64_t stash = 0;    // positions (rows) or tile rows (cols) of its segment a CTA keeps on chip
  size_t smem = 0;      // dynamic shared memory per CTA (bytes)
};

// Threads along C of the cols cluster kernel: a 32-byte row of V-wide vectors (one DRAM sector),
// so that a tile (L rows of 32 bytes) is narrow enough to fit a cluster's shared memory.
template <typename T, int V> __host__ __device__ constexpr int cluster_cols_tx() {
  return 32 / (V * static_cast<int>(sizeof(T))) > 1 ? 32 / (V * static_cast<int>(sizeof(T))) : 1;
}

__host__ __device__ constexpr int64_t align16(int64_t bytes) { return (bytes + 15) / 16 * 16; }

// Where the kernels' load() takes the big inputs from: global memory, copying those within the
// stash into it (pass A); global memory only (pass B, past the stash); the stash (pass B).
constexpr int kGlobalStashing = 0, kGlobal = 1, kFromStashSource = 2;
constexpr std::integral_constant<int, kGlobalStashing> kStashingLoad{};
constexpr std::integral_constant<int, kGlobal> kGlobalLoad{};
constexpr std::integral_constant<int, kFromStashSource> kStashLoad{};

// Bytes of a stash of `count` items of each big input (the second only when the op has one).
template <class Op>
__host__ __device__ constexpr int64_t stash_bytes(int64_t count, int64_t item_elems, bool two) {
  return align16(count * item_elems * static_cast<int64_t>(sizeof(typename Op::T))) +
         (two ? count * item_elems * static_cast<int64_t>(sizeof(typename Op::In1)) : 0);
}

// V elements of one big input as math values: from global memory, or from the stash when
// kFromStash; copied into the stash when stash_it (pass A, within the stash).
template <int V, bool kFromStash, typename S, typename A>
__device__ __forceinline__ void load_stashed(const S* global, S* stashed, bool stash_it,
                                             A (&out)[V]) {
  S raw[V];
  if constexpr (kFromStash) load_vec<V>(stashed, raw);
  else load_vec<V>(global, raw);
  if (stash_it) store_vec<V>(stashed, raw);
#pragma unroll
  for (int k = 0; k < V; ++k) out[k] = static_cast<A>(to_acc(raw[k]));
}

// The cluster-wide merge, in rank order, of slot `slot` of every CTA's `mine` (shared memory):
// every CTA gets the same bits.
template <class Acc>
__device__ __forceinline__ Acc cluster_merge(const Acc* mine, int slot) {
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();
  Acc total = *cluster.map_shared_rank(mine + slot, 0);
  for (unsigned r = 1; r < cluster.num_blocks(); ++r) {
    total.merge(*cluster.map_shared_rank(mine + slot, static_cast<int>(r)));
  }
  return total;
}

// The block's total of every thread's acc, in a fixed order (warp butterfly, then the warps in
// order), written to *out by thread 0. red: kWarps scratch entries.
template <class Acc>
__device__ __forceinline__ void block_reduce_to(Acc acc, Acc* red, Acc* out) {
  acc = group_reduce(acc, 32);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    Acc total = red[0];
    for (int w = 1; w < kWarps; ++w) total.merge(red[w]);
    *out = total;
  }
}

// ------------------------------------------------------------------ rows: [N][C][L]
// Cluster p = blockIdx.x / K owns plane p; its CTA of rank s owns positions
// [s * seg_len, (s + 1) * seg_len), as V-vectors t * V + k * kThreads * V for thread t.
template <class Op, int V>
__global__ void __launch_bounds__(kThreads)
plane_rows_cluster_kernel(const Op op,                    // the pass's tensors and math
                          const PlaneGeometry g,          // segments = K, seg_len % V == 0
                          const int64_t stash,            // positions kept on chip, % V == 0
                          Sums<typename Op::A, Op::KB>* __restrict__ part_b) {  // [N*C*K] or null
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using A = typename Op::A;
  using T = typename Op::T;
  using In1 = typename Op::In1;
  using AccA = typename Op::AccA;
  using AccB = Sums<A, Op::KB>;
  constexpr int U = rows_unroll<V>();
  constexpr int kSpan = kThreads * V;
  extern __shared__ __align__(16) unsigned char stash_mem[];
  __shared__ AccA red_a[kWarps + 1];   // warp totals, then the CTA's (read by the whole cluster)
  __shared__ AccB red_b[kWarps + 1];
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();

  // Positions are 32-bit offsets into the segment (plan_cluster: seg_len < 2^30) from pointers
  // to its start: few registers stay live across pass A (no spills around its divisions).
  const int s = static_cast<int>(cluster.block_rank());
  const unsigned plane32 = blockIdx.x / static_cast<unsigned>(g.segments);  // n * C + c
  const unsigned n32 = plane32 / static_cast<unsigned>(g.C);
  const int64_t plane = plane32;
  const int64_t n = n32;
  const int64_t c = plane32 - n32 * static_cast<unsigned>(g.C);
  const int64_t begin = s * g.seg_len;
  const int len = static_cast<int>(begin < g.L ? (g.L - begin < g.seg_len ? g.L - begin
                                                                          : g.seg_len) : 0);
  const int stash_len = stash < len ? static_cast<int>(stash) : len;
  const int64_t first = plane * g.L + begin;  // the segment's first element
  const T* in0 = op.in0 + first;
  const In1* in1 = op.in1 ? op.in1 + first : nullptr;
  T* out = op.out + first;
  const A* nz_seg = op.noise ? op.noise + n * op.noise_stride + begin : nullptr;
  T* stash0 = reinterpret_cast<T*>(stash_mem);
  In1* stash1 = reinterpret_cast<In1*>(stash_mem + align16(stash * sizeof(T)));

  // U vectors kSpan apart from h0 (those before `stop`): the big inputs from global memory,
  // stashing those before stash_len, or from the stash; the noise from global memory (1/C).
  A x0[U][V], x1[U][V], nz[U][V];
  bool ok[U];
  auto load = [&](auto source, int h0, int stop) {
    constexpr bool kFromStash = decltype(source)::value == kFromStashSource;
    constexpr bool kStashing = decltype(source)::value == kGlobalStashing;
#pragma unroll
    for (int j = 0; j < U; ++j) {
      const int h = h0 + j * kSpan;
      ok[j] = h < stop;
#pragma unroll
      for (int k = 0; k < V; ++k) x1[j][k] = nz[j][k] = A(0);
      if (!ok[j]) continue;
      const bool stash_it = kStashing && h < stash_len;
      load_stashed<V, kFromStash>(in0 + h, stash0 + h, stash_it, x0[j]);
      if (in1) load_stashed<V, kFromStash>(in1 + h, stash1 + h, stash_it, x1[j]);
      if (nz_seg) load_acc<V>(nz_seg + h, nz[j]);
    }
  };

  // pass A: read the segment once (stashing it), reduce, merge the K CTA totals
  const auto pa = op.params_a(n, c);  // kept for params_b: nothing is loaded twice
  {
    AccA acc;
    acc.zero();
    for (int h0 = threadIdx.x * V; h0 < len; h0 += kSpan * U) {
      load(kStashingLoad, h0, len);
      rows_accumulate_a<Op, U, V>(op, pa, x0, x1, nz, ok, acc);
    }
    block_reduce_to(acc, red_a, &red_a[kWarps]);
    cluster.sync();  // every CTA's total is in its red_a[kWarps], and its stash is complete
    if (threadIdx.x == 0) op.store_a(n, c, cluster_merge(red_a, kWarps));
    cluster.barrier_arrive();  // done reading the other CTAs' shared memory (waited for at exit)
    __syncthreads();           // store_a's results, visible to this CTA's params_b
  }

  // pass B: the positions past the stash first (read last in pass A), then the stash
  AccB acc;
  acc.zero();
  const auto pb = op.params_b(n, c, pa);
  auto emit = [&](int h0) {
#pragma unroll
    for (int j = 0; j < U; ++j) {
      if (!ok[j]) continue;
      A o[V];
      rows_apply_b<Op, V>(op, pb, x0[j], x1[j], nz[j], o, acc);
      if constexpr (Op::kWritesB) store_acc<V>(out + h0 + j * kSpan, o);
    }
  };
  for (int h0 = stash_len + threadIdx.x * V; h0 < len; h0 += kSpan * U) {
    load(kGlobalLoad, h0, len);
    emit(h0);
  }
  for (int h0 = threadIdx.x * V; h0 < stash_len; h0 += kSpan * U) {
    load(kStashLoad, h0, stash_len);
    emit(h0);
  }
  if constexpr (Op::KB > 0) {
    block_reduce_to(acc, red_b, &red_b[kWarps]);
    if (threadIdx.x == 0 && part_b != nullptr) part_b[plane * g.segments + s] = red_b[kWarps];
  }
  cluster.barrier_wait();  // no CTA exits while another may still read its red_a
#else
  (void)op; (void)g; (void)stash; (void)part_b;
  __trap();  // launched on sm_90 devices only
#endif
}

// ------------------------------------------------------------------ cols: [N][L][C]
// Cluster p = blockIdx.x / K owns channel tile p (sample n, TX * V channels); its CTA of rank s
// owns rows [s * seg_len, (s + 1) * seg_len): TX threads along C (V channels each) times
// TY = kThreads / TX along L. The stash holds the segment's rows of the tile, [row][TX * V].
template <class Op, int V>
__global__ void __launch_bounds__(kThreads)
plane_cols_cluster_kernel(const Op op,                    // the pass's tensors and math
                          const PlaneGeometry g,          // segments = K, ctiles of TX * V
                          const int64_t stash,            // tile rows kept on chip
                          Sums<typename Op::A, Op::KB>* __restrict__ part_b) {  // [N*C*K] or null
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  using A = typename Op::A;
  using T = typename Op::T;
  using In1 = typename Op::In1;
  using AccA = typename Op::AccA;
  using AccB = Sums<A, Op::KB>;
  constexpr int U = cols_unroll<V>();
  constexpr int TX = cluster_cols_tx<T, V>();
  constexpr int TY = kThreads / TX;
  constexpr int kRowStep = TY * U;
  constexpr int kRed = kWarps * TX * V;  // cols_block_reduce's scratch entries
  extern __shared__ __align__(16) unsigned char stash_mem[];
  __shared__ __align__(16) unsigned char red[kRed * (sizeof(AccA) > sizeof(AccB) ? sizeof(AccA)
                                                                                 : sizeof(AccB))];
  __shared__ AccA cta_a[TX * V];  // this CTA's per-channel totals (read by the whole cluster)
  namespace cg = cooperative_groups;
  const cg::cluster_group cluster = cg::this_cluster();

  const int tx = threadIdx.x % TX;
  const int ty = threadIdx.x / TX;
  // Rows are 32-bit offsets into the segment (plan_cluster: seg_len < 2^30) from pointers to its
  // first row: few registers stay live across pass A (no spills around its divisions).
  const int s = static_cast<int>(cluster.block_rank());
  const unsigned tile = blockIdx.x / static_cast<unsigned>(g.segments);
  const unsigned n32 = tile / static_cast<unsigned>(g.ctiles);
  const int64_t n = n32;
  const int64_t ct = tile - n32 * static_cast<unsigned>(g.ctiles);
  const int64_t c0 = (ct * TX + tx) * V;
  const bool active = c0 < g.C;           // with V > 1, C % V == 0: all V channels exist
  const int64_t cp = active ? c0 : 0;     // a valid channel for parameter reads
  const int64_t begin = s * g.seg_len;
  const int len = static_cast<int>(begin < g.L ? (g.L - begin < g.seg_len ? g.L - begin
                                                                          : g.seg_len) : 0);
  const int stash_len = stash < len ? static_cast<int>(stash) : len;
  const int64_t first = (n * g.L + begin) * g.C + cp;  // row 0 of the segment, channel c0
  const int64_t row_stride = g.C;
  const T* in0 = op.in0 + first;
  const In1* in1 = op.in1 ? op.in1 + first : nullptr;
  T* out = op.out + first;
  const A* nz_seg = op.noise ? op.noise + n * op.noise_stride + begin : nullptr;
  T* stash0 = reinterpret_cast<T*>(stash_mem) + tx * V;
  In1* stash1 = reinterpret_cast<In1*>(stash_mem + align16(stash * TX * V * sizeof(T))) + tx * V;

  // U rows TY apart from r0 (those before `stop`), V channels each, as in rows' load.
  A x0[U][V], x1[U][V], nz[U];
  bool ok[U];
  auto load = [&](auto source, int r0, int stop) {
    constexpr bool kFromStash = decltype(source)::value == kFromStashSource;
    constexpr bool kStashing = decltype(source)::value == kGlobalStashing;
#pragma unroll
    for (int j = 0; j < U; ++j) {
      const int r = r0 + j * TY;
      ok[j] = active && r < stop;
      nz[j] = A(0);
#pragma unroll
      for (int k = 0; k < V; ++k) x1[j][k] = A(0);
      if (!ok[j]) continue;
      const bool stash_it = kStashing && r < stash_len;
      const int64_t global_off = r * row_stride;
      const int stash_off = r * (TX * V);
      load_stashed<V, kFromStash>(in0 + global_off, stash0 + stash_off, stash_it, x0[j]);
      if (in1) {
        load_stashed<V, kFromStash>(in1 + global_off, stash1 + stash_off, stash_it, x1[j]);
      }
      if (nz_seg) nz[j] = static_cast<A>(nz_seg[r]);
    }
  };

  // pass A
  decltype(op.params_a(0, 0)) pa[V];  // kept for params_b: nothing is loaded twice
  {
    AccA acc[V];
#pragma unroll
    for (int v = 0; v < V; ++v) { acc[v].zero(); pa[v] = op.params_a(n, cp + v); }
    for (int r0 = ty; r0 < len; r0 += kRowStep) {
      load(kStashingLoad, r0, len);
      cols_accumulate_a<Op, U, V>(op, pa, x0, x1, nz, ok, acc);
    }
    cols_block_reduce<AccA, V>(acc, TX, red);
    if (threadIdx.x < TX) {
#pragma unroll
      for (int v = 0; v < V; ++v) cta_a[tx * V + v] = acc[v];
    }
    cluster.sync();  // every CTA's totals are in its cta_a, and its stash is complete
    if (threadIdx.x < TX && active) {
#pragma unroll
      for (int v = 0; v < V; ++v) op.store_a(n, c0 + v, cluster_merge(cta_a, tx * V + v));
    }
    cluster.barrier_arrive();  // done reading the other CTAs' shared memory (waited for at exit)
    __syncthreads();           // store_a's results, visible to this CTA's params_b
  }

  // pass B: the rows past the stash first, then the stash
  AccB acc[V];
  decltype(op.params_b(0, 0, pa[0])) pb[V];
#pragma unroll
  for (int v = 0; v < V; ++v) { acc[v].zero(); pb[v] = op.params_b(n, cp + v, pa[v]); }
  auto emit = [&](int r0) {
#pragma unroll
    for (int j = 0; j < U; ++j) {
      if (!ok[j]) continue;
      A o[V];
      cols_apply_b<Op, V>(op, pb, x0[j], x1[j], nz[j], o, acc);
      if constexpr (Op::kWritesB) store_acc<V>(out + (r0 + j * TY) * row_stride, o);
    }
  };
  for (int r0 = stash_len + ty; r0 < len; r0 += kRowStep) {
    load(kGlobalLoad, r0, len);
    emit(r0);
  }
  for (int r0 = ty; r0 < stash_len; r0 += kRowStep) {
    load(kStashLoad, r0, stash_len);
    emit(r0);
  }
  if constexpr (Op::KB > 0) {
    cols_block_reduce<AccB, V>(acc, TX, red);
    if (threadIdx.x < TX && active && part_b != nullptr) {
#pragma unroll
      for (int v = 0; v < V; ++v) part_b[(n * g.C + c0 + v) * g.segments + s] = acc[v];
    }
  }
  cluster.barrier_wait();  // no CTA exits while another may still read its cta_a
#else
  (void)op; (void)g; (void)stash; (void)part_b;
  __trap();  // launched on sm_90 devices only
#endif
}

// ------------------------------------------------------------------ host side
// STYLEGAN_FAST_CUDA_CLUSTERS=1 (exactly): the cluster kernels are wanted. Read at each launch.
inline bool clusters_requested() {
  const char* value = std::getenv("STYLEGAN_FAST_CUDA_CLUSTERS");
  return value != nullptr && value[0] == '1' && value[1] == '\0';
}

// The current device's compute capability major and shared memory limits (cached per device).
struct SharedMemoryLimits {
  int major = 0;
  int64_t per_block_optin = 0;   // static + dynamic shared memory one CTA may use
  int64_t per_sm = 0;            // shared memory of one SM
};
inline SharedMemoryLimits shared_memory_limits() {
  int dev = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
  static SharedMemoryLimits cache[128];
  if (dev >= 0 && dev < 128 && cache[dev].major > 0) return cache[dev];
  SharedMemoryLimits lim;
  int value = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&lim.major, cudaDevAttrComputeCapabilityMajor, dev));
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  lim.per_block_optin = value;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&value, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev));
  lim.per_sm = value;
  if (dev >= 0 && dev < 128) cache[dev] = lim;
  return lim;
}

template <class Op, int V, bool kCols>
constexpr auto cluster_kernel() {
  if constexpr (kCols) return &plane_cols_cluster_kernel<Op, V>;
  else return &plane_rows_cluster_kernel<Op, V>;
}

template <class Op, int V, bool kCols>
cudaLaunchConfig_t cluster_config(const ClusterPlan& p, cudaLaunchAttribute* attr,
                                  cudaStream_t stream) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(p.g.blocks);
  cfg.blockDim = dim3(kThreads);
  cfg.dynamicSmemBytes = p.smem;
  cfg.stream = stream;
  attr->id = cudaLaunchAttributeClusterDimension;
  attr->val.clusterDim.x = static_cast<unsigned>(p.cluster);
  attr->val.clusterDim.y = 1;
  attr->val.clusterDim.z = 1;
  cfg.attrs = attr;
  cfg.numAttrs = 1;
  return cfg;
}

// Whether the cluster launch of p can be resident (at least one cluster per GPU); sets the
// kernel's shared memory and non-portable cluster size attributes it needs.
template <class Op, int V, bool kCols>
bool cluster_fits(const ClusterPlan& p) {
  const auto kernel = cluster_kernel<Op, V, kCols>();
  if (cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                           static_cast<int>(p.smem)) != cudaSuccess ||
      (p.cluster > 8 &&
       cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1) !=
           cudaSuccess)) {
    (void)cudaGetLastError();  // clear the sticky-free error: this size is just not available
    return false;
  }
  cudaLaunchAttribute attr;
  const cudaLaunchConfig_t cfg = cluster_config<Op, V, kCols>(p, &attr, nullptr);
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &cfg) != cudaSuccess) {
    (void)cudaGetLastError();
    return false;
  }
  return clusters > 0;
}

// The cluster launch for op over [N][C][L] (layout kCols) with V-wide vectors, or cluster = 0
// when it is not wanted (not requested, not sm_90, or `base` already reads each input once) or
// not possible. K is the smallest cluster whose CTAs hold their whole segment at two CTAs per SM,
// else at one CTA per SM, else the largest cluster with a partial stash.
template <class Op, int V, bool kCols>
ClusterPlan plan_cluster(const Op& op, const PlaneGeometry& base) {
  ClusterPlan p;
  if (base.fused() || !clusters_requested()) return p;
  const SharedMemoryLimits lim = shared_memory_limits();
  if (lim.major != 9) return p;
  cudaFuncAttributes attrs{};
  C10_CUDA_CHECK(cudaFuncGetAttributes(&attrs, cluster_kernel<Op, V, kCols>()));
  const int64_t fixed = static_cast<int64_t>(attrs.sharedSizeBytes) + 1024;  // + system reserve
  const int64_t one_per_sm = lim.per_block_optin - static_cast<int64_t>(attrs.sharedSizeBytes);
  const int64_t two_per_sm = lim.per_sm / 2 - fixed;
  using T = typename Op::T;
  const bool two = op.in1 != nullptr;
  const int64_t item = kCols ? static_cast<int64_t>(cluster_cols_tx<T, V>()) * V : 1;
  const int64_t step = kCols ? 1 : V;  // stash granularity (positions or rows)
  auto seg_len = [&](int k) { return ceil_div(ceil_div(base.L, k), step) * step; };
  if (seg_len(16) >= (int64_t{1} << 30)) return p;  // the kernels index a segment in 32 bits
  auto bytes = [&](int64_t count) { return stash_bytes<Op>(count, item, two); };

  constexpr int kSizes[] = {2, 4, 8, 16};
  int k = 0;
  for (int limit_index = 0; limit_index < 2 && k == 0; ++limit_index) {
    const int64_t limit = limit_index == 0 ? two_per_sm : one_per_sm;
    for (int size : kSizes) {
      if (bytes(seg_len(size)) <= limit) { k = size; break; }
    }
  }
  for (int attempt = 0; attempt < 2; ++attempt) {
    const bool whole = k != 0;
    const int size = whole ? k : (attempt == 0 ? 16 : 8);
    p.g = base;
    p.g.segments = size;
    p.g.seg_len = seg_len(size);
    if (kCols) {
      p.g.group = cluster_cols_tx<T, V>();
      p.g.ctiles = ceil_div(base.C, item);
      p.g.units = base.N * p.g.ctiles * size;
    } else {
      p.g.group = kThreads;
      p.g.ctiles = 1;
      p.g.units = base.N * base.C * size;
    }
    p.g.blocks = static_cast<unsigned>(p.g.units);
    p.cluster = size;
    p.stash = p.g.seg_len;
    if (!whole) {  // the largest stash that fits one CTA per SM
      const int64_t per_item = item * static_cast<int64_t>(
          sizeof(T) + (two ? sizeof(typename Op::In1) : 0));
      int64_t count = one_per_sm / per_item / step * step;
      while (count > 0 && bytes(count) > one_per_sm) count -= step;
      p.stash = count < p.g.seg_len ? count : p.g.seg_len;
    }
    p.smem = static_cast<size_t>(bytes(p.stash));
    if (p.stash > 0 && cluster_fits<Op, V, kCols>(p)) return p;
    if (whole) k = 0;  // a whole-segment size that cannot be resident: try the partial ones
  }
  return ClusterPlan{};
}

// Run pass A and B of op in one cluster launch (plan from plan_cluster, cluster > 0).
template <class Op, int V, bool kCols>
void launch_cluster(const Op& op, const ClusterPlan& p, Sums<typename Op::A, Op::KB>* part_b,
                    cudaStream_t stream) {
  cudaLaunchAttribute attr;
  const cudaLaunchConfig_t cfg = cluster_config<Op, V, kCols>(p, &attr, stream);
  C10_CUDA_CHECK(cudaLaunchKernelEx(&cfg, cluster_kernel<Op, V, kCols>(), op, p.g, p.stash,
                                    part_b));
}

}  // namespace sgf
