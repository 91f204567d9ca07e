// The mixture-of-experts MLP (mixtral, qwen2_moe) with expert parallelism, as Hugging
// Face's MixtralSparseMoeBlock / Qwen2MoeSparseMoeBlock compute it:
//   router   logits = x·Wrᵀ (Linear h→E, no bias), probabilities softmax(logits) in fp32
//            (fp64 under --fp64), the top-k experts of each token, their k weights
//            renormalised to sum 1 when norm_topk_prob, cast to the working dtype;
//   experts  E SwiGLU MLPs of ffn_hidden_size; token t's output Σ_k w_tk·expert_k(x_t);
//   shared   qwen2_moe: one more SwiGLU every token passes, scaled by sigmoid(x·w_gate);
//   aux loss HF's load_balancing_loss_func, E·Σ_e f_e·P_e (f_e: the share of the tokens'
//            top-k assignments that go to e, summed over the k slots; P_e: the mean router
//            probability of e), per layer and micro-batch on the tokens the layer routes,
//            averaged over the layers, times router_aux_loss_coef, added to the training
//            loss with the micro-batch's weight in it (its share of the step's tokens).
//            HF pools every layer's tokens into one f and one P; per layer (as Megatron-
//            Core) is what a pipeline stage can compute, and equals HF's for one layer.
//
// Expert parallelism (Megatron-Core's layout): the ep group (cost_model/layout.h) splits
// the experts, ep rank r holding experts [r·E/ep, (r+1)·E/ep). Each rank routes its own
// tokens, sorts their T·k (token, expert) slots by expert, exchanges the per-expert counts
// (an all-to-all of int64), sends each slot's token to the rank of its expert (all-to-all
// with per-peer counts), runs its experts on what it received, and sends the outputs back
// the same way; the backward runs the reverse all-to-alls on the gradients.
//
// Tensor parallelism: the experts and the shared expert are split over tp as the dense MLP
// (gate and up column-parallel, down row-parallel; expert-tensor-parallel = tp). Every tp
// rank routes the same tokens (the whole sequence, gathered under sequence parallelism)
// identically, exchanges them within its own ep group (ranks of its tp and pp coordinates),
// and computes its shard; one all-reduce (reduce-scatter under SP) after the layer sums the
// partial outputs, as after the dense MLP. The router and shared-expert gate are the same
// on every tp rank but weigh tp-partial outputs, so their gradients are partial sums,
// summed over tp before the step (ParamSpec::tp_partial_grad); the aux loss, which every tp
// rank computes whole, back-propagates 1/tp of its gradient on each so that sum is right.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cost_model/model_spec.h"
#include "executor/comm.h"
#include "executor/model.h"

namespace sextant {

// The load-balancing loss of one step on this rank, filled by the MoE layers' backward
// (each layer's loss of each micro-batch counted once, recompute or not).
struct MoeLoss {
  // ∂(scaled step loss)/∂(one layer's aux loss in one micro-batch) on this tp rank:
  // router_aux_loss_coef · (b·s)·loss_scale / num_layers / tp, loss_scale the factor the
  // stage multiplies each micro-batch's summed token loss by.
  double grad_scale = 0;
  // The weight of one layer's aux loss in `sum` (grad_scale without the 1/tp).
  double value_weight = 0;
  bool counts = false;  // tp rank 0 sums: every tp rank computes the same values
  torch::Tensor sum;    // float64 scalar on the device, scaled as the stage's loss sum
};

// The routed experts of a layer on ep rank `ep_rank` of `ep`: [first, first + count).
struct ExpertRange {
  int64_t first = 0, count = 0;
};
ExpertRange local_experts(const ModelSpec& model, int64_t ep, int64_t ep_rank);

// Parameters of block `index`'s MoE MLP ("blocks.I.moe."): router, every routed expert
// (gate, up, down), the shared expert and its gate.
void add_moe_param_specs(std::vector<ParamSpec>& out, const ModelSpec& model, int64_t index);
// The name of parameter `name` of a routed expert, for expert `expert` instead.
std::string with_expert(const std::string& name, int64_t expert);

// What the router decides for tokens [T, h]: probabilities [T, E] (fp32 at least), the top-k
// experts [T, k] (int64) and their weights [T, k] (working dtype).
struct Routing {
  torch::Tensor probs, experts, weights;
};
Routing route(const torch::Tensor& logits, const ModelSpec& model);
// E·Σ_e f_e·P_e of a routing (a differentiable scalar through the probabilities).
torch::Tensor load_balancing_loss(const Routing& routing, int64_t num_experts);

// h [s, b, hidden] (sequence parallel: [s/tp, b, hidden]) -> the MLP's output, same shape.
torch::Tensor moe_mlp(const ParamMap& p, int64_t index, const torch::Tensor& h,
                      const ModelContext& ctx);

// All-to-all along dim 0 with per-peer row counts as an autograd op: the backward sends
// the gradient rows back the way they came (counts swapped). `ep` null: one rank, identity.
torch::Tensor all_to_all_rows(const torch::Tensor& x, const std::vector<int64_t>& send_rows,
                              const std::vector<int64_t>& recv_rows, Comm* ep);

}  // namespace sextant
