// `sextant profile`: measures the machine it runs on, nccl-tests style.
//   GEMM:        achieved FLOP/s over a grid of (m, n, k) shapes and dtypes (LibTorch:
//                OpenBLAS/oneDNN on CPU, cuBLAS on GPU);
//   memory:      copy bandwidth (bytes read + written per second), and the rate of a
//                layer's memory-bound ops;
//   GEMM and memory figures are each the median over `passes` passes of the whole set;
//                on a GPU each figure times batches of back-to-back repetitions between
//                CUDA events (median_s_per_rep below), so it is the device's time per
//                run and not one launch plus one synchronize (where the host's dispatch
//                of one run outlasts its kernels, the smallest shapes, the figure is
//                that dispatch rate: the GPU idles between kernels inside the batch);
//   collectives: all-reduce, reduce-scatter, all-gather, send/recv for 1 KiB - 256 MiB on
//                every power-of-two group size the job has, with algorithm and bus
//                bandwidth (bus = algorithm x the collective's bus factor).
// The result is one ProfileData (cost_model/profile_data.h) with the machine, library
// versions and date.
#pragma once

#include <functional>
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

// Times a batch of work as one interval.
class IntervalClock {
 public:
  virtual ~IntervalClock() = default;
  virtual void start() = 0;
  // Seconds since start(), read once all the work issued since start() has finished.
  virtual double stop_s() = 0;
};

// The host's steady clock; `wait` (a device synchronize, or nothing on CPU) runs before
// the end is read.
class HostClock final : public IntervalClock {
 public:
  explicit HostClock(std::function<void()> wait = [] {}) : wait_(std::move(wait)) {}
  void start() override;
  double stop_s() override;

 private:
  std::function<void()> wait_;
  double start_s_ = 0;
};

struct BatchTimingOptions {
  int warmup = 2;         // untimed runs first: allocations, library heuristics, clocks ramping up
  int batches = 5;        // timed batches; the median is kept
  double batch_s = 0.01;  // each batch repeats the work until it lasts at least this long...
  int max_reps = 1000;    // ...but at most this many times
};

// Seconds per run of a batch of `reps` runs that took `elapsed_s` in all: elapsed_s / reps.
double seconds_per_rep(double elapsed_s, int reps);

// Runs that fill `batch_s` when one takes `one_s`: ceil(batch_s / one_s), within [1, max_reps].
int reps_to_fill(double one_s, double batch_s, int max_reps);

// `options.warmup` untimed runs, one timed run to size the batches (reps_to_fill), then
// `options.batches` batches of that many back-to-back runs, each timed by `clock` as one
// interval; returns the median over batches of seconds per run. Timing a batch rather than
// each run takes a GPU's launch latency and the host's synchronize out of the figure.
double median_s_per_rep(const std::function<void()>& run, IntervalClock& clock,
                        const BatchTimingOptions& options = {});

// Collective over the world; rank 0 writes progress lines to `progress`.
ProfileData measure_profile(const ProfileOptions& options, Comm& world, std::ostream& progress);

}  // namespace sextant
