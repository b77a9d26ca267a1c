// bias_act: y = clamp(act(x + b[c]) * gain, -clamp, clamp) for the nine activations of
// launchers.h (kActLinear..kActSwish), each its own instantiation: the activation is a template
// argument, never a per-element branch on a runtime value.
//
// Backward, piecewise-linear activations (linear, relu, lrelu): from the forward's uint8 mask,
// dx = dy * gain * slope(z) * [not clamped]. Smooth activations (tanh .. swish): from the forward's
// x and b, z recomputed, dx = dy * gain * act'(z) * [not clamped]. Both: db[c] = sum of dx over
// everything but the channel dim.
//
// x is any dense tensor, seen as [outer][C][inner] with inner = x.stride(dim): the channel of the
// element at offset i is (i / inner) % C, tracked incrementally by a Walker.
#include "plane.cuh"

namespace sgf {
namespace {

// ------------------------------------------------------------------ activations
// The accurate device math functions of the math type (no fast-math intrinsics).
__device__ __forceinline__ float exp_a(float v) { return expf(v); }
__device__ __forceinline__ double exp_a(double v) { return exp(v); }
__device__ __forceinline__ float expm1_a(float v) { return expm1f(v); }
__device__ __forceinline__ double expm1_a(double v) { return expm1(v); }
__device__ __forceinline__ float log1p_a(float v) { return log1pf(v); }
__device__ __forceinline__ double log1p_a(double v) { return log1p(v); }
__device__ __forceinline__ float tanh_a(float v) { return tanhf(v); }
__device__ __forceinline__ double tanh_a(double v) { return tanh(v); }

__host__ __device__ constexpr bool is_smooth(int act) { return act >= kActTanh; }

constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;
constexpr double kSoftplusThreshold = 20.0;  // PyTorch's softplus: z itself above it

// Accuracy of the tails. No division anywhere: the IEEE division's slow path is a subroutine call,
// and the values live across such calls made ptxas spill. In double, sigmoid and exp(z) of
// elu / selu' are accurate relative to their value everywhere. In float they are accurate to a few
// 2^-24 absolute, so values below ~1e-7 (z < -16) lose relative precision: sigmoid as
// (1 + tanh(z / 2)) / 2, exp(z) as expm1(z) + 1. The relative-accurate forms take one more
// transcendental function per element, which took the 16-bit per-plane kernels (two big inputs in
// registers, plane.cuh) past 64 registers, where ptxas (nvcc 13.0, sm_90) spilled 4-20 bytes.
template <typename A> constexpr bool kExactTails = sizeof(A) == sizeof(double);

// sigmoid(z) = 1 / (1 + exp(-z)). Exact tails: s(a) = (1 + tanh(a / 2)) / 2 for a = |z| (>= 1/2,
// no cancellation) and s(-a) = exp(-a) * s(a).
template <typename A>
__device__ __forceinline__ A sigmoid_a(A z) {
  if constexpr (kExactTails<A>) {
    const A a = fabs(z);
    const A s = A(0.5) + A(0.5) * tanh_a(A(0.5) * a);
    return z < A(0) ? exp_a(-a) * s : s;
  } else {
    return A(0.5) + A(0.5) * tanh_a(A(0.5) * z);
  }
}

// exp(z), given m = expm1(z).
template <typename A>
__device__ __forceinline__ A exp_given_expm1(A z, A m) {
  if constexpr (kExactTails<A>) {
    return exp_a(z);
  } else {
    return m + A(1);
  }
}

// act(z) of a smooth activation, and act'(z) in d. The forward and the backward both take act(z)
// from here, so that they agree on which outputs were clamped; the forward's unused d is dead code.
template <int Act, typename A>
__device__ __forceinline__ A smooth_act(A z, A& d) {
  static_assert(is_smooth(Act) && Act <= kActSwish, "not a smooth activation");
  if constexpr (Act == kActTanh) {
    const A t = tanh_a(z);
    d = A(1) - t * t;
    return t;
  } else if constexpr (Act == kActSigmoid) {
    const A s = sigmoid_a(z);
    d = s * (A(1) - s);
    return s;
  } else if constexpr (Act == kActElu) {
    const bool pos = z > A(0);
    const A m = expm1_a(z);
    d = pos ? A(1) : exp_given_expm1(z, m);
    return pos ? z : m;
  } else if constexpr (Act == kActSelu) {
    const bool pos = z > A(0);
    const A m = expm1_a(z);
    d = pos ? A(kSeluScale) : A(kSeluScale * kSeluAlpha) * exp_given_expm1(z, m);
    return pos ? A(kSeluScale) * z : A(kSeluScale) * (A(kSeluAlpha) * m);
  } else if constexpr (Act == kActSoftplus) {
    const bool linear = z > A(kSoftplusThreshold);
    d = linear ? A(1) : sigmoid_a(z);
    return linear ? z : log1p_a(exp_a(z));
  } else {  // kActSwish
    const A s = sigmoid_a(z);
    d = s * (A(1) + z * (A(1) - s));
    return z * s;
  }
}

// act(z) for any activation. relu is lrelu with slope 0 (z * 0 where z <= 0), bit for bit the
// op's reference backend; slope is lrelu's.
template <int Act, typename A>
__device__ __forceinline__ A act_value(A z, [[maybe_unused]] A slope) {
  if constexpr (Act == kActLinear) {
    return z;
  } else if constexpr (Act == kActRelu) {
    return z > A(0) ? z : z * A(0);
  } else if constexpr (Act == kActLrelu) {
    return z > A(0) ? z : z * slope;
  } else {
    A d;
    return smooth_act<Act>(z, d);
  }
}

// Forward for one element: the output and its mask bits (piecewise-linear activations; the smooth
// ones write no mask and their bits are dead code).
template <int Act, typename A>
__device__ __forceinline__ A bias_act_elem(A x, A b, A slope, A gain, A clamp, uint8_t& bits) {
  const A z = x + b;
  A y = act_value<Act>(z, slope) * gain;
  bits = (Act != kActLinear && z > A(0)) ? uint8_t(1) : uint8_t(0);
  if (clamp >= A(0)) {
    if (fabs(y) > clamp) bits |= uint8_t(2);
    y = y > clamp ? clamp : (y < -clamp ? -clamp : y);  // NaN stays NaN, as in torch.clamp
  }
  return y;
}

// Backward factor for one element (piecewise linear): dy * gain, times slope where z <= 0, zero
// where clamped.
template <typename A>
__device__ __forceinline__ A bias_act_grad(A dy, bool has_mask, uint8_t bits, A slope, A gain) {
  A dz = dy * gain;
  if (has_mask) {
    if (!(bits & 1)) dz = dz * slope;
    if (bits & 2) dz = A(0);
  }
  return dz;
}

// Backward for one element (smooth): dy * gain * act'(z), zero where the forward clamped.
template <int Act, typename A>
__device__ __forceinline__ A bias_act_smooth_grad(A dy, A x, A b, A gain, A clamp) {
  A d;
  const A y = smooth_act<Act>(x + b, d) * gain;
  const bool clamped = clamp >= A(0) && fabs(y) > clamp;
  return clamped ? A(0) : dy * gain * d;
}

// ------------------------------------------------------------------ flat kernels
// Grid-stride over V-element vectors of the flat tensor; the numel % V tail goes to block 0.
template <typename T, int Act, int V>
__global__ void __launch_bounds__(kThreads)
bias_act_forward_kernel(const T* __restrict__ x,             // [numel] input
                        const acc_t<T>* __restrict__ bias,   // [C] or nullptr
                        T* __restrict__ y,                   // [numel] output, x's strides
                        uint8_t* __restrict__ mask,          // [numel] mask bits, or nullptr
                        int64_t numel,                       // elements
                        int64_t C,                           // channels (size of dim)
                        int64_t inner,                       // stride of dim (elements)
                        acc_t<T> slope,                      // lrelu's slope for z <= 0
                        acc_t<T> gain,                       // output multiplier
                        acc_t<T> clamp) {                    // clamp bound, < 0: none
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
        out[k] = bias_act_elem<Act>(xv[k], b, slope, gain, clamp, bits[k]);
        e.next();
      }
      store_acc<V>(y + v * V, out);
      if constexpr (!is_smooth(Act)) {
        if (mask) store_vec<V>(mask + v * V, bits);
      }
      w.advance(step);
    }
  }
  const int64_t tail = numel - nvec * V;
  if (blockIdx.x == 0 && threadIdx.x < tail) {
    const int64_t i = nvec * V + threadIdx.x;
    const Walker e(i, C, inner);
    uint8_t bits;
    const A b = bias ? bias[e.m] : A(0);
    y[i] = from_acc<T>(bias_act_elem<Act>(static_cast<A>(to_acc(x[i])), b, slope, gain, clamp,
                                          bits));
    if constexpr (!is_smooth(Act)) {
      if (mask) mask[i] = bits;
    }
  }
}

// dx only (no bias gradient), piecewise linear: a flat elementwise pass.
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

// dx only (no bias gradient), smooth: grid-stride over V-element vectors of dy and x, the channel
// of each element (for its bias) walked as in the forward.
template <typename T, int Act, int V>
__global__ void __launch_bounds__(kThreads)
bias_act_smooth_backward_kernel(const T* __restrict__ dy,            // [numel] incoming gradient
                                const T* __restrict__ x,             // [numel] forward input
                                const acc_t<T>* __restrict__ bias,   // [C] or nullptr
                                T* __restrict__ dx,                  // [numel] output
                                int64_t numel,                       // elements
                                int64_t C,                           // channels (size of dim)
                                int64_t inner,                       // stride of dim (elements)
                                acc_t<T> gain,                       // output multiplier
                                acc_t<T> clamp) {                    // clamp bound, < 0: none
  using A = acc_t<T>;
  const int64_t nvec = numel / V;
  const int64_t first = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  if (first < nvec) {
    Walker w(first * V, C, inner);
    const Walker::Stride step = w.stride(stride * V);
    for (int64_t v = first; v < nvec; v += stride) {
      A g[V], xv[V], out[V];
      load_acc<V>(dy + v * V, g);
      load_acc<V>(x + v * V, xv);
      Walker e = w;
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const A b = bias ? bias[e.m] : A(0);
        out[k] = bias_act_smooth_grad<Act>(g[k], xv[k], b, gain, clamp);
        e.next();
      }
      store_acc<V>(dx + v * V, out);
      w.advance(step);
    }
  }
  const int64_t tail = numel - nvec * V;
  if (blockIdx.x == 0 && threadIdx.x < tail) {
    const int64_t i = nvec * V + threadIdx.x;
    const Walker e(i, C, inner);
    const A b = bias ? bias[e.m] : A(0);
    dx[i] = from_acc<T>(bias_act_smooth_grad<Act>(static_cast<A>(to_acc(dy[i])),
                                                  static_cast<A>(to_acc(x[i])), b, gain, clamp));
  }
}

// ------------------------------------------------------------------ bias gradient (plane ops)
// dx and the per-channel sums of dx: pass-B-only plane ops (see plane.cuh). The tensor is
// [outer][C][inner]: rows with N = outer, L = inner, or, when inner == 1, cols with N = 1,
// L = outer.

// Piecewise linear: from dy and the mask.
template <typename T_>
struct BiasActGradOp {
  using T = T_;
  using A = acc_t<T>;
  using In1 = uint8_t;
  using AccA = Sums<A, 1>;
  static constexpr int KA = 1, KB = 1;
  static constexpr bool kWelfordA = false, kWritesB = true;
  static constexpr int kColsWidth = cols_vec_width<T>();  // as the other ops' (plane.cuh)
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

// Smooth: from dy, x and the channel's bias.
template <typename T_, int Act>
struct BiasActSmoothGradOp {
  using T = T_;
  using A = acc_t<T>;
  using In1 = T;
  using AccA = Sums<A, 1>;
  static constexpr int KA = 1, KB = 1;
  static constexpr bool kWelfordA = false, kWritesB = true;
  static constexpr int kAct = Act;
  // 16-byte cols vectors for 16-bit types too (8 channels per thread, not cols_vec_width's 4): with
  // 4, the two big inputs and the per-channel bias land just above 64 registers, which ptxas
  // (nvcc 13.0, sm_90) met with 4-16 bytes of spills in every activation; with 8, 74-80 registers
  // and no spills.
  static constexpr int kColsWidth = vec_width<T>();
  const T* in0;            // dy
  const T* in1;            // x
  T* out;                  // dx
  const A* noise;          // unused (nullptr)
  int64_t noise_stride;
  const A* bias;           // [C], or nullptr
  A gain, clamp;
  struct P { A b; };       // the channel's bias
  __device__ P params_a(int64_t, int64_t) const { return P{A(0)}; }
  __device__ void elem_a(const P&, A, A, A, A (&e)[1]) const { e[0] = A(0); }
  __device__ void store_a(int64_t, int64_t, const AccA&) const {}
  __device__ P params_b(int64_t, int64_t c, const P&) const {
    return P{bias ? bias[c] : A(0)};
  }
  __device__ A elem_b(const P& p, A dy, A x, A, A (&e)[1]) const {
    const A dz = bias_act_smooth_grad<Act>(dy, x, p.b, gain, clamp);
    e[0] = dz;
    return dz;
  }
};

// One named op per smooth activation: the SASS report (stylegan_fast/ops/cuda/sass.py) reads a
// plane kernel's storage type as its op's only template argument.
template <typename T> struct BiasActTanhGradOp : BiasActSmoothGradOp<T, kActTanh> {};
template <typename T> struct BiasActSigmoidGradOp : BiasActSmoothGradOp<T, kActSigmoid> {};
template <typename T> struct BiasActEluGradOp : BiasActSmoothGradOp<T, kActElu> {};
template <typename T> struct BiasActSeluGradOp : BiasActSmoothGradOp<T, kActSelu> {};
template <typename T> struct BiasActSoftplusGradOp : BiasActSmoothGradOp<T, kActSoftplus> {};
template <typename T> struct BiasActSwishGradOp : BiasActSmoothGradOp<T, kActSwish> {};

// Run op (its dx and per-channel partial sums) over the [outer][channels][inner] tensor and sum
// the partials into db. Vector widths as dispatch_layout's, except cols (channels_last) vectors of
// Op::kColsWidth channels.
template <class Op>
void launch_grad_planes(const Op& op, bool aligned, int64_t numel, int64_t channels,
                        int64_t inner, void* db, cudaStream_t stream) {
  using T = typename Op::T;
  using A = typename Op::A;
  constexpr int RV = vec_width<T>(), CV = Op::kColsWidth;
  const int64_t outer = numel / (channels * inner);
  const bool cols = inner == 1;
  const int64_t N = cols ? 1 : outer, L = cols ? outer : inner;
  auto run = [&](auto width, auto layout) {
    constexpr int V = decltype(width)::value;
    constexpr bool kCols = decltype(layout)::value;
    const PlaneGeometry g = plan_planes<V>(N, channels, L, kCols);
    c10::DataPtr part = scratch(sizeof(Sums<A, 1>) * N * channels * g.segments);
    auto* partials = static_cast<Sums<A, 1>*>(part.get());
    launch_planes<Op, V, kCols>(op, g, kPassB, nullptr, partials, stream);
    launch_finalize_sums<A, 1>(partials, N, channels, g.segments, true, static_cast<A*>(db),
                               nullptr, stream);
  };
  using std::integral_constant;
  if (cols) {
    if (aligned && channels % CV == 0) run(integral_constant<int, CV>{}, std::true_type{});
    else run(integral_constant<int, 1>{}, std::true_type{});
  } else {
    if (aligned && L % RV == 0) run(integral_constant<int, RV>{}, std::false_type{});
    else run(integral_constant<int, 1>{}, std::false_type{});
  }
}

// ------------------------------------------------------------------ typed launchers
template <typename T, int Act>
void forward_typed(const BiasActForwardArgs& a, cudaStream_t stream) {
  using A = acc_t<T>;
  constexpr int VW = vec_width<T>();
  const bool vec = aligned16(a.x) && aligned16(a.y) && (!a.mask || aligned16(a.mask));
  const A clamp = a.clamp < 0 ? A(-1) : static_cast<A>(a.clamp);
  const auto* x = static_cast<const T*>(a.x);
  const auto* bias = static_cast<const A*>(a.bias);
  auto* y = static_cast<T*>(a.y);
  if (vec) {
    bias_act_forward_kernel<T, Act, VW><<<grid_for(a.numel / VW), kThreads, 0, stream>>>(
        x, bias, y, a.mask, a.numel, a.channels, a.inner, static_cast<A>(a.slope),
        static_cast<A>(a.gain), clamp);
  } else {
    bias_act_forward_kernel<T, Act, 1><<<grid_for(a.numel), kThreads, 0, stream>>>(
        x, bias, y, a.mask, a.numel, a.channels, a.inner, static_cast<A>(a.slope),
        static_cast<A>(a.gain), clamp);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void backward_with_db(const BiasActBackwardArgs& a, cudaStream_t stream) {
  using A = acc_t<T>;
  BiasActGradOp<T> op{static_cast<const T*>(a.dy), a.mask, static_cast<T*>(a.dx), nullptr, 0,
                      static_cast<A>(a.slope), static_cast<A>(a.gain)};
  const bool aligned = aligned16(a.dy) && aligned16(a.dx) && (!a.mask || aligned16(a.mask));
  launch_grad_planes(op, aligned, a.numel, a.channels, a.inner, a.db, stream);
}

// GradOp: the named plane op of the activation (BiasActTanhGradOp, ...).
template <typename T, template <typename> class GradOp>
void backward_smooth_typed(const BiasActSmoothBackwardArgs& a, cudaStream_t stream) {
  using A = acc_t<T>;
  constexpr int Act = GradOp<T>::kAct;
  constexpr int VW = vec_width<T>();
  const auto* dy = static_cast<const T*>(a.dy);
  const auto* x = static_cast<const T*>(a.x);
  const auto* bias = static_cast<const A*>(a.bias);
  auto* dx = static_cast<T*>(a.dx);
  const A gain = static_cast<A>(a.gain);
  const A clamp = a.clamp < 0 ? A(-1) : static_cast<A>(a.clamp);
  const bool aligned = aligned16(dy) && aligned16(x) && aligned16(dx);
  if (a.db != nullptr) {
    GradOp<T> op{{dy, x, dx, nullptr, 0, bias, gain, clamp}};
    launch_grad_planes(op, aligned, a.numel, a.channels, a.inner, a.db, stream);
    return;
  }
  if (aligned) {
    bias_act_smooth_backward_kernel<T, Act, VW><<<grid_for(a.numel / VW), kThreads, 0, stream>>>(
        dy, x, bias, dx, a.numel, a.channels, a.inner, gain, clamp);
  } else {
    bias_act_smooth_backward_kernel<T, Act, 1><<<grid_for(a.numel), kThreads, 0, stream>>>(
        dy, x, bias, dx, a.numel, a.channels, a.inner, gain, clamp);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void bias_act_forward(const BiasActForwardArgs& a, cudaStream_t stream) {
  if (a.numel == 0) return;
  dispatch(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (a.act) {
      case kActLinear: forward_typed<T, kActLinear>(a, stream); break;
      case kActRelu: forward_typed<T, kActRelu>(a, stream); break;
      case kActLrelu: forward_typed<T, kActLrelu>(a, stream); break;
      case kActTanh: forward_typed<T, kActTanh>(a, stream); break;
      case kActSigmoid: forward_typed<T, kActSigmoid>(a, stream); break;
      case kActElu: forward_typed<T, kActElu>(a, stream); break;
      case kActSelu: forward_typed<T, kActSelu>(a, stream); break;
      case kActSoftplus: forward_typed<T, kActSoftplus>(a, stream); break;
      case kActSwish: forward_typed<T, kActSwish>(a, stream); break;
      default: TORCH_CHECK(false, "bias_act: unknown activation code ", a.act);
    }
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

void bias_act_backward_smooth(const BiasActSmoothBackwardArgs& a, cudaStream_t stream) {
  if (a.numel == 0) return;
  dispatch(a.dtype, [&](auto tag) {
    using T = typename decltype(tag)::type;
    switch (a.act) {
      case kActTanh: backward_smooth_typed<T, BiasActTanhGradOp>(a, stream); break;
      case kActSigmoid: backward_smooth_typed<T, BiasActSigmoidGradOp>(a, stream); break;
      case kActElu: backward_smooth_typed<T, BiasActEluGradOp>(a, stream); break;
      case kActSelu: backward_smooth_typed<T, BiasActSeluGradOp>(a, stream); break;
      case kActSoftplus: backward_smooth_typed<T, BiasActSoftplusGradOp>(a, stream); break;
      case kActSwish: backward_smooth_typed<T, BiasActSwishGradOp>(a, stream); break;
      default: TORCH_CHECK(false, "bias_act: not a smooth activation code: ", a.act);
    }
  });
}

}  // namespace sgf
