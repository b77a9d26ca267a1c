// bias_act: y = clamp(act(x + b[c]) * gain, -clamp, clamp), act piecewise linear with slope 1 for
// z > 0 and `slope` otherwise; the backward is dx = dy * gain * slope(z) * [not clamped] and
// db[c] = sum of dx over everything but the channel dim.
//
// x is any dense tensor, seen as [outer][C][inner] with inner = x.stride(dim): the channel of the
// element at offset i is (i / inner) % C, tracked incrementally by a Walker.
#include "plane.cuh"

namespace sgf {
namespace {

// Forward for one element: the output and its mask bits.
template <typename A>
__device__ __forceinline__ A bias_act_elem(A x, A b, A slope, A gain, A clamp, bool positive_bit,
                                           uint8_t& bits) {
  const A z = x + b;
  A y = (z > A(0) ? z : z * slope) * gain;
  bits = (positive_bit && z > A(0)) ? uint8_t(1) : uint8_t(0);
  if (clamp >= A(0)) {
    if (fabs(y) > clamp) bits |= uint8_t(2);
    y = y > clamp ? clamp : (y < -clamp ? -clamp : y);  // NaN stays NaN, as in torch.clamp
  }
  return y;
}

// Backward factor for one element: dy * gain, times slope where z <= 0, zero where clamped.
template <typename A>
__device__ __forceinline__ A bias_act_grad(A dy, bool has_mask, uint8_t bits, A slope, A gain) {
  A dz = dy * gain;
  if (has_mask) {
    if (!(bits & 1)) dz = dz * slope;
    if (bits & 2) dz = A(0);
  }
  return dz;
}

// Grid-stride over V-element vectors of the flat tensor; the numel % V tail goes to block 0.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
bias_act_forward_kernel(const T* __restrict__ x,             // [numel] input
                        const acc_t<T>* __restrict__ bias,   // [C] or nullptr
                        T* __restrict__ y,                   // [numel] output, x's strides
                        uint8_t* __restrict__ mask,          // [numel] mask bits, or nullptr
                        int64_t numel,                       // elements
                        int64_t C,                           // channels (size of dim)
                        int64_t inner,                       // stride of dim (elements)
                        acc_t<T> slope,                      // act slope for z <= 0
                        acc_t<T> gain,                       // output multiplier
                        acc_t<T> clamp,                      // clamp bound, < 0: none
                        bool positive_bit) {                 // store bit 0 (z > 0)
  using A = acc_t<T>;
  const int64_t nvec = numel / V;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (first < nvec) {
    Walker w(first * V, C, inner);
    const Walker::Stride step = w.stride(stride * V);
    for (int64_t v = first; v < nvec; v += stride) {
      A xv[V], out[V];
      uint8_t bits[V];
      load_acc<V>(x + v * V, xv);
      Walker e = w;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A b = bias ? bias[e.m] : A(0);
        out[k] = bias_act_elem(xv[k], b, slope, gain, clamp, positive_bit, bits[k]);
        e.next();
      }
      store_acc<V>(y + v * V, out);
      if (mask) store_vec<V>(mask + v * V, bits);
      w.advance(step);
    }
  }
  const int64_t tail = numel - nvec * V;
  if (blockIdx.x == 0 && threadIdx.x < tail) {
    const int64_t i = nvec * V + threadIdx.x;
    const Walker e(i, C, inner);
    uint8_t bits;
    const A b = bias ? bias[e.m] : A(0);
    y[i] = from_acc<T>(bias_act_elem(static_cast<A>(to_acc(x[i])), b, slope, gain, clamp,
                                     positive_bit, bits));
    if (mask) mask[i] = bits;
  }
}

// dx only (no bias gradient): a flat elementwise pass.
template <typename T, int V>
__global__ void __launch_bounds__(kThreads)
bias_act_backward_kernel(const T* __restrict__ dy,          // [numel] incoming gradient
                         const uint8_t* __restrict__ mask,  // [numel] mask bits, or nullptr
                         T* __restrict__ dx,                // [numel] output
                         int64_t numel,                     // elements
                         acc_t<T> slope,                    // act slope for z <= 0
                         acc_t<T> gain) {                   // output multiplier
  using A = acc_t<T>;
  const int64_t nvec = numel / V;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t v = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; v < nvec;
       v += stride) {
    A g[V], out[V];
    uint8_t bits[V] = {};
    load_acc<V>(dy + v * V, g);
    if (mask) load_vec<V>(mask + v * V, bits);
#pragma unroll
    for (int k = 0; k < V; ++k) out[k] = bias_act_grad(g[k], mask != nullptr, bits[k], slope, gain);
    store_acc<V>(dx + v * V, out);
  }
  const int64_t tail = numel - nvec * V;
  if (blockIdx.x == 0 && threadIdx.x < tail) {
    const int64_t i = nvec * V + threadIdx.x;
    const uint8_t bits = mask ? mask[i] : uint8_t(0);
    dx[i] = from_acc<T>(bias_act_grad(static_cast<A>(to_acc(dy[i])), mask != nullptr, bits,
                                      slope, gain));
  }
}

// dx and the per-channel sums of dx: a pass-B-only plane op (see plane.cuh). The tensor is
// [outer][C][inner]: rows with N = outer, L = inner, or, when inner == 1, cols with N = 1,
// L = outer.
template <typename T_>
struct BiasActGradOp {
  using T = T_;
  using A = acc_t<T>;
  using In1 = uint8_t;
  using AccA = Sums<A, 1>;
  static constexpr int KA = 1, KB = 1;
  static constexpr bool kWelfordA = false, kWritesB = true;
  const T* in0;            // dy
  const uint8_t* in1;      // mask, or nullptr
  T* out;                  // dx
  const A* noise;          // unused (nullptr)
  int64_t noise_stride;
  A slope, gain;
  struct P {};
  __device__ P params_a(int64_t, int64_t) const { return P{}; }
  __device__ void elem_a(const P&, A, A, A, A (&e)[1]) const { e[0] = A(0); }
  __device__ void store_a(int64_t, int64_t, const AccA&) const {}
  __device__ P params_b(int64_t, int64_t, const P&) const { return P{}; }
  __device__ A elem_b(const P&, A dy, A bits, A, A (&e)[1]) const {
    const A dz = bias_act_grad(dy, in1 != nullptr, static_cast<uint8_t>(bits), slope, gain);
    e[0] = dz;
    return dz;
  }
};

template <typename T>
void backward_with_db(const BiasActBackwardArgs& a, cudaStream_t stream) {
  using A = acc_t<T>;
  const int64_t outer = a.numel / (a.channels * a.inner);
  const bool cols = a.inner == 1;
  const int64_t N = cols ? 1 : outer, L = cols ? outer : a.inner;
  BiasActGradOp<T> op{static_cast<const T*>(a.dy), a.mask, static_cast<T*>(a.dx), nullptr, 0,
                      static_cast<A>(a.slope), static_cast<A>(a.gain)};
  const bool aligned = aligned16(a.dy) && aligned16(a.dx) && (!a.mask || aligned16(a.mask));
  dispatch_layout<T>(cols, aligned, a.channels, L, [&](auto width, auto layout) {
    constexpr int V = decltype(width)::value;
    constexpr bool kCols = decltype(layout)::value;
    const PlaneGeometry g = plan_planes<V>(N, a.channels, L, kCols);
    c10::DataPtr part = scratch(sizeof(Sums<A, 1>) * N * a.channels * g.segments);
    auto* partials = static_cast<Sums<A, 1>*>(part.get());
    launch_planes<BiasActGradOp<T>, V, kCols>(op, g, kPassB, nullptr, partials, stream);
    launch_finalize_sums<A, 1>(partials, N, a.channels, g.segments, true,
                               static_cast<A*>(a.db), nullptr, stream);
  });
}

}  // namespace

void bias_act_forward(const BiasActForwardArgs& a, cudaStream_t stream) {
  if (a.numel == 0) return;
  dispatch(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    constexpr int VW = vec_width<T>();
    const bool vec = aligned16(a.x) && aligned16(a.y) && (!a.mask || aligned16(a.mask));
    const A clamp = a.clamp < 0 ? A(-1) : static_cast<A>(a.clamp);
    const auto* x = static_cast<const T*>(a.x);
    const auto* bias = static_cast<const A*>(a.bias);
    auto* y = static_cast<T*>(a.y);
    if (vec) {
      bias_act_forward_kernel<T, VW><<<grid_for(a.numel / VW), kThreads, 0, stream>>>(
          x, bias, y, a.mask, a.numel, a.channels, a.inner, static_cast<A>(a.slope),
          static_cast<A>(a.gain), clamp, a.positive_bit);
    } else {
      bias_act_forward_kernel<T, 1><<<grid_for(a.numel), kThreads, 0, stream>>>(
          x, bias, y, a.mask, a.numel, a.channels, a.inner, static_cast<A>(a.slope),
          static_cast<A>(a.gain), clamp, a.positive_bit);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void bias_act_backward(const BiasActBackwardArgs& a, cudaStream_t stream) {
  if (a.numel == 0) return;
  dispatch(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using A = acc_t<T>;
    constexpr int VW = vec_width<T>();
    if (a.db != nullptr) {
      backward_with_db<T>(a, stream);
      return;
    }
    const bool vec = aligned16(a.dy) && aligned16(a.dx) && (!a.mask || aligned16(a.mask));
    const auto* dy = static_cast<const T*>(a.dy);
    auto* dx = static_cast<T*>(a.dx);
    if (vec) {
      bias_act_backward_kernel<T, VW><<<grid_for(a.numel / VW), kThreads, 0, stream>>>(
          dy, a.mask, dx, a.numel, static_cast<A>(a.slope), static_cast<A>(a.gain));
    } else {
      bias_act_backward_kernel<T, 1><<<grid_for(a.numel), kThreads, 0, stream>>>(
          dy, a.mask, dx, a.numel, static_cast<A>(a.slope), static_cast<A>(a.gain));
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace sgf
