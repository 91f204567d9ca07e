// Calibration: correction factors fitted to measured runs by least squares.
//
//   step_s ≈ compute_factor[figures] · C + vector_factor · V + comm_factor · K + per_layer_pass_s · N
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
//   figures: where the prediction's device figures came from, a measured profile or a
//       cluster description. Each profile is one measurement of a machine, with its own
//       error (on a shared VM its GEMM rates can be 30% off the rates a later run sees), so
//       each gets its own GEMM factor; the other factors are shared.
//
// Rows are weighted by 1 / measured time, so every run counts by its relative error.
// Factors are kept non-negative: one that would go negative is held at its uncalibrated
// value (1 for the GEMM, memory-bound and communication factors, 0 for the overhead) and
// the others are refitted.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cost_model/estimator.h"

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
  std::string cost_model_version;  // the cost model whose predictions the factors correct
};

struct CalibrationFeatures {
  double compute_s = 0, vector_s = 0, comm_s = 0, layer_passes = 0;
};

CalibrationFeatures calibration_features(const TimeBreakdown& time);
// Uses calibration.compute_factor: pick it first with calibration_for.
double calibrated_step_s(const CalibrationFeatures& features, const Calibration& calibration);
// The prediction with its step time calibrated and the rates that follow from it
// (tokens/s, TFLOP/s, MFU, HFU) rescaled; the breakdown keeps the uncalibrated parts.
Prediction calibrated(const Prediction& prediction, const Calibration& calibration);

// "profile NAME #ID" for a measured profile, "cluster NAME" for a cluster description.
std::string figures_source(const std::string& profile, int64_t profile_id, const std::string& cluster);

// The calibration with the GEMM factor of `figures` in force; nullopt when none of the
// fitted runs was predicted from those figures. A calibration stored before the factors
// were kept per source has one GEMM factor for all.
std::optional<Calibration> calibration_for(const Calibration& calibration, const std::string& figures);

struct CalibrationSample {
  CalibrationFeatures features;
  std::string figures;  // figures_source of the run's prediction
  double measured_step_s = 0;
};

// Non-negative weighted least squares (Eigen). Needs at least one sample.
Calibration fit_calibration(const std::vector<CalibrationSample>& samples);

nlohmann::json calibration_to_json(const Calibration& calibration);
Calibration calibration_from_json(const nlohmann::json& json, int64_t id);

}  // namespace sextant
