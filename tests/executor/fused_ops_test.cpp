// The executor's fused ops (executor/fused_ops.h) on CPU tensors, through the same glue a
// GPU run takes: forward and backward in fp32 and bf16 against LibTorch autograd in
// float64 (bounds derived in tests/kernels/fused_truth.h), leading dimensions kept,
// parameter gradients in the parameter's dtype; and in fp64, bit for bit the LibTorch
// expression model.cpp computes.
#include "executor/fused_ops.h"

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "tests/kernels/fused_truth.h"

namespace sextant {
namespace {

namespace truth = kernels::fused_truth;

constexpr double kEps = 1e-5;
constexpr int64_t kHidden = 67;  // not a whole number of 16-byte packs

torch::Tensor wide2d(const torch::Tensor& t) {
  return t.to(torch::kDouble).reshape({-1, t.size(-1)});
}
double out_u(torch::ScalarType type) {
  return type == torch::kFloat ? truth::kU32 : truth::kU16 + truth::kU32;
}
// A parameter gradient: summed in double, rounded to fp32, then to the parameter's dtype.
double param_u(torch::ScalarType type) {
  return type == torch::kFloat ? truth::kU32 : truth::kU16 + truth::kU32;
}

// Inputs of `type` with leading shape [2, 3]; weight-like parameters of `param_type`.
struct Case {
  torch::ScalarType type, param_type;
};
constexpr Case kCases[] = {{torch::kFloat, torch::kFloat},
                           {torch::kBFloat16, torch::kBFloat16},
                           {torch::kBFloat16, torch::kFloat}};

torch::Tensor leaf(const torch::Tensor& t) {
  return t.detach().clone().requires_grad_(true);
}

void expect_within(const torch::Tensor& got, const truth::Truth& want, const char* what,
                   const Case& c) {
  EXPECT_LE(truth::bound_ratio(got, want), 1.0)
      << what << " in " << c10::toString(c.type) << " with parameters in "
      << c10::toString(c.param_type);
}

TEST(FusedOps, RmsNormMatchesFloat64Autograd) {
  torch::manual_seed(21);
  for (const Case& c : kCases) {
    torch::Tensor x = leaf((torch::randn({2, 3, kHidden}) * 2).to(c.type));
    torch::Tensor w = leaf((1 + 0.3 * torch::randn({kHidden})).to(c.param_type));
    const torch::Tensor dy = torch::randn({2, 3, kHidden}).to(c.type);
    const torch::Tensor y = rms_norm(x, w, kEps);
    y.backward(dy);
    ASSERT_EQ(y.sizes(), x.sizes());
    EXPECT_EQ(y.scalar_type(), c.type);
    EXPECT_EQ(w.grad().scalar_type(), c.param_type);
    // The kernel takes the weight in x's dtype: the truth starts from that rounded weight.
    const truth::NormTruth t =
        truth::rmsnorm_truth(wide2d(x), w.detach().to(c.type).to(torch::kDouble), wide2d(dy),
                             static_cast<float>(kEps), out_u(c.type), param_u(c.param_type));
    expect_within(y, t.y, "y", c);
    expect_within(x.grad(), t.dx, "dx", c);
    expect_within(w.grad(), t.dweight, "dweight", c);
  }
}

TEST(FusedOps, LayerNormMatchesFloat64Autograd) {
  torch::manual_seed(22);
  for (const Case& c : kCases) {
    torch::Tensor x = leaf((torch::randn({2, 3, kHidden}) * 2 + 0.5).to(c.type));
    torch::Tensor w = leaf((1 + 0.3 * torch::randn({kHidden})).to(c.param_type));
    torch::Tensor b = leaf((0.1 * torch::randn({kHidden})).to(c.param_type));
    const torch::Tensor dy = torch::randn({2, 3, kHidden}).to(c.type);
    const torch::Tensor y = layer_norm(x, w, b, kEps);
    y.backward(dy);
    ASSERT_EQ(y.sizes(), x.sizes());
    EXPECT_EQ(w.grad().scalar_type(), c.param_type);
    EXPECT_EQ(b.grad().scalar_type(), c.param_type);
    const truth::NormTruth t =
        truth::layernorm_truth(wide2d(x), w.detach().to(c.type).to(torch::kDouble),
                               b.detach().to(c.type).to(torch::kDouble), wide2d(dy),
                               static_cast<float>(kEps), out_u(c.type), param_u(c.param_type));
    expect_within(y, t.y, "y", c);
    expect_within(x.grad(), t.dx, "dx", c);
    expect_within(w.grad(), t.dweight, "dweight", c);
    expect_within(b.grad(), t.dbias, "dbias", c);
  }
}

TEST(FusedOps, BiasGeluMatchesFloat64Autograd) {
  torch::manual_seed(23);
  for (const Case& c : kCases) {
    torch::Tensor x = leaf((torch::randn({2, 3, kHidden}) * 2).to(c.type));
    torch::Tensor b = leaf((0.5 * torch::randn({kHidden})).to(c.param_type));
    const torch::Tensor dy = torch::randn({2, 3, kHidden}).to(c.type);
    const torch::Tensor y = bias_gelu(x, b);
    y.backward(dy);
    ASSERT_EQ(y.sizes(), x.sizes());
    EXPECT_EQ(b.grad().scalar_type(), c.param_type);
    const truth::ActivationTruth t =
        truth::bias_gelu_truth(wide2d(x), b.detach().to(c.type).to(torch::kDouble), wide2d(dy),
                               out_u(c.type), param_u(c.param_type));
    expect_within(y, t.y, "y", c);
    expect_within(x.grad(), t.dx, "dx", c);
    expect_within(b.grad(), t.dbias, "dbias", c);
  }
  // No bias: plain tanh GELU.
  const torch::Tensor x = torch::randn({4, kHidden});
  EXPECT_LE(
      truth::bound_ratio(bias_gelu(x, torch::Tensor()),
                         truth::bias_gelu_truth(wide2d(x), torch::zeros({kHidden}, torch::kDouble),
                                                torch::ones({4, kHidden}, torch::kDouble),
                                                truth::kU32, truth::kU32)
                             .y),
      1.0);
}

TEST(FusedOps, SwigluMatchesFloat64Autograd) {
  torch::manual_seed(24);
  for (const Case& c : kCases) {
    torch::Tensor gate = leaf((torch::randn({2, 3, kHidden}) * 3).to(c.type));
    torch::Tensor up = leaf(torch::randn({2, 3, kHidden}).to(c.type));
    const torch::Tensor dy = torch::randn({2, 3, kHidden}).to(c.type);
    const torch::Tensor y = swiglu(gate, up);
    y.backward(dy);
    ASSERT_EQ(y.sizes(), gate.sizes());
    const truth::ActivationTruth t =
        truth::swiglu_truth(wide2d(gate), wide2d(up), wide2d(dy), out_u(c.type));
    expect_within(y, t.y, "y", c);
    expect_within(gate.grad(), t.dx, "dgate", c);
    expect_within(up.grad(), t.dup, "dup", c);
  }
}

// fp64 (`execute --fp64`): the same LibTorch expressions model.cpp's norm() and mlp()
// compute, so outputs and gradients are equal bit for bit.
TEST(FusedOps, Float64IsTheLibTorchExpression) {
  torch::manual_seed(25);
  auto grads_of = [](const torch::Tensor& out, const std::vector<torch::Tensor>& inputs) {
    return torch::autograd::grad({out}, inputs, {torch::ones_like(out)});
  };
  const torch::Tensor x = leaf(torch::randn({2, 3, kHidden}, torch::kDouble));
  const torch::Tensor u = leaf(torch::randn({2, 3, kHidden}, torch::kDouble));
  const torch::Tensor w = leaf(torch::randn({kHidden}, torch::kDouble));
  const torch::Tensor b = leaf(torch::randn({kHidden}, torch::kDouble));
  auto expect_same = [&](const torch::Tensor& ours, const torch::Tensor& theirs,
                         const std::vector<torch::Tensor>& inputs, const char* what) {
    EXPECT_TRUE(torch::equal(ours, theirs)) << what;
    const auto a = grads_of(ours, inputs), e = grads_of(theirs, inputs);
    for (size_t i = 0; i < a.size(); ++i)
      EXPECT_TRUE(torch::equal(a[i], e[i])) << what << " gradient " << i;
  };
  expect_same(rms_norm(x, w, kEps), x * torch::rsqrt(x.pow(2).mean(-1, true) + kEps) * w, {x, w},
              "rms_norm");
  expect_same(layer_norm(x, w, b, kEps), torch::layer_norm(x, {kHidden}, w, b, kEps), {x, w, b},
              "layer_norm");
  expect_same(bias_gelu(x, b), torch::gelu(x + b, "tanh"), {x, b}, "bias_gelu");
  expect_same(swiglu(x, u), torch::silu(x) * u, {x, u}, "swiglu");
}

TEST(FusedOps, RejectsIntegerTensors) {
  const torch::Tensor x = torch::ones({2, 4}, torch::kInt);
  EXPECT_THROW(rms_norm(x, torch::ones({4}), kEps), std::invalid_argument);
}

}  // namespace
}  // namespace sextant
