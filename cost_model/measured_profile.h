// A measured profile (`sextant profile`) as the cost model uses it: achieved GEMM rates
// interpolated by shape, copy bandwidth, and per collective and group size a latency and
// bus bandwidth fitted to the measured times. Applies to the devices and the intra-node
// fabric; what was not measured falls back to the cluster description.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "cost_model/cluster_spec.h"
#include "cost_model/collective.h"
#include "cost_model/kernel_rates.h"
#include "cost_model/profile_data.h"

namespace sextant {

class MeasuredProfile {
 public:
  // `profile` as `sextant profile` measured it; InputError naming `where` if its GEMM
  // shapes do not form a full grid or lack fp32.
  MeasuredProfile(const ProfileData& profile, int64_t id, const std::string& where);

  int64_t id() const { return id_; }
  const std::string& name() const { return name_; }
  // Achieved FLOP/s for an m×k by k×n GEMM: trilinear in log(size) and log(rate) on the
  // measured grid, clamped at its edges. fp16 uses the bf16 measurements.
  double gemm_flops_per_s(Precision precision, double m, double n, double k) const;
  double memory_bw_bytes_per_s() const { return memory_bw_; }
  // Bytes/s that a layer's memory-bound ops (norm, activation, softmax, residual add)
  // achieve: copy bandwidth on a GPU, far less on a CPU core, where they are bound by
  // arithmetic (tanh, exp). Copy bandwidth when the profile predates the measurement.
  double elementwise_bw_bytes_per_s() const { return elementwise_bw_; }
  // Fit for a collective over `ranks`, or nullptr when that size was not measured.
  const CollectiveFit* collective(Collective op, int64_t ranks) const;

 private:
  int64_t id_;
  std::string name_;
  std::map<std::string, LogGrid> gemm_;  // by dtype name
  double memory_bw_ = 0, elementwise_bw_ = 0;
  std::map<std::pair<Collective, int64_t>, CollectiveFit> collectives_;
};

// Fits time = latency + bytes / rate to (bytes, time) points, weighting each point by
// 1/time² so small and large messages count alike (relative error). Returns
// {latency_s, rate}; latency is kept >= 0.
std::pair<double, double> fit_latency_bandwidth(const std::vector<std::pair<double, double>>& bytes_time);

}  // namespace sextant
