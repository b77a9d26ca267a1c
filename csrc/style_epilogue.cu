// style_epilogue (and adain, its special case): noise, bias, leaky ReLU, instance norm, modulation.
//
//   t = x + noise[n, l] * noise_strength[c] + bias[c]        a = (t > 0 ? t : alpha * t) * gain
//   mean, rstd = Welford/Chan statistics of a over the (n, c) plane (float32, or float64;
//                rstd = 0 for a one-pixel plane: Welford::finalize)
//   y = (a - mean) * rstd * (style_scale[n, c] + scale_offset) + style_bias[n, c]
//
// Backward (L = H * W, ahat = (a - mean) * rstd, s = style_scale + scale_offset):
//   pass A: dstyle_bias = sum dy, dstyle_scale = sum dy * ahat        (per (n, c))
//   pass B: da = rstd * (dy * s - s * dstyle_bias / L - ahat * s * dstyle_scale / L)
//           dx = dt = da * gain * (t > 0 ? 1 : alpha);  dbias[c] = sum dt,
//           dnoise_strength[c] = sum dt * noise,  dnoise = sum_c dt * noise_strength[c]
// t and a are recomputed from x in every pass (nothing but x, mean and rstd is saved).
// Planes too large for one CTA run pass A and B as two sweeps (plane.cuh), or, on sm_90 with
// STYLEGAN_FAST_CUDA_CLUSTERS=1, in one cluster launch that reads every input once (cluster.cuh).
#include "cluster.cuh"

namespace sgf {
namespace {

// Per-channel constants of the pre-activation.
template <typename A> struct PreAct {
  A bias;       // bias[c] or 0
  A strength;   // noise_strength[c] or 0
};

template <typename A>
__device__ __forceinline__ A pre_activation(const PreAct<A>& p, A x, A nz) {
  return x + nz * p.strength + p.bias;
}

template <typename A>
__device__ __forceinline__ A activation(A t, A alpha, A gain) {
  return (t > A(0) ? t : t * alpha) * gain;
}

// Forward: pass A = statistics of a (Welford), pass B = y.
template <typename T_>
struct EpilogueForwardOp {
  using T = T_;
  using A = acc_t<T>;
  using In1 = T;
  using AccA = Welford<A>;
  static constexpr int KA = 1, KB = 0;
  static constexpr bool kWelfordA = true, kWritesB = true;
  const T* in0;                 // x
  const T* in1;                 // unused (nullptr)
  T* out;                       // y
  const A* noise;               // [N or 1, L], or nullptr
  int64_t noise_stride;         // L or 0
  const A* bias;                // [C] or nullptr
  const A* strength;            // [C] or nullptr
  const A* style_scale;         // [N, C]
  const A* style_bias;          // [N, C]
  A* mean;                      // [N, C] out
  A* rstd;                      // [N, C] out
  int64_t C;
  A alpha, gain, eps, scale_offset;

  struct PB {
    PreAct<A> pre;
    A mean, scale, shift;       // y = (a - mean) * scale + shift
  };
  __device__ PreAct<A> params_a(int64_t, int64_t c) const {
    return PreAct<A>{bias ? bias[c] : A(0), strength ? strength[c] : A(0)};
  }
  __device__ void elem_a(const PreAct<A>& p, A x, A, A nz, A (&e)[1]) const {
    e[0] = activation(pre_activation(p, x, nz), alpha, gain);
  }
  __device__ void store_a(int64_t n, int64_t c, const AccA& w) const {
    w.finalize(eps, mean[n * C + c], rstd[n * C + c]);
  }
  __device__ PB params_b(int64_t n, int64_t c, const PreAct<A>& pre) const {
    const int64_t nc = n * C + c;
    return PB{pre, mean[nc], (style_scale[nc] + scale_offset) * rstd[nc],
              style_bias[nc]};
  }
  __device__ A elem_b(const PB& p, A x, A, A nz, A (&)[1]) const {
    const A a = activation(pre_activation(p.pre, x, nz), alpha, gain);
    return (a - p.mean) * p.scale + p.shift;
  }
};

// Backward: pass A = (sum dy, sum dy * ahat) per (n, c), pass B = dx and (sum dt, sum dt * noise)
// per channel.
template <typename T_>
struct EpilogueBackwardOp {
  using T = T_;
  using A = acc_t<T>;
  using In1 = T;
  using AccA = Sums<A, 2>;
  static constexpr int KA = 2, KB = 2;
  static constexpr bool kWelfordA = false, kWritesB = true;
  const T* in0;                 // dy
  const T* in1;                 // x
  T* out;                       // dx
  const A* noise;               // [N or 1, L], or nullptr
  int64_t noise_stride;         // L or 0
  const A* bias;                // [C] or nullptr
  const A* strength;            // [C] or nullptr
  const A* style_scale;         // [N, C]
  const A* mean;                // [N, C]
  const A* rstd;                // [N, C]
  A* dstyle_scale;              // [N, C] out (pass A), read by pass B
  A* dstyle_bias;               // [N, C] out (pass A), read by pass B
  int64_t C;
  A inv_L;                      // 1 / (H * W)
  A alpha, gain, scale_offset;

  struct PA {
    PreAct<A> pre;
    A mean, rstd;
  };
  struct PB {
    PA a;
    A scale;                    // style_scale + scale_offset
    A mean_g, mean_gx;          // E[dy * scale], E[dy * scale * ahat]
  };
  __device__ PA params_a(int64_t n, int64_t c) const {
    const int64_t nc = n * C + c;
    return PA{PreAct<A>{bias ? bias[c] : A(0), strength ? strength[c] : A(0)}, mean[nc], rstd[nc]};
  }
  __device__ void elem_a(const PA& p, A dy, A x, A nz, A (&e)[2]) const {
    const A a = activation(pre_activation(p.pre, x, nz), alpha, gain);
    e[0] = dy;
    e[1] = dy * ((a - p.mean) * p.rstd);
  }
  __device__ void store_a(int64_t n, int64_t c, const AccA& s) const {
    dstyle_bias[n * C + c] = s.v[0];
    dstyle_scale[n * C + c] = s.v[1];
  }
  __device__ PB params_b(int64_t n, int64_t c, const PA& pa) const {
    const int64_t nc = n * C + c;
    const A scale = style_scale[nc] + scale_offset;
    return PB{pa, scale, scale * dstyle_bias[nc] * inv_L,
              scale * dstyle_scale[nc] * inv_L};
  }
  __device__ A elem_b(const PB& p, A dy, A x, A nz, A (&e)[2]) const {
    const A t = pre_activation(p.a.pre, x, nz);
    const A ahat = (activation(t, alpha, gain) - p.a.mean) * p.a.rstd;
    const A da = p.a.rstd * (dy * p.scale - p.mean_g - ahat * p.mean_gx);
    const A dt = (t > A(0) ? da : da * alpha) * gain;
    e[0] = dt;
    e[1] = dt * nz;
    return dt;
  }
};

// Every non-null pointer 16-byte aligned.
inline bool all_aligned(std::initializer_list<const void*> ptrs) {
  for (const void* p : ptrs) {
    if (p != nullptr && !aligned16(p)) return false;
  }
  return true;
}

template <typename T>
void forward(const EpilogueForwardArgs& a, cudaStream_t stream) {
  using A = acc_t<T>;
  const bool has_noise = a.noise_strength != nullptr;
  EpilogueForwardOp<T> op{static_cast<const T*>(a.x), nullptr, static_cast<T*>(a.y),
                          has_noise ? static_cast<const A*>(a.noise) : nullptr,
                          a.noise_stride,
                          static_cast<const A*>(a.bias), static_cast<const A*>(a.noise_strength),
                          static_cast<const A*>(a.style_scale),
                          static_cast<const A*>(a.style_bias), static_cast<A*>(a.mean),
                          static_cast<A*>(a.rstd), a.C, static_cast<A>(a.alpha),
                          static_cast<A>(a.gain), static_cast<A>(a.eps),
                          static_cast<A>(a.scale_offset)};
  auto run = [&](auto width, auto layout) {
    constexpr int V = decltype(width)::value;
    constexpr bool kCols = decltype(layout)::value;
    const PlaneGeometry g = plan_planes<V>(a.N, a.C, a.L, kCols);
    const ClusterPlan cluster = plan_cluster<EpilogueForwardOp<T>, V, kCols>(op, g);
    if (cluster.cluster > 0) {  // sm_90, opted in: one read of x on a thread-block cluster
      launch_cluster<EpilogueForwardOp<T>, V, kCols>(op, cluster, nullptr, stream);
      return;
    }
    if (g.fused()) {
      launch_planes<EpilogueForwardOp<T>, V, kCols>(op, g, kPassA | kPassB, nullptr, nullptr,
                                                    stream);
      return;
    }
    c10::DataPtr part = scratch(sizeof(Welford<A>) * a.N * a.C * g.segments);
    auto* partials = static_cast<Welford<A>*>(part.get());
    launch_planes<EpilogueForwardOp<T>, V, kCols>(op, g, kPassA, partials, nullptr, stream);
    finalize_welford_kernel<A><<<grid_for(a.N * a.C), kThreads, 0, stream>>>(
        partials, a.N * a.C, g.segments, static_cast<A>(a.eps), op.mean, op.rstd);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    launch_planes<EpilogueForwardOp<T>, V, kCols>(op, g, kPassB, nullptr, nullptr, stream);
  };
  dispatch_layout<T>(a.nhwc, all_aligned({a.x, a.y, op.noise}), a.C, a.L, run);
}

template <typename T>
void backward(const EpilogueBackwardArgs& a, cudaStream_t stream) {
  using A = acc_t<T>;
  const bool has_noise = a.noise_strength != nullptr;
  EpilogueBackwardOp<T> op{static_cast<const T*>(a.dy), static_cast<const T*>(a.x),
                           static_cast<T*>(a.dx),
                           has_noise ? static_cast<const A*>(a.noise) : nullptr,
                           a.noise_stride,
                           static_cast<const A*>(a.bias), static_cast<const A*>(a.noise_strength),
                           static_cast<const A*>(a.style_scale), static_cast<const A*>(a.mean),
                           static_cast<const A*>(a.rstd), static_cast<A*>(a.dstyle_scale),
                           static_cast<A*>(a.dstyle_bias), a.C,
                           A(1) / static_cast<A>(a.L), static_cast<A>(a.alpha),
                           static_cast<A>(a.gain), static_cast<A>(a.scale_offset)};
  const bool channel_sums = a.dbias != nullptr || a.dnoise_strength != nullptr;
  auto run = [&](auto width, auto layout) {
    constexpr int V = decltype(width)::value;
    constexpr bool kCols = decltype(layout)::value;
    const PlaneGeometry g = plan_planes<V>(a.N, a.C, a.L, kCols);
    const ClusterPlan cluster = plan_cluster<EpilogueBackwardOp<T>, V, kCols>(op, g);
    const int64_t segments = cluster.cluster > 0 ? cluster.g.segments : g.segments;
    c10::DataPtr part_b;
    Sums<A, 2>* partials_b = nullptr;
    if (channel_sums) {
      part_b = scratch(sizeof(Sums<A, 2>) * a.N * a.C * segments);
      partials_b = static_cast<Sums<A, 2>*>(part_b.get());
    }
    if (cluster.cluster > 0) {  // sm_90, opted in: one read of dy and x on a cluster
      launch_cluster<EpilogueBackwardOp<T>, V, kCols>(op, cluster, partials_b, stream);
    } else if (g.fused()) {
      launch_planes<EpilogueBackwardOp<T>, V, kCols>(op, g, kPassA | kPassB, nullptr, partials_b,
                                                     stream);
    } else {
      c10::DataPtr part_a = scratch(sizeof(Sums<A, 2>) * a.N * a.C * g.segments);
      auto* partials_a = static_cast<Sums<A, 2>*>(part_a.get());
      launch_planes<EpilogueBackwardOp<T>, V, kCols>(op, g, kPassA, partials_a, nullptr, stream);
      launch_finalize_sums<A, 2>(partials_a, a.N, a.C, g.segments, false, op.dstyle_bias,
                                 op.dstyle_scale, stream);
      launch_planes<EpilogueBackwardOp<T>, V, kCols>(op, g, kPassB, nullptr, partials_b, stream);
    }
    if (channel_sums) {
      launch_finalize_sums<A, 2>(partials_b, a.N, a.C, segments, true,
                                 static_cast<A*>(a.dbias), static_cast<A*>(a.dnoise_strength),
                                 stream);
    }
  };
  dispatch_layout<T>(a.nhwc, all_aligned({a.dy, a.x, a.dx, op.noise}), a.C, a.L, run);
  if (a.dnoise != nullptr) {
    launch_noise_grad<T>(static_cast<const T*>(a.dx), static_cast<const A*>(a.noise_strength),
                         a.N, a.C, a.L, a.nhwc, a.noise_stride == 0, static_cast<A*>(a.dnoise),
                         stream);
  }
}

}  // namespace

void style_epilogue_forward(const EpilogueForwardArgs& a, cudaStream_t stream) {
  if (a.N * a.C * a.L == 0) return;
  dispatch(a.dtype, [&](auto tag) { forward<typename decltype(tag)::type>(a, stream); });
}

void style_epilogue_backward(const EpilogueBackwardArgs& a, cudaStream_t stream) {
  if (a.N * a.C * a.L == 0) return;
  dispatch(a.dtype, [&](auto tag) { backward<typename decltype(tag)::type>(a, stream); });
}

}  // namespace sgf
