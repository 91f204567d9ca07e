// Pipeline schedules as data: each stage's ordered list of (micro-batch, chunk, op).
// The simulator walks the table with per-op durations and reports the step time and
// the activations each stage holds at its peak; the executor walks the same table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace sextant {

enum class PipeOp { forward, backward };

struct ScheduleOp {
  int64_t stage = 0;
  int64_t micro_batch = 0;
  int64_t chunk = 0;  // virtual stage index on this rank, 0..vpp-1
  PipeOp op = PipeOp::forward;
  bool operator==(const ScheduleOp& o) const {
    return stage == o.stage && micro_batch == o.micro_batch && chunk == o.chunk && op == o.op;
  }
};

// ops[stage] = the order in which that stage runs its work.
struct Schedule {
  int64_t stages = 1, micro_batches = 1, chunks = 1;
  std::vector<std::vector<ScheduleOp>> ops;
};

// 1F1B (PipeDream-Flush): stage i warms up with min(pp-i-1, m) forwards.
// Interleaved (Megatron-LM, vpp > 1, m a multiple of pp): warm-up
// min(2(pp-i-1) + (vpp-1)·pp, m·vpp) chunk-forwards; chunk of the k-th forward
// (k / pp) mod vpp, micro-batch (k / (pp·vpp))·pp + k mod pp.
Schedule make_schedule(int64_t pp, int64_t vpp, int64_t micro_batches);

// Largest number of forwards whose backward has not run yet, per stage, counted in
// chunk-micro-batches. Closed form the memory model uses, checked against the table.
int64_t max_in_flight_chunks(int64_t pp, int64_t vpp, int64_t micro_batches, int64_t stage);

struct SimulationResult {
  double step_s = 0;
  std::vector<int64_t> peak_in_flight;  // per stage, chunk-micro-batches
  std::vector<std::vector<double>> start_s;  // start_s[stage][i]: when schedule.ops[stage][i] starts
};

// Runs the table: an op starts when its stage is free and its input has arrived
// (the previous chunk's forward, the next chunk's backward) plus p2p_s.
// fwd_s[stage][chunk], bwd_s[stage][chunk] are one micro-batch's durations.
SimulationResult simulate(const Schedule& schedule, const std::vector<std::vector<double>>& fwd_s,
                          const std::vector<std::vector<double>>& bwd_s, double p2p_s);

std::string schedule_to_string(const Schedule& schedule);

}  // namespace sextant
