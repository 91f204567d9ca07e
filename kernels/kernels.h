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

// Multi-tensor: scales every tensor in place by inv_scale and sets *found_inf (device
// int, not cleared here) to 1 if any element is inf or NaN.
void unscale(const std::vector<TensorSpan>& tensors, float inv_scale, int* found_inf, cudaStream_t stream);

// Multi-tensor: adds Σ x² over every element to *square_sum (device double, not cleared).
void square_sum(const std::vector<TensorSpan>& tensors, double* square_sum, cudaStream_t stream);

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
