// A measured profile (`sextant profile`) as plain data: what the profiler measured, with
// the machine and libraries it ran on. The profiler fills it, the store keeps it as JSON,
// MeasuredProfile interpolates it. profile_to_json and profile_from_json are the one
// writer and the one reader of that JSON; its keys are the ones stored since the first
// profile, and fields added later (elementwise rate, passes) are optional when read, so
// every profile already in a store still loads.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cost_model/collective.h"

namespace sextant {

struct ProfileMachine {
  std::string hostname, cpu;  // cpu: /proc/cpuinfo's model name, "unknown" if none
  int64_t cores = 0;          // std::thread::hardware_concurrency (0: not known)
  std::string device;         // "cpu", or "cuda: <name>" for the GPU the figures come from
  bool operator==(const ProfileMachine& o) const;
};

struct ProfileLibraries {
  std::string torch, mpi;  // versions
  bool operator==(const ProfileLibraries& o) const;
};

// Achieved FLOP/s of one m×k by k×n GEMM: the median over the passes.
struct GemmPoint {
  std::string dtype;  // "fp32" or "bf16"
  int64_t m = 0, n = 0, k = 0;
  double flops_per_s = 0;
  bool operator==(const GemmPoint& o) const;
};

// One collective at one size over `ranks`, nccl-tests style: `bytes` is the full buffer,
// algbw = bytes / time, busbw = algbw × bus_factor(op, ranks).
struct CollectivePoint {
  Collective op = Collective::all_reduce;
  int64_t ranks = 0, bytes = 0;
  double time_s = 0, algbw_bytes_per_s = 0, busbw_bytes_per_s = 0;
  bool operator==(const CollectivePoint& o) const;
};

// How far the passes moved apart: max / min − 1 of a figure's passes (for GEMMs, the
// median of that over the shapes).
struct PassSpread {
  double gemm_median = 0, copy = 0, elementwise = 0;
  bool operator==(const PassSpread& o) const;
};

struct ProfileData {
  std::string name;  // the name it is stored under
  std::string date;  // UTC, ISO 8601
  ProfileMachine machine;
  ProfileLibraries libraries;
  int64_t ranks = 1;  // the job's world size
  std::vector<GemmPoint> gemm;
  double memory_bandwidth_bytes_per_s = 0;  // copy: bytes read + written per second
  // A layer's memory-bound ops; absent in profiles that predate the measurement.
  std::optional<double> elementwise_bytes_per_s;
  // Passes over GEMM, copy and elementwise figures; absent in profiles before passes.
  std::optional<int64_t> passes;
  std::optional<PassSpread> spread_across_passes;
  std::vector<CollectivePoint> collectives;
  bool operator==(const ProfileData& o) const;
  bool operator!=(const ProfileData& o) const { return !(*this == o); }
};

nlohmann::json profile_to_json(const ProfileData& profile);
// The machine and libraries parts of that JSON, for what records a profile by reference
// (the plan file).
nlohmann::json machine_to_json(const ProfileMachine& machine);
nlohmann::json libraries_to_json(const ProfileLibraries& libraries);
// Checks every field; InputError naming `where` and the field (e.g. "gemm[3]: m") if
// one is missing or out of range.
ProfileData profile_from_json(const nlohmann::json& json, const std::string& where);

}  // namespace sextant
