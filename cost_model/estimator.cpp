// Stage table, memory model and time model.
#include "cost_model/estimator.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "cost_model/json_fields.h"
#include "cost_model/kernel_rates.h"
#include "cost_model/partition.h"
#include "cost_model/schedule.h"
#include "cost_model/state_bytes.h"

namespace sextant {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

}  // namespace

std::vector<ChunkSpec> chunks_of(const StageTable& table) {
  std::vector<ChunkSpec> out;
  int64_t first = 0;
  const int64_t chunks = static_cast<int64_t>(table.blocks_per_chunk.size());
  for (int64_t g = 0; g < chunks; ++g) {
    const int64_t blocks = table.blocks_per_chunk[static_cast<size_t>(g)];
    out.push_back({g, g % table.pp, g / table.pp, first, blocks, g == 0, g + 1 == chunks});
    first += blocks;
  }
  return out;
}

StageTable build_stage_table(const ModelGraph& graph, const LayerContext& ctx, int64_t pp,
                             int64_t vpp, const GroupLinks& pp_links) {
  const ModelSpec& model = *ctx.model;
  // Cost of each kind of layer, indexed by LayerKind (every block of a model has one shape).
  const LayerCost costs[] = {embedding_cost(ctx), block_cost(ctx), head_cost(ctx), LayerCost{}};
  auto cost_of = [&](const LayerNode& n) -> const LayerCost& { return costs[static_cast<int>(n.kind)]; };
  const int64_t chunks = pp * vpp;

  // Balance fwd+bwd time over the blocks in topological order; layers before the first
  // block (embedding) ride with it, layers after a block (head, loss) with that block.
  std::vector<double> weights;
  double pending = 0;
  for (const LayerNode& n : graph.layers()) {
    const double w = cost_of(n).fwd_s() + cost_of(n).bwd_s();
    if (n.kind == LayerKind::block) {
      weights.push_back(w + pending);
      pending = 0;
    } else if (weights.empty()) {
      pending += w;
    } else {
      weights.back() += w;
    }
  }
  StageTable table;
  table.pp = pp;
  table.vpp = vpp;
  table.blocks_per_chunk = linear_partition(weights, chunks);
  table.stages.assign(static_cast<size_t>(pp), StageSummary{});

  const double elem = static_cast<double>(bytes_per_element(ctx.precision));
  // Megatron-LM's scatter/gather optimisation: each tp rank sends 1/tp of the activation
  // over its own link; without sequence parallelism the receiver all-gathers it over tp.
  const double activation_bytes = static_cast<double>(model.seq_len * ctx.micro_batch * model.hidden_size) * elem;
  table.p2p_bytes = activation_bytes / static_cast<double>(ctx.tp);
  table.p2p_buffer_bytes =
      activation_bytes / (ctx.sequence_parallel ? static_cast<double>(ctx.tp) : 1.0);
  table.micro_batch_token_bytes = static_cast<double>(ctx.micro_batch * (model.seq_len + 1)) * 8.0;
  double p2p_one_s = collective_time_s(Collective::send_recv, table.p2p_bytes, pp_links);
  if (!ctx.sequence_parallel) p2p_one_s += collective_time_s(Collective::all_gather, activation_bytes, ctx.tp_links);
  table.chunk_times.assign(static_cast<size_t>(chunks), ChunkTime{});
  for (int64_t g = 0; g < chunks; ++g) {
    table.stages[static_cast<size_t>(g % pp)].p2p_s += (g < chunks - 1 ? p2p_one_s : 0.0) + (g > 0 ? p2p_one_s : 0.0);
    table.chunk_times[static_cast<size_t>(g)].fwd_p2p_s = g < chunks - 1 ? p2p_one_s : 0.0;
    table.chunk_times[static_cast<size_t>(g)].bwd_p2p_s = g > 0 ? p2p_one_s : 0.0;
  }

  // Walk the layers again, each into its chunk; chunk g runs on stage g mod pp.
  size_t chunk = 0;
  int64_t left = table.blocks_per_chunk[0];
  for (const LayerNode& n : graph.layers()) {
    if (n.kind == LayerKind::block && left-- == 0) left = table.blocks_per_chunk[++chunk] - 1;
    StageSummary& s = table.stages[chunk % static_cast<size_t>(pp)];
    const LayerCost& c = cost_of(n);
    s.params += c.params;
    s.largest_layer_params = std::max(s.largest_layer_params, c.params);
    s.compute_s += c.fwd_compute_s + c.bwd_compute_s + c.recompute_s;
    s.vector_s += c.vector_s;
    s.tp_comm_s += c.fwd_tp_comm_s + c.bwd_tp_comm_s;
    s.ep_comm_s += c.fwd_ep_comm_s + c.bwd_ep_comm_s;
    s.expert_params += c.expert_params;
    s.activation_bytes += c.activation_bytes;
    s.workspace_bytes = std::max(s.workspace_bytes, c.workspace_bytes);
    s.model_flops += 3 * c.fwd_flops;
    s.hardware_flops += 3 * c.fwd_flops + c.recompute_flops;
    ChunkTime& ct = table.chunk_times[chunk];
    ct.fwd_compute_s += c.fwd_compute_s;
    ct.bwd_compute_s += c.bwd_compute_s;
    ct.recompute_s += c.recompute_s;
    ct.fwd_tp_comm_s += c.fwd_tp_comm_s;
    ct.bwd_tp_comm_s += c.bwd_tp_comm_s;
    ct.fwd_ep_comm_s += c.fwd_ep_comm_s;
    ct.bwd_ep_comm_s += c.bwd_ep_comm_s;
    if (n.kind == LayerKind::block) {
      ++s.blocks;
      s.block_activation_bytes = c.activation_bytes;
      s.block_params += c.params;
    } else if (n.kind == LayerKind::embedding) {
      s.has_embedding = true;
    } else if (n.kind == LayerKind::head) {
      s.has_head = true;
      s.head_activation_bytes = c.activation_bytes;
      if (model.tied_embeddings && pp == 1)  // the embedding's gradient, from here to its backward
        s.backward_held_bytes = static_cast<double>(model.vocab_size * model.hidden_size) /
                                static_cast<double>(ctx.tp) * elem;
      // Tied embeddings across stages: the last stage keeps its own copy of the word
      // embedding for the output projection (Megatron-LM), synchronised by all-reduce.
      if (model.tied_embeddings && pp > 1)
        s.params += static_cast<double>(model.vocab_size * model.hidden_size) / static_cast<double>(ctx.tp);
    }
  }
  for (int64_t i = 0; i < pp; ++i) {
    const StageSummary& s = table.stages[static_cast<size_t>(i)];
    table.sum_stage_s += s.total_s();
    if (s.total_s() > table.stages[static_cast<size_t>(table.slowest_stage)].total_s()) table.slowest_stage = i;
    bool seen = false;
    for (int64_t j : table.distinct_stages) {
      const StageSummary& o = table.stages[static_cast<size_t>(j)];
      seen = seen || (o.blocks == s.blocks && o.has_embedding == s.has_embedding && o.has_head == s.has_head &&
                      o.params == s.params && o.p2p_s == s.p2p_s);
    }
    if (!seen) table.distinct_stages.push_back(i);
  }
  return table;
}

double walked_pipeline_s(const StageTable& table, int64_t m) {
  const size_t pp = static_cast<size_t>(table.pp), vpp = static_cast<size_t>(table.vpp);
  std::vector<std::vector<double>> fwd_s(pp, std::vector<double>(vpp)), bwd_s(pp, std::vector<double>(vpp));
  for (size_t g = 0; g < table.chunk_times.size(); ++g) {
    fwd_s[g % pp][g / pp] = table.chunk_times[g].fwd_s();
    bwd_s[g % pp][g / pp] = table.chunk_times[g].bwd_s();
  }
  // The p2p sends are part of each chunk's time (ChunkTime), as in the stage totals.
  return simulate(make_schedule(table.pp, table.vpp, m), fwd_s, bwd_s, 0.0).step_s;
}

Prediction predict(const ClusterSpec& cluster, const JobSpec& job, const ModelSpec& model,
                   const ParallelLayout& l, const StageTable& table, const GroupLinks& dp_links,
                   double walked_s, const GroupLinks& expert_dp_links) {
  Prediction p;
  const DeviceSpec& dev = cluster.device;
  const StateBytes per = state_bytes(job);
  const double m = static_cast<double>(l.grad_accum);

  // Pipeline: 1F1B takes (m-1)·max + Σ stage times; interleaving divides the fill and
  // drain by vpp: m·max + (Σ - max)/vpp. Both equal the simulator on uniform stages.
  const StageSummary* slowest = &table.stages[static_cast<size_t>(table.slowest_stage)];
  const double sum_s = table.sum_stage_s;
  const double max_s = slowest->total_s();
  const double closed_s = l.vpp == 1 ? (m - 1) * max_s + sum_s
                                     : m * max_s + (sum_s - max_s) / static_cast<double>(l.vpp);
  const double pipeline_s = walked_s > 0 ? walked_s : closed_s;
  TimeBreakdown& t = p.time;
  t.compute_s = m * slowest->compute_s;
  t.vector_s = m * slowest->vector_s;
  t.tp_comm_s = m * slowest->tp_comm_s;
  t.pp_p2p_s = m * slowest->p2p_s;
  t.ep_comm_s = m * slowest->ep_comm_s;
  t.bubble_s = pipeline_s - m * max_s;
  const double stage_layers = static_cast<double>(slowest->blocks + (slowest->has_embedding ? 1 : 0) +
                                                 (slowest->has_head ? 1 : 0));
  const double passes = l.vpp == 1 ? m + static_cast<double>(l.pp - 1)
                                   : m + static_cast<double>(l.pp - 1) / static_cast<double>(l.vpp);
  t.layer_passes = passes * stage_layers;

  // Data parallel, per stage (stages run their reductions at the same time). Dense
  // parameters are reduced (and, under ZeRO, sharded) over dp; the routed experts' over their
  // expert-data-parallel group of dp / ep ranks, one after the other.
  const double expert_dp = static_cast<double>(l.dp / l.ep);
  for (int64_t i : table.distinct_stages) {
    const StageSummary& s = table.stages[static_cast<size_t>(i)];
    const double n = s.params, n_expert = l.ep > 1 ? s.expert_params : 0.0, n_dense = n - n_expert;
    const Collective reduce = l.zero == 0 ? Collective::all_reduce : Collective::reduce_scatter;
    double exposed = 0;
    if (l.dp > 1) {
      const double buckets = std::max(1.0, std::ceil(n / kBucketParams));
      const double reduce_s = collective_time_s(reduce, n_dense * per.grads, dp_links) +
                              collective_time_s(reduce, n_expert * per.grads, expert_dp_links);
      // Gradient reduction overlaps the last micro-batch's backward, all but the last bucket.
      const double bwd_window_s = s.total_s() * 2.0 / 3.0;
      exposed = std::max(reduce_s - bwd_window_s, reduce_s / buckets);
      // What overlaps still costs the backward it runs beside: the reduction's kernels
      // read the local and received chunks and write the sum through the same HBM, about
      // 3 × the bytes each rank sends, which memory-bound work then waits for.
      exposed += memory_time_s(dev, 3.0 * (n_dense * per.grads) * bus_factor(reduce, l.dp));
      if (n_expert > 0)
        exposed +=
            memory_time_s(dev, 3.0 * (n_expert * per.grads) * bus_factor(reduce, l.dp / l.ep));
      const double gather_s =
          collective_time_s(Collective::all_gather, n_dense * per.weights, dp_links) +
          collective_time_s(Collective::all_gather, n_expert * per.weights, expert_dp_links);
      if (l.zero == 1 || l.zero == 2) exposed += gather_s;  // updated shards after the step
      if (l.zero == 3) {  // gathered before forward and before backward of every micro-batch
        const double fwd_window_s = s.total_s() / 3.0;
        exposed += m * (std::max(0.0, gather_s - fwd_window_s) + std::max(0.0, gather_s - bwd_window_s));
      }
    }
    t.dp_comm_s = std::max(t.dp_comm_s, exposed);

    // Optimizer step over this rank's shard: read master, m, v and the gradient, write
    // master, m, v and the working copy.
    const double shard =
        l.zero >= 1 ? n_dense / static_cast<double>(l.dp) + n_expert / expert_dp : n;
    const double step_bytes = shard * (2 * per.optimizer + per.grads + per.weights);
    double opt_s = dev.kernels && !dev.measured ? dev.kernels->memory_s(MemoryOp::adamw, step_bytes)
                                                : memory_time_s(dev, step_bytes);
    double offload_s = 0;
    if (l.offload != Offload::none && cluster.pcie_bw_bytes_per_s > 0) {
      const double host_bw =
          cluster.host_memory_bw_bytes_per_s / static_cast<double>(cluster.devices_per_node);
      opt_s = host_bw > 0 ? step_bytes / host_bw : opt_s;
      offload_s = shard * (per.grads + per.weights) / cluster.pcie_bw_bytes_per_s;
      if (l.offload == Offload::params)  // weights streamed in for forward and backward
        offload_s += m * std::max(0.0, 2 * n * per.weights / cluster.pcie_bw_bytes_per_s - s.total_s());
    }
    t.optimizer_s = std::max(t.optimizer_s, opt_s);
    t.offload_s = std::max(t.offload_s, offload_s);
  }
  t.step_s = t.uncalibrated_step_s = pipeline_s + t.dp_comm_s + t.optimizer_s + t.offload_s;

  // Throughput and FLOP rates.
  const double tokens = static_cast<double>(l.global_batch() * model.seq_len);
  p.tokens_per_s = tokens / t.step_s;
  double model_flops = 0, hardware_flops = 0;
  for (const StageSummary& s : table.stages) {
    model_flops += s.model_flops;
    hardware_flops += s.hardware_flops;
  }
  // Stage FLOPs are one micro-batch on one tp rank: scale by tp, m and dp.
  const double scale = static_cast<double>(l.tp) * m * static_cast<double>(l.dp);
  const double gpus = static_cast<double>(l.world_size());
  p.model_tflops_per_gpu = model_flops * scale / t.step_s / gpus / 1e12;
  p.hardware_tflops_per_gpu = hardware_flops * scale / t.step_s / gpus / 1e12;
  const double peak = dev.peak_flops_per_s(job.precision) / 1e12;
  p.mfu = p.model_tflops_per_gpu / peak;
  p.hfu = p.hardware_tflops_per_gpu / peak;

  p.memory = predict_memory(cluster, job, l, table);
  if (!job.megatron_memory) p.executor_memory = p.memory;
  p.capacity_bytes = dev.memory_bytes;
  p.feasible = p.memory.peak_bytes <= dev.memory_bytes;
  return p;
}

namespace {
nlohmann::json memory_to_json(const MemoryBreakdown& m) {
  return {{"stage", m.stage},
          {"params_bytes", m.params_bytes},
          {"grads_bytes", m.grads_bytes},
          {"optimizer_bytes", m.optimizer_bytes},
          {"activations_bytes", m.activations_bytes},
          {"comm_buffer_bytes", m.comm_buffer_bytes},
          {"workspace_bytes", m.workspace_bytes},
          {"reserved_bytes", m.reserved_bytes},
          {"peak_bytes", m.peak_bytes}};
}

MemoryBreakdown memory_from_json(const JsonFields& m) {
  constexpr double kMax = 1e30;
  MemoryBreakdown mb;
  mb.stage = m.integer("stage", 0, 1 << 20);
  mb.params_bytes = m.number("params_bytes", 0, kMax);
  mb.grads_bytes = m.number("grads_bytes", 0, kMax);
  mb.optimizer_bytes = m.number("optimizer_bytes", 0, kMax);
  mb.activations_bytes = m.number("activations_bytes", 0, kMax);
  mb.comm_buffer_bytes = m.number("comm_buffer_bytes", 0, kMax);
  mb.workspace_bytes = m.number("workspace_bytes", 0, kMax);
  mb.reserved_bytes = m.number("reserved_bytes", 0, kMax);
  mb.peak_bytes = m.number("peak_bytes", 0, kMax);
  return mb;
}
}  // namespace

nlohmann::json prediction_to_json(const Prediction& p) {
  const TimeBreakdown& t = p.time;
  return {{"step_time_s", t.step_s},
          {"tokens_per_s", p.tokens_per_s},
          {"model_tflops_per_gpu", p.model_tflops_per_gpu},
          {"hardware_tflops_per_gpu", p.hardware_tflops_per_gpu},
          {"mfu", p.mfu},
          {"hfu", p.hfu},
          {"time",
           {{"compute_s", t.compute_s},
            {"vector_s", t.vector_s},
            {"layer_passes", t.layer_passes},
            {"tp_comm_s", t.tp_comm_s},
            {"pp_p2p_s", t.pp_p2p_s},
            {"ep_comm_s", t.ep_comm_s},
            {"bubble_s", t.bubble_s},
            {"dp_comm_exposed_s", t.dp_comm_s},
            {"optimizer_s", t.optimizer_s},
            {"offload_s", t.offload_s},
            {"uncalibrated_step_s", t.uncalibrated_step_s}}},
          {"memory", memory_to_json(p.memory)},
          {"executor_memory", memory_to_json(p.executor_memory)}};
}

Prediction prediction_from_json(const nlohmann::json& json, const std::string& where) {
  constexpr double kMax = 1e30;
  const JsonFields f(json, where);
  Prediction p;
  p.time.step_s = f.number("step_time_s", 0, kMax);
  p.tokens_per_s = f.number("tokens_per_s", 0, kMax);
  p.model_tflops_per_gpu = f.number("model_tflops_per_gpu", 0, kMax);
  p.hardware_tflops_per_gpu = f.number("hardware_tflops_per_gpu", 0, kMax);
  p.mfu = f.number("mfu", 0, kMax);
  p.hfu = f.number("hfu", 0, kMax);
  const JsonFields t = f.object("time");
  TimeBreakdown& tb = p.time;
  tb.compute_s = t.number("compute_s", 0, kMax);
  tb.vector_s = t.number_or("vector_s", 0, 0, kMax);
  tb.layer_passes = t.number_or("layer_passes", 0, 0, kMax);
  tb.tp_comm_s = t.number("tp_comm_s", 0, kMax);
  tb.pp_p2p_s = t.number("pp_p2p_s", 0, kMax);
  tb.ep_comm_s = t.number_or("ep_comm_s", 0, 0, kMax);
  tb.bubble_s = t.number("bubble_s", 0, kMax);
  tb.dp_comm_s = t.number("dp_comm_exposed_s", 0, kMax);
  tb.optimizer_s = t.number("optimizer_s", 0, kMax);
  tb.offload_s = t.number("offload_s", 0, kMax);
  tb.uncalibrated_step_s = t.number_or("uncalibrated_step_s", tb.step_s, 0, kMax);
  p.memory = memory_from_json(f.object("memory"));
  p.executor_memory = f.has("executor_memory") ? memory_from_json(f.object("executor_memory")) : p.memory;
  return p;
}

std::string infeasible_reason(const Prediction& p) {
  if (p.feasible) return "";
  std::ostringstream why;
  why.precision(3);
  why << "pipeline stage " << p.memory.stage << " needs " << std::fixed << p.memory.peak_bytes / kGiB
      << " GiB per rank, device has " << p.capacity_bytes / kGiB << " GiB (over by "
      << static_cast<int64_t>(p.memory.peak_bytes - p.capacity_bytes) << " bytes)";
  return why.str();
}

}  // namespace sextant
