// Exporters: golden outputs per framework, the outputs parsed back (JSON, TOML through
// Python's tomllib, Megatron arguments as a map), and every refusal.
//
// Golden files live in tests/data/export/. After an intended change to an exporter,
// regenerate them with
//   SEXTANT_UPDATE_GOLDEN=1 build/tests/planner_tests --gtest_filter='ExportGolden.*'
// and read the diff (git diff tests/data/export) before committing it.
#include "planner/export.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "cost_model/error.h"
#include "planner/export_detail.h"
#include "planner/search.h"
#include "profiles/cluster_catalog.h"
#include "tests/test_dir.h"

namespace sextant {
namespace {

namespace fs = std::filesystem;

// A plan as `sextant plan --fix <fix> --out` would write it: the pinned search's candidate,
// with the partition (stage table) it computed.
PlanFile make_plan(const std::string& model, int64_t gpus, int64_t global_batch,
                   const std::string& fix, Precision precision = Precision::bf16,
                   bool fp32_grads = false, bool flash_attention = true, int64_t seq = 4096) {
  SearchRequest req;
  req.model = load_model_spec(SEXTANT_EXAMPLES "/models/" + model + ".json", seq);
  req.cluster = load_cluster("dgx-h100-80gb");
  req.gpus = gpus;
  req.job.global_batch = global_batch;
  req.job.precision = precision;
  req.job.fp32_grads = fp32_grads;
  req.job.flash_attention = flash_attention;
  const FixedAxes f = parse_fixed_axes(fix);
  ParallelLayout l;
  l.dp = f.dp.value_or(1);
  l.tp = f.tp.value_or(1);
  l.pp = f.pp.value_or(1);
  l.vpp = f.vpp.value_or(1);
  l.ep = f.ep.value_or(1);
  l.zero = f.zero.value_or(0);
  l.micro_batch = f.micro_batch.value_or(1);
  l.grad_accum = global_batch / (l.dp * l.micro_batch);
  l.recompute = f.recompute.value_or(Recompute::none);
  l.sequence_parallel = f.sequence_parallel.value_or(false);
  l.offload = f.offload.value_or(Offload::none);
  EXPECT_EQ(l.world_size(), gpus) << fix;
  EXPECT_EQ(l.global_batch(), global_batch) << fix;

  req.fixed = parse_fixed_axes("dp=" + std::to_string(l.dp) + ",tp=" + std::to_string(l.tp) +
                               ",pp=" + std::to_string(l.pp) + ",vpp=" + std::to_string(l.vpp) +
                               ",ep=" + std::to_string(l.ep) + ",zero=" + std::to_string(l.zero) +
                               ",micro_batch=" + std::to_string(l.micro_batch) +
                               ",recompute=" + to_string(l.recompute) +
                               ",sequence_parallel=" + (l.sequence_parallel ? "true" : "false") +
                               ",offload=" + to_string(l.offload));
  req.top_k = 1;
  const Candidate best = search(req).candidates.at(0);
  EXPECT_EQ(layout_to_json(best.layout), layout_to_json(l)) << fix;
  return plan_file_for(req, best, nlohmann::json::object(), nlohmann::json::object());
}

PlanFile llama(const std::string& fix, int64_t gpus = 32) {
  return make_plan("llama-2-7b", gpus, 256, fix);
}

// The plans of the acceptance check (checks/export-frameworks).
PlanFile megatron_check_plan() {
  return llama("dp=4,tp=2,pp=4,vpp=2,zero=1,micro_batch=1,recompute=full,sequence_parallel=true");
}
PlanFile deepspeed_check_plan() {
  return llama("dp=32,tp=1,pp=1,vpp=1,zero=3,micro_batch=2,recompute=full,offload=optimizer");
}
PlanFile torchtitan_check_plan() {
  return llama("dp=8,tp=2,pp=2,vpp=1,zero=3,micro_batch=1,recompute=full,sequence_parallel=true");
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void expect_golden(const std::string& name, const std::string& text) {
  const std::string path = SEXTANT_TEST_DATA "/export/" + name;
  const char* update = std::getenv("SEXTANT_UPDATE_GOLDEN");
  if (update != nullptr && std::string(update) == "1") {
    fs::create_directories(fs::path(path).parent_path());
    std::ofstream(path, std::ios::binary) << text;
    std::cout << "rewrote " << path << "\n";
    return;
  }
  ASSERT_TRUE(fs::exists(path)) << path << " is missing; run with SEXTANT_UPDATE_GOLDEN=1";
  EXPECT_EQ(text, slurp(path)) << "output differs from " << path
                               << " (SEXTANT_UPDATE_GOLDEN=1 rewrites it)";
}

// The message of the InputError `fn` throws, or "accepted".
template <typename Fn>
std::string refusal(Fn fn) {
  try {
    fn();
  } catch (const InputError& e) {
    return e.what();
  }
  return "accepted";
}

// Megatron arguments as flag -> value ("" for a switch); comments and continuations dropped.
std::map<std::string, std::string> megatron_args(const std::string& text) {
  std::map<std::string, std::string> args;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.size() >= 2 && line.compare(line.size() - 2, 2, " \\") == 0)
      line.resize(line.size() - 2);
    const size_t space = line.find(' ');
    const std::string flag = line.substr(0, space);
    EXPECT_EQ(flag.rfind("--", 0), 0u) << line;
    EXPECT_EQ(args.count(flag), 0u) << "repeated " << flag;
    args[flag] = space == std::string::npos ? "" : line.substr(space + 1);
  }
  return args;
}

// The TOML text read by Python's tomllib, as JSON; null (with the reason) when there is no
// Python 3.11+ here.
nlohmann::json parse_toml(const std::string& text, std::string* why_not) {
  const fs::path file = test_dir("export_toml") / "plan.toml";
  std::ofstream(file, std::ios::binary) << text;
  const std::string cmd =
      "python3 -c 'import json, sys, tomllib; "
      "print(json.dumps(tomllib.load(open(sys.argv[1], \"rb\"))))' " +
      file.string() + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    *why_not = "cannot run python3";
    return nullptr;
  }
  std::string out;
  char buf[4096];
  while (size_t n = fread(buf, 1, sizeof buf, pipe)) out.append(buf, n);
  const int status = pclose(pipe);
  if (status != 0) {
    *why_not = "python3 tomllib failed: " + out;
    return nullptr;
  }
  return nlohmann::json::parse(out);
}

#define PARSE_TOML_OR_SKIP(var, text)                                       \
  std::string why_not_##var;                                                \
  const nlohmann::json var = parse_toml(text, &why_not_##var);              \
  if (var.is_null()) {                                                      \
    if (why_not_##var.find("No module named") != std::string::npos ||       \
        why_not_##var.find("cannot run") != std::string::npos)              \
      GTEST_SKIP() << "needs python3 >= 3.11 (tomllib): " << why_not_##var; \
    FAIL() << why_not_##var;                                                \
  }

// ---------------------------------------------------------------------------------------
// Golden outputs.

TEST(ExportGolden, Megatron) {
  expect_golden("megatron-tp2-pp4-vpp2-zero1-full-sp.txt", export_megatron(megatron_check_plan()));
  // Megatron-FSDP, fp16 with fp32 gradients, selective recompute over standard attention.
  expect_golden("megatron-dp8-zero3-fp16-selective.txt",
                export_megatron(make_plan("llama-2-7b", 8, 64,
                                          "dp=8,zero=3,micro_batch=2,recompute=selective",
                                          Precision::fp16, true, false)));
  // GPT-2: LayerNorm, GELU, learned positions, tied, biases, padded vocabulary, uneven
  // stages, tp-pp-dp rank order, optimizer offload.
  PlanFile gpt2 = make_plan("gpt2", 8, 64, "dp=2,tp=2,pp=2,zero=1,micro_batch=4,offload=optimizer",
                            Precision::bf16, false, true, 1024);
  gpt2.layout.order = {Axis::tp, Axis::pp, Axis::dp};
  expect_golden("megatron-gpt2-tp2-pp2-uneven-offload.txt", export_megatron(gpt2));
}

TEST(ExportGolden, DeepSpeed) {
  expect_golden("deepspeed-dp32-zero3-offload-optimizer.json",
                export_deepspeed(deepspeed_check_plan()));
  expect_golden("deepspeed-dp8-zero1-fp16-fp32grads.json",
                export_deepspeed(make_plan("llama-2-7b", 8, 64, "dp=8,zero=1,micro_batch=2",
                                           Precision::fp16, true)));
  expect_golden(
      "deepspeed-dp16-zero3-offload-params-selective.json",
      export_deepspeed(make_plan("llama-2-7b", 16, 64,
                                 "dp=16,zero=3,micro_batch=1,recompute=selective,offload=params",
                                 Precision::bf16, true, false)));
}

TEST(ExportGolden, Torchtitan) {
  expect_golden("torchtitan-dp8-tp2-pp2-zero3-full.toml",
                export_torchtitan(torchtitan_check_plan()));
  expect_golden("torchtitan-dp4-pp8-vpp2-zero2.toml",
                export_torchtitan(llama("dp=4,pp=8,vpp=2,zero=2,micro_batch=1")));
  expect_golden(
      "torchtitan-dp32-zero3-offload-params.toml",
      export_torchtitan(llama("dp=32,zero=3,micro_batch=1,recompute=selective,offload=params")));
}

// ---------------------------------------------------------------------------------------
// The outputs read back.

TEST(ExportMegatron, ArgumentsCarryTheLayout) {
  const std::string text = export_megatron(megatron_check_plan());
  EXPECT_NE(text.find("# Megatron-LM core_v0.19.0"), std::string::npos);
  const auto args = megatron_args(text);
  const std::map<std::string, std::string> expected = {
      {"--tensor-model-parallel-size", "2"},
      {"--pipeline-model-parallel-size", "4"},
      {"--num-virtual-stages-per-pipeline-rank", "2"},
      {"--sequence-parallel", ""},
      {"--micro-batch-size", "1"},
      {"--global-batch-size", "256"},
      {"--seq-length", "4096"},
      {"--max-position-embeddings", "4096"},
      {"--num-layers", "32"},
      {"--hidden-size", "4096"},
      {"--ffn-hidden-size", "11008"},
      {"--num-attention-heads", "32"},
      {"--kv-channels", "128"},
      {"--normalization", "RMSNorm"},
      {"--norm-epsilon", "1e-05"},
      {"--swiglu", ""},
      {"--position-embedding-type", "rope"},
      {"--rotary-base", "10000"},
      {"--untie-embeddings-and-output-weights", ""},
      {"--disable-bias-linear", ""},
      {"--hidden-dropout", "0.0"},
      {"--attention-dropout", "0.0"},
      {"--padded-vocab-size", "32000"},
      {"--attention-backend", "flash"},
      {"--bf16", ""},
      {"--grad-reduce-in-bf16", ""},
      {"--recompute-granularity", "full"},
      {"--recompute-method", "uniform"},
      {"--recompute-num-layers", "1"},
      {"--use-distributed-optimizer", ""}};
  for (const auto& [flag, value] : expected) {
    ASSERT_EQ(args.count(flag), 1u) << flag << "\n" << text;
    EXPECT_EQ(args.at(flag), value) << flag;
  }
  for (const char* absent : {"--group-query-attention", "--use-megatron-fsdp", "--fp16",
                             "--pipeline-model-parallel-layout", "--use-tp-pp-dp-mapping"})
    EXPECT_EQ(args.count(absent), 0u) << absent;
}

// Every flag the exporter writes, checked by hand against core_v0.19.0: written out in
// megatron/training/arguments.py, or generated from a dataclass field name by
// ArgumentGroupFactory ("--" + name with '_' -> '-', or the field's argparse_meta).
TEST(ExportMegatron, WritesOnlyFlagsOfTheTargetedRelease) {
  const std::set<std::string> known = {
      "--tensor-model-parallel-size", "--pipeline-model-parallel-size",
      "--num-virtual-stages-per-pipeline-rank", "--pipeline-model-parallel-layout",
      "--sequence-parallel", "--use-tp-pp-dp-mapping", "--micro-batch-size", "--global-batch-size",
      "--seq-length", "--max-position-embeddings", "--num-layers", "--hidden-size",
      "--ffn-hidden-size", "--num-attention-heads", "--group-query-attention", "--num-query-groups",
      "--kv-channels", "--num-experts", "--moe-router-topk", "--moe-ffn-hidden-size",
      // MoE, as listed in megatron/core/transformer/moe/README.md
      // ("MoE Related Arguments"); the shared-expert gate is
      // TransformerConfig.moe_shared_expert_gate.
      "--expert-model-parallel-size", "--moe-token-dispatcher-type", "--moe-grouped-gemm",
      "--moe-aux-loss-coeff", "--moe-router-pre-softmax", "--moe-shared-expert-intermediate-size",
      "--moe-shared-expert-gate", "--normalization", "--norm-epsilon", "--swiglu",
      "--position-embedding-type", "--rotary-base", "--rotary-percent",
      "--untie-embeddings-and-output-weights", "--disable-bias-linear", "--add-qkv-bias",
      "--hidden-dropout", "--attention-dropout", "--padded-vocab-size", "--attention-backend",
      "--bf16", "--fp16", "--grad-reduce-in-bf16", "--accumulate-allreduce-grads-in-fp32",
      "--initial-loss-scale", "--min-loss-scale", "--loss-scale-window", "--hysteresis",
      "--clip-grad", "--recompute-granularity", "--recompute-method", "--recompute-num-layers",
      "--recompute-modules", "--use-distributed-optimizer", "--use-megatron-fsdp",
      "--data-parallel-sharding-strategy", "--ckpt-format", "--optimizer-cpu-offload",
      "--optimizer-offload-fraction", "--use-precision-aware-optimizer"};
  PlanFile gpt2 = make_plan("gpt2", 8, 64, "dp=2,tp=2,pp=2,zero=1,micro_batch=4,offload=optimizer",
                            Precision::bf16, false, true, 1024);
  gpt2.layout.order = {Axis::tp, Axis::pp, Axis::dp};
  const PlanFile plans[] = {
      megatron_check_plan(),
      gpt2,
      make_plan("llama-2-7b", 8, 64, "dp=8,zero=3,micro_batch=2,recompute=selective",
                Precision::fp16, true, false),
      make_plan("mixtral-8x7b", 32, 256, "dp=4,tp=8,zero=1,sequence_parallel=true"),
      make_plan("mixtral-8x7b", 64, 256, "dp=16,tp=1,pp=4,vpp=8,ep=8,zero=1"),
      make_plan("qwen1.5-moe-a2.7b", 16, 64, "dp=16,ep=4,zero=1"),
      make_plan("qwen2-0.5b", 8, 64, "dp=4,tp=2,zero=2", Precision::fp32)};
  for (const PlanFile& plan : plans)
    for (const auto& [flag, value] : megatron_args(export_megatron(plan)))
      EXPECT_EQ(known.count(flag), 1u) << flag << " is not a core_v0.19.0 argument we checked";
}

TEST(ExportMegatron, ArchitectureAndPrecisionOptions) {
  // GQA and MoE (Mixtral), Megatron-FSDP ZeRO-2 with QKV-only biases in fp32 (Qwen2).
  auto mixtral = megatron_args(export_megatron(
      make_plan("mixtral-8x7b", 32, 256, "dp=4,tp=8,zero=1,sequence_parallel=true")));
  EXPECT_EQ(mixtral.at("--num-query-groups"), "8");
  EXPECT_EQ(mixtral.count("--group-query-attention"), 1u);
  EXPECT_EQ(mixtral.at("--num-experts"), "8");
  EXPECT_EQ(mixtral.at("--moe-router-topk"), "2");
  EXPECT_EQ(mixtral.at("--moe-ffn-hidden-size"), "14336");
  EXPECT_EQ(mixtral.at("--rotary-base"), "1000000");
  EXPECT_EQ(mixtral.at("--expert-model-parallel-size"), "1");
  EXPECT_EQ(mixtral.count("--moe-token-dispatcher-type"), 0u);  // ep 1: the allgather default

  // Expert parallelism: Megatron-Core's reference mapping for Mixtral 8x7B (tp1 ep8 pp4 vp8).
  auto ep8 = megatron_args(
      export_megatron(make_plan("mixtral-8x7b", 64, 256, "dp=16,tp=1,pp=4,vpp=8,ep=8,zero=1")));
  EXPECT_EQ(ep8.at("--expert-model-parallel-size"), "8");
  EXPECT_EQ(ep8.at("--moe-token-dispatcher-type"), "alltoall");
  EXPECT_EQ(ep8.at("--num-experts"), "8");
  EXPECT_EQ(ep8.count("--moe-grouped-gemm"), 0u);        // one expert per rank
  EXPECT_EQ(ep8.count("--moe-router-pre-softmax"), 0u);  // Mixtral renormalises its top 2
  // Qwen1.5-MoE: 60 experts over ep 4 (15 per rank, grouped GEMM), softmax before top-4, the
  // gated shared expert.
  auto qwen_moe =
      megatron_args(export_megatron(make_plan("qwen1.5-moe-a2.7b", 16, 64, "dp=16,ep=4,zero=1")));
  EXPECT_EQ(qwen_moe.at("--expert-model-parallel-size"), "4");
  EXPECT_EQ(qwen_moe.at("--moe-ffn-hidden-size"), "1408");
  EXPECT_EQ(qwen_moe.at("--moe-router-topk"), "4");
  EXPECT_EQ(qwen_moe.count("--moe-grouped-gemm"), 1u);
  EXPECT_EQ(qwen_moe.count("--moe-router-pre-softmax"), 1u);
  EXPECT_EQ(qwen_moe.at("--moe-shared-expert-intermediate-size"), "5632");
  EXPECT_EQ(qwen_moe.count("--moe-shared-expert-gate"), 1u);

  auto qwen = megatron_args(
      export_megatron(make_plan("qwen2-0.5b", 8, 64, "dp=4,tp=2,zero=2", Precision::fp32)));
  EXPECT_EQ(qwen.count("--disable-bias-linear"), 1u);
  EXPECT_EQ(qwen.count("--add-qkv-bias"), 1u);
  EXPECT_EQ(qwen.at("--data-parallel-sharding-strategy"), "optim_grads");
  EXPECT_EQ(qwen.at("--ckpt-format"), "fsdp_dtensor");
  for (const char* absent :
       {"--bf16", "--fp16", "--grad-reduce-in-bf16", "--untie-embeddings-and-output-weights"})
    EXPECT_EQ(qwen.count(absent), 0u) << absent;  // fp32 is Megatron's default; qwen2-0.5b ties

  auto fp16 = megatron_args(export_megatron(
      make_plan("llama-2-7b", 8, 64, "dp=8,zero=1,micro_batch=2", Precision::fp16, true)));
  EXPECT_EQ(fp16.count("--fp16"), 1u);
  EXPECT_EQ(fp16.count("--loss-scale"), 0u);  // dynamic
  EXPECT_EQ(fp16.at("--initial-loss-scale"), "65536");
  EXPECT_EQ(fp16.at("--loss-scale-window"), "1000");
  EXPECT_EQ(fp16.at("--hysteresis"), "2");
  EXPECT_EQ(fp16.count("--accumulate-allreduce-grads-in-fp32"), 1u);
}

TEST(ExportMegatron, UnevenStagesAreLaidOutExactly) {
  PlanFile plan =
      make_plan("llama-3-8b", 32, 256, "dp=4,pp=8,zero=1", Precision::bf16, false, true, 1024);
  std::string expected;
  for (const ChunkSpec& c : plan.partition) {
    std::string stage = std::string(c.embedding ? "E" : "") +
                        (c.blocks == 1  ? "t"
                         : c.blocks > 1 ? "t*" + std::to_string(c.blocks)
                                        : "") +
                        (c.head ? "L" : "");
    expected += (expected.empty() ? "" : "|") + stage;
  }
  const auto args = megatron_args(export_megatron(plan));
  ASSERT_EQ(args.count("--pipeline-model-parallel-layout"), 1u);
  EXPECT_EQ(args.at("--pipeline-model-parallel-layout"), "\"" + expected + "\"");
  // The layout sets vpp; Megatron refuses it beside the other virtual-pipeline flags.
  EXPECT_EQ(args.count("--num-virtual-stages-per-pipeline-rank"), 0u);
  EXPECT_FALSE(std::all_of(plan.partition.begin(), plan.partition.end(), [&](const ChunkSpec& c) {
    return c.blocks == plan.partition[0].blocks;
  })) << "this test wants an uneven partition";
}

TEST(ExportDeepSpeed, ConfigCarriesTheLayout) {
  const nlohmann::json d = nlohmann::json::parse(export_deepspeed(deepspeed_check_plan()));
  EXPECT_EQ(d["train_micro_batch_size_per_gpu"], 2);
  EXPECT_EQ(d["train_batch_size"], 256);
  EXPECT_EQ(d["gradient_accumulation_steps"], 4);
  EXPECT_EQ(d["zero_optimization"]["stage"], 3);
  EXPECT_EQ(d["zero_optimization"]["offload_optimizer"]["device"], "cpu");
  EXPECT_EQ(d["zero_optimization"].count("offload_param"), 0u);
  EXPECT_EQ(d["bf16"]["enabled"], true);
  EXPECT_EQ(d["fp16"]["enabled"], false);
  EXPECT_EQ(d["gradient_clipping"], 1.0);
  EXPECT_EQ(d.count("data_types"), 0u);
  EXPECT_TRUE(d.contains("activation_checkpointing"));
  ASSERT_TRUE(d["_comment"].is_array());
  EXPECT_NE(d["_comment"][0].get<std::string>().find("DeepSpeed v0.19.5"), std::string::npos);

  const nlohmann::json fp16 = nlohmann::json::parse(export_deepspeed(
      make_plan("llama-2-7b", 8, 64, "dp=8,zero=2,micro_batch=2", Precision::fp16, true)));
  EXPECT_EQ(fp16["fp16"]["enabled"], true);
  EXPECT_EQ(fp16["fp16"]["loss_scale"], 0);
  EXPECT_EQ(fp16["fp16"]["initial_scale_power"], 16);
  EXPECT_EQ(fp16["fp16"]["loss_scale_window"], 1000);
  EXPECT_EQ(fp16["fp16"]["hysteresis"], 2);
  EXPECT_EQ(fp16["fp16"]["min_loss_scale"], 1);
  EXPECT_EQ(fp16["bf16"]["enabled"], false);
  EXPECT_EQ(fp16["data_types"]["grad_accum_dtype"], "fp32");
  EXPECT_EQ(fp16.count("activation_checkpointing"), 0u);

  const nlohmann::json params =
      nlohmann::json::parse(export_deepspeed(llama("dp=32,zero=3,micro_batch=1,offload=params")));
  EXPECT_EQ(params["zero_optimization"]["offload_param"]["device"], "cpu");
  EXPECT_EQ(params["zero_optimization"]["offload_optimizer"]["device"], "cpu");
}

TEST(ExportTorchtitan, TomlCarriesTheLayout) {
  PARSE_TOML_OR_SKIP(t, export_torchtitan(torchtitan_check_plan()));
  const nlohmann::json& p = t["parallelism"];
  EXPECT_EQ(p["tensor_parallel_degree"], 2);
  EXPECT_EQ(p["pipeline_parallel_degree"], 2);
  EXPECT_EQ(p["data_parallel_shard_degree"], 8);
  EXPECT_EQ(p["data_parallel_replicate_degree"], 1);
  EXPECT_EQ(p["fsdp_reshard_after_forward"], "always");
  EXPECT_EQ(p["pipeline_parallel_schedule"], "1F1B");
  EXPECT_EQ(p["pipeline_parallel_microbatch_size"], 1);
  ASSERT_EQ(p["module_fqns_per_model_part"].size(), 2u);
  EXPECT_EQ(p["module_fqns_per_model_part"][0][0], "tok_embeddings");
  EXPECT_EQ(p["module_fqns_per_model_part"][1].back(), "output");
  // 256 sequences = dp 8 x 32 pipeline micro-batches of 1, one accumulation step.
  EXPECT_EQ(t["training"]["local_batch_size"], 32);
  EXPECT_EQ(t["training"]["global_batch_size"], 256);
  EXPECT_EQ(t["training"]["seq_len"], 4096);
  EXPECT_EQ(t["training"]["mixed_precision_param"], "bfloat16");
  EXPECT_EQ(t["training"]["mixed_precision_reduce"], "float32");
  EXPECT_EQ(t["training"]["max_norm"], 1.0);
  EXPECT_EQ(t["activation_checkpoint"]["mode"], "full");
  EXPECT_TRUE(t["model"]["name"].is_string());
}

TEST(ExportTorchtitan, InterleavedPipelineAndDataParallelModes) {
  PARSE_TOML_OR_SKIP(zero2, export_torchtitan(llama("dp=4,pp=8,vpp=2,zero=2,micro_batch=1")));
  EXPECT_EQ(zero2["parallelism"]["pipeline_parallel_schedule"], "Interleaved1F1B");
  EXPECT_EQ(zero2["parallelism"]["fsdp_reshard_after_forward"], "never");
  EXPECT_EQ(zero2["parallelism"]["module_fqns_per_model_part"].size(), 16u);
  // Part i runs on pipeline rank i mod 8: the plan's chunk i.
  const PlanFile plan = llama("dp=4,pp=8,vpp=2,zero=2,micro_batch=1");
  int64_t layers = 0;
  for (size_t i = 0; i < plan.partition.size(); ++i) {
    const nlohmann::json& part = zero2["parallelism"]["module_fqns_per_model_part"][i];
    const size_t extra = (plan.partition[i].embedding ? 1 : 0) + (plan.partition[i].head ? 2 : 0);
    EXPECT_EQ(part.size(), static_cast<size_t>(plan.partition[i].blocks) + extra) << i;
    for (const auto& name : part) {
      if (name.get<std::string>().rfind("layers.", 0) == 0) {
        EXPECT_EQ(name, "layers." + std::to_string(layers++));
      }
    }
  }
  EXPECT_EQ(layers, 32);

  PARSE_TOML_OR_SKIP(ddp, export_torchtitan(llama("dp=32,zero=0,micro_batch=1")));
  EXPECT_EQ(ddp["parallelism"]["data_parallel_replicate_degree"], 32);
  EXPECT_EQ(ddp["parallelism"]["data_parallel_shard_degree"], 1);
  EXPECT_EQ(ddp["parallelism"].count("fsdp_reshard_after_forward"), 0u);
  EXPECT_EQ(ddp["training"]["local_batch_size"], 1);  // 8 accumulation steps
  EXPECT_EQ(ddp["training"]["global_batch_size"], 256);

  PARSE_TOML_OR_SKIP(fp32, export_torchtitan(make_plan(
                               "llama-2-7b", 8, 64, "dp=8,zero=3,micro_batch=1", Precision::fp32)));
  EXPECT_EQ(fp32["training"]["mixed_precision_param"], "float32");
}

// ---------------------------------------------------------------------------------------
// Refusals: each names the framework and why.

void expect_refused(const std::string& message, const std::string& framework,
                    const std::string& fragment) {
  EXPECT_EQ(message.rfind("--to: " + framework + ": ", 0), 0u) << message;
  EXPECT_NE(message.find(fragment), std::string::npos) << message;
}

TEST(ExportRefusals, UnknownFramework) {
  const std::string m = refusal([] { export_framework_from_string("nemo"); });
  EXPECT_EQ(m, "--to: got \"nemo\"; allowed: megatron, deepspeed, torchtitan");
  EXPECT_EQ(export_framework_from_string("torchtitan"), ExportFramework::torchtitan);
}

TEST(ExportRefusals, Megatron) {
  auto megatron = [](PlanFile plan) { return refusal([&] { export_megatron(plan); }); };
  PlanFile order = megatron_check_plan();
  order.layout.order = {Axis::dp, Axis::tp, Axis::pp};
  expect_refused(megatron(order), "megatron", "rank order dp-tp-pp");
  expect_refused(megatron(llama("dp=8,pp=4,zero=3")), "megatron", "Megatron-FSDP");
  expect_refused(megatron(llama("dp=8,pp=4,zero=2")), "megatron", "pp=1 only");
  expect_refused(megatron(llama("dp=32,zero=3,offload=params")), "megatron", "offload=params");
  expect_refused(megatron(llama("dp=32,zero=3,offload=optimizer")), "megatron",
                 "offload=optimizer with zero=3");
  expect_refused(megatron(llama("dp=32,zero=0,offload=optimizer")), "megatron",
                 "offload=optimizer with zero=0");
  expect_refused(megatron(make_plan("llama-3-8b", 16, 64, "dp=1,tp=16,sequence_parallel=true")),
                 "megatron", "tp=16 with 8 key/value heads");
  expect_refused(megatron(make_plan("gpt-neox-20b", 8, 64, "dp=4,tp=2,zero=1", Precision::bf16,
                                    false, true, 2048)),
                 "megatron", "parallel residual");
  expect_refused(megatron(make_plan("mixtral-8x7b", 32, 256, "dp=4,tp=8,zero=1")), "megatron",
                 "MoE at tp=8 without sequence parallelism");
  PlanFile interleaved = megatron_check_plan();  // 64 micro-batches; make it 62
  interleaved.layout.grad_accum = 62;
  expect_refused(megatron(interleaved), "megatron", "needs a multiple of pp=4");
  PlanFile biases = llama("dp=32,zero=1");
  biases.model.qkv_bias = biases.model.attn_out_bias = true;  // llama attention_bias=true
  expect_refused(megatron(biases), "megatron", "every linear layer");
  PlanFile odd_seq = megatron_check_plan();
  odd_seq.model.seq_len = 4095;
  expect_refused(megatron(odd_seq), "megatron", "seq 4095 not divisible by tp=2");
  PlanFile long_seq = make_plan("gpt2", 8, 64, "dp=8,zero=1", Precision::bf16, false, true, 1024);
  long_seq.model.seq_len = 2048;
  expect_refused(megatron(long_seq), "megatron", "learned positions");
}

TEST(ExportRefusals, DeepSpeed) {
  auto deepspeed = [](PlanFile plan) { return refusal([&] { export_deepspeed(plan); }); };
  // The acceptance check's tp2/pp4 plan.
  expect_refused(deepspeed(megatron_check_plan()), "deepspeed", "tp=2");
  expect_refused(deepspeed(megatron_check_plan()), "deepspeed", "AutoTP");
  expect_refused(deepspeed(llama("dp=8,pp=4,zero=1")), "deepspeed", "PipelineModule");
  expect_refused(deepspeed(llama("dp=32,zero=0,offload=optimizer")), "deepspeed",
                 "needs ZeRO stage 1, 2 or 3");
  PlanFile params_at_zero2 = llama("dp=32,zero=2");  // the planner never makes it: an edited plan
  params_at_zero2.layout.offload = Offload::params;
  expect_refused(deepspeed(params_at_zero2), "deepspeed", "offload_param is valid only with ZeRO stage 3");
  expect_refused(deepspeed(make_plan("llama-2-7b", 8, 64, "dp=8,zero=0", Precision::bf16, true)),
                 "deepspeed", "unsupported mix");
}

TEST(ExportRefusals, Torchtitan) {
  auto titan = [](PlanFile plan) { return refusal([&] { export_torchtitan(plan); }); };
  PlanFile order = torchtitan_check_plan();
  order.layout.order = {Axis::tp, Axis::pp, Axis::dp};
  expect_refused(titan(order), "torchtitan", "rank order tp-pp-dp");
  expect_refused(titan(make_plan("llama-2-7b", 8, 64, "dp=8,zero=3", Precision::fp16)),
                 "torchtitan", "fp16");
  expect_refused(
      titan(make_plan("llama-2-7b", 8, 64, "dp=8,zero=3", Precision::bf16, false, false)),
      "torchtitan", "standard attention");
  expect_refused(titan(llama("dp=32,zero=1")), "torchtitan", "zero=1");
  expect_refused(titan(llama("dp=16,tp=2,zero=0,sequence_parallel=true")), "torchtitan", "DDP");
  expect_refused(titan(make_plan("llama-2-7b", 8, 64, "dp=1,tp=8,sequence_parallel=true")),
                 "torchtitan", "turns mixed precision off");
  expect_refused(titan(llama("dp=16,tp=2,zero=3")), "torchtitan", "without sequence parallelism");
  expect_refused(
      titan(make_plan("llama-3-8b", 16, 64, "dp=1,tp=16,sequence_parallel=true", Precision::fp32)),
      "torchtitan", "key/value heads");
  expect_refused(titan(llama("dp=32,zero=3,offload=optimizer")), "torchtitan", "optimizer-only");
  expect_refused(titan(make_plan("mixtral-8x7b", 64, 256, "dp=64,ep=8,zero=0")), "torchtitan",
                 "ep=8 with zero=0");
}

// MoE: torchtitan carries ep (and expert tp = tp) in [parallelism]; DeepSpeed's config
// cannot express ep (it is model code there) and refuses it.
TEST(ExportMoe, TorchtitanCarriesEpDeepSpeedRefusesIt) {
  PARSE_TOML_OR_SKIP(
      t, export_torchtitan(
             make_plan("mixtral-8x7b", 64, 256, "dp=32,tp=2,ep=8,zero=3,sequence_parallel=true")));
  EXPECT_EQ(t["parallelism"]["expert_parallel_degree"], 8);
  EXPECT_EQ(t["parallelism"]["expert_tensor_parallel_degree"], 2);
  EXPECT_EQ(t["parallelism"]["data_parallel_shard_degree"], 32);
  const std::string ds =
      refusal([] { export_deepspeed(make_plan("mixtral-8x7b", 64, 256, "dp=64,ep=8,zero=1")); });
  expect_refused(ds, "deepspeed", "ep=8");
  expect_refused(ds, "deepspeed", "deepspeed.moe.layer.MoE");
}

TEST(ExportTorchtitan, SelectiveUnderFlashAttentionIsNoRecompute) {
  PARSE_TOML_OR_SKIP(t, export_torchtitan(llama("dp=32,zero=3,micro_batch=1,recompute=selective")));
  EXPECT_EQ(t["activation_checkpoint"]["mode"], "none");
}

TEST(ExportFormat, FloatsReadBackAsPythonWritesThem) {
  using export_detail::format_float;
  EXPECT_EQ(format_float(1.0), "1.0");
  EXPECT_EQ(format_float(0.0), "0.0");
  EXPECT_EQ(format_float(0.1), "0.1");
  EXPECT_EQ(format_float(0.25), "0.25");
  EXPECT_EQ(format_float(1e-5), "1e-05");
  EXPECT_EQ(format_float(1e-6), "1e-06");
  EXPECT_EQ(format_float(10000.0), "10000.0");
  EXPECT_EQ(format_float(500000.0), "500000.0");
  EXPECT_EQ(format_float(1e16), "1e+16");
  EXPECT_EQ(format_float(1.0 / 3.0), "0.3333333333333333");
}

TEST(ExportRefusals, BadPartitionIsNamed) {
  PlanFile plan = megatron_check_plan();
  plan.partition.pop_back();
  const std::string m = refusal([&] { export_megatron(plan); });
  EXPECT_NE(m.find("plan: partition: has 7 chunks; pp*vpp = 8"), std::string::npos) << m;
}

}  // namespace
}  // namespace sextant
