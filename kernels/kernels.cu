// The CUDA kernels behind kernels.h. Element-wise kernels walk their range with a grid
// stride; per-row kernels (cross-entropy) take one block per token row. Arithmetic is in
// fp32 in the same order as reference.cpp.
#include "kernels/kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

namespace sextant::kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 8192;
constexpr int kMaxTensors = 64;  // per launch of a multi-tensor kernel (1 KiB of arguments)

struct TensorBatch {
  float* data[kMaxTensors];
  int64_t n[kMaxTensors];
};

int blocks_for(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

__device__ __forceinline__ float load(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::fp32: return static_cast<const float*>(p)[i];
    case DType::bf16: return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default: return __half2float(static_cast<const __half*>(p)[i]);
  }
}

__device__ __forceinline__ void store(void* p, DType dtype, int64_t i, float x) {
  switch (dtype) {
    case DType::fp32: static_cast<float*>(p)[i] = x; break;
    case DType::bf16: static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(x); break;
    default: static_cast<__half*>(p)[i] = __float2half_rn(x); break;
  }
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() { return static_cast<int64_t>(blockDim.x) * gridDim.x; }

// Online-softmax pair (running max, sum of exp relative to it): merge (m2, s2) into (m, s).
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  if (m2 == -INFINITY) return;
  if (m == -INFINITY) {
    m = m2;
    s = s2;
    return;
  }
  const float top = fmaxf(m, m2);
  s = s * expf(m - top) + s2 * expf(m2 - top);
  m = top;
}

__device__ __forceinline__ float warp_sum(float x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

__global__ void cast_kernel(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) store(dst, dst_dtype, i, load(src, src_dtype, i));
}

__global__ void adamw_kernel(float* master, float* m, float* v, const float* grad, const float* decay, int64_t n,
                             AdamWArgs a, float correction1, float correction2, void* working,
                             DType working_dtype) {
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float g = grad[i] * a.grad_scale;
    const float mi = a.beta1 * m[i] + (1.f - a.beta1) * g;
    const float vi = a.beta2 * v[i] + (1.f - a.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float update = (mi / correction1) / (sqrtf(vi / correction2) + a.eps);
    const float wd = decay ? decay[i] * a.weight_decay : a.weight_decay;
    float p = master[i];
    p -= a.lr * (update + wd * p);
    master[i] = p;
    if (working) store(working, working_dtype, i, p);
  }
}

// blockIdx.y picks the tensor; blocks past a small tensor's end do nothing.
__global__ void unscale_kernel(TensorBatch batch, float inv_scale, int* found_inf) {
  float* p = batch.data[blockIdx.y];
  const int64_t n = batch.n[blockIdx.y];
  bool bad = false;
  for (int64_t i = first_index(); i < n; i += grid_stride()) {
    const float x = p[i] * inv_scale;
    p[i] = x;
    bad |= !isfinite(x);
  }
  if (bad) *found_inf = 1;
}

__global__ void square_sum_kernel(TensorBatch batch, double* out) {
  const float* p = batch.data[blockIdx.y];
  const int64_t n = batch.n[blockIdx.y];
  float sum = 0;
  for (int64_t i = first_index(); i < n; i += grid_stride()) sum += p[i] * p[i];
  __shared__ float warps[kThreads / 32];
  sum = warp_sum(sum);
  if ((threadIdx.x & 31) == 0) warps[threadIdx.x >> 5] = sum;
  __syncthreads();
  if (threadIdx.x < 32) {
    sum = threadIdx.x < blockDim.x / 32 ? warps[threadIdx.x] : 0.f;
    sum = warp_sum(sum);
    if (threadIdx.x == 0) atomicAdd(out, static_cast<double>(sum));
  }
}

__global__ void ce_forward_partial_kernel(const void* logits, DType dtype, int64_t vocab_local, const int64_t* targets,
                                          int64_t vocab_start, float* local_max, float* local_sum_exp,
                                          float* target_logit) {
  const int64_t row = blockIdx.x;
  const int64_t base = row * vocab_local;
  float m = -INFINITY, s = 0;
  for (int64_t j = threadIdx.x; j < vocab_local; j += blockDim.x) merge(m, s, load(logits, dtype, base + j), 1.f);
  for (int offset = 16; offset > 0; offset >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, offset), s2 = __shfl_xor_sync(0xffffffffu, s, offset);
    merge(m, s, m2, s2);
  }
  __shared__ float warp_m[kThreads / 32], warp_s[kThreads / 32];
  if ((threadIdx.x & 31) == 0) {
    warp_m[threadIdx.x >> 5] = m;
    warp_s[threadIdx.x >> 5] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    for (unsigned w = 1; w < blockDim.x / 32; ++w) merge(m, s, warp_m[w], warp_s[w]);
    local_max[row] = m;
    local_sum_exp[row] = s;
    const int64_t local = targets[row] - vocab_start;
    target_logit[row] = local >= 0 && local < vocab_local ? load(logits, dtype, base + local) : 0.f;
  }
}

__global__ void ce_rescale_kernel(const float* local_max, const float* local_sum_exp, const float* global_max,
                                  int64_t tokens, float* sum_exp) {
  for (int64_t t = first_index(); t < tokens; t += grid_stride())
    sum_exp[t] = local_sum_exp[t] * expf(local_max[t] - global_max[t]);
}

__global__ void ce_loss_kernel(const float* global_max, const float* sum_exp, const float* target_logit,
                               int64_t tokens, float* loss) {
  for (int64_t t = first_index(); t < tokens; t += grid_stride())
    loss[t] = logf(sum_exp[t]) + global_max[t] - target_logit[t];
}

__global__ void ce_backward_kernel(const void* logits, DType dtype, int64_t vocab_local, const int64_t* targets,
                                   int64_t vocab_start, const float* global_max, const float* sum_exp,
                                   const float* grad_loss, void* dlogits) {
  const int64_t row = blockIdx.x;
  const int64_t base = row * vocab_local;
  const int64_t local = targets[row] - vocab_start;
  const float top = global_max[row], inv_sum = 1.f / sum_exp[row], g = grad_loss[row];
  for (int64_t j = threadIdx.x; j < vocab_local; j += blockDim.x) {
    const float p = expf(load(logits, dtype, base + j) - top) * inv_sum;
    store(dlogits, dtype, base + j, (p - (j == local ? 1.f : 0.f)) * g);
  }
}

template <typename Launch>
void for_each_batch(const std::vector<TensorSpan>& tensors, Launch&& launch) {
  for (size_t first = 0; first < tensors.size(); first += kMaxTensors) {
    TensorBatch batch{};
    const size_t count = std::min<size_t>(kMaxTensors, tensors.size() - first);
    int64_t largest = 0;
    for (size_t i = 0; i < count; ++i) {
      batch.data[i] = tensors[first + i].data;
      batch.n[i] = tensors[first + i].n;
      largest = std::max(largest, batch.n[i]);
    }
    launch(batch, dim3(static_cast<unsigned>(blocks_for(largest)), static_cast<unsigned>(count)));
  }
}

}  // namespace

void cuda_check(cudaError_t code, const char* what, const char* file, int line) {
  if (code != cudaSuccess)
    throw std::runtime_error(std::string(file) + ":" + std::to_string(line) + ": " + what + ": " +
                             cudaGetErrorString(code));
}

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver"/"no device" error
    return 0;
  }
  return count;
}

void cast(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  cast_kernel<<<blocks_for(n), kThreads, 0, stream>>>(src, src_dtype, dst, dst_dtype, n);
  CUDA_CHECK(cudaGetLastError());
}

void adamw(float* master, float* m, float* v, const float* grad, const float* decay, int64_t n,
           const AdamWArgs& args, void* working, DType working_dtype, cudaStream_t stream) {
  if (n == 0) return;
  const float correction1 = 1.f - std::pow(args.beta1, static_cast<float>(args.step));
  const float correction2 = 1.f - std::pow(args.beta2, static_cast<float>(args.step));
  adamw_kernel<<<blocks_for(n), kThreads, 0, stream>>>(master, m, v, grad, decay, n, args, correction1, correction2,
                                                        working, working_dtype);
  CUDA_CHECK(cudaGetLastError());
}

void unscale(const std::vector<TensorSpan>& tensors, float inv_scale, int* found_inf, cudaStream_t stream) {
  for_each_batch(tensors, [&](const TensorBatch& batch, dim3 grid) {
    unscale_kernel<<<grid, kThreads, 0, stream>>>(batch, inv_scale, found_inf);
    CUDA_CHECK(cudaGetLastError());
  });
}

void square_sum(const std::vector<TensorSpan>& tensors, double* out, cudaStream_t stream) {
  for_each_batch(tensors, [&](const TensorBatch& batch, dim3 grid) {
    square_sum_kernel<<<grid, kThreads, 0, stream>>>(batch, out);
    CUDA_CHECK(cudaGetLastError());
  });
}

void ce_forward_partial(const void* logits, DType dtype, int64_t tokens, int64_t vocab_local,
                        const int64_t* targets, int64_t vocab_start, float* local_max, float* local_sum_exp,
                        float* target_logit, cudaStream_t stream) {
  if (tokens == 0) return;
  ce_forward_partial_kernel<<<static_cast<unsigned>(tokens), kThreads, 0, stream>>>(
      logits, dtype, vocab_local, targets, vocab_start, local_max, local_sum_exp, target_logit);
  CUDA_CHECK(cudaGetLastError());
}

void ce_rescale(const float* local_max, const float* local_sum_exp, const float* global_max, int64_t tokens,
                float* sum_exp, cudaStream_t stream) {
  if (tokens == 0) return;
  ce_rescale_kernel<<<blocks_for(tokens), kThreads, 0, stream>>>(local_max, local_sum_exp, global_max, tokens,
                                                                 sum_exp);
  CUDA_CHECK(cudaGetLastError());
}

void ce_loss(const float* global_max, const float* sum_exp, const float* target_logit, int64_t tokens, float* loss,
             cudaStream_t stream) {
  if (tokens == 0) return;
  ce_loss_kernel<<<blocks_for(tokens), kThreads, 0, stream>>>(global_max, sum_exp, target_logit, tokens, loss);
  CUDA_CHECK(cudaGetLastError());
}

void ce_backward(const void* logits, DType dtype, int64_t tokens, int64_t vocab_local, const int64_t* targets,
                 int64_t vocab_start, const float* global_max, const float* sum_exp, const float* grad_loss,
                 void* dlogits, cudaStream_t stream) {
  if (tokens == 0) return;
  ce_backward_kernel<<<static_cast<unsigned>(tokens), kThreads, 0, stream>>>(
      logits, dtype, vocab_local, targets, vocab_start, global_max, sum_exp, grad_loss, dlogits);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace sextant::kernels
