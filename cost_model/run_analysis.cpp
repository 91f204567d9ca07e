// Run comparison, configurations, the calibration split and the error summaries.
#include "cost_model/run_analysis.h"

#include <algorithm>
#include <cmath>

#include "cost_model/median.h"

namespace sextant {

void measure_steps(const std::vector<StepRecord>& steps, RunComparison& r) {
  r.steps = static_cast<int64_t>(steps.size());
  std::vector<double> times;
  for (const StepRecord& s : steps) {
    times.push_back(s.step_time_s);
    r.measured_peak_bytes = std::max(r.measured_peak_bytes, s.peak_bytes);
    r.final_loss = s.loss;
  }
  if (times.size() > 1) times.erase(times.begin());  // the first step warms up
  if (times.empty()) return;
  r.measured_step_time_s = median_of(times);
  r.measured_tokens_per_s = r.predicted_tokens_per_s * r.predicted_step_time_s / r.measured_step_time_s;
  // The parts: medians over the same steps, of the steps that measured them.
  const std::pair<double StepRecord::*, double RunComparison::*> parts[] = {
      {&StepRecord::forward_s, &RunComparison::measured_forward_s},
      {&StepRecord::backward_s, &RunComparison::measured_backward_s},
      {&StepRecord::optimizer_s, &RunComparison::measured_optimizer_s},
      {&StepRecord::comm_wait_s, &RunComparison::measured_comm_wait_s},
      {&StepRecord::ep_comm_s, &RunComparison::measured_ep_comm_s}};
  for (const auto& [from, to] : parts) {
    std::vector<double> values;
    for (size_t i = steps.size() > 1 ? 1 : 0; i < steps.size(); ++i)
      if (!std::isnan(steps[i].*from)) values.push_back(steps[i].*from);
    if (!values.empty()) r.*to = median_of(values);
  }
}

PredictedParts predicted_parts(const TimeBreakdown& t) {
  return {t.compute_s + t.tp_comm_s, t.optimizer_s, t.pp_p2p_s + t.bubble_s + t.dp_comm_s, t.ep_comm_s};
}

double error_pct(double predicted, double measured) {
  return measured > 0 ? 100 * (predicted / measured - 1) : NAN;
}

std::vector<size_t> configuration_of(const std::vector<RunComparison>& runs) {
  std::vector<std::string> keys;
  std::vector<size_t> out;
  for (const RunComparison& r : runs) {
    const std::string key = r.model_name + "\n" + layout_to_json(r.layout).dump();
    const auto found = std::find(keys.begin(), keys.end(), key);
    out.push_back(static_cast<size_t>(found - keys.begin()));
    if (found == keys.end()) keys.push_back(key);
  }
  return out;
}

size_t count_configurations(const std::vector<size_t>& configuration) {
  return configuration.empty() ? 0 : *std::max_element(configuration.begin(), configuration.end()) + 1;
}

CalibrationSplit split_for_calibration(const std::vector<RunComparison>& runs, bool all,
                                       const std::string& cost_model_version) {
  CalibrationSplit out;
  std::vector<RunComparison> usable;
  for (const RunComparison& r : runs) {
    if (r.measured_step_time_s <= 0) continue;
    if (r.cost_model_version != cost_model_version) {
      ++out.other_version_runs;
      continue;
    }
    usable.push_back(r);
  }
  const std::vector<size_t> configuration = configuration_of(usable);
  out.configurations = count_configurations(configuration);
  for (size_t i = 0; i < usable.size(); ++i) {
    if (!all && configuration[i] % 2 == 1) continue;  // held out
    out.samples.push_back({usable[i].features, usable[i].figures, usable[i].measured_step_time_s});
    out.fit_runs.push_back(usable[i].run_id);
  }
  return out;
}

double calibrated_prediction_s(const RunComparison& r, const Calibration& cal) {
  if (!cal.cost_model_version.empty() && r.cost_model_version != cal.cost_model_version) return NAN;
  const std::optional<Calibration> c = calibration_for(cal, r.figures);
  return c ? calibrated_step_s(r.features, *c) : NAN;
}

namespace {

// Mean |error| in % of `predict` over the runs `include` selects.
template <typename Predict, typename Include>
double mean_abs_error(const std::vector<RunComparison>& runs, Predict&& predict, Include&& include, int* count) {
  double sum = 0;
  *count = 0;
  for (const RunComparison& r : runs)
    if (include(r)) {
      sum += std::abs(error_pct(predict(r), r.measured_step_time_s));
      ++*count;
    }
  return *count ? sum / *count : NAN;
}

}  // namespace

nlohmann::json calibration_summary(const std::vector<RunComparison>& runs, const Calibration& cal,
                                   const std::vector<int64_t>& fit_runs) {
  auto fitted = [&](const RunComparison& r) {
    return std::find(fit_runs.begin(), fit_runs.end(), r.run_id) != fit_runs.end();
  };
  auto before = [](const RunComparison& r) { return r.predicted_step_time_s; };
  auto after = [&](const RunComparison& r) { return calibrated_prediction_s(r, cal); };
  const std::vector<size_t> configuration = configuration_of(runs);
  const size_t configurations = count_configurations(configuration);
  nlohmann::json out;
  for (const char* set : {"fit", "held_out"}) {
    const bool want_fit = std::string(set) == "fit";
    // A held-out run without a calibrated prediction (figures no fitted run used, or
    // another cost model) is left out of both columns.
    auto include = [&](const RunComparison& r) {
      return r.measured_step_time_s > 0 && fitted(r) == want_fit && !std::isnan(after(r));
    };
    int n = 0;
    const double b = mean_abs_error(runs, before, include, &n), a = mean_abs_error(runs, after, include, &n);
    out[set] = {{"runs", n}, {"mean_abs_error_pct_before", b}, {"mean_abs_error_pct_after", a}};
    double sum_before = 0, sum_after = 0;
    int layouts = 0;
    for (size_t c = 0; c < configurations; ++c) {
      std::vector<double> measured, predicted_before, predicted_after;
      for (size_t i = 0; i < runs.size(); ++i)
        if (configuration[i] == c && include(runs[i])) {
          measured.push_back(runs[i].measured_step_time_s);
          predicted_before.push_back(before(runs[i]));
          predicted_after.push_back(after(runs[i]));
        }
      if (measured.empty()) continue;
      sum_before += std::abs(error_pct(median_of(predicted_before), median_of(measured)));
      sum_after += std::abs(error_pct(median_of(predicted_after), median_of(measured)));
      ++layouts;
    }
    out[std::string(set) + "_layouts"] = {{"layouts", layouts},
                                          {"mean_abs_error_pct_before", layouts ? sum_before / layouts : NAN},
                                          {"mean_abs_error_pct_after", layouts ? sum_after / layouts : NAN}};
  }
  return out;
}

}  // namespace sextant
