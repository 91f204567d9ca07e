// sextant execute end to end on CPU ranks (ctest label mpi):
//  - equivalence: every layout of the matrix gives the single-rank run's per-step losses
//    within 1e-5 relative over 10 steps, and its final weights within 1e-5 relative (per
//    tensor, ||difference|| <= 1e-5 ||value||). Element by element, a few weights whose
//    gradient sits at the float32 noise floor move apart more: Adam divides m by sqrt(v),
//    so summation-order rounding there is amplified to a visible share of the step size;
//  - a run killed mid-way and resumed from its checkpoint continues with bit-identical losses;
//  - only the --keep-checkpoints newest checkpoints stay, and the newest resumes;
//  - a rank that dies ends the job within 60 s; a loss that is not finite stops the run;
//  - plans that do not match the job are refused before any work.
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include <gtest/gtest.h>
#include <torch/version.h>
#include <nlohmann/json.hpp>

#include "executor/checkpoint.h"

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
    fs::path d = fs::path(::testing::TempDir()) / "sextant_training";
    fs::remove_all(d);
    fs::create_directories(d);
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
  std::map<std::string, std::string> axes = {{"dp", "1"}, {"tp", "1"}, {"pp", "1"}, {"vpp", "1"}, {"zero", "0"},
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

Result plan(const std::string& name, const std::string& fix, const std::string& precision = "fp32") {
  return shell(std::string(SEXTANT_BINARY) + " plan --model " SEXTANT_EXAMPLES "/models/tiny-llama.json --cluster local-cpu" +
               " --gpus " + std::to_string(ranks_of(fix)) + " --global-batch 8 --seq 32 --precision " + precision +
               " --top 1 --db plans.db --out plan-" + name + ".json --fix " + full_fix(fix));
}

Result execute(const std::string& name, int ranks, const std::string& args, bool launcher = true) {
  const std::string program = std::string(SEXTANT_BINARY) + " execute --plan plan-" + name + ".json --db runs.db " + args;
  return shell(launcher ? std::string(SEXTANT_MPIEXEC) + " --oversubscribe -np " + std::to_string(ranks) + " " + program
                        : program);
}

std::vector<double> losses(const std::string& metrics) {
  std::vector<double> out;
  std::ifstream in(work_dir() / metrics);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line).at("loss").get<double>());
  return out;
}

std::map<std::string, torch::Tensor> weights(const std::string& folder) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& file : fs::directory_iterator(work_dir() / folder))
    for (auto& [name, t] : read_safetensors(file.path().string())) out[name] = t;
  return out;
}

// The single-rank reference, run once, without a launcher (a world of one).
const std::string& reference() {
  static const std::string name = [] {
    EXPECT_EQ(plan("ref", "").status, 0);
    Result r = execute("ref", 1, "--steps 10 --metrics-out m-ref.jsonl --dump-weights w-ref", /*launcher=*/false);
    EXPECT_EQ(r.status, 0) << r.out;
    return std::string("ref");
  }();
  return name;
}

struct Case {
  const char* name;
  const char* fix;
};

class Equivalence : public ::testing::TestWithParam<Case> {};

TEST_P(Equivalence, MatchesTheSingleRankRun) {
  const Case c = GetParam();
  reference();
  const Result p = plan(c.name, c.fix);
  ASSERT_EQ(p.status, 0) << p.out;
  const Result r = execute(c.name, ranks_of(c.fix),
                           "--steps 10 --metrics-out m-" + std::string(c.name) + ".jsonl --dump-weights w-" + c.name);
  ASSERT_EQ(r.status, 0) << r.out;
  const std::vector<double> want = losses("m-ref.jsonl"), got = losses("m-" + std::string(c.name) + ".jsonl");
  ASSERT_EQ(want.size(), 10u);
  ASSERT_EQ(got.size(), 10u);
  double worst_loss = 0, worst_weight = 0, worst_element = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_LE(std::abs(got[i] - want[i]), 1e-5 * std::abs(want[i])) << "step " << i << ": " << got[i] << " vs " << want[i];
    worst_loss = std::max(worst_loss, std::abs(got[i] - want[i]) / std::abs(want[i]));
  }
  EXPECT_LT(want.back(), want.front());  // it learns
  const auto ref = weights("w-ref"), mine = weights("w-" + std::string(c.name));
  ASSERT_EQ(mine.size(), ref.size());
  for (const auto& [name, w] : ref) {
    ASSERT_TRUE(mine.count(name)) << name;
    ASSERT_EQ(mine.at(name).sizes(), w.sizes()) << name;
    const double relative = (mine.at(name) - w).norm().item<double>() / w.norm().item<double>();
    EXPECT_LE(relative, 1e-5) << name;
    worst_weight = std::max(worst_weight, relative);
    worst_element = std::max(worst_element, (mine.at(name) - w).abs().max().item<double>());
  }
  std::printf("%-18s losses: max rel. diff %.1e   weights: max rel. diff %.1e (largest element diff %.1e)\n",
              c.name, worst_loss, worst_weight, worst_element);
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
                      Case{"pp2_full_zero1", "dp=2,pp=2,zero=1,recompute=full"}),
    [](const ::testing::TestParamInfo<Case>& info) { return std::string(info.param.name); });

// bf16 mixed precision (fp32 master weights, 16-bit compute, fp32 gradient reduction)
// follows the fp32 run to bf16's resolution, on one rank and across dp, tp, pp and ZeRO.
TEST(Training, Bf16TracksTheFp32Run) {
  reference();
  const std::vector<double> want = losses("m-ref.jsonl");
  const auto ref = weights("w-ref");
  for (const Case c : {Case{"bf16-one", ""}, Case{"bf16-dp2-tp2-z1", "dp=2,tp=2,zero=1,micro_batch=2"},
                       Case{"bf16-dp2-pp2-z3", "dp=2,pp=2,zero=3"}}) {
    ASSERT_EQ(plan(c.name, c.fix, "bf16").status, 0);
    const Result r = execute(c.name, ranks_of(c.fix),
                             "--steps 10 --metrics-out m-" + std::string(c.name) + ".jsonl --dump-weights w-" + c.name);
    ASSERT_EQ(r.status, 0) << r.out;
    const std::vector<double> got = losses("m-" + std::string(c.name) + ".jsonl");
    ASSERT_EQ(got.size(), want.size());
    double worst_loss = 0, worst_weight = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      EXPECT_LE(std::abs(got[i] - want[i]), 1e-3 * want[i]) << c.name << " step " << i;
      worst_loss = std::max(worst_loss, std::abs(got[i] - want[i]) / want[i]);
    }
    for (const auto& [name, w] : weights("w-" + std::string(c.name))) {
      const double relative = (w - ref.at(name)).norm().item<double>() / ref.at(name).norm().item<double>();
      EXPECT_LE(relative, 2e-2) << c.name << " " << name;
      worst_weight = std::max(worst_weight, relative);
    }
    std::printf("%-18s bf16 vs fp32: losses max rel. diff %.1e   weights max rel. diff %.1e\n", c.name, worst_loss,
                worst_weight);
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

}  // namespace
}  // namespace sextant
