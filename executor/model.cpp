// Layers of the decoder. Shapes: activations [s, b, h]; a column-parallel weight holds
// rows [r·n/tp, (r+1)·n/tp) of its output features, a row-parallel one the same columns
// of its input features.
#include "executor/model.h"

#include <torch/version.h>

#include <cmath>

#include "executor/fused_ops.h"
#include "executor/layer_function.h"
#include "executor/moe.h"
#include "executor/tp_ops.h"

namespace sextant {
namespace {

using Init = ParamSpec::Init;

uint64_t fnv1a(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

void add_norm(std::vector<ParamSpec>& out, const ModelSpec& m, const std::string& prefix) {
  out.push_back({prefix + ".weight", {m.hidden_size}, -1, Init::ones, false});
  if (m.norm == NormKind::layernorm) out.push_back({prefix + ".bias", {m.hidden_size}, -1, Init::zeros, false});
}

// Column-parallel: output features split over tp (weight rows, bias). Row-parallel: input
// features split (weight columns); its bias is added after the reduction, on every rank.
void add_linear(std::vector<ParamSpec>& out, const std::string& name, int64_t out_features,
                int64_t in_features, bool column, bool bias) {
  out.push_back({name + ".weight", {out_features, in_features}, column ? 0 : 1, Init::normal, true});
  if (bias) out.push_back({name + ".bias", {out_features}, column ? 0 : -1, Init::zeros, false});
}

const torch::Tensor& at(const ParamMap& p, const std::string& name) {
  auto it = p.find(name);
  TORCH_CHECK(it != p.end(), "missing parameter ", name);
  return it->second;
}

torch::Tensor maybe_at(const ParamMap& p, const std::string& name) {
  auto it = p.find(name);
  return it == p.end() ? torch::Tensor() : it->second;
}

// Fused norms (executor/fused_ops.h): statistics in fp32 inside the kernel, input and
// output in the working dtype (float64 under --fp64).
torch::Tensor norm(const ParamMap& p, const std::string& prefix, const torch::Tensor& x, const ModelSpec& m) {
  if (m.norm == NormKind::layernorm)
    return layer_norm(x, at(p, prefix + ".weight"), at(p, prefix + ".bias"), m.norm_eps);
  return rms_norm(x, at(p, prefix + ".weight"), m.norm_eps);
}

torch::Tensor linear(const ParamMap& p, const std::string& name, const torch::Tensor& x) {
  return torch::linear(x, at(p, name + ".weight"), maybe_at(p, name + ".bias"));
}

// Row-parallel linear: partial products summed over tp (reduce-scattered under SP), bias after.
torch::Tensor row_parallel(const ParamMap& p, const std::string& name, const torch::Tensor& x,
                           const ModelContext& ctx) {
  torch::Tensor y = torch::matmul(x, at(p, name + ".weight").t());
  y = ctx.sequence_parallel ? reduce_scatter_to_sp(y, *ctx.tp) : reduce_from_tp(y, *ctx.tp);
  torch::Tensor bias = maybe_at(p, name + ".bias");
  return bias.defined() ? y + bias : y;
}

// Input of column-parallel linears: the whole sequence on every tp rank.
torch::Tensor to_column_parallel(const torch::Tensor& x, const ModelContext& ctx) {
  return ctx.sequence_parallel ? gather_from_sp(x, *ctx.tp) : copy_to_tp(x, *ctx.tp);
}

// Rotary embedding (rotate-half convention of Llama and GPT-NeoX) on the first
// rotary_pct of each head; x is [s, b, heads, d].
torch::Tensor rotary(const torch::Tensor& x, const ModelSpec& m) {
  const int64_t d = x.size(3), s = x.size(0);
  const int64_t rot = static_cast<int64_t>(std::floor(static_cast<double>(d) * m.rotary_pct / 2)) * 2;
  if (rot == 0) return x;
  // Positions and angles in fp32 at least (bf16 cannot count past 256).
  auto opts = x.options().dtype(at_least_fp32(x.scalar_type()));
  torch::Tensor inv_freq = torch::pow(m.rope_theta, -torch::arange(0, rot, 2, opts) / static_cast<double>(rot));
  torch::Tensor angles = torch::outer(torch::arange(s, opts), inv_freq);
  torch::Tensor cos = torch::cat({angles, angles}, -1).cos().view({s, 1, 1, rot});
  torch::Tensor sin = torch::cat({angles, angles}, -1).sin().view({s, 1, 1, rot});
  torch::Tensor xr = x.narrow(3, 0, rot);
  torch::Tensor half = torch::cat({-xr.narrow(3, rot / 2, rot / 2), xr.narrow(3, 0, rot / 2)}, -1);
  torch::Tensor rotated = (xr * cos + half * sin).to(x.scalar_type());
  return rot == d ? rotated : torch::cat({rotated, x.narrow(3, rot, d - rot)}, -1);
}

// LibTorch 2.x has a fused attention kernel (flash or memory-efficient on a GPU); 1.13 has none.
constexpr bool kHaveFusedAttention = TORCH_VERSION_MAJOR >= 2;

// Causal softmax attention with grouped key/value heads. q [s, b, hq, d], k and v
// [s, b, hkv, d] -> [s, b, hq·d]. `fused`: LibTorch's fused kernel, else the scores are
// materialised.
torch::Tensor attention_core(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, bool fused) {
  const int64_t s = q.size(0), b = q.size(1), hq = q.size(2), d = q.size(3), group = hq / k.size(2);
  torch::Tensor qh = q.permute({1, 2, 0, 3});
  // Grouped heads share K and V: copies only where heads are grouped (views otherwise).
  torch::Tensor kh = k.permute({1, 2, 0, 3}), vh = v.permute({1, 2, 0, 3});
  if (group > 1) {
    kh = kh.repeat_interleave(group, 1);
    vh = vh.repeat_interleave(group, 1);
  }
  torch::Tensor context;
  if (fused) {
#if TORCH_VERSION_MAJOR >= 2
    context = at::scaled_dot_product_attention(qh, kh, vh, {}, 0.0, /*is_causal=*/true);
#endif
  } else {
    torch::Tensor scores = torch::matmul(qh, kh.transpose(-2, -1)) / std::sqrt(static_cast<double>(d));
    torch::Tensor mask = torch::ones({s, s}, q.options().dtype(torch::kBool)).triu(1);
    scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
    torch::Tensor probs = torch::softmax(scores, -1, at_least_fp32(scores.scalar_type()));
    context = torch::matmul(probs.to(vh.scalar_type()), vh);
  }
  return context.permute({2, 0, 1, 3}).reshape({s, b, hq * d});
}

torch::Tensor attention(const ParamMap& p, const std::string& prefix, const torch::Tensor& h,
                        const ModelContext& ctx) {
  const ModelSpec& m = *ctx.model;
  torch::Tensor x = to_column_parallel(h, ctx);
  const int64_t s = x.size(0), b = x.size(1), d = m.head_dim;
  torch::Tensor q = linear(p, prefix + "q", x).view({s, b, -1, d});
  torch::Tensor k = linear(p, prefix + "k", x).view({s, b, -1, d});
  torch::Tensor v = linear(p, prefix + "v", x).view({s, b, -1, d});
  if (m.position == PositionKind::rope) {
    q = rotary(q, m);
    k = rotary(k, m);
  }
  // Flash attention keeps no s×s scores for backward: LibTorch 2's fused kernel, or on
  // LibTorch 1.13 (which has none) the explicit core recomputed in backward, as flash
  // attention's own backward rebuilds the scores. Selective recompute does the same to
  // whichever core runs.
  const bool fused = ctx.flash_attention && kHaveFusedAttention;
  torch::Tensor context;
  if (ctx.selective_recompute || (ctx.flash_attention && !fused)) {  // keep q, k, v; rebuild the scores in backward
    LayerRun core{[fused](const std::vector<torch::Tensor>& in) { return attention_core(in[0], in[1], in[2], fused); },
                  /*recompute=*/true, nullptr};
    context = run_layer(core, {q, k, v});
  } else {
    context = attention_core(q, k, v, fused);
  }
  return row_parallel(p, prefix + "o", context, ctx);
}

torch::Tensor mlp(const ParamMap& p, const std::string& prefix, const torch::Tensor& h, const ModelContext& ctx) {
  torch::Tensor x = to_column_parallel(h, ctx);
  // SwiGLU and bias+GELU fused (executor/fused_ops.h): one pass each way instead of three.
  torch::Tensor inner = ctx.model->mlp == MlpKind::swiglu
                            ? swiglu(linear(p, prefix + "gate", x), linear(p, prefix + "up", x))
                            : bias_gelu(torch::matmul(x, at(p, prefix + "up.weight").t()), maybe_at(p, prefix + "up.bias"));
  return row_parallel(p, prefix + "down", inner, ctx);
}

}  // namespace

std::vector<ParamSpec> layer_param_specs(const ModelSpec& m, LayerKind kind, int64_t index, bool tied_copy) {
  std::vector<ParamSpec> out;
  const int64_t h = m.hidden_size, f = m.ffn_hidden_size;
  if (kind == LayerKind::embedding || (kind == LayerKind::head && tied_copy))
    out.push_back({"embed.weight", {m.vocab_size, h}, 0, Init::normal, true});
  if (kind == LayerKind::embedding && m.position == PositionKind::learned)
    out.push_back({"embed.position", {m.max_position_embeddings, h}, -1, Init::normal, true});
  if (kind == LayerKind::block) {
    const std::string b = "blocks." + std::to_string(index) + ".";
    add_norm(out, m, b + "norm1");
    add_linear(out, b + "attn.q", m.q_size(), h, true, m.qkv_bias);
    add_linear(out, b + "attn.k", m.kv_size(), h, true, m.qkv_bias);
    add_linear(out, b + "attn.v", m.kv_size(), h, true, m.qkv_bias);
    add_linear(out, b + "attn.o", h, m.q_size(), false, m.attn_out_bias);
    add_norm(out, m, b + "norm2");
    if (m.is_moe()) {
      add_moe_param_specs(out, m, index);
    } else {
      if (m.mlp == MlpKind::swiglu) add_linear(out, b + "mlp.gate", f, h, true, m.mlp_bias);
      add_linear(out, b + "mlp.up", f, h, true, m.mlp_bias);
      add_linear(out, b + "mlp.down", h, f, false, m.mlp_bias);
    }
  }
  if (kind == LayerKind::head) {
    add_norm(out, m, "head.norm");
    if (!m.tied_embeddings) out.push_back({"head.weight", {m.vocab_size, h}, 0, Init::normal, true});
  }
  return out;
}

torch::Tensor init_param(const ParamSpec& spec, uint64_t seed, int64_t tp_rank, int64_t tp) {
  torch::Tensor full;  // fp32 in every run: --fp64 widens it, so it starts from the fp32 model
  if (spec.init == Init::ones) {
    full = torch::ones(spec.shape);
  } else if (spec.init == Init::zeros) {
    full = torch::zeros(spec.shape);
  } else {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed ^ fnv1a(spec.name));
    full = at::normal(0.0, 0.02, spec.shape, gen);
  }
  if (spec.shard_dim < 0 || tp == 1) return full;
  const int64_t part = spec.shape[static_cast<size_t>(spec.shard_dim)] / tp;
  return full.narrow(spec.shard_dim, tp_rank * part, part).contiguous();
}

std::string unsupported_reason(const ModelSpec& m, const ParallelLayout& l) {
  if (m.is_moe() && m.mlp != MlpKind::swiglu) return "mixture-of-experts models need SwiGLU experts";
  if (m.is_moe() && m.parallel_residual) return "mixture-of-experts models with a parallel residual are not supported";
  if (m.shared_expert_ffn_size % l.tp != 0) return "tp must divide the shared expert's width";
  if (m.num_kv_heads % l.tp != 0) return "tp must divide num_key_value_heads (" + std::to_string(m.num_kv_heads) + ")";
  if (m.vocab_size % l.tp != 0) return "tp must divide vocab_size (" + std::to_string(m.vocab_size) + ")";
  if (m.ffn_hidden_size % l.tp != 0) return "tp must divide the MLP width";
  if (l.sequence_parallel && m.seq_len % l.tp != 0) return "sequence parallelism needs seq_len divisible by tp";
  if (m.num_layers < l.pp * l.vpp) return "pp*vpp exceeds the number of layers";
  return "";
}

torch::Tensor embedding_forward(const ParamMap& p, const torch::Tensor& tokens, const ModelContext& ctx) {
  const ModelSpec& m = *ctx.model;
  const torch::Tensor w = at(p, "embed.weight");  // by value: GCC 13 -Wdangling-reference
  const int64_t start = ctx.tp->rank() * w.size(0);
  torch::Tensor local = tokens - start;
  torch::Tensor mine = (local >= 0) & (local < w.size(0));
  torch::Tensor rows = torch::embedding(w, torch::where(mine, local, torch::zeros_like(local)));
  torch::Tensor x = (rows * mine.unsqueeze(-1).to(rows.dtype())).transpose(0, 1).contiguous();
  x = ctx.sequence_parallel ? reduce_scatter_to_sp(x, *ctx.tp) : reduce_from_tp(x, *ctx.tp);
  if (m.position == PositionKind::learned) {
    const int64_t s = x.size(0), offset = ctx.sequence_parallel ? ctx.tp->rank() * s : 0;
    x = x + at(p, "embed.position").narrow(0, offset, s).unsqueeze(1);
  }
  return x;
}

torch::Tensor block_forward(const ParamMap& p, int64_t index, const torch::Tensor& x, const ModelContext& ctx) {
  const ModelSpec& m = *ctx.model;
  const std::string b = "blocks." + std::to_string(index) + ".";
  if (m.is_moe()) {
    torch::Tensor y = x + attention(p, b + "attn.", norm(p, b + "norm1", x, m), ctx);
    return y + moe_mlp(p, index, norm(p, b + "norm2", y, m), ctx);
  }
  if (m.parallel_residual)  // GPT-NeoX: attention and MLP read the same input
    return x + attention(p, b + "attn.", norm(p, b + "norm1", x, m), ctx) +
           mlp(p, b + "mlp.", norm(p, b + "norm2", x, m), ctx);
  torch::Tensor y = x + attention(p, b + "attn.", norm(p, b + "norm1", x, m), ctx);
  return y + mlp(p, b + "mlp.", norm(p, b + "norm2", y, m), ctx);
}

torch::Tensor head_loss(const ParamMap& p, const torch::Tensor& x, const torch::Tensor& targets,
                        const ModelContext& ctx) {
  const ModelSpec& m = *ctx.model;
  torch::Tensor h = to_column_parallel(norm(p, "head.norm", x, m), ctx);
  const torch::Tensor w = m.tied_embeddings ? at(p, "embed.weight") : at(p, "head.weight");
  torch::Tensor logits = torch::matmul(h, w.t());
  torch::Tensor flat_targets = targets.transpose(0, 1).reshape({-1});
  // The logits stay in the working dtype: the loss reads them once and computes in fp32
  // (tp_ops.h), so no fp32 copy of [tokens, vocab] is made or kept.
  return vocab_parallel_cross_entropy(logits.reshape({-1, w.size(0)}), flat_targets, ctx.tp->rank() * w.size(0),
                                      *ctx.tp)
      .sum();
}

}  // namespace sextant
