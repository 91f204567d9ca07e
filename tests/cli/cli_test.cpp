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

#include "tests/cli/cli_fixture.h"

namespace fs = std::filesystem;

namespace {

using namespace sextant_cli_test;

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

// Feasibility is judged by Megatron-LM's accounting unless --memory-model sextant; every
// plan also carries what sextant execute allocates (the executor keeps fp32 gradient sums
// and a weight-decay mask beyond the ZeRO paper's 2 + 2 + 12 bytes per parameter).
TEST_F(Cli, PlansCarryTheExecutorsPeakBesideTheChosenMemoryModel) {
  const std::string pin = " --precision fp16 --format json --fix dp=64,tp=1,pp=1,vpp=1,zero=0,micro_batch=1,"
                          "recompute=full,sequence_parallel=false,offload=none";
  const CliRun megatron = run(kPlan + pin);
  ASSERT_EQ(megatron.status, 0) << megatron.err;
  const nlohmann::json j = nlohmann::json::parse(megatron.out);
  const double params = j["model"]["params"].get<double>();
  const auto& m = j["candidates"][0]["predicted"]["memory"];
  const auto& e = j["candidates"][0]["predicted"]["executor_memory"];
  const double states = m["params_bytes"].get<double>() + m["grads_bytes"].get<double>() +
                        m["optimizer_bytes"].get<double>();
  EXPECT_NEAR(states / params, 16.0, 0.01);  // 2 + 2 + 12 (the ZeRO paper)
  EXPECT_GT(e["peak_bytes"].get<double>(), m["peak_bytes"].get<double>());
  const CliRun own = run(kPlan + pin + " --memory-model sextant");
  ASSERT_EQ(own.status, 0) << own.err;
  const nlohmann::json own_json = nlohmann::json::parse(own.out);
  const auto& p = own_json["candidates"][0]["predicted"];
  EXPECT_EQ(p["memory"], p["executor_memory"]);
  EXPECT_DOUBLE_EQ(p["memory"]["peak_bytes"].get<double>(), e["peak_bytes"].get<double>());
  const CliRun table = run(kPlan + " --precision fp16 --top 1 --out plan.json --fix dp=64,tp=1,pp=1,zero=0,micro_batch=1");
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_NE(table.out.find("sextant execute allocates"), std::string::npos) << table.out;
  EXPECT_EQ(nlohmann::json::parse(slurp(path("plan.json")))["job"]["memory_model"], "megatron");
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

// MoE: ep that cannot split the experts or dp, ep on a dense model, and MoE configs with
// top-k above the expert count or an expert key missing.
TEST_F(Cli, BadExpertParallelism) {
  const std::string mixtral = "plan --model " SEXTANT_EXAMPLES
                              "/models/mixtral-8x7b.json --gpus 16 --global-batch 64 --seq 4096";
  expect_refused(mixtral + " --fix ep=3", "--fix: ep: must divide the number of experts 8; got 3");
  expect_refused(mixtral + " --fix dp=2,tp=8,ep=4", "--fix: ep: must divide dp 2");
  expect_refused(mixtral + " --fix tp=8,pp=2,ep=2",
                 "--fix: ep: must divide dp = devices / (tp*pp)");
  expect_refused(mixtral + " --fix ep=0", "--fix: ep: must be at least 1");
  expect_refused("plan --model " + kLlama + " --gpus 16 --global-batch 64 --fix ep=2",
                 "--fix: ep: must be 1 for a dense model");
  const std::string rest = " --cluster dgx-h100-80gb --gpus 8 --global-batch 8 --seq 128";
  const std::string moe = R"({"model_type": "mixtral", "hidden_size": 64, "intermediate_size": 128,
      "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2, "vocab_size": 256, %s})";
  auto with = [&](const std::string& name, const std::string& fields) {
    char buf[512];
    std::snprintf(buf, sizeof buf, moe.c_str(), fields.c_str());
    return write(name, buf);
  };
  expect_refused("plan --model " +
                     with("topk.json", R"("num_local_experts": 4, "num_experts_per_tok": 5)") +
                     rest,
                 "topk.json: num_experts_per_tok: top-k 5 must not exceed num_local_experts 4");
  expect_refused("plan --model " + with("noexperts.json", R"("num_experts_per_tok": 2)") + rest,
                 "noexperts.json: num_local_experts: missing");
  expect_refused("plan --model " + with("notopk.json", R"("num_local_experts": 4)") + rest,
                 "notopk.json: num_experts_per_tok: missing");
}

// MoE planned end to end: ep pinned and searched, the all-to-all in the time breakdown, the
// ep column in the table and the csv.
TEST_F(Cli, MoePlanCarriesExpertParallelism) {
  const std::string base =
      "plan --model " SEXTANT_EXAMPLES
      "/models/mixtral-8x7b.json --cluster dgx-h100-80gb --gpus 64 --global-batch 512 --seq 4096";
  const CliRun pinned = run(base + " --fix ep=8,tp=1,pp=1 --format json --db " + path("s.db"));
  ASSERT_EQ(pinned.status, 0) << pinned.err;
  const nlohmann::json j = nlohmann::json::parse(pinned.out);
  const nlohmann::json& best = j.at("candidates").at(0);
  EXPECT_EQ(best.at("layout").at("ep"), 8);
  EXPECT_GT(best.at("predicted").at("time").at("ep_comm_s").get<double>(), 0.0);
  const CliRun table = run(base + " --db " + path("s.db"));
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_NE(table.out.find("rank  dp  tp  pp  ep vpp"), std::string::npos) << table.out;
  const CliRun csv = run(base + " --format csv --db " + path("s.db"));
  ASSERT_EQ(csv.status, 0) << csv.err;
  EXPECT_EQ(csv.out.rfind("rank,feasible,dp,tp,pp,ep,vpp", 0), 0u) << csv.out;
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

// `sextant export`: each framework's text on stdout or through --out, and a layout the
// framework cannot express (or a bad --to, or a bad plan) refused with exit 2, one line,
// nothing written. The exporters' content is checked in tests/planner/export_test.cpp.
TEST_F(Cli, ExportPrintsOrWritesEachFrameworkAndRefusesWhatItCannotExpress) {
  const std::string plan = "plan --model " + kLlama + " --cluster dgx-h100-80gb --gpus 32 --global-batch 256 "
                           "--seq 4096 --db " + path("s.db") + " --fix ";
  ASSERT_EQ(run(plan + "dp=4,tp=2,pp=4,vpp=2,zero=1,micro_batch=1,recompute=full,sequence_parallel=true,"
                       "offload=none --out meg.json").status, 0);
  ASSERT_EQ(run(plan + "dp=32,tp=1,pp=1,vpp=1,zero=3,micro_batch=2,recompute=full,sequence_parallel=false,"
                       "offload=optimizer --out ds.json").status, 0);

  const CliRun meg = run("export --plan meg.json --to megatron");
  ASSERT_EQ(meg.status, 0) << meg.err;
  EXPECT_NE(meg.out.find("--tensor-model-parallel-size 2 \\\n"), std::string::npos) << meg.out;
  EXPECT_TRUE(meg.err.empty()) << meg.err;
  const CliRun written = run("export --plan meg.json --to megatron --out meg.txt");
  ASSERT_EQ(written.status, 0) << written.err;
  EXPECT_EQ(slurp(path("meg.txt")), meg.out);
  EXPECT_FALSE(fs::exists(path("meg.txt.tmp")));

  const CliRun ds = run("export --plan ds.json --to deepspeed");
  ASSERT_EQ(ds.status, 0) << ds.err;
  const nlohmann::json config = nlohmann::json::parse(ds.out);
  EXPECT_EQ(config["train_batch_size"], 256);
  EXPECT_EQ(config["zero_optimization"]["offload_optimizer"]["device"], "cpu");
  const CliRun tt = run("export --plan meg.json --to torchtitan");  // zero=1: refused
  EXPECT_EQ(tt.status, 2) << tt.out;

  auto expect_export_refused = [&](const std::string& args, const std::string& fragment) {
    const CliRun r = run(args + " --out refused.out");
    EXPECT_EQ(r.status, 2) << args << "\n" << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << args << "\nstderr: " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
    EXPECT_FALSE(fs::exists(path("refused.out"))) << args;
    EXPECT_FALSE(fs::exists(path("refused.out.tmp"))) << args;
  };
  expect_export_refused("export --plan meg.json --to deepspeed", "--to: deepspeed: tp=2");
  expect_export_refused("export --plan meg.json --to nemo",
                        "--to: got \"nemo\"; allowed: megatron, deepspeed, torchtitan");
  expect_export_refused("export --plan " + path("none.json") + " --to megatron", "none.json");
  expect_export_refused("export --plan " + write("bad.json", "{}") + " --to megatron", "bad.json");
  const CliRun unwritable = run("export --plan meg.json --to megatron --out /nonexistent-dir/meg.txt");
  EXPECT_EQ(unwritable.status, 2);
  EXPECT_NE(unwritable.err.find("--out: /nonexistent-dir/meg.txt"), std::string::npos) << unwritable.err;
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
