// Calibration features, the fit and its application.
#include "cost_model/calibration.h"

#include <Eigen/Dense>

namespace sextant {

CalibrationFeatures calibration_features(const TimeBreakdown& t) {
  const double compute = t.compute_s, comm = t.tp_comm_s + t.pp_p2p_s;
  const double busy = compute + comm;
  const double bubble_share = busy > 0 ? t.bubble_s / busy : 0.0;  // idle time scales with stage time
  return {(compute - t.vector_s) * (1 + bubble_share) + t.optimizer_s + t.offload_s,
          t.vector_s * (1 + bubble_share), comm * (1 + bubble_share) + t.dp_comm_s, t.layer_passes};
}

double calibrated_step_s(const CalibrationFeatures& f, const Calibration& c) {
  return c.compute_factor * f.compute_s + c.vector_factor * f.vector_s + c.comm_factor * f.comm_s +
         c.per_layer_pass_s * f.layer_passes;
}

Calibration fit_calibration(const std::vector<CalibrationSample>& samples) {
  // A factor that would come out negative has no support in the runs: it is held at the
  // uncalibrated value (1, 1, 0) and the others are refitted around it.
  constexpr int kFactors = 4;
  const double held[kFactors] = {1.0, 1.0, 1.0, 0.0};
  std::vector<bool> free(kFactors, true);
  Eigen::Vector4d x(held[0], held[1], held[2], held[3]);
  for (int round = 0; round < kFactors; ++round) {
    std::vector<int> columns;
    for (int j = 0; j < kFactors; ++j)
      if (free[static_cast<size_t>(j)]) columns.push_back(j);
    if (columns.empty()) break;
    Eigen::MatrixXd a(static_cast<Eigen::Index>(samples.size()), static_cast<Eigen::Index>(columns.size()));
    Eigen::VectorXd b(static_cast<Eigen::Index>(samples.size()));
    for (size_t i = 0; i < samples.size(); ++i) {
      const CalibrationFeatures& f = samples[i].features;
      const double w = 1.0 / samples[i].measured_step_s;
      const double all[kFactors] = {f.compute_s, f.vector_s, f.comm_s, f.layer_passes};
      double rhs = 1.0;  // w · measured
      for (int j = 0; j < kFactors; ++j)
        if (!free[static_cast<size_t>(j)]) rhs -= w * held[j] * all[j];
      for (size_t c = 0; c < columns.size(); ++c)
        a(static_cast<Eigen::Index>(i), static_cast<Eigen::Index>(c)) = w * all[columns[c]];
      b(static_cast<Eigen::Index>(i)) = rhs;
    }
    const Eigen::VectorXd solution = a.colPivHouseholderQr().solve(b);
    bool negative = false;
    for (size_t c = 0; c < columns.size(); ++c) {
      x(columns[c]) = solution(static_cast<Eigen::Index>(c));
      if (solution(static_cast<Eigen::Index>(c)) < 0) {
        free[static_cast<size_t>(columns[c])] = false;
        x(columns[c]) = held[columns[c]];
        negative = true;
      }
    }
    if (!negative) break;
  }
  Calibration c;
  c.compute_factor = x(0);
  c.vector_factor = x(1);
  c.comm_factor = x(2);
  c.per_layer_pass_s = x(3);
  return c;
}

nlohmann::json calibration_to_json(const Calibration& c) {
  return {{"compute_factor", c.compute_factor}, {"vector_factor", c.vector_factor}, {"comm_factor", c.comm_factor},
          {"per_layer_pass_s", c.per_layer_pass_s}};
}

Calibration calibration_from_json(const nlohmann::json& j, int64_t id) {
  Calibration c;
  c.id = id;
  c.compute_factor = j.at("compute_factor").get<double>();
  c.vector_factor = j.at("vector_factor").get<double>();
  c.comm_factor = j.at("comm_factor").get<double>();
  c.per_layer_pass_s = j.value("per_layer_pass_s", 0.0);
  return c;
}

}  // namespace sextant
