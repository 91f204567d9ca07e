// Schedule tables and their discrete-event simulation.
#include "cost_model/schedule.h"

#include <algorithm>
#include <sstream>
#include <stdexcept>

namespace sextant {

int64_t max_in_flight_chunks(int64_t pp, int64_t vpp, int64_t m, int64_t stage) {
  if (vpp == 1) return std::min(pp - stage, m);
  return std::min(2 * (pp - stage - 1) + (vpp - 1) * pp + 1, m * vpp);
}

Schedule make_schedule(int64_t pp, int64_t vpp, int64_t m) {
  if (pp < 1 || vpp < 1 || m < 1) throw std::invalid_argument("make_schedule: sizes must be >= 1");
  if (vpp > 1 && m % pp != 0)
    throw std::invalid_argument("make_schedule: interleaving needs micro-batches divisible by pp");
  Schedule s{pp, m, vpp, std::vector<std::vector<ScheduleOp>>(static_cast<size_t>(pp))};
  const int64_t total = m * vpp;
  for (int64_t stage = 0; stage < pp; ++stage) {
    auto chunk_of = [&](int64_t k, bool forward) {
      int64_t c = (k / pp) % vpp;
      return forward ? c : vpp - 1 - c;
    };
    auto micro_of = [&](int64_t k) { return vpp == 1 ? k : (k / (pp * vpp)) * pp + k % pp; };
    const int64_t warmup =
        vpp == 1 ? std::min(pp - stage - 1, m) : std::min(2 * (pp - stage - 1) + (vpp - 1) * pp, total);
    auto& ops = s.ops[static_cast<size_t>(stage)];
    int64_t next_f = 0, next_b = 0;
    auto push_f = [&] { ops.push_back({stage, micro_of(next_f), chunk_of(next_f, true), PipeOp::forward}); ++next_f; };
    auto push_b = [&] { ops.push_back({stage, micro_of(next_b), chunk_of(next_b, false), PipeOp::backward}); ++next_b; };
    for (int64_t i = 0; i < warmup; ++i) push_f();
    while (next_f < total) {
      push_f();
      push_b();
    }
    while (next_b < total) push_b();
  }
  return s;
}

SimulationResult simulate(const Schedule& s, const std::vector<std::vector<double>>& fwd_s,
                          const std::vector<std::vector<double>>& bwd_s, double p2p_s) {
  const int64_t p = s.stages, v = s.chunks;
  // finish[(op·m + micro)·p·v + g], global chunk g = chunk·p + stage; < 0 until it ran.
  // A flat table: the planner walks its final candidates' schedules (thousands of ops).
  const int64_t m = s.micro_batches;
  std::vector<double> finish(static_cast<size_t>(2 * m * p * v), -1.0);
  auto at = [&](int kind, int64_t micro, int64_t g) -> double& {
    return finish[static_cast<size_t>((kind * m + micro) * p * v + g)];
  };
  std::vector<size_t> next(static_cast<size_t>(p), 0);
  std::vector<double> free_at(static_cast<size_t>(p), 0.0);
  SimulationResult result;
  result.peak_in_flight.assign(static_cast<size_t>(p), 0);
  for (const auto& ops : s.ops) result.start_s.emplace_back(ops.size(), 0.0);
  std::vector<int64_t> in_flight(static_cast<size_t>(p), 0);
  size_t remaining = 0;
  for (const auto& ops : s.ops) remaining += ops.size();
  while (remaining > 0) {
    bool progressed = false;
    for (int64_t stage = 0; stage < p; ++stage) {
      const auto& ops = s.ops[static_cast<size_t>(stage)];
      size_t& i = next[static_cast<size_t>(stage)];
      while (i < ops.size()) {
        const ScheduleOp& op = ops[i];
        const int64_t g = op.chunk * p + stage;
        double ready = 0;
        bool deps_done = true;
        auto need = [&](int kind, int64_t gg, double extra) {
          const double done = at(kind, op.micro_batch, gg);
          if (done < 0) deps_done = false;
          else ready = std::max(ready, done + extra);
        };
        if (op.op == PipeOp::forward) {
          if (g > 0) need(0, g - 1, p2p_s);
        } else {
          need(0, g, 0.0);
          if (g < p * v - 1) need(1, g + 1, p2p_s);
        }
        if (!deps_done) break;
        const double start = std::max(ready, free_at[static_cast<size_t>(stage)]);
        result.start_s[static_cast<size_t>(stage)][i] = start;
        const auto& dur = op.op == PipeOp::forward ? fwd_s : bwd_s;
        const double end = start + dur[static_cast<size_t>(stage)][static_cast<size_t>(op.chunk)];
        at(op.op == PipeOp::forward ? 0 : 1, op.micro_batch, g) = end;
        free_at[static_cast<size_t>(stage)] = end;
        int64_t& f = in_flight[static_cast<size_t>(stage)];
        f += op.op == PipeOp::forward ? 1 : -1;
        result.peak_in_flight[static_cast<size_t>(stage)] =
            std::max(result.peak_in_flight[static_cast<size_t>(stage)], f);
        result.step_s = std::max(result.step_s, end);
        ++i;
        --remaining;
        progressed = true;
      }
    }
    if (!progressed) throw std::logic_error("simulate: schedule deadlocks");
  }
  return result;
}

std::string schedule_to_string(const Schedule& s) {
  std::ostringstream out;
  for (const auto& ops : s.ops) {
    for (const ScheduleOp& op : ops)
      out << (op.op == PipeOp::forward ? 'F' : 'B') << op.micro_batch
          << (s.chunks > 1 ? "." + std::to_string(op.chunk) : "") << ' ';
    out << '\n';
  }
  return out.str();
}

}  // namespace sextant
