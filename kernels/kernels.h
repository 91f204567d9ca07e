// CUDA kernels with a plain host API: raw device pointers, element counts and a stream.
// Each mirrors a CPU reference in reference.h (same arguments, same math); see there for
// the formulas. Built only where CMake finds a CUDA compiler (SEXTANT_HAVE_CUDA).
#pragma once

#include <cstdint>
#include <vector>

#include <cuda_runtime_api.h>

#include "kernels/reference.h"

namespace sextant::kernels {

// Throws std::runtime_error naming the call, file:line and CUDA's text.
void cuda_check(cudaError_t code, const char* what, const char* file, int line);
#define CUDA_CHECK(call) ::sextant::kernels::cuda_check((call), #call, __FILE__, __LINE__)

// Number of CUDA devices, 0 when there is no device or no driver (never throws).
int cuda_device_count();

void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n, cudaStream_t stream);

void adamw(float* master, float* m, float* v, const float* grad, const float* decay, int64_t n,
           const AdamWArgs& args, void* working, DType working_dtype, cudaStream_t stream);

// Multi-tensor kernels, apex-style: the host cuts every tensor into chunks of
// kMultiTensorChunk elements and launches one block per chunk, up to 320 chunks per launch
// (their addresses and lengths travel as kernel arguments).
constexpr int64_t kMultiTensorChunk = int64_t{1} << 16;
int64_t multi_tensor_chunks(const std::vector<TensorSpan>& tensors);

// Scales every tensor in place by inv_scale and sets *found_inf (device int, not cleared
// here) to 1 if any element is inf or NaN.
void unscale(const std::vector<TensorSpan>& tensors, float inv_scale, int* found_inf, cudaStream_t stream);

// Adds Σ x² over every element to *square_sum (device double, not cleared). Each block
// writes its chunk's sum (accumulated in double) to `workspace` (device, at least
// multi_tensor_chunks(tensors) doubles); one last block adds them in a fixed order, so
// the result is the same from run to run.
void square_sum(const std::vector<TensorSpan>& tensors, double* square_sum, double* workspace,
                cudaStream_t stream);

// Fused norms and activations (formulas in reference.h). Tensors of `dtype` are row-major
// [rows, hidden] (or [rows, n]); per-row statistics and parameter gradients are fp32. Each
// block normalises one row, accumulating in fp32, with 16-byte loads when every pointer is
// 16-byte aligned and a row is a whole number of them; any other `hidden` takes scalar loads.
void rmsnorm_forward(const void* x, const void* weight, DType dtype, int64_t rows, int64_t hidden,
                     float eps, void* y, float* rstd, cudaStream_t stream);
void layernorm_forward(const void* x, const void* weight, const void* bias, DType dtype,
                       int64_t rows, int64_t hidden, float eps, void* y, float* mean, float* rstd,
                       cudaStream_t stream);
// The residual add fused into the norm after it: sum = x + residual (rounded to dtype),
// y = rmsnorm(sum). Its backward is rmsnorm_backward from `sum`, the residual's gradient
// passing through.
void add_rmsnorm_forward(const void* x, const void* residual, const void* weight, DType dtype,
                         int64_t rows, int64_t hidden, float eps, void* sum, void* y, float* rstd,
                         cudaStream_t stream);

// The backward passes sum parameter gradients over rows without atomics, so the result is
// the same from run to run: each of G blocks writes per-column partial sums over its rows
// into `workspace` (device fp32, norm_backward_workspace_floats(rows, hidden) of them; the
// caller allocates it, so a caching allocator sees it), then one kernel adds the G partials
// of each column in order. dweight and dbias (fp32 [hidden]) are overwritten.
int64_t norm_backward_workspace_floats(int64_t rows, int64_t hidden);
void rmsnorm_backward(const void* dy, const void* x, const void* weight, const float* rstd,
                      DType dtype, int64_t rows, int64_t hidden, void* dx, float* dweight,
                      float* workspace, cudaStream_t stream);
void layernorm_backward(const void* dy, const void* x, const void* weight, const float* mean,
                        const float* rstd, DType dtype, int64_t rows, int64_t hidden, void* dx,
                        float* dweight, float* dbias, float* workspace, cudaStream_t stream);

// y = gelu_tanh(x + bias) over [rows, n] with bias [n]; the backward writes dx and
// overwrites dbias (fp32 [n]) = Σ_rows dx, through a workspace as the norms do.
void bias_gelu_forward(const void* x, const void* bias, DType dtype, int64_t rows, int64_t n,
                       void* y, cudaStream_t stream);
int64_t bias_gelu_backward_workspace_floats(int64_t rows, int64_t n);
void bias_gelu_backward(const void* dy, const void* x, const void* bias, DType dtype, int64_t rows,
                        int64_t n, void* dx, float* dbias, float* workspace, cudaStream_t stream);

// y = silu(gate)·up over n elements, and its gradients.
void swiglu_forward(const void* gate, const void* up, DType dtype, int64_t n, void* y,
                    cudaStream_t stream);
void swiglu_backward(const void* dy, const void* gate, const void* up, DType dtype, int64_t n,
                     void* dgate, void* dup, cudaStream_t stream);

// Vocab-parallel softmax cross-entropy; every pointer is on the device.
void ce_forward_partial(const void* logits, DType dtype, int64_t tokens, int64_t vocab_local,
                        const int64_t* targets, int64_t vocab_start, float* local_max, float* local_sum_exp,
                        float* target_logit, cudaStream_t stream);
void ce_rescale(const float* local_max, const float* local_sum_exp, const float* global_max, int64_t tokens,
                float* sum_exp, cudaStream_t stream);
void ce_loss(const float* global_max, const float* sum_exp, const float* target_logit, int64_t tokens, float* loss,
             cudaStream_t stream);
void ce_backward(const void* logits, DType dtype, int64_t tokens, int64_t vocab_local, const int64_t* targets,
                 int64_t vocab_start, const float* global_max, const float* sum_exp, const float* grad_loss,
                 void* dlogits, cudaStream_t stream);

}  // namespace sextant::kernels
