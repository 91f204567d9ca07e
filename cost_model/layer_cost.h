// What one layer costs on one rank for one micro-batch: matmul time per GEMM shape,
// memory-bound (vector) time, tensor-parallel communication, activation bytes kept
// for backward (the Korthikanti et al. accounting generalised to GQA, SwiGLU, MoE and
// flash attention), and the transient workspace its backward needs.
#pragma once

#include <cstdint>

#include "cost_model/cluster_spec.h"
#include "cost_model/collective.h"
#include "cost_model/layout.h"
#include "cost_model/model_spec.h"

namespace sextant {

// Everything a layer's cost depends on; constant across dp, pp, zero and offload.
struct LayerContext {
  const ModelSpec* model = nullptr;
  const DeviceSpec* device = nullptr;
  Precision precision = Precision::bf16;
  int64_t micro_batch = 1;
  int64_t tp = 1;
  bool sequence_parallel = false;
  Recompute recompute = Recompute::none;
  bool flash_attention = true;
  GroupLinks tp_links;
  // Memory as Megatron-LM allocates it (JobSpec::megatron_memory), not sextant's executor.
  bool megatron_memory = false;
  // Expert parallelism (MoE only): each rank of an ep group holds num_experts / ep experts
  // (each split over tp, Megatron-Core's default expert tensor parallelism) and exchanges
  // routed tokens with the group by all-to-all over ep_links.
  int64_t ep = 1;
  GroupLinks ep_links;
};

// Tokens an expert receives relative to a perfectly balanced router: 1.0, dropless routing
// with every expert receiving tokens x top-k / experts. Megatron-Core's default is dropless
// (no capacity factor); its auxiliary load-balancing loss brings the router to near balance
// within the first few hundred steps (Megatron-Core MoE README, "OOM Caused by Token
// Distribution Imbalance"), and published throughputs are taken after that. A capacity
// factor c (--moe-expert-capacity-factor with padding) would make this c.
inline constexpr double kExpertLoadImbalance = 1.0;

struct LayerCost {
  double params = 0;          // parameters held by one tp rank
  double fwd_flops = 0;       // model FLOPs of the forward pass on this rank
  double fwd_compute_s = 0;   // GEMMs + memory-bound ops
  double bwd_compute_s = 0;
  double recompute_s = 0;     // extra forward work in backward (recompute)
  double recompute_flops = 0;
  double vector_s = 0;        // of fwd + bwd + recompute compute: the memory-bound (non-GEMM) part
  double fwd_tp_comm_s = 0;   // not overlapped, as in Megatron-LM's TP
  double bwd_tp_comm_s = 0;   // includes what recompute repeats
  // MoE token dispatch and combine (all-to-all over ep), not overlapped (Megatron-Core's
  // alltoall dispatcher runs them between the router and the experts, and after them).
  double fwd_ep_comm_s = 0;     // dispatch + combine
  double bwd_ep_comm_s = 0;     // their transposes, and again under full recompute
  double expert_params = 0;     // of `params`: the routed experts' (reduced over dp / ep)
  double activation_bytes = 0;  // kept from forward to backward, per micro-batch
  double workspace_bytes = 0;   // transient, while this layer's backward runs
  double fwd_s() const { return fwd_compute_s + fwd_tp_comm_s + fwd_ep_comm_s; }
  double bwd_s() const { return bwd_compute_s + recompute_s + bwd_tp_comm_s + bwd_ep_comm_s; }
};

// Time of one GEMM (or `batch` of them) of shape m×k by k×n: the slower of compute at the
// device's achieved GEMM rate (with wave quantisation over its SMs) and memory traffic.
double gemm_time_s(const DeviceSpec& device, Precision precision, double m, double n, double k,
                   double batch = 1.0);
// Time of memory-bound work moving `bytes` through device memory.
double memory_time_s(const DeviceSpec& device, double bytes);
// Memory-bound layer ops (norms, activations, softmax, residuals): memory_time_s, or the
// measured profile's elementwise rate when the device has one.
double vector_time_s(const DeviceSpec& device, double bytes);

LayerCost block_cost(const LayerContext& ctx);
LayerCost embedding_cost(const LayerContext& ctx);
LayerCost head_cost(const LayerContext& ctx);  // final norm, output projection and loss

// Bytes a block keeps from forward to backward on one rank, per micro-batch: the executor's
// tensors, itemised in cost_model/layer_memory.cpp (under full recompute, its output only).
double block_activation_bytes(const LayerContext& ctx);

}  // namespace sextant
