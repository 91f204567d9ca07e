// `sextant simulate` end to end: the trace it writes spans the plan's predicted step, one
// process per pipeline stage; bad input exits 2 with one line and writes nothing.
#include <nlohmann/json.hpp>
#include <set>

#include "tests/cli/cli_fixture.h"

namespace {

using namespace sextant_cli_test;

const std::string kPlanPp4 =
    "plan --model " SEXTANT_EXAMPLES
    "/models/llama-2-7b.json --cluster dgx-h100-80gb --gpus 32 --global-batch 128 --seq 4096 "
    "--fix dp=2,tp=4,pp=4,vpp=1,zero=1,micro_batch=1,recompute=selective,"
    "sequence_parallel=true,offload=none --format json --out plan.json --db s.db";

TEST_F(Cli, SimulateWritesATraceSpanningThePredictedStep) {
  const CliRun planned = run(kPlanPp4);
  ASSERT_EQ(planned.status, 0) << planned.err;
  const double predicted_s =
      nlohmann::json::parse(planned.out)["candidates"][0]["predicted"]["step_time_s"];
  const CliRun r = run("simulate --plan plan.json --out trace.json");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("written to trace.json"), std::string::npos) << r.out;
  const nlohmann::json trace = nlohmann::json::parse(slurp(path("trace.json")));
  double first_us = 1e300, last_us = 0;
  std::set<int64_t> pids;
  for (const nlohmann::json& e : trace["traceEvents"]) {
    if (e["ph"] != "X") continue;
    pids.insert(e["pid"].get<int64_t>());
    first_us = std::min(first_us, e["ts"].get<double>());
    last_us = std::max(last_us, e["ts"].get<double>() + e["dur"].get<double>());
  }
  EXPECT_EQ(pids.size(), 4u);
  EXPECT_NEAR((last_us - first_us) / 1e6, predicted_s, 1e-9 * predicted_s);
  EXPECT_FALSE(fs::exists(path("trace.json.tmp")));
}

TEST_F(Cli, SimulateRefusesBadInputWithOneLine) {
  ASSERT_EQ(run(kPlanPp4).status, 0);
  write("not-a-plan.json", "{\"format\": \"something else\"}");
  struct Case {
    std::string args, fragment;
  };
  const Case cases[] = {
      {"simulate --plan missing.json --out t.json", "missing.json"},
      {"simulate --plan not-a-plan.json --out t.json", "format"},
      {"simulate --plan plan.json --out no/such/folder/t.json", "--out"},
      {"simulate --out t.json", "--plan"},
  };
  for (const Case& c : cases) {
    const CliRun r = run(c.args);
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.fragment), std::string::npos) << c.args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(path("t.json"))) << c.args;
  }
}

}  // namespace
