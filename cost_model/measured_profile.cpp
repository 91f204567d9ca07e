// Interpolating a measured profile.
#include "cost_model/measured_profile.h"

#include <algorithm>
#include <cmath>
#include <tuple>

#include "cost_model/error.h"

namespace sextant {
namespace {

size_t index_of(const std::vector<double>& axis, double v) {
  return static_cast<size_t>(std::lower_bound(axis.begin(), axis.end(), v) - axis.begin());
}

// Bracketing indices and weight of the upper one, clamped to the axis.
void bracket(const std::vector<double>& axis, double v, size_t* lo, size_t* hi, double* w) {
  if (v <= axis.front()) {
    *lo = *hi = 0;
    *w = 0;
    return;
  }
  if (v >= axis.back()) {
    *lo = *hi = axis.size() - 1;
    *w = 0;
    return;
  }
  *hi = index_of(axis, v);
  *lo = *hi - 1;
  *w = (v - axis[*lo]) / (axis[*hi] - axis[*lo]);
}

}  // namespace

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
  std::map<std::string, std::map<std::tuple<double, double, double>, double>> points;
  for (const GemmPoint& p : profile.gemm)
    points[p.dtype][{std::log2(static_cast<double>(p.m)), std::log2(static_cast<double>(p.n)),
                     std::log2(static_cast<double>(p.k))}] = std::log(p.flops_per_s);
  for (auto& [dtype, table] : points) {
    Grid g;
    for (const auto& [key, rate] : table) {
      g.m.push_back(std::get<0>(key));
      g.n.push_back(std::get<1>(key));
      g.k.push_back(std::get<2>(key));
    }
    for (auto* axis : {&g.m, &g.n, &g.k}) {
      std::sort(axis->begin(), axis->end());
      axis->erase(std::unique(axis->begin(), axis->end()), axis->end());
    }
    if (table.size() != g.m.size() * g.n.size() * g.k.size())
      throw InputError(where, "gemm", "the " + dtype + " shapes must form a full m x n x k grid");
    for (double m : g.m)
      for (double n : g.n)
        for (double k : g.k) g.log_rate.push_back(table.at({m, n, k}));
    gemm_[dtype] = std::move(g);
  }
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
  const Grid& g = it != gemm_.end() ? it->second : gemm_.at("fp32");
  size_t m0, m1, n0, n1, k0, k1;
  double wm, wn, wk;
  bracket(g.m, std::log2(std::max(m, 1.0)), &m0, &m1, &wm);
  bracket(g.n, std::log2(std::max(n, 1.0)), &n0, &n1, &wn);
  bracket(g.k, std::log2(std::max(k, 1.0)), &k0, &k1, &wk);
  auto at = [&](size_t i, size_t j, size_t l) { return g.log_rate[(i * g.n.size() + j) * g.k.size() + l]; };
  double v = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 2; ++c)
        v += (a ? wm : 1 - wm) * (b ? wn : 1 - wn) * (c ? wk : 1 - wk) * at(a ? m1 : m0, b ? n1 : n0, c ? k1 : k0);
  return std::exp(v);
}

const CollectiveFit* MeasuredProfile::collective(Collective op, int64_t ranks) const {
  auto it = collectives_.find({op, ranks});
  return it == collectives_.end() ? nullptr : &it->second;
}

}  // namespace sextant
