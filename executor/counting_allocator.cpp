// Wraps c10's default CPU allocator; each allocation carries a small context that
// subtracts its size when freed.
#include "executor/counting_allocator.h"

#include <atomic>

#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>

namespace sextant {
namespace {

std::atomic<size_t> g_current{0};
std::atomic<size_t> g_peak{0};

struct Allocation {
  c10::DataPtr inner;
  size_t bytes;
};

void release(void* context) {
  auto* a = static_cast<Allocation*>(context);
  g_current.fetch_sub(a->bytes);
  delete a;  // frees the memory through the default allocator's deleter
}

class CountingAllocator final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t bytes) const override {
    c10::DataPtr inner = c10::GetDefaultCPUAllocator()->allocate(bytes);
    void* data = inner.get();
    auto* context = new Allocation{std::move(inner), bytes};
    const size_t now = g_current.fetch_add(bytes) + bytes;
    size_t peak = g_peak.load();
    while (now > peak && !g_peak.compare_exchange_weak(peak, now)) {
    }
    return {data, context, &release, c10::Device(c10::DeviceType::CPU)};
  }
  c10::DeleterFnPtr raw_deleter() const override { return nullptr; }
};

}  // namespace

void install_counting_allocator() {
  static CountingAllocator allocator;
  c10::SetAllocator(c10::DeviceType::CPU, &allocator, /*priority=*/100);
}

size_t counted_current_bytes() { return g_current.load(); }
size_t counted_peak_bytes() { return g_peak.load(); }
void reset_counted_peak() { g_peak.store(g_current.load()); }

}  // namespace sextant
