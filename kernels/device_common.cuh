// Device helpers shared by the .cu files of kernels/: element loads and stores by runtime
// dtype or by type, 16-byte packed access, and warp and block sums. Internal to kernels/.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "kernels/kernels.h"

namespace sextant::kernels::device {

constexpr int kThreads = 256;
constexpr int kMaxBlocks = 8192;

inline int blocks_for(int64_t n) {
  return static_cast<int>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, kMaxBlocks));
}

__device__ __forceinline__ float load(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::fp32:
      return static_cast<const float*>(p)[i];
    case DType::bf16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
    default:
      return __half2float(static_cast<const __half*>(p)[i]);
  }
}

__device__ __forceinline__ void store(void* p, DType dtype, int64_t i, float x) {
  switch (dtype) {
    case DType::fp32:
      static_cast<float*>(p)[i] = x;
      break;
    case DType::bf16:
      static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(x);
      break;
    default:
      static_cast<__half*>(p)[i] = __float2half_rn(x);
      break;
  }
}

__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t grid_stride() {
  return static_cast<int64_t>(blockDim.x) * gridDim.x;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int offset = 16; offset > 0; offset >>= 1) x += __shfl_xor_sync(0xffffffffu, x, offset);
  return x;
}

// Σ x over the block, returned to every thread. `scratch` holds 32 values in shared
// memory; blockDim.x is a multiple of 32. Safe to call repeatedly with the same scratch.
template <typename T>
__device__ __forceinline__ T block_sum(T x, T* scratch) {
  x = warp_sum(x);
  const unsigned lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();  // every warp has read the previous call's scratch
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < (blockDim.x >> 5) ? scratch[lane] : T(0);
  return warp_sum(x);
}

// By element type, for the templated kernels.
__device__ __forceinline__ float to_float(float x) {
  return x;
}
__device__ __forceinline__ float to_float(__nv_bfloat16 x) {
  return __bfloat162float(x);
}
__device__ __forceinline__ float to_float(__half x) {
  return __half2float(x);
}
template <typename T>
__device__ __forceinline__ T from_float(float x);
template <>
__device__ __forceinline__ float from_float<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}
template <>
__device__ __forceinline__ __half from_float<__half>(float x) {
  return __float2half_rn(x);
}

// Elements per 16-byte load.
template <typename T>
constexpr int kPack = 16 / static_cast<int>(sizeof(T));

template <typename T, int W>
struct alignas(16) Pack {
  T e[W];
};

// W consecutive elements from p (16-byte aligned when W > 1) widened to fp32, in one load.
template <int W, typename T>
__device__ __forceinline__ void load_n(const T* p, float* out) {
  if constexpr (W == 1) {
    out[0] = to_float(*p);
  } else {
    const Pack<T, W> pack = *reinterpret_cast<const Pack<T, W>*>(p);
#pragma unroll
    for (int k = 0; k < W; ++k) out[k] = to_float(pack.e[k]);
  }
}

template <int W, typename T>
__device__ __forceinline__ void store_n(T* p, const float* in) {
  if constexpr (W == 1) {
    *p = from_float<T>(in[0]);
  } else {
    Pack<T, W> pack;
#pragma unroll
    for (int k = 0; k < W; ++k) pack.e[k] = from_float<T>(in[k]);
    *reinterpret_cast<Pack<T, W>*>(p) = pack;
  }
}

template <int W>
using Width = std::integral_constant<int, W>;

// True when every pointer is 16-byte aligned (null pointers count as aligned).
template <typename... P>
bool aligned16(const P*... p) {
  return ((reinterpret_cast<uintptr_t>(p) % 16 == 0) && ...);
}

// Calls the host lambda `launch` with a null pointer of the element type for `dtype`.
template <typename Launch>
void dispatch(DType dtype, Launch&& launch) {
  switch (dtype) {
    case DType::fp32:
      launch(static_cast<float*>(nullptr));
      break;
    case DType::bf16:
      launch(static_cast<__nv_bfloat16*>(nullptr));
      break;
    case DType::fp16:
      launch(static_cast<__half*>(nullptr));
      break;
  }
}

// Host helpers shared by the backward passes that sum over rows (norm_kernels.cu).
// Row groups of a backward grid, no more than rows: enough that every SM holds 8 blocks
// when each group spans `column_blocks` blocks.
int64_t backward_groups(int64_t rows, int64_t column_blocks);
// out[j] = Σ_g part[g, j] over the `groups` rows of `part` ([groups, n]), in order.
void column_sums(const float* part, int64_t groups, int64_t n, float* out, cudaStream_t stream);

}  // namespace sextant::kernels::device
