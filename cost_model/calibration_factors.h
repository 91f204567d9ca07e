// The correction factors of a calibration (see calibration.h for how they are fitted).
#pragma once

#include <cstdint>

namespace sextant {

struct Calibration {
  int64_t id = 0;  // 0: none
  double compute_factor = 1;  // GEMMs (and the optimizer step)
  double vector_factor = 1;   // memory-bound work: norms, activations, softmax, residuals
  double comm_factor = 1, per_layer_pass_s = 0;
};

}  // namespace sextant
