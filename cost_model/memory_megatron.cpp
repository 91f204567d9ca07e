// Megatron-LM's memory accounting (JobSpec::megatron_memory), the one the published figures
// of Korthikanti et al. (tests/planner/validation_test.cpp) and DESIGN.md's conventions use:
// mixed-precision Adam keeps 2 + 2 + 12 bytes per parameter (4 + 4 + 8 in fp32; 4-byte
// gradients under --fp32-grads), ZeRO-1 shards the 12, ZeRO-2 also the gradients, ZeRO-3
// also the weights; Korthikanti et al.'s activations (with dropout); a 40M-parameter
// gradient bucket, ZeRO-3's current and prefetched layer, pipeline send and receive tensors.
// sextant's own executor allocates otherwise: cost_model/memory.cpp.
#include <algorithm>

#include "cost_model/estimator.h"
#include "cost_model/schedule.h"
#include "cost_model/state_bytes.h"

namespace sextant {

double megatron_block_activation_bytes(const LayerContext& c) {
  const ModelSpec& m = *c.model;
  const double t = static_cast<double>(c.tp), s = static_cast<double>(m.seq_len);
  const double b = static_cast<double>(c.micro_batch), T = s * b,
               e = static_cast<double>(bytes_per_element(c.precision));
  const double h = static_cast<double>(m.hidden_size), q = static_cast<double>(m.q_size());
  // Megatron-LM replicates key/value heads when tp exceeds their number.
  const double kv = static_cast<double>(std::max<int64_t>(m.num_kv_heads, c.tp) * m.head_dim);
  const double f = static_cast<double>(m.ffn_hidden_size),
               k_moe = static_cast<double>(m.experts_per_token);
  const double hs = T * h / (c.sequence_parallel ? t : 1.0);
  if (c.recompute == Recompute::full) return hs * e;  // the block input only
  const double mask = m.dropout > 0 ? 1.0 : 0.0;
  // Replicated over tp unless sequence parallel: norm inputs, QKV and MLP inputs, masks.
  double bytes = hs * (4 * e + 2 * mask);
  // Sharded over tp: Q, K, V, the out-projection input, and the MLP intermediates.
  const double mlp_tensors = m.mlp == MlpKind::swiglu ? 3.0 : 2.0;
  bytes += T * e * (q + 2 * kv + q) / t;
  bytes += T * e * mlp_tensors * f * k_moe / t;
  if (m.is_moe()) {
    // The experts' first linear reads k routed copies of each token (the MLP input above is
    // one of them), the combine keeps the k expert outputs for the routing weights'
    // gradient, the router its fp32 probabilities; a shared expert its SwiGLU tensors.
    const double tokens = hs / h;
    bytes +=
        (k_moe - 1.0) * hs * e + k_moe * hs * e + tokens * static_cast<double>(m.num_experts) * 4.0;
    bytes += T * e * 3.0 * static_cast<double>(m.shared_expert_ffn_size) / t;
  }
  const double heads_per_rank = static_cast<double>(m.num_heads) / t;
  if (c.flash_attention) {
    bytes += b * heads_per_rank * s * 4.0;  // fp32 log-sum-exp per row
  } else if (c.recompute != Recompute::selective) {
    const double scores = b * heads_per_rank * s * s;
    bytes += scores * (e + (mask > 0 ? e + 1 : 0));  // softmax out, dropout mask and out
  }
  return bytes;
}

double megatron_moe_dispatch_bytes(const LayerContext& c) {
  const ModelSpec& m = *c.model;
  if (!m.is_moe() || c.ep <= 1) return 0.0;
  const double rows = static_cast<double>(m.seq_len * c.micro_batch) /
                      (c.sequence_parallel ? static_cast<double>(c.tp) : 1.0);
  return 2.0 * rows *
         static_cast<double>(m.experts_per_token * m.hidden_size * bytes_per_element(c.precision));
}

MemoryBreakdown predict_memory_megatron(const ClusterSpec& cluster, const JobSpec& job,
                                        const ParallelLayout& l, const StageTable& table) {
  const StateBytes per = state_bytes(job);
  const double dp = static_cast<double>(l.dp);
  MemoryBreakdown worst;
  for (int64_t i : table.distinct_stages) {
    const StageSummary& s = table.stages[static_cast<size_t>(i)];
    MemoryBreakdown m;
    m.stage = i;
    const double n = s.params;
    // Under ZeRO the dense states shard over dp, the routed experts' over dp / ep.
    const double n_expert = l.ep > 1 ? s.expert_params : 0.0, n_dense = n - n_expert;
    const double expert_dp = static_cast<double>(l.dp / l.ep);
    auto states = [&](double bytes_per_param, bool sharded) {
      return sharded ? n_dense * bytes_per_param / dp + n_expert * bytes_per_param / expert_dp
                     : n * bytes_per_param;
    };
    const bool params_on_host = l.offload == Offload::params;
    m.params_bytes = params_on_host ? 0 : states(per.weights, l.zero >= 3);
    m.grads_bytes = states(per.grads, l.zero >= 2);
    m.optimizer_bytes = l.offload != Offload::none ? 0 : states(per.optimizer, l.zero >= 1);
    const int64_t in_flight = max_in_flight_chunks(l.pp, l.vpp, l.grad_accum, i);
    // Chunk activations times the chunk-micro-batches in flight; the logits of the output
    // layer live from one micro-batch's forward to its backward, once.
    m.activations_bytes = (s.activation_bytes - s.head_activation_bytes) /
                              static_cast<double>(l.vpp) * static_cast<double>(in_flight) +
                          s.head_activation_bytes;
    if (l.dp > 1 && l.zero >= 1) m.comm_buffer_bytes += std::min(n, kBucketParams) * per.grads;
    if (l.zero >= 3 || params_on_host)
      m.comm_buffer_bytes += 2 * s.largest_layer_params * per.weights;
    if (l.pp > 1) m.comm_buffer_bytes += 2 * table.p2p_bytes;
    m.workspace_bytes = s.workspace_bytes;
    m.reserved_bytes = cluster.device.reserved_bytes;
    m.peak_bytes = m.sum_of_parts();
    if (i == 0 || m.peak_bytes > worst.peak_bytes) worst = m;  // distinct_stages starts at 0
  }
  return worst;
}

}  // namespace sextant
