// Interpolating a measured profile.
#include "cost_model/measured_profile.h"

#include <algorithm>
#include <array>
#include <cmath>

#include "cost_model/error.h"

namespace sextant {

std::pair<double, double> fit_latency_bandwidth(const std::vector<std::pair<double, double>>& points) {
  // Weighted least squares for t = a + b·x with weights 1/t².
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const auto& [x, t] : points) {
    const double w = 1.0 / (t * t);
    sw += w;
    sx += w * x;
    sy += w * t;
    sxx += w * x * x;
    sxy += w * x * t;
  }
  const double det = sw * sxx - sx * sx;
  double a = (sxx * sy - sx * sxy) / det, b = (sw * sxy - sx * sy) / det;
  if (a < 0 || !std::isfinite(a)) {  // refit through the origin
    a = 0;
    b = sxy / sxx;
  }
  return {a, 1.0 / b};
}

MeasuredProfile::MeasuredProfile(const ProfileData& profile, int64_t id, const std::string& where)
    : id_(id), name_(profile.name) {
  memory_bw_ = profile.memory_bandwidth_bytes_per_s;
  elementwise_bw_ = profile.elementwise_bytes_per_s.value_or(memory_bw_);
  std::map<std::string, std::vector<std::array<double, 4>>> points;
  for (const GemmPoint& p : profile.gemm)
    points[p.dtype].push_back({static_cast<double>(p.m), static_cast<double>(p.n), static_cast<double>(p.k),
                               p.flops_per_s});
  for (const auto& [dtype, table] : points) gemm_[dtype] = LogGrid::from_points(table, where, "gemm " + dtype);
  if (gemm_.count("fp32") == 0) throw InputError(where, "gemm", "needs fp32 measurements");
  std::map<std::pair<Collective, int64_t>, std::vector<std::pair<double, double>>> samples;
  for (const CollectivePoint& c : profile.collectives)
    samples[{c.op, c.ranks}].push_back({static_cast<double>(c.bytes), c.time_s});
  for (const auto& [key, points_of] : samples) {
    const auto [latency, rate] = fit_latency_bandwidth(points_of);
    // nccl-tests: busbw = algbw · bus factor; for the fit, algbw is the fitted rate.
    collectives_[key] = CollectiveFit{latency, rate * bus_factor(key.first, key.second)};
  }
}

double MeasuredProfile::gemm_flops_per_s(Precision precision, double m, double n, double k) const {
  auto it = gemm_.find(precision == Precision::fp32 ? "fp32" : "bf16");
  return (it != gemm_.end() ? it->second : gemm_.at("fp32")).at(m, n, k);
}

const CollectiveFit* MeasuredProfile::collective(Collective op, int64_t ranks) const {
  auto it = collectives_.find({op, ranks});
  return it == collectives_.end() ? nullptr : &it->second;
}

}  // namespace sextant
