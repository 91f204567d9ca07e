// `sextant profile`: measures the machine it runs on, nccl-tests style.
//   GEMM:        achieved FLOP/s over a grid of (m, n, k) shapes and dtypes (LibTorch:
//                OpenBLAS/oneDNN on CPU, cuBLAS on GPU);
//   memory:      copy bandwidth (bytes read + written per second), and the rate of a
//                layer's memory-bound ops;
//   GEMM and memory figures are each the median over `passes` passes of the whole set;
//   collectives: all-reduce, reduce-scatter, all-gather, send/recv for 1 KiB - 256 MiB on
//                every power-of-two group size the job has, with algorithm and bus
//                bandwidth (bus = algorithm x the collective's bus factor).
// The result is one ProfileData (cost_model/profile_data.h) with the machine, library
// versions and date.
#pragma once

#include <iosfwd>
#include <string>

#include "cost_model/profile_data.h"
#include "executor/comm.h"

namespace sextant {

struct ProfileOptions {
  std::string name = "local";
  std::string db = "sextant.db";
  bool quick = false;  // a smaller grid, for tests
  int passes = 3;      // GEMM, copy and elementwise figures: the median of this many passes
};

// Collective over the world; rank 0 writes progress lines to `progress`.
ProfileData measure_profile(const ProfileOptions& options, Comm& world, std::ostream& progress);

}  // namespace sextant
