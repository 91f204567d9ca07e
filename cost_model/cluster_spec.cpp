// ClusterSpec reader: units in the JSON are the ones spec sheets use (TFLOP/s, GiB,
// GB/s, Gbit/s for NICs, µs); everything is converted to bytes, seconds and FLOP/s here.
#include "cost_model/cluster_spec.h"

#include <array>

#include <thread>
#include <unistd.h>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"
#include "cost_model/kernel_rates.h"

namespace sextant {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr double kGB = 1e9;
constexpr double kTera = 1e12;

DeviceSpec read_device(const JsonFields& d) {
  DeviceSpec dev;
  dev.name = d.string("name");
  const std::string type = d.string_or("type", "gpu");
  if (type != "gpu" && type != "cpu") throw InputError(d.where(), "device.type", "expected gpu or cpu");
  dev.is_gpu = type == "gpu";
  JsonFields peak = d.object("peak_tflops");
  dev.peak_fp32_flops_per_s = peak.number("fp32", 1e-6, 1e6) * kTera;
  dev.peak_bf16_flops_per_s = peak.number_or("bf16", dev.peak_fp32_flops_per_s / kTera, 1e-6, 1e6) * kTera;
  dev.peak_fp16_flops_per_s = peak.number_or("fp16", dev.peak_bf16_flops_per_s / kTera, 1e-6, 1e6) * kTera;
  dev.memory_bytes = d.number("memory_gib", 1e-3, 1e6) * kGiB;
  dev.memory_bw_bytes_per_s = d.number("memory_bandwidth_gb_per_s", 1e-3, 1e6) * kGB;
  dev.gemm_efficiency = d.number_or("gemm_efficiency", 1.0, 0.01, 1.0);
  dev.sustained_clock_ratio = d.number_or("sustained_clock_ratio", 1.0, 0.1, 1.0);
  dev.memory_bw_efficiency = d.number_or("memory_bandwidth_efficiency", 1.0, 0.01, 1.0);
  dev.reserved_bytes = d.number_or("reserved_gib", 0.0, 0.0, 1e6) * kGiB;
  dev.sm_count = d.integer_or("sm_count", 0, 0, 1 << 20);
  if (d.has("kernels")) {
    if (!d.json().at("kernels").is_object())
      throw InputError(d.where(), "device.kernels",
                       "expected a kernel-rate table (a built-in table's name is resolved only when the cluster is "
                       "loaded by name or path)");
    // A table measured on another device, scaled to this one (the cluster's source says how).
    std::array<double, 3> scale{1.0, 1.0, 1.0};
    if (d.has("kernel_scale")) {
      const JsonFields k = d.object("kernel_scale");
      scale = {k.number("gemm", 1e-3, 1e3), k.number("memory", 1e-3, 1e3), k.number("attention", 1e-3, 1e3)};
    }
    dev.kernels = std::make_shared<const KernelRates>(
        kernel_rates_from_json(d.json().at("kernels"), d.where() + ": device.kernels", scale));
  }
  return dev;
}

}  // namespace

Precision precision_from_string(const std::string& text, const std::string& where) {
  if (text == "bf16") return Precision::bf16;
  if (text == "fp16") return Precision::fp16;
  if (text == "fp32") return Precision::fp32;
  throw InputError(where, "", "unknown precision \"" + text + "\"; allowed: bf16, fp16, fp32");
}

const char* to_string(Precision p) {
  switch (p) {
    case Precision::bf16: return "bf16";
    case Precision::fp16: return "fp16";
    case Precision::fp32: return "fp32";
  }
  return "?";
}

double DeviceSpec::peak_flops_per_s(Precision p) const {
  switch (p) {
    case Precision::bf16: return peak_bf16_flops_per_s;
    case Precision::fp16: return peak_fp16_flops_per_s;
    case Precision::fp32: return peak_fp32_flops_per_s;
  }
  return peak_fp32_flops_per_s;
}

ClusterSpec cluster_spec_from_json(const nlohmann::json& json, const std::string& where) {
  JsonFields f(json, where);
  ClusterSpec c;
  c.name = f.string("name");
  c.source = f.string_or("source", "");
  c.device = read_device(f.object("device"));
  c.max_nodes = f.integer("nodes", 1, 1 << 20);
  if (f.has("devices_per_node") && f.json().at("devices_per_node") == "auto") {
    // "auto": this machine's cores, each one rank (used by local-cpu).
    c.devices_per_node = std::max(1u, std::thread::hardware_concurrency());
    long pages = sysconf(_SC_PHYS_PAGES), page_bytes = sysconf(_SC_PAGE_SIZE);
    if (pages > 0 && page_bytes > 0)
      c.device.memory_bytes = static_cast<double>(pages) * page_bytes / c.devices_per_node;
  } else {
    c.devices_per_node = f.integer("devices_per_node", 1, 1 << 12);
  }
  JsonFields intra = f.object("intra_node");
  c.intra_bw_bytes_per_s = intra.number("bandwidth_gb_per_s", 1e-3, 1e6) * kGB;
  c.intra_latency_s = intra.number_or("latency_us", 1.0, 0.0, 1e6) * 1e-6;
  c.intra_collective_efficiency = intra.number_or("collective_efficiency", 1.0, 0.01, 1.0);
  if (c.max_nodes > 1) {
    JsonFields inter = f.object("inter_node");
    c.nics_per_node = inter.integer("nics_per_node", 1, 1 << 10);
    c.nic_bw_bytes_per_s = inter.number("nic_gbit_per_s", 1e-3, 1e6) * kGB / 8.0;
    c.inter_latency_s = inter.number_or("latency_us", 5.0, 0.0, 1e6) * 1e-6;
    c.inter_collective_efficiency = inter.number_or("collective_efficiency", 1.0, 0.01, 1.0);
    c.nodes_per_leaf = inter.integer_or("nodes_per_leaf", c.max_nodes, 1, 1 << 20);
    c.oversubscription = inter.number_or("oversubscription", 1.0, 1.0, 1e3);
  }
  if (f.has("host")) {
    JsonFields host = f.object("host");
    c.pcie_bw_bytes_per_s = host.number_or("pcie_bandwidth_gb_per_s", 0.0, 0.0, 1e6) * kGB;
    c.host_memory_bw_bytes_per_s = host.number_or("memory_bandwidth_gb_per_s", 0.0, 0.0, 1e6) * kGB;
    c.host_memory_bytes = host.number_or("memory_gib", 0.0, 0.0, 1e9) * kGiB;
  }
  return c;
}

ClusterSpec share_cpu_node(const ClusterSpec& cluster, int64_t ranks) {
  if (cluster.device.is_gpu || cluster.max_nodes != 1 || ranks <= cluster.devices_per_node) return cluster;
  ClusterSpec c = cluster;
  const double share = static_cast<double>(cluster.devices_per_node) / static_cast<double>(ranks);
  c.devices_per_node = ranks;
  for (double* v : {&c.device.peak_bf16_flops_per_s, &c.device.peak_fp16_flops_per_s, &c.device.peak_fp32_flops_per_s,
                    &c.device.memory_bw_bytes_per_s, &c.device.memory_bytes})
    *v *= share;
  return c;
}

nlohmann::json cluster_spec_to_json(const ClusterSpec& c) {
  return {{"name", c.name},
          {"device", c.device.name},
          {"nodes", c.max_nodes},
          {"devices_per_node", c.devices_per_node},
          {"peak_bf16_tflops", c.device.peak_bf16_flops_per_s / kTera},
          {"memory_gib", c.device.memory_bytes / kGiB},
          {"intra_node_gb_per_s", c.intra_bw_bytes_per_s / kGB},
          {"nic_gbit_per_s", c.nic_bw_bytes_per_s * 8 / kGB},
          {"nics_per_node", c.nics_per_node}};
}

}  // namespace sextant
