// `sextant compare` and `sextant calibrate`.
#include "cli/compare_command.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cost_model/calibration.h"
#include "cost_model/error.h"
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

// Before and after calibration, on the fitted runs and on the held-out ones.
nlohmann::json calibration_summary(const std::vector<RunComparison>& runs, const Calibration& cal,
                                   const std::vector<int64_t>& fit_runs) {
  auto fitted = [&](const RunComparison& r) {
    return std::find(fit_runs.begin(), fit_runs.end(), r.run_id) != fit_runs.end();
  };
  auto before = [](const RunComparison& r) { return r.predicted_step_time_s; };
  auto after = [&](const RunComparison& r) { return calibrated_step_s(r.features, cal); };
  nlohmann::json out;
  for (const char* set : {"fit", "held_out"}) {
    const bool want_fit = std::string(set) == "fit";
    auto include = [&](const RunComparison& r) { return fitted(r) == want_fit; };
    int n = 0;
    const double b = mean_abs_error(runs, before, include, &n), a = mean_abs_error(runs, after, include, &n);
    out[set] = {{"runs", n}, {"mean_abs_error_pct_before", b}, {"mean_abs_error_pct_after", a}};
  }
  return out;
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
  auto after = [&](const RunComparison& r) {
    return calibration ? calibrated_step_s(r.features, calibration->first) : NAN;
  };
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
    if (calibration)
      out << std::setprecision(4) << std::setw(13) << after(r) << std::setprecision(1) << std::setw(7)
          << error(after(r), r.measured_step_time_s) << "%  " << role(r);
    out << "\n";
  }
  if (!runs.empty()) out << "cost model: " << runs.back().cost_model_version << "\n";
  if (calibration) {
    const nlohmann::json s = calibration_summary(runs, calibration->first, calibration->second);
    for (const char* set : {"fit", "held_out"})
      out << std::setprecision(1) << "step time, " << set << " runs (" << s[set]["runs"] << "): mean |error| "
          << s[set]["mean_abs_error_pct_before"].get<double>() << "% before calibration, "
          << s[set]["mean_abs_error_pct_after"].get<double>() << "% after\n";
  }
}

void add_calibrate_command(CLI::App& app, CalibrateOptions& o) {
  CLI::App* cmd = app.add_subcommand("calibrate", "Fit correction factors to the measured runs (least squares)");
  cmd->add_option("--db", o.db, "SQLite store")->capture_default_str();
  cmd->add_flag("--all", o.all, "Fit on every run (default: every other run, judged on the rest)");
}

void run_calibrate(const CalibrateOptions& o, std::ostream& out) {
  require_store(o.db);
  Store store(o.db);
  const std::vector<RunComparison> runs = store.compare_runs();
  std::vector<CalibrationSample> samples;
  std::vector<int64_t> fit_runs;
  for (size_t i = 0; i < runs.size(); ++i) {
    if (runs[i].measured_step_time_s <= 0 || (!o.all && i % 2 == 1)) continue;
    samples.push_back({runs[i].features, runs[i].measured_step_time_s});
    fit_runs.push_back(runs[i].run_id);
  }
  const size_t needed = o.all ? 1 : 2;
  if (runs.size() < needed || samples.empty())
    throw InputError("--db", o.db, "calibration needs measured runs (" + std::to_string(runs.size()) +
                                       " stored; without --all at least 2: one to fit, one to judge)");
  const Calibration fitted = fit_calibration(samples);
  const nlohmann::json summary = calibration_summary(runs, fitted, fit_runs);
  const int64_t id = store.save_calibration(fitted, fit_runs, summary);
  out << "calibration #" << id << " from " << samples.size() << " of " << runs.size() << " runs: GEMM x"
      << std::setprecision(4) << fitted.compute_factor << ", memory-bound x" << fitted.vector_factor
      << ", communication x" << fitted.comm_factor << ", "
      << fitted.per_layer_pass_s * 1e3 << " ms per layer per micro-batch\n";
  for (const char* set : {"fit", "held_out"})
    out << std::fixed << std::setprecision(1) << "step time, " << set << " runs (" << summary[set]["runs"]
        << "): mean |error| " << summary[set]["mean_abs_error_pct_before"].get<double>() << "% before, "
        << summary[set]["mean_abs_error_pct_after"].get<double>() << "% after\n";
}

}  // namespace sextant
