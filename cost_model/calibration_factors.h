// The correction factors of a calibration (see calibration.h for how they are fitted).
#pragma once

#include <cstdint>
#include <map>
#include <string>

namespace sextant {

struct Calibration {
  int64_t id = 0;  // 0: none
  // GEMMs (and the optimizer step), one factor per source of device figures (a measured
  // profile or a cluster description, see figures_source): each source is a measurement
  // with its own error. compute_factor is the one in force for a prediction.
  std::map<std::string, double> compute_factor_by_figures;
  double compute_factor = 1;
  double vector_factor = 1;   // memory-bound work: norms, activations, softmax, residuals
  double comm_factor = 1, per_layer_pass_s = 0;
};

}  // namespace sextant
