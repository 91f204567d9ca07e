// CPU references of the CUDA kernels in kernels.h: the same math, element by element, in
// plain C++ on host buffers. The GPU tests hold each kernel to its reference; the CPU
// executor's mixed-precision path uses the same functions, so CI exercises them.
#pragma once

#include <cstdint>
#include <vector>

namespace sextant::kernels {

enum class DType { fp32, bf16, fp16 };

// Round-to-nearest-even conversions between fp32 and the 16-bit formats, with inf and NaN
// preserved; fp16 overflow gives inf, underflow gives subnormals then zero.
uint16_t float_to_bf16(float x);
float bf16_to_float(uint16_t x);
uint16_t float_to_fp16(float x);
float fp16_to_float(uint16_t x);

// dst[i] = src[i] converted; `src`/`dst` hold elements of their dtype (float or uint16_t).
void cast_reference(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n);

// AdamW's hyper-parameters in the type T the step computes in: float for the kernels and
// fp32 master weights, double for `sextant execute --fp64`.
template <typename T>
struct AdamWArgsOf {
  T lr = T(1e-3), beta1 = T(0.9), beta2 = T(0.95), eps = T(1e-8), weight_decay = T(0);
  T grad_scale = T(1);  // applied to every gradient first: 1/loss_scale × clip coefficient
  int64_t step = 1;     // 1-based, for bias correction
};
using AdamWArgs = AdamWArgsOf<float>;

// One AdamW step on fp32 master weights, in place, with decoupled weight decay:
//   g = grad·grad_scale;  m = β1·m + (1-β1)·g;  v = β2·v + (1-β2)·g²
//   master -= lr·(m/(1-β1^t) / (sqrt(v/(1-β2^t)) + eps) + weight_decay·master)
// `decay` (optional, may be null) holds a 0/1 weight-decay mask per element. `working`
// (optional) receives master in `working_dtype` (the bf16/fp16 copy the model computes with).
void adamw_reference(float* master, float* m, float* v, const float* grad, const float* decay, int64_t n,
                     const AdamWArgs& args, void* working, DType working_dtype);
// The same step, the same code instantiated for double (float64 master weights, m and v).
void adamw_reference(double* master, double* m, double* v, const double* grad, const double* decay,
                     int64_t n, const AdamWArgsOf<double>& args);

// A list of fp32 buffers, for the multi-tensor kernels.
struct TensorSpan {
  float* data = nullptr;
  int64_t n = 0;
};

// Multiplies every element by `inv_scale`, in place; returns true if any element was
// inf or NaN (before or after scaling).
bool unscale_reference(const std::vector<TensorSpan>& tensors, float inv_scale);

// Σ x² over every element of every tensor, accumulated in double.
double square_sum_reference(const std::vector<TensorSpan>& tensors);

// Softmax cross-entropy over a vocab-parallel shard, in one pass over the logits. Each
// rank holds logits[t, vocab_start : vocab_start + vocab_local] ([tokens, vocab_local],
// row-major, `dtype`) and computes per row, with an online softmax:
//   local_max[t], local_sum_exp[t] = Σ_j exp(x[t,j] - local_max[t]),
//   target_logit[t] = x[t, y_t] if y_t falls in this shard, else 0.
// Across the tp group: global_max = all-reduce max of local_max; then
//   sum_exp[t] = local_sum_exp[t]·exp(local_max[t] - global_max[t])   (ce_rescale)
// all-reduced by sum with target_logit; then
//   loss[t] = log(sum_exp[t]) + global_max[t] - target_logit[t]
//   dx[t, j] = (exp(x[t,j] - global_max[t]) / sum_exp[t] - [j == y_t]) · grad_loss[t]
// The references compute each output in double and round it to fp32 (or `dtype`) once,
// so each is within about one unit of fp32 rounding of the exact value of its inputs:
// the kernels' own fp32 error, not the reference's, is what a test against them sees.
void ce_forward_partial_reference(const void* logits, DType dtype, int64_t tokens, int64_t vocab_local,
                                  const int64_t* targets, int64_t vocab_start, float* local_max,
                                  float* local_sum_exp, float* target_logit);
void ce_rescale_reference(const float* local_max, const float* local_sum_exp, const float* global_max,
                          int64_t tokens, float* sum_exp);
void ce_loss_reference(const float* global_max, const float* sum_exp, const float* target_logit, int64_t tokens,
                       float* loss);
// `dlogits` has the logits' dtype and shape.
void ce_backward_reference(const void* logits, DType dtype, int64_t tokens, int64_t vocab_local,
                           const int64_t* targets, int64_t vocab_start, const float* global_max,
                           const float* sum_exp, const float* grad_loss, void* dlogits);

// Norms over rows of `hidden` elements (x, weight, bias, y, dy, dx in `dtype`; per-row
// statistics and parameter gradients in fp32):
//   rmsnorm:   rstd = 1/sqrt(mean(x²) + eps);  y = x·rstd·w
//              dx = rstd·g - x·rstd³·mean(g·x)  with g = dy·w;  dweight = Σ_rows dy·x·rstd
//   layernorm: mean = mean(x);  rstd = 1/sqrt(mean((x - mean)²) + eps);  x̂ = (x - mean)·rstd
//              y = x̂·w + b;  dx = rstd·(g - mean(g) - x̂·mean(g·x̂));
//              dweight = Σ_rows dy·x̂;  dbias = Σ_rows dy
// The backward passes take the saved fp32 statistics, as the kernels do. Like the
// cross-entropy references, each output is computed in double and rounded once (16-bit
// outputs through fp32, a second rounding of at most u32), so a test against a kernel
// sees the kernel's fp32 error.
void rmsnorm_forward_reference(const void* x, const void* weight, DType dtype, int64_t rows,
                               int64_t hidden, float eps, void* y, float* rstd);
void rmsnorm_backward_reference(const void* dy, const void* x, const void* weight,
                                const float* rstd, DType dtype, int64_t rows, int64_t hidden,
                                void* dx, float* dweight);
// sum = x + residual rounded to dtype, then rmsnorm_forward_reference of that sum.
void add_rmsnorm_forward_reference(const void* x, const void* residual, const void* weight,
                                   DType dtype, int64_t rows, int64_t hidden, float eps, void* sum,
                                   void* y, float* rstd);
void layernorm_forward_reference(const void* x, const void* weight, const void* bias, DType dtype,
                                 int64_t rows, int64_t hidden, float eps, void* y, float* mean,
                                 float* rstd);
void layernorm_backward_reference(const void* dy, const void* x, const void* weight,
                                  const float* mean, const float* rstd, DType dtype, int64_t rows,
                                  int64_t hidden, void* dx, float* dweight, float* dbias);

// GELU, tanh approximation (torch::gelu(z, "tanh")), of z = x + bias over [rows, n]:
//   gelu(z) = z/2·(1 + tanh(k·(z + c·z³))),  k = sqrt(2/π), c = 0.044715
//   dx = dy·gelu'(z);  dbias = Σ_rows dx (fp32 [n], summed before dx is rounded to dtype)
void bias_gelu_forward_reference(const void* x, const void* bias, DType dtype, int64_t rows,
                                 int64_t n, void* y);
void bias_gelu_backward_reference(const void* dy, const void* x, const void* bias, DType dtype,
                                  int64_t rows, int64_t n, void* dx, float* dbias);

// SwiGLU over n elements: y = silu(gate)·up = gate·σ(gate)·up;
//   dgate = dy·up·σ(gate)·(1 + gate·(1 - σ(gate)));  dup = dy·silu(gate)
void swiglu_forward_reference(const void* gate, const void* up, DType dtype, int64_t n, void* y);
void swiglu_backward_reference(const void* dy, const void* gate, const void* up, DType dtype,
                               int64_t n, void* dgate, void* dup);

}  // namespace sextant::kernels
