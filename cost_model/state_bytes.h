// Bytes per parameter of the model states in Megatron-LM's accounting (DESIGN.md), shared by
// the time model (what DP collectives and the optimizer move) and Megatron-LM's memory
// accounting (cost_model/memory_megatron.cpp).
#pragma once

#include "cost_model/estimator.h"

namespace sextant {

inline constexpr double kBucketParams = 40e6;  // gradient bucket (Megatron-LM's default size)

struct StateBytes {
  double weights, grads, optimizer;  // per parameter
};

// Mixed-precision Adam keeps 2 + 2 + 12 bytes per parameter (fp32 master, m, v), grads 4
// bytes under fp32_grads; fp32 training keeps 4 + 4 + 8 (m, v).
inline StateBytes state_bytes(const JobSpec& job) {
  if (job.precision == Precision::fp32) return {4, 4, 8};
  return {2, job.fp32_grads ? 4.0 : 2.0, 12};
}

}  // namespace sextant
