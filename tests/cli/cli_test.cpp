// The sextant binary end to end: outputs, the plan file, the store, and one clear line
// with exit status 2 (and nothing written) for each kind of bad input.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <SQLiteCpp/SQLiteCpp.h>

namespace fs = std::filesystem;

namespace {

struct CliRun {
  int status = -1;
  std::string out, err;
};

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("sextant_cli_" + std::string(::testing::UnitTest::GetInstance()->current_test_info()->name()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }
  std::string write(const std::string& name, const std::string& text) const {
    std::ofstream(path(name)) << text;
    return path(name);
  }
  static std::string slurp(const std::string& p) {
    std::ifstream in(p);
    std::stringstream s;
    s << in.rdbuf();
    return s.str();
  }
  CliRun run(const std::string& args) const {
    const std::string cmd = "cd " + dir_.string() + " && " SEXTANT_BINARY " " + args + " >" +
                            path("stdout") + " 2>" + path("stderr");
    CliRun r;
    const int raw = std::system(cmd.c_str());
    r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
    r.out = slurp(path("stdout"));
    r.err = slurp(path("stderr"));
    return r;
  }
  // Exit 2, one line on stderr containing `fragment`, no store and no plan file written.
  void expect_refused(const std::string& args, const std::string& fragment) const {
    const CliRun r = run(args + " --db " + path("refused.db") + " --out " + path("refused-plan.json"));
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_FALSE(fs::exists(path("refused.db"))) << args;
    EXPECT_FALSE(fs::exists(path("refused-plan.json"))) << args;
  }
  fs::path dir_;
};

const std::string kLlama = SEXTANT_EXAMPLES "/models/llama-2-7b.json";
const std::string kGpt2 = SEXTANT_EXAMPLES "/models/gpt2.json";
const std::string kPlan = "plan --model " + kLlama + " --cluster dgx-h100-80gb --gpus 64 --global-batch 1024 --seq 4096";

TEST_F(Cli, JsonOutputHasTheDocumentedShape) {
  const CliRun r = run(kPlan + " --format json --top 5 --db " + path("s.db"));
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["model"]["params"], 6738415616LL);
  EXPECT_EQ(j["cluster"]["name"], "dgx-h100-80gb");
  EXPECT_EQ(j["cluster"]["gpus"], 64);
  EXPECT_GT(j["search"]["evaluated"].get<int64_t>(), 0);
  EXPECT_GT(j["search"]["feasible"].get<int64_t>(), 0);
  EXPECT_GE(j["search"]["seconds"].get<double>(), 0.0);
  ASSERT_EQ(j["candidates"].size(), 5u);
  double previous = 1e300;
  for (const auto& c : j["candidates"]) {
    EXPECT_TRUE(c["feasible"].get<bool>());
    for (const char* k : {"dp", "tp", "pp", "vpp", "zero", "micro_batch", "grad_accum", "recompute",
                          "sequence_parallel", "offload"})
      EXPECT_TRUE(c["layout"].contains(k)) << k;
    const auto& p = c["predicted"];
    for (const char* k : {"step_time_s", "tokens_per_s", "model_tflops_per_gpu", "hardware_tflops_per_gpu", "mfu"})
      EXPECT_GT(p[k].get<double>(), 0.0) << k;
    for (const char* k : {"params_bytes", "grads_bytes", "optimizer_bytes", "activations_bytes", "peak_bytes"})
      EXPECT_TRUE(p["memory"].contains(k)) << k;
    EXPECT_LE(p["tokens_per_s"].get<double>(), previous);
    previous = p["tokens_per_s"].get<double>();
    const auto& l = c["layout"];
    EXPECT_EQ(l["dp"].get<int>() * l["tp"].get<int>() * l["pp"].get<int>(), 64);
  }
}

TEST_F(Cli, TableCsvPlanFileAndStore) {
  const CliRun table = run(kPlan + " --top 3 --out plan.json");
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_NE(table.out.find("rank  dp  tp  pp"), std::string::npos);
  EXPECT_NE(table.out.find("plan written to plan.json"), std::string::npos);
  const nlohmann::json plan = nlohmann::json::parse(slurp(path("plan.json")));
  EXPECT_EQ(plan["format"], "sextant-plan 1");
  EXPECT_EQ(plan["model"]["config"]["model_type"], "llama");
  int64_t blocks = 0;
  for (const auto& chunk : plan["partition"]) blocks += chunk["blocks"].get<int64_t>();
  EXPECT_EQ(blocks, 32);
  EXPECT_FALSE(fs::exists(path("plan.json.tmp")));

  const CliRun csv = run(kPlan + " --top 4 --format csv");
  ASSERT_EQ(csv.status, 0) << csv.err;
  EXPECT_EQ(std::count(csv.out.begin(), csv.out.end(), '\n'), 5);
  EXPECT_EQ(csv.out.rfind("rank,feasible,dp,tp,pp", 0), 0u);

  SQLite::Database db(path("sextant.db"));  // the default store in the working directory
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM searches").getInt(), 2);
  EXPECT_EQ(db.execAndGet("SELECT COUNT(*) FROM plans").getInt(), 7);
  EXPECT_EQ(db.execAndGet("SELECT MIN(rank) FROM plans WHERE feasible = 1").getInt(), 1);
}

TEST_F(Cli, PinnedInfeasibleLayoutIsReportedNotRefused) {
  const CliRun r = run("plan --model " + kLlama + " --cluster dgx-a100-80gb --gpus 8 --global-batch 64 --format json "
                    "--fix dp=8,tp=1,pp=1,vpp=1,zero=0,micro_batch=8,recompute=none,sequence_parallel=false,offload=none");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  ASSERT_EQ(j["candidates"].size(), 1u);
  EXPECT_FALSE(j["candidates"][0]["feasible"].get<bool>());
  EXPECT_NE(j["candidates"][0]["reason"].get<std::string>().find("over by"), std::string::npos);
}

TEST_F(Cli, UserClusterFile) {
  const CliRun r = run("plan --model " + kGpt2 + " --cluster " SEXTANT_EXAMPLES "/clusters/two-node-a100-pcie.json"
                    " --gpus 8 --global-batch 64 --format json --top 1");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["cluster"]["name"], "two-node-a100-pcie");
}

TEST_F(Cli, BadModelFiles) {
  const std::string rest = " --cluster dgx-a100-80gb --gpus 8 --global-batch 8";
  expect_refused("plan --model " + path("nope.json") + rest, "nope.json: cannot open");
  expect_refused("plan --model " + write("empty.json", "") + rest, "empty.json: file is empty");
  expect_refused("plan --model " + write("broken.json", "{\"model_type\": \"llama\",") + rest, "not valid JSON");
  expect_refused("plan --model " + write("text.json", "this is not json") + rest, "not valid JSON");
  expect_refused("plan --model " + write("list.json", "[1,2]") + rest, "JSON object");
  expect_refused("plan --model " + write("bert.json", R"({"model_type": "bert"})") + rest, "unknown model_type");
  const std::string llama = R"({"model_type": "llama", "intermediate_size": 128, "num_attention_heads": 8,
                               "num_hidden_layers": 2, "vocab_size": 100, %s})";
  auto with = [&](const std::string& name, const std::string& field) {
    char buf[512];
    std::snprintf(buf, sizeof buf, llama.c_str(), field.c_str());
    return write(name, buf);
  };
  expect_refused("plan --model " + with("m1.json", R"("max_position_embeddings": 64)") + rest, "hidden_size: missing");
  expect_refused("plan --model " + with("m2.json", R"("hidden_size": "big")") + rest, "hidden_size: expected an integer");
  expect_refused("plan --model " + with("m3.json", R"("hidden_size": -64)") + rest, "hidden_size: expected an integer in");
  expect_refused("plan --model " + with("m4.json", R"("hidden_size": 0)") + rest, "hidden_size");
  expect_refused("plan --model " + with("m5.json", R"("hidden_size": 1e30)") + rest, "hidden_size");
  expect_refused("plan --model " + with("m6.json", R"("hidden_size": 100000000000000000000000)") + rest, "hidden_size");
  expect_refused("plan --model " + with("m7.json", R"("hidden_size": 60)") + rest,
                 "num_attention_heads: must divide the hidden size");
}

TEST_F(Cli, BadFlagsAndLayouts) {
  const std::string model = "plan --model " + kLlama;
  expect_refused(model + " --cluster dgx-z900 --gpus 8 --global-batch 8", "unknown cluster \"dgx-z900\"");
  expect_refused(model + " --gpus 8 --global-batch 8 --fix zero=5", "zero");
  expect_refused(model + " --gpus 8 --global-batch 8 --fix mp=2", "--fix: mp: unknown key");
  expect_refused(model + " --gpus 8 --global-batch 8 --fix dp=2,tp=2,pp=1", "dp*tp*pp");
  expect_refused("plan --model " + kGpt2 + " --gpus 8 --global-batch 8 --fix tp=8",
                 "tp: must divide the number of attention heads 12");
  expect_refused(model + " --gpus 0 --global-batch 8", "--gpus");
  expect_refused(model + " --gpus eight --global-batch 8", "--gpus");
  expect_refused(model + " --gpus 12 --global-batch 8", "whole nodes");
  expect_refused(model + " --gpus 8 --global-batch -1", "--global-batch");
  expect_refused(model + " --gpus 8 --global-batch 8 --precision fp8", "allowed: bf16, fp16, fp32");
  expect_refused(model + " --gpus 8 --global-batch 8 --format xml", "allowed: table, json, csv");
  expect_refused(model + " --gpus 8 --global-batch 8 --seq long", "--seq");
  expect_refused(model + " --gpus 8 --global-batch 7 --fix dp=8", "global-batch");
}

TEST_F(Cli, BadClusterFiles) {
  const std::string model = "plan --model " + kGpt2 + " --gpus 8 --global-batch 8 --cluster ";
  expect_refused(model + write("c1.json", R"({"name": "c", "nodes": 1, "devices_per_node": 8})"),
                 "c1.json: device: missing required field");
  expect_refused(model + write("c2.json", R"({"name": "c", "nodes": 1, "devices_per_node": 8,
      "device": {"name": "d", "peak_tflops": {"fp32": -1}, "memory_gib": 80, "memory_bandwidth_gb_per_s": 2000},
      "intra_node": {"bandwidth_gb_per_s": 300}})"), "c2.json: fp32: expected a number in");
  expect_refused(model + write("c3.json", R"({"name": "c", "nodes": 2, "devices_per_node": 8,
      "device": {"name": "d", "peak_tflops": {"fp32": 100}, "memory_gib": 80, "memory_bandwidth_gb_per_s": 2000},
      "intra_node": {"bandwidth_gb_per_s": 300}})"), "c3.json: inter_node: missing required field");
  expect_refused(model + write("c4.json", "{}"), "c4.json: name: missing required field");
}

TEST_F(Cli, LocalCpuCluster) {
  const CliRun r = run("plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu --gpus 1 "
                       "--global-batch 16 --seq 128 --precision fp32 --format json --top 1");
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["cluster"]["device"], "cpu-core");
  EXPECT_TRUE(j["candidates"][0]["feasible"].get<bool>());
}

TEST_F(Cli, UnwritablePlanPathIsRefusedBeforeTheStore) {
  const CliRun r = run(kPlan + " --db " + path("s.db") + " --out /nonexistent-dir/plan.json");
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_NE(r.err.find("--out: /nonexistent-dir/plan.json: cannot write"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(path("s.db")));
}

// A world of one: `sextant execute` runs without a launcher.
TEST_F(Cli, ExecuteThenCompare) {
  ASSERT_EQ(run("plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu --gpus 1 "
                "--global-batch 4 --seq 16 --precision fp32 --out plan.json --top 1").status, 0);
  const CliRun e = run("execute --plan plan.json --steps 3 --metrics-out m.jsonl");
  ASSERT_EQ(e.status, 0) << e.out << e.err;
  EXPECT_EQ(std::count(e.out.begin(), e.out.end(), '\n'), 4) << e.out;  // 3 steps + "run stored"
  std::ifstream metrics(path("m.jsonl"));
  int lines = 0;
  for (std::string line; std::getline(metrics, line); ++lines) {
    const nlohmann::json j = nlohmann::json::parse(line);
    EXPECT_EQ(j["step"], lines);
    for (const char* k : {"loss", "step_time_s", "tokens_per_s", "mfu", "peak_bytes"}) EXPECT_GT(j[k].get<double>(), 0) << k;
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
  EXPECT_NE(one_layout.err.find("of 1 layouts"), std::string::npos) << one_layout.err;
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
  refused("execute --plan " + write("bad.json", "{}"), "bad.json: model: missing required field");
  ASSERT_EQ(run("plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu --gpus 1 "
                "--global-batch 4 --seq 16 --precision fp32 --out ok.json --top 1 --db p.db").status, 0);
  refused("execute --plan ok.json --steps 0", "--steps: must be at least 1");
  refused("execute --plan ok.json --device tpu", "--device: tpu: allowed: auto, cpu, cuda");
  refused("execute --plan ok.json --data " + path("missing.txt"), "--data");
  refused("execute --plan ok.json --resume", "--resume: needs --checkpoint-dir");
  refused("execute --plan ok.json --resume --checkpoint-dir " + path("empty-ckpt"), "no checkpoint here");
  refused("compare --db " + path("nothing.db"), "no such store");
}

TEST_F(Cli, UnwritableStoreIsRefusedAndNoPlanIsLeft) {
  fs::create_directories(path("a-directory.db"));
  for (const std::string& db : {path("a-directory.db"), std::string("/nonexistent-dir/x.db")}) {
    const CliRun r = run(kPlan + " --db " + db + " --out " + path("p.json"));
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_NE(r.err.find("--db"), std::string::npos) << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_FALSE(fs::exists(path("p.json")));
    EXPECT_FALSE(fs::exists(path("p.json.tmp")));
  }
}

}  // namespace
