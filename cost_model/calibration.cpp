// Calibration features, the fit and its application.
#include "cost_model/calibration.h"

#include <map>

#include <Eigen/Dense>

namespace sextant {

CalibrationFeatures calibration_features(const TimeBreakdown& t) {
  const double compute = t.compute_s, comm = t.tp_comm_s + t.pp_p2p_s + t.ep_comm_s;
  const double busy = compute + comm;
  const double bubble_share = busy > 0 ? t.bubble_s / busy : 0.0;  // idle time scales with stage time
  return {(compute - t.vector_s) * (1 + bubble_share) + t.optimizer_s + t.offload_s,
          t.vector_s * (1 + bubble_share), comm * (1 + bubble_share) + t.dp_comm_s, t.layer_passes};
}

double calibrated_step_s(const CalibrationFeatures& f, const Calibration& c) {
  return c.compute_factor * f.compute_s + c.vector_factor * f.vector_s + c.comm_factor * f.comm_s +
         c.per_layer_pass_s * f.layer_passes;
}

Prediction calibrated(const Prediction& p, const Calibration& c) {
  Prediction out = p;
  out.time.step_s = calibrated_step_s(calibration_features(p.time), c);
  const double speedup = p.time.step_s / out.time.step_s;
  out.tokens_per_s *= speedup;
  out.model_tflops_per_gpu *= speedup;
  out.hardware_tflops_per_gpu *= speedup;
  out.mfu *= speedup;
  out.hfu *= speedup;
  return out;
}

std::string figures_source(const std::string& profile, int64_t profile_id, const std::string& cluster) {
  return profile.empty() ? "cluster " + cluster : "profile " + profile + " #" + std::to_string(profile_id);
}

std::optional<Calibration> calibration_for(const Calibration& c, const std::string& figures) {
  if (c.compute_factor_by_figures.empty()) return c;  // one factor for every source (older calibrations)
  const auto found = c.compute_factor_by_figures.find(figures);
  if (found == c.compute_factor_by_figures.end()) return std::nullopt;
  Calibration out = c;
  out.compute_factor = found->second;
  return out;
}

Calibration fit_calibration(const std::vector<CalibrationSample>& samples) {
  // Columns: one GEMM factor per source of figures, then memory-bound, communication and
  // the per-layer-pass overhead. A factor that would come out negative has no support in
  // the runs: it is held at its uncalibrated value and the others are refitted around it.
  std::map<std::string, int> column_of;
  for (const CalibrationSample& s : samples) column_of.emplace(s.figures, 0);
  int sources = 0;
  for (auto& entry : column_of) entry.second = sources++;
  const int factors = sources + 3, vector_column = sources, comm_column = sources + 1, overhead_column = sources + 2;
  std::vector<double> held(static_cast<size_t>(factors), 1.0);
  held[static_cast<size_t>(overhead_column)] = 0.0;
  std::vector<bool> free(static_cast<size_t>(factors), true);
  std::vector<double> x = held;
  auto row_of = [&](const CalibrationSample& s) {
    std::vector<double> row(static_cast<size_t>(factors), 0.0);
    row[static_cast<size_t>(column_of.at(s.figures))] = s.features.compute_s;
    row[static_cast<size_t>(vector_column)] = s.features.vector_s;
    row[static_cast<size_t>(comm_column)] = s.features.comm_s;
    row[static_cast<size_t>(overhead_column)] = s.features.layer_passes;
    return row;
  };
  for (int round = 0; round < factors; ++round) {
    std::vector<size_t> columns;
    for (size_t j = 0; j < free.size(); ++j)
      if (free[j]) columns.push_back(j);
    if (columns.empty()) break;
    Eigen::MatrixXd a(static_cast<Eigen::Index>(samples.size()), static_cast<Eigen::Index>(columns.size()));
    Eigen::VectorXd b(static_cast<Eigen::Index>(samples.size()));
    for (size_t i = 0; i < samples.size(); ++i) {
      const double w = 1.0 / samples[i].measured_step_s;
      const std::vector<double> row = row_of(samples[i]);
      double rhs = 1.0;  // w · measured
      for (size_t j = 0; j < row.size(); ++j)
        if (!free[j]) rhs -= w * held[j] * row[j];
      for (size_t c = 0; c < columns.size(); ++c)
        a(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(c)) = w * row[columns[c]];
      b(static_cast<Eigen::Index>(i)) = rhs;
    }
    const Eigen::VectorXd solution = a.colPivHouseholderQr().solve(b);
    bool negative = false;
    for (size_t c = 0; c < columns.size(); ++c) {
      x[columns[c]] = solution(static_cast<Eigen::Index>(c));
      if (x[columns[c]] < 0) {
        free[columns[c]] = false;
        x[columns[c]] = held[columns[c]];
        negative = true;
      }
    }
    if (!negative) break;
  }
  Calibration c;
  for (const auto& [figures, column] : column_of) c.compute_factor_by_figures[figures] = x[static_cast<size_t>(column)];
  c.vector_factor = x[static_cast<size_t>(vector_column)];
  c.comm_factor = x[static_cast<size_t>(comm_column)];
  c.per_layer_pass_s = x[static_cast<size_t>(overhead_column)];
  return c;
}

nlohmann::json calibration_to_json(const Calibration& c) {
  return {{"cost_model_version", c.cost_model_version}, {"compute_factor_by_figures", c.compute_factor_by_figures}, {"vector_factor", c.vector_factor},
          {"comm_factor", c.comm_factor}, {"per_layer_pass_s", c.per_layer_pass_s}};
}

Calibration calibration_from_json(const nlohmann::json& j, int64_t id) {
  Calibration c;
  c.id = id;
  if (j.contains("compute_factor"))  // stored before GEMM factors were kept per source of figures
    c.compute_factor = j.at("compute_factor").get<double>();
  else
    c.compute_factor_by_figures = j.at("compute_factor_by_figures").get<std::map<std::string, double>>();
  c.vector_factor = j.at("vector_factor").get<double>();
  c.comm_factor = j.at("comm_factor").get<double>();
  c.per_layer_pass_s = j.value("per_layer_pass_s", 0.0);
  c.cost_model_version = j.value("cost_model_version", "");
  return c;
}

}  // namespace sextant
