// Host-side interface between the bindings (bindings.cpp, which sees at::Tensor) and the kernels
// (*.cu, which see raw pointers only, so that nvcc never parses the ATen headers).
//
// Every launcher runs on `stream` of the current device, launches nothing for empty tensors, checks
// each launch, and expects the caller to have validated shapes, dtypes and layouts:
//   * big tensors (x, y, dy, dx, mask) are dense, in the layout the struct names, storage dtype;
//   * small tensors (bias, strengths, styles, noise, mean, rstd and every reduction output) are
//     contiguous, in the math dtype: float32, or float64 when the storage dtype is float64.
#pragma once

#include <cstdint>
#include <cuda_runtime_api.h>

namespace sgf {

enum class DType : int { Float = 0, Double = 1, Half = 2, BFloat16 = 3 };

// bias_act activation codes (ACTIVATIONS[name].code in stylegan_fast/ops/bias_act.py), the
// kernels' compile-time template argument. Piecewise linear (the backward reads a mask):
constexpr int kActLinear = 0, kActRelu = 1, kActLrelu = 2;
// Smooth (the backward recomputes act'(x + b) from the forward's x and b):
constexpr int kActTanh = 3, kActSigmoid = 4, kActElu = 5, kActSelu = 6, kActSoftplus = 7,
              kActSwish = 8;

// bias_act forward. x is dense and seen as [outer][channels][inner] (inner = x.stride(dim)).
struct BiasActForwardArgs {
  DType dtype;
  int act;              // activation code, kActLinear..kActSwish
  const void* x;        // [numel] storage dtype
  const void* bias;     // [channels] math dtype, or nullptr
  void* y;              // [numel] storage dtype, x's strides
  uint8_t* mask;        // [numel] x's strides (bit 0: z > 0, except linear; bit 1: clamped), or
                        // nullptr; piecewise-linear activations only
  int64_t numel, channels, inner;
  double slope;         // lrelu's slope for z <= 0 (unused by the other activations)
  double gain;          // multiplier after the activation
  double clamp;         // clamp bound, or < 0 for none
};
void bias_act_forward(const BiasActForwardArgs& args, cudaStream_t stream);

// bias_act backward of a piecewise-linear activation: dx = dy * gain * (bit0 ? 1 : slope) * !bit1;
// db[c] = sum of dx over c's slice.
struct BiasActBackwardArgs {
  DType dtype;
  const void* dy;       // [numel] storage dtype, the mask's strides
  const uint8_t* mask;  // [numel], or nullptr (linear without clamp: factor = gain)
  void* dx;             // [numel] storage dtype, dy's strides
  void* db;             // [channels] math dtype, or nullptr to skip the reduction
  int64_t numel, channels, inner;
  double slope, gain;
};
void bias_act_backward(const BiasActBackwardArgs& args, cudaStream_t stream);

// bias_act backward of a smooth activation, from the forward's input: z = x + b[c],
// dx = dy * gain * act'(z) * [not (clamp >= 0 and |act(z) * gain| > clamp)];
// db[c] = sum of dx over c's slice. x (and so dy, dx) is seen as [outer][channels][inner].
struct BiasActSmoothBackwardArgs {
  DType dtype;
  int act;              // activation code, kActTanh..kActSwish
  const void* dy;       // [numel] storage dtype, x's strides
  const void* x;        // [numel] storage dtype, the forward's input
  const void* bias;     // [channels] math dtype, or nullptr
  void* dx;             // [numel] storage dtype, x's strides
  void* db;             // [channels] math dtype, or nullptr to skip the reduction
  int64_t numel, channels, inner;
  double gain;          // the forward's multiplier after the activation
  double clamp;         // the forward's clamp bound, or < 0 for none
};
void bias_act_backward_smooth(const BiasActSmoothBackwardArgs& args, cudaStream_t stream);

// N(0, 1) noise map [count] as a pure function of (seed, index) (Philox4x32-10 + Box-Muller).
struct NoiseArgs {
  DType math;           // Float or Double: dtype of out
  uint64_t seed;
  int64_t count;        // N * H * W
  void* out;            // [count] math dtype
};
void generate_noise(const NoiseArgs& args, cudaStream_t stream);

// noise_inject forward: y = x + noise[n or 0, hw] * strength[c].
struct NoiseInjectForwardArgs {
  DType dtype;
  const void* x;            // [N, C, H, W] storage dtype, NCHW or NHWC (nhwc)
  const void* strength;     // [C] math dtype
  const void* noise;        // [N or 1, H*W] math dtype
  int64_t noise_stride;     // H*W, or 0 for a noise map shared by the batch
  void* y;                  // like x
  int64_t N, C, L;          // L = H * W
  bool nhwc;
};
void noise_inject_forward(const NoiseInjectForwardArgs& args, cudaStream_t stream);

// noise_inject backward: dstrength[c] = sum dy * noise; dnoise[m, hw] = sum_c dy * strength[c]
// (m = n, or summed over n when the noise map is shared).
struct NoiseInjectBackwardArgs {
  DType dtype;
  const void* dy;           // like x of the forward
  const void* strength;     // [C] math dtype
  const void* noise;        // [N or 1, H*W] math dtype
  int64_t noise_stride;     // H*W or 0
  void* dstrength;          // [C] math dtype
  void* dnoise;             // [N or 1, H*W] math dtype, or nullptr
  int64_t N, C, L;
  bool nhwc;
};
void noise_inject_backward(const NoiseInjectBackwardArgs& args, cudaStream_t stream);

// style_epilogue forward (adain is the case bias = noise = nullptr, alpha = gain = 1):
//   t = x + noise * noise_strength[c] + bias[c];  a = lrelu(t, alpha) * gain
//   mean, rstd = statistics of a per (n, c);     y = (a - mean) * rstd * (scale + offset) + sbias
struct EpilogueForwardArgs {
  DType dtype;
  const void* x;                // [N, C, H, W] storage dtype, NCHW or NHWC
  const void* bias;             // [C] math dtype, or nullptr
  const void* noise_strength;   // [C] math dtype, or nullptr (no noise term)
  const void* noise;            // [N or 1, H*W] math dtype (when noise_strength is given)
  int64_t noise_stride;         // H*W or 0
  const void* style_scale;      // [N, C] math dtype
  const void* style_bias;       // [N, C] math dtype
  void* y;                      // like x
  void* mean;                   // [N, C] math dtype (output)
  void* rstd;                   // [N, C] math dtype (output)
  int64_t N, C, L;
  bool nhwc;
  double alpha, gain, eps, scale_offset;
};
void style_epilogue_forward(const EpilogueForwardArgs& args, cudaStream_t stream);

// style_epilogue backward:
//   pass A, per (n, c): dstyle_bias = sum dy, dstyle_scale = sum dy * ahat
//   pass B, per element: da = rstd * s * (dy - dstyle_bias / L - ahat * dstyle_scale / L),
//     dt = da * gain * (t > 0 ? 1 : alpha) = dx;  per c: dbias = sum dt, dnoise_strength =
//     sum dt * noise;  dnoise = sum_c dt * noise_strength[c]
struct EpilogueBackwardArgs {
  DType dtype;
  const void* dy;               // like x
  const void* x;                // [N, C, H, W] storage dtype, NCHW or NHWC
  const void* bias;             // [C] math dtype, or nullptr
  const void* noise_strength;   // [C] math dtype, or nullptr
  const void* noise;            // [N or 1, H*W] math dtype (when noise_strength is given)
  int64_t noise_stride;         // H*W or 0
  const void* style_scale;      // [N, C] math dtype
  const void* mean;             // [N, C] math dtype (saved by the forward)
  const void* rstd;             // [N, C] math dtype
  void* dx;                     // like x
  void* dbias;                  // [C] math dtype, or nullptr
  void* dstyle_scale;           // [N, C] math dtype
  void* dstyle_bias;            // [N, C] math dtype
  void* dnoise_strength;        // [C] math dtype, or nullptr
  void* dnoise;                 // [N or 1, H*W] math dtype, or nullptr
  int64_t N, C, L;
  bool nhwc;
  double alpha, gain, scale_offset;
};
void style_epilogue_backward(const EpilogueBackwardArgs& args, cudaStream_t stream);

// adain: instance norm + modulation (the epilogue kernels without noise, bias and activation).
struct AdainForwardArgs {
  DType dtype;
  const void* x;                // [N, C, H, W] storage dtype, NCHW or NHWC
  const void* style_scale;      // [N, C] math dtype
  const void* style_bias;       // [N, C] math dtype
  void* y;                      // like x
  void* mean;                   // [N, C] math dtype (output)
  void* rstd;                   // [N, C] math dtype (output)
  int64_t N, C, L;
  bool nhwc;
  double eps, scale_offset;
};
void adain_forward(const AdainForwardArgs& args, cudaStream_t stream);

struct AdainBackwardArgs {
  DType dtype;
  const void* dy;               // like x
  const void* x;                // [N, C, H, W] storage dtype
  const void* style_scale;      // [N, C] math dtype
  const void* mean;             // [N, C] math dtype
  const void* rstd;             // [N, C] math dtype
  void* dx;                     // like x
  void* dstyle_scale;           // [N, C] math dtype
  void* dstyle_bias;            // [N, C] math dtype
  int64_t N, C, L;
  bool nhwc;
  double scale_offset;
};
void adain_backward(const AdainBackwardArgs& args, cudaStream_t stream);

// upfirdn2d: one pass of stylegan_fast/ops/upfirdn2d.py's docstring (upsample by up, FIR-filter,
// downsample by down):
//   y[n, c, oy, ox] = gain * sum_{ky < KH, kx < KW} u[n, c, oy * down_y + ky - pad_y,
//                                                     ox * down_x + kx - pad_x] * w[ky, kx]
//   u[n, c, t, s] = x[n, c, t / up_y, s / up_x] if up_y | t, up_x | s and inside x, else 0
//   w[ky, kx] = g[ky, kx] if flip else g[KH - 1 - ky, KW - 1 - kx], g = f (x) f or f
// Math in float32 (float64 for a float64 x). The filter holds at most kUpFirDn2dMaxTaps taps
// (KH * KW: 32 x 32 2-D, 1-D up to 32 as f (x) f, or up to 1024 as a [1, K] / [K, 1] pass).
constexpr int kUpFirDn2dMaxTaps = 1024;
struct UpFirDn2dArgs {
  DType dtype;                      // storage dtype of x
  DType out_dtype;                  // storage dtype of y: x's, Float for a Half/BFloat16 x, or
                                    // Half/BFloat16 for a Float x
  const void* x;                    // [N, C, H, W] storage dtype, any strides (sx_*)
  int64_t sx_n, sx_c, sx_h, sx_w;   // x's strides, elements
  const float* f;                   // [K] if separable (KH = KW = K), else [KH, KW]; contiguous
  void* y;                          // [N, C, OH, OW] out_dtype, dense NCHW or channels_last
  int64_t sy_n, sy_c, sy_h, sy_w;   // y's strides, elements
  bool nhwc;                        // y is channels_last (threads along c), else NCHW
  int64_t N, C, H, W, OH, OW;
  int KH, KW;                       // filter taps along y, x
  bool separable;                   // f is 1-D: w = f (x) f
  bool flip;                        // correlate with f itself (no flip)
  int64_t up_x, up_y, down_x, down_y;  // >= 1
  int64_t pad_x, pad_y;             // leading padding on the upsampled x (negative crops)
  double gain;
};
void upfirdn2d_forward(const UpFirDn2dArgs& args, cudaStream_t stream);

// filtered_lrelu: one pass of stylegan_fast/ops/filtered_lrelu.py's backend interface, fused
// (stage 1, the activation, stage 2 per output tile in shared memory; see filtered_lrelu.cu):
//   v[r, s] = gain1 * sum_{ky, kx} u[r + ky - pad1_y, s + kx - pad1_x] * w1[ky, kx], (r, s) in
//             the region [0, RH) x [0, RW)
//   u[i, j] = z[i / up, j / up] (+ bias[c] in forward) if up | i, up | j and inside z, else 0
//   a = forward: clamp(leaky_relu(v, slope) * gain, -clamp, clamp), codes saved to signs;
//       masked: v * gain * (1 | slope | 0) from the codes in signs; a = 0 outside the region
//   y[o, p] = gain2 * sum_{ky, kx} a[o * down + ky - pad2_y, p * down + kx - pad2_x] * w2[ky, kx]
//   w[ky, kx] = g[ky, kx] if flip else g[KH - 1 - ky, KW - 1 - kx], g = f (x) f for a 1-D f
// Math in float32 (float64 for a float64 z).
constexpr int kFilteredLReluMaxTaps = 32;  // per axis, both filters
struct FilteredLReluArgs {
  DType dtype;                      // storage dtype of z
  DType out_dtype;                  // storage dtype of y: z's; masked also Float for a
                                    // Half/BFloat16 z, or Half/BFloat16 for a Float z
  bool masked;                      // the masked pass (reads signs), else forward (writes them)
  const void* z;                    // [N, C, H, W] storage dtype, any strides (sz_*): x or dy
  int64_t sz_n, sz_c, sz_h, sz_w;   // z's strides, elements
  const void* bias;                 // [C] math dtype, or nullptr (forward only)
  const float* f1;                  // stage 1 filter: [K1] if sep1 (K1h = K1w = K1), else
                                    // [K1h, K1w]; contiguous
  int K1h, K1w;                     // its taps along y, x (<= kFilteredLReluMaxTaps)
  bool sep1;                        // f1 is 1-D (separable)
  const float* f2;                  // stage 2 filter, likewise
  int K2h, K2w;
  bool sep2;
  void* y;                          // [N, C, OH, OW] out_dtype, non-overlapping (sy_*)
  int64_t sy_n, sy_c, sy_h, sy_w;   // y's strides, elements
  uint8_t* signs;                   // [N, C, RH, ceil(RW / 4)], 2 bits per region element
                                    // (ss_*); forward: written, or nullptr; masked: read
  int64_t ss_n, ss_c, ss_h, ss_w;   // signs' strides, bytes
  int64_t N, C, H, W;               // z's sizes
  int64_t RH, RW;                   // the region of v
  int64_t OH, OW;                   // y's plane
  int64_t up, down;                 // up1 (stage 1 zero insertion), down2 (stage 2), >= 1
  int64_t pad1_x, pad1_y;           // stage 1 leading padding (negative crops)
  int64_t pad2_x, pad2_y;           // stage 2 leading padding (masked only; forward: 0)
  bool flip;                        // correlate with the filters (no flip)
  double gain1, gain2;              // stage gains (forward: up ** 2, 1; masked: 1, scale)
  double gain, slope;               // activation gain and leaky ReLU slope
  double clamp;                     // forward: clamp bound, or inf for none
};
void filtered_lrelu(const FilteredLReluArgs& args, cudaStream_t stream);

}  // namespace sgf
