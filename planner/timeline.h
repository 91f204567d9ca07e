// One training step as a timeline of events, and the Chrome trace-event JSON both
// `sextant simulate` (the predicted step) and `sextant execute --trace` (a measured step)
// write; it opens in Perfetto (ui.perfetto.dev) or chrome://tracing.
//
// The predicted step is the plan's schedule table (cost_model/schedule.h) walked with each
// chunk's costs (StageTable::chunk_times, the numbers predict() sums), one process per
// pipeline stage: no physics is computed here. Each op of the table is drawn as its parts
// in the order the executor runs them: forward = compute, tp comm, ep all-to-all (MoE),
// p2p send; backward = recompute, compute, tp comm, ep all-to-all, p2p send. After the last op, the
// step-level parts of the prediction (TimeBreakdown): exposed dp communication, optimizer, offload.
// Its span is the prediction's step time (scaled by the calibration where the plan has one).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cost_model/estimator.h"
#include "cost_model/layout.h"
#include "planner/plan_file.h"

namespace sextant {

// Threads of a trace process (Chrome "tid"), one per kind of work.
enum class TraceThread { compute = 0, tp_comm = 1, p2p = 2, dp_comm = 3 };
const char* to_string(TraceThread thread);  // "compute", "tp comm", "p2p", "dp comm"

// Event names, shared by the predicted and the measured trace.
namespace trace_name {
inline constexpr const char* forward = "forward";
inline constexpr const char* backward = "backward";
inline constexpr const char* recompute = "recompute";
inline constexpr const char* tp_comm = "tp comm";
inline constexpr const char* ep_all_to_all = "ep all-to-all";  // MoE dispatch + combine
inline constexpr const char* p2p_send = "p2p send";
inline constexpr const char* p2p_recv = "p2p recv";
inline constexpr const char* dp_reduce = "dp reduce";
inline constexpr const char* optimizer = "optimizer";
inline constexpr const char* offload = "offload";
}  // namespace trace_name
// Every name above: what a trace of either kind may hold.
const std::vector<std::string>& trace_event_names();

struct TraceEvent {
  std::string name, category;
  int64_t process = 0;  // Chrome pid: pipeline stage (predicted) or world rank (measured)
  TraceThread thread = TraceThread::compute;
  double start_us = 0, duration_us = 0;
  nlohmann::json args = nlohmann::json::object();
};

struct TraceProcess {
  int64_t id = 0;
  std::string name;
};

struct Timeline {
  std::vector<TraceProcess> processes;
  std::vector<TraceEvent> events;
  nlohmann::json about = nlohmann::json::object();  // written as the trace's "otherData"
  double span_us() const;  // max(start + duration) - min(start); 0 without events
};

// The predicted step of `layout` with per-chunk costs `table` and step-level parts `time`
// (dp_comm_s exposed, optimizer_s, offload_s), every time multiplied by `scale`.
Timeline build_timeline(const ParallelLayout& layout, const StageTable& table,
                        const TimeBreakdown& time, double scale = 1.0);

// The predicted step of a plan file. `cluster`: the plan's cluster with the device figures
// its prediction came from (the measured profile the plan names, which the caller loads).
// Rebuilds the stage table as the search did; InputError naming `where` when the plan was
// made by another cost model or its prediction cannot be reproduced (plan again).
Timeline plan_timeline(const PlanFile& plan, const ClusterSpec& cluster, const std::string& where);

// "ranks 0-3, 8-11": the ranks of a pipeline stage, as ranges.
std::string stage_ranks_text(const ParallelLayout& layout, int64_t stage);

// {"traceEvents": [metadata events, complete events], "displayTimeUnit": "ms", "otherData"}.
nlohmann::json timeline_to_chrome_json(const Timeline& timeline);
// Through a temporary file and a rename; InputError(field, path, ...) when it cannot.
void write_chrome_trace(const std::string& path, const Timeline& timeline,
                        const std::string& field);

}  // namespace sextant
