// ModelSpec: a decoder-only transformer as the cost model sees it, read from a
// Hugging Face config.json (llama, mistral, mixtral, qwen2, qwen2_moe, gpt2, gpt_neox) or from a
// sextant JSON (model_type "gpt": a Megatron-style GPT). Parameter counts are exact.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace sextant {

enum class NormKind { rmsnorm, layernorm };
enum class MlpKind { gelu, swiglu };
enum class PositionKind { rope, learned };

struct ModelSpec {
  std::string name;
  std::string model_type;  // as in the config: llama, mistral, mixtral, qwen2, qwen2_moe, gpt2, gpt_neox, gpt
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t ffn_hidden_size = 0;  // per expert for MoE
  int64_t vocab_size = 0;
  int64_t seq_len = 0;          // training context length (--seq overrides the config's)
  int64_t max_position_embeddings = 0;
  int64_t num_experts = 1;      // 1: dense MLP
  int64_t experts_per_token = 1;  // top-k
  // MoE routing (mixtral, qwen2_moe): softmax over the experts, top-k, the k weights
  // renormalised to sum 1 when norm_topk_prob (mixtral always; qwen2_moe by config); the
  // load-balancing loss (Switch Transformer's E·Σ f_i·P_i) scaled by router_aux_loss_coef.
  bool norm_topk_prob = true;
  double router_aux_loss_coef = 0.0;
  // qwen2_moe: one shared expert every token passes (SwiGLU of this width), its output
  // scaled by sigmoid(x·w) with w a [hidden] vector (shared_expert_gate). 0: none.
  int64_t shared_expert_ffn_size = 0;
  bool tied_embeddings = false;
  bool qkv_bias = false;
  bool attn_out_bias = false;
  bool mlp_bias = false;
  bool parallel_residual = false;  // gpt_neox: attention and MLP read the same input
  double rotary_pct = 1.0;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  double dropout = 0.0;            // > 0 stores 1-byte dropout masks in activations
  NormKind norm = NormKind::rmsnorm;
  MlpKind mlp = MlpKind::swiglu;
  PositionKind position = PositionKind::rope;

  int64_t q_size() const { return num_heads * head_dim; }
  int64_t kv_size() const { return num_kv_heads * head_dim; }
  bool is_moe() const { return num_experts > 1; }

  // Exact parameter counts, by component.
  int64_t norm_params() const { return norm == NormKind::layernorm ? 2 * hidden_size : hidden_size; }
  int64_t attention_params() const;
  int64_t mlp_params() const;  // all experts, the shared expert and its gate, and the router
  int64_t expert_params() const;  // one routed expert
  int64_t router_params() const { return is_moe() ? hidden_size * num_experts : 0; }
  int64_t shared_expert_params() const;  // with its gate
  int64_t block_params() const { return attention_params() + mlp_params() + 2 * norm_params(); }
  int64_t embedding_params() const;  // token (+ learned position) embeddings
  int64_t head_params() const;       // final norm + output projection (0 weights if tied)
  int64_t total_params() const;
  // Parameters a token actually multiplies by (MoE: only its experts_per_token experts).
  int64_t block_active_params() const;
};

// Reads a model config (HF config.json or sextant JSON). `where` names the source in
// errors. seq_override > 0 replaces the context length. Throws InputError.
ModelSpec model_spec_from_json(const nlohmann::json& config, const std::string& where,
                               int64_t seq_override = 0);
ModelSpec load_model_spec(const std::string& path, int64_t seq_override = 0);

nlohmann::json model_spec_to_json(const ModelSpec& spec);

// What is wrong with expert parallelism `ep` for this model (ep > 1 on a dense model, ep
// not dividing the experts); "" if nothing.
std::string expert_parallel_problem(const ModelSpec& model, int64_t ep);

}  // namespace sextant
