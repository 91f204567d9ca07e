// `sextant compare` and `sextant calibrate`.
#include "cli/compare_command.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <optional>
#include <sstream>

#include <CLI/CLI.hpp>

#include "cost_model/error.h"
#include "cost_model/run_analysis.h"
#include "cost_model/store.h"
#include "planner/run_report.h"

namespace sextant {
namespace {

// compare and calibrate read an existing store; they never create one.
void require_store(const std::string& db) {
  if (!std::filesystem::exists(db)) throw InputError("--db", db, "no such store; run `sextant execute` first");
}

std::string layout_label(const ParallelLayout& l) {
  std::ostringstream out;
  out << "dp" << l.dp << " tp" << l.tp << " pp" << l.pp << " vpp" << l.vpp;
  if (l.ep > 1) out << " ep" << l.ep;
  out << " z" << l.zero << " mb" << l.micro_batch << " ga" << l.grad_accum << " " << to_string(l.recompute)
      << (l.sequence_parallel ? " sp" : "");
  return out.str();
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

nlohmann::json number_or_null(double x) { return std::isnan(x) ? nlohmann::json() : nlohmann::json(x); }

nlohmann::json breakdown_json(const RunComparison& r) {
  const PredictedParts p = predicted_parts(r.predicted_time);
  const double measured_step_s = r.measured_step_time_s > 0 ? r.measured_step_time_s : NAN;
  return {{"predicted", {{"forward_backward_s", p.forward_backward_s}, {"optimizer_s", p.optimizer_s},
                         {"comm_wait_s", p.comm_wait_s}, {"ep_comm_s", p.ep_comm_s},
                         {"ep_comm_share", p.ep_comm_s / r.predicted_step_time_s}}},
          {"measured", {{"forward_s", number_or_null(r.measured_forward_s)},
                        {"backward_s", number_or_null(r.measured_backward_s)},
                        {"optimizer_s", number_or_null(r.measured_optimizer_s)},
                        {"comm_wait_s", number_or_null(r.measured_comm_wait_s)},
                        {"ep_comm_s", number_or_null(r.measured_ep_comm_s)},
                        {"ep_comm_share", number_or_null(r.measured_ep_comm_s / measured_step_s)}}}};
}

// Where each run's step time went, measured (medians over its steps, as the step time)
// beside the plan's predicted breakdown; "-" where the run's steps did not measure it.
void print_breakdowns(const std::vector<RunComparison>& runs, std::ostream& out) {
  out << "step breakdown (s): run  fwd meas  bwd meas  fwd+bwd pred/meas    err  optimizer pred/meas    err  "
         "comm_wait pred/meas    err  all-to-all share pred/meas\n";
  auto cell = [&](double x, int width) {
    if (std::isnan(x))
      out << std::setw(width) << "-";
    else
      out << std::setprecision(4) << std::setw(width) << x;
  };
  auto err = [&](double predicted, double measured) {
    const double e = error_pct(predicted, measured);  // NaN where nothing was measured, or zero
    if (std::isnan(e))
      out << std::setw(7) << "-" << " ";
    else
      out << std::setprecision(1) << std::setw(7) << e << "%";
  };
  // The all-to-alls' share of the step, in percent; "-" without expert parallelism.
  auto share = [&](double part_s, double step_s, int width) {
    if (std::isnan(part_s) || !(step_s > 0) || part_s == 0)
      out << std::setw(width) << "-";
    else
      out << std::setprecision(1) << std::setw(width - 1) << 100 * part_s / step_s << "%";
  };
  for (const RunComparison& r : runs) {
    const PredictedParts p = predicted_parts(r.predicted_time);
    const double fwd_bwd = r.measured_forward_s + r.measured_backward_s;
    out << std::fixed << std::setw(23) << r.run_id;
    cell(r.measured_forward_s, 10);
    cell(r.measured_backward_s, 10);
    cell(p.forward_backward_s, 10);
    cell(fwd_bwd, 9);
    err(p.forward_backward_s, fwd_bwd);
    cell(p.optimizer_s, 12);
    cell(r.measured_optimizer_s, 9);
    err(p.optimizer_s, r.measured_optimizer_s);
    cell(p.comm_wait_s, 12);
    cell(r.measured_comm_wait_s, 9);
    err(p.comm_wait_s, r.measured_comm_wait_s);
    share(p.ep_comm_s, r.predicted_step_time_s, 18);
    share(r.measured_ep_comm_s, r.measured_step_time_s, 9);
    out << "\n";
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
  const std::vector<RunComparison> runs = compare_runs(store.runs());
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
      j.push_back({{"run", r.run_id}, {"created_at", r.created_at}, {"status", to_string(r.status)},
                   {"error", r.error.empty() ? nlohmann::json() : nlohmann::json(r.error)}, {"model", r.model_name},
                   {"cluster", r.cluster_name}, {"layout", layout_to_json(r.layout)},
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
                                   {"error_pct", error(r.predicted_peak_bytes, r.measured_peak_bytes)}}},
                   {"breakdown", breakdown_json(r)}});
    out << j.dump(2) << "\n";
    return;
  }
  const std::string calibrated_header = calibration ? "  calibrated#" + std::to_string(calibration->first.id) + "    err  set" : "";
  out << " run  model         layout                                   status    steps  step_s pred/meas    err  "
         "tokens/s pred/meas      err  peak_MiB pred/meas    err  figures          " << calibrated_header << "\n";
  for (const RunComparison& r : runs) {
    out << std::setw(4) << r.run_id << "  " << std::left << std::setw(13) << r.model_name.substr(0, 13)
        << std::setw(41) << layout_label(r.layout) << std::setw(9) << to_string(r.status) << std::right
        << std::setw(6) << r.steps << std::fixed
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
      out << std::setw(13) << "-" << std::setw(8) << "-" << "  " << role(r)
          << (r.cost_model_version != calibration->first.cost_model_version ? " (planned by another cost model)"
                                                                            : " (no fitted run used its figures)");
    else if (calibration)
      out << std::setprecision(4) << std::setw(13) << calibrated << std::setprecision(1) << std::setw(7)
          << error(calibrated, r.measured_step_time_s) << "%  " << role(r);
    out << "\n";
  }
  if (!runs.empty()) print_breakdowns(runs, out);
  if (!runs.empty()) out << "cost model: " << runs.back().cost_model_version << "\n";
  for (const RunComparison& r : runs)
    if (r.status != RunStatus::finished)
      out << "run " << r.run_id << " " << to_string(r.status) << (r.error.empty() ? "" : ": " + r.error)
          << "; judged on its " << r.steps << " finished steps\n";
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
  const std::vector<RunComparison> runs = compare_runs(store.runs());
  const CalibrationSplit split = split_for_calibration(runs, o.all, kCostModelVersion);
  const size_t needed = o.all ? 1 : 2;
  if (split.configurations < needed || split.samples.empty())
    throw InputError("--db", o.db, "calibration needs measured runs of plans made by " + std::string(kCostModelVersion) +
                                       " (" + std::to_string(runs.size()) + " stored, " +
                                       std::to_string(split.other_version_runs) + " of them planned by another cost model; " +
                                       std::to_string(split.configurations) +
                                       " layouts; without --all at least 2 layouts: one to fit, one to judge)");
  Calibration fitted = fit_calibration(split.samples);
  fitted.cost_model_version = kCostModelVersion;
  const nlohmann::json summary = calibration_summary(runs, fitted, split.fit_runs);
  const int64_t id = store.save_calibration(fitted, split.fit_runs, summary);
  out << "calibration #" << id << " from " << split.samples.size() << " of " << runs.size() << " runs:"
      << std::setprecision(4);
  for (const auto& [figures, factor] : fitted.compute_factor_by_figures)
    out << " GEMM x" << factor << " (" << figures << "),";
  out << " memory-bound x" << fitted.vector_factor << ", communication x" << fitted.comm_factor << ", "
      << fitted.per_layer_pass_s * 1e3 << " ms per layer per micro-batch\n";
  if (split.other_version_runs > 0)
    out << split.other_version_runs << " runs left out: planned by another cost model than " << kCostModelVersion << "\n";
  print_summary(summary, out);
}

}  // namespace sextant
