// The fixture and helpers the CUDA kernel tests share: device buffers freed at the end of
// each case, fresh random inputs, elementwise comparisons. Every case skips itself
// without a CUDA device.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "kernels/kernels.h"

namespace sextant::kernels {
namespace {

class KernelGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda_device_count() == 0) GTEST_SKIP() << "no CUDA device";
    CUDA_CHECK(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    for (void* p : allocations_) cudaFree(p);
    if (stream_) cudaStreamDestroy(stream_);
  }
  template <typename T>
  T* upload(const std::vector<T>& host) {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, std::max<size_t>(1, host.size() * sizeof(T))));
    allocations_.push_back(p);
    CUDA_CHECK(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice));
    return static_cast<T*>(p);
  }
  template <typename T>
  std::vector<T> download(const T* device, size_t n) {
    CUDA_CHECK(cudaStreamSynchronize(stream_));
    std::vector<T> host(n);
    CUDA_CHECK(cudaMemcpy(host.data(), device, n * sizeof(T), cudaMemcpyDeviceToHost));
    return host;
  }
  std::vector<float> random(size_t n, float scale, float offset = 0) {
    std::normal_distribution<float> normal(0.f, scale);
    std::vector<float> x(n);
    for (float& v : x) v = normal(rng_) + offset;
    return x;
  }
  cudaStream_t stream_ = nullptr;
  std::mt19937 rng_{std::random_device{}()};
  std::vector<void*> allocations_;
};

// |a - b| <= atol + rtol·|b| elementwise; reports the first failure.
inline void expect_close(const std::vector<float>& got, const std::vector<float>& want, float rtol,
                         float atol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs(got[i] - want[i]), atol + rtol * std::fabs(want[i]))
        << what << " element " << i << ": " << got[i] << " vs " << want[i];
}

inline std::vector<float> widen(const std::vector<uint16_t>& x, DType dtype) {
  std::vector<float> out(x.size());
  cast_reference(x.data(), dtype, out.data(), DType::fp32, static_cast<int64_t>(x.size()));
  return out;
}

}  // namespace
}  // namespace sextant::kernels
