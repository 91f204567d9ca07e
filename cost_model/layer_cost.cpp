// Per-layer costs. Conventions (DESIGN.md "The numbers"): backward matmuls cost twice
// the forward; memory-bound ops move twice their forward bytes in backward; recompute
// repeats the forward (full) or the attention core (selective).
#include "cost_model/layer_cost.h"

#include <algorithm>
#include <cmath>

#include "cost_model/layer_memory.h"
#include "cost_model/measured_profile.h"
#include "cost_model/model_graph.h"

namespace sextant {
namespace {

constexpr double kTile = 128.0;  // output tile edge of a tensor-core GEMM kernel

struct Dims {
  double T, h, q, kv, f, s, b, heads, d, t, e, hs, k_moe, experts;
};

Dims dims_of(const LayerContext& c) {
  const ModelSpec& m = *c.model;
  Dims d{};
  d.t = static_cast<double>(c.tp);
  d.s = static_cast<double>(m.seq_len);
  d.b = static_cast<double>(c.micro_batch);
  d.T = d.s * d.b;
  d.h = static_cast<double>(m.hidden_size);
  d.q = static_cast<double>(m.q_size());
  // Megatron-LM replicates key/value heads when tp exceeds their number.
  d.kv = static_cast<double>(std::max<int64_t>(m.num_kv_heads, c.tp) * m.head_dim);
  d.f = static_cast<double>(m.ffn_hidden_size);
  d.heads = static_cast<double>(m.num_heads);
  d.d = static_cast<double>(m.head_dim);
  d.e = static_cast<double>(bytes_per_element(c.precision));
  d.hs = d.T * d.h / (c.sequence_parallel ? d.t : 1.0);  // elements of a replicated [s,b,h]
  d.k_moe = static_cast<double>(m.experts_per_token);
  d.experts = static_cast<double>(m.num_experts);
  return d;
}

// Forward time of the attention core (scores, softmax, dropout, context) on one rank;
// `vector_s` receives its memory-bound part (softmax and dropout over the scores).
double attention_core_fwd_s(const LayerContext& c, const Dims& d, double* vector_s) {
  const double heads_per_rank = d.heads / d.t;
  double t = gemm_time_s(*c.device, c.precision, d.s, d.s, d.d, d.b * heads_per_rank) +
             gemm_time_s(*c.device, c.precision, d.s, d.d, d.s, d.b * heads_per_rank);
  *vector_s = 0;
  if (!c.flash_attention) {
    const double scores = d.b * heads_per_rank * d.s * d.s;
    const double dropout_bytes = c.model->dropout > 0 ? 2 * d.e + 1 : 0;
    *vector_s = vector_time_s(*c.device, scores * (2 * d.e + dropout_bytes));
  }
  return t + *vector_s;
}

double tp_collective_s(const LayerContext& c, const Dims& d, int count) {
  if (c.tp <= 1) return 0.0;
  const double bytes = d.T * d.h * d.e;
  if (c.sequence_parallel)  // each all-reduce becomes a reduce-scatter and an all-gather
    return count * (collective_time_s(Collective::reduce_scatter, bytes, c.tp_links) +
                    collective_time_s(Collective::all_gather, bytes, c.tp_links));
  return count * collective_time_s(Collective::all_reduce, bytes, c.tp_links);
}

}  // namespace

double gemm_time_s(const DeviceSpec& dev, Precision p, double m, double n, double k, double batch) {
  if (m <= 0 || n <= 0 || k <= 0 || batch <= 0) return 0.0;
  const double flops = 2.0 * m * n * k * batch;
  if (dev.measured) return flops / dev.measured->gemm_flops_per_s(p, m, n, k);
  double rate = dev.peak_flops_per_s(p) * dev.gemm_efficiency * dev.sustained_clock_ratio;
  if (dev.sm_count > 0) {  // a partial last wave of output tiles leaves SMs idle
    const double tiles = std::ceil(m / kTile) * std::ceil(n / kTile) * batch;
    const double sms = static_cast<double>(dev.sm_count);
    rate *= tiles / (std::ceil(tiles / sms) * sms);
  }
  const double bytes = static_cast<double>(bytes_per_element(p)) * batch * (m * k + k * n + m * n);
  return std::max(flops / rate, memory_time_s(dev, bytes));
}

double memory_time_s(const DeviceSpec& dev, double bytes) {
  if (dev.measured) return bytes / dev.measured->memory_bw_bytes_per_s();
  return bytes / (dev.memory_bw_bytes_per_s * dev.memory_bw_efficiency);
}

double vector_time_s(const DeviceSpec& dev, double bytes) {
  if (dev.measured) return bytes / dev.measured->elementwise_bw_bytes_per_s();
  return memory_time_s(dev, bytes);
}

LayerCost block_cost(const LayerContext& c) {
  const ModelSpec& m = *c.model;
  const DeviceSpec& dev = *c.device;
  const Dims d = dims_of(c);
  LayerCost out;
  const double router = m.is_moe() ? d.h * d.experts : 0;
  out.params = (static_cast<double>(m.attention_params() + m.mlp_params()) - router) / d.t + router +
               2.0 * static_cast<double>(m.norm_params());
  out.fwd_flops = d.T * block_fwd_flops_per_token(m) / d.t;

  // Matmuls, forward.
  const double tokens_per_expert = d.T * d.k_moe / d.experts;
  const double up_width = (m.mlp == MlpKind::swiglu ? 2 : 1) * d.f / d.t;
  double dense_s = gemm_time_s(dev, c.precision, d.T, (d.q + 2 * d.kv) / d.t, d.h) +
                   gemm_time_s(dev, c.precision, d.T, d.h, d.q / d.t) +
                   gemm_time_s(dev, c.precision, tokens_per_expert, up_width, d.h, d.experts) +
                   gemm_time_s(dev, c.precision, tokens_per_expert, d.h, d.f / d.t, d.experts);
  if (m.is_moe()) dense_s += gemm_time_s(dev, c.precision, d.T, d.experts, d.h);
  double core_vector_s = 0;
  const double core_s = attention_core_fwd_s(c, d, &core_vector_s);

  // Memory-bound ops, forward: 2 norms, 2 residual adds (+bias, dropout), rotary, activation.
  const double mask = m.dropout > 0 ? 1.0 : 0.0;
  double vector_bytes = 2 * (2 * d.hs * d.e) + 2 * (3 * d.hs * d.e + mask * d.hs);
  if (m.position == PositionKind::rope)
    vector_bytes += 2 * d.T * (d.q + d.kv) / d.t * m.rotary_pct * d.e;
  vector_bytes += d.T * d.f * d.k_moe / d.t * d.e * (m.mlp == MlpKind::swiglu ? 3 : 2);
  const double vector_s = vector_time_s(dev, vector_bytes);

  out.fwd_compute_s = dense_s + core_s + vector_s;
  out.bwd_compute_s = 2 * out.fwd_compute_s;
  out.fwd_tp_comm_s = tp_collective_s(c, d, 2);
  out.bwd_tp_comm_s = tp_collective_s(c, d, 2);
  // Under sequence parallelism the sharded inputs of the two column-parallel linears are
  // gathered again in backward for their weight gradients (Korthikanti et al. §4.2.2).
  if (c.sequence_parallel && c.tp > 1)
    out.bwd_tp_comm_s += 2 * collective_time_s(Collective::all_gather, d.T * d.h * d.e, c.tp_links);
  const double fwd_vector_s = vector_s + core_vector_s;
  out.vector_s = 3 * fwd_vector_s;  // backward moves twice the forward's bytes
  if (c.recompute == Recompute::full) {
    out.recompute_s = out.fwd_compute_s;
    out.recompute_flops = out.fwd_flops;
    out.bwd_tp_comm_s += out.fwd_tp_comm_s;
    out.vector_s += fwd_vector_s;
  } else if (c.recompute == Recompute::selective && !c.flash_attention) {
    out.recompute_s = core_s;
    out.recompute_flops = 4.0 * d.b * d.s * d.s * d.q / d.t;
    out.vector_s += core_vector_s;
  }
  out.activation_bytes = block_activation_bytes(c);  // cost_model/layer_memory.cpp
  out.workspace_bytes = block_workspace_bytes(c, out.params);
  return out;
}

LayerCost embedding_cost(const LayerContext& c) {
  const ModelSpec& m = *c.model;
  const Dims d = dims_of(c);
  LayerCost out;
  const double positions =
      m.position == PositionKind::learned ? static_cast<double>(m.max_position_embeddings) * d.h : 0;
  out.params = static_cast<double>(m.vocab_size) * d.h / d.t + positions;
  // Gather rows and write [s,b,h]; backward scatter-adds into the embedding gradient.
  out.fwd_compute_s = memory_time_s(*c.device, 2 * d.T * d.h * d.e);
  out.bwd_compute_s = 2 * out.fwd_compute_s;
  out.vector_s = out.fwd_compute_s + out.bwd_compute_s;
  if (c.tp > 1) {  // vocab-parallel lookup: partial rows summed over tp
    const double bytes = d.T * d.h * d.e;
    out.fwd_tp_comm_s = collective_time_s(
        c.sequence_parallel ? Collective::reduce_scatter : Collective::all_reduce, bytes, c.tp_links);
  }
  out.activation_bytes = embedding_activation_bytes(c);  // cost_model/layer_memory.cpp
  out.workspace_bytes = embedding_workspace_bytes(c, out.params);
  return out;
}

LayerCost head_cost(const LayerContext& c) {
  const ModelSpec& m = *c.model;
  const DeviceSpec& dev = *c.device;
  const Dims d = dims_of(c);
  const double v = static_cast<double>(m.vocab_size) / d.t;
  LayerCost out;
  out.params = static_cast<double>(m.norm_params()) + (m.tied_embeddings ? 0 : v * d.h);
  out.fwd_flops = d.T * head_fwd_flops_per_token(m) / d.t;
  // Final norm, output projection, then a vocab-parallel softmax cross-entropy in fp32.
  const double vector_bytes = 2 * d.hs * d.e + d.T * v * (d.e + 4 + 4);
  out.fwd_compute_s = gemm_time_s(dev, c.precision, d.T, v, d.h) + vector_time_s(dev, vector_bytes);
  out.bwd_compute_s = 2 * out.fwd_compute_s;
  out.vector_s = 3 * vector_time_s(dev, vector_bytes);
  if (c.tp > 1) {
    GroupLinks links = c.tp_links;
    double loss_s = 3 * collective_time_s(Collective::all_reduce, d.T * 4, links);  // max, sum, target
    double gather_s = c.sequence_parallel
                          ? collective_time_s(Collective::all_gather, d.T * d.h * d.e, links)
                          : 0.0;
    out.fwd_tp_comm_s = loss_s + gather_s;
    out.bwd_tp_comm_s = c.sequence_parallel
                            ? collective_time_s(Collective::reduce_scatter, d.T * d.h * d.e, links)
                            : collective_time_s(Collective::all_reduce, d.T * d.h * d.e, links);
  }
  out.activation_bytes = head_activation_bytes(c);  // cost_model/layer_memory.cpp
  out.workspace_bytes = head_workspace_bytes(c, out.params);
  return out;
}

}  // namespace sextant
