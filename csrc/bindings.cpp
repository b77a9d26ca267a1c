// Python bindings of the stylegan_fast CUDA kernels: check the tensors, allocate the outputs, pick
// the device and stream, call the launchers (launchers.h). The Python side
// (stylegan_fast/ops/cuda/__init__.py) has already brought every tensor into the layout and dtype
// stated here; these checks only guard against misuse.
#include <torch/extension.h>

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <optional>
#include <tuple>

#include "launchers.h"

namespace {

using at::Tensor;
using std::optional;

sgf::DType storage_dtype(const Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return sgf::DType::Float;
    case at::kDouble: return sgf::DType::Double;
    case at::kHalf: return sgf::DType::Half;
    case at::kBFloat16: return sgf::DType::BFloat16;
    default: TORCH_CHECK(false, "stylegan_fast cuda: unsupported dtype ", t.scalar_type());
  }
}

// Math dtype of the small tensors for a big tensor of dtype t: float32, or float64.
at::ScalarType math_dtype(const Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

cudaStream_t stream_of(const Tensor& t) {
  return c10::cuda::getCurrentCUDAStream(t.get_device()).stream();
}

// A 4-D [N, C, H, W] tensor dense in NCHW (nhwc false) or channels_last (nhwc true) order.
void check_big(const Tensor& t, const char* name, bool nhwc) {
  TORCH_CHECK(t.is_cuda(), name, " must be a CUDA tensor");
  TORCH_CHECK(t.dim() == 4, name, " must be 4-D");
  TORCH_CHECK(nhwc ? t.is_contiguous(at::MemoryFormat::ChannelsLast) : t.is_contiguous(), name,
              " must be contiguous in ", nhwc ? "channels_last" : "NCHW", " order");
}

// A small tensor: on x's device, contiguous, in x's math dtype, with `numel` elements.
void check_small(const Tensor& t, const char* name, const Tensor& x, int64_t numel) {
  TORCH_CHECK(t.device() == x.device(), name, " must be on ", x.device());
  TORCH_CHECK(t.is_contiguous(), name, " must be contiguous");
  TORCH_CHECK(t.scalar_type() == math_dtype(x), name, " must be ", math_dtype(x));
  TORCH_CHECK(t.numel() == numel, name, " must have ", numel, " elements");
}

const void* ptr_or_null(const optional<Tensor>& t) { return t ? t->data_ptr() : nullptr; }

Tensor empty_math(const Tensor& x, at::IntArrayRef shape) {
  return at::empty(shape, x.options().dtype(math_dtype(x)));
}

// A math-dtype tensor of `shape`: zero-filled when the kernels will not run (empty input), else
// left uninitialized for the kernels, which write every element.
Tensor zeros_if(bool empty_input, const Tensor& x, at::IntArrayRef shape) {
  return empty_input ? at::zeros(shape, x.options().dtype(math_dtype(x))) : empty_math(x, shape);
}

// -------------------------------------------------------------------------------- bias_act
// act: an activation code of launchers.h (sgf::kActLinear..kActSwish).
void check_act(int64_t act, int64_t first) {
  TORCH_CHECK(act >= first && act <= sgf::kActSwish, "act must be an activation code in [", first,
              ", ", sgf::kActSwish, "], got ", act);
}

std::tuple<Tensor, Tensor> bias_act_forward(const Tensor& x, const optional<Tensor>& bias,
                                            int64_t channels, int64_t inner, int64_t act,
                                            double slope, double gain, double clamp,
                                            bool need_mask) {
  TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor");
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "x must be dense");
  check_act(act, sgf::kActLinear);
  TORCH_CHECK(!need_mask || act < sgf::kActTanh, "smooth activations save no mask");
  if (bias) check_small(*bias, "bias", x, channels);
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor y = at::empty_like(x);
  Tensor mask = need_mask ? at::empty_like(x, x.options().dtype(at::kByte))
                          : at::empty({0}, x.options().dtype(at::kByte));
  if (x.numel() > 0) {
    sgf::BiasActForwardArgs a{};
    a.dtype = storage_dtype(x);
    a.act = static_cast<int>(act);
    a.x = x.data_ptr();
    a.bias = ptr_or_null(bias);
    a.y = y.data_ptr();
    a.mask = need_mask ? mask.data_ptr<uint8_t>() : nullptr;
    a.numel = x.numel();
    a.channels = channels;
    a.inner = inner;
    a.slope = slope;
    a.gain = gain;
    a.clamp = clamp;
    sgf::bias_act_forward(a, stream_of(x));
  }
  return {y, mask};
}

std::tuple<Tensor, Tensor> bias_act_backward(const Tensor& dy, const Tensor& mask,
                                             int64_t channels, int64_t inner, double slope,
                                             double gain, bool compute_db) {
  TORCH_CHECK(dy.is_cuda(), "dy must be a CUDA tensor");
  TORCH_CHECK(dy.is_non_overlapping_and_dense(), "dy must be dense");
  const bool has_mask = mask.numel() > 0;
  if (has_mask) {
    TORCH_CHECK(mask.scalar_type() == at::kByte && mask.strides() == dy.strides() &&
                    mask.sizes() == dy.sizes() && mask.device() == dy.device(),
                "mask must be uint8 with dy's shape, strides and device");
  }
  const c10::cuda::CUDAGuard guard(dy.device());
  Tensor dx = at::empty_like(dy);
  Tensor db = compute_db ? zeros_if(dy.numel() == 0, dy, {channels}) : empty_math(dy, {0});
  if (dy.numel() > 0) {
    sgf::BiasActBackwardArgs a{};
    a.dtype = storage_dtype(dy);
    a.dy = dy.data_ptr();
    a.mask = has_mask ? mask.data_ptr<uint8_t>() : nullptr;
    a.dx = dx.data_ptr();
    a.db = compute_db ? db.data_ptr() : nullptr;
    a.numel = dy.numel();
    a.channels = channels;
    a.inner = inner;
    a.slope = slope;
    a.gain = gain;
    sgf::bias_act_backward(a, stream_of(dy));
  }
  return {dx, db};
}

// Smooth activations: dy in x's strides (the Python side converts it); dx in x's strides.
std::tuple<Tensor, Tensor> bias_act_backward_smooth(const Tensor& dy, const Tensor& x,
                                                    const optional<Tensor>& bias,
                                                    int64_t channels, int64_t inner, int64_t act,
                                                    double gain, double clamp, bool compute_db) {
  TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor");
  TORCH_CHECK(x.is_non_overlapping_and_dense(), "x must be dense");
  TORCH_CHECK(dy.scalar_type() == x.scalar_type() && dy.sizes() == x.sizes() &&
                  dy.strides() == x.strides() && dy.device() == x.device(),
              "dy must have x's dtype, shape, strides and device");
  check_act(act, sgf::kActTanh);
  if (bias) check_small(*bias, "bias", x, channels);
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor dx = at::empty_like(x);
  Tensor db = compute_db ? zeros_if(x.numel() == 0, x, {channels}) : empty_math(x, {0});
  if (x.numel() > 0) {
    sgf::BiasActSmoothBackwardArgs a{};
    a.dtype = storage_dtype(x);
    a.act = static_cast<int>(act);
    a.dy = dy.data_ptr();
    a.x = x.data_ptr();
    a.bias = ptr_or_null(bias);
    a.dx = dx.data_ptr();
    a.db = compute_db ? db.data_ptr() : nullptr;
    a.numel = x.numel();
    a.channels = channels;
    a.inner = inner;
    a.gain = gain;
    a.clamp = clamp;
    sgf::bias_act_backward_smooth(a, stream_of(x));
  }
  return {dx, db};
}

// -------------------------------------------------------------------------------- noise
// The N(0, 1) map [N, 1, H, W] (math dtype of x) that `seed` generates for x's shape.
Tensor generate_noise(int64_t seed, const Tensor& x) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "x must be a 4-D CUDA tensor");
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor noise = empty_math(x, {x.size(0), 1, x.size(2), x.size(3)});
  sgf::NoiseArgs a{};
  a.math = math_dtype(x) == at::kDouble ? sgf::DType::Double : sgf::DType::Float;
  a.seed = static_cast<uint64_t>(seed);
  a.count = noise.numel();
  a.out = noise.data_ptr();
  sgf::generate_noise(a, stream_of(x));
  return noise;
}

void check_noise_map(const Tensor& noise, const Tensor& x) {
  TORCH_CHECK(noise.dim() == 4 && noise.size(1) == 1 && noise.size(2) == x.size(2) &&
                  noise.size(3) == x.size(3) && (noise.size(0) == x.size(0) || noise.size(0) == 1),
              "noise must be [N or 1, 1, H, W]");
  check_small(noise, "noise", x, noise.numel());
}

int64_t noise_stride(const Tensor& noise, const Tensor& x) {
  return noise.size(0) == 1 && x.size(0) != 1 ? 0 : x.size(2) * x.size(3);
}

Tensor noise_inject_forward(const Tensor& x, const Tensor& strength, const Tensor& noise,
                            bool nhwc) {
  check_big(x, "x", nhwc);
  check_small(strength, "strength", x, x.size(1));
  check_noise_map(noise, x);
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor y = at::empty_like(x);
  sgf::NoiseInjectForwardArgs a{};
  a.dtype = storage_dtype(x);
  a.x = x.data_ptr();
  a.strength = strength.data_ptr();
  a.noise = noise.data_ptr();
  a.noise_stride = noise_stride(noise, x);
  a.y = y.data_ptr();
  a.N = x.size(0);
  a.C = x.size(1);
  a.L = x.size(2) * x.size(3);
  a.nhwc = nhwc;
  sgf::noise_inject_forward(a, stream_of(x));
  return y;
}

std::tuple<Tensor, Tensor> noise_inject_backward(const Tensor& dy, const Tensor& strength,
                                                 const Tensor& noise, bool nhwc,
                                                 bool compute_dnoise) {
  check_big(dy, "dy", nhwc);
  check_small(strength, "strength", dy, dy.size(1));
  check_noise_map(noise, dy);
  const c10::cuda::CUDAGuard guard(dy.device());
  const bool none = dy.numel() == 0;
  Tensor dstrength = zeros_if(none, dy, {dy.size(1)});
  Tensor dnoise = compute_dnoise ? zeros_if(none, dy, noise.sizes()) : empty_math(dy, {0});
  sgf::NoiseInjectBackwardArgs a{};
  a.dtype = storage_dtype(dy);
  a.dy = dy.data_ptr();
  a.strength = strength.data_ptr();
  a.noise = noise.data_ptr();
  a.noise_stride = noise_stride(noise, dy);
  a.dstrength = dstrength.data_ptr();
  a.dnoise = compute_dnoise ? dnoise.data_ptr() : nullptr;
  a.N = dy.size(0);
  a.C = dy.size(1);
  a.L = dy.size(2) * dy.size(3);
  a.nhwc = nhwc;
  sgf::noise_inject_backward(a, stream_of(dy));
  return {dstrength, dnoise};
}

// -------------------------------------------------------------------------------- statistics
// mean = 0 and rstd = 1 / sqrt(eps) for planes without elements (what the kernels skip).
std::tuple<Tensor, Tensor> empty_plane_stats(const Tensor& x, double eps) {
  Tensor mean = at::zeros({x.size(0), x.size(1)}, x.options().dtype(math_dtype(x)));
  Tensor rstd = at::full({x.size(0), x.size(1)}, 1.0 / std::sqrt(eps),
                         x.options().dtype(math_dtype(x)));
  return {mean, rstd};
}

std::tuple<Tensor, Tensor, Tensor> style_epilogue_forward(
    const Tensor& x, const optional<Tensor>& bias, const Tensor& style_scale,
    const Tensor& style_bias, const optional<Tensor>& noise_strength,
    const optional<Tensor>& noise, double alpha, double gain, double eps, double scale_offset,
    bool nhwc) {
  check_big(x, "x", nhwc);
  const int64_t N = x.size(0), C = x.size(1);
  if (bias) check_small(*bias, "bias", x, C);
  check_small(style_scale, "style_scale", x, N * C);
  check_small(style_bias, "style_bias", x, N * C);
  if (noise_strength) {
    check_small(*noise_strength, "noise_strength", x, C);
    TORCH_CHECK(noise.has_value(), "noise is required with noise_strength");
    check_noise_map(*noise, x);
  }
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor y = at::empty_like(x);
  if (x.numel() == 0) {
    auto [mean, rstd] = empty_plane_stats(x, eps);
    return {y, mean, rstd};
  }
  Tensor mean = empty_math(x, {N, C});
  Tensor rstd = empty_math(x, {N, C});
  sgf::EpilogueForwardArgs a{};
  a.dtype = storage_dtype(x);
  a.x = x.data_ptr();
  a.bias = ptr_or_null(bias);
  a.noise_strength = ptr_or_null(noise_strength);
  a.noise = noise_strength ? noise->data_ptr() : nullptr;
  a.noise_stride = noise_strength ? noise_stride(*noise, x) : 0;
  a.style_scale = style_scale.data_ptr();
  a.style_bias = style_bias.data_ptr();
  a.y = y.data_ptr();
  a.mean = mean.data_ptr();
  a.rstd = rstd.data_ptr();
  a.N = N;
  a.C = C;
  a.L = x.size(2) * x.size(3);
  a.nhwc = nhwc;
  a.alpha = alpha;
  a.gain = gain;
  a.eps = eps;
  a.scale_offset = scale_offset;
  sgf::style_epilogue_forward(a, stream_of(x));
  return {y, mean, rstd};
}

// (dx, dbias, dstyle_scale, dstyle_bias, dnoise_strength, dnoise); dbias / dnoise_strength are
// empty when bias / noise_strength is None, dnoise unless compute_dnoise.
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> style_epilogue_backward(
    const Tensor& dy, const Tensor& x, const optional<Tensor>& bias, const Tensor& style_scale,
    const optional<Tensor>& noise_strength, const optional<Tensor>& noise, const Tensor& mean,
    const Tensor& rstd, double alpha, double gain, double scale_offset, bool nhwc,
    bool compute_dnoise) {
  check_big(dy, "dy", nhwc);
  check_big(x, "x", nhwc);
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type() &&
                  dy.device() == x.device(), "dy must match x");
  const int64_t N = x.size(0), C = x.size(1);
  if (bias) check_small(*bias, "bias", x, C);
  check_small(style_scale, "style_scale", x, N * C);
  check_small(mean, "mean", x, N * C);
  check_small(rstd, "rstd", x, N * C);
  if (noise_strength) {
    check_small(*noise_strength, "noise_strength", x, C);
    TORCH_CHECK(noise.has_value(), "noise is required with noise_strength");
    check_noise_map(*noise, x);
  }
  TORCH_CHECK(!compute_dnoise || noise_strength, "compute_dnoise needs noise_strength");
  const c10::cuda::CUDAGuard guard(x.device());
  const bool none = x.numel() == 0;
  auto per_channel = [&](bool present) {
    return present ? zeros_if(none, x, {C}) : empty_math(x, {0});
  };
  Tensor dx = at::empty_like(x);
  Tensor dbias = per_channel(bias.has_value());
  Tensor dscale = zeros_if(none, x, {N, C});
  Tensor dsbias = zeros_if(none, x, {N, C});
  Tensor dstrength = per_channel(noise_strength.has_value());
  Tensor dnoise = compute_dnoise ? zeros_if(none, x, noise->sizes()) : empty_math(x, {0});
  if (x.numel() == 0) return {dx, dbias, dscale, dsbias, dstrength, dnoise};
  sgf::EpilogueBackwardArgs a{};
  a.dtype = storage_dtype(x);
  a.dy = dy.data_ptr();
  a.x = x.data_ptr();
  a.bias = ptr_or_null(bias);
  a.noise_strength = ptr_or_null(noise_strength);
  a.noise = noise_strength ? noise->data_ptr() : nullptr;
  a.noise_stride = noise_strength ? noise_stride(*noise, x) : 0;
  a.style_scale = style_scale.data_ptr();
  a.mean = mean.data_ptr();
  a.rstd = rstd.data_ptr();
  a.dx = dx.data_ptr();
  a.dbias = bias ? dbias.data_ptr() : nullptr;
  a.dstyle_scale = dscale.data_ptr();
  a.dstyle_bias = dsbias.data_ptr();
  a.dnoise_strength = noise_strength ? dstrength.data_ptr() : nullptr;
  a.dnoise = compute_dnoise ? dnoise.data_ptr() : nullptr;
  a.N = N;
  a.C = C;
  a.L = x.size(2) * x.size(3);
  a.nhwc = nhwc;
  a.alpha = alpha;
  a.gain = gain;
  a.scale_offset = scale_offset;
  sgf::style_epilogue_backward(a, stream_of(x));
  return {dx, dbias, dscale, dsbias, dstrength, dnoise};
}

std::tuple<Tensor, Tensor, Tensor> adain_forward(const Tensor& x, const Tensor& style_scale,
                                                 const Tensor& style_bias, double eps,
                                                 double scale_offset, bool nhwc) {
  check_big(x, "x", nhwc);
  const int64_t N = x.size(0), C = x.size(1);
  check_small(style_scale, "style_scale", x, N * C);
  check_small(style_bias, "style_bias", x, N * C);
  const c10::cuda::CUDAGuard guard(x.device());
  Tensor y = at::empty_like(x);
  if (x.numel() == 0) {
    auto [mean, rstd] = empty_plane_stats(x, eps);
    return {y, mean, rstd};
  }
  Tensor mean = empty_math(x, {N, C});
  Tensor rstd = empty_math(x, {N, C});
  sgf::AdainForwardArgs a{};
  a.dtype = storage_dtype(x);
  a.x = x.data_ptr();
  a.style_scale = style_scale.data_ptr();
  a.style_bias = style_bias.data_ptr();
  a.y = y.data_ptr();
  a.mean = mean.data_ptr();
  a.rstd = rstd.data_ptr();
  a.N = N;
  a.C = C;
  a.L = x.size(2) * x.size(3);
  a.nhwc = nhwc;
  a.eps = eps;
  a.scale_offset = scale_offset;
  sgf::adain_forward(a, stream_of(x));
  return {y, mean, rstd};
}

std::tuple<Tensor, Tensor, Tensor> adain_backward(const Tensor& dy, const Tensor& x,
                                                  const Tensor& mean, const Tensor& rstd,
                                                  const Tensor& style_scale, double scale_offset,
                                                  bool nhwc) {
  check_big(dy, "dy", nhwc);
  check_big(x, "x", nhwc);
  TORCH_CHECK(dy.sizes() == x.sizes() && dy.scalar_type() == x.scalar_type() &&
                  dy.device() == x.device(), "dy must match x");
  const int64_t N = x.size(0), C = x.size(1);
  check_small(style_scale, "style_scale", x, N * C);
  check_small(mean, "mean", x, N * C);
  check_small(rstd, "rstd", x, N * C);
  const c10::cuda::CUDAGuard guard(x.device());
  const bool none = x.numel() == 0;
  Tensor dx = at::empty_like(x);
  Tensor dscale = zeros_if(none, x, {N, C});
  Tensor dsbias = zeros_if(none, x, {N, C});
  if (none) return {dx, dscale, dsbias};
  sgf::AdainBackwardArgs a{};
  a.dtype = storage_dtype(x);
  a.dy = dy.data_ptr();
  a.x = x.data_ptr();
  a.style_scale = style_scale.data_ptr();
  a.mean = mean.data_ptr();
  a.rstd = rstd.data_ptr();
  a.dx = dx.data_ptr();
  a.dstyle_scale = dscale.data_ptr();
  a.dstyle_bias = dsbias.data_ptr();
  a.N = N;
  a.C = C;
  a.L = x.size(2) * x.size(3);
  a.nhwc = nhwc;
  a.scale_offset = scale_offset;
  sgf::adain_backward(a, stream_of(x));
  return {dx, dscale, dsbias};
}

// -------------------------------------------------------------------------------- upfirdn2d
// One pass (stylegan_fast/ops/upfirdn2d.py) into y, which the caller allocated as
// [N, C, OH, OW] in the op's output layout (NCHW, or channels_last) and dtype. x: any strides.
// up, down, pad: (x, y) pairs.
void upfirdn2d_forward(const Tensor& x, const Tensor& f, const Tensor& y, bool separable,
                       at::IntArrayRef up, at::IntArrayRef down, at::IntArrayRef pad, bool flip,
                       double gain) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 4, "x must be a 4-D CUDA tensor");
  const bool nhwc = !y.is_contiguous();
  check_big(y, "y", nhwc);
  TORCH_CHECK(y.device() == x.device() && y.size(0) == x.size(0) && y.size(1) == x.size(1),
              "y must be [N, C, OH, OW] on x's device");
  TORCH_CHECK(f.device() == x.device() && f.scalar_type() == at::kFloat && f.is_contiguous() &&
                  f.dim() == (separable ? 1 : 2) && f.numel() > 0,
              "f must be a non-empty contiguous float32 filter on x's device, [K] if separable "
              "else [KH, KW]");
  TORCH_CHECK(up.size() == 2 && down.size() == 2 && pad.size() == 2,
              "up, down and pad must be (x, y) pairs");
  const int64_t kh = f.size(0), kw = separable ? f.size(0) : f.size(1);
  TORCH_CHECK(kh * kw <= sgf::kUpFirDn2dMaxTaps, "upfirdn2d cuda: the filter has ", kh, " x ",
              kw, " = ", kh * kw, " taps, more than the ", sgf::kUpFirDn2dMaxTaps,
              " supported (run a long 1-D filter as two passes, [1, K] then [K, 1])");
  const c10::cuda::CUDAGuard guard(x.device());
  if (x.numel() == 0) {  // nothing to read: y is all padding
    y.zero_();
    return;
  }
  sgf::UpFirDn2dArgs a{};
  a.dtype = storage_dtype(x);
  a.out_dtype = storage_dtype(y);
  a.x = x.data_ptr();
  a.sx_n = x.stride(0); a.sx_c = x.stride(1); a.sx_h = x.stride(2); a.sx_w = x.stride(3);
  a.f = f.data_ptr<float>();
  a.y = y.data_ptr();
  a.sy_n = y.stride(0); a.sy_c = y.stride(1); a.sy_h = y.stride(2); a.sy_w = y.stride(3);
  a.nhwc = nhwc;
  a.N = x.size(0); a.C = x.size(1); a.H = x.size(2); a.W = x.size(3);
  a.OH = y.size(2); a.OW = y.size(3);
  a.KH = static_cast<int>(kh); a.KW = static_cast<int>(kw);
  a.separable = separable;
  a.flip = flip;
  a.up_x = up[0]; a.up_y = up[1];
  a.down_x = down[0]; a.down_y = down[1];
  a.pad_x = pad[0]; a.pad_y = pad[1];
  a.gain = gain;
  sgf::upfirdn2d_forward(a, stream_of(x));
}

// -------------------------------------------------------------------------------- filtered_lrelu
// A filter: float32, contiguous, on z's device, 1-D (separable) or 2-D, 1..32 taps per axis.
void check_fir(const Tensor& f, const char* name, const Tensor& z) {
  TORCH_CHECK(f.device() == z.device() && f.scalar_type() == at::kFloat && f.is_contiguous() &&
                  (f.dim() == 1 || f.dim() == 2) && f.numel() > 0 &&
                  f.size(0) <= sgf::kFilteredLReluMaxTaps &&
                  f.size(-1) <= sgf::kFilteredLReluMaxTaps,
              name, " must be a contiguous float32 filter on z's device, [K] or [KH, KW] with 1 "
              "to ", sgf::kFilteredLReluMaxTaps, " taps per axis");
}

// The launcher arguments of both passes: z (any strides), the filters, y [N, C, OH, OW] (the
// caller allocated it in the op's output layout and dtype), signs uint8 [N, C, RH, ceil(RW / 4)]
// (any strides; an empty tensor: none), region (RH, RW).
sgf::FilteredLReluArgs flrelu_args(const Tensor& z, const Tensor& f1, const Tensor& f2,
                                   const Tensor& y, const Tensor& signs, int64_t up, int64_t down,
                                   at::IntArrayRef pad1, at::IntArrayRef region, double gain,
                                   double slope, bool flip) {
  TORCH_CHECK(z.is_cuda() && z.dim() == 4, "z must be a 4-D CUDA tensor");
  check_fir(f1, "f1", z);
  check_fir(f2, "f2", z);
  check_big(y, "y", !y.is_contiguous());
  TORCH_CHECK(y.device() == z.device() && y.size(0) == z.size(0) && y.size(1) == z.size(1),
              "y must be [N, C, OH, OW] on z's device");
  TORCH_CHECK(up >= 1 && down >= 1 && pad1.size() == 2 && region.size() == 2 && region[0] >= 1 &&
                  region[1] >= 1,
              "up, down must be >= 1, pad a pair (x, y), region (RH, RW) >= 1");
  if (signs.numel() > 0) {
    TORCH_CHECK(signs.device() == z.device() && signs.scalar_type() == at::kByte &&
                    signs.dim() == 4 && signs.size(0) == z.size(0) &&
                    signs.size(1) == z.size(1) && signs.size(2) == region[0] &&
                    signs.size(3) == (region[1] + 3) / 4,
                "signs must be uint8 [N, C, RH, ceil(RW / 4)] on z's device");
  }
  sgf::FilteredLReluArgs a{};
  a.dtype = storage_dtype(z);
  a.out_dtype = storage_dtype(y);
  a.z = z.data_ptr();
  a.sz_n = z.stride(0); a.sz_c = z.stride(1); a.sz_h = z.stride(2); a.sz_w = z.stride(3);
  a.f1 = f1.data_ptr<float>();
  a.K1h = static_cast<int>(f1.size(0)); a.K1w = static_cast<int>(f1.size(-1));
  a.sep1 = f1.dim() == 1;
  a.f2 = f2.data_ptr<float>();
  a.K2h = static_cast<int>(f2.size(0)); a.K2w = static_cast<int>(f2.size(-1));
  a.sep2 = f2.dim() == 1;
  a.y = y.data_ptr();
  a.sy_n = y.stride(0); a.sy_c = y.stride(1); a.sy_h = y.stride(2); a.sy_w = y.stride(3);
  if (signs.numel() > 0) {
    a.signs = signs.data_ptr<uint8_t>();
    a.ss_n = signs.stride(0); a.ss_c = signs.stride(1);
    a.ss_h = signs.stride(2); a.ss_w = signs.stride(3);
  }
  a.N = z.size(0); a.C = z.size(1); a.H = z.size(2); a.W = z.size(3);
  a.RH = region[0]; a.RW = region[1];
  a.OH = y.size(2); a.OW = y.size(3);
  a.up = up; a.down = down;
  a.pad1_x = pad1[0]; a.pad1_y = pad1[1];
  a.flip = flip;
  a.gain = gain; a.slope = slope;
  return a;
}

// Forward: y = the pass with gain1 = up ** 2, gain2 = 1, act clamp(leaky_relu(v) * gain); the
// codes into signs unless it is empty. b: [C] math dtype or None.
void filtered_lrelu_forward(const Tensor& x, const Tensor& fu, const Tensor& fd,
                            const optional<Tensor>& b, const Tensor& y, const Tensor& signs,
                            int64_t up, int64_t down, at::IntArrayRef pad,
                            at::IntArrayRef region, double gain, double slope, double clamp,
                            bool flip) {
  sgf::FilteredLReluArgs a =
      flrelu_args(x, fu, fd, y, signs, up, down, pad, region, gain, slope, flip);
  TORCH_CHECK(y.scalar_type() == x.scalar_type(), "y must have x's dtype");
  TORCH_CHECK(signs.numel() == 0 || signs.is_non_overlapping_and_dense(), "signs must be dense");
  if (b) check_small(*b, "b", x, x.size(1));
  const c10::cuda::CUDAGuard guard(x.device());
  if (x.numel() == 0) {  // as the op does for an empty x
    y.zero_();
    if (signs.numel() > 0) signs.zero_();
    return;
  }
  a.masked = false;
  a.bias = ptr_or_null(b);
  a.gain1 = static_cast<double>(up * up);
  a.gain2 = 1.0;
  a.clamp = clamp;
  sgf::filtered_lrelu(a, stream_of(x));
}

// Masked: y = scale * S2(m * S1(z)), m from signs (module docstring of filtered_lrelu.py).
void filtered_lrelu_masked(const Tensor& z, const Tensor& f1, const Tensor& f2,
                           const Tensor& signs, const Tensor& y, int64_t up, int64_t down,
                           at::IntArrayRef pad1, at::IntArrayRef pad2, at::IntArrayRef region,
                           double gain, double slope, double scale, bool flip) {
  sgf::FilteredLReluArgs a =
      flrelu_args(z, f1, f2, y, signs, up, down, pad1, region, gain, slope, flip);
  TORCH_CHECK(pad2.size() == 2, "pad2 must be a pair (x, y)");
  const c10::cuda::CUDAGuard guard(z.device());
  if (z.numel() == 0) {
    y.zero_();
    return;
  }
  TORCH_CHECK(signs.numel() > 0, "signs must not be empty");
  a.masked = true;
  a.pad2_x = pad2[0]; a.pad2_y = pad2[1];
  a.gain1 = 1.0;
  a.gain2 = scale;
  a.clamp = 0.0;
  sgf::filtered_lrelu(a, stream_of(z));
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "stylegan_fast CUDA kernels (see stylegan_fast/ops/cuda for the Python interface)";
  m.def("bias_act_forward", &bias_act_forward, "bias_act forward -> (y, mask)");
  m.def("bias_act_backward", &bias_act_backward, "bias_act backward -> (dx, db)");
  m.def("bias_act_backward_smooth", &bias_act_backward_smooth,
        "bias_act backward of a smooth activation -> (dx, db)");
  m.def("generate_noise", &generate_noise, "N(0, 1) noise map [N, 1, H, W] of a seed");
  m.def("noise_inject_forward", &noise_inject_forward, "noise_inject forward -> y");
  m.def("noise_inject_backward", &noise_inject_backward,
        "noise_inject backward -> (dstrength, dnoise)");
  m.def("style_epilogue_forward", &style_epilogue_forward,
        "style_epilogue forward -> (y, mean, rstd)");
  m.def("style_epilogue_backward", &style_epilogue_backward,
        "style_epilogue backward -> (dx, dbias, dstyle_scale, dstyle_bias, dnoise_strength, "
        "dnoise)");
  m.def("adain_forward", &adain_forward, "adain forward -> (y, mean, rstd)");
  m.def("adain_backward", &adain_backward, "adain backward -> (dx, dstyle_scale, dstyle_bias)");
  m.def("upfirdn2d_forward", &upfirdn2d_forward,
        "upfirdn2d: one pass (upsample, FIR filter, downsample) of x into y");
  m.def("filtered_lrelu_forward", &filtered_lrelu_forward,
        "filtered_lrelu forward pass of x into y (and the signs)");
  m.def("filtered_lrelu_masked", &filtered_lrelu_masked,
        "filtered_lrelu masked pass (backward) of z into y, reading the signs");
}
