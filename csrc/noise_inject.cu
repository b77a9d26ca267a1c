// noise_inject: y = x + noise[n, l] * strength[c], for x [N, C, H, W] (l = h * W + w) in NCHW or
// NHWC; backward dstrength[c] = sum_{n,l} dy * noise, dnoise[n, l] = sum_c dy * strength[c].
// Also the generator of the in-kernel noise maps (used by style_epilogue too).
#include "plane.cuh"

namespace sgf {
namespace {

// out[p] = N(0, 1) value p of `seed`: thread t computes the Philox block t, values 4t .. 4t+3.
template <typename A>
__global__ void __launch_bounds__(kThreads)
generate_noise_kernel(uint64_t seed,          // Philox key
                      int64_t count,          // values to write
                      A* __restrict__ out) {  // [count]
  const int64_t blocks = ceil_div(count, 4);
  for (int64_t t = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; t < blocks;
       t += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    float z[4];
    normal4(seed, static_cast<uint64_t>(t), z);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      if (4 * t + k < count) out[4 * t + k] = static_cast<A>(z[k]);
    }
  }
}

// Grid-stride over V-element vectors; x seen as [N][M][I] = [N][C][L] (NCHW) or [N][L][C] (NHWC).
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
noise_inject_forward_kernel(const T* __restrict__ x,                 // [N, C, H, W] input
                            const acc_t<T>* __restrict__ strength,   // [C]
                            const acc_t<T>* __restrict__ noise,      // [N or 1, L]
                            int64_t noise_stride,                    // L, or 0 if shared
                            T* __restrict__ y,                       // output, x's layout
                            int64_t numel,                           // N * C * L
                            int64_t C, int64_t L,                    // channels, H * W
                            bool nhwc) {                             // layout of x and y
  using A = acc_t<T>;
  const int64_t M = nhwc ? L : C, I = nhwc ? C : L;
  const int64_t nvec = numel / V;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  auto value = [&](A xv, const Walker& e) {
    const int64_t c = nhwc ? e.i : e.m, l = nhwc ? e.m : e.i;
    return xv + noise[e.o * noise_stride + l] * strength[c];
  };
  if (first < nvec) {
    Walker w(first * V, M, I);
    const Walker::Stride step = w.stride(stride * V);
    for (int64_t v = first; v < nvec; v += stride) {
      A xv[V], out[V];
      load_acc<V>(x + v * V, xv);
      Walker e = w;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        out[k] = value(xv[k], e);
        e.next();
      }
      store_acc<V>(y + v * V, out);
      w.advance(step);
    }
  }
  const int64_t tail = numel - nvec * V;
  if (blockIdx.x == 0 && threadIdx.x < tail) {
    const int64_t i = nvec * V + threadIdx.x;
    y[i] = from_acc<T>(value(static_cast<A>(to_acc(x[i])), Walker(i, M, I)));
  }
}

// Pass-B-only plane op: per-channel sums of dy * noise, nothing written.
template <typename T_>
struct StrengthGradOp {
  using T = T_;
  using A = acc_t<T>;
  using In1 = T;
  using AccA = Sums<A, 1>;
  static constexpr int KA = 1, KB = 1;
  static constexpr bool kWelfordA = false, kWritesB = false;
  const T* in0;            // dy
  const T* in1;            // unused (nullptr)
  T* out;                  // unused (nullptr)
  const A* noise;          // [N or 1, L]
  int64_t noise_stride;    // L or 0
  struct P {};
  __device__ P params_a(int64_t, int64_t) const { return P{}; }
  __device__ void elem_a(const P&, A, A, A, A (&e)[1]) const { e[0] = A(0); }
  __device__ void store_a(int64_t, int64_t, const AccA&) const {}
  __device__ P params_b(int64_t, int64_t, const P&) const { return P{}; }
  __device__ A elem_b(const P&, A dy, A, A nz, A (&e)[1]) const {
    e[0] = dy * nz;
    return A(0);
  }
};

}  // namespace

void generate_noise(const NoiseArgs& a, cudaStream_t stream) {
  if (a.count == 0) return;
  const unsigned grid = grid_for(ceil_div(a.count, 4));
  if (a.math == DType::Double) {
    generate_noise_kernel<double><<<grid, kThreads, 0, stream>>>(a.seed, a.count,
                                                                 static_cast<double*>(a.out));
  } else {
    generate_noise_kernel<float><<<grid, kThreads, 0, stream>>>(a.seed, a.count,
                                                                static_cast<float*>(a.out));
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void noise_inject_forward(const NoiseInjectForwardArgs& a, cudaStream_t stream) {
  const int64_t numel = a.N * a.C * a.L;
  if (numel == 0) return;
  dispatch(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    constexpr int VW = vec_width<T>();
    const auto* x = static_cast<const T*>(a.x);
    const auto* strength = static_cast<const A*>(a.strength);
    const auto* noise = static_cast<const A*>(a.noise);
    auto* y = static_cast<T*>(a.y);
    if (aligned16(a.x) && aligned16(a.y)) {
      noise_inject_forward_kernel<T, VW><<<grid_for(numel / VW), kThreads, 0, stream>>>(
          x, strength, noise, a.noise_stride, y, numel, a.C, a.L, a.nhwc);
    } else {
      noise_inject_forward_kernel<T, 1><<<grid_for(numel), kThreads, 0, stream>>>(
          x, strength, noise, a.noise_stride, y, numel, a.C, a.L, a.nhwc);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void noise_inject_backward(const NoiseInjectBackwardArgs& a, cudaStream_t stream) {
  if (a.N * a.C * a.L == 0) return;
  dispatch(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    const auto* dy = static_cast<const T*>(a.dy);
    const auto* noise = static_cast<const A*>(a.noise);
    StrengthGradOp<T> op{dy, nullptr, nullptr, noise, a.noise_stride};
    dispatch_layout<T>(a.nhwc, aligned16(a.dy) && aligned16(a.noise), a.C, a.L,
                       [&](auto width, auto layout) {
      constexpr int V = decltype(width)::value;
      constexpr bool kCols = decltype(layout)::value;
      const PlaneGeometry g = plan_planes<V>(a.N, a.C, a.L, kCols);
      c10::DataPtr part = scratch(sizeof(Sums<A, 1>) * a.N * a.C * g.segments);
      auto* partials = static_cast<Sums<A, 1>*>(part.get());
      launch_planes<StrengthGradOp<T>, V, kCols>(op, g, kPassB, nullptr, partials, stream);
      launch_finalize_sums<A, 1>(partials, a.N, a.C, g.segments, true,
                                 static_cast<A*>(a.dstrength), nullptr, stream);
    });
    if (a.dnoise != nullptr) {
      launch_noise_grad<T>(dy, static_cast<const A*>(a.strength), a.N, a.C, a.L, a.nhwc,
                           a.noise_stride == 0, static_cast<A*>(a.dnoise), stream);
    }
  });
}

}  // namespace sgf
