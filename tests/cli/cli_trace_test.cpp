// `sextant execute --trace` under mpirun: one process per rank named by its coordinates,
// every rank's forward and backward of each of the 4 micro-batches, and only the names of the
// predicted trace's vocabulary (planner/timeline.h).
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "planner/timeline.h"
#include "tests/cli/cli_fixture.h"

namespace {

using namespace sextant_cli_test;

class CliTrace : public Cli {
 protected:
  CliRun mpirun(int ranks, const std::string& args) const {
    const std::string cmd =
        "cd " + dir_.string() +
        " && OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 " SEXTANT_MPIEXEC
        " --oversubscribe -np " +
        std::to_string(ranks) + " " SEXTANT_BINARY " " + args + " >" + path("stdout") + " 2>" +
        path("stderr");
    const int raw = std::system(cmd.c_str());
    return {WIFEXITED(raw) ? WEXITSTATUS(raw) : -1, slurp(path("stdout")), slurp(path("stderr"))};
  }
};

TEST_F(CliTrace, ExecuteTraceHasAProcessPerRankAndThePredictedVocabulary) {
  ASSERT_EQ(
      run("plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu --gpus 2 "
          "--global-batch 8 --seq 64 --precision fp32 --fix "
          "dp=1,tp=1,pp=2,vpp=1,zero=0,micro_batch=2 "
          "--out plan.json --db s.db")
          .status,
      0);
  const CliRun r =
      mpirun(2, "execute --plan plan.json --steps 3 --device cpu --trace measured.json --db s.db");
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("trace of step 2 written"), std::string::npos) << r.out;
  const nlohmann::json trace = nlohmann::json::parse(slurp(path("measured.json")));
  const std::vector<std::string>& vocabulary = sextant::trace_event_names();
  std::map<int64_t, std::string> names;
  std::map<int64_t, std::map<std::string, std::set<int64_t>>>
      micro_batches;  // rank -> name -> micro-batches
  for (const nlohmann::json& e : trace["traceEvents"]) {
    if (e["ph"] == "M" && e["name"] == "process_name") names[e["pid"]] = e["args"]["name"];
    if (e["ph"] != "X") continue;
    const std::string name = e["name"];
    EXPECT_NE(std::find(vocabulary.begin(), vocabulary.end(), name), vocabulary.end()) << name;
    EXPECT_GE(e["ts"].get<double>(), 0.0);
    if (e["args"].contains("micro_batch"))
      micro_batches[e["pid"]][name].insert(e["args"]["micro_batch"].get<int64_t>());
    else
      micro_batches[e["pid"]][name];
  }
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "rank 0 (stage 0, dp 0, tp 0)");
  EXPECT_EQ(names[1], "rank 1 (stage 1, dp 0, tp 0)");
  for (int64_t rank : {0, 1}) {
    EXPECT_EQ(micro_batches[rank]["forward"], (std::set<int64_t>{0, 1, 2, 3})) << rank;
    EXPECT_EQ(micro_batches[rank]["backward"], (std::set<int64_t>{0, 1, 2, 3})) << rank;
    EXPECT_EQ(micro_batches[rank].count("optimizer"), 1u) << rank;
  }
  EXPECT_EQ(micro_batches[0].count("p2p send"), 1u);
  EXPECT_EQ(micro_batches[1].count("p2p recv"), 1u);
}

TEST_F(CliTrace, BadTraceFlagsAreRefusedBeforeTraining) {
  ASSERT_EQ(
      run("plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu --gpus 1 "
          "--global-batch 4 --seq 32 --precision fp32 --fix micro_batch=2 --out plan.json --db "
          "s.db")
          .status,
      0);
  for (const std::string& args :
       {std::string("--trace no/such/folder/t.json"), std::string("--trace t.json --trace-step 5"),
        std::string("--trace-step 1")}) {
    const CliRun r = run("execute --plan plan.json --steps 2 --device cpu --db s.db " + args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(path("t.json"))) << args;
  }
}

}  // namespace
