// Element access by runtime dtype for the CPU references (internal to kernels/).
#pragma once

#include <cstdint>

#include "kernels/reference.h"

namespace sextant::kernels::reference_io {

inline float load(const void* p, DType dtype, int64_t i) {
  switch (dtype) {
    case DType::fp32:
      return static_cast<const float*>(p)[i];
    case DType::bf16:
      return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    case DType::fp16:
      return fp16_to_float(static_cast<const uint16_t*>(p)[i]);
  }
  return 0;
}

inline void store(void* p, DType dtype, int64_t i, float x) {
  switch (dtype) {
    case DType::fp32:
      static_cast<float*>(p)[i] = x;
      break;
    case DType::bf16:
      static_cast<uint16_t*>(p)[i] = float_to_bf16(x);
      break;
    case DType::fp16:
      static_cast<uint16_t*>(p)[i] = float_to_fp16(x);
      break;
  }
}

}  // namespace sextant::kernels::reference_io
