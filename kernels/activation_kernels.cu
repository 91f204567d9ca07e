// Fused bias + GELU (tanh) and SwiGLU, forward and backward (see kernels.h and
// reference.h). Element-wise with a grid stride, 16 bytes per load where alignment allows;
// the bias gradient is summed over rows without atomics, as the norms' parameter gradients.
#include "kernels/device_common.cuh"

namespace sextant::kernels {
namespace {

using namespace device;

constexpr float kGeluK = 0.7978845608f;  // sqrt(2/π)
constexpr float kGeluC = 0.044715f;

__device__ __forceinline__ float gelu(float z) {
  return 0.5f * z * (1.f + tanhf(kGeluK * (z + kGeluC * z * z * z)));
}

__device__ __forceinline__ float gelu_grad(float z) {
  const float t = tanhf(kGeluK * (z + kGeluC * z * z * z));
  return 0.5f * (1.f + t) + 0.5f * z * (1.f - t * t) * kGeluK * (1.f + 3.f * kGeluC * z * z);
}

__device__ __forceinline__ float sigmoid(float z) {
  return 1.f / (1.f + expf(-z));
}

// W consecutive elements per step: W divides n, so a step never crosses a row.
template <typename T, int W>
__global__ void bias_gelu_forward_kernel(const T* x, const T* bias, int64_t total, int64_t n,
                                         T* y) {
  for (int64_t i = first_index() * W; i < total; i += grid_stride() * W) {
    float v[W], b[W];
    load_n<W>(x + i, v);
    load_n<W>(bias + i % n, b);
    for (int k = 0; k < W; ++k) v[k] = gelu(v[k] + b[k]);
    store_n<W>(y + i, v);
  }
}

// Thread t of block (c, g) owns columns [(c·blockDim + t)·W, +W) and rows g, g + G, ...;
// it keeps their dbias partial sums in registers and writes them to row g of `part`.
template <typename T, int W>
__global__ void bias_gelu_backward_kernel(const T* dy, const T* x, const T* bias, int64_t rows,
                                          int64_t n, T* dx, float* part) {
  const int64_t j = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) * W;
  if (j >= n) return;
  float b[W], acc[W] = {};
  load_n<W>(bias + j, b);
  for (int64_t row = blockIdx.y; row < rows; row += gridDim.y) {
    float d[W], v[W];
    load_n<W>(dy + row * n + j, d);
    load_n<W>(x + row * n + j, v);
    for (int k = 0; k < W; ++k) {
      v[k] = d[k] * gelu_grad(v[k] + b[k]);
      acc[k] += v[k];
    }
    store_n<W>(dx + row * n + j, v);
  }
  for (int k = 0; k < W; ++k) part[blockIdx.y * n + j + k] = acc[k];
}

template <typename T, int W>
__global__ void swiglu_forward_kernel(const T* gate, const T* up, int64_t count, T* y) {
  for (int64_t i = first_index() * W; i < count; i += grid_stride() * W) {
    float g[W], u[W];
    load_n<W>(gate + i, g);
    load_n<W>(up + i, u);
    for (int k = 0; k < W; ++k) g[k] = g[k] * sigmoid(g[k]) * u[k];
    store_n<W>(y + i, g);
  }
}

template <typename T, int W>
__global__ void swiglu_backward_kernel(const T* dy, const T* gate, const T* up, int64_t count,
                                       T* dgate, T* dup) {
  for (int64_t i = first_index() * W; i < count; i += grid_stride() * W) {
    float d[W], g[W], u[W];
    load_n<W>(dy + i, d);
    load_n<W>(gate + i, g);
    load_n<W>(up + i, u);
    for (int k = 0; k < W; ++k) {
      const float s = sigmoid(g[k]);
      const float du = d[k] * g[k] * s;
      g[k] = d[k] * u[k] * s * (1.f + g[k] * (1.f - s));
      u[k] = du;
    }
    store_n<W>(dgate + i, g);
    store_n<W>(dup + i, u);
  }
}

}  // namespace

void bias_gelu_forward(const void* x, const void* bias, DType dtype, int64_t rows, int64_t n,
                       void* y, cudaStream_t stream) {
  const int64_t total = rows * n;
  if (total == 0) return;
  dispatch(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    constexpr int V = kPack<T>;
    const auto* xt = static_cast<const T*>(x);
    const auto* bt = static_cast<const T*>(bias);
    auto* yt = static_cast<T*>(y);
    if (n % V == 0 && aligned16(x, bias, y))
      bias_gelu_forward_kernel<T, V>
          <<<blocks_for(total / V), kThreads, 0, stream>>>(xt, bt, total, n, yt);
    else
      bias_gelu_forward_kernel<T, 1>
          <<<blocks_for(total), kThreads, 0, stream>>>(xt, bt, total, n, yt);
  });
  CUDA_CHECK(cudaGetLastError());
}

namespace {

// Row groups for the bias gradient: as many as fill the GPU given the column blocks at 8
// elements a thread (narrower packs only add column blocks), so the partials stay small.
int64_t bias_gelu_groups(int64_t rows, int64_t n) {
  return backward_groups(rows, std::max<int64_t>(1, (n + 8 * kThreads - 1) / (8 * kThreads)));
}

}  // namespace

int64_t bias_gelu_backward_workspace_floats(int64_t rows, int64_t n) {
  return rows == 0 ? 0 : bias_gelu_groups(rows, n) * n;
}

void bias_gelu_backward(const void* dy, const void* x, const void* bias, DType dtype, int64_t rows,
                        int64_t n, void* dx, float* dbias, float* workspace, cudaStream_t stream) {
  if (n == 0) return;
  if (rows == 0) {
    CUDA_CHECK(cudaMemsetAsync(dbias, 0, n * sizeof(float), stream));
    return;
  }
  const int64_t groups = bias_gelu_groups(rows, n);
  dispatch(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    constexpr int V = kPack<T>;
    const auto *dyt = static_cast<const T*>(dy), *xt = static_cast<const T*>(x),
               *bt = static_cast<const T*>(bias);
    auto* dxt = static_cast<T*>(dx);
    auto launch = [&](auto width) {
      constexpr int W = decltype(width)::value;
      const int64_t columns = (n / W + kThreads - 1) / kThreads;
      const dim3 grid(static_cast<unsigned>(columns), static_cast<unsigned>(groups));
      bias_gelu_backward_kernel<T, W>
          <<<grid, kThreads, 0, stream>>>(dyt, xt, bt, rows, n, dxt, workspace);
    };
    if (n % V == 0 && aligned16(dy, x, bias, dx))
      launch(Width<V>{});
    else
      launch(Width<1>{});
  });
  CUDA_CHECK(cudaGetLastError());
  column_sums(workspace, groups, n, dbias, stream);
}

void swiglu_forward(const void* gate, const void* up, DType dtype, int64_t n, void* y,
                    cudaStream_t stream) {
  if (n == 0) return;
  dispatch(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    constexpr int V = kPack<T>;
    const auto *gt = static_cast<const T*>(gate), *ut = static_cast<const T*>(up);
    auto* yt = static_cast<T*>(y);
    const int64_t packed = aligned16(gate, up, y) ? n / V * V : 0;  // the rest one at a time
    if (packed > 0)
      swiglu_forward_kernel<T, V>
          <<<blocks_for(packed / V), kThreads, 0, stream>>>(gt, ut, packed, yt);
    if (packed < n)
      swiglu_forward_kernel<T, 1><<<blocks_for(n - packed), kThreads, 0, stream>>>(
          gt + packed, ut + packed, n - packed, yt + packed);
  });
  CUDA_CHECK(cudaGetLastError());
}

void swiglu_backward(const void* dy, const void* gate, const void* up, DType dtype, int64_t n,
                     void* dgate, void* dup, cudaStream_t stream) {
  if (n == 0) return;
  dispatch(dtype, [&](auto* type) {
    using T = std::remove_pointer_t<decltype(type)>;
    constexpr int V = kPack<T>;
    const auto *dyt = static_cast<const T*>(dy), *gt = static_cast<const T*>(gate),
               *ut = static_cast<const T*>(up);
    auto *dgt = static_cast<T*>(dgate), *dut = static_cast<T*>(dup);
    const int64_t packed = aligned16(dy, gate, up, dgate, dup) ? n / V * V : 0;
    if (packed > 0)
      swiglu_backward_kernel<T, V>
          <<<blocks_for(packed / V), kThreads, 0, stream>>>(dyt, gt, ut, packed, dgt, dut);
    if (packed < n)
      swiglu_backward_kernel<T, 1><<<blocks_for(n - packed), kThreads, 0, stream>>>(
          dyt + packed, gt + packed, ut + packed, n - packed, dgt + packed, dut + packed);
  });
  CUDA_CHECK(cudaGetLastError());
}

}  // namespace sextant::kernels
