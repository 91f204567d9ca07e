// A counting CPU allocator installed in c10: every CPU tensor allocation goes through it,
// so measured peak bytes are comparable with the memory model's (tensors only).
#pragma once

#include <cstddef>

namespace sextant {

// Installs the counting allocator as c10's CPU allocator (idempotent).
void install_counting_allocator();
size_t counted_current_bytes();
size_t counted_peak_bytes();
void reset_counted_peak();  // peak := current

// Peak tensor bytes since the last reset on `device_index` (-1: the CPU, counted above;
// otherwise that GPU, from LibTorch's CUDA caching allocator: allocated, not reserved).
size_t peak_bytes(int device_index);
void reset_peak(int device_index);

}  // namespace sextant
