// CPU allocator that counts live bytes. Each block carries its size in a 64-byte header
// in front of the data (alignment kept), so data pointer and context are the same and
// raw_allocate works (oneDNN's bf16 kernels allocate through it).
#include "executor/counting_allocator.h"

#include <atomic>
#include <cstring>

#include <torch/version.h>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#ifdef SEXTANT_TORCH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#include <stdexcept>

namespace sextant {
namespace {

constexpr size_t kHeaderBytes = 64;

std::atomic<size_t> g_current{0};
std::atomic<size_t> g_peak{0};

void release(void* data) {
  if (!data) return;
  char* block = static_cast<char*>(data) - kHeaderBytes;
  g_current.fetch_sub(*reinterpret_cast<size_t*>(block));
  c10::free_cpu(block);
}

// LibTorch 2.3 made Allocator::allocate non-const and added copy_data as a pure virtual
// (used by Allocator::clone); 1.13 has the const allocate and no copy_data.
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 3)
#define SEXTANT_ALLOCATE_CONST
#define SEXTANT_HAVE_COPY_DATA 1
#else
#define SEXTANT_ALLOCATE_CONST const
#define SEXTANT_HAVE_COPY_DATA 0
#endif

class CountingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) SEXTANT_ALLOCATE_CONST override {
    char* block = static_cast<char*>(c10::alloc_cpu(bytes + kHeaderBytes));
    *reinterpret_cast<size_t*>(block) = bytes;
    void* data = block + kHeaderBytes;
    const size_t now = g_current.fetch_add(bytes) + bytes;
    size_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return {data, data, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return &release; }
#if SEXTANT_HAVE_COPY_DATA
  void copy_data(void* dest, const void* src, std::size_t count) const override { std::memcpy(dest, src, count); }
#endif
};

}  // namespace

void install_counting_allocator() {
  static CountingAllocator allocator;
  c10::SetAllocator(c10::DeviceType::CPU, &allocator, /*priority=*/100);
}

size_t counted_current_bytes() { return g_current.load(); }
size_t counted_peak_bytes() { return g_peak.load(); }
void reset_counted_peak() { g_peak.store(g_current.load()); }

size_t peak_bytes(int device_index) {
  if (device_index < 0) return counted_peak_bytes();
#ifdef SEXTANT_TORCH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(static_cast<c10::DeviceIndex>(device_index));
  return static_cast<size_t>(stats.allocated_bytes[0].peak);  // [0]: all pools together
#else
  throw std::runtime_error("peak_bytes: this build's LibTorch has no CUDA");
#endif
}

void reset_peak(int device_index) {
  if (device_index < 0) return reset_counted_peak();
#ifdef SEXTANT_TORCH_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(static_cast<c10::DeviceIndex>(device_index));
#else
  throw std::runtime_error("reset_peak: this build's LibTorch has no CUDA");
#endif
}

}  // namespace sextant
