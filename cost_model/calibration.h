// Calibration: correction factors fitted to measured runs by least squares.
//
//   step_s ≈ compute_factor · C + vector_factor · V + comm_factor · K + per_layer_pass_s · N
//
//   C = predicted GEMM time + optimizer, with its share of the pipeline bubble
//   V = predicted memory-bound (non-GEMM) time, with its share of the bubble (on CPUs
//       elementwise work such as tanh-GELU or softmax is compute-bound, not bandwidth-bound)
//   K = predicted communication (tp, pipeline p2p, exposed dp), with its bubble share
//   N = layer passes on the critical path: the slowest stage's layers (blocks, embedding,
//       head) times the micro-batch passes, grad_accum + (pp - 1)/vpp. per_layer_pass_s
//       is the fixed per-micro-batch overhead of one layer, forward and backward (kernel
//       launches, framework dispatch): fixed per micro-batch, and proportional to the
//       layers a stage runs, so pipeline stages split it.
//
// Rows are weighted by 1 / measured time, so every run counts by its relative error.
// Factors are kept non-negative: one that would go negative is held at its uncalibrated
// value (1, 1, 1, 0) and the others are refitted.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cost_model/calibration_factors.h"
#include "cost_model/estimator.h"
#include "cost_model/layout.h"

namespace sextant {

struct CalibrationFeatures {
  double compute_s = 0, vector_s = 0, comm_s = 0, layer_passes = 0;
};

CalibrationFeatures calibration_features(const TimeBreakdown& time);
double calibrated_step_s(const CalibrationFeatures& features, const Calibration& calibration);

struct CalibrationSample {
  CalibrationFeatures features;
  double measured_step_s = 0;
};

// Non-negative weighted least squares (Eigen). Needs at least one sample.
Calibration fit_calibration(const std::vector<CalibrationSample>& samples);

nlohmann::json calibration_to_json(const Calibration& calibration);
Calibration calibration_from_json(const nlohmann::json& json, int64_t id);

}  // namespace sextant
