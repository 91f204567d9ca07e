// RMSNorm and LayerNorm, forward and backward (see kernels.h and reference.h). One block
// per row; each thread owns the same columns in every row (packs of 16 bytes first, then
// the tail one by one), so the backward's per-column partial sums need no atomics.
#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "kernels/device_common.cuh"

namespace sextant::kernels {
namespace device {
namespace {

// out[j] = Σ_g part[g, j] over the G rows of `part`, in order, accumulated in double.
__global__ void column_sum_kernel(const float* part, int64_t groups, int64_t n, float* out) {
  for (int64_t j = first_index(); j < n; j += grid_stride()) {
    double sum = 0;
    for (int64_t g = 0; g < groups; ++g) sum += part[g * n + j];
    out[j] = static_cast<float>(sum);
  }
}

}  // namespace

// Row groups: enough blocks, with `column_blocks` per group, for every SM to hold 8 of them.
int64_t backward_groups(int64_t rows, int64_t column_blocks) {
  int ordinal = 0, sms = 0;
  CUDA_CHECK(cudaGetDevice(&ordinal));
  CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, ordinal));
  const int64_t wanted = (8 * int64_t{sms} + column_blocks - 1) / column_blocks;
  return std::max<int64_t>(1, std::min(rows, wanted));
}

void column_sums(const float* part, int64_t groups, int64_t n, float* out, cudaStream_t stream) {
  column_sum_kernel<<<blocks_for(n), kThreads, 0, stream>>>(part, groups, n, out);
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace device

namespace {

using namespace device;

// Calls f(j, Width<W>) for every column j of a row this thread owns: packs of kPack<T>
// columns while `packed`, then the remaining columns one at a time.
template <typename T, typename F>
__device__ __forceinline__ void for_columns(int64_t hidden, bool packed, F&& f) {
  constexpr int V = kPack<T>;
  const int64_t packs = packed ? hidden / V : 0;
  for (int64_t p = threadIdx.x; p < packs; p += blockDim.x) f(p * V, Width<V>{});
  for (int64_t j = packs * V + threadIdx.x; j < hidden; j += blockDim.x) f(j, Width<1>{});
}

template <typename T>
__global__ void rmsnorm_forward_kernel(const T* x, const T* w, int64_t hidden, float eps,
                                       bool packed, T* y, float* rstd) {
  __shared__ float scratch[32];
  const T* xr = x + blockIdx.x * hidden;
  T* yr = y + blockIdx.x * hidden;
  float squares = 0;
  for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
    constexpr int W = decltype(width)::value;
    float v[W];
    load_n<W>(xr + j, v);
    for (int k = 0; k < W; ++k) squares += v[k] * v[k];
  });
  const float inv = 1.f / sqrtf(block_sum(squares, scratch) / static_cast<float>(hidden) + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = inv;
  for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
    constexpr int W = decltype(width)::value;
    float v[W], g[W];
    load_n<W>(xr + j, v);
    load_n<W>(w + j, g);
    for (int k = 0; k < W; ++k) v[k] = v[k] * inv * g[k];
    store_n<W>(yr + j, v);
  });
}

// sum = x + residual rounded to T; y = rmsnorm(sum) of the rounded sum (what a backward
// from the saved sum sees). The second pass re-reads the row of sum this thread wrote.
template <typename T>
__global__ void add_rmsnorm_forward_kernel(const T* x, const T* residual, const T* w,
                                           int64_t hidden, float eps, bool packed, T* sum, T* y,
                                           float* rstd) {
  __shared__ float scratch[32];
  const int64_t base = blockIdx.x * hidden;
  float squares = 0;
  for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
    constexpr int W = decltype(width)::value;
    float v[W], r[W];
    load_n<W>(x + base + j, v);
    load_n<W>(residual + base + j, r);
    for (int k = 0; k < W; ++k) {
      v[k] = to_float(from_float<T>(v[k] + r[k]));
      squares += v[k] * v[k];
    }
    store_n<W>(sum + base + j, v);
  });
  const float inv = 1.f / sqrtf(block_sum(squares, scratch) / static_cast<float>(hidden) + eps);
  if (threadIdx.x == 0) rstd[blockIdx.x] = inv;
  for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
    constexpr int W = decltype(width)::value;
    float v[W], g[W];
    load_n<W>(sum + base + j, v);
    load_n<W>(w + j, g);
    for (int k = 0; k < W; ++k) v[k] = v[k] * inv * g[k];
    store_n<W>(y + base + j, v);
  });
}

// Two passes for the variance (mean first, then Σ (x - mean)²): rows are re-read from cache.
template <typename T>
__global__ void layernorm_forward_kernel(const T* x, const T* w, const T* b, int64_t hidden,
                                         float eps, bool packed, T* y, float* mean, float* rstd) {
  __shared__ float scratch[32];
  const T* xr = x + blockIdx.x * hidden;
  T* yr = y + blockIdx.x * hidden;
  float sum = 0;
  for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
    constexpr int W = decltype(width)::value;
    float v[W];
    load_n<W>(xr + j, v);
    for (int k = 0; k < W; ++k) sum += v[k];
  });
  const float mu = block_sum(sum, scratch) / static_cast<float>(hidden);
  float squares = 0;
  for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
    constexpr int W = decltype(width)::value;
    float v[W];
    load_n<W>(xr + j, v);
    for (int k = 0; k < W; ++k) squares += (v[k] - mu) * (v[k] - mu);
  });
  const float inv = 1.f / sqrtf(block_sum(squares, scratch) / static_cast<float>(hidden) + eps);
  if (threadIdx.x == 0) {
    mean[blockIdx.x] = mu;
    rstd[blockIdx.x] = inv;
  }
  for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
    constexpr int W = decltype(width)::value;
    float v[W], g[W], c[W];
    load_n<W>(xr + j, v);
    load_n<W>(w + j, g);
    load_n<W>(b + j, c);
    for (int k = 0; k < W; ++k) v[k] = (v[k] - mu) * inv * g[k] + c[k];
    store_n<W>(yr + j, v);
  });
}

// Block g takes rows g, g + G, ...; its partial sums are row g of `dw_part` ([G, hidden]),
// written by the first row and added to by the rest.
template <typename T>
__global__ void rmsnorm_backward_kernel(const T* dy, const T* x, const T* w, const float* rstd,
                                        int64_t rows, int64_t hidden, bool packed, T* dx,
                                        float* dw_part) {
  __shared__ float scratch[32];
  float* acc = dw_part + blockIdx.x * hidden;
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const bool first = row == blockIdx.x;
    const int64_t base = row * hidden;
    const float inv = rstd[row];
    float gx = 0;
    for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
      constexpr int W = decltype(width)::value;
      float d[W], v[W], g[W];
      load_n<W>(dy + base + j, d);
      load_n<W>(x + base + j, v);
      load_n<W>(w + j, g);
      for (int k = 0; k < W; ++k) gx += d[k] * g[k] * v[k];
    });
    const float c = inv * inv * inv * (block_sum(gx, scratch) / static_cast<float>(hidden));
    for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
      constexpr int W = decltype(width)::value;
      float d[W], v[W], g[W], out[W];
      load_n<W>(dy + base + j, d);
      load_n<W>(x + base + j, v);
      load_n<W>(w + j, g);
      for (int k = 0; k < W; ++k) {
        out[k] = inv * d[k] * g[k] - v[k] * c;
        acc[j + k] = (first ? 0.f : acc[j + k]) + d[k] * v[k] * inv;
      }
      store_n<W>(dx + base + j, out);
    });
  }
}

template <typename T>
__global__ void layernorm_backward_kernel(const T* dy, const T* x, const T* w, const float* mean,
                                          const float* rstd, int64_t rows, int64_t hidden,
                                          bool packed, T* dx, float* dw_part, float* db_part) {
  __shared__ float scratch[32];
  float* acc_w = dw_part + blockIdx.x * hidden;
  float* acc_b = db_part + blockIdx.x * hidden;
  const float inv_h = 1.f / static_cast<float>(hidden);
  for (int64_t row = blockIdx.x; row < rows; row += gridDim.x) {
    const bool first = row == blockIdx.x;
    const int64_t base = row * hidden;
    const float mu = mean[row], inv = rstd[row];
    float g_sum = 0, gx_sum = 0;
    for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
      constexpr int W = decltype(width)::value;
      float d[W], v[W], g[W];
      load_n<W>(dy + base + j, d);
      load_n<W>(x + base + j, v);
      load_n<W>(w + j, g);
      for (int k = 0; k < W; ++k) {
        g_sum += d[k] * g[k];
        gx_sum += d[k] * g[k] * ((v[k] - mu) * inv);
      }
    });
    const float g_mean = block_sum(g_sum, scratch) * inv_h;
    const float gx_mean = block_sum(gx_sum, scratch) * inv_h;
    for_columns<T>(hidden, packed, [&](int64_t j, auto width) {
      constexpr int W = decltype(width)::value;
      float d[W], v[W], g[W], out[W];
      load_n<W>(dy + base + j, d);
      load_n<W>(x + base + j, v);
      load_n<W>(w + j, g);
      for (int k = 0; k < W; ++k) {
        const float xhat = (v[k] - mu) * inv;
        out[k] = inv * (d[k] * g[k] - g_mean - xhat * gx_mean);
        acc_w[j + k] = (first ? 0.f : acc_w[j + k]) + d[k] * xhat;
        acc_b[j + k] = (first ? 0.f : acc_b[j + k]) + d[k];
      }
      store_n<W>(dx + base + j, out);
    });
  }
}

template <typename T>
bool rows_packed(int64_t hidden) {
  return hidden % kPack<T> == 0;
}

void check_rows(int64_t rows, const char* what) {
  if (rows > 0x7fffffff)
    throw std::invalid_argument(std::string(what) + ": more than 2^31 - 1 rows");
}

}  // namespace

int64_t norm_backward_workspace_floats(int64_t rows, int64_t hidden) {
  return rows == 0 ? 0 : 2 * backward_groups(rows, 1) * hidden;
}

void rmsnorm_forward(const void* x, const void* weight, DType dtype, int64_t rows, int64_t hidden,
                     float eps, void* y, float* rstd, cudaStream_t stream) {
  check_rows(rows, "rmsnorm_forward");
  if (rows == 0 || hidden == 0) return;
  dispatch(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    const bool packed = rows_packed<T>(hidden) && aligned16(x, weight, y);
    rmsnorm_forward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(weight), hidden, eps, packed,
        static_cast<T*>(y), rstd);
  });
  CUDA_CHECK(cudaGetLastError());
}

void add_rmsnorm_forward(const void* x, const void* residual, const void* weight, DType dtype,
                         int64_t rows, int64_t hidden, float eps, void* sum, void* y, float* rstd,
                         cudaStream_t stream) {
  check_rows(rows, "add_rmsnorm_forward");
  if (rows == 0 || hidden == 0) return;
  dispatch(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    const bool packed = rows_packed<T>(hidden) && aligned16(x, residual, weight, sum, y);
    add_rmsnorm_forward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(residual), static_cast<const T*>(weight),
        hidden, eps, packed, static_cast<T*>(sum), static_cast<T*>(y), rstd);
  });
  CUDA_CHECK(cudaGetLastError());
}

void layernorm_forward(const void* x, const void* weight, const void* bias, DType dtype,
                       int64_t rows, int64_t hidden, float eps, void* y, float* mean, float* rstd,
                       cudaStream_t stream) {
  check_rows(rows, "layernorm_forward");
  if (rows == 0 || hidden == 0) return;
  dispatch(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    const bool packed = rows_packed<T>(hidden) && aligned16(x, weight, bias, y);
    layernorm_forward_kernel<T><<<static_cast<unsigned>(rows), kThreads, 0, stream>>>(
        static_cast<const T*>(x), static_cast<const T*>(weight), static_cast<const T*>(bias),
        hidden, eps, packed, static_cast<T*>(y), mean, rstd);
  });
  CUDA_CHECK(cudaGetLastError());
}

void rmsnorm_backward(const void* dy, const void* x, const void* weight, const float* rstd,
                      DType dtype, int64_t rows, int64_t hidden, void* dx, float* dweight,
                      float* workspace, cudaStream_t stream) {
  if (hidden == 0) return;
  if (rows == 0) {
    CUDA_CHECK(cudaMemsetAsync(dweight, 0, hidden * sizeof(float), stream));
    return;
  }
  const int64_t groups = backward_groups(rows, 1);
  dispatch(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    const bool packed = rows_packed<T>(hidden) && aligned16(dy, x, weight, dx);
    rmsnorm_backward_kernel<T><<<static_cast<unsigned>(groups), kThreads, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(weight), rstd,
        rows, hidden, packed, static_cast<T*>(dx), workspace);
  });
  CUDA_CHECK(cudaGetLastError());
  column_sums(workspace, groups, hidden, dweight, stream);
}

void layernorm_backward(const void* dy, const void* x, const void* weight, const float* mean,
                        const float* rstd, DType dtype, int64_t rows, int64_t hidden, void* dx,
                        float* dweight, float* dbias, float* workspace, cudaStream_t stream) {
  if (hidden == 0) return;
  if (rows == 0) {
    CUDA_CHECK(cudaMemsetAsync(dweight, 0, hidden * sizeof(float), stream));
    CUDA_CHECK(cudaMemsetAsync(dbias, 0, hidden * sizeof(float), stream));
    return;
  }
  const int64_t groups = backward_groups(rows, 1);
  float* db_part = workspace + groups * hidden;
  dispatch(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    const bool packed = rows_packed<T>(hidden) && aligned16(dy, x, weight, dx);
    layernorm_backward_kernel<T><<<static_cast<unsigned>(groups), kThreads, 0, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(x), static_cast<const T*>(weight), mean,
        rstd, rows, hidden, packed, static_cast<T*>(dx), workspace, db_part);
  });
  CUDA_CHECK(cudaGetLastError());
  column_sums(workspace, groups, hidden, dweight, stream);
  column_sums(db_part, groups, hidden, dbias, stream);
}

}  // namespace sextant::kernels
