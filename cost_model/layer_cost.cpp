// Per-layer costs. With a device's kernel-rate table (cost_model/kernel_rates.h) every
// GEMM, memory-bound op and the flash-attention core is timed at its measured rate for
// its shape, forward and backward apart; without one (DESIGN.md "The numbers") backward
// matmuls cost twice the forward and memory-bound ops move twice their forward bytes.
// Recompute repeats the forward (full) or the attention core (selective).
#include "cost_model/layer_cost.h"

#include <algorithm>
#include <cmath>

#include "cost_model/kernel_rates.h"
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

// Forward and backward time of one kernel (or kernel group).
struct Pass {
  double fwd_s = 0, bwd_s = 0;
  Pass& operator+=(const Pass& o) {
    fwd_s += o.fwd_s;
    bwd_s += o.bwd_s;
    return *this;
  }
};

// The table of measured kernel rates applies to 16-bit work without a measured profile
// (a profile measures GEMMs and memory-bound ops on the machine itself).
const KernelRates* rates_for(const LayerContext& c) {
  return c.device->kernels && !c.device->measured && c.precision != Precision::fp32 ? c.device->kernels.get() : nullptr;
}

// A linear layer y[T, n_out] = x[T, k_in]·Wᵀ (`batch` of them): forward, then the two
// backward GEMMs dx = dy·W [T, k_in] and dW = dyᵀ·x [n_out, k_in] at their own shapes.
Pass linear_s(const LayerContext& c, double T, double n_out, double k_in, double batch = 1.0) {
  if (const KernelRates* r = rates_for(c))
    return {r->gemm_s(GemmLayout::forward, T, n_out, k_in, batch),
            r->gemm_s(GemmLayout::backward, T, k_in, n_out, batch) +
                r->gemm_s(GemmLayout::backward, n_out, k_in, T, batch)};
  const double f = gemm_time_s(*c.device, c.precision, T, n_out, k_in, batch);
  return {f, 2 * f};  // backward: two GEMMs of the forward's FLOPs
}

// A memory-bound op of kind `op` moving fwd_bytes forward and bwd_bytes backward.
Pass vector_op_s(const LayerContext& c, MemoryOp op, double fwd_bytes, double bwd_bytes) {
  if (const KernelRates* r = rates_for(c)) return {r->memory_s(op, fwd_bytes), r->memory_bwd_s(op, fwd_bytes, bwd_bytes)};
  return {vector_time_s(*c.device, fwd_bytes), vector_time_s(*c.device, bwd_bytes)};
}

// A norm over elements of e bytes: forward reads x, writes y; backward reads x and dy,
// writes dx.
Pass norm_s(const LayerContext& c, double elements, double e) {
  return vector_op_s(c, c.model->norm == NormKind::layernorm ? MemoryOp::layer_norm : MemoryOp::rms_norm,
                     2 * elements * e, 3 * elements * e);
}

// The attention core (scores, softmax, context) on one rank. Flash attention runs as one
// fused kernel at the measured causal rates when the device has them; otherwise as two
// batched GEMMs, plus softmax and dropout over the materialised scores (`vector`).
Pass attention_core_s(const LayerContext& c, const Dims& d, Pass* vector) {
  const double heads_per_rank = d.heads / d.t;
  *vector = Pass{};
  const KernelRates* kernels = c.device->kernels.get();
  if (c.flash_attention && kernels && c.precision != Precision::fp32 && !kernels->attention_fwd.empty())
    return {kernels->attention_fwd_s(d.b * heads_per_rank, d.s, d.d),
            kernels->attention_bwd_s(d.b * heads_per_rank, d.s, d.d)};
  Pass t = linear_s(c, d.s, d.s, d.d, d.b * heads_per_rank);
  t += linear_s(c, d.s, d.d, d.s, d.b * heads_per_rank);
  if (!c.flash_attention) {
    const double scores = d.b * heads_per_rank * d.s * d.s;
    const double dropout_bytes = c.model->dropout > 0 ? 2 * d.e + 1 : 0;
    const double bytes = scores * (2 * d.e + dropout_bytes);
    *vector = vector_op_s(c, MemoryOp::copy, bytes, 2 * bytes);
    t += *vector;
  }
  return t;
}

// One tensor-parallel all-reduce (or, under sequence parallelism, reduce-scatter plus
// all-gather) of `scale` [s, b, h] activations.
double tp_collective_s(const LayerContext& c, const Dims& d, double scale) {
  if (c.tp <= 1) return 0.0;
  const double bytes = d.T * d.h * d.e * scale;
  if (c.sequence_parallel)  // each all-reduce becomes a reduce-scatter and an all-gather
    return collective_time_s(Collective::reduce_scatter, bytes, c.tp_links) +
           collective_time_s(Collective::all_gather, bytes, c.tp_links);
  return collective_time_s(Collective::all_reduce, bytes, c.tp_links);
}

// The MLP's tensor-parallel traffic relative to a dense MLP's: Megatron-Core's alltoall
// dispatcher (ep > 1) all-gathers the k routed copies of the tokens over tp after the
// all-to-all (and reduce-scatters them before the combine); with ep = 1 the allgather
// dispatcher gathers the hidden states once, as a dense MLP does.
double mlp_tp_scale(const LayerContext& c, const Dims& d) {
  return c.model->is_moe() && c.ep > 1 ? d.k_moe : 1.0;
}

// MoE only: the router's softmax and top-k over the E logits (fp32: the logits read, the
// probabilities written and read by top-k), and the permutation of the tokens into expert
// order (k copies written) and back (k expert outputs read, weighted, summed), on this
// rank's tokens (1/t of them under sequence parallelism).
Pass moe_vector_s(const LayerContext& c, const Dims& d) {
  if (!c.model->is_moe()) return Pass{};
  const double tokens = d.hs / d.h;
  const double router_bytes = 3.0 * tokens * d.experts * 4.0;
  Pass t = vector_op_s(c, MemoryOp::copy, router_bytes, 2 * router_bytes);
  const double permute_bytes = tokens * d.h * d.e * (1.0 + d.k_moe);
  t += vector_op_s(c, MemoryOp::copy, 2 * permute_bytes, 4 * permute_bytes);
  return t;
}

// MoE token dispatch or combine over the ep group: each rank sends its k routed copies of
// its tokens (1/t of the micro-batch under sequence parallelism), all but the 1/ep that
// stays on its own experts (nccl-tests all-to-all).
double ep_all_to_all_s(const LayerContext& c, const Dims& d) {
  if (!c.model->is_moe() || c.ep <= 1) return 0.0;
  return collective_time_s(Collective::all_to_all, d.hs * d.k_moe * d.e, c.ep_links);
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
  const Dims d = dims_of(c);
  LayerCost out;
  // Experts on this rank: E / ep (the search takes only ep dividing E), each split over tp.
  const int64_t local_experts = m.num_experts / std::max<int64_t>(1, c.ep);
  const double router = m.is_moe() ? d.h * d.experts : 0;
  out.params = static_cast<double>(m.attention_params() + m.expert_params() * local_experts +
                                   m.shared_expert_params()) /
                   d.t +
               router + 2.0 * static_cast<double>(m.norm_params());
  out.expert_params =
      m.is_moe() ? static_cast<double>(m.expert_params() * local_experts) / d.t : 0.0;
  out.fwd_flops = d.T * block_fwd_flops_per_token(m) / d.t;

  // Matmuls: QKV, out-projection, the MLP's up (gate) and down projections per local expert
  // as one grouped GEMM, the router, the shared expert. The ep group's T·k routed tokens
  // spread over E experts: T·k·ep/E reach each of this rank's E/ep experts (T·k in all).
  const double ep = static_cast<double>(c.ep);
  const double imbalance = m.is_moe() ? kExpertLoadImbalance : 1.0;
  const double tokens_per_expert = d.T * d.k_moe * ep / d.experts * imbalance;
  const double up_width = (m.mlp == MlpKind::swiglu ? 2 : 1) * d.f / d.t;
  Pass gemm = linear_s(c, d.T, (d.q + 2 * d.kv) / d.t, d.h);
  gemm += linear_s(c, d.T, d.h, d.q / d.t);
  gemm += linear_s(c, tokens_per_expert, up_width, d.h, static_cast<double>(local_experts));
  gemm += linear_s(c, tokens_per_expert, d.h, d.f / d.t, static_cast<double>(local_experts));
  if (m.is_moe()) gemm += linear_s(c, d.hs / d.h, d.experts, d.h);
  const double shared_f = static_cast<double>(m.shared_expert_ffn_size);
  if (shared_f > 0) {  // a SwiGLU MLP every token passes, split over tp like a dense one
    gemm += linear_s(c, d.T, 2 * shared_f / d.t, d.h);
    gemm += linear_s(c, d.T, d.h, shared_f / d.t);
  }
  Pass core_vector;
  const Pass core = attention_core_s(c, d, &core_vector);

  // Memory-bound ops: 2 norms, 2 residual adds (+bias, dropout), rotary, activation.
  // Backward moves twice the forward's bytes, except where forward+backward was measured.
  const double mask = m.dropout > 0 ? 1.0 : 0.0;
  Pass vector = norm_s(c, d.hs, d.e);
  vector += norm_s(c, d.hs, d.e);
  const double add_bytes = 3 * d.hs * d.e + mask * d.hs;
  vector += vector_op_s(c, MemoryOp::add, add_bytes, 2 * add_bytes);
  vector += vector_op_s(c, MemoryOp::add, add_bytes, 2 * add_bytes);
  if (m.position == PositionKind::rope) {
    const double rope_bytes = 2 * d.T * (d.q + d.kv) / d.t * m.rotary_pct * d.e;
    vector += vector_op_s(c, MemoryOp::copy, rope_bytes, 2 * rope_bytes);
  }
  const double act_bytes =
      d.T * d.f * d.k_moe * imbalance / d.t * d.e * (m.mlp == MlpKind::swiglu ? 3 : 2);
  vector += vector_op_s(c, m.mlp == MlpKind::swiglu ? MemoryOp::swiglu : MemoryOp::gelu, act_bytes, 2 * act_bytes);
  if (shared_f > 0) {
    const double shared_bytes = d.T * shared_f / d.t * d.e * 3;
    vector += vector_op_s(c, MemoryOp::swiglu, shared_bytes, 2 * shared_bytes);
  }
  vector += moe_vector_s(c, d);

  out.fwd_compute_s = gemm.fwd_s + core.fwd_s + vector.fwd_s;
  out.bwd_compute_s = gemm.bwd_s + core.bwd_s + vector.bwd_s;
  // The host issues each kernel: a layer takes at least its kernels' issue time (matters
  // only for layers too small to hide it).
  if (const KernelRates* r = rates_for(c)) {
    // MoE adds the router GEMM, softmax/top-k, permute and unpermute; a shared expert its 3.
    const int fwd_kernels = 10 + (m.position == PositionKind::rope ? 1 : 0) + (m.is_moe() ? 4 : 0) +
                            (shared_f > 0 ? 3 : 0);
    out.fwd_compute_s = std::max(out.fwd_compute_s, fwd_kernels * r->host_s_per_op);
    out.bwd_compute_s = std::max(out.bwd_compute_s, 2 * fwd_kernels * r->host_s_per_op);
  }
  // Attention's and the MLP's collectives.
  const double mlp_scale = mlp_tp_scale(c, d);
  out.fwd_tp_comm_s = tp_collective_s(c, d, 1.0) + tp_collective_s(c, d, mlp_scale);
  out.bwd_tp_comm_s = out.fwd_tp_comm_s;
  // Under sequence parallelism the sharded inputs of the two column-parallel linears are
  // gathered again in backward for their weight gradients (Korthikanti et al. §4.2.2).
  if (c.sequence_parallel && c.tp > 1)
    out.bwd_tp_comm_s +=
        collective_time_s(Collective::all_gather, d.T * d.h * d.e, c.tp_links) +
        collective_time_s(Collective::all_gather, d.T * d.h * d.e * mlp_scale, c.tp_links);
  // MoE: dispatch and combine forward, their transposes backward.
  out.fwd_ep_comm_s = 2 * ep_all_to_all_s(c, d);
  out.bwd_ep_comm_s = out.fwd_ep_comm_s;
  out.vector_s = vector.fwd_s + vector.bwd_s + core_vector.fwd_s + core_vector.bwd_s;
  if (c.recompute == Recompute::full) {
    out.recompute_s = out.fwd_compute_s;
    out.recompute_flops = out.fwd_flops;
    out.bwd_tp_comm_s += out.fwd_tp_comm_s;
    out.bwd_ep_comm_s += out.fwd_ep_comm_s;  // the forward's dispatch and combine again
    out.vector_s += vector.fwd_s + core_vector.fwd_s;
  } else if (c.recompute == Recompute::selective && !c.flash_attention) {
    out.recompute_s = core.fwd_s;
    out.recompute_flops = 4.0 * d.b * d.s * d.s * d.q / d.t;
    out.vector_s += core_vector.fwd_s;
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
  const Pass gather = vector_op_s(c, MemoryOp::copy, 2 * d.T * d.h * d.e, 4 * d.T * d.h * d.e);
  out.fwd_compute_s = gather.fwd_s;
  out.bwd_compute_s = gather.bwd_s;
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
  const Dims d = dims_of(c);
  const double v = static_cast<double>(m.vocab_size) / d.t;
  LayerCost out;
  out.params = static_cast<double>(m.norm_params()) + (m.tied_embeddings ? 0 : v * d.h);
  out.fwd_flops = d.T * head_fwd_flops_per_token(m) / d.t;
  // Final norm, output projection, then a vocab-parallel softmax cross-entropy with fp32
  // arithmetic: forward reads the logits, backward reads them again and writes their
  // gradient.
  Pass vector = norm_s(c, d.hs, d.e);
  const double logits_bytes = d.T * v * d.e;
  vector += vector_op_s(c, MemoryOp::cross_entropy, logits_bytes, 2 * logits_bytes);
  const Pass gemm = linear_s(c, d.T, v, d.h);
  out.fwd_compute_s = gemm.fwd_s + vector.fwd_s;
  out.bwd_compute_s = gemm.bwd_s + vector.bwd_s;
  out.vector_s = vector.fwd_s + vector.bwd_s;
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
