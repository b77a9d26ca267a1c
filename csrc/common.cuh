// Shared device helpers for the stylegan_fast CUDA kernels.
//
// Everything here is header-only and dtype-generic:
//   * storage types T in {float, double, __half, __nv_bfloat16}; math in acc_t<T> (float, or double
//     for double, so that gradcheck in float64 sees float64 math);
//   * aligned vector loads/stores of V elements (16-byte accesses, split when wider);
//   * index walkers that step through [outer][mid][inner] tensors without per-element divisions;
//   * Welford/Chan statistics and plain sums with deterministic warp/block merges;
//   * Philox4x32-10 + Box-Muller, the counter-based generator of the in-kernel noise;
//   * launch helpers (SM count, grid sizes, the launch check).
#pragma once

#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <c10/cuda/CUDAException.h>  // C10_CUDA_CHECK, C10_CUDA_KERNEL_LAUNCH_CHECK

#include "launchers.h"

namespace sgf {

constexpr int kThreads = 256;  // threads per block of every main kernel
constexpr int kWarps = kThreads / 32;

// ------------------------------------------------------------------ dtypes and conversions
template <typename T> struct AccType { using type = float; };
template <> struct AccType<double> { using type = double; };
template <typename T> using acc_t = typename AccType<T>::type;

__device__ __forceinline__ float to_acc(float v) { return v; }
__device__ __forceinline__ double to_acc(double v) { return v; }
__device__ __forceinline__ float to_acc(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float to_acc(uint8_t v) { return static_cast<float>(v); }

template <typename T> __device__ __forceinline__ T from_acc(acc_t<T> v);
template <> __device__ __forceinline__ float from_acc<float>(float v) { return v; }
template <> __device__ __forceinline__ double from_acc<double>(double v) { return v; }
template <> __device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half_rn(v);
}
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Elements per 16-byte vector for storage type T.
template <typename T> __host__ __device__ constexpr int vec_width() {
  return 16 / static_cast<int>(sizeof(T));
}

// ------------------------------------------------------------------ vector memory access
// An aligned bundle of BYTES bytes (1, 2, 4, 8 or 16) that the compiler moves in one access.
template <int BYTES> struct Raw;
template <> struct Raw<1> { using type = uint8_t; };
template <> struct Raw<2> { using type = uint16_t; };
template <> struct Raw<4> { using type = uint32_t; };
template <> struct Raw<8> { using type = uint2; };
template <> struct Raw<16> { using type = uint4; };

// Load V consecutive elements p[0..V) into out[]. p must be aligned to min(16, V * sizeof(T))
// bytes; wider than 16 bytes is split into 16-byte accesses. V == 1 is a plain scalar load.
template <int V, typename T>
__device__ __forceinline__ void load_vec(const T* __restrict__ p, T (&out)[V]) {
  constexpr int kBytes = V * static_cast<int>(sizeof(T));
  constexpr int kChunk = kBytes < 16 ? kBytes : 16;
  constexpr int kPer = kChunk / static_cast<int>(sizeof(T));
  using R = typename Raw<kChunk>::type;
#pragma unroll
  for (int i = 0; i < V / kPer; ++i) {
    union { R raw; T v[kPer]; } u;
    u.raw = *reinterpret_cast<const R*>(p + i * kPer);
#pragma unroll
    for (int k = 0; k < kPer; ++k) out[i * kPer + k] = u.v[k];
  }
}

// Store in[0..V) to p[0..V); same alignment rule as load_vec.
template <int V, typename T>
__device__ __forceinline__ void store_vec(T* __restrict__ p, const T (&in)[V]) {
  constexpr int kBytes = V * static_cast<int>(sizeof(T));
  constexpr int kChunk = kBytes < 16 ? kBytes : 16;
  constexpr int kPer = kChunk / static_cast<int>(sizeof(T));
  using R = typename Raw<kChunk>::type;
#pragma unroll
  for (int i = 0; i < V / kPer; ++i) {
    union { R raw; T v[kPer]; } u;
#pragma unroll
    for (int k = 0; k < kPer; ++k) u.v[k] = in[i * kPer + k];
    *reinterpret_cast<R*>(p + i * kPer) = u.raw;
  }
}

// Load V elements of T and convert them to the math type A.
template <int V, typename T, typename A>
__device__ __forceinline__ void load_acc(const T* __restrict__ p, A (&out)[V]) {
  T raw[V];
  load_vec<V>(p, raw);
#pragma unroll
  for (int k = 0; k < V; ++k) out[k] = static_cast<A>(to_acc(raw[k]));
}

// Convert V math values to T and store them.
template <int V, typename T, typename A>
__device__ __forceinline__ void store_acc(T* __restrict__ p, const A (&in)[V]) {
  T raw[V];
#pragma unroll
  for (int k = 0; k < V; ++k) raw[k] = from_acc<T>(in[k]);
  store_vec<V>(p, raw);
}

__host__ __device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// ------------------------------------------------------------------ index math
__host__ __device__ __forceinline__ int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}

// Coordinates (o, m, i) of a linear offset in a dense [outer][M][I] tensor, advanced one element
// (next) or a fixed stride (advance) at a time with adds and compares only: the divisions happen
// once, in the constructor and in Stride.
struct Walker {
  int64_t o, m, i;
  int64_t M, I;
  __device__ __forceinline__ Walker(int64_t linear, int64_t M_, int64_t I_) : M(M_), I(I_) {
    const int64_t t = linear / I;
    i = linear - t * I;
    o = t / M;
    m = t - o * M;
  }
  __device__ __forceinline__ void next() {
    if (++i == I) {
      i = 0;
      if (++m == M) { m = 0; ++o; }
    }
  }
  // A fixed step of s elements, pre-split as s = (so * M + sm) * I + si with sm < M, si < I.
  struct Stride { int64_t so, sm, si; };
  __device__ __forceinline__ Stride stride(int64_t s) const {
    const int64_t t = s / I;
    const int64_t so = t / M;
    return Stride{so, t - so * M, s - t * I};
  }
  __device__ __forceinline__ void advance(const Stride& s) {
    i += s.si;
    int64_t carry = 0;
    if (i >= I) { i -= I; carry = 1; }
    m += s.sm + carry;
    carry = 0;
    if (m >= M) { m -= M; carry = 1; }
    o += s.so + carry;
  }
};

// ------------------------------------------------------------------ warp shuffles
template <typename A> __device__ __forceinline__ A shfl_xor(A v, int offset) {
  return __shfl_xor_sync(0xffffffffu, v, offset);
}

// ------------------------------------------------------------------ accumulators
// Plain sums of K values per element (K may be 0). POD, so it can live in shared memory.
template <typename A, int K> struct Sums {
  A v[K > 0 ? K : 1];
  __device__ __forceinline__ void zero() {
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] = A(0);
  }
  __device__ __forceinline__ void add(const A (&c)[K > 0 ? K : 1]) {
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] += c[k];
  }
  __device__ __forceinline__ void merge(const Sums& o) {
#pragma unroll
    for (int k = 0; k < K; ++k) v[k] += o.v[k];
  }
  __device__ __forceinline__ Sums shfl_xor(int offset) const {
    Sums r;
#pragma unroll
    for (int k = 0; k < K; ++k) r.v[k] = sgf::shfl_xor(v[k], offset);
    return r;
  }
};

// Count, mean and sum of squared deviations (M2) of a set of values. Sets are merged with Chan's
// formula, so each partial is computed exactly as a two-pass over values held in registers and the
// variance never comes from E[x^2] - E[x]^2.
template <typename A> struct Welford {
  A n, mean, m2;
  __device__ __forceinline__ void zero() { n = mean = m2 = A(0); }
  // Merge the statistics of another set (Chan et al.): exact in exact arithmetic.
  __device__ __forceinline__ void merge(const Welford& b) {
    if (b.n == A(0)) return;
    if (n == A(0)) { *this = b; return; }
    const A total = n + b.n;
    const A delta = b.mean - mean;
    const A wb = b.n / total;
    mean += delta * wb;
    m2 += b.m2 + delta * delta * n * wb;
    n = total;
  }
  // Merge the values v[j] with ok[j] true, by a two-pass over the registers.
  template <int U>
  __device__ __forceinline__ void add_chunk(const A (&v)[U], const bool (&ok)[U]) {
    A cnt = A(0), sum = A(0);
#pragma unroll
    for (int j = 0; j < U; ++j) if (ok[j]) { cnt += A(1); sum += v[j]; }
    if (cnt == A(0)) return;
    Welford c;
    c.n = cnt;
    c.mean = sum / cnt;
    c.m2 = A(0);
#pragma unroll
    for (int j = 0; j < U; ++j) if (ok[j]) { const A d = v[j] - c.mean; c.m2 += d * d; }
    merge(c);
  }
  __device__ __forceinline__ Welford shfl_xor(int offset) const {
    return Welford{sgf::shfl_xor(n, offset), sgf::shfl_xor(mean, offset),
                   sgf::shfl_xor(m2, offset)};
  }
  // mean (0 for an empty set) and 1 / sqrt(M2 / n + eps); rstd is 0 for a set of at most one
  // value, whose deviation from its mean is identically 0: that keeps xhat and its gradient exactly
  // 0 there (1 / sqrt(eps) would scale the rounding of a - mean and of dy * s - mean by ~1e4).
  __device__ __forceinline__ void finalize(A eps, A& mean_out, A& rstd_out) const {
    const A var = n > A(0) ? m2 / n : A(0);
    mean_out = n > A(0) ? mean : A(0);
    rstd_out = n > A(1) ? A(1) / sqrt(var + eps) : A(0);
  }
};

// One step of an xor butterfly: the lower lane's accumulator merged with the upper lane's, in that
// order on both partners, so both end with the bitwise same result. The operands are copied into
// place by value: `low ? mine : theirs` on struct lvalues selects an address, which puts both
// accumulators in local memory (a stack frame and LDL/STL in every reduction).
template <typename Acc>
__device__ __forceinline__ Acc merge_lane_pair(const Acc& mine, const Acc& theirs, bool low) {
  Acc first = theirs, second = mine;
  if (low) { first = mine; second = theirs; }
  first.merge(second);
  return first;
}

// Reduce acc over aligned groups of G lanes (G a power of two <= 32) by an xor butterfly
// (merge_lane_pair: every lane of a group ends with the bitwise same result). Every lane of the
// warp must call it (G is uniform).
template <typename Acc>
__device__ __forceinline__ Acc group_reduce(Acc acc, int G) {
  for (int offset = 1; offset < G; offset <<= 1) {
    acc = merge_lane_pair(acc, acc.shfl_xor(offset), (threadIdx.x & offset) == 0);
  }
  return acc;
}

// Multiprocessors of the current device (cached per device).
inline int num_sms() {
  int dev = 0;
  C10_CUDA_CHECK(cudaGetDevice(&dev));
  static int cache[128] = {0};
  if (dev >= 0 && dev < 128 && cache[dev] > 0) return cache[dev];
  int count = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, dev));
  if (dev >= 0 && dev < 128) cache[dev] = count;
  return count;
}

// Blocks for a grid-stride loop over `work` items of kThreads each: enough to fill the GPU
// (16 resident-block waves' worth), never more than the work, never zero.
inline unsigned grid_for(int64_t work) {
  const int64_t want = ceil_div(work, kThreads);
  const int64_t cap = static_cast<int64_t>(num_sms()) * 16;
  return static_cast<unsigned>(want < 1 ? 1 : (want < cap ? want : cap));
}

// ------------------------------------------------------------------ counter-based RNG
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC'11).
__device__ __forceinline__ uint4 philox4x32_10(uint4 ctr, uint2 key) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#pragma unroll
  for (int round = 0; round < 10; ++round) {
    const uint32_t lo0 = kM0 * ctr.x, hi0 = __umulhi(kM0, ctr.x);
    const uint32_t lo1 = kM1 * ctr.z, hi1 = __umulhi(kM1, ctr.z);
    ctr = make_uint4(hi1 ^ ctr.y ^ key.x, lo1, hi0 ^ ctr.w ^ key.y, lo0);
    key.x += kW0;
    key.y += kW1;
  }
  return ctr;
}

// Four N(0, 1) values for block `index` of `seed`: Philox on counter (index, 0) and key (seed),
// then two Box-Muller pairs. Uniforms are (k + 0.5) / 2^24 for the top 24 bits k, strictly
// inside (0, 1). Pixel p of a noise map takes value p % 4 of block p / 4: a pure function of
// (seed, p), identical wherever it is regenerated.
__device__ __forceinline__ void normal4(uint64_t seed, uint64_t index, float (&z)[4]) {
  const uint4 r = philox4x32_10(
      make_uint4(static_cast<uint32_t>(index), static_cast<uint32_t>(index >> 32), 0u, 0u),
      make_uint2(static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)));
  const uint32_t bits[4] = {r.x, r.y, r.z, r.w};
#pragma unroll
  for (int pair = 0; pair < 2; ++pair) {
    const float u1 = (static_cast<float>(bits[2 * pair] >> 8) + 0.5f) * (1.0f / 16777216.0f);
    const float u2 = (static_cast<float>(bits[2 * pair + 1] >> 8) + 0.5f) * (1.0f / 16777216.0f);
    const float radius = sqrtf(-2.0f * logf(u1));
    float s, c;
    sincospif(2.0f * u2, &s, &c);
    z[2 * pair] = radius * c;
    z[2 * pair + 1] = radius * s;
  }
}

}  // namespace sgf
