// The analysis of measured runs: the measurement of a run from its steps, configurations,
// and the calibration split.
#include <cmath>

#include <gtest/gtest.h>

#include "cost_model/run_analysis.h"

namespace sextant {
namespace {

StepRecord step(int64_t i, double seconds, double peak = 1e6, double loss = 5) { return {i, loss, seconds, 0, 0, peak}; }

TEST(RunAnalysis, TheMeasurementIsTheMedianAfterTheWarmUpStep) {
  RunComparison r;
  r.predicted_step_time_s = 2.0;
  r.predicted_tokens_per_s = 100;
  measure_steps({step(0, 10), step(1, 2, 3e6), step(2, 4), step(3, 3), step(4, 5, 2e6, 4.5)}, r);
  EXPECT_EQ(r.steps, 5);
  EXPECT_DOUBLE_EQ(r.measured_step_time_s, 3.5);  // median of 2, 4, 3, 5: the mean of the middle two
  EXPECT_DOUBLE_EQ(r.measured_tokens_per_s, 100 * 2.0 / 3.5);
  EXPECT_DOUBLE_EQ(r.measured_peak_bytes, 3e6);
  EXPECT_DOUBLE_EQ(r.final_loss, 4.5);
  RunComparison one;
  measure_steps({step(0, 7)}, one);  // a run killed after its first step is judged on it
  EXPECT_DOUBLE_EQ(one.measured_step_time_s, 7);
  RunComparison none;
  measure_steps({}, none);
  EXPECT_EQ(none.steps, 0);
  EXPECT_TRUE(std::isnan(error_pct(1.0, none.measured_step_time_s)));
}

RunComparison run(int64_t id, const std::string& model, int64_t dp, const std::string& version, double measured) {
  RunComparison r;
  r.run_id = id;
  r.model_name = model;
  r.layout.dp = dp;
  r.cost_model_version = version;
  r.measured_step_time_s = measured;
  r.predicted_step_time_s = 1;
  r.figures = "cluster c";
  r.features.compute_s = 1;
  return r;
}

TEST(RunAnalysis, CalibrationFitsEveryOtherConfigurationOfThisCostModel) {
  const std::vector<RunComparison> runs = {
      run(1, "a", 1, "v2", 1.0), run(2, "a", 2, "v2", 1.1), run(3, "a", 1, "v2", 1.2),  // 1 and 3: one configuration
      run(4, "b", 1, "v2", 0),                                                        // nothing measured yet
      run(5, "b", 1, "v1", 2.0),                                                      // another cost model
      run(6, "b", 2, "v2", 1.3)};
  EXPECT_EQ(configuration_of(runs), (std::vector<size_t>{0, 1, 0, 2, 2, 3}));
  const CalibrationSplit split = split_for_calibration(runs, /*all=*/false, "v2");
  EXPECT_EQ(split.other_version_runs, 1);
  EXPECT_EQ(split.configurations, 3u);                          // a/dp1, a/dp2, b/dp2
  EXPECT_EQ(split.fit_runs, (std::vector<int64_t>{1, 3, 6}));  // configurations 0 and 2; a/dp2 held out
  EXPECT_EQ(split_for_calibration(runs, /*all=*/true, "v2").fit_runs, (std::vector<int64_t>{1, 2, 3, 6}));
  Calibration c;
  c.compute_factor = 1.5;
  c.cost_model_version = "v2";
  EXPECT_DOUBLE_EQ(calibrated_prediction_s(runs[0], c), 1.5);
  EXPECT_TRUE(std::isnan(calibrated_prediction_s(runs[4], c)));  // predicted by v1
}

}  // namespace
}  // namespace sextant
