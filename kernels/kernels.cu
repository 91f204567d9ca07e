// The CUDA kernels behind kernels.h (the norms and activations are in norm_kernels.cu and
// activation_kernels.cu). Element-wise kernels walk their range with a grid stride;
// multi-tensor kernels take one block per chunk; per-row kernels (cross-entropy) one block
// per token row. Arithmetic is in fp32 in the same order as reference.cpp.
#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "kernels/device_common.cuh"
#include "kernels/kernels.h"

namespace sextant::kernels {
namespace {

using namespace device;

// Multi-tensor launches: one block per chunk of kMultiTensorChunk elements, kMaxChunks
// blocks per launch. 320 × (8 + 4) bytes of chunk addresses and lengths stay under the
// 4 KiB of kernel arguments every CUDA version accepts (apex uses the same 320).
constexpr int kMaxChunks = 320;

struct ChunkBatch {
  float* data[kMaxChunks];
  int count[kMaxChunks];
};

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

// Calls f(i, Width<W>) for the elements of a chunk this thread owns: float4 packs when the
// chunk starts 16-byte aligned, then the remaining elements one at a time.
template <typename F>
__device__ __forceinline__ void for_chunk(const float* p, int n, F&& f) {
  const int packs = reinterpret_cast<uintptr_t>(p) % 16 == 0 ? n / 4 : 0;
#pragma unroll 4
  for (int q = threadIdx.x; q < packs; q += blockDim.x) f(q * 4, Width<4>{});
  for (int i = packs * 4 + threadIdx.x; i < n; i += blockDim.x) f(i, Width<1>{});
}

__global__ void unscale_kernel(ChunkBatch batch, float inv_scale, int* found_inf) {
  float* p = batch.data[blockIdx.x];
  bool bad = false;
  for_chunk(p, batch.count[blockIdx.x], [&](int i, auto width) {
    constexpr int W = decltype(width)::value;
    float v[W];
    load_n<W>(p + i, v);
    for (int k = 0; k < W; ++k) {
      v[k] *= inv_scale;
      bad |= !isfinite(v[k]);
    }
    store_n<W>(p + i, v);
  });
  if (bad) *found_inf = 1;
}

// Block b writes the sum of squares of its chunk, in double, to partial[b].
__global__ void square_sum_kernel(ChunkBatch batch, double* partial) {
  const float* p = batch.data[blockIdx.x];
  double sum = 0;
  for_chunk(p, batch.count[blockIdx.x], [&](int i, auto width) {
    constexpr int W = decltype(width)::value;
    float v[W];
    load_n<W>(p + i, v);
    for (int k = 0; k < W; ++k) sum += static_cast<double>(v[k]) * v[k];
  });
  __shared__ double scratch[32];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) partial[blockIdx.x] = sum;
}

// One block: *out += Σ partial, each thread summing a fixed stride, then the block tree.
__global__ void sum_partials_kernel(const double* partial, int64_t count, double* out) {
  double sum = 0;
  for (int64_t i = threadIdx.x; i < count; i += blockDim.x) sum += partial[i];
  __shared__ double scratch[32];
  sum = block_sum(sum, scratch);
  if (threadIdx.x == 0) *out += sum;
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

// Cuts every tensor into chunks and calls launch(batch, chunks, first) per batch of at most
// kMaxChunks, where `first` counts the chunks of the batches before it.
template <typename Launch>
void for_each_chunk_batch(const std::vector<TensorSpan>& tensors, Launch&& launch) {
  ChunkBatch batch{};
  int used = 0;
  int64_t first = 0;
  for (const TensorSpan& t : tensors)
    for (int64_t at = 0; at < t.n; at += kMultiTensorChunk) {
      batch.data[used] = t.data + at;
      batch.count[used] = static_cast<int>(std::min(kMultiTensorChunk, t.n - at));
      if (++used == kMaxChunks) {
        launch(batch, used, first);
        first += used;
        used = 0;
      }
    }
  if (used > 0) launch(batch, used, first);
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

int64_t multi_tensor_chunks(const std::vector<TensorSpan>& tensors) {
  int64_t chunks = 0;
  for (const TensorSpan& t : tensors) chunks += (t.n + kMultiTensorChunk - 1) / kMultiTensorChunk;
  return chunks;
}

void unscale(const std::vector<TensorSpan>& tensors, float inv_scale, int* found_inf, cudaStream_t stream) {
  for_each_chunk_batch(tensors, [&](const ChunkBatch& batch, int chunks, int64_t) {
    unscale_kernel<<<chunks, kThreads, 0, stream>>>(batch, inv_scale, found_inf);
    CUDA_CHECK(cudaGetLastError());
  });
}

void square_sum(const std::vector<TensorSpan>& tensors, double* out, double* workspace,
                cudaStream_t stream) {
  for_each_chunk_batch(tensors, [&](const ChunkBatch& batch, int chunks, int64_t first) {
    square_sum_kernel<<<chunks, kThreads, 0, stream>>>(batch, workspace + first);
    CUDA_CHECK(cudaGetLastError());
  });
  const int64_t chunks = multi_tensor_chunks(tensors);
  if (chunks == 0) return;
  sum_partials_kernel<<<1, 1024, 0, stream>>>(workspace, chunks, out);
  CUDA_CHECK(cudaGetLastError());
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
