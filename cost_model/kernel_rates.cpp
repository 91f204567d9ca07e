// Reading and interpolating a device's kernel-rate table.
#include "cost_model/kernel_rates.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <tuple>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"

namespace sextant {
namespace {

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
  *hi = static_cast<size_t>(std::lower_bound(axis.begin(), axis.end(), v) - axis.begin());
  *lo = *hi - 1;
  *w = (v - axis[*lo]) / (axis[*hi] - axis[*lo]);
}

// Piecewise-linear in (x, y) pairs sorted by x, clamped at both ends.
double interpolate(const std::vector<std::pair<double, double>>& xy, double x) {
  if (x <= xy.front().first) return xy.front().second;
  if (x >= xy.back().first) return xy.back().second;
  auto hi = std::lower_bound(xy.begin(), xy.end(), std::make_pair(x, -1e300));
  auto lo = hi - 1;
  const double w = (x - lo->first) / (hi->first - lo->first);
  return lo->second + w * (hi->second - lo->second);
}

const std::map<std::string, MemoryOp>& memory_op_names() {
  static const std::map<std::string, MemoryOp> names = {
      {"copy", MemoryOp::copy},           {"add", MemoryOp::add},     {"layer_norm", MemoryOp::layer_norm},
      {"rms_norm", MemoryOp::rms_norm},   {"gelu", MemoryOp::gelu},   {"swiglu", MemoryOp::swiglu},
      {"cross_entropy", MemoryOp::cross_entropy}, {"adamw", MemoryOp::adamw}};
  return names;
}

std::vector<std::pair<double, double>> read_curve(const nlohmann::json& rows, double scale, const std::string& where,
                                                  const std::string& field) {
  std::vector<std::pair<double, double>> curve;
  for (const auto& r : rows) {
    if (!r.is_array() || r.size() != 2 || !r[0].is_number() || !r[1].is_number() || r[0] <= 0 || r[1] <= 0)
      throw InputError(where, field, "expected [bytes, GB/s] pairs of positive numbers");
    curve.push_back({std::log(r[0].get<double>()), std::log(r[1].get<double>() * 1e9 * scale)});
  }
  if (curve.empty()) throw InputError(where, field, "expected at least one [bytes, GB/s] pair");
  std::sort(curve.begin(), curve.end());
  return curve;
}

LogGrid read_gemm(const nlohmann::json& rows, double scale, const std::string& where, const std::string& field) {
  std::vector<std::array<double, 4>> points;
  for (const auto& r : rows) {
    if (!r.is_array() || r.size() != 4)
      throw InputError(where, field, "expected [m, n, k, TFLOP/s] rows");
    points.push_back({r[0].get<double>(), r[1].get<double>(), r[2].get<double>(), r[3].get<double>() * 1e12 * scale});
  }
  return LogGrid::from_points(points, where, field);
}

}  // namespace

const char* to_string(MemoryOp op) {
  for (const auto& [name, value] : memory_op_names())
    if (value == op) return name.c_str();
  return "?";
}

LogGrid LogGrid::from_points(const std::vector<std::array<double, 4>>& points, const std::string& where,
                             const std::string& field) {
  std::map<std::tuple<double, double, double>, double> table;
  LogGrid g;
  for (const auto& p : points) {
    if (!(p[0] > 0 && p[1] > 0 && p[2] > 0 && p[3] > 0))
      throw InputError(where, field, "sizes and rates must be positive");
    const auto key = std::make_tuple(std::log2(p[0]), std::log2(p[1]), std::log2(p[2]));
    table[key] = std::log(p[3]);
    g.m_.push_back(std::get<0>(key));
    g.n_.push_back(std::get<1>(key));
    g.k_.push_back(std::get<2>(key));
  }
  for (auto* axis : {&g.m_, &g.n_, &g.k_}) {
    std::sort(axis->begin(), axis->end());
    axis->erase(std::unique(axis->begin(), axis->end()), axis->end());
  }
  if (table.empty() || table.size() != g.m_.size() * g.n_.size() * g.k_.size())
    throw InputError(where, field, "the shapes must form a full m x n x k grid");
  for (double m : g.m_)
    for (double n : g.n_)
      for (double k : g.k_) g.log_value_.push_back(table.at({m, n, k}));
  return g;
}

double LogGrid::at(double m, double n, double k) const {
  size_t m0, m1, n0, n1, k0, k1;
  double wm, wn, wk;
  bracket(m_, std::log2(std::max(m, 1.0)), &m0, &m1, &wm);
  bracket(n_, std::log2(std::max(n, 1.0)), &n0, &n1, &wn);
  bracket(k_, std::log2(std::max(k, 1.0)), &k0, &k1, &wk);
  auto v_at = [&](size_t i, size_t j, size_t l) { return log_value_[(i * n_.size() + j) * k_.size() + l]; };
  double v = 0;
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b)
      for (int c = 0; c < 2; ++c)
        v += (a ? wm : 1 - wm) * (b ? wn : 1 - wn) * (c ? wk : 1 - wk) * v_at(a ? m1 : m0, b ? n1 : n0, c ? k1 : k0);
  return std::exp(v);
}

double KernelRates::gemm_s(GemmLayout layout, double m, double n, double k, double batch) const {
  if (m <= 0 || n <= 0 || k <= 0 || batch <= 0) return 0.0;
  const LogGrid& g = layout == GemmLayout::forward ? gemm_forward : gemm_backward;
  // Below the grid's smallest size a GEMM is bound by its fixed cost, not its FLOPs: time is
  // held at the clamped shape's. Past the largest it runs at the edge rate.
  const double flops = 2.0 * m * n * k;
  const double rate = g.at(m, n, k);
  double s = flops / rate;
  // A batch of small GEMMs runs as one batched kernel: its time scales with the batch.
  s *= batch;
  return std::max(s, launch_s);
}

double KernelRates::memory_s(MemoryOp op, double bytes) const {
  if (bytes <= 0) return 0.0;
  auto it = memory.find(op);
  if (it == memory.end()) it = memory.find(MemoryOp::copy);
  return std::max(bytes / std::exp(interpolate(it->second, std::log(bytes))), launch_s);
}

double KernelRates::memory_bwd_s(MemoryOp op, double fwd_bytes, double bwd_bytes) const {
  if (bwd_bytes <= 0) return 0.0;
  auto it = memory_fwd_bwd.find(op);
  if (it == memory_fwd_bwd.end()) return memory_s(op, bwd_bytes);
  const double both = fwd_bytes + bwd_bytes;
  const double both_s = both / std::exp(interpolate(it->second, std::log(both)));
  return std::max(both_s - memory_s(op, fwd_bytes), launch_s);
}

double KernelRates::attention_fwd_s(double batch_heads, double s, double d) const {
  if (attention_fwd.empty() || batch_heads <= 0) return 0.0;
  const double flops = 4.0 * batch_heads * s * s * d;
  return std::max(flops / std::exp(interpolate(attention_fwd, std::log(s * d))), launch_s);
}

double KernelRates::attention_bwd_s(double batch_heads, double s, double d) const {
  if (attention_fwd_bwd.empty() || batch_heads <= 0) return 0.0;
  const double both_s = 3.5 * 4.0 * batch_heads * s * s * d / std::exp(interpolate(attention_fwd_bwd, std::log(s * d)));
  return std::max(both_s - attention_fwd_s(batch_heads, s, d), launch_s);
}

KernelRates kernel_rates_from_json(const nlohmann::json& json, const std::string& where,
                                   const std::array<double, 3>& scale) {
  const JsonFields f(json, where);
  KernelRates r;
  r.name = f.string("name");
  r.source = f.string("source");
  r.launch_s = f.number("launch_us", 0.0, 1e6) * 1e-6;
  r.host_s_per_op = f.number_or("host_us_per_op", 0.0, 0.0, 1e6) * 1e-6;
  const JsonFields gemm = f.object("gemm_bf16_tflops");
  r.gemm_forward = read_gemm(gemm.json().at("NT"), scale[0], where, "gemm_bf16_tflops.NT");
  r.gemm_backward = read_gemm(gemm.json().at("NN"), scale[0], where, "gemm_bf16_tflops.NN");
  const JsonFields mem = f.object("memory_bound_gb_per_s");
  for (const auto& [name, rows] : mem.json().items()) {
    const std::string field = "memory_bound_gb_per_s." + name;
    const bool fwd_bwd = name.size() > 8 && name.compare(name.size() - 8, 8, "_fwd_bwd") == 0;
    const std::string op_name = fwd_bwd ? name.substr(0, name.size() - 8) : name;
    auto op = memory_op_names().find(op_name);
    if (op == memory_op_names().end())
      throw InputError(where, field, "unknown op kind (copy, add, layer_norm, rms_norm, gelu, swiglu, cross_entropy, adamw)");
    (fwd_bwd ? r.memory_fwd_bwd : r.memory)[op->second] = read_curve(rows, scale[1], where, field);
  }
  if (r.memory.count(MemoryOp::copy) == 0) throw InputError(where, "memory_bound_gb_per_s.copy", "is required");
  // Rows of the same s·d (different batch × heads) become one point: their mean rate.
  std::map<double, std::array<double, 3>> by_sd;  // log(s·d) -> {Σ fwd, Σ fwd_bwd, count}
  for (const auto& row : f.object("attention_causal_tflops").json().at("rows")) {
    if (!row.is_array() || row.size() != 5)
      throw InputError(where, "attention_causal_tflops.rows", "expected [s, d, batch_x_heads, fwd, fwd_bwd] rows");
    std::array<double, 3>& sum = by_sd[std::log(row[0].get<double>() * row[1].get<double>())];
    sum[0] += row[3].get<double>() * 1e12 * scale[2];
    sum[1] += row[4].get<double>() * 1e12 * scale[2];
    sum[2] += 1;
  }
  if (by_sd.empty()) throw InputError(where, "attention_causal_tflops.rows", "expected at least one row");
  for (const auto& [log_sd, sum] : by_sd) {
    r.attention_fwd.push_back({log_sd, std::log(sum[0] / sum[2])});
    r.attention_fwd_bwd.push_back({log_sd, std::log(sum[1] / sum[2])});
  }
  return r;
}

}  // namespace sextant
