// `sextant compare` and `sextant calibrate`.
#include "cli/compare_command.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cost_model/calibration.h"
#include "cost_model/error.h"
#include "cost_model/median.h"
#include "cost_model/store.h"

namespace sextant {
namespace {

double error_pct(double predicted, double measured) {
  return measured > 0 ? 100 * (predicted / measured - 1) : NAN;
}

// compare and calibrate read an existing store; they never create one.
void require_store(const std::string& db) {
  if (!std::filesystem::exists(db)) throw InputError("--db", db, "no such store; run `sextant execute` first");
}

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

// The run's calibrated prediction; NaN when the calibration has no GEMM factor for the
// figures the run was predicted from (none of the fitted runs used them).
double calibrated_prediction_s(const RunComparison& r, const Calibration& cal) {
  const std::optional<Calibration> c = calibration_for(cal, r.figures);
  return c ? calibrated_step_s(r.features, *c) : NAN;
}

// Runs of one model with one layout repeat one configuration. Each run gets the index of
// its configuration, in order of first appearance, so that fitting and judging split by
// configuration: a held-out run never has a repeat among the fitted ones.
std::vector<size_t> configuration_of(const std::vector<RunComparison>& runs) {
  std::vector<std::string> keys;
  std::vector<size_t> out;
  for (const RunComparison& r : runs) {
    const std::string key = r.model_name + "\n" + r.layout;
    const auto found = std::find(keys.begin(), keys.end(), key);
    out.push_back(static_cast<size_t>(found - keys.begin()));
    if (found == keys.end()) keys.push_back(key);
  }
  return out;
}

size_t count_configurations(const std::vector<size_t>& configuration) {
  return configuration.empty() ? 0 : *std::max_element(configuration.begin(), configuration.end()) + 1;
}

// Before and after calibration, on the fitted runs and on the held-out ones; then per
// configuration, with the median of its repeated runs as the measurement.
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
    // A held-out run predicted from figures no fitted run used has no calibrated
    // prediction; it is left out of both columns.
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

// The summary's lines, as compare and calibrate print them.
void print_summary(const nlohmann::json& s, std::ostream& out) {
  out << std::fixed << std::setprecision(1);
  for (const char* set : {"fit", "held_out"}) {
    const nlohmann::json& runs = s[set];
    const nlohmann::json& layouts = s[std::string(set) + "_layouts"];
    out << "step time, " << set << " runs (" << runs["runs"] << "): mean |error| "
        << runs["mean_abs_error_pct_before"].get<double>() << "% before calibration, "
        << runs["mean_abs_error_pct_after"].get<double>() << "% after\n";
    out << "step time, " << set << " layouts (" << layouts["layouts"]
        << ", each the median of its runs): mean |error| " << layouts["mean_abs_error_pct_before"].get<double>()
        << "% before calibration, " << layouts["mean_abs_error_pct_after"].get<double>() << "% after\n";
  }
}

}  // namespace

void add_compare_command(CLI::App& app, CompareOptions& o) {
  CLI::App* cmd = app.add_subcommand("compare", "Predicted against measured, per run");
  cmd->add_option("--db", o.db, "SQLite store")->capture_default_str();
  cmd->add_option("--format", o.format, "table or json")->capture_default_str();
}

void run_compare(const CompareOptions& o, std::ostream& out) {
  if (o.format != "table" && o.format != "json")
    throw InputError("--format", "", "got \"" + o.format + "\"; allowed: table, json");
  require_store(o.db);
  const Store store(o.db);
  const std::vector<RunComparison> runs = store.compare_runs();
  const auto calibration = store.latest_calibration();
  auto error = error_pct;
  auto after = [&](const RunComparison& r) { return calibration ? calibrated_prediction_s(r, calibration->first) : NAN; };
  auto role = [&](const RunComparison& r) -> std::string {
    if (!calibration) return "";
    const auto& fit = calibration->second;
    return std::find(fit.begin(), fit.end(), r.run_id) != fit.end() ? "fit" : "held-out";
  };
  if (o.format == "json") {
    nlohmann::json j = nlohmann::json::array();
    for (const RunComparison& r : runs)
      j.push_back({{"run", r.run_id}, {"created_at", r.created_at}, {"model", r.model_name},
                   {"cluster", r.cluster_name}, {"layout", nlohmann::json::parse(r.layout)},
                   {"cost_model_version", r.cost_model_version}, {"steps", r.steps}, {"final_loss", r.final_loss},
                   {"profile", r.profile.empty() ? nlohmann::json() : nlohmann::json(r.profile)},
                   {"figures", r.figures},
                   {"calibration_features", {{"compute_s", r.features.compute_s}, {"vector_s", r.features.vector_s},
                                             {"comm_s", r.features.comm_s},
                                             {"layer_passes", r.features.layer_passes}}},
                   {"calibrated", calibration ? nlohmann::json({{"calibration", calibration->first.id},
                                                                {"role", role(r)},
                                                                {"step_time_s", after(r)},
                                                                {"error_pct", error(after(r), r.measured_step_time_s)}})
                                              : nlohmann::json()},
                   {"step_time_s", {{"predicted", r.predicted_step_time_s}, {"measured", r.measured_step_time_s},
                                    {"error_pct", error(r.predicted_step_time_s, r.measured_step_time_s)}}},
                   {"tokens_per_s", {{"predicted", r.predicted_tokens_per_s}, {"measured", r.measured_tokens_per_s},
                                     {"error_pct", error(r.predicted_tokens_per_s, r.measured_tokens_per_s)}}},
                   {"peak_bytes", {{"predicted", r.predicted_peak_bytes}, {"measured", r.measured_peak_bytes},
                                   {"error_pct", error(r.predicted_peak_bytes, r.measured_peak_bytes)}}}});
    out << j.dump(2) << "\n";
    return;
  }
  const std::string calibrated_header = calibration ? "  calibrated#" + std::to_string(calibration->first.id) + "    err  set" : "";
  out << " run  model         layout                                   steps  step_s pred/meas    err  "
         "tokens/s pred/meas      err  peak_MiB pred/meas    err  figures          " << calibrated_header << "\n";
  for (const RunComparison& r : runs) {
    const nlohmann::json l = nlohmann::json::parse(r.layout);
    std::ostringstream layout;
    layout << "dp" << l["dp"] << " tp" << l["tp"] << " pp" << l["pp"] << " vpp" << l["vpp"] << " z" << l["zero"]
           << " mb" << l["micro_batch"] << " ga" << l["grad_accum"] << " " << l["recompute"].get<std::string>()
           << (l["sequence_parallel"].get<bool>() ? " sp" : "");
    out << std::setw(4) << r.run_id << "  " << std::left << std::setw(13) << r.model_name.substr(0, 13)
        << std::setw(41) << layout.str() << std::right << std::setw(5) << r.steps << std::fixed
        << std::setprecision(4) << std::setw(9) << r.predicted_step_time_s << std::setw(9) << r.measured_step_time_s
        << std::setprecision(1) << std::setw(7) << error(r.predicted_step_time_s, r.measured_step_time_s) << "%"
        << std::setprecision(0) << std::setw(11) << r.predicted_tokens_per_s << std::setw(10)
        << r.measured_tokens_per_s << std::setprecision(1) << std::setw(8)
        << error(r.predicted_tokens_per_s, r.measured_tokens_per_s) << "%" << std::setprecision(1) << std::setw(10)
        << r.predicted_peak_bytes / (1 << 20) << std::setw(9) << r.measured_peak_bytes / (1 << 20) << std::setw(7)
        << error(r.predicted_peak_bytes, r.measured_peak_bytes) << "%  " << std::left << std::setw(17)
        << (r.profile.empty() ? "cluster" : r.profile) << std::right;
    const double calibrated = after(r);
    if (calibration && std::isnan(calibrated))
      out << std::setw(13) << "-" << std::setw(8) << "-" << "  " << role(r) << " (no fitted run used its figures)";
    else if (calibration)
      out << std::setprecision(4) << std::setw(13) << calibrated << std::setprecision(1) << std::setw(7)
          << error(calibrated, r.measured_step_time_s) << "%  " << role(r);
    out << "\n";
  }
  if (!runs.empty()) out << "cost model: " << runs.back().cost_model_version << "\n";
  if (calibration) print_summary(calibration_summary(runs, calibration->first, calibration->second), out);
}

void add_calibrate_command(CLI::App& app, CalibrateOptions& o) {
  CLI::App* cmd = app.add_subcommand("calibrate", "Fit correction factors to the measured runs (least squares)");
  cmd->add_option("--db", o.db, "SQLite store")->capture_default_str();
  cmd->add_flag("--all", o.all, "Fit on every run (default: the runs of every other model+layout, judged on the rest)");
}

void run_calibrate(const CalibrateOptions& o, std::ostream& out) {
  require_store(o.db);
  Store store(o.db);
  const std::vector<RunComparison> runs = store.compare_runs();
  std::vector<CalibrationSample> samples;
  std::vector<int64_t> fit_runs;
  const std::vector<size_t> configuration = configuration_of(runs);
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].measured_step_time_s <= 0 || (!o.all && configuration[i] % 2 == 1)) continue;
    samples.push_back({runs[i].features, runs[i].figures, runs[i].measured_step_time_s});
    fit_runs.push_back(runs[i].run_id);
  }
  const size_t needed = o.all ? 1 : 2;
  const size_t layouts = count_configurations(configuration);
  if (layouts < needed || samples.empty())
    throw InputError("--db", o.db, "calibration needs measured runs (" + std::to_string(runs.size()) + " stored, of " +
                                       std::to_string(layouts) +
                                       " layouts; without --all at least 2 layouts: one to fit, one to judge)");
  const Calibration fitted = fit_calibration(samples);
  const nlohmann::json summary = calibration_summary(runs, fitted, fit_runs);
  const int64_t id = store.save_calibration(fitted, fit_runs, summary);
  out << "calibration #" << id << " from " << samples.size() << " of " << runs.size() << " runs:"
      << std::setprecision(4);
  for (const auto& [figures, factor] : fitted.compute_factor_by_figures)
    out << " GEMM x" << factor << " (" << figures << "),";
  out << " memory-bound x" << fitted.vector_factor << ", communication x" << fitted.comm_factor << ", "
      << fitted.per_layer_pass_s * 1e3 << " ms per layer per micro-batch\n";
  print_summary(summary, out);
}

}  // namespace sextant
