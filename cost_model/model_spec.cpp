// ModelSpec readers for each supported model_type, with the defaults of the
// corresponding Hugging Face configuration classes, and exact parameter counts.
#include "cost_model/model_spec.h"

#include <filesystem>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"

namespace sextant {
namespace {

// Bounds that keep every parameter count inside int64 and reject absurd inputs.
constexpr int64_t kMaxHidden = 1 << 18;
constexpr int64_t kMaxLayers = 1 << 14;
constexpr int64_t kMaxHeads = 1 << 14;
constexpr int64_t kMaxFfn = 1 << 20;
constexpr int64_t kMaxVocab = 1 << 23;
constexpr int64_t kMaxSeq = 1 << 22;
constexpr int64_t kMaxExperts = 1 << 10;

// The size keys that llama, mistral, mixtral, qwen2, gpt_neox and sextant's gpt share.
// intermediate_size is required unless a default is given.
void read_standard_sizes(const JsonFields& f, ModelSpec& m, int64_t default_ffn = 0) {
  m.hidden_size = f.integer("hidden_size", 1, kMaxHidden);
  m.num_layers = f.integer("num_hidden_layers", 1, kMaxLayers);
  m.num_heads = f.integer("num_attention_heads", 1, kMaxHeads);
  m.num_kv_heads = f.integer_or("num_key_value_heads", m.num_heads, 1, kMaxHeads);
  m.ffn_hidden_size = default_ffn > 0
                          ? f.integer_or("intermediate_size", default_ffn * m.hidden_size, 1, kMaxFfn)
                          : f.integer("intermediate_size", 1, kMaxFfn);
  m.vocab_size = f.integer("vocab_size", 1, kMaxVocab);
  m.max_position_embeddings = f.integer_or("max_position_embeddings", 2048, 1, kMaxSeq);
}

void read_llama_like(const JsonFields& f, ModelSpec& m) {
  read_standard_sizes(f, m);
  m.tied_embeddings = f.boolean_or("tie_word_embeddings", false);
  m.head_dim = f.integer_or("head_dim", 0, 1, kMaxHidden);
  m.dropout = f.number_or("attention_dropout", 0.0, 0.0, 1.0);
  m.rope_theta = f.number_or("rope_theta", 10000.0, 1.0, 1e12);
  m.norm_eps = f.number_or("rms_norm_eps", 1e-6, 1e-12, 1.0);
  m.norm = NormKind::rmsnorm;
  m.mlp = MlpKind::swiglu;
  m.position = PositionKind::rope;
}

void read_gpt2(const JsonFields& f, ModelSpec& m) {
  m.hidden_size = f.integer("n_embd", 1, kMaxHidden);
  m.num_layers = f.integer("n_layer", 1, kMaxLayers);
  m.num_heads = m.num_kv_heads = f.integer("n_head", 1, kMaxHeads);
  m.ffn_hidden_size = f.integer_or("n_inner", 4 * m.hidden_size, 1, kMaxFfn);
  m.vocab_size = f.integer("vocab_size", 1, kMaxVocab);
  m.max_position_embeddings = f.integer_or("n_positions", 1024, 1, kMaxSeq);
  m.tied_embeddings = f.boolean_or("tie_word_embeddings", true);
  m.dropout = f.number_or("resid_pdrop", 0.1, 0.0, 1.0);
  m.norm_eps = f.number_or("layer_norm_epsilon", 1e-5, 1e-12, 1.0);
  m.qkv_bias = m.attn_out_bias = m.mlp_bias = true;
  m.norm = NormKind::layernorm;
  m.mlp = MlpKind::gelu;
  m.position = PositionKind::learned;
}

void read_gpt_neox(const JsonFields& f, ModelSpec& m) {
  read_standard_sizes(f, m);
  m.tied_embeddings = f.boolean_or("tie_word_embeddings", false);
  m.rotary_pct = f.number_or("rotary_pct", 0.25, 0.0, 1.0);
  m.parallel_residual = f.boolean_or("use_parallel_residual", true);
  m.qkv_bias = m.attn_out_bias = f.boolean_or("attention_bias", true);
  m.mlp_bias = true;
  m.dropout = f.number_or("hidden_dropout", 0.0, 0.0, 1.0);
  m.rope_theta = f.number_or("rotary_emb_base", 10000.0, 1.0, 1e12);
  m.norm_eps = f.number_or("layer_norm_eps", 1e-5, 1e-12, 1.0);
  m.norm = NormKind::layernorm;
  m.mlp = MlpKind::gelu;
  m.position = PositionKind::rope;
}

// The expert keys are required (every published config has them): a MoE model read
// with a defaulted expert count would be planned as a different model.
void check_top_k(const JsonFields& f, const ModelSpec& m, const std::string& experts_key) {
  if (m.experts_per_token > m.num_experts)
    throw InputError(f.where(), "num_experts_per_tok",
                     "top-k " + std::to_string(m.experts_per_token) + " must not exceed " + experts_key + " " +
                         std::to_string(m.num_experts));
}

// MixtralConfig: every layer sparse, top-k weights renormalised.
void read_mixtral_experts(const JsonFields& f, ModelSpec& m) {
  m.num_experts = f.integer("num_local_experts", 2, kMaxExperts);
  m.experts_per_token = f.integer("num_experts_per_tok", 1, kMaxExperts);
  check_top_k(f, m, "num_local_experts");
  m.norm_topk_prob = true;
  m.router_aux_loss_coef = f.number_or("router_aux_loss_coef", 0.001, 0.0, 1e3);
}

// Qwen2MoeConfig: routed experts of moe_intermediate_size plus a gated shared expert;
// intermediate_size is the dense MLP's, which only mlp_only_layers would use.
void read_qwen2_moe_experts(const JsonFields& f, ModelSpec& m) {
  m.num_experts = f.integer("num_experts", 2, kMaxExperts);
  m.experts_per_token = f.integer("num_experts_per_tok", 1, kMaxExperts);
  check_top_k(f, m, "num_experts");
  m.ffn_hidden_size = f.integer("moe_intermediate_size", 1, kMaxFfn);
  m.shared_expert_ffn_size = f.integer_or("shared_expert_intermediate_size", 0, 0, kMaxFfn);
  m.norm_topk_prob = f.boolean_or("norm_topk_prob", false);
  m.router_aux_loss_coef = f.number_or("router_aux_loss_coef", 0.001, 0.0, 1e3);
  if (f.integer_or("decoder_sparse_step", 1, 1, kMaxLayers) != 1)
    throw InputError(f.where(), "decoder_sparse_step", "only 1 (every layer sparse) is supported");
  if (f.has("mlp_only_layers") && !f.json().at("mlp_only_layers").empty())
    throw InputError(f.where(), "mlp_only_layers", "only [] (every layer sparse) is supported");
}

// sextant's own Megatron-style GPT: LayerNorm, GeLU MLP, biases, learned positions.
void read_gpt(const JsonFields& f, ModelSpec& m) {
  read_standard_sizes(f, m, /*default_ffn=*/4);
  m.tied_embeddings = f.boolean_or("tie_word_embeddings", true);
  m.dropout = f.number_or("dropout", 0.1, 0.0, 1.0);
  m.qkv_bias = m.attn_out_bias = m.mlp_bias = f.boolean_or("bias", true);
  m.rope_theta = f.number_or("rope_theta", 10000.0, 1.0, 1e12);
  m.norm_eps = f.number_or("norm_eps", 1e-5, 1e-12, 1.0);
  const std::string norm = f.string_or("norm", "layernorm");
  const std::string mlp = f.string_or("mlp", "gelu");
  const std::string pos = f.string_or("position_embedding", "learned");
  if (norm != "layernorm" && norm != "rmsnorm")
    throw InputError(f.where(), "norm", "expected layernorm or rmsnorm");
  if (mlp != "gelu" && mlp != "swiglu") throw InputError(f.where(), "mlp", "expected gelu or swiglu");
  if (pos != "learned" && pos != "rope")
    throw InputError(f.where(), "position_embedding", "expected learned or rope");
  m.norm = norm == "layernorm" ? NormKind::layernorm : NormKind::rmsnorm;
  m.mlp = mlp == "gelu" ? MlpKind::gelu : MlpKind::swiglu;
  m.position = pos == "learned" ? PositionKind::learned : PositionKind::rope;
}

ModelSpec read_by_type(const JsonFields& f, const std::string& type) {
  ModelSpec m;
  m.model_type = type;
  if (type == "llama" || type == "mistral" || type == "qwen2" || type == "mixtral" || type == "qwen2_moe") {
    read_llama_like(f, m);
    if (type == "llama") {
      m.qkv_bias = m.attn_out_bias = f.boolean_or("attention_bias", false);
      m.mlp_bias = f.boolean_or("mlp_bias", false);
    }
    if (type == "qwen2" || type == "qwen2_moe") m.qkv_bias = true;  // bias on q, k, v only
    if (type == "mixtral") read_mixtral_experts(f, m);
    if (type == "qwen2_moe") read_qwen2_moe_experts(f, m);
  } else if (type == "gpt2") {
    read_gpt2(f, m);
  } else if (type == "gpt_neox") {
    read_gpt_neox(f, m);
  } else if (type == "gpt") {
    read_gpt(f, m);
  } else {
    throw InputError(f.where(), "model_type",
                     "unknown model_type \"" + type +
                         "\"; allowed: llama, mistral, mixtral, qwen2, qwen2_moe, gpt2, gpt_neox, gpt");
  }
  return m;
}

}  // namespace

int64_t ModelSpec::attention_params() const {
  int64_t weights = hidden_size * (q_size() + 2 * kv_size()) + q_size() * hidden_size;
  int64_t biases = (qkv_bias ? q_size() + 2 * kv_size() : 0) + (attn_out_bias ? hidden_size : 0);
  return weights + biases;
}

int64_t ModelSpec::expert_params() const {
  const int64_t h = hidden_size, f = ffn_hidden_size;
  return mlp == MlpKind::swiglu ? 3 * h * f + (mlp_bias ? 2 * f + h : 0) : 2 * h * f + (mlp_bias ? f + h : 0);
}

int64_t ModelSpec::shared_expert_params() const {
  return shared_expert_ffn_size > 0 ? 3 * hidden_size * shared_expert_ffn_size + hidden_size : 0;
}

int64_t ModelSpec::mlp_params() const {
  return expert_params() * num_experts + shared_expert_params() + router_params();
}

int64_t ModelSpec::block_active_params() const {
  return attention_params() + 2 * norm_params() + expert_params() * experts_per_token + shared_expert_params() +
         router_params();
}

int64_t ModelSpec::embedding_params() const {
  return vocab_size * hidden_size +
         (position == PositionKind::learned ? max_position_embeddings * hidden_size : 0);
}

int64_t ModelSpec::head_params() const {
  return norm_params() + (tied_embeddings ? 0 : vocab_size * hidden_size);
}

int64_t ModelSpec::total_params() const {
  return embedding_params() + num_layers * block_params() + head_params();
}

ModelSpec model_spec_from_json(const nlohmann::json& config, const std::string& where,
                               int64_t seq_override) {
  JsonFields f(config, where);
  ModelSpec m = read_by_type(f, f.string("model_type"));
  m.name = f.string_or("name", f.string_or("_name_or_path", ""));
  if (m.head_dim == 0) {
    if (m.hidden_size % m.num_heads != 0)
      throw InputError(where, "num_attention_heads",
                       "must divide the hidden size " + std::to_string(m.hidden_size) + " (got " +
                           std::to_string(m.num_heads) + ")");
    m.head_dim = m.hidden_size / m.num_heads;
  }
  if (m.num_heads % m.num_kv_heads != 0)
    throw InputError(where, "num_key_value_heads",
                     "must divide num_attention_heads " + std::to_string(m.num_heads));
  m.seq_len = seq_override > 0 ? seq_override : m.max_position_embeddings;
  if (seq_override > kMaxSeq) throw InputError("--seq", "", "must be at most " + std::to_string(kMaxSeq));
  if (m.position == PositionKind::learned && m.seq_len > m.max_position_embeddings)
    throw InputError(where, "max_position_embeddings",
                     "learned positions cover " + std::to_string(m.max_position_embeddings) +
                         " tokens, shorter than the sequence " + std::to_string(m.seq_len));
  // The bounds above keep this exact in int64; a long double check guards the sum.
  long double total = static_cast<long double>(m.embedding_params()) +
                      static_cast<long double>(m.num_layers) * m.block_params() + m.head_params();
  if (total > 1e16L) throw InputError(where, "", "model has more than 10^16 parameters; refused");
  return m;
}

ModelSpec load_model_spec(const std::string& path, int64_t seq_override) {
  ModelSpec m = model_spec_from_json(JsonFields::load_object_file(path), path, seq_override);
  if (m.name.empty()) m.name = std::filesystem::path(path).stem().string();
  return m;
}

nlohmann::json model_spec_to_json(const ModelSpec& m) {
  return {{"name", m.name},
          {"model_type", m.model_type},
          {"hidden_size", m.hidden_size},
          {"num_layers", m.num_layers},
          {"num_heads", m.num_heads},
          {"num_kv_heads", m.num_kv_heads},
          {"head_dim", m.head_dim},
          {"ffn_hidden_size", m.ffn_hidden_size},
          {"vocab_size", m.vocab_size},
          {"seq_len", m.seq_len},
          {"num_experts", m.num_experts},
          {"experts_per_token", m.experts_per_token},
          {"shared_expert_ffn_size", m.shared_expert_ffn_size},
          {"tied_embeddings", m.tied_embeddings},
          {"params", m.total_params()}};
}

std::string expert_parallel_problem(const ModelSpec& m, int64_t ep) {
  if (ep == 1) return "";
  if (!m.is_moe())
    return "ep = " + std::to_string(ep) + " needs a mixture-of-experts model; " + m.name + " is dense (use ep = 1)";
  if (m.num_experts % ep != 0)
    return "ep = " + std::to_string(ep) + " must divide the number of experts (" + std::to_string(m.num_experts) + ")";
  return "";
}

}  // namespace sextant
