// The sextant binary end to end where it runs the executor (sextant-runtime, built with
// it): execute, profile, and compare and calibrate over the runs they store.
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>
#include <SQLiteCpp/SQLiteCpp.h>

#include "tests/cli/cli_fixture.h"

namespace {

using namespace sextant_cli_test;

// A world of one: `sextant execute` runs without a launcher.
TEST_F(Cli, ExecuteThenCompare) {
  ASSERT_EQ(run("plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu --gpus 1 "
                "--global-batch 4 --seq 16 --precision fp32 --out plan.json --top 1").status, 0);
  const CliRun e = run("execute --plan plan.json --steps 3 --metrics-out m.jsonl");
  ASSERT_EQ(e.status, 0) << e.out << e.err;
  // Other lines may come and go (NCCL prints a banner under NCCL_DEBUG): read the lines
  // that say what this test checks, and ignore the rest.
  std::istringstream out(e.out);
  int step_lines = 0, stored_lines = 0;
  for (std::string line; std::getline(out, line);) {
    step_lines += line.rfind("step ", 0) == 0;
    stored_lines += line.rfind("run ", 0) == 0 && line.find(" stored in ") != std::string::npos;
  }
  EXPECT_EQ(step_lines, 3) << e.out;
  EXPECT_EQ(stored_lines, 1) << e.out;
  std::ifstream metrics(path("m.jsonl"));
  int lines = 0;
  for (std::string line; std::getline(metrics, line); ++lines) {
    const nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["step"], lines);
    for (const char* k : {"loss", "step_time_s", "tokens_per_s", "mfu", "peak_bytes"}) EXPECT_GT(j[k].get<double>(), 0) << k;
    // The measured breakdown: four parts, none negative, together no more than the step.
    double parts = 0;
    for (const char* k : {"forward_s", "backward_s", "optimizer_s", "comm_wait_s"}) {
      EXPECT_GE(j[k].get<double>(), 0) << k;
      parts += j[k].get<double>();
    }
    EXPECT_GT(j["forward_s"].get<double>(), 0);
    EXPECT_GT(j["backward_s"].get<double>(), 0);
    EXPECT_LE(parts, j["step_time_s"].get<double>());
  }
  EXPECT_EQ(lines, 3);
  const CliRun c = run("compare --format json");
  ASSERT_EQ(c.status, 0) << c.err;
  const nlohmann::json runs = nlohmann::json::parse(c.out);
  ASSERT_EQ(runs.size(), 1u);
  const auto& t = runs[0]["step_time_s"];
  EXPECT_GT(t["measured"].get<double>(), 0);
  // JSON round-trips doubles exactly; the two sides differ only in operation order (~1e-14).
  EXPECT_NEAR(t["error_pct"].get<double>(), 100 * (t["predicted"].get<double>() / t["measured"].get<double>() - 1), 1e-9);
  EXPECT_GT(runs[0]["peak_bytes"]["measured"].get<double>(), 0);
  SQLite::Database db(path("sextant.db"));
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM run_steps").getInt(), 3);
  EXPECT_EQ(db.execAndGet("SELECT search_id FROM runs").getInt(), db.execAndGet("SELECT MAX(id) FROM searches").getInt());
  EXPECT_NE(run("compare").out.find("tiny-llama"), std::string::npos);
  // The measured breakdown beside the predicted one, in the table and the JSON.
  const std::string table = run("compare").out;
  EXPECT_NE(table.find("step breakdown (s): run  fwd meas  bwd meas  fwd+bwd pred/meas"), std::string::npos) << table;
  EXPECT_NE(table.find("comm_wait pred/meas"), std::string::npos) << table;
  const nlohmann::json& b = runs[0]["breakdown"];
  for (const char* k : {"forward_s", "backward_s", "optimizer_s", "comm_wait_s"}) EXPECT_GE(b["measured"][k].get<double>(), 0) << k;
  for (const char* k : {"forward_backward_s", "optimizer_s", "comm_wait_s"}) EXPECT_GE(b["predicted"][k].get<double>(), 0) << k;
  EXPECT_GT(b["predicted"]["forward_backward_s"].get<double>(), 0);
}

// The closed loop in miniature: profile, plan with it, run twice, calibrate, compare.
TEST_F(Cli, ProfilePlanCalibrateCompare) {
  const CliRun p = run("profile --name quick --quick --passes 2");
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_NE(p.err.find("pass 2/2: gemm 8 shapes (fp32)"), std::string::npos) << p.err;  // progress
  EXPECT_NE(p.err.find("median of 2 passes"), std::string::npos) << p.err;
  {
    SQLite::Database db(path("sextant.db"));
    const nlohmann::json stored = nlohmann::json::parse(db.execAndGet("SELECT profile_json FROM profiles").getString());
    EXPECT_EQ(stored["passes"], 2);
    EXPECT_EQ(stored["gemm"].size(), 8u);
    EXPECT_GT(stored["gemm"][0]["flops_per_s"].get<double>(), 0);
    EXPECT_GE(stored["spread_across_passes"]["copy"].get<double>(), 0);
  }
  EXPECT_NE(p.err.find("memory-bound layer ops"), std::string::npos) << p.err;
  EXPECT_NE(p.out.find("profile \"quick\""), std::string::npos) << p.out;
  const std::string plan = "plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu --gpus 1 "
                           "--global-batch 4 --seq 16 --precision fp32 --top 1 --profile quick";
  const CliRun planned = run(plan + " --fix micro_batch=4 --out plan.json");
  ASSERT_EQ(planned.status, 0) << planned.err;
  EXPECT_NE(planned.out.find("figures from measured profile \"quick\""), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(slurp(path("plan.json")))["profile"]["name"], "quick");
  const CliRun too_few = run("calibrate");
  EXPECT_EQ(too_few.status, 2) << too_few.err;
  // Two runs of one layout are one configuration: still nothing to judge on.
  for (int i = 0; i < 2; ++i) ASSERT_EQ(run("execute --plan plan.json --steps 3").status, 0);
  const CliRun one_layout = run("calibrate");
  EXPECT_EQ(one_layout.status, 2) << one_layout.out;
  EXPECT_NE(one_layout.err.find("; 1 layouts;"), std::string::npos) << one_layout.err;
  ASSERT_EQ(run(plan + " --fix micro_batch=1 --out plan2.json").status, 0);
  ASSERT_EQ(run("execute --plan plan2.json --steps 3").status, 0);
  const CliRun cal = run("calibrate");
  ASSERT_EQ(cal.status, 0) << cal.err;
  EXPECT_NE(cal.out.find("fit runs (2)"), std::string::npos) << cal.out;
  EXPECT_NE(cal.out.find("held_out runs (1)"), std::string::npos) << cal.out;
  EXPECT_NE(cal.out.find("held_out layouts (1, each the median of its runs)"), std::string::npos) << cal.out;
  EXPECT_NE(cal.out.find(" (profile quick #1),"), std::string::npos) << cal.out;  // its own GEMM factor
  const nlohmann::json runs = nlohmann::json::parse(run("compare --format json").out);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0]["calibrated"]["role"], "fit");
  EXPECT_EQ(runs[1]["calibrated"]["role"], "fit");  // a repeat of run 1
  EXPECT_EQ(runs[2]["calibrated"]["role"], "held-out");
  EXPECT_EQ(runs[0]["profile"], "quick");
  EXPECT_GT(runs[1]["calibrated"]["step_time_s"].get<double>(), 0);
  const CliRun calibrated = run(plan + " --calibrated");  // (no --out: the plan is printed)
  ASSERT_EQ(calibrated.status, 0) << calibrated.err;
  EXPECT_NE(calibrated.out.find("calibrated by calibration #1 (GEMM x"), std::string::npos) << calibrated.out;
  EXPECT_NE(calibrated.out.find(" for profile quick #1)"), std::string::npos) << calibrated.out;
  EXPECT_NE(calibrated.out.find(" s calibrated, from "), std::string::npos) << calibrated.out;
  EXPECT_EQ(runs[2]["figures"], "profile quick #1");
  // A new measurement under the same name is another profile: no fitted run used it.
  ASSERT_EQ(run("profile --name quick --quick --passes 1").status, 0);
  const CliRun unfitted = run(plan + " --calibrated");
  EXPECT_EQ(unfitted.status, 2);
  EXPECT_NE(unfitted.err.find("has no run predicted from profile quick #2 (fitted: profile quick #1)"),
            std::string::npos) << unfitted.err;
  EXPECT_EQ(std::count(unfitted.err.begin(), unfitted.err.end(), '\n'), 1) << unfitted.err;
  EXPECT_EQ(run("plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --gpus 1 --global-batch 4 --profile nope").status, 2);
  const CliRun no_passes = run("profile --name none --quick --passes 0");
  EXPECT_EQ(no_passes.status, 2);
  EXPECT_NE(no_passes.err.find("--passes"), std::string::npos) << no_passes.err;
}

// A run is stored as it goes: killed, it keeps every step it finished and is found aborted
// on the next open; a failure is recorded with its error; compare judges both on their steps.
TEST_F(Cli, KilledAndFailedRunsKeepTheirSteps) {
  ASSERT_EQ(run("plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu --gpus 1 "
                "--global-batch 4 --seq 16 --precision fp32 --out plan.json --top 1").status, 0);
  setenv("SEXTANT_FAULT", "kill:0:4", 1);  // the process kills itself as step 4 starts
  const CliRun killed = run("execute --plan plan.json --steps 50 --metrics-out m.jsonl");
  unsetenv("SEXTANT_FAULT");
  EXPECT_NE(killed.status, 0);
  {
    SQLite::Database db(path("sextant.db"));  // read as it was left: nothing has opened it since
    EXPECT_EQ(db.execAndGet("SELECT status FROM runs").getString(), "running");
    EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM run_steps").getInt(), 4);
    EXPECT_EQ(db.execAndGet("PRAGMA integrity_check").getString(), "ok");
  }
  const CliRun failed = run("execute --plan plan.json --steps 30 --lr 1e30");
  EXPECT_EQ(failed.status, 3) << failed.err;
  const CliRun c = run("compare --format json");
  ASSERT_EQ(c.status, 0) << c.err;
  const nlohmann::json runs = nlohmann::json::parse(c.out);
  ASSERT_EQ(runs.size(), 2u);
  EXPECT_EQ(runs[0]["status"], "aborted");
  EXPECT_NE(runs[0]["error"].get<std::string>().find("ended without finishing"), std::string::npos) << runs[0];
  EXPECT_EQ(runs[0]["steps"], 4);
  EXPECT_GT(runs[0]["step_time_s"]["measured"].get<double>(), 0);  // judged on the steps it has
  EXPECT_EQ(runs[1]["status"], "failed");
  EXPECT_NE(runs[1]["error"].get<std::string>().find("loss is"), std::string::npos) << runs[1];
  const CliRun table = run("compare");
  EXPECT_NE(table.out.find("run 1 aborted: process "), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("judged on its 4 finished steps"), std::string::npos) << table.out;
}

// The executor honours the job fields it reads: flash attention keeps no s×s scores for
// backward (its peak is lower by at least one layer's scores), and 16-bit gradients, which
// it does not implement, are refused.
TEST_F(Cli, ExecuteHonoursTheJobFields) {
  const std::string plan = "plan --model " SEXTANT_EXAMPLES "/models/small-llama.json --cluster local-cpu --gpus 1 "
                           "--global-batch 2 --seq 256 --top 1 --fix micro_batch=2,recompute=none ";
  ASSERT_EQ(run(plan + "--precision fp32 --attention flash --out flash.json").status, 0);
  ASSERT_EQ(run(plan + "--precision fp32 --attention standard --out standard.json").status, 0);
  double peak[2] = {0, 0};
  for (int i = 0; i < 2; ++i) {
    const std::string name = i == 0 ? "flash" : "standard";
    const CliRun e = run("execute --plan " + name + ".json --steps 2 --metrics-out m-" + name + ".jsonl");
    ASSERT_EQ(e.status, 0) << e.err;
    std::ifstream metrics(path("m-" + name + ".jsonl"));
    for (std::string line; std::getline(metrics, line);)
      peak[i] = std::max(peak[i], nlohmann::json::parse(line)["peak_bytes"].get<double>());
  }
  const double one_layer_scores = 2.0 * 8 * 256 * 256 * 4;  // b · heads · s² fp32
  EXPECT_GT(peak[1] - peak[0], one_layer_scores) << "flash " << peak[0] << " standard " << peak[1];
  // bf16 plans sum gradients in fp32 by default (as Megatron-LM does); 16-bit gradients are refused.
  ASSERT_EQ(run(plan + "--precision bf16 --out bf16.json").status, 0);
  EXPECT_TRUE(nlohmann::json::parse(slurp(path("bf16.json")))["job"]["fp32_grads"].get<bool>());
  ASSERT_EQ(run(plan + "--precision bf16 --no-fp32-grads --out bf16-16.json").status, 0);
  const CliRun refused = run("execute --plan bf16-16.json --steps 1 --db refused.db");
  EXPECT_EQ(refused.status, 2) << refused.err;
  EXPECT_NE(refused.err.find("bf16-16.json: job.fp32_grads: false (16-bit gradients) is not supported"),
            std::string::npos) << refused.err;
  EXPECT_FALSE(fs::exists(path("refused.db")));
}

TEST_F(Cli, BadExecuteInput) {
  auto refused = [&](const std::string& args, const std::string& fragment) {
    const CliRun r = run(args);
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(path("sextant.db"))) << args;
  };
  refused("execute", "--plan is required");
  refused("execute --plan " + path("none.json"), "none.json: cannot open");
  refused("execute --plan " + write("bad.json", "{}"), "bad.json: format: expected \"sextant-plan 1\"");
  refused("execute --plan " + write("bad2.json", R"({"format": "sextant-plan 1", "cost_model_version": "x"})"),
          "bad2.json: model: missing required field");
  ASSERT_EQ(run("plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu --gpus 1 "
                "--global-batch 4 --seq 16 --precision fp32 --out ok.json --top 1 --db p.db").status, 0);
  refused("execute --plan ok.json --steps 0", "--steps: must be at least 1");
  refused("execute --plan ok.json --device tpu", "--device: tpu: allowed: auto, cpu, cuda");
  refused("execute --plan ok.json --data " + path("missing.txt"), "--data");
  refused("execute --plan ok.json --resume", "--resume: needs --checkpoint-dir");
  refused("execute --plan ok.json --keep-checkpoints 0",
          "--keep-checkpoints: must be at least 1 (got 0)");
  refused("execute --plan ok.json --keep-checkpoints two", "--keep-checkpoints");
  refused("execute --plan ok.json --resume --checkpoint-dir " + path("empty-ckpt"), "no checkpoint here");
  refused("compare --db " + path("nothing.db"), "no such store");
}

}  // namespace
