// The cost model's prediction for one layout: per-stage costs from the layer costs and
// the stage partition, then memory (per rank, itemised) and step time (with breakdown).
// Split in two so the planner can reuse a StageTable across dp, zero and offload.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cost_model/cluster_spec.h"
#include "cost_model/collective.h"
#include "cost_model/layer_cost.h"
#include "cost_model/layout.h"
#include "cost_model/model_graph.h"
#include "cost_model/model_spec.h"

namespace sextant {

// Bumped with every change that moves a prediction; tests/planner/cost_model_version_test.cpp
// holds predictions against the version that made them.
inline constexpr const char* kCostModelVersion = "sextant-cost-model 5";

struct JobSpec {
  int64_t global_batch = 1;
  Precision precision = Precision::bf16;
  bool flash_attention = true;
  // Megatron-LM keeps fp32 main gradients (4 bytes/param) under 16-bit training;
  // the default is DESIGN.md's 2-byte gradients.
  bool fp32_grads = false;
  // Memory model that feasibility is judged by: false is what sextant's executor allocates,
  // itemised (cost_model/memory.cpp); true is Megatron-LM's accounting
  // (cost_model/memory_megatron.cpp: the ZeRO paper's 2 + 2 + 12 bytes per parameter,
  // Korthikanti et al.'s activations), which the published figures are and which
  // `sextant plan` uses by default. Either way a final candidate also carries the executor's
  // own peak (Prediction::executor_memory), which execute and compare hold the run against.
  bool megatron_memory = false;
};

struct StageSummary {
  int64_t blocks = 0;
  bool has_embedding = false, has_head = false;
  double params = 0;                // held by one tp rank of this stage
  double block_params = 0;          // of which in transformer blocks
  double largest_layer_params = 0;  // per tp rank, for ZeRO-3 gather buffers
  double compute_s = 0;             // one micro-batch, all chunks: fwd + bwd + recompute
  double vector_s = 0;              // of which memory-bound (non-GEMM) work
  double tp_comm_s = 0;
  double p2p_s = 0;
  double ep_comm_s = 0;             // MoE all-to-all (dispatch, combine), fwd + bwd + recompute
  double expert_params = 0;         // of params: routed experts', reduced and sharded over dp / ep
  double activation_bytes = 0;      // one micro-batch, all chunks
  double head_activation_bytes = 0; // of which the output layer and loss (last chunk only)
  double workspace_bytes = 0;
  // Held through the whole backward beside any layer's workspace: the word embedding's leaf
  // gradient when the head shares it on this stage (filled by the head, taken by the embedding).
  double backward_held_bytes = 0;
  double block_activation_bytes = 0;  // what one block keeps per micro-batch (memory model)
  double model_flops = 0;           // one micro-batch, fwd + bwd
  double hardware_flops = 0;        // plus recompute
  double total_s() const { return compute_s + tp_comm_s + p2p_s + ep_comm_s; }
};

// One chunk's work for one micro-batch, split as the pipeline timeline draws it
// (planner/timeline.h). Summed over a stage's chunks: compute_s, tp_comm_s and p2p_s.
struct ChunkTime {
  double fwd_compute_s = 0, bwd_compute_s = 0, recompute_s = 0;
  double fwd_tp_comm_s = 0, bwd_tp_comm_s = 0;
  double fwd_p2p_s = 0;  // sending the activation to the next chunk (none from the last)
  double bwd_p2p_s = 0;  // sending the input gradient to the previous chunk (none from the first)
  double fwd_ep_comm_s = 0, bwd_ep_comm_s = 0;  // MoE all-to-all
  double fwd_s() const { return fwd_compute_s + fwd_tp_comm_s + fwd_p2p_s + fwd_ep_comm_s; }
  double bwd_s() const {
    return recompute_s + bwd_compute_s + bwd_tp_comm_s + bwd_p2p_s + bwd_ep_comm_s;
  }
};

struct StageTable {
  int64_t pp = 1, vpp = 1;
  std::vector<int64_t> blocks_per_chunk;  // global chunk order
  std::vector<StageSummary> stages;
  double p2p_bytes = 0;
  // Memory model (cost_model/memory.cpp): the executor's pipeline buffer, one [s (/t under
  // SP), b, h] activation or gradient, and the int64 tokens [b, s + 1] of one micro-batch.
  double p2p_buffer_bytes = 0;
  double micro_batch_token_bytes = 0;
  // Stages with the same blocks, embedding and head cost the same: the first of each kind
  // (which also holds the most micro-batches in flight), so per-layout work is O(kinds).
  std::vector<int64_t> distinct_stages;
  int64_t slowest_stage = 0;
  double sum_stage_s = 0;  // Σ total_s over all stages
  std::vector<ChunkTime> chunk_times;  // by global chunk
};

// One chunk of a stage partition: global chunk g (in schedule order) runs on stage g mod pp
// as its virtual stage g / pp, and holds `blocks` consecutive blocks from first_block; the
// first chunk also holds the embedding, the last the head and loss.
struct ChunkSpec {
  int64_t chunk = 0, stage = 0, virtual_stage = 0, first_block = 0, blocks = 0;
  bool embedding = false, head = false;
  bool operator==(const ChunkSpec& o) const {
    return chunk == o.chunk && stage == o.stage && virtual_stage == o.virtual_stage && first_block == o.first_block &&
           blocks == o.blocks && embedding == o.embedding && head == o.head;
  }
};
// The chunks of `table`, in global chunk order.
std::vector<ChunkSpec> chunks_of(const StageTable& table);

// Costs per stage: the layers of `graph` (the model of `ctx`), in topological order, cut
// into pp·vpp chunks that balance predicted time. Requires pp·vpp <= blocks.
// pp_links: the links between neighbouring stages.
StageTable build_stage_table(const ModelGraph& graph, const LayerContext& ctx, int64_t pp,
                             int64_t vpp, const GroupLinks& pp_links);

// The pipeline's time for one step of m micro-batches, walked on the schedule table
// (cost_model/schedule.h: simulate) with each chunk's ChunkTime; exact where the closed
// form in predict() is not (stages that differ). Costs O(pp·vpp·m): for final candidates.
double walked_pipeline_s(const StageTable& table, int64_t micro_batches);

struct MemoryBreakdown {
  int64_t stage = 0;  // the most loaded pipeline stage
  double params_bytes = 0, grads_bytes = 0, optimizer_bytes = 0, activations_bytes = 0;
  double comm_buffer_bytes = 0, workspace_bytes = 0, reserved_bytes = 0, peak_bytes = 0;
  // Peak is the sum of the parts above (both memory accountings).
  double sum_of_parts() const {
    return params_bytes + grads_bytes + optimizer_bytes + activations_bytes + comm_buffer_bytes + workspace_bytes +
           reserved_bytes;
  }
};

struct TimeBreakdown {
  double compute_s = 0, tp_comm_s = 0, pp_p2p_s = 0, bubble_s = 0;
  double vector_s = 0;   // the memory-bound (non-GEMM) part of compute_s
  double dp_comm_s = 0;  // exposed part only (dense gradients over dp, experts' over dp / ep)
  double ep_comm_s = 0;  // MoE token all-to-all over ep, on the critical path (not overlapped)
  double optimizer_s = 0, offload_s = 0, step_s = 0;
  double uncalibrated_step_s = 0;  // the parts above summed; step_s differs under a calibration
                                   // (cost_model/calibration.h, applied by the planner)
  double layer_passes = 0;  // layers run on the critical path (see calibration.h)
};

struct Prediction {
  bool feasible = true;
  double capacity_bytes = 0;  // device memory the peak is held against
  TimeBreakdown time;
  MemoryBreakdown memory;           // under the job's memory model
  MemoryBreakdown executor_memory;  // what sextant execute allocates (equal to memory under
                                    // the sextant model); filled for final candidates
  double tokens_per_s = 0;
  double model_tflops_per_gpu = 0, hardware_tflops_per_gpu = 0, mfu = 0, hfu = 0;
};

// Memory of every stage's rank under `layout`, itemised as the executor allocates it
// (cost_model/memory.cpp), or Megatron-LM's under job.megatron_memory; returns the most loaded.
MemoryBreakdown predict_memory(const ClusterSpec& cluster, const JobSpec& job,
                               const ParallelLayout& layout, const StageTable& table);
MemoryBreakdown predict_memory_megatron(const ClusterSpec& cluster, const JobSpec& job,
                                        const ParallelLayout& layout, const StageTable& table);
// Korthikanti et al. per-layer activation bytes (16-bit, with dropout), Megatron-LM's:
//   none: s·b·h·(10 + 24/t + 5·a·s/(h·t)); sequence parallel: /t on every term;
//   selective: the 5·a·s/h term dropped; full: 2·s·b·h (/t under SP).
double megatron_block_activation_bytes(const LayerContext& ctx);
// MoE under ep > 1: Megatron-Core's all-to-all dispatcher's send and receive buffers of the
// k routed copies of this rank's tokens, live while one layer dispatches (0 otherwise).
double megatron_moe_dispatch_bytes(const LayerContext& ctx);

// walked_s: the pipeline's time from walked_pipeline_s; 0 takes the closed form, which the
// search ranks every layout by (its final candidates are walked, planner/search.cpp).
// expert_dp_links: the expert-data-parallel group's (dp / ep ranks), over which the routed
// experts' gradients are reduced and their states sharded (MoE with ep > 1 only).
Prediction predict(const ClusterSpec& cluster, const JobSpec& job, const ModelSpec& model,
                   const ParallelLayout& layout, const StageTable& table,
                   const GroupLinks& dp_links, double walked_s = 0,
                   const GroupLinks& expert_dp_links = GroupLinks{});

nlohmann::json prediction_to_json(const Prediction& prediction);
// Inverse of prediction_to_json (feasible and capacity are not part of it); InputError
// naming `where` and the field on anything missing or out of range.
Prediction prediction_from_json(const nlohmann::json& json, const std::string& where);
// Why an infeasible prediction does not fit: which rank, by how many bytes. "" if it fits.
std::string infeasible_reason(const Prediction& prediction);

}  // namespace sextant
