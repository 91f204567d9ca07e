// The kernels' CPU references against LibTorch: conversions bit for bit, AdamW against
// torch::optim::AdamW, the vocab-parallel cross-entropy (shards joined as the tp
// reductions would) against cross_entropy and its autograd gradient, the fused norms and
// activations against LibTorch autograd (bounds derived in fused_truth.h). Every bound is
// exact or derived from the dtype's unit roundoff u (the truth computed in float64).
#include "kernels/reference.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <vector>

#include "tests/kernels/fused_truth.h"

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

constexpr double kU32 = 0x1p-24, kU64 = 0x1p-53;  // unit roundoff of float32 and float64

AdamWArgs fp32_args(int64_t step) {
  AdamWArgs args;
  args.lr = 3e-3f;
  args.weight_decay = 0.1f;
  args.step = step;
  return args;
}

// The formula: the reference's double instantiation against torch::optim::AdamW in float64,
// five steps from the same values. Each does about ten roundings per element and step, on
// numbers no larger than |param| + 1, so they agree to 2 × 5 × 10 × u64 × (|param| + 1).
TEST(KernelReference, AdamWIsTorchOptimAdamWInFloat64) {
  torch::manual_seed(3);
  const int64_t n = 777, steps = 5;
  torch::Tensor param = torch::randn({n}, torch::kDouble).requires_grad_(true);
  std::vector<double> master(param.data_ptr<double>(), param.data_ptr<double>() + n), m(n, 0.0),
      v(n, 0.0);
  torch::optim::AdamW torch_adam({param}, torch::optim::AdamWOptions(3e-3).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1));
  for (int64_t step = 1; step <= steps; ++step) {
    const torch::Tensor grad = torch::randn({n}, torch::kDouble) * 0.1;
    param.mutable_grad() = grad.clone();
    torch_adam.step();
    AdamWArgsOf<double> args;
    args.lr = 3e-3;
    args.weight_decay = 0.1;
    args.step = step;
    adamw_reference(master.data(), m.data(), v.data(), grad.data_ptr<double>(), nullptr, n, args);
  }
  const torch::Tensor ours = torch::from_blob(master.data(), {n}, torch::kDouble);
  const torch::Tensor bound = 2.0 * steps * 10 * kU64 * (param.detach().abs() + 1);
  EXPECT_TRUE(((ours - param.detach()).abs() <= bound).all().item<bool>())
      << "largest difference " << (ours - param.detach()).abs().max().item<double>();
}

// The fp32 step is the float64 step rounded: from the same fp32 inputs, five fp32 steps
// stay within 5 × 2 × u32 × (|param| + 1) of the float64 ones (each step rounds the new
// value once, ≤ u32·|param|, and its update, ≤ ~10 u32 × lr × |update| ≤ u32, once more).
// The bf16 working copy is the master rounded once, bit for bit.
TEST(KernelReference, AdamWInFp32IsTheFloat64StepRounded) {
  torch::manual_seed(3);
  const int64_t n = 777, steps = 5;
  const torch::Tensor start = torch::randn({n});
  std::vector<float> master(start.data_ptr<float>(), start.data_ptr<float>() + n), m(n, 0.f),
      v(n, 0.f);
  std::vector<double> wide(master.begin(), master.end()), wide_m(n, 0.0), wide_v(n, 0.0);
  std::vector<uint16_t> working(n);
  for (int64_t step = 1; step <= steps; ++step) {
    const torch::Tensor grad = torch::randn({n}) * 0.1;
    const AdamWArgs args = fp32_args(step);
    adamw_reference(master.data(), m.data(), v.data(), grad.data_ptr<float>(), nullptr, n, args, working.data(),
                    DType::bf16);
    AdamWArgsOf<double> wide_args;  // the same (fp32-rounded) hyper-parameters, widened
    wide_args.lr = args.lr;
    wide_args.beta1 = args.beta1;
    wide_args.beta2 = args.beta2;
    wide_args.eps = args.eps;
    wide_args.weight_decay = args.weight_decay;
    wide_args.step = step;
    const torch::Tensor wide_grad = grad.to(torch::kDouble);
    adamw_reference(wide.data(), wide_m.data(), wide_v.data(), wide_grad.data_ptr<double>(),
                    nullptr, n, wide_args);
  }
  double worst = 0;  // in units of the bound
  for (int64_t i = 0; i < n; ++i) {
    const double exact = wide[static_cast<size_t>(i)];
    worst = std::max(worst, std::abs(master[static_cast<size_t>(i)] - exact) /
                                (steps * 2 * kU32 * (std::abs(exact) + 1)));
    ASSERT_EQ(working[static_cast<size_t>(i)], float_to_bf16(master[static_cast<size_t>(i)]));
  }
  EXPECT_LE(worst, 1.0);
  std::printf("fp32 AdamW vs float64: largest difference %.2f of the bound\n", worst);
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

// Against LibTorch in float64 (an fp32 sum of 1033 squares would itself be off by up to
// ~0.5 ulp(1033) = 6e-5): products of floats are exact in double, and two double sums of
// n positive terms in any order agree to 2·n·u64 of the total.
TEST(KernelReference, SquareSumMatchesTorch) {
  torch::manual_seed(4);
  torch::Tensor a = torch::randn({1000}), b = torch::randn({33});
  const double expected =
      (a.to(torch::kDouble).pow(2).sum() + b.to(torch::kDouble).pow(2).sum()).item<double>();
  EXPECT_NEAR(square_sum_reference({{a.data_ptr<float>(), 1000}, {b.data_ptr<float>(), 33}}),
              expected, 2 * 1033 * kU64 * expected);
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

// The sharded reference against LibTorch's cross_entropy in float64 on the same inputs.
// The reference computes in double and rounds each output once; the harness above adds
// the shards' sums of exp in fp32 (≤ 4 terms, ~2.5 u32). So each loss is within
// 4·u32·(1 + |loss|) (the sum's error, then the final rounding), and each gradient element,
// (p - onehot)·g with p and |p - onehot| at most 1, within 4·u32·|g|.
void expect_cross_entropy_matches(const torch::Tensor& logits, const torch::Tensor& targets,
                                  const torch::Tensor& grad_loss, int shards, DType dtype) {
  torch::Tensor leaf = logits.to(torch::kDouble).requires_grad_(true);
  const torch::Tensor expected = torch::nn::functional::cross_entropy(
      leaf, targets, torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  expected.backward(grad_loss.to(torch::kDouble));
  const CrossEntropyResult got = sharded_cross_entropy(logits, targets, grad_loss, shards, dtype);
  const torch::Tensor loss_error = (got.loss.to(torch::kDouble) - expected.detach()).abs();
  EXPECT_TRUE((loss_error <= 4 * kU32 * (1 + expected.detach().abs())).all().item<bool>())
      << shards << " shards: largest loss difference " << loss_error.max().item<double>();
  if (dtype != DType::fp32) return;  // 16-bit gradients are checked for their dtype only
  const torch::Tensor grad_error = (got.dlogits.to(torch::kDouble) - leaf.grad()).abs();
  EXPECT_TRUE(
      (grad_error <= 4 * kU32 * grad_loss.to(torch::kDouble).abs().unsqueeze(1)).all().item<bool>())
      << shards << " shards: largest gradient difference " << grad_error.max().item<double>();
}

TEST(KernelReference, VocabParallelCrossEntropyMatchesTorch) {
  torch::manual_seed(5);
  const int64_t tokens = 37, vocab = 96;
  const torch::Tensor logits = torch::randn({tokens, vocab}) * 4;
  const torch::Tensor targets = torch::randint(0, vocab, {tokens}, torch::kLong);
  const torch::Tensor grad_loss = torch::rand({tokens}) + 0.5;
  for (int shards : {1, 2, 4})
    expect_cross_entropy_matches(logits, targets, grad_loss, shards, DType::fp32);
}

TEST(KernelReference, Bf16CrossEntropyComputesInFp32) {
  torch::manual_seed(6);
  const int64_t tokens = 16, vocab = 64;
  const torch::Tensor logits = (torch::randn({tokens, vocab}) * 4).to(torch::kBFloat16);
  const torch::Tensor targets = torch::randint(0, vocab, {tokens}, torch::kLong);
  expect_cross_entropy_matches(logits, targets, torch::ones({tokens}), 2, DType::bf16);
  EXPECT_EQ(sharded_cross_entropy(logits, targets, torch::ones({tokens}), 2, DType::bf16)
                .dlogits.scalar_type(),
            torch::kBFloat16);
}

// The fused norms and activations: fp32 and bf16 inputs, a row length that takes 16-byte
// packs and one that does not; everything against LibTorch autograd in float64.
using fused_truth::bound_ratio;

torch::ScalarType torch_type(DType dtype) {
  return dtype == DType::fp32   ? torch::kFloat
         : dtype == DType::bf16 ? torch::kBFloat16
                                : torch::kHalf;
}
// The rounding of an output of `dtype` (16-bit ones through fp32: both roundings).
double out_u(DType dtype) {
  if (dtype == DType::fp32) return fused_truth::kU32;
  return (dtype == DType::bf16 ? fused_truth::kU16 : fused_truth::kUHalf) + fused_truth::kU32;
}
torch::Tensor wide(const torch::Tensor& t) {
  return t.to(torch::kDouble);
}

constexpr float kEps = 1e-5f;
struct Shape {
  int64_t rows, hidden;
};
constexpr Shape kShapes[] = {{9, 64}, {5, 67}};

// Checks outputs against their truth and keeps the largest ratio of error to bound, printed
// at the end of each test: how close the derived bounds come to the errors seen.
struct BoundCheck {
  const char* op;
  double worst = 0;
  void operator()(const torch::Tensor& got, const fused_truth::Truth& truth, DType dtype,
                  bool fp32_output, const char* what, const Shape& s) {
    // An output of the tested dtype may be an fp16 subnormal; fp32 outputs never are here.
    const double ratio =
        bound_ratio(got, truth, dtype == DType::fp16 && !fp32_output ? 0x1p-25 : 0.0);
    worst = std::max(worst, ratio);
    EXPECT_LE(ratio, 1.0) << what << " dtype " << static_cast<int>(dtype) << " hidden " << s.hidden;
  }
  ~BoundCheck() { std::printf("%s: largest error %.3f of its bound\n", op, worst); }
};
#define EXPECT_WITHIN(got, truth, what) check(got, truth, dtype, false, what, s)
#define EXPECT_WITHIN_FP32(got, truth, what) check(got, truth, dtype, true, what, s)

TEST(KernelReference, RmsNormMatchesTorchAutogradInFloat64) {
  BoundCheck check{"rmsnorm"};
  torch::manual_seed(7);
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (Shape s : kShapes) {
      const torch::ScalarType type = torch_type(dtype);
      const torch::Tensor x = (torch::randn({s.rows, s.hidden}) * 2).to(type);
      const torch::Tensor w = (1 + 0.3 * torch::randn({s.hidden})).to(type),
                          dy = torch::randn({s.rows, s.hidden}).to(type);
      torch::Tensor y = torch::empty_like(x), dx = torch::empty_like(x),
                    rstd = torch::empty({s.rows}), dw = torch::empty({s.hidden});
      rmsnorm_forward_reference(x.data_ptr(), w.data_ptr(), dtype, s.rows, s.hidden, kEps,
                                y.data_ptr(), rstd.data_ptr<float>());
      rmsnorm_backward_reference(dy.data_ptr(), x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(),
                                 dtype, s.rows, s.hidden, dx.data_ptr(), dw.data_ptr<float>());
      const fused_truth::NormTruth t = fused_truth::rmsnorm_truth(wide(x), wide(w), wide(dy), kEps,
                                                                  out_u(dtype), fused_truth::kU32);
      EXPECT_WITHIN(y, t.y, "y");
      EXPECT_WITHIN_FP32(rstd, t.rstd, "rstd");
      EXPECT_WITHIN(dx, t.dx, "dx");
      EXPECT_WITHIN_FP32(dw, t.dweight, "dweight");
    }
}

// The sum is one IEEE fp32 addition rounded to dtype, as LibTorch's own add: bit for bit.
TEST(KernelReference, AddRmsNormIsTheAddThenRmsNorm) {
  BoundCheck check{"add_rmsnorm"};
  torch::manual_seed(11);
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (Shape s : kShapes) {
      const torch::ScalarType type = torch_type(dtype);
      const torch::Tensor x = torch::randn({s.rows, s.hidden}).to(type),
                          res = (torch::randn({s.rows, s.hidden}) * 2).to(type);
      const torch::Tensor w = (1 + 0.3 * torch::randn({s.hidden})).to(type);
      torch::Tensor sum = torch::empty_like(x), y = torch::empty_like(x),
                    rstd = torch::empty({s.rows});
      add_rmsnorm_forward_reference(x.data_ptr(), res.data_ptr(), w.data_ptr(), dtype, s.rows,
                                    s.hidden, kEps, sum.data_ptr(), y.data_ptr(),
                                    rstd.data_ptr<float>());
      EXPECT_TRUE(torch::equal(sum, x + res));
      const fused_truth::NormTruth t = fused_truth::rmsnorm_truth(
          wide(x + res), wide(w), torch::ones({s.rows, s.hidden}, torch::kDouble), kEps,
          out_u(dtype), fused_truth::kU32);
      EXPECT_WITHIN(y, t.y, "y");
      EXPECT_WITHIN_FP32(rstd, t.rstd, "rstd");
    }
}

TEST(KernelReference, LayerNormMatchesTorchAutogradInFloat64) {
  BoundCheck check{"layernorm"};
  torch::manual_seed(8);
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (Shape s : kShapes) {
      const torch::ScalarType type = torch_type(dtype);
      const torch::Tensor x = (torch::randn({s.rows, s.hidden}) * 2 + 0.5).to(type);
      const torch::Tensor w = (1 + 0.3 * torch::randn({s.hidden})).to(type),
                          b = (0.1 * torch::randn({s.hidden})).to(type);
      const torch::Tensor dy = torch::randn({s.rows, s.hidden}).to(type);
      torch::Tensor y = torch::empty_like(x), dx = torch::empty_like(x),
                    mean = torch::empty({s.rows}), rstd = torch::empty({s.rows}),
                    dw = torch::empty({s.hidden}), db = torch::empty({s.hidden});
      layernorm_forward_reference(x.data_ptr(), w.data_ptr(), b.data_ptr(), dtype, s.rows, s.hidden,
                                  kEps, y.data_ptr(), mean.data_ptr<float>(),
                                  rstd.data_ptr<float>());
      layernorm_backward_reference(
          dy.data_ptr(), x.data_ptr(), w.data_ptr(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
          dtype, s.rows, s.hidden, dx.data_ptr(), dw.data_ptr<float>(), db.data_ptr<float>());
      const fused_truth::NormTruth t = fused_truth::layernorm_truth(
          wide(x), wide(w), wide(b), wide(dy), kEps, out_u(dtype), fused_truth::kU32);
      EXPECT_WITHIN(y, t.y, "y");
      EXPECT_WITHIN_FP32(mean, t.mean, "mean");
      EXPECT_WITHIN_FP32(rstd, t.rstd, "rstd");
      EXPECT_WITHIN(dx, t.dx, "dx");
      EXPECT_WITHIN_FP32(dw, t.dweight, "dweight");
      EXPECT_WITHIN_FP32(db, t.dbias, "dbias");
    }
}

TEST(KernelReference, BiasGeluMatchesTorchTanhGeluInFloat64) {
  BoundCheck check{"bias_gelu"};
  torch::manual_seed(9);
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (Shape s : kShapes) {
      const torch::ScalarType type = torch_type(dtype);
      const torch::Tensor x = (torch::randn({s.rows, s.hidden}) * 2).to(type);
      const torch::Tensor b = (0.5 * torch::randn({s.hidden})).to(type),
                          dy = torch::randn({s.rows, s.hidden}).to(type);
      torch::Tensor y = torch::empty_like(x), dx = torch::empty_like(x),
                    db = torch::empty({s.hidden});
      bias_gelu_forward_reference(x.data_ptr(), b.data_ptr(), dtype, s.rows, s.hidden,
                                  y.data_ptr());
      bias_gelu_backward_reference(dy.data_ptr(), x.data_ptr(), b.data_ptr(), dtype, s.rows,
                                   s.hidden, dx.data_ptr(), db.data_ptr<float>());
      const fused_truth::ActivationTruth t =
          fused_truth::bias_gelu_truth(wide(x), wide(b), wide(dy), out_u(dtype), fused_truth::kU32);
      EXPECT_WITHIN(y, t.y, "y");
      EXPECT_WITHIN(dx, t.dx, "dx");
      EXPECT_WITHIN_FP32(db, t.dbias, "dbias");
    }
}

TEST(KernelReference, SwigluMatchesTorchSiluTimesUpInFloat64) {
  BoundCheck check{"swiglu"};
  torch::manual_seed(10);
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (Shape s : kShapes) {
      const torch::ScalarType type = torch_type(dtype);
      const int64_t n = s.rows * s.hidden;
      const torch::Tensor gate = (torch::randn({n}) * 3).to(type), up = torch::randn({n}).to(type),
                          dy = torch::randn({n}).to(type);
      torch::Tensor y = torch::empty_like(gate), dgate = torch::empty_like(gate),
                    dup = torch::empty_like(gate);
      swiglu_forward_reference(gate.data_ptr(), up.data_ptr(), dtype, n, y.data_ptr());
      swiglu_backward_reference(dy.data_ptr(), gate.data_ptr(), up.data_ptr(), dtype, n,
                                dgate.data_ptr(), dup.data_ptr());
      const fused_truth::ActivationTruth t =
          fused_truth::swiglu_truth(wide(gate), wide(up), wide(dy), out_u(dtype));
      EXPECT_WITHIN(y, t.y, "y");
      EXPECT_WITHIN(dgate, t.dx, "dgate");
      EXPECT_WITHIN(dup, t.dup, "dup");
    }
}

#undef EXPECT_WITHIN
#undef EXPECT_WITHIN_FP32

}  // namespace
}  // namespace sextant::kernels
