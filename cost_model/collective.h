// A collective described once, nccl-tests style: its name, the bus factor that turns
// algorithm bandwidth into bus bandwidth, and the latency steps of its algorithm.
// time = steps(n) * latency + bytes * bus_factor(n) / bus_bandwidth
// where `bytes` is the size of the full buffer (nccl-tests' "size").
#pragma once

#include <cmath>
#include <cstdint>

namespace sextant {

enum class Collective { all_reduce, reduce_scatter, all_gather, broadcast, send_recv, all_to_all };
inline constexpr int kCollectiveKinds = 6;

inline const char* to_string(Collective c) {
  switch (c) {
    case Collective::all_reduce: return "all_reduce";
    case Collective::reduce_scatter: return "reduce_scatter";
    case Collective::all_gather: return "all_gather";
    case Collective::broadcast: return "broadcast";
    case Collective::send_recv: return "send_recv";
    case Collective::all_to_all: return "all_to_all";
  }
  return "?";
}

// nccl-tests PERFORMANCE.md: all-reduce 2(n-1)/n; reduce-scatter, all-gather (n-1)/n;
// broadcast and send/recv 1; all-to-all (n-1)/n (alltoall.cu: each rank keeps 1/n of its
// buffer and sends the rest, one slice to every peer).
inline double bus_factor(Collective c, int64_t n) {
  if (n <= 1) return 0.0;
  const double frac = static_cast<double>(n - 1) / static_cast<double>(n);
  switch (c) {
    case Collective::all_reduce: return 2.0 * frac;
    case Collective::reduce_scatter:
    case Collective::all_gather:
    case Collective::all_to_all: return frac;
    case Collective::broadcast:
    case Collective::send_recv: return 1.0;
  }
  return 1.0;
}

// Latency steps: rings for reduce-scatter and all-gather (n-1 steps); all-reduce takes the
// lesser of a ring (2(n-1)) and a tree (2 log2 n), as NCCL picks tree when latency-bound;
// all-to-all posts its n-1 sends and receives at once (one ncclGroup): one step.
inline double latency_steps(Collective c, int64_t n) {
  if (n <= 1) return 0.0;
  const double ring = static_cast<double>(n - 1);
  switch (c) {
    case Collective::all_reduce: return std::min(2.0 * ring, 2.0 * std::ceil(std::log2(n)));
    case Collective::reduce_scatter:
    case Collective::all_gather: return ring;
    case Collective::broadcast: return std::ceil(std::log2(n));
    case Collective::send_recv:
    case Collective::all_to_all: return 1.0;
  }
  return ring;
}

// A measured collective (sextant profile): whole-operation latency and bus bandwidth.
struct CollectiveFit {
  double latency_s = 0;
  double bus_bw_bytes_per_s = 0;
};

// The links a group of ranks crosses: its achievable bus bandwidth and per-step latency,
// and where a profile measured this collective on a group of this size, its fit.
struct GroupLinks {
  int64_t size = 1;
  double bus_bw_bytes_per_s = 0;  // 0 only for a group of one
  double latency_s = 0;
  bool crosses_nodes = false;
  const CollectiveFit* measured[kCollectiveKinds] = {};  // by Collective
};

inline double collective_time_s(Collective c, double bytes, const GroupLinks& links) {
  if (links.size <= 1 || bytes <= 0) return 0.0;
  if (const CollectiveFit* fit = links.measured[static_cast<int>(c)])
    return fit->latency_s + bytes * bus_factor(c, links.size) / fit->bus_bw_bytes_per_s;
  return latency_steps(c, links.size) * links.latency_s +
         bytes * bus_factor(c, links.size) / links.bus_bw_bytes_per_s;
}

}  // namespace sextant
