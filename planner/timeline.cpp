// The predicted step's timeline and the Chrome trace-event writer (see timeline.h).
#include "planner/timeline.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

#include "cost_model/error.h"
#include "cost_model/schedule.h"
#include "planner/plan_output.h"
#include "planner/search.h"

namespace sextant {
namespace {

// Appends events in seconds on the step's clock; the timeline holds microseconds, scaled.
class EventWriter {
 public:
  EventWriter(Timeline& out, double scale) : out_(out), scale_(scale) {}
  // One event from start_s lasting duration_s (none when it lasts nothing); returns its end.
  double add(int64_t stage, TraceThread thread, const char* name, const char* category,
             double start_s, double duration_s, const nlohmann::json& args) {
    if (duration_s > 0)
      out_.events.push_back(
          {name, category, stage, thread, start_s * scale_ * 1e6, duration_s * scale_ * 1e6, args});
    return start_s + duration_s;
  }

 private:
  Timeline& out_;
  double scale_;
};

// One op of the schedule table, its parts one after another from start_s (Megatron-LM's
// tensor-parallel collectives and pipeline sends are not overlapped with compute).
void draw_op(EventWriter& w, const ScheduleOp& op, const StageTable& table, double start_s) {
  const int64_t g = op.chunk * table.pp + op.stage;
  const ChunkTime& c = table.chunk_times[static_cast<size_t>(g)];
  const nlohmann::json args = {
      {"micro_batch", op.micro_batch}, {"chunk", op.chunk}, {"global_chunk", g}};
  double t = start_s;
  if (op.op == PipeOp::forward) {
    t = w.add(op.stage, TraceThread::compute, trace_name::forward, "compute", t, c.fwd_compute_s,
              args);
    t = w.add(op.stage, TraceThread::tp_comm, trace_name::tp_comm, "tp-comm", t, c.fwd_tp_comm_s,
              args);
    t = w.add(op.stage, TraceThread::tp_comm, trace_name::ep_all_to_all, "ep-comm", t,
              c.fwd_ep_comm_s, args);
    nlohmann::json send = args;
    send["to_stage"] = (g + 1) % table.pp;
    send["what"] = "activation";
    w.add(op.stage, TraceThread::p2p, trace_name::p2p_send, "p2p", t, c.fwd_p2p_s, send);
    return;
  }
  t = w.add(op.stage, TraceThread::compute, trace_name::recompute, "recompute", t, c.recompute_s,
            args);
  t = w.add(op.stage, TraceThread::compute, trace_name::backward, "compute", t, c.bwd_compute_s,
            args);
  t = w.add(op.stage, TraceThread::tp_comm, trace_name::tp_comm, "tp-comm", t, c.bwd_tp_comm_s,
            args);
  t = w.add(op.stage, TraceThread::tp_comm, trace_name::ep_all_to_all, "ep-comm", t,
            c.bwd_ep_comm_s, args);
  nlohmann::json send = args;
  send["to_stage"] = (g - 1 + table.pp) % table.pp;
  send["what"] = "input gradient";
  w.add(op.stage, TraceThread::p2p, trace_name::p2p_send, "p2p", t, c.bwd_p2p_s, send);
}

// The durations simulate() walks the table with: each chunk's whole forward and backward.
void op_durations(const StageTable& table, std::vector<std::vector<double>>& fwd_s,
                  std::vector<std::vector<double>>& bwd_s) {
  const size_t pp = static_cast<size_t>(table.pp), vpp = static_cast<size_t>(table.vpp);
  fwd_s.assign(pp, std::vector<double>(vpp, 0.0));
  bwd_s.assign(pp, std::vector<double>(vpp, 0.0));
  for (size_t g = 0; g < table.chunk_times.size(); ++g) {
    fwd_s[g % pp][g / pp] = table.chunk_times[g].fwd_s();
    bwd_s[g % pp][g / pp] = table.chunk_times[g].bwd_s();
  }
}

}  // namespace

const char* to_string(TraceThread thread) {
  switch (thread) {
    case TraceThread::compute:
      return "compute";
    case TraceThread::tp_comm:
      return "tp comm";
    case TraceThread::p2p:
      return "p2p";
    case TraceThread::dp_comm:
      return "dp comm";
  }
  return "compute";
}

const std::vector<std::string>& trace_event_names() {
  static const std::vector<std::string> names = {
      trace_name::forward,       trace_name::backward, trace_name::recompute, trace_name::tp_comm,
      trace_name::ep_all_to_all, trace_name::p2p_send, trace_name::p2p_recv,  trace_name::dp_reduce,
      trace_name::optimizer,     trace_name::offload};
  return names;
}

double Timeline::span_us() const {
  if (events.empty()) return 0;
  double first = std::numeric_limits<double>::max(), last = std::numeric_limits<double>::lowest();
  for (const TraceEvent& e : events) {
    first = std::min(first, e.start_us);
    last = std::max(last, e.start_us + e.duration_us);
  }
  return last - first;
}

std::string stage_ranks_text(const ParallelLayout& layout, int64_t stage) {
  std::vector<int64_t> ranks;
  for (int64_t r = 0; r < layout.world_size(); ++r)
    if (rank_to_coord(layout, r).pp == stage) ranks.push_back(r);
  std::ostringstream out;
  out << (ranks.size() == 1 ? "rank " : "ranks ");
  for (size_t i = 0; i < ranks.size();) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    out << (i > 0 ? ", " : "") << ranks[i];
    if (j > i) out << "-" << ranks[j];
    i = j + 1;
  }
  return out.str();
}

Timeline build_timeline(const ParallelLayout& l, const StageTable& table, const TimeBreakdown& time,
                        double scale) {
  Timeline out;
  EventWriter w(out, scale);
  std::vector<std::vector<double>> fwd_s, bwd_s;
  op_durations(table, fwd_s, bwd_s);
  const Schedule schedule = make_schedule(l.pp, l.vpp, l.grad_accum);
  const SimulationResult walk = simulate(schedule, fwd_s, bwd_s, 0.0);  // p2p is inside the ops
  for (int64_t stage = 0; stage < l.pp; ++stage) {
    out.processes.push_back(
        {stage, "stage " + std::to_string(stage) + " (" + stage_ranks_text(l, stage) + ")"});
    const auto& ops = schedule.ops[static_cast<size_t>(stage)];
    for (size_t i = 0; i < ops.size(); ++i) {
      const double start_s = walk.start_s[static_cast<size_t>(stage)][i];
      draw_op(w, ops[i], table, start_s);
      // Gradients of a chunk are reduced over dp while its last micro-batch's backward runs
      // (all but the last bucket): drawn over that backward, not on the critical path.
      const ScheduleOp& op = ops[i];
      if (l.dp > 1 && op.op == PipeOp::backward && op.micro_batch == l.grad_accum - 1)
        w.add(stage, TraceThread::dp_comm, trace_name::dp_reduce, "dp-overlapped", start_s,
              bwd_s[static_cast<size_t>(stage)][static_cast<size_t>(op.chunk)],
              {{"chunk", op.chunk},
               {"zero", l.zero},
               {"overlaps", "the last micro-batch's backward"}});
    }
    // After the pipeline, every stage together (the optimizer needs the world's grad norm).
    double t = w.add(
        stage, TraceThread::dp_comm, trace_name::dp_reduce, "dp-exposed", walk.step_s,
        time.dp_comm_s,
        {{"zero", l.zero}, {"part", "exposed: the last bucket, and the zero 1-3 all-gathers"}});
    t = w.add(stage, TraceThread::compute, trace_name::optimizer, "optimizer", t, time.optimizer_s,
              {{"zero", l.zero}});
    w.add(stage, TraceThread::compute, trace_name::offload, "offload", t, time.offload_s,
          {{"offload", to_string(l.offload)}});
  }
  out.about = {
      {"pipeline_s", walk.step_s * scale},
      {"step_s", (walk.step_s + time.dp_comm_s + time.optimizer_s + time.offload_s) * scale},
      {"scale", scale},
      {"layout", layout_to_string(l)}};
  return out;
}

Timeline plan_timeline(const PlanFile& plan, const ClusterSpec& cluster, const std::string& where) {
  if (plan.cost_model_version != kCostModelVersion)
    throw InputError(where, "cost_model_version",
                     "\"" + plan.cost_model_version + "\" made this plan, this sextant has \"" +
                         kCostModelVersion + "\"; plan again with this sextant");
  SearchRequest request;
  request.model = plan.model;
  request.cluster = cluster;
  request.gpus = plan.gpus;
  request.job = plan.job;
  const Candidate c = evaluate_layout(request, plan.layout);
  if (chunks_of(*c.table) != plan.partition)
    throw InputError(where, "partition",
                     "is not the one this cost model cuts for the layout; plan again");
  const double planned_s = plan.prediction.time.uncalibrated_step_s;
  const double step_s = c.prediction.time.uncalibrated_step_s;
  if (!(std::abs(step_s - planned_s) <= 1e-9 * planned_s)) {
    std::ostringstream why;
    why << "is " << planned_s << " s but this cost model predicts " << step_s
        << " s for the plan (other device figures?); plan again";
    throw InputError(where, "predicted.time.uncalibrated_step_s", why.str());
  }
  // A calibrated plan's step time is the calibrated one; the trace shows the breakdown's
  // parts stretched by the calibration's overall factor.
  const double scale = plan.prediction.time.step_s / step_s;
  Timeline t = build_timeline(plan.layout, *c.table, c.prediction.time, scale);
  // predict() and the timeline share their terms; a term added to one only is a bug here.
  if (!(std::abs(t.span_us() / 1e6 - plan.prediction.time.step_s) <=
        1e-6 * plan.prediction.time.step_s))
    throw std::logic_error(
        "timeline: span differs from the predicted step; a term of predict() is not drawn");
  t.about["predicted_step_s"] = plan.prediction.time.step_s;
  t.about["model"] = plan.model.name;
  t.about["cluster"] = plan.cluster.name;
  t.about["cost_model_version"] = plan.cost_model_version;
  if (plan.calibration_id > 0) t.about["calibration"] = plan.calibration_id;
  return t;
}

nlohmann::json timeline_to_chrome_json(const Timeline& timeline) {
  nlohmann::json events = nlohmann::json::array();
  for (const TraceProcess& p : timeline.processes) {
    events.push_back({{"ph", "M"},
                      {"name", "process_name"},
                      {"pid", p.id},
                      {"tid", 0},
                      {"args", {{"name", p.name}}}});
    events.push_back({{"ph", "M"},
                      {"name", "process_sort_index"},
                      {"pid", p.id},
                      {"tid", 0},
                      {"args", {{"sort_index", p.id}}}});
    for (TraceThread t :
         {TraceThread::compute, TraceThread::tp_comm, TraceThread::p2p, TraceThread::dp_comm})
      events.push_back({{"ph", "M"},
                        {"name", "thread_name"},
                        {"pid", p.id},
                        {"tid", static_cast<int>(t)},
                        {"args", {{"name", to_string(t)}}}});
  }
  for (const TraceEvent& e : timeline.events)
    events.push_back({{"ph", "X"},
                      {"name", e.name},
                      {"cat", e.category},
                      {"pid", e.process},
                      {"tid", static_cast<int>(e.thread)},
                      {"ts", e.start_us},
                      {"dur", e.duration_us},
                      {"args", e.args}});
  return {{"traceEvents", events}, {"displayTimeUnit", "ms"}, {"otherData", timeline.about}};
}

void write_chrome_trace(const std::string& path, const Timeline& timeline,
                        const std::string& field) {
  write_file_atomically(path, timeline_to_chrome_json(timeline).dump() + "\n", field);
}

}  // namespace sextant
