// The kernels' CPU references against LibTorch: conversions bit for bit, AdamW against
// torch::optim::AdamW, the vocab-parallel cross-entropy (two shards joined as the tp
// reductions would) against cross_entropy and its autograd gradient.
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "kernels/reference.h"

namespace sextant::kernels {
namespace {

std::vector<float> conversion_inputs() {
  torch::manual_seed(1);
  std::vector<float> x;
  const torch::Tensor r = torch::randn({4096}) * torch::pow(10.0, torch::randint(-9, 6, {4096}).to(torch::kFloat));
  for (int64_t i = 0; i < r.numel(); ++i) x.push_back(r[i].item<float>());
  const float inf = std::numeric_limits<float>::infinity();
  for (float special : {0.f, -0.f, inf, -inf, 65504.f, 65519.f, 65520.f, 70000.f, 6.1e-5f, 5.96e-8f, 2.98e-8f,
                        2.99e-8f, 1e-30f, 3.4e38f, 1.f + 1.f / 256, 1.f + 3.f / 512})
    x.push_back(special);
  return x;
}

// Ours against c10's conversion both ways, bit for bit, then NaN kept.
template <typename C10Type>
void expect_conversions_match(uint16_t (*to_bits)(float), float (*from_bits)(uint16_t)) {
  for (float x : conversion_inputs()) {
    const C10Type expected(x);
    EXPECT_EQ(to_bits(x), expected.x) << x;
    EXPECT_EQ(from_bits(expected.x), static_cast<float>(expected)) << x;
  }
  EXPECT_TRUE(std::isnan(from_bits(to_bits(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(KernelReference, Bf16ConversionMatchesLibTorchBitForBit) {
  expect_conversions_match<c10::BFloat16>(float_to_bf16, bf16_to_float);
}

TEST(KernelReference, Fp16ConversionMatchesLibTorchBitForBit) {
  expect_conversions_match<c10::Half>(float_to_fp16, fp16_to_float);
}

TEST(KernelReference, CastMatchesTensorTo) {
  torch::manual_seed(2);
  const torch::Tensor x = torch::randn({1000}) * 100;
  torch::Tensor bf = torch::empty({1000}, torch::kBFloat16), back = torch::empty({1000});
  cast_reference(x.data_ptr(), DType::fp32, bf.data_ptr(), DType::bf16, 1000);
  EXPECT_TRUE(torch::equal(bf, x.to(torch::kBFloat16)));
  cast_reference(bf.data_ptr(), DType::bf16, back.data_ptr(), DType::fp32, 1000);
  EXPECT_TRUE(torch::equal(back, x.to(torch::kBFloat16).to(torch::kFloat)));
}

TEST(KernelReference, AdamWMatchesTorchOptimAdamW) {
  torch::manual_seed(3);
  const int64_t n = 777;
  torch::Tensor param = torch::randn({n}).requires_grad_(true);
  std::vector<float> master(param.data_ptr<float>(), param.data_ptr<float>() + n), m(n, 0.f), v(n, 0.f);
  torch::optim::AdamW torch_adam({param}, torch::optim::AdamWOptions(3e-3).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  std::vector<uint16_t> working(n);
  for (int64_t step = 1; step <= 5; ++step) {
    const torch::Tensor grad = torch::randn({n}) * 0.1;
    param.mutable_grad() = grad.clone();
    torch_adam.step();
    AdamWArgs args;
    args.lr = 3e-3f;
    args.beta1 = 0.9f;
    args.beta2 = 0.95f;
    args.eps = 1e-8f;
    args.weight_decay = 0.1f;
    args.step = step;
    adamw_reference(master.data(), m.data(), v.data(), grad.data_ptr<float>(), nullptr, n, args, working.data(),
                    DType::bf16);
  }
  const torch::Tensor ours = torch::from_blob(master.data(), {n}).clone();
  EXPECT_LT((ours - param.detach()).abs().max().item<float>(), 2e-6f);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(working[static_cast<size_t>(i)], float_to_bf16(master[static_cast<size_t>(i)]));
}

TEST(KernelReference, AdamWGradScaleAndDecayMask) {
  // grad_scale multiplies the gradient before anything else; a 0 in the mask turns
  // weight decay off for that element.
  std::vector<float> a_master{1.f, 2.f}, a_m(2, 0.f), a_v(2, 0.f), b_master{1.f, 2.f}, b_m(2, 0.f), b_v(2, 0.f);
  const std::vector<float> grad{4.f, -8.f}, half_grad{2.f, -4.f}, mask{1.f, 0.f};
  AdamWArgs a;
  a.weight_decay = 0.5f;
  a.grad_scale = 0.5f;
  adamw_reference(a_master.data(), a_m.data(), a_v.data(), grad.data(), mask.data(), 2, a, nullptr, DType::fp32);
  AdamWArgs b = a;
  b.grad_scale = 1.f;
  adamw_reference(b_master.data(), b_m.data(), b_v.data(), half_grad.data(), mask.data(), 2, b, nullptr, DType::fp32);
  EXPECT_EQ(a_master, b_master);
  EXPECT_EQ(a_m, b_m);
  // Element 0 decays (1 - lr·0.5·1) and moves against its gradient by ~lr; element 1 only moves.
  EXPECT_NEAR(a_master[0], 1.f - 1e-3f * (1.f + 0.5f), 1e-6f);
  EXPECT_NEAR(a_master[1], 2.f + 1e-3f, 1e-6f);
}

TEST(KernelReference, UnscaleFindsNonFiniteAndScales) {
  std::vector<float> a{2.f, 4.f}, b{8.f};
  EXPECT_FALSE(unscale_reference({{a.data(), 2}, {b.data(), 1}}, 0.5f));
  EXPECT_EQ(a, (std::vector<float>{1.f, 2.f}));
  EXPECT_EQ(b, (std::vector<float>{4.f}));
  b[0] = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(unscale_reference({{a.data(), 2}, {b.data(), 1}}, 0.5f));
  b[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(unscale_reference({{b.data(), 1}}, 1.f));
}

TEST(KernelReference, SquareSumMatchesTorch) {
  torch::manual_seed(4);
  torch::Tensor a = torch::randn({1000}), b = torch::randn({33});
  const double expected = (a.pow(2).sum() + b.pow(2).sum()).item<double>();
  EXPECT_NEAR(square_sum_reference({{a.data_ptr<float>(), 1000}, {b.data_ptr<float>(), 33}}), expected, 1e-4);
}

// Runs the reference over `shards` vocab shards, joining them as the tp reductions would.
struct CrossEntropyResult {
  torch::Tensor loss, dlogits;
};
CrossEntropyResult sharded_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                         const torch::Tensor& grad_loss, int shards, DType dtype) {
  const int64_t tokens = logits.size(0), vocab = logits.size(1), local = vocab / shards;
  std::vector<torch::Tensor> parts;
  std::vector<torch::Tensor> local_max, local_sum;
  torch::Tensor target_logit = torch::zeros({tokens});
  for (int r = 0; r < shards; ++r) {
    parts.push_back(logits.narrow(1, r * local, local).contiguous());
    local_max.push_back(torch::empty({tokens}));
    local_sum.push_back(torch::empty({tokens}));
    torch::Tensor part_target = torch::empty({tokens});
    ce_forward_partial_reference(parts.back().data_ptr(), dtype, tokens, local, targets.data_ptr<int64_t>(),
                                 r * local, local_max.back().data_ptr<float>(), local_sum.back().data_ptr<float>(),
                                 part_target.data_ptr<float>());
    target_logit += part_target;  // all-reduce sum
  }
  const torch::Tensor global_max = std::get<0>(torch::stack(local_max).max(0));  // all-reduce max
  torch::Tensor sum_exp = torch::zeros({tokens});
  for (int r = 0; r < shards; ++r) {
    torch::Tensor rescaled = torch::empty({tokens});
    ce_rescale_reference(local_max[r].data_ptr<float>(), local_sum[r].data_ptr<float>(),
                         global_max.data_ptr<float>(), tokens, rescaled.data_ptr<float>());
    sum_exp += rescaled;  // all-reduce sum
  }
  CrossEntropyResult out{torch::empty({tokens}), torch::empty_like(logits)};
  ce_loss_reference(global_max.data_ptr<float>(), sum_exp.data_ptr<float>(), target_logit.data_ptr<float>(), tokens,
                    out.loss.data_ptr<float>());
  std::vector<torch::Tensor> grads;
  for (int r = 0; r < shards; ++r) {
    grads.push_back(torch::empty_like(parts[r]));
    ce_backward_reference(parts[r].data_ptr(), dtype, tokens, local, targets.data_ptr<int64_t>(), r * local,
                          global_max.data_ptr<float>(), sum_exp.data_ptr<float>(), grad_loss.data_ptr<float>(),
                          grads.back().data_ptr());
  }
  out.dlogits = torch::cat(grads, 1);
  return out;
}

TEST(KernelReference, VocabParallelCrossEntropyMatchesTorch) {
  torch::manual_seed(5);
  const int64_t tokens = 37, vocab = 96;
  const torch::Tensor logits = torch::randn({tokens, vocab}) * 4;
  const torch::Tensor targets = torch::randint(0, vocab, {tokens}, torch::kLong);
  const torch::Tensor grad_loss = torch::rand({tokens}) + 0.5;
  torch::Tensor leaf = logits.clone().requires_grad_(true);
  const torch::Tensor expected = torch::nn::functional::cross_entropy(
      leaf, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  expected.backward(grad_loss);
  for (int shards : {1, 2, 4}) {
    const CrossEntropyResult got = sharded_cross_entropy(logits, targets, grad_loss, shards, DType::fp32);
    EXPECT_TRUE(torch::allclose(got.loss, expected.detach(), 1e-5, 1e-5)) << shards << " shards";
    EXPECT_TRUE(torch::allclose(got.dlogits, leaf.grad(), 1e-5, 1e-6)) << shards << " shards";
  }
}

TEST(KernelReference, Bf16CrossEntropyComputesInFp32) {
  torch::manual_seed(6);
  const int64_t tokens = 16, vocab = 64;
  const torch::Tensor logits = (torch::randn({tokens, vocab}) * 4).to(torch::kBFloat16);
  const torch::Tensor targets = torch::randint(0, vocab, {tokens}, torch::kLong);
  const torch::Tensor ones = torch::ones({tokens});
  const torch::Tensor expected = torch::nn::functional::cross_entropy(
      logits.to(torch::kFloat), targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  const CrossEntropyResult got = sharded_cross_entropy(logits, targets, ones, 2, DType::bf16);
  EXPECT_TRUE(torch::allclose(got.loss, expected, 1e-5, 1e-5));
  EXPECT_EQ(got.dlogits.scalar_type(), torch::kBFloat16);
}

}  // namespace
}  // namespace sextant::kernels
