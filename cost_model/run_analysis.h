// The closed loop's analysis of measured runs, beside the calibration it feeds: each run
// set against its prediction, runs grouped into configurations (one model with one layout,
// repeated), the split into fitted and held-out configurations, and the error summaries
// that `compare` and `calibrate` print. Measurements are medians (cost_model/median.h).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cost_model/calibration.h"
#include "cost_model/layout.h"
#include "cost_model/store.h"

namespace sextant {

// Predicted against measured for one run (planner/run_report.h builds it from the store).
struct RunComparison {
  int64_t run_id = 0;
  std::string created_at;
  RunStatus status = RunStatus::finished;
  std::string error;
  std::string model_name, cluster_name, cost_model_version;
  ParallelLayout layout;
  int64_t steps = 0;  // steps measured (an unfinished run is judged on these)
  double predicted_step_time_s = 0, measured_step_time_s = 0;  // measured 0: no step yet
  double predicted_tokens_per_s = 0, measured_tokens_per_s = 0;
  double predicted_peak_bytes = 0, measured_peak_bytes = 0;
  double final_loss = 0;
  std::string profile;           // measured profile the prediction used, "" for the cluster description
  std::string figures;           // figures_source: that profile with its id, or the cluster
  CalibrationFeatures features;  // the prediction's breakdown, for calibration
  TimeBreakdown predicted_time;  // the plan's predicted breakdown of a step
  // Measured breakdown (StepRecord's parts), medians over the steps the step time uses;
  // NaN where the run's steps did not measure it (stored before schema 6).
  double measured_forward_s = NAN, measured_backward_s = NAN, measured_optimizer_s = NAN,
         measured_comm_wait_s = NAN, measured_ep_comm_s = NAN;
};

// The predicted breakdown in the measured one's terms: forward + backward is the compute
// with its tp collectives (the executor times tp inside the layers), the comm wait is the
// pipeline's p2p and bubble and the exposed dp communication, and the MoE all-to-alls
// stand apart (as the executor times them).
struct PredictedParts {
  double forward_backward_s = 0, optimizer_s = 0, comm_wait_s = 0, ep_comm_s = 0;
};
PredictedParts predicted_parts(const TimeBreakdown& time);

// Fills the measured side from the run's steps: step time is the median over the steps
// after the first (a warm-up; with one step, that step), tokens/s follows from it, the
// peak is the largest step's, the loss the last step's.
void measure_steps(const std::vector<StepRecord>& steps, RunComparison& run);

double error_pct(double predicted, double measured);  // NaN when nothing was measured

// Runs of one model with one layout repeat one configuration. Each run gets the index of
// its configuration, in order of first appearance.
std::vector<size_t> configuration_of(const std::vector<RunComparison>& runs);
size_t count_configurations(const std::vector<size_t>& configuration);

// What `sextant calibrate` fits: the runs with a measurement whose plan was made by
// `cost_model_version`, of every other configuration (or of all, with `all`), so that a
// held-out run never has a repeat among the fitted ones.
struct CalibrationSplit {
  std::vector<CalibrationSample> samples;
  std::vector<int64_t> fit_runs;
  int64_t other_version_runs = 0;  // left out: predicted by another cost model
  size_t configurations = 0;       // among the runs of this cost model with a measurement
};
CalibrationSplit split_for_calibration(const std::vector<RunComparison>& runs, bool all,
                                       const std::string& cost_model_version);

// The run's calibrated prediction; NaN when the calibration corrects another cost model or
// has no GEMM factor for the figures the run was predicted from.
double calibrated_prediction_s(const RunComparison& run, const Calibration& calibration);

// Before and after calibration, on the fitted runs and on the held-out ones; then per
// configuration, with the median of its repeated runs as the measurement.
nlohmann::json calibration_summary(const std::vector<RunComparison>& runs, const Calibration& calibration,
                                   const std::vector<int64_t>& fit_runs);

}  // namespace sextant
