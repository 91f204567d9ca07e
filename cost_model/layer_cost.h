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
};

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
  double activation_bytes = 0;  // kept from forward to backward, per micro-batch
  double workspace_bytes = 0;   // transient, while this layer's backward runs
  double fwd_s() const { return fwd_compute_s + fwd_tp_comm_s; }
  double bwd_s() const { return bwd_compute_s + recompute_s + bwd_tp_comm_s; }
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
