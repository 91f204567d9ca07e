// The MoE MLP on one rank (executor/moe.h) against Hugging Face's formulas written out
// token by token in float64: routing (softmax, top-k, renormalisation), the experts'
// weighted sum, qwen2_moe's gated shared expert, and the load-balancing loss with its
// gradient reaching the router. Multi-rank dispatch is covered by the equivalence matrix
// (training_test.cpp) and the all-to-all by comm_test.cpp.
#include "executor/moe.h"

#include <gtest/gtest.h>
#include <mpi.h>

#include <cstdio>

#include "cost_model/model_spec.h"
#include "executor/model.h"

namespace sextant {
namespace {

ModelSpec tiny(const char* file) {
  return load_model_spec(std::string(SEXTANT_EXAMPLES) + "/models/" + file, 8);
}

// Block 0's parameters in float64, as leaves.
ParamMap block_params(const ModelSpec& m) {
  ParamMap p;
  for (const ParamSpec& s : layer_param_specs(m, LayerKind::block, 0, false))
    p[s.name] = init_param(s, 7, 0, 1)
                    .to(torch::kDouble)
                    .mul(10)
                    .requires_grad_(true);  // wide spread: clear top-k
  return p;
}

torch::Tensor swiglu_reference(const ParamMap& p, const std::string& prefix,
                               const torch::Tensor& x) {
  const torch::Tensor g = torch::matmul(x, p.at(prefix + "gate.weight").t());
  return torch::matmul(torch::silu(g) * torch::matmul(x, p.at(prefix + "up.weight").t()),
                       p.at(prefix + "down.weight").t());
}

struct Reference {
  torch::Tensor y, aux;
};

// Hugging Face's sparse MoE block and load_balancing_loss_func, one token at a time.
Reference reference(const ModelSpec& m, const ParamMap& p, const torch::Tensor& tokens) {
  const std::string b = "blocks.0.moe.";
  const int64_t T = tokens.size(0), E = m.num_experts, k = m.experts_per_token;
  const torch::Tensor probs =
      torch::softmax(torch::matmul(tokens, p.at(b + "router.weight").t()), -1);
  std::vector<torch::Tensor> rows;
  torch::Tensor assigned = torch::zeros({E}, torch::kDouble);
  for (int64_t t = 0; t < T; ++t) {
    auto [w, idx] = probs[t].topk(k);
    if (m.norm_topk_prob) w = w / w.sum();
    torch::Tensor y = torch::zeros({m.hidden_size}, torch::kDouble);
    for (int64_t i = 0; i < k; ++i) {
      const int64_t e = idx[i].item<int64_t>();
      assigned[e] += 1;
      y = y + w[i] * swiglu_reference(p, b + "experts." + std::to_string(e) + ".",
                                      tokens[t].unsqueeze(0))[0];
    }
    if (m.shared_expert_ffn_size > 0)
      y = y + torch::sigmoid(torch::dot(tokens[t], p.at(b + "shared_gate.weight")[0])) *
                  swiglu_reference(p, b + "shared.", tokens[t].unsqueeze(0))[0];
    rows.push_back(y);
  }
  // tokens_per_expert (summed over the k slots) · router_prob_per_expert, times E.
  const torch::Tensor aux =
      (assigned / static_cast<double>(T) * probs.mean(0)).sum() * static_cast<double>(E);
  return {torch::stack(rows), aux};
}

void expect_close(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  const double diff = (a - b).abs().max().item<double>(), scale = b.abs().max().item<double>();
  EXPECT_LE(diff, 1e-12 * scale) << what << ": " << diff << " of " << scale;
}

void check_model(const char* file) {
  const ModelSpec m = tiny(file);
  ASSERT_TRUE(m.is_moe());
  MpiComm self(MPI_COMM_SELF);
  MoeLoss loss;
  loss.grad_scale = 0.37;  // ∂L/∂aux
  loss.value_weight = 0.37;
  loss.counts = true;
  loss.sum = torch::zeros({}, torch::kDouble);
  ModelContext ctx;
  ctx.model = &m;
  ctx.tp = &self;
  ctx.moe_loss = &loss;
  torch::manual_seed(5);
  const int64_t s = 8, b = 2;
  const torch::Tensor h = torch::randn({s, b, m.hidden_size}, torch::kDouble);
  const torch::Tensor c = torch::randn({s, b, m.hidden_size}, torch::kDouble);  // ∂L/∂y

  ParamMap ours = block_params(m), theirs = block_params(m);
  torch::Tensor x = h.clone().requires_grad_(true), x_ref = h.clone().requires_grad_(true);
  const torch::Tensor y = moe_mlp(ours, 0, x, ctx);
  (y * c).sum().backward();
  const Reference r = reference(m, theirs, x_ref.reshape({-1, m.hidden_size}));
  ((r.y.view({s, b, -1}) * c).sum() + loss.grad_scale * r.aux).backward();

  expect_close(y.detach(), r.y.detach().view({s, b, -1}), "output");
  EXPECT_NEAR(loss.sum.item<double>(), loss.value_weight * r.aux.item<double>(), 1e-14)
      << "aux loss";
  expect_close(x.grad(), x_ref.grad(), "input gradient");
  for (const auto& [name, leaf] : theirs) {
    ASSERT_TRUE(ours.at(name).grad().defined() || !leaf.grad().defined()) << name;
    if (leaf.grad().defined()) expect_close(ours.at(name).grad(), leaf.grad(), name.c_str());
  }
  std::printf("%s: aux loss %.6f (balanced routing gives %lld)\n", file, r.aux.item<double>(),
              static_cast<long long>(m.experts_per_token));
}

TEST(Moe, MixtralBlockIsHuggingFacesTokenByToken) {
  check_model("tiny-mixtral.json");
}

TEST(Moe, Qwen2MoeBlockWithItsGatedSharedExpertIsHuggingFacesTokenByToken) {
  check_model("tiny-qwen2-moe.json");
}

// Mixtral renormalises the top-k weights, qwen2_moe (norm_topk_prob false) keeps the softmax's.
TEST(Moe, RoutingRenormalisesOnlyWhenNormTopkProb) {
  ModelSpec m = tiny("tiny-mixtral.json");
  const torch::Tensor logits =
      torch::tensor({{2.0, 1.0, 0.0, -1.0}, {0.0, 3.0, 1.0, 2.0}}, torch::kDouble);
  const Routing mixtral = route(logits, m);
  EXPECT_TRUE(torch::allclose(mixtral.weights.sum(-1), torch::ones({2}, torch::kDouble)));
  EXPECT_TRUE(torch::equal(mixtral.experts, torch::tensor({{0, 1}, {1, 3}}, torch::kLong)));
  m.norm_topk_prob = false;
  const Routing qwen = route(logits, m);
  EXPECT_TRUE(torch::allclose(qwen.weights, std::get<0>(torch::softmax(logits, -1).topk(2))));
  // f = [1, 2, 0, 1] / 2 tokens, P = mean of the softmax rows: E·Σ f·P.
  const torch::Tensor p = torch::softmax(logits, -1).mean(0);
  const double want = 4 * (0.5 * p[0] + 1.0 * p[1] + 0.5 * p[3]).item<double>();
  EXPECT_NEAR(load_balancing_loss(qwen, 4).item<double>(), want, 1e-15);
  EXPECT_EQ(route(logits.to(torch::kFloat), m).probs.scalar_type(), torch::kFloat);
}

TEST(Moe, ExpertNamesAndShares) {
  const ModelSpec m = tiny("tiny-qwen2-moe.json");
  EXPECT_EQ(with_expert("blocks.1.moe.experts.2.up.weight", 13),
            "blocks.1.moe.experts.13.up.weight");
  const ExpertRange r = local_experts(m, 2, 1);
  EXPECT_EQ(r.first, 2);
  EXPECT_EQ(r.count, 2);
  int64_t params = 0;
  for (const ParamSpec& s : layer_param_specs(m, LayerKind::block, 0, false))
    params += c10::multiply_integers(s.shape);
  int64_t attention_and_norms = 0;
  for (const ParamSpec& s : layer_param_specs(m, LayerKind::block, 0, false))
    if (s.name.find(".moe.") == std::string::npos)
      attention_and_norms += c10::multiply_integers(s.shape);
  EXPECT_EQ(params - attention_and_norms, m.mlp_params());  // the cost model's count
}

}  // namespace
}  // namespace sextant
