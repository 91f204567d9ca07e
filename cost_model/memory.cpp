// Memory model: the peak bytes of one rank, itemised as the executor allocates them.
//
// Model states (executor/optimizer.cpp, one ParamGroup per layer and tp split, n = the
// stage's parameters on this tp rank, P = dp, e = working dtype bytes; master dtype fp32):
//   params:    flat_ master weights 4n (ZeRO-3: shard_ 4n/P) and, in 16-bit training, the
//              working copy working_ e·n the autograd leaves view (ZeRO-3: none, gathered).
//   grads:     grad_ 4n (ZeRO >= 1: the owned shard 4n/P), whatever the precision: the
//              executor sums gradients in fp32; ZeRO-1 at P > 1 adds the full accumulator
//              accum_ 4n; ZeRO-2/3 on a GPU (NCCL defers) the reduced shard pending_ 4n/P.
//   optimizer: m_, v_ and the weight-decay mask decay_, 4 bytes each per owned element.
// Activations: each chunk's kept tensors (layer_memory.cpp) times the chunk-micro-batches in
//   flight (1F1B), the head's once; the received input of each in-flight chunk that does not
//   start with the embedding; the step's int64 tokens; under ZeRO-3 the gathered weights the
//   matmuls keep for backward.
// Communication: ZeRO-3's gathered working copy of the layer in use (and, in 16 bits, the
//   cast shard it is gathered from); ZeRO-2/3's flat fp32 gradient copy of one layer and its
//   reduced shard; the pipeline's gradient receive buffer and the input gradient sent back
//   that the previous stage has not received yet.
// Workspace: the largest transient of one layer's backward, plus what stays held through the
//   backward (the tied embedding's gradient).
#include <algorithm>

#include "cost_model/estimator.h"
#include "cost_model/schedule.h"

namespace sextant {
namespace {

constexpr double kMasterBytes = 4.0;  // fp32 master weights, gradients, m, v, decay mask

struct StageMemoryInput {
  const ClusterSpec& cluster;
  const JobSpec& job;
  const ParallelLayout& l;
  const StageTable& table;
};

// Parameters this rank owns a shard of under ZeRO: the dense ones over dp, the routed
// experts' over their expert-data-parallel group (dp / ep).
double sharded_params(const ParallelLayout& l, const StageSummary& s) {
  const double n_expert = l.ep > 1 ? s.expert_params : 0.0;
  return (s.params - n_expert) / static_cast<double>(l.dp) +
         n_expert / static_cast<double>(l.dp / l.ep);
}

void model_states(const StageMemoryInput& in, const StageSummary& s, MemoryBreakdown& m) {
  const ParallelLayout& l = in.l;
  const double n = s.params;
  const double e = static_cast<double>(bytes_per_element(in.job.precision));
  const bool mixed = e < kMasterBytes;
  const double owned = l.zero >= 1 ? sharded_params(l, s) : n;
  const bool params_on_host = l.offload == Offload::params;
  if (!params_on_host)
    m.params_bytes =
        (l.zero >= 3 ? sharded_params(l, s) : n) * kMasterBytes + (mixed && l.zero < 3 ? n * e : 0);
  m.grads_bytes = owned * kMasterBytes;
  if (l.zero == 1 && l.dp > 1) m.grads_bytes += n * kMasterBytes;  // accum_
  if (l.zero >= 2 && l.dp > 1 && in.cluster.device.is_gpu)
    m.grads_bytes += owned * kMasterBytes;                                        // pending_
  m.optimizer_bytes = l.offload != Offload::none ? 0 : 3 * owned * kMasterBytes;  // m_, v_, decay_
}

void activations(const StageMemoryInput& in, int64_t stage, const StageSummary& s,
                 MemoryBreakdown& m) {
  const ParallelLayout& l = in.l;
  const double vpp = static_cast<double>(l.vpp);
  const double in_flight =
      static_cast<double>(max_in_flight_chunks(l.pp, l.vpp, l.grad_accum, stage));
  const double receiving_chunks = vpp - (s.has_embedding ? 1.0 : 0.0);
  m.activations_bytes = (s.activation_bytes - s.head_activation_bytes) / vpp * in_flight +
                        s.head_activation_bytes +
                        in_flight * receiving_chunks / vpp * in.table.p2p_buffer_bytes +
                        static_cast<double>(l.grad_accum) * in.table.micro_batch_token_bytes;
  // ZeRO-3 gathers a fresh working copy of a layer for each forward; its matmuls keep their
  // weight (a transposed view of it) for backward, so each in-flight micro-batch holds the
  // chunk's gathered weights until its backward, unless full recompute ran the forward without
  // a graph. Counted as all of the stage's parameters (the norms' and, untied, the
  // embedding's are not kept: at most V·h of them).
  if (l.zero >= 3 && l.recompute != Recompute::full) {
    const double e = static_cast<double>(bytes_per_element(in.job.precision));
    m.activations_bytes += s.params * e / vpp * in_flight;
  }
}

void comm_buffers(const StageMemoryInput& in, int64_t stage, const StageSummary& s,
                  MemoryBreakdown& m) {
  const ParallelLayout& l = in.l;
  const double dp = static_cast<double>(l.dp), layer = s.largest_layer_params;
  const double e = static_cast<double>(bytes_per_element(in.job.precision));
  if (l.zero >= 3) m.comm_buffer_bytes += layer * e + (e < kMasterBytes ? layer / dp * e : 0);
  if (l.offload == Offload::params) m.comm_buffer_bytes += layer * e;
  // ZeRO-2/3 take a layer's gradients after its backward: the flat fp32 copy and the reduced
  // shard, beside the leaf gradients, once the backward has freed the layer's kept tensors
  // (and, under ZeRO-3, the gathered weights its matmuls kept). That moment adds only what
  // exceeds the layer's workspace.
  if (l.zero >= 2 && l.dp > 1) {
    const double saved_weights = l.zero >= 3 && l.recompute != Recompute::full ? layer * e : 0;
    const double end_moment =
        layer * e + layer * kMasterBytes * (1 + 1 / dp) - s.block_activation_bytes - saved_weights;
    m.comm_buffer_bytes += std::max(0.0, end_moment - s.workspace_bytes);
  }
  if (l.pp == 1) return;
  const double vpp = static_cast<double>(l.vpp), micro_batches = static_cast<double>(l.grad_accum);
  const double in_flight_per_chunk =
      static_cast<double>(max_in_flight_chunks(l.pp, l.vpp, l.grad_accum, stage)) / vpp;
  const double forward_sends = vpp - (s.has_head ? 1.0 : 0.0);  // chunks whose output goes on
  const double backward_sends =
      vpp - (s.has_embedding ? 1.0 : 0.0);  // chunks whose input grad goes back
  const double buffer = in.table.p2p_buffer_bytes;
  m.comm_buffer_bytes += (forward_sends > 0 ? buffer : 0);  // the gradient received for a backward
  // Sent tensors: MpiComm drops each once MPI reports it complete (checked at every send
  // and receive), NcclComm once the compute stream has waited for the group it was issued
  // in (at the next receive). A forward output still unsent is an in-flight activation,
  // counted above; an input gradient waits at most until the previous stage posts its
  // receive, one per chunk that sends one back.
  m.comm_buffer_bytes += buffer * backward_sends;
}

}  // namespace

MemoryBreakdown predict_memory(const ClusterSpec& cluster, const JobSpec& job,
                               const ParallelLayout& l, const StageTable& table) {
  if (job.megatron_memory) return predict_memory_megatron(cluster, job, l, table);
  const StageMemoryInput in{cluster, job, l, table};
  MemoryBreakdown worst;
  for (int64_t i : table.distinct_stages) {
    const StageSummary& s = table.stages[static_cast<size_t>(i)];
    MemoryBreakdown m;
    m.stage = i;
    model_states(in, s, m);
    activations(in, i, s, m);
    comm_buffers(in, i, s, m);
    m.workspace_bytes = s.workspace_bytes + s.backward_held_bytes;
    m.reserved_bytes = cluster.device.reserved_bytes;
    m.peak_bytes = m.sum_of_parts();
    if (i == 0 || m.peak_bytes > worst.peak_bytes) worst = m;  // distinct_stages starts at 0
  }
  return worst;
}

}  // namespace sextant
