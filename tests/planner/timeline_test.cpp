// The predicted timeline (planner/timeline.h): its span is the plan's predicted step time,
// each stage runs one op at a time on its compute thread, every (micro-batch, chunk) is
// there once forward and once backward, and the Chrome JSON has the fields viewers need.
#include "planner/timeline.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <tuple>

#include "cost_model/error.h"
#include "planner/plan_file.h"
#include "planner/search.h"
#include "profiles/cluster_catalog.h"

namespace sextant {
namespace {

PlanFile llama_plan(int64_t gpus, int64_t batch, const std::string& fix) {
  SearchRequest r;
  r.model = load_model_spec(SEXTANT_EXAMPLES "/models/llama-2-7b.json", 4096);
  r.cluster = load_cluster("dgx-h100-80gb");
  r.gpus = gpus;
  r.job.global_batch = batch;
  r.job.fp32_grads = true;
  r.fixed = parse_fixed_axes(fix);
  const SearchResult res = search(r);
  EXPECT_EQ(res.candidates.size(), 1u) << fix;
  return plan_file_for(r, res.candidates.front(), nlohmann::json::object(),
                       nlohmann::json::object());
}

const char* const kLayouts[] = {
    "dp=8,tp=4,pp=1,vpp=1,zero=1,micro_batch=1,recompute=selective,sequence_parallel=true,offload="
    "none",
    "dp=2,tp=4,pp=4,vpp=1,zero=1,micro_batch=1,recompute=selective,sequence_parallel=true,offload="
    "none",
    "dp=2,tp=4,pp=4,vpp=2,zero=0,micro_batch=1,recompute=none,sequence_parallel=true,offload=none",
    "dp=4,tp=4,pp=2,vpp=1,zero=3,micro_batch=2,recompute=full,sequence_parallel=false,offload=none",
    "dp=1,tp=8,pp=4,vpp=4,zero=0,micro_batch=1,recompute=full,sequence_parallel=true,offload=none",
};

// MoE: the all-to-all of each op is drawn ("ep all-to-all"), so the span still equals the
// predicted step, and the drawn all-to-all sums to the prediction's ep_comm_s on a uniform
// pipeline's stage 0 (its ops, m micro-batches).
TEST(TimelineOfMoePlan, AllToAllIsDrawnAndTheSpanHolds) {
  SearchRequest r;
  r.model = load_model_spec(SEXTANT_EXAMPLES "/models/mixtral-8x7b.json", 4096);
  r.cluster = load_cluster("dgx-h100-80gb");
  r.gpus = 64;
  r.job.global_batch = 256;
  r.job.fp32_grads = true;
  r.fixed = parse_fixed_axes(
      "dp=16,tp=1,pp=4,vpp=8,ep=8,zero=1,micro_batch=1,recompute=none,"
      "sequence_parallel=false,offload=none");
  const SearchResult res = search(r);
  ASSERT_EQ(res.candidates.size(), 1u);
  const PlanFile plan =
      plan_file_for(r, res.candidates.front(), nlohmann::json::object(), nlohmann::json::object());
  ASSERT_GT(plan.prediction.time.ep_comm_s, 0.0);
  const Timeline t = plan_timeline(plan, plan.cluster, "plan.json");
  EXPECT_NEAR(t.span_us() / 1e6, plan.prediction.time.step_s, 1e-9 * plan.prediction.time.step_s);
  double drawn_s = 0;
  for (const TraceEvent& e : t.events)
    if (e.name == trace_name::ep_all_to_all && e.process == 0) drawn_s += e.duration_us / 1e6;
  EXPECT_NEAR(drawn_s, plan.prediction.time.ep_comm_s, 1e-6 * plan.prediction.time.ep_comm_s);
}

class TimelineOfPlan : public ::testing::TestWithParam<const char*> {};

TEST_P(TimelineOfPlan, SpanIsThePredictedStepTime) {
  const PlanFile plan = llama_plan(32, 128, GetParam());
  const Timeline t = plan_timeline(plan, plan.cluster, "plan.json");
  EXPECT_NEAR(t.span_us() / 1e6, plan.prediction.time.step_s, 1e-9 * plan.prediction.time.step_s);
  EXPECT_EQ(static_cast<int64_t>(t.processes.size()), plan.layout.pp);
  double first_us = 1e300;
  for (const TraceEvent& e : t.events) first_us = std::min(first_us, e.start_us);
  EXPECT_EQ(first_us, 0.0);
}

TEST_P(TimelineOfPlan, ComputeThreadRunsOneThingAtATime) {
  const PlanFile plan = llama_plan(32, 128, GetParam());
  const Timeline t = plan_timeline(plan, plan.cluster, "plan.json");
  std::map<int64_t, std::vector<std::pair<double, double>>> busy;  // per stage: (start, end)
  for (const TraceEvent& e : t.events)
    if (e.thread == TraceThread::compute)
      busy[e.process].push_back({e.start_us, e.start_us + e.duration_us});
  ASSERT_EQ(static_cast<int64_t>(busy.size()), plan.layout.pp);
  for (auto& [stage, spans] : busy) {
    std::sort(spans.begin(), spans.end());
    for (size_t i = 1; i < spans.size(); ++i)
      EXPECT_GE(spans[i].first, spans[i - 1].second - 1e-6 * spans[i - 1].second)
          << "stage " << stage << " #" << i;
  }
}

TEST_P(TimelineOfPlan, EveryMicroBatchAndChunkOnceForwardAndOnceBackward) {
  const PlanFile plan = llama_plan(32, 128, GetParam());
  const ParallelLayout& l = plan.layout;
  const Timeline t = plan_timeline(plan, plan.cluster, "plan.json");
  std::map<std::tuple<int64_t, std::string, int64_t, int64_t>, int> count;
  int recomputes = 0, overlapped = 0, exposed = 0, optimizer = 0;
  for (const TraceEvent& e : t.events) {
    if (e.name == trace_name::forward || e.name == trace_name::backward)
      ++count[{e.process, e.name, e.args.at("micro_batch").get<int64_t>(),
               e.args.at("chunk").get<int64_t>()}];
    recomputes += e.name == trace_name::recompute;
    overlapped += e.category == "dp-overlapped";
    exposed += e.category == "dp-exposed";
    optimizer += e.name == trace_name::optimizer;
  }
  EXPECT_EQ(static_cast<int64_t>(count.size()), l.pp * 2 * l.grad_accum * l.vpp);
  for (const auto& [key, n] : count) EXPECT_EQ(n, 1) << std::get<1>(key) << " " << std::get<2>(key);
  // Selective recompute under flash attention has nothing to recompute (no stored scores).
  if (l.recompute == Recompute::full) {
    EXPECT_GT(recomputes, 0);
  }
  if (l.recompute == Recompute::none) {
    EXPECT_EQ(recomputes, 0);
  }
  EXPECT_EQ(overlapped, l.dp > 1 ? l.pp * l.vpp : 0);
  EXPECT_EQ(exposed, plan.prediction.time.dp_comm_s > 0 ? l.pp : 0);
  EXPECT_EQ(optimizer, l.pp);
  for (const TraceEvent& e : t.events)
    EXPECT_NE(std::find(trace_event_names().begin(), trace_event_names().end(), e.name),
              trace_event_names().end());
}

TEST_P(TimelineOfPlan, ChromeJsonHasTheFieldsViewersRead) {
  const PlanFile plan = llama_plan(32, 128, GetParam());
  const nlohmann::json j = nlohmann::json::parse(
      timeline_to_chrome_json(plan_timeline(plan, plan.cluster, "plan.json")).dump());
  ASSERT_TRUE(j.at("traceEvents").is_array());
  std::set<std::string> threads;
  int processes = 0, complete = 0;
  for (const nlohmann::json& e : j["traceEvents"]) {
    for (const char* key : {"ph", "name", "pid", "tid"}) EXPECT_TRUE(e.contains(key)) << e.dump();
    if (e["ph"] == "M" && e["name"] == "process_name") {
      ++processes;
      EXPECT_EQ(e["args"]["name"].get<std::string>().rfind("stage ", 0), 0u);
    }
    if (e["ph"] == "M" && e["name"] == "thread_name")
      threads.insert(e["args"]["name"].get<std::string>());
    if (e["ph"] != "X") continue;
    ++complete;
    for (const char* key : {"ts", "dur", "cat", "args"}) EXPECT_TRUE(e.contains(key)) << e.dump();
    EXPECT_GE(e["dur"].get<double>(), 0.0);
  }
  EXPECT_EQ(processes, plan.layout.pp);
  EXPECT_EQ(threads, (std::set<std::string>{"compute", "tp comm", "p2p", "dp comm"}));
  EXPECT_GT(complete, 0);
}

INSTANTIATE_TEST_SUITE_P(Layouts, TimelineOfPlan, ::testing::ValuesIn(kLayouts));

// On stages that cost the same, the walked table is the closed form predict() ranks by:
// 1F1B (m - 1)·T + pp·T, interleaved m·T + (pp - 1)·T / vpp (T: one stage's micro-batch).
TEST(Timeline, UniformStagesTakeTheClosedForm) {
  for (int64_t vpp : {1, 2}) {
    ParallelLayout l;
    l.pp = 4;
    l.vpp = vpp;
    l.grad_accum = 8;
    StageTable table;
    table.pp = l.pp;
    table.vpp = vpp;
    ChunkTime c;
    c.fwd_compute_s = 1;
    c.bwd_compute_s = 2;
    table.chunk_times.assign(static_cast<size_t>(l.pp * vpp), c);
    const double stage_s = 3.0 * static_cast<double>(vpp), m = 8;
    const double closed_s =
        vpp == 1 ? (m - 1) * stage_s + 4 * stage_s : m * stage_s + 3 * stage_s / 2;
    TimeBreakdown time;
    time.optimizer_s = 0.5;
    EXPECT_DOUBLE_EQ(build_timeline(l, table, time).span_us() / 1e6, closed_s + 0.5)
        << "vpp " << vpp;
    EXPECT_DOUBLE_EQ(walked_pipeline_s(table, 8), closed_s) << "vpp " << vpp;
  }
}

TEST(Timeline, StageProcessesNameTheirRanks) {
  ParallelLayout l;
  l.dp = 2;
  l.tp = 4;
  l.pp = 4;
  EXPECT_EQ(stage_ranks_text(l, 0), "ranks 0-7");
  EXPECT_EQ(stage_ranks_text(l, 3), "ranks 24-31");
  l.order = {Axis::pp, Axis::tp, Axis::dp};
  EXPECT_EQ(stage_ranks_text(l, 1), "ranks 1, 5, 9, 13, 17, 21, 25, 29");
  ParallelLayout one;
  EXPECT_EQ(stage_ranks_text(one, 0), "rank 0");
}

TEST(Timeline, RefusesAPlanOfAnotherCostModel) {
  PlanFile plan = llama_plan(32, 128, kLayouts[1]);
  plan.cost_model_version = "sextant-cost-model 0";
  EXPECT_THROW(plan_timeline(plan, plan.cluster, "plan.json"), InputError);
  plan = llama_plan(32, 128, kLayouts[1]);
  plan.prediction.time.uncalibrated_step_s *= 1.01;
  EXPECT_THROW(plan_timeline(plan, plan.cluster, "plan.json"), InputError);
}

// A calibrated plan's trace spans its calibrated step time.
TEST(Timeline, CalibratedPlanSpansItsStepTime) {
  PlanFile plan = llama_plan(32, 128, kLayouts[1]);
  plan.prediction.time.step_s *= 1.25;
  EXPECT_NEAR(plan_timeline(plan, plan.cluster, "p").span_us() / 1e6, plan.prediction.time.step_s,
              1e-9 * plan.prediction.time.step_s);
}

}  // namespace
}  // namespace sextant
