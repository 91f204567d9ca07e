// sextant execute end to end on CPU ranks (ctest label mpi):
//  - equivalence: every layout of the matrix trains the single-rank run's model (below),
//    mixture-of-experts models (tiny-mixtral, tiny-qwen2-moe) under expert parallelism
//    included, each against its own single-rank run;
//  - bf16 mixed precision follows the fp32 run to bf16's resolution;
//  - a run killed mid-way and resumed from its checkpoint continues with bit-identical losses;
//  - only the --keep-checkpoints newest checkpoints stay, and the newest resumes;
//  - a rank that dies ends the job within 60 s; a loss that is not finite stops the run;
//  - plans that do not match the job are refused before any work, bad ep among them;
//  - a MoE run resumes bit-identically and its checkpoint holds each expert once.
//
// Equivalence, by construction rather than by a bound tuned to one BLAS. In fp32 a
// layout's run differs from the single-rank run only by rounding: tp splits GEMMs, dp
// and pp sum partial gradients, so each summation order (and each BLAS) rounds
// differently, and Adam's m/sqrt(v) turns that rounding into a share of the step where a
// gradient sits at the fp32 noise floor. How much this training amplifies unit roundoff
// u was measured on the fp32 matrix (15 layouts, 10 steps) under OpenBLAS's Haswell,
// SkylakeX and Sandybridge kernels and netlib's reference BLAS (README "Equivalence"):
//   per-step loss, relative difference:          at most 1.1 u32   (u32 = 2^-24 ≈ 6.0e-8)
//   final weights, per-tensor relative diff.:    at most 235 u32
// These are properties of the training, not of the precision: to first order a
// difference is a sum of rounding errors, each proportional to u, times the training's
// sensitivity to them. So the matrix runs in float64 (`execute --fp64`, from the same
// fp32-initialised model) against a float64 single-rank run, bounded by u64 = 2^-53
// ≈ 1.1e-16 times 100× the amplification, rounded up to 2 and 300:
//   losses:  100 × 2   × u64 ≈ 2.2e-14 relative, every step      (kLossBound64)
//   weights: 100 × 300 × u64 ≈ 3.3e-12 relative, every tensor    (kWeightBound64)
// Measured in float64 under the same four BLAS: losses ≤ 3.3e-16 (3 u64), weights
// ≤ 3.5e-14 (315 u64: the same order as fp32's 235 u32, which the factor 100 absorbs).
// A bug sits ~10 orders of magnitude above the bounds: without tp's all-reduce of the
// input gradient of column-parallel linears, tp2 moves losses by 5e-3 and weights by
// 0.21; dropping one of four micro-batches' backward moves them by 9e-3 and 0.13.
// Fp64BoundsCatchALearningRateOnePartInAMillionOff shows the test failing on far less.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/version.h>
#include <nlohmann/json.hpp>

#include "executor/checkpoint.h"
#include "tests/test_dir.h"

namespace fs = std::filesystem;

namespace sextant {
namespace {

struct Result {
  int status = -1;
  std::string out;
  double seconds = 0;
};

const fs::path& work_dir() {
  static const fs::path dir = [] {
    const fs::path d = test_dir("training");
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    return d;
  }();
  return dir;
}

Result shell(const std::string& command) {
  const fs::path log = work_dir() / "last.log";
  const auto start = std::chrono::steady_clock::now();
  const int raw = std::system(("cd " + work_dir().string() + " && " + command + " >" + log.string() + " 2>&1").c_str());
  Result r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  r.status = WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
  std::ifstream in(log);
  std::stringstream s;
  s << in.rdbuf();
  r.out = s.str();
  return r;
}

// Every axis pinned: the case's keys override a single-rank, no-recompute layout.
std::string full_fix(const std::string& fix) {
  std::map<std::string, std::string> axes = {{"dp", "1"}, {"tp", "1"}, {"pp", "1"}, {"vpp", "1"}, {"ep", "1"}, {"zero", "0"},
                                             {"micro_batch", "1"}, {"recompute", "none"},
                                             {"sequence_parallel", "false"}, {"offload", "none"}};
  std::stringstream in(fix);
  std::string item;
  while (std::getline(in, item, ','))
    if (auto eq = item.find('='); eq != std::string::npos) axes[item.substr(0, eq)] = item.substr(eq + 1);
  std::string out;
  for (const auto& [k, v] : axes) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

int ranks_of(const std::string& fix) {
  const std::string f = full_fix(fix);
  auto value = [&](const std::string& key) {
    auto at = f.find(key + "=");
    return std::stoi(f.substr(at + key.size() + 1));
  };
  return value("dp") * value("tp") * value("pp");
}

// Sets layout.ep of plan `name`: what a plan the planner refuses looks like.
void set_ep(const std::string& name, int ep) {
  const fs::path file = work_dir() / ("plan-" + name + ".json");
  nlohmann::json p = nlohmann::json::parse(std::ifstream(file));
  p["layout"]["ep"] = ep;
  std::ofstream(file) << p.dump(2);
}

// `model`: a file of examples/models.
Result plan(const std::string& name, const std::string& fix, const std::string& precision = "fp32",
            const std::string& model = "tiny-llama.json") {
  return shell(std::string(SEXTANT_BINARY) + " plan --model " SEXTANT_EXAMPLES "/models/" + model +
               " --cluster local-cpu --gpus " + std::to_string(ranks_of(fix)) + " --global-batch 8 --seq 32 --precision " +
               precision + " --top 1 --db plans.db --out plan-" + name + ".json --fix " + full_fix(fix));
}

Result execute(const std::string& name, int ranks, const std::string& args, bool launcher = true) {
  // CPU ranks: on a GPU machine, several ranks would otherwise share one GPU.
  const std::string program =
      std::string(SEXTANT_BINARY) + " execute --plan plan-" + name + ".json --db runs.db --device cpu " + args;
  return shell(launcher ? std::string(SEXTANT_MPIEXEC) + " --oversubscribe -np " + std::to_string(ranks) + " " + program
                        : program);
}

// One field of every line of a metrics file.
std::vector<double> metric(const std::string& metrics, const std::string& key) {
  std::vector<double> out;
  std::ifstream in(work_dir() / metrics);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line).at(key).get<double>());
  return out;
}

std::vector<double> losses(const std::string& metrics) { return metric(metrics, "loss"); }

std::map<std::string, torch::Tensor> weights(const std::string& folder) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& file : fs::directory_iterator(work_dir() / folder))
    for (auto& [name, t] : read_safetensors(file.path().string())) out[name] = t;
  return out;
}

constexpr double kU64 = 0x1p-53;                     // float64 unit roundoff
constexpr double kLossBound64 = 100 * 2 * kU64;      // see the header: 100 × A_loss × u64
constexpr double kWeightBound64 = 100 * 300 * kU64;  // 100 × A_weight × u64

// A single-rank reference of `model`, without a launcher (a world of one): `args` "" (fp32)
// or "--fp64".
std::string run_reference(const std::string& name, const std::string& args,
                          const std::string& model = "tiny-llama.json") {
  EXPECT_EQ(plan(name, "", "fp32", model).status, 0);
  const Result r =
      execute(name, 1,
              "--steps 10 --metrics-out m-" + name + ".jsonl --dump-weights w-" + name + " " + args,
              /*launcher=*/false);
  EXPECT_EQ(r.status, 0) << r.out;
  if (args == "--fp64") {
    EXPECT_NE(r.out.find("run not stored: --fp64"), std::string::npos) << r.out;
  }
  return name;
}
// Run once each: the fp32 reference (bf16 compares with it) and the float64 one, per model.
const std::string& reference() {
  static const std::string name = run_reference("ref", "");
  return name;
}
const std::string& reference64(const std::string& model = "tiny-llama.json") {
  static std::map<std::string, std::string> names;
  auto it = names.find(model);
  if (it == names.end()) {
    const std::string name = model == "tiny-llama.json" ? "ref64" : "ref64-" + model.substr(0, model.find('.'));
    it = names.emplace(model, run_reference(name, "--fp64", model)).first;
  }
  return it->second;
}

struct Difference {
  double loss = 0;     // largest per-step |Δloss| / |loss|
  double weight = 0;   // largest per-tensor ||Δw|| / ||w||
  double element = 0;  // largest |Δw| of one element
};

// Run `name` against run `ref`: the per-step losses and every final weight tensor, which
// must have the reference's names, shapes and dtype.
Difference difference(const std::string& ref, const std::string& name) {
  Difference d;
  const std::vector<double> want = losses("m-" + ref + ".jsonl"),
                            got = losses("m-" + name + ".jsonl");
  EXPECT_EQ(want.size(), 10u);
  EXPECT_EQ(got.size(), want.size()) << name;
  for (size_t i = 0; i < std::min(want.size(), got.size()); ++i)
    d.loss = std::max(d.loss, std::abs(got[i] - want[i]) / std::abs(want[i]));
  if (!want.empty()) {
    EXPECT_LT(want.back(), want.front());  // it learns
  }
  const auto expected = weights("w-" + ref), mine = weights("w-" + name);
  EXPECT_EQ(mine.size(), expected.size()) << name;
  for (const auto& [tensor, w] : expected) {
    const auto it = mine.find(tensor);
    if (it == mine.end() || !it->second.sizes().equals(w.sizes()) ||
        it->second.scalar_type() != w.scalar_type()) {
      ADD_FAILURE() << name << ": " << tensor << " is missing or has another shape or dtype";
      d.weight = std::numeric_limits<double>::infinity();
      continue;
    }
    const torch::Tensor delta = it->second - w;
    d.weight = std::max(d.weight, delta.norm().item<double>() / w.norm().item<double>());
    d.element = std::max(d.element, delta.abs().max().item<double>());
  }
  return d;
}

struct Case {
  const char* name;
  const char* fix;
  const char* model = "tiny-llama.json";
};

constexpr const char* kMixtral = "tiny-mixtral.json";
constexpr const char* kQwen2Moe = "tiny-qwen2-moe.json";

class Equivalence : public ::testing::TestWithParam<Case> {};

// The layout trained in float64 against the float64 single-rank run (bounds: see the header).
TEST_P(Equivalence, MatchesTheSingleRankRunInFloat64) {
  const Case c = GetParam();
  const std::string name = std::string(c.name) + "-fp64";
  const std::string ref = reference64(c.model);
  const Result p = plan(name, c.fix, "fp32", c.model);
  ASSERT_EQ(p.status, 0) << p.out;
  const Result r =
      execute(name, ranks_of(c.fix),
              "--fp64 --steps 10 --metrics-out m-" + name + ".jsonl --dump-weights w-" + name);
  ASSERT_EQ(r.status, 0) << r.out;
  const Difference d = difference(ref, name);
  EXPECT_LE(d.loss, kLossBound64) << c.name;
  EXPECT_LE(d.weight, kWeightBound64) << c.name;
  EXPECT_EQ(weights("w-" + name).begin()->second.scalar_type(), torch::kDouble);
  std::printf("%-18s fp64: losses max rel. diff %.1e   weights max rel. diff %.1e (element %.1e)\n",
              c.name, d.loss, d.weight, d.element);
}

INSTANTIATE_TEST_SUITE_P(
    Layouts, Equivalence,
    ::testing::Values(Case{"dp2", "dp=2"}, Case{"tp2", "tp=2"}, Case{"pp2", "pp=2"},
                      Case{"dp2_zero1", "dp=2,zero=1"}, Case{"dp2_zero2", "dp=2,zero=2"},
                      Case{"dp2_zero3", "dp=2,zero=3"}, Case{"dp2_tp2", "dp=2,tp=2"}, Case{"tp2_pp2", "tp=2,pp=2"},
                      Case{"dp2_pp2", "dp=2,pp=2"}, Case{"pp2_vpp2", "pp=2,vpp=2"}, Case{"ga4", "micro_batch=2"},
                      Case{"tp2_sp_selective", "tp=2,sequence_parallel=true,recompute=selective"},
                      Case{"dp2_zero3_full", "dp=2,zero=3,micro_batch=2,recompute=full"},
                      Case{"dp2_tp2_zero2_sp", "dp=2,tp=2,zero=2,sequence_parallel=true"},
                      Case{"pp2_full_zero1", "dp=2,pp=2,zero=1,recompute=full"},
                      // Mixture of experts (executor/moe.h) against its own single-rank run.
                      Case{"moe_dp2_ep2", "dp=2,ep=2", kMixtral},
                      Case{"moe_dp4_ep4_zero1", "dp=4,ep=4,zero=1", kMixtral},
                      Case{"moe_dp4_ep4_zero3", "dp=4,ep=4,zero=3", kMixtral},
                      Case{"moe_dp4_ep2_zero3", "dp=4,ep=2,zero=3", kMixtral},
                      Case{"moe_tp2_ep2", "dp=2,tp=2,ep=2", kMixtral},
                      Case{"moe_tp2_sp_ep2", "dp=2,tp=2,ep=2,sequence_parallel=true,zero=2", kMixtral},
                      Case{"moe_pp2_ep2", "dp=2,pp=2,ep=2", kMixtral},
                      Case{"qwen_moe_tp2_ep2", "dp=2,tp=2,ep=2,zero=1", kQwen2Moe},
                      Case{"qwen_moe_pp2_ep2_full", "dp=2,pp=2,ep=2,recompute=full", kQwen2Moe}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// The bounds are far from vacuous: the float64 single-rank run with its learning rate one
// part in a million off lands orders of magnitude outside them.
TEST(Training, Fp64BoundsCatchALearningRateOnePartInAMillionOff) {
  reference64();
  ASSERT_EQ(plan("lr64", "").status, 0);
  const Result r =
      execute("lr64", 1,
              "--fp64 --lr 1.000001e-3 --steps 10 --metrics-out m-lr64.jsonl --dump-weights w-lr64",
              /*launcher=*/false);
  ASSERT_EQ(r.status, 0) << r.out;
  const Difference d = difference("ref64", "lr64");
  EXPECT_GT(d.loss, 100 * kLossBound64);
  EXPECT_GT(d.weight, 100 * kWeightBound64);
  std::printf("lr 1 + 1e-6       fp64: losses max rel. diff %.1e   weights max rel. diff %.1e\n",
              d.loss, d.weight);
}

// bf16 mixed precision (fp32 master weights, 16-bit compute, fp32 gradient reduction)
// follows the fp32 run to bf16's resolution, on one rank and across dp, tp, pp and ZeRO.
TEST(Training, Bf16TracksTheFp32Run) {
  reference();
  for (const Case c : {Case{"bf16-one", ""}, Case{"bf16-dp2-tp2-z1", "dp=2,tp=2,zero=1,micro_batch=2"},
                       Case{"bf16-dp2-pp2-z3", "dp=2,pp=2,zero=3"}}) {
    ASSERT_EQ(plan(c.name, c.fix, "bf16").status, 0);
    const Result r = execute(c.name, ranks_of(c.fix),
                             "--steps 10 --metrics-out m-" + std::string(c.name) + ".jsonl --dump-weights w-" + c.name);
    ASSERT_EQ(r.status, 0) << r.out;
    const Difference d = difference("ref", c.name);
    // In units of bf16's unit roundoff u = 2^-8 ≈ 3.9e-3, which dominates (fp32 summation
    // order adds ≤ 235 u32 = 1.4e-5): 0.26 u and 5.1 u. Measured 0.022 u and 2.2 u, the
    // same to two digits under four BLAS and two oneDNN kernels (README).
    EXPECT_LE(d.loss, 1e-3) << c.name;
    EXPECT_LE(d.weight, 2e-2) << c.name;
    std::printf("%-18s bf16 vs fp32: losses max rel. diff %.1e   weights max rel. diff %.1e\n",
                c.name, d.loss, d.weight);
  }
}

// Issue 12, defects 3 and 4. On one rank ZeRO has nothing to shard, so ZeRO-2 must train
// exactly as ZeRO-0 does and allocate exactly what it does: no reduce-scatter, no flat
// copy, gradients summed in fp32 straight into the one gradient buffer. Before the fix
// ZeRO-0 summed bf16 micro-batch gradients in bf16 (losses 4e-5 apart at grad-accum 4)
// and the two stages' peaks differed (measured here: 7.42 MB ZeRO-0, 6.14 MB ZeRO-2 in
// bf16; now 6.14 MB both).
TEST(Training, ZeroStagesOnOneRankTrainAndCostAsZeroZero) {
  for (const std::string precision : {"bf16", "fp32"}) {
    std::map<int, std::vector<double>> loss, peak;
    for (int zero : {0, 2}) {
      const std::string name = "one-" + precision + "-z" + std::to_string(zero);
      ASSERT_EQ(plan(name, "micro_batch=2,zero=" + std::to_string(zero), precision).status, 0);
      const Result r = execute(name, 1, "--steps 4 --metrics-out m-" + name + ".jsonl", /*launcher=*/false);
      ASSERT_EQ(r.status, 0) << r.out;
      loss[zero] = losses("m-" + name + ".jsonl");
      peak[zero] = metric("m-" + name + ".jsonl", "peak_bytes");
    }
    ASSERT_EQ(loss[0].size(), 4u);
    ASSERT_EQ(loss[2].size(), 4u);
    for (size_t i = 0; i < 4; ++i) {
      EXPECT_EQ(loss[2][i], loss[0][i]) << precision << " step " << i;
      EXPECT_EQ(peak[2][i], peak[0][i]) << precision << " step " << i;
    }
    std::printf("%s, grad-accum 4, one rank: peak bytes ZeRO-0 %.0f, ZeRO-2 %.0f\n", precision.c_str(), peak[0][0],
                peak[2][0]);
  }
}

TEST(Training, KilledAndResumedContinuesWithBitIdenticalLosses) {
  const std::string fix = "dp=2,zero=2";
  ASSERT_EQ(plan("resume", fix).status, 0);
  const Result whole = execute("resume", 2, "--steps 10 --metrics-out m-whole.jsonl");
  ASSERT_EQ(whole.status, 0) << whole.out;
  fs::remove_all(work_dir() / "ckpt");
  setenv("SEXTANT_FAULT", "kill:0:7", 1);  // rank 0 dies as step 7 starts
  const Result killed = execute("resume", 2, "--steps 10 --metrics-out m-part.jsonl --checkpoint-dir ckpt --checkpoint-every 3");
  unsetenv("SEXTANT_FAULT");
  EXPECT_NE(killed.status, 0) << killed.out;
  ASSERT_TRUE(fs::exists(work_dir() / "ckpt" / "latest"));
  const Result resumed =
      execute("resume", 2, "--steps 10 --metrics-out m-part.jsonl --checkpoint-dir ckpt --checkpoint-every 3 --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.out;
  const std::vector<double> a = losses("m-whole.jsonl"), b = losses("m-part.jsonl");
  // Steps 0-6 ran before the kill; the checkpoint after step 5 resumes at step 6.
  ASSERT_EQ(b.size(), 7u + 4u);
  for (size_t i = 0; i < 10; ++i) EXPECT_EQ(a[i], i < 7 ? b[i] : b[i + 1]) << "step " << i;
}

// MoE (dp 2, ep 2, ZeRO-1): a run resumed from its checkpoint continues with bit-identical
// losses; the checkpoint holds each routed expert once (each ep rank its own), and the
// metrics split the loss into the language-model and load-balancing parts and time the
// all-to-alls.
TEST(Training, MoeResumesBitIdenticallyAndCheckpointsEachExpertOnce) {
  const std::string fix = "dp=2,ep=2,zero=1";
  ASSERT_EQ(plan("moe-resume", fix, "fp32", kMixtral).status, 0);
  const Result whole = execute("moe-resume", 2, "--steps 6 --metrics-out m-moe-whole.jsonl");
  ASSERT_EQ(whole.status, 0) << whole.out;
  fs::remove_all(work_dir() / "ckpt-moe");
  const Result first = execute("moe-resume", 2, "--steps 3 --metrics-out m-moe-part.jsonl --checkpoint-dir ckpt-moe "
                                                "--checkpoint-every 3");
  ASSERT_EQ(first.status, 0) << first.out;
  const Result resumed = execute("moe-resume", 2, "--steps 6 --metrics-out m-moe-part.jsonl --checkpoint-dir ckpt-moe "
                                                  "--resume");
  ASSERT_EQ(resumed.status, 0) << resumed.out;
  const std::vector<double> a = losses("m-moe-whole.jsonl"), b = losses("m-moe-part.jsonl");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (size_t i = 0; i < 6; ++i) EXPECT_EQ(a[i], b[i]) << "step " << i;
  std::map<std::string, int> expert_states;
  for (int rank = 0; rank < 2; ++rank)
    for (const auto& [name, t] : read_safetensors(
             (work_dir() / "ckpt-moe" / "step-3" / ("rank-" + std::to_string(rank) + ".safetensors")).string()))
      if (name.find(".experts.") != std::string::npos) ++expert_states[name];
  // Per layer, one group per ep rank (its two experts) with param, exp_avg, exp_avg_sq.
  EXPECT_EQ(expert_states.size(), 2u * 2u * 3u);
  for (const auto& [name, count] : expert_states) EXPECT_EQ(count, 1) << name;
  const std::vector<double> lm = metric("m-moe-whole.jsonl", "lm_loss"), aux = metric("m-moe-whole.jsonl", "aux_loss");
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_GT(aux[i], 0) << "step " << i;
    EXPECT_NEAR(lm[i] + aux[i], a[i], 1e-6 * a[i]) << "step " << i;
  }
  for (double t : metric("m-moe-whole.jsonl", "ep_comm_s")) EXPECT_GT(t, 0);
  // The store keeps the all-to-all time; compare sets its share of the step beside the plan's.
  const Result cmp = shell(std::string(SEXTANT_BINARY) + " compare --db runs.db --format json");
  ASSERT_EQ(cmp.status, 0) << cmp.out;
  const nlohmann::json last = nlohmann::json::parse(cmp.out).back();
  EXPECT_EQ(last["layout"]["ep"], 2);
  const nlohmann::json& parts = last["breakdown"];
  EXPECT_GT(parts["predicted"]["ep_comm_share"].get<double>(), 0);
  EXPECT_GT(parts["measured"]["ep_comm_s"].get<double>(), 0);
  EXPECT_NEAR(parts["measured"]["ep_comm_share"].get<double>(),
              parts["measured"]["ep_comm_s"].get<double>() / last["step_time_s"]["measured"].get<double>(), 1e-12);
  std::printf("tiny-mixtral dp2 ep2: step 0 loss %.6f = lm %.6f + aux %.6f; ep_comm_s %.2e\n", a[0], lm[0], aux[0],
              metric("m-moe-whole.jsonl", "ep_comm_s")[0]);
}

// Bad expert parallelism in a plan: one line naming layout.ep, exit 2, before any work.
TEST(Training, ExpertParallelismTheModelCannotTakeIsRefused) {
  ASSERT_EQ(plan("dense-ep", "dp=2").status, 0);  // tiny-llama is dense
  set_ep("dense-ep", 2);
  Result r = execute("dense-ep", 2, "--steps 1");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("layout.ep: ep = 2 needs a mixture-of-experts model"), std::string::npos) << r.out;
  // 4 experts over ep = 3 (dp = 3, so a global batch of 6).
  ASSERT_EQ(shell(std::string(SEXTANT_BINARY) + " plan --model " SEXTANT_EXAMPLES "/models/" + kMixtral +
                  " --cluster local-cpu --gpus 3 --global-batch 6 --seq 32 --top 1 --db plans.db --out plan-ep3.json"
                  " --fix " + full_fix("dp=3"))
                .status,
            0);
  set_ep("ep3", 3);
  r = execute("ep3", 3, "--steps 1");
  EXPECT_EQ(r.status, 2) << r.out;
  EXPECT_NE(r.out.find("layout.ep: ep = 3 must divide the number of experts (4)"), std::string::npos) << r.out;
}

std::vector<std::string> checkpoints_in(const std::string& folder) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(work_dir() / folder))
    if (e.is_directory()) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// Checkpoints every 2 steps keep only the --keep-checkpoints newest (3 by default); the
// newest still resumes bit-identically, and a file of the user's in the folder survives.
TEST(Training, OldCheckpointsAreDeletedAndTheNewestResumes) {
  ASSERT_EQ(plan("keep", "dp=2").status, 0);
  const Result whole = execute("keep", 2, "--steps 16 --metrics-out m-keep-whole.jsonl");
  ASSERT_EQ(whole.status, 0) << whole.out;
  fs::remove_all(work_dir() / "ckpt-keep");
  fs::create_directories(work_dir() / "ckpt-keep");
  std::ofstream(work_dir() / "ckpt-keep" / "notes.txt") << "not a checkpoint";
  const Result part = execute(
      "keep", 2,
      "--steps 12 --metrics-out m-keep-part.jsonl --checkpoint-dir ckpt-keep --checkpoint-every 2");
  ASSERT_EQ(part.status, 0) << part.out;
  EXPECT_EQ(checkpoints_in("ckpt-keep"),
            (std::vector<std::string>{"step-10", "step-12", "step-8"}));
  const Result resumed =
      execute("keep", 2,
              "--steps 16 --metrics-out m-keep-part.jsonl --checkpoint-dir ckpt-keep "
              "--checkpoint-every 2 --keep-checkpoints 1 --resume");
  ASSERT_EQ(resumed.status, 0) << resumed.out;
  // No deletion failed.
  EXPECT_EQ(resumed.out.find("checkpoint: "), std::string::npos) << resumed.out;
  EXPECT_EQ(checkpoints_in("ckpt-keep"), (std::vector<std::string>{"step-16"}));
  EXPECT_TRUE(fs::exists(work_dir() / "ckpt-keep" / "notes.txt"));
  const std::vector<double> a = losses("m-keep-whole.jsonl"), b = losses("m-keep-part.jsonl");
  ASSERT_EQ(b.size(), 16u);
  for (size_t i = 0; i < 16; ++i) EXPECT_EQ(a[i], b[i]) << "step " << i;
}

TEST(Training, ADeadRankEndsTheJob) {
  ASSERT_EQ(plan("dead", "dp=2").status, 0);
  setenv("SEXTANT_FAULT", "kill:1:3", 1);
  const Result r = execute("dead", 2, "--steps 50");
  unsetenv("SEXTANT_FAULT");
  EXPECT_NE(r.status, 0);
  EXPECT_LT(r.seconds, 60.0);
  EXPECT_NE(r.out.find("signal 9"), std::string::npos) << r.out;
}

TEST(Training, ALossThatIsNotFiniteStopsTheRunNamingTheStep) {
  ASSERT_EQ(plan("nan", "").status, 0);
  const Result r = execute("nan", 1, "--steps 30 --lr 1e30", /*launcher=*/false);
  EXPECT_EQ(r.status, 3) << r.out;
  EXPECT_NE(r.out.find("training stopped: loss is"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("at step"), std::string::npos) << r.out;
}

TEST(Training, MismatchedJobsAreRefusedBeforeAnyWork) {
  ASSERT_EQ(plan("two", "dp=2").status, 0);
  Result r = execute("two", 1, "--steps 1", /*launcher=*/false);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("launch with mpirun -np 2"), std::string::npos) << r.out;
#if TORCH_VERSION_MAJOR < 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 1)
  ASSERT_EQ(plan("fp16", "", "fp16").status, 0);  // no fp16 matmul on CPU in this LibTorch
  r = execute("fp16", 1, "--steps 1", false);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("job.precision"), std::string::npos) << r.out;
#endif
  // --fp64 widens fp32 plans only.
  ASSERT_EQ(plan("wide-bf16", "", "bf16").status, 0);
  r = execute("wide-bf16", 1, "--steps 1 --fp64", false);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.out.find("--fp64: needs an fp32 plan (got bf16)"), std::string::npos) << r.out;
  // A plan whose model was edited after planning.
  nlohmann::json p = nlohmann::json::parse(std::ifstream(work_dir() / "plan-two.json"));
  p["model"]["config"]["num_hidden_layers"] = 6;
  std::ofstream(work_dir() / "plan-edited.json") << p.dump();
  r = execute("edited", 2, "--steps 1");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("model.params: does not match"), std::string::npos) << r.out;
  // Resuming a checkpoint of another layout.
  ASSERT_EQ(plan("other", "pp=2").status, 0);
  fs::remove_all(work_dir() / "ckpt2");
  ASSERT_EQ(execute("two", 2, "--steps 2 --checkpoint-dir ckpt2 --checkpoint-every 1").status, 0);
  r = execute("other", 2, "--steps 3 --checkpoint-dir ckpt2 --resume");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("another model, layout"), std::string::npos) << r.out;
}

// Issue 13 item 4: the memory model itemises what the executor allocates (README "Memory
// model"), so the predicted peak is the counting allocator's measured one. The 10% bar is
// the issue's; what the model leaves out is small against it by construction: scalars and
// index tensors of a few hundred bytes, and the order in which one autograd node frees its
// inputs, which decides whether two of a layer's backward temporaries overlap (the model
// takes the larger phase, never the sum). Tiny-llama at seq 32 is the least favourable case
// (those small tensors weigh most), so a layout that passes here passes on larger models.
TEST(Training, PredictedPeakMemoryIsTheMeasuredPeak) {
  // {fix, model}: tiny-llama's layouts, then tiny-mixtral's with expert parallelism (issue 14:
  // the MoE layer's routed copies, all-to-all buffers and tp-split experts).
  const std::vector<std::pair<std::string, std::string>> layouts = {
      {"micro_batch=2", "tiny-llama.json"},
      {"dp=2,zero=1,micro_batch=2", "tiny-llama.json"},
      {"dp=2,zero=3,recompute=full,micro_batch=2", "tiny-llama.json"},
      {"pp=2,micro_batch=1", "tiny-llama.json"},
      {"tp=2,sequence_parallel=true,recompute=selective,micro_batch=2", "tiny-llama.json"},
      {"dp=2,ep=2,micro_batch=2", "tiny-mixtral.json"},
      {"dp=2,tp=2,ep=2,micro_batch=2", "tiny-mixtral.json"}};
  for (size_t i = 0; i < layouts.size(); ++i) {
    const auto& [fix, model] = layouts[i];
    const std::string name = "mem-" + std::to_string(i);
    ASSERT_EQ(plan(name, fix, "fp32", model).status, 0) << fix;
    const Result r = execute(name, ranks_of(fix), "--steps 2 --metrics-out m-" + name + ".jsonl");
    ASSERT_EQ(r.status, 0) << r.out;
    std::ifstream in(work_dir() / ("plan-" + name + ".json"));
    const double predicted = nlohmann::json::parse(in).at("predicted").at("executor_memory").at("peak_bytes").get<double>();
    const std::vector<double> peaks = metric("m-" + name + ".jsonl", "peak_bytes");
    ASSERT_FALSE(peaks.empty());
    const double measured = *std::max_element(peaks.begin(), peaks.end());
    std::printf("%-18s %-60s predicted %.0f measured %.0f bytes (%+.1f%%)\n", model.c_str(), fix.c_str(), predicted, measured,
                100 * (predicted - measured) / measured);
    EXPECT_NEAR(predicted, measured, 0.10 * measured) << model << " " << fix;
  }
}

}  // namespace
}  // namespace sextant
