// The decoder the executor trains, built from the same ModelSpec the planner reads:
// RMSNorm/LayerNorm, RoPE/learned positions, SwiGLU/GELU, GQA, tied or untied embeddings,
// with column/row-parallel linears, a vocab-parallel embedding and loss, optional
// sequence parallelism, and mixture-of-experts MLPs with expert parallelism (executor/moe.h). Parameters are named; each is initialised in full from a
// generator seeded by (seed, name) and then sliced, so every layout starts from the
// same model.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include <torch/torch.h>

#include "cost_model/layout.h"
#include "cost_model/model_graph.h"
#include "cost_model/model_spec.h"
#include "executor/comm.h"

namespace sextant {

struct ParamSpec {
  std::string name;             // global, e.g. "blocks.3.attn.q.weight"
  std::vector<int64_t> shape;   // full, before the tp split
  int shard_dim = -1;           // split over tp along this dim; -1: the same on every tp rank
  enum class Init { normal, zeros, ones } init = Init::normal;
  bool decay = true;            // AdamW weight decay: matrices yes, norms and biases no
  // MoE: the global id of the routed expert this belongs to (-1: none). Experts are split
  // over the ep group and their gradients reduced over the expert-dp group.
  int64_t expert = -1;
  // The same on every tp rank, but each tp rank's gradient is a partial sum to be summed
  // over tp (the MoE router and shared-expert gate weigh tp-partial expert outputs).
  bool tp_partial_grad = false;
};

// Parameters of one layer in a fixed order (MoE blocks: every routed expert; a rank keeps
// its ep share, moe.h local_experts). With `tied_copy`, the head holds its own
// copy of the word embedding (tied embeddings, head on another stage than the embedding).
std::vector<ParamSpec> layer_param_specs(const ModelSpec& model, LayerKind kind, int64_t index, bool tied_copy);
// The full tensor (normal(0, 0.02), zeros or ones) from a generator seeded by
// seed ^ FNV-1a(name), then this tp rank's slice along shard_dim.
torch::Tensor init_param(const ParamSpec& spec, uint64_t seed, int64_t tp_rank, int64_t tp);
// The executor's own limits (MoE, vocabulary or heads not dividing tp, ...); "" if supported.
std::string unsupported_reason(const ModelSpec& model, const ParallelLayout& layout);

using ParamMap = std::unordered_map<std::string, torch::Tensor>;

// The dtype for what must not compute in 16 bits (norms, RoPE angles, softmax, the
// cross-entropy, master weights and Adam's m and v): the wider of fp32 and `working`
// (fp32 for fp32/bf16/fp16 runs, fp64 under `execute --fp64`).
inline torch::ScalarType at_least_fp32(torch::ScalarType working) {
  return c10::promoteTypes(working, torch::kFloat);
}

struct MoeLoss;  // executor/moe.h

struct ModelContext {
  const ModelSpec* model = nullptr;
  Comm* tp = nullptr;
  Comm* ep = nullptr;           // MoE token exchange; null when ep == 1
  MoeLoss* moe_loss = nullptr;  // MoE: where the load-balancing loss goes; null: not trained
  bool sequence_parallel = false;
  bool selective_recompute = false;
  bool flash_attention = true;  // keep no s×s attention scores for backward (the plan's job.flash_attention)
};

// tokens [b, s] -> hidden [s, b, h] (sequence parallel: [s/tp, b, h]).
torch::Tensor embedding_forward(const ParamMap& p, const torch::Tensor& tokens, const ModelContext& ctx);
torch::Tensor block_forward(const ParamMap& p, int64_t index, const torch::Tensor& x, const ModelContext& ctx);
// Sum of the token losses of targets [b, s] (every tp rank returns the same value).
torch::Tensor head_loss(const ParamMap& p, const torch::Tensor& x, const torch::Tensor& targets,
                        const ModelContext& ctx);

}  // namespace sextant
