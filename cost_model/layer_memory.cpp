// Per-layer memory, tensor by tensor, as the executor allocates it. Notation: T = s·b tokens
// of a micro-batch, e = bytes of the working dtype, t = tp; "hs" is a [s, b, h] activation
// on one rank (s/t rows under sequence parallelism). Autograd keeps only what a backward
// formula reads: a product with a constant (x·cos in rotary, rows·mask in the embedding)
// keeps the constant, not x; an add or a dtype cast keeps nothing.
#include "cost_model/layer_memory.h"

#include <algorithm>
#include <cmath>

#include "cost_model/estimator.h"
#include "cost_model/model_spec.h"

namespace sextant {
namespace {

constexpr double kCudaBlockBytes = 512.0;  // CUDACachingAllocator kMinBlockSize
constexpr double kFp32Bytes = 4.0, kInt64Bytes = 8.0, kBoolBytes = 1.0;

struct Shape {
  double T, s, b, h, q, kv, f, heads_per_rank, head_dim, t, e, hs_rows;
  bool gqa, swiglu, layernorm;
  // MoE: routed copies per token k (1 dense), experts, experts on this rank, shared width / t.
  double k, experts, local_experts, shared_f;
  bool moe;
};

Shape shape_of(const LayerContext& c) {
  const ModelSpec& m = *c.model;
  Shape d{};
  d.t = static_cast<double>(c.tp);
  d.s = static_cast<double>(m.seq_len);
  d.b = static_cast<double>(c.micro_batch);
  d.T = d.s * d.b;
  d.h = static_cast<double>(m.hidden_size);
  d.q = static_cast<double>(m.q_size()) / d.t;
  d.kv = static_cast<double>(m.kv_size()) / d.t;
  d.f = static_cast<double>(m.ffn_hidden_size) / d.t;
  d.heads_per_rank = static_cast<double>(m.num_heads) / d.t;
  d.head_dim = static_cast<double>(m.head_dim);
  d.e = static_cast<double>(bytes_per_element(c.precision));
  d.hs_rows = d.T / (c.sequence_parallel ? d.t : 1.0);
  d.gqa = m.num_kv_heads < m.num_heads;
  d.swiglu = m.mlp == MlpKind::swiglu;
  d.layernorm = m.norm == NormKind::layernorm;
  d.moe = m.is_moe();
  d.k = d.moe ? static_cast<double>(m.experts_per_token) * kExpertLoadImbalance : 1.0;
  d.experts = static_cast<double>(m.num_experts);
  d.local_experts = static_cast<double>(m.num_experts / std::max<int64_t>(1, c.ep));
  d.shared_f = static_cast<double>(m.shared_expert_ffn_size) / d.t;
  return d;
}

// Sum of tensors, each rounded as the device's allocator rounds it.
struct Tensors {
  const DeviceSpec& device;
  double bytes = 0;
  Tensors& add(double tensor_bytes, double count = 1) {
    bytes += count * allocation_bytes(device, tensor_bytes);
    return *this;
  }
};

// Elements of the s×s scores of one micro-batch on this rank.
double scores_of(const Shape& d) {
  return d.b * d.heads_per_rank * d.s * d.s;
}

// What the attention core (model.cpp attention_core, after rotary) keeps, its context copy
// excluded, when it runs in the graph (`with_inputs`: Q, K, V as the core reads them) or is
// rebuilt in backward from kept Q, K, V leaves (layer_function.cpp; `with_inputs` false).
// Fused (SDPA): Q, K and V, repeated to every query head under GQA (the unrepeated K and V are
// then freed: index_select keeps no input), the output [b, hq, s, d] and the fp32 log-sum-exp
// per row. Explicit: the bmm's contiguous copy of the permuted Q (nothing else keeps Q), K and
// V as above, the causal mask (bool s×s), the fp32 softmax output and, in 16 bits, its cast
// for the second bmm.
double core_kept_bytes(const LayerContext& c, const Shape& d, bool fused, bool with_inputs) {
  Tensors k{*c.device};
  const double q_bytes = d.T * d.q * d.e;
  if (!fused || with_inputs) k.add(q_bytes);  // Q (fused: a view), or the explicit core's Q copy
  if (d.gqa)
    k.add(q_bytes, 2);
  else if (with_inputs)
    k.add(d.T * d.kv * d.e, 2);
  if (fused) return k.add(q_bytes).add(d.b * d.heads_per_rank * d.s * kFp32Bytes).bytes;
  k.add(d.s * d.s * kBoolBytes).add(scores_of(d) * kFp32Bytes);
  if (d.e < kFp32Bytes) k.add(scores_of(d) * d.e);
  return k.bytes;
}

// Temporaries of the core's backward beyond what it kept. Fused: dQ, dK, dV and flash
// attention's fp32 dQ accumulator. Explicit: the incoming gradient of the context and, at the
// softmax backward, the gradients of the probabilities and of the scores (fp32, beside the
// kept probabilities).
double core_backward_bytes(const LayerContext& c, const Shape& d, bool fused) {
  Tensors k{*c.device};
  if (fused) return k.add(d.T * d.q * d.e, 3).add(d.T * d.q * kFp32Bytes).bytes;
  return k.add(d.T * d.q * d.e).add(scores_of(d) * kFp32Bytes, 2).bytes;
}

bool core_recomputed(const LayerContext& c) {
  return c.recompute == Recompute::selective || (c.flash_attention && !fused_attention(c));
}

// Rotary's cos and sin tables [s, rot] in fp32, one pair for Q and one for K, kept by the
// products x·cos and half·sin; a partial rotary also keeps its cat output for Q and K.
double rotary_kept_bytes(const LayerContext& c, const Shape& d) {
  const ModelSpec& m = *c.model;
  if (m.position != PositionKind::rope) return 0;
  const double rot = std::floor(d.head_dim * m.rotary_pct / 2) * 2;
  if (rot <= 0) return 0;
  Tensors k{*c.device};
  k.add(d.s * rot * kFp32Bytes, 4);
  return k.bytes;
}

// MoE, what executor/moe.cpp keeps for backward beyond the experts' gate, up and SwiGLU
// output on the T·k routed rows (counted with the dense MLP's, block_none_bytes):
//   route():          the fp32 softmax `probs` [T, E] (softmax keeps its output), topk's
//                     indices [T, k] int64, and the routing weights [T, k] the weighted sum
//                     reads, in the working dtype (fp32: topk's values themselves);
//                     norm_topk_prob also keeps topk's fp32 values and their sum [T, 1] (the
//                     division reads both);
//   routed_experts(): `sorted` [T·k] int64 (index_copy back to slot order), sorted / k [T·k]
//                     int64 (index_select of the tokens), under ep > 1 the regrouping order
//                     `by_expert` [T·k] int64; the experts' input [T·k, h] (the regrouped rows
//                     received by all-to-all; ep 1: the permuted tokens), read by their first
//                     matmuls; `slots` [T·k, h], the returned outputs in slot order, read by the
//                     weighted sum for the weights' gradient; the sources of the two
//                     index_copy calls, [T·k, h] each (its backward formula expands to the
//                     source's shape, so autograd keeps the source): the returned rows put back
//                     in slot order and, under ep > 1, the concatenated expert outputs put back
//                     in peer order (at ep 1 these are one tensor). The permuted tokens and the
//                     rows received before regrouping are dropped once the next stage exists;
//   shared expert:    gate, up and SwiGLU output [T, f_shared / t], the sigmoid gate [T, 1] and
//                     the shared expert's output [T, h] (their product reads both).
// Every tp rank routes all T tokens (gathered under sequence parallelism); only f is tp-split.
double moe_kept_bytes(const LayerContext& c, const Shape& d) {
  if (!d.moe) return 0;
  Tensors k{*c.device};
  k.add(d.T * d.experts * kFp32Bytes).add(d.T * d.k * kInt64Bytes).add(d.T * d.k * d.e);
  if (c.model->norm_topk_prob) k.add(d.T * d.k * kFp32Bytes).add(d.T * kFp32Bytes);
  const bool exchanged = d.local_experts < d.experts;
  k.add(d.T * d.k * kInt64Bytes, exchanged ? 3 : 2);
  k.add(d.T * d.k * d.h * d.e, exchanged ? 4 : 3);
  if (d.shared_f > 0) k.add(d.T * d.shared_f * d.e, 3).add(d.T * d.e).add(d.T * d.h * d.e);
  return k.bytes;
}

// MoE, transient at the first node of the MLP's backward (moe.cpp's weighted sum of the k
// outputs): the gradient of `slots` [T·k, h] and the product of the incoming gradient with
// `slots`, [T, k, h], summed for the routing weights' gradient, beside everything kept. Later
// nodes free as much as they allocate: the gradients through the combine, the regrouping and
// the experts' slices, [T·k, h] each, stand in for `slots` and the index_copy sources, freed
// once their nodes have run.
double moe_backward_bytes(const LayerContext& c, const Shape& d) {
  if (!d.moe) return 0;
  Tensors k{*c.device};
  k.add(d.T * d.k * d.h * d.e, 2);
  return k.bytes;
}

double block_none_bytes(const LayerContext& c, const Shape& d) {
  const ModelSpec& m = *c.model;
  Tensors k{*c.device};
  const double hs = d.hs_rows * d.h * d.e;
  k.add(hs, m.parallel_residual ? 1 : 2);  // residual sum (norm2 input), block output
  k.add(d.T * d.h * d.e, 2);  // norm1, norm2 outputs (gathered under SP): linear inputs
  k.add(d.hs_rows * kFp32Bytes, d.layernorm ? 4 : 2);  // fused norms' rstd (and mean)
  k.bytes += rotary_kept_bytes(c, d);
  if (core_recomputed(c))  // Q, K (after rotary) and V, the recomputed core's inputs
    k.add(d.T * d.q * d.e).add(d.T * d.kv * d.e, 2);
  else
    k.bytes += core_kept_bytes(c, d, fused_attention(c), /*with_inputs=*/true);
  k.add(d.T * d.q * d.e);  // context [s, b, q] (permute copy), out-projection input
  // gate, up, swiglu output | up (pre-GELU), GELU output; MoE: on the T·k routed tokens
  k.add(d.T * d.k * d.f * d.e, d.swiglu ? 3 : 2);
  return k.bytes + moe_kept_bytes(c, d);
}

}  // namespace

double allocation_bytes(const DeviceSpec& device, double bytes) {
  if (!device.is_gpu || bytes <= 0) return bytes;
  return std::ceil(bytes / kCudaBlockBytes) * kCudaBlockBytes;
}

bool fused_attention(const LayerContext& c) {
  return c.flash_attention && c.device->is_gpu;
}

double block_activation_bytes(const LayerContext& c) {
  if (c.megatron_memory) return megatron_block_activation_bytes(c);
  const Shape d = shape_of(c);
  if (c.recompute == Recompute::full)  // layer_function.cpp: the output, the next block's input
    return allocation_bytes(*c.device, d.hs_rows * d.h * d.e);
  return block_none_bytes(c, d);
}

// Backward walks the block in reverse, freeing what each node kept once it has run, while
// the parameters' leaf gradients (working dtype) pile up. Three moments can be the highest,
// counted above everything the block keeps:
//   MLP:       dgate and dup beside the incoming gradient, which stands in for the freed
//              SwiGLU output (GELU: the gradient of its input), and the down weight's gradient;
//   attention: the core's backward temporaries (and its rebuilt tensors where it is
//              recomputed), with the MLP's and out-projection's gradients taken, and the MLP
//              tensors, the norm2 output, the residual sum and the context freed;
//   end:       every leaf gradient, with all of the block's kept tensors freed.
double block_workspace_bytes(const LayerContext& c, double params) {
  if (c.megatron_memory) {  // backward rebuilds what recompute dropped, one block at a time
    LayerContext none = c;
    none.recompute = Recompute::none;
    return megatron_block_activation_bytes(none) - megatron_block_activation_bytes(c) +
           megatron_moe_dispatch_bytes(c);
  }
  const Shape d = shape_of(c);
  const DeviceSpec& dev = *c.device;
  const double mlp_weights = (d.swiglu ? 3 : 2) * d.h * d.f * d.local_experts,
               out_weights = d.q * d.h;
  // MoE: the experts' backward runs one expert at a time, on its T·k / L rows.
  const double expert_rows = d.T * d.k / d.local_experts;
  const double mlp_s =
      std::max(moe_backward_bytes(c, d),
               allocation_bytes(dev, expert_rows * d.f * d.e) * (d.swiglu ? 2 : 1) +
                   allocation_bytes(dev, d.h * d.f * d.e) * d.local_experts);
  double core_s = core_backward_bytes(c, d, fused_attention(c));
  if (core_recomputed(c))
    core_s += core_kept_bytes(c, d, fused_attention(c), /*with_inputs=*/false);
  const double freed_s = allocation_bytes(dev, d.T * d.k * d.f * d.e) * (d.swiglu ? 3 : 2) +
                         allocation_bytes(dev, d.T * d.h * d.e) +
                         allocation_bytes(dev, d.hs_rows * d.h * d.e) +
                         allocation_bytes(dev, d.T * d.q * d.e) + moe_kept_bytes(c, d);
  const double attention_s =
      core_s + allocation_bytes(dev, (mlp_weights + out_weights) * d.e) - freed_s;
  const double end_s = allocation_bytes(dev, params * d.e) - block_none_bytes(c, d);
  double bytes = std::max({0.0, mlp_s, attention_s, end_s});
  if (c.recompute == Recompute::full)  // the block rebuilt for its backward; its output was kept
    bytes += block_none_bytes(c, d) - block_activation_bytes(c);
  return bytes;
}

double embedding_activation_bytes(const LayerContext& c) {
  const Shape d = shape_of(c);
  if (c.megatron_memory) return c.model->dropout > 0 ? d.hs_rows * d.h : 0;  // dropout mask
  Tensors k{*c.device};
  k.add(d.hs_rows * d.h * d.e);  // output [s, b, h] (reduced over tp, + positions)
  k.add(d.T * d.e);              // rows·mask: the vocab-shard mask [b, s, 1]
  k.add(d.T * kInt64Bytes);      // embedding(): the clamped local indices
  return k.bytes;
}

double embedding_workspace_bytes(const LayerContext& c, double params) {
  if (c.megatron_memory) return 0;
  const Shape d = shape_of(c);
  return allocation_bytes(*c.device, params * d.e);  // leaf gradients (dense [V/t, h])
}

double head_activation_bytes(const LayerContext& c) {
  const Shape d = shape_of(c);
  const double vocab = static_cast<double>(c.model->vocab_size) / d.t;
  // Megatron-LM: norm input, projection input (gathered under SP), fp32 softmax of the logits.
  if (c.megatron_memory) return d.hs_rows * d.h * d.e + d.T * d.h * d.e + d.T * vocab * kFp32Bytes;
  Tensors k{*c.device};
  k.add(d.hs_rows * kFp32Bytes, d.layernorm ? 2 : 1);  // final norm's rstd (and mean)
  k.add(d.T * d.h * d.e);                              // final norm output (gathered under SP)
  k.add(d.T * vocab * d.e);                            // logits, working dtype (tp_ops.cpp)
  k.add(d.T * kInt64Bytes);                            // flattened targets
  k.add(d.T * kFp32Bytes, 2);                          // cross-entropy global max, sum of exp
  return k.bytes;
}

double head_workspace_bytes(const LayerContext& c, double params) {
  const Shape d = shape_of(c);
  const double vocab = static_cast<double>(c.model->vocab_size) / d.t;
  if (c.megatron_memory) return d.T * vocab * d.e;  // logits and their gradient in flight
  // Gradient of the logits beside the logits, and the leaf gradients.
  return allocation_bytes(*c.device, d.T * vocab * d.e) + allocation_bytes(*c.device, params * d.e);
}

}  // namespace sextant
