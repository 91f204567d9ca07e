// ClusterSpec: the hardware a plan runs on — the device (peak FLOP/s by dtype, memory
// size and bandwidth), the intra-node fabric, the NICs and the inter-node network.
// Read from JSON (schema in README.md); built-in descriptions live in profiles/.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

namespace sextant {

class MeasuredProfile;
struct KernelRates;

enum class Precision { bf16, fp16, fp32 };
Precision precision_from_string(const std::string& text, const std::string& where);
const char* to_string(Precision precision);
inline int64_t bytes_per_element(Precision p) { return p == Precision::fp32 ? 4 : 2; }

struct DeviceSpec {
  std::string name;
  bool is_gpu = true;
  double peak_bf16_flops_per_s = 0;  // dense
  double peak_fp16_flops_per_s = 0;
  double peak_fp32_flops_per_s = 0;
  double memory_bytes = 0;
  double memory_bw_bytes_per_s = 0;
  double gemm_efficiency = 1;       // achieved / peak on large GEMMs (microbenchmark)
  // Clock sustained under the power limit in long matmul-bound runs / the boost clock
  // at which peak and short microbenchmarks are quoted.
  double sustained_clock_ratio = 1;
  double memory_bw_efficiency = 1;  // achieved / peak on streaming copies
  double reserved_bytes = 0;        // runtime context and allocator reserve, not usable
  int64_t sm_count = 0;             // > 0: model GEMM wave quantisation over this many SMs
  // Measured kernel rates (profiles/kernels/): GEMMs by shape, memory-bound ops by kind,
  // flash attention, launch floor. Absent: the peak × efficiency figures above.
  std::shared_ptr<const KernelRates> kernels;
  // When planning with --profile: measured GEMM rates, bandwidth and intra-node collectives
  // replace the figures above.
  std::shared_ptr<const MeasuredProfile> measured;

  double peak_flops_per_s(Precision p) const;
};

struct ClusterSpec {
  std::string name;
  std::string source;  // where the figures come from
  DeviceSpec device;
  int64_t max_nodes = 1;
  int64_t devices_per_node = 1;
  // Intra-node fabric, per device and direction.
  double intra_bw_bytes_per_s = 0;
  double intra_latency_s = 0;
  double intra_collective_efficiency = 1;  // bus bandwidth achieved / link bandwidth
  // Inter-node network.
  int64_t nics_per_node = 0;
  double nic_bw_bytes_per_s = 0;  // per NIC and direction
  double inter_latency_s = 0;
  double inter_collective_efficiency = 1;
  int64_t nodes_per_leaf = 1;     // fat-tree: nodes under one leaf switch
  double oversubscription = 1;    // leaf down-links : up-links
  // Host side, for offload.
  double pcie_bw_bytes_per_s = 0;       // per device and direction
  double host_memory_bw_bytes_per_s = 0;  // per node
  double host_memory_bytes = 0;           // per node

  int64_t max_devices() const { return max_nodes * devices_per_node; }
};

// Reads a cluster description; `where` names its source in errors. Throws InputError.
ClusterSpec cluster_spec_from_json(const nlohmann::json& json, const std::string& where);
nlohmann::json cluster_spec_to_json(const ClusterSpec& cluster);

// A single CPU node runs more ranks than it has cores (mpirun --oversubscribe): the ranks
// share the node, so each gets cores/ranks of its compute, memory bandwidth and memory.
// Returns the cluster unchanged otherwise.
ClusterSpec share_cpu_node(const ClusterSpec& cluster, int64_t ranks);

}  // namespace sextant
