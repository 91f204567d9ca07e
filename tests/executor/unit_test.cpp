// Executor pieces that need no second process: the vocab-parallel loss against LibTorch's
// cross-entropy, initialisation by name, safetensors, data sources, the counting allocator,
// loss scaling and the optimizer step's overflow handling, bf16 parameter groups, pruning
// old checkpoints.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include <gtest/gtest.h>
#include <mpi.h>

#include "cost_model/error.h"
#include "executor/checkpoint.h"
#include "executor/counting_allocator.h"
#include "executor/data.h"
#include "executor/model.h"
#include "executor/step_clock.h"
#include "executor/loss_scaler.h"
#include "executor/tp_ops.h"
#include "executor/trainer.h"
#include "tests/test_dir.h"

namespace sextant {
namespace {

// Ours in fp32 and in float64 against LibTorch's cross_entropy in float64. Per token, the
// log-sum-exp (shift by the max, 11 exps summed, log) is off by ≤ ~12 u, the final
// difference and the sum over tokens round numbers up to |loss_t| by ≤ 3 u|loss_t|:
// the summed loss is within Σ_t (12 + 3|loss_t|)·u. The gradient softmax - onehot has p
// and |p - 1| at most 1, p off by ≤ ~16 roundings: within 16 u.
TEST(VocabParallelCrossEntropy, EqualsTorchCrossEntropyOnOneRank) {
  MpiComm self(MPI_COMM_SELF);
  torch::manual_seed(3);
  const torch::Tensor logits = torch::randn({6, 11});
  const torch::Tensor targets = torch::randint(0, 11, {6}, torch::kLong);
  torch::Tensor exact_leaf = logits.to(torch::kDouble).requires_grad_(true);
  const torch::Tensor exact = torch::nn::functional::cross_entropy(
      exact_leaf, targets,
      torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  exact.sum().backward();
  const double scale = (12 + 3 * exact.detach().abs()).sum().item<double>();
  for (const auto& [dtype, u] :
       {std::pair<torch::ScalarType, double>{torch::kFloat, 0x1p-24}, {torch::kDouble, 0x1p-53}}) {
    torch::Tensor leaf = logits.to(dtype).detach().requires_grad_(true);
    torch::Tensor ours = vocab_parallel_cross_entropy(leaf, targets, 0, self).sum();
    ours.backward();
    EXPECT_EQ(ours.scalar_type(), dtype);
    EXPECT_NEAR(ours.item<double>(), exact.sum().item<double>(), u * scale) << dtype;
    const double loss_error =
        std::abs(ours.item<double>() - exact.sum().item<double>()) / (u * scale);
    const double grad_error =
        (leaf.grad().to(torch::kDouble) - exact_leaf.grad()).abs().max().item<double>() / (16 * u);
    EXPECT_LE(grad_error, 1.0) << dtype;
    std::printf("%s cross-entropy vs float64: loss %.2f, gradient %.2f of the bound\n",
                c10::toString(dtype), loss_error, grad_error);
  }
}

// bf16 logits go straight to the loss (no fp32 copy): the loss is fp32 and as close to the
// float64 loss of the same bf16 values as fp32 logits are (the bound above); the gradient
// is softmax - onehot (|·| ≤ 1) computed in fp32, then rounded once to bf16: within 2^-8.
TEST(VocabParallelCrossEntropy, Bf16LogitsGiveAnFp32LossAndBf16Gradient) {
  MpiComm self(MPI_COMM_SELF);
  torch::manual_seed(4);
  const torch::Tensor logits = (3 * torch::randn({64, 301})).to(torch::kBFloat16);
  const torch::Tensor targets = torch::randint(0, 301, {64}, torch::kLong);
  torch::Tensor exact_leaf = logits.to(torch::kDouble).requires_grad_(true);
  const torch::Tensor exact = torch::nn::functional::cross_entropy(
      exact_leaf, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  exact.sum().backward();
  torch::Tensor leaf = logits.detach().requires_grad_(true);
  torch::Tensor ours = vocab_parallel_cross_entropy(leaf, targets, 0, self).sum();
  ours.backward();
  EXPECT_EQ(ours.scalar_type(), torch::kFloat);
  EXPECT_EQ(leaf.grad().scalar_type(), torch::kBFloat16);
  const double scale = (12 + 3 * exact.detach().abs()).sum().item<double>();
  EXPECT_NEAR(ours.item<double>(), exact.sum().item<double>(), 0x1p-24 * scale);
  EXPECT_LE((leaf.grad().to(torch::kDouble) - exact_leaf.grad()).abs().max().item<double>(), 0x1p-8);
}

TEST(InitParam, SameNameSameValuesAndSlicesConcatenate) {
  ParamSpec spec{"blocks.0.attn.q.weight", {8, 4}, 0, ParamSpec::Init::normal, true};
  torch::Tensor full = init_param(spec, 42, 0, 1);
  EXPECT_TRUE(torch::equal(full, init_param(spec, 42, 0, 1)));
  EXPECT_FALSE(torch::equal(full, init_param(spec, 43, 0, 1)));
  EXPECT_TRUE(torch::equal(torch::cat({init_param(spec, 42, 0, 2), init_param(spec, 42, 1, 2)}, 0), full));
  EXPECT_NEAR(full.std().item<double>(), 0.02,
              0.01);  // 32 draws: the sample std spreads by 0.02/sqrt(62) = 0.0025
  spec.name = "blocks.1.attn.q.weight";
  EXPECT_FALSE(torch::equal(full, init_param(spec, 42, 0, 1)));
}

TEST(Safetensors, RoundTripAndRefusesTruncatedFiles) {
  const std::string path = (test_dir("safetensors") / "t.safetensors").string();
  NamedTensors in = {{"a", torch::randn({2, 3})}, {"b", torch::arange(5, torch::kLong)}, {"c", torch::randn({4}, torch::kDouble)}};
  write_safetensors(path, in, {{"step", 7}});
  NamedTensors out = read_safetensors(path);
  ASSERT_EQ(out.size(), 3u);
  for (size_t i = 0; i < in.size(); ++i) {
    EXPECT_EQ(out[i].first, in[i].first);
    EXPECT_TRUE(torch::equal(out[i].second, in[i].second));
  }
  std::ifstream src(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(src)), std::istreambuf_iterator<char>());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 4);
  EXPECT_THROW(read_safetensors(path), InputError);
}

// A checkpoint folder as save_checkpoint leaves it: rank files, and the manifest if whole.
void make_step(const std::filesystem::path& dir, int64_t step, bool complete) {
  const std::filesystem::path folder = dir / ("step-" + std::to_string(step));
  std::filesystem::create_directories(folder);
  std::ofstream(folder / "rank-0.safetensors") << "x";
  std::ofstream(folder / "rank-1.safetensors.tmp") << "x";
  if (complete) std::ofstream(folder / "manifest.json") << "{}";
}

std::vector<std::string> names_in(const std::filesystem::path& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir))
    out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

TEST(Checkpoints, PruneKeepsTheNewestCompleteOnesAndTouchesNothingElse) {
  namespace fs = std::filesystem;
  const fs::path dir = test_dir("prune");
  for (int64_t step = 2; step <= 12; step += 2) make_step(dir, step, true);
  make_step(dir, 5, false);   // cut short before latest: garbage
  make_step(dir, 11, false);  // between the kept ones, cut short: garbage too
  make_step(dir, 14, false);  // newer than latest: perhaps being written, left alone
  make_step(dir, 16, true);   // complete but newer than latest (latest was moved back): left alone
  std::ofstream(dir / "latest") << "step-12\n";
  std::ofstream(dir / "notes.txt") << "mine";
  fs::create_directories(dir / "step-x");
  fs::create_directories(dir / "step-007");
  make_step(dir, 3, true);
  // A file sextant does not write: step-3 is not a checkpoint folder.
  std::ofstream(dir / "step-3" / "README") << "not sextant's";
  std::ofstream(dir / "step-1") << "a file, not a folder";
  EXPECT_TRUE(prune_checkpoints(dir.string(), 3).empty());
  EXPECT_EQ(names_in(dir), (std::vector<std::string>{"latest", "notes.txt", "step-007", "step-1",
                                                     "step-10", "step-12", "step-14", "step-16",
                                                     "step-3", "step-8", "step-x"}));
  EXPECT_EQ(names_in(dir / "step-3").size(), 4u);
  EXPECT_EQ(
      names_in(dir / "step-12"),
      (std::vector<std::string>{"manifest.json", "rank-0.safetensors", "rank-1.safetensors.tmp"}));
  EXPECT_TRUE(prune_checkpoints(dir.string(), 3).empty());  // nothing more to do
  EXPECT_EQ(names_in(dir).size(), 11u);
  EXPECT_TRUE(prune_checkpoints(dir.string(), 1).empty());
  EXPECT_EQ(names_in(dir),
            (std::vector<std::string>{"latest", "notes.txt", "step-007", "step-1", "step-12",
                                      "step-14", "step-16", "step-3", "step-x"}));
  // latest naming a folder that is not a whole checkpoint, or nothing: nothing is deleted.
  make_step(dir, 4, true);
  std::ofstream(dir / "latest") << "step-14\n";
  EXPECT_TRUE(prune_checkpoints(dir.string(), 1).empty());
  fs::remove(dir / "latest");
  EXPECT_TRUE(prune_checkpoints(dir.string(), 1).empty());
  EXPECT_TRUE(fs::exists(dir / "step-4"));
  EXPECT_THROW(prune_checkpoints(dir.string(), 0), std::invalid_argument);
}

TEST(Data, DeterministicBySampleIndex) {
  auto synthetic = open_token_source("synthetic", 256, 16);
  torch::Tensor a = load_samples(*synthetic, 10, 4, 16), b = load_samples(*synthetic, 12, 2, 16);
  EXPECT_TRUE(torch::equal(a.narrow(0, 2, 2), b));
  EXPECT_LT(a.max().item<int64_t>(), 256);
  const std::string data_dir = test_dir("data").string();
  const std::string text = data_dir + "/text.txt";
  std::ofstream(text) << "hello, world: sextant reads bytes";
  auto bytes = open_token_source(text, 256, 8);
  EXPECT_EQ(load_samples(*bytes, 0, 1, 8)[0][0].item<int64_t>(), 'h');
  EXPECT_THROW(open_token_source(text, 100, 8), InputError);  // bytes need 256 tokens
  EXPECT_THROW(open_token_source(text, 256, 1000), InputError);
  // llm.c format: 256 int32 header (magic 20240520, version, count), then uint16 tokens.
  const std::string bin = data_dir + "/tokens.bin";
  {
    std::vector<int32_t> header(256, 0);
    header[0] = 20240520;
    header[1] = 1;
    header[2] = 40;
    std::vector<uint16_t> tokens(40);
    for (int i = 0; i < 40; ++i) tokens[static_cast<size_t>(i)] = static_cast<uint16_t>(1000 + i);
    std::ofstream out(bin, std::ios::binary);
    out.write(reinterpret_cast<const char*>(header.data()), 1024);
    out.write(reinterpret_cast<const char*>(tokens.data()), 80);
  }
  auto llmc = open_token_source(bin, 2000, 8);
  torch::Tensor t = load_samples(*llmc, 1, 1, 8);
  EXPECT_EQ(t[0][0].item<int64_t>(), 1009);  // sample 1 starts at token 9
  auto small_vocab = open_token_source(bin, 500, 8);
  EXPECT_THROW(load_samples(*small_vocab, 0, 1, 8), InputError);
  EXPECT_THROW(open_token_source(data_dir + "/missing.bin", 256, 8), InputError);
}

TEST(CountingAllocator, CountsTensorBytes) {
  install_counting_allocator();
  const size_t before = counted_current_bytes();
  reset_counted_peak();
  {
    torch::Tensor t = torch::empty({1 << 20});  // 4 MiB
    EXPECT_GE(counted_current_bytes(), before + (4u << 20));
  }
  EXPECT_EQ(counted_current_bytes(), before);
  EXPECT_GE(counted_peak_bytes(), before + (4u << 20));
}

TEST(LossScaler, MegatronRules) {
  LossScalerOptions o;
  o.growth_interval = 3;
  LossScaler s(true, o);
  EXPECT_EQ(s.scale(), 65536.0);
  s.update(true);  // hysteresis 2: the first overflow keeps the scale
  EXPECT_EQ(s.scale(), 65536.0);
  s.update(true);
  EXPECT_EQ(s.scale(), 32768.0);
  s.update(true);  // the counter is not restored by a back-off
  EXPECT_EQ(s.scale(), 16384.0);
  for (int i = 0; i < 3; ++i) s.update(false);
  EXPECT_EQ(s.scale(), 32768.0);  // three clean steps double it and restore the hysteresis
  s.update(true);
  EXPECT_EQ(s.scale(), 32768.0);
  s.update(false);
  s.update(false);
  s.update(true);  // the clean steps between did not restore it: this one backs off
  EXPECT_EQ(s.scale(), 16384.0);
  LossScalerOptions tiny;
  tiny.initial_scale = 2;
  tiny.hysteresis = 1;
  LossScaler floor(true, tiny);
  for (int i = 0; i < 5; ++i) floor.update(true);
  EXPECT_EQ(floor.scale(), 1.0);  // never below min_scale
  LossScaler off(false);
  off.update(true);
  EXPECT_EQ(off.scale(), 1.0);
}

// One group of two parameters on one rank, with gradients set by hand.
struct OneGroup {
  explicit OneGroup(torch::ScalarType dtype) : comm(make_comm_groups(ParallelLayout{})) {
    torch::manual_seed(7);
    const std::vector<ParamSpec> specs{{"w", {4, 3}, -1, ParamSpec::Init::normal, true},
                                       {"b", {5}, -1, ParamSpec::Init::zeros, false}};
    groups.push_back(std::make_unique<ParamGroup>(specs, std::vector<torch::Tensor>{torch::randn({4, 3}), torch::randn({5})},
                                                  false, false, *comm.dp, 0, dtype));
  }
  void set_grads(double scale, bool poison) {
    for (const torch::Tensor& p : groups[0]->params()) {
      p.mutable_grad() = (torch::randn(p.sizes()) * scale).to(p.scalar_type());
    }
    if (poison) groups[0]->params()[1].mutable_grad()[2] = std::numeric_limits<float>::infinity();
  }
  std::vector<torch::Tensor> state() const {
    std::vector<torch::Tensor> out;
    for (auto& named : groups[0]->state()) out.push_back(named.second.clone());
    for (const torch::Tensor& p : groups[0]->params()) out.push_back(p.detach().clone());
    return out;
  }
  CommGroups comm;
  std::vector<std::unique_ptr<ParamGroup>> groups;
};

// The step's loss as the schedule returns it: a float64 scalar.
torch::Tensor one_loss() { return torch::tensor(1.0, torch::kDouble); }

TEST(OptimizerStep, OverflowSkipsTheStepAndLeavesMasterWeightsUntouched) {
  OneGroup g(torch::kFloat);
  LossScaler scaler(true);
  AdamConfig adam;
  const std::vector<torch::Tensor> before = g.state();
  g.set_grads(scaler.scale(), /*poison=*/true);
  OptimizerStepResult r = optimizer_step(g.groups, {}, g.comm, scaler, adam, 0, one_loss());
  EXPECT_TRUE(r.skipped);
  const std::vector<torch::Tensor> after = g.state();
  for (size_t i = 0; i < before.size(); ++i) EXPECT_TRUE(torch::equal(before[i], after[i])) << i;  // master, m, v, working
  EXPECT_EQ(scaler.scale(), 65536.0);  // hysteresis 2
  g.set_grads(scaler.scale(), true);
  EXPECT_TRUE(optimizer_step(g.groups, {}, g.comm, scaler, adam, 0, one_loss()).skipped);
  EXPECT_EQ(scaler.scale(), 32768.0);
  // A clean step updates, and sees the gradients divided by the scale.
  g.set_grads(scaler.scale(), false);
  r = optimizer_step(g.groups, {}, g.comm, scaler, adam, 0, one_loss());
  EXPECT_FALSE(r.skipped);
  EXPECT_GT(r.grad_norm, 0.5);
  EXPECT_LT(r.grad_norm,
            10.0);  // ~N(0,1) over 17 elements once unscaled: sqrt(17) = 4.1, spread ~0.7
  EXPECT_FALSE(torch::equal(before[0], g.state()[0]));
}

TEST(OptimizerStep, Bf16GroupKeepsFp32MasterAndWritesItsBf16Copy) {
  OneGroup g(torch::kBFloat16);
  EXPECT_EQ(g.groups[0]->params()[0].scalar_type(), torch::kBFloat16);
  LossScaler none(false);
  AdamConfig adam;
  for (int step = 0; step < 3; ++step) {
    g.set_grads(1.0, false);
    optimizer_step(g.groups, {}, g.comm, none, adam, step, one_loss());
  }
  const torch::Tensor master = g.groups[0]->state()[0].second;
  EXPECT_EQ(master.scalar_type(), torch::kFloat);
  const torch::Tensor working = torch::cat({g.groups[0]->params()[0].detach().reshape({-1}),
                                            g.groups[0]->params()[1].detach().reshape({-1})});
  EXPECT_TRUE(torch::equal(working, master.narrow(0, 0, 17).to(torch::kBFloat16)));
  // Three steps of ~lr each moved the master by less than bf16 can resolve near 1: the
  // master keeps them, the 16-bit copy alone would have lost some.
  EXPECT_FALSE(torch::equal(master.narrow(0, 0, 17), working.to(torch::kFloat)));
}

// The step's parts: nested phases never overlap, so they sum to at most the wall time.
TEST(StepClock, NestedPhasesPartitionTheStep) {
  StepClock clock(torch::kCPU);
  auto nap = [](int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); };
  const auto start = std::chrono::steady_clock::now();
  clock.start();
  nap(5);  // in no phase: not counted
  {
    const PhaseScope forward(&clock, StepPhase::forward);
    nap(20);
    const PhaseScope wait(&clock, StepPhase::comm_wait);
    nap(10);
  }
  {
    const PhaseScope optimizer(&clock, StepPhase::optimizer);
    nap(10);
  }
  const StepTimes t = clock.finish();
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_GE(t.forward_s, 0.020);
  EXPECT_GE(t.comm_wait_s, 0.010);
  EXPECT_GE(t.optimizer_s, 0.010);
  EXPECT_EQ(t.backward_s, 0.0);
  EXPECT_LE(t.forward_s + t.backward_s + t.optimizer_s + t.comm_wait_s, wall - 0.005);
  clock.enter(StepPhase::forward);  // outside start()..finish(): ignored
  EXPECT_EQ(clock.finish().forward_s, 0.0);
}

}  // namespace
}  // namespace sextant
