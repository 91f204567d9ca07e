// MoE cost terms (cost_model/layer_cost.cpp, memory.cpp, memory_megatron.cpp, estimator.cpp):
// experts per rank, the all-to-all's bytes and count, expert GEMM shapes, gradient reduction
// and ZeRO sharding over the expert-data-parallel group, and no change for dense models.
#include <gtest/gtest.h>

#include "cost_model/estimator.h"
#include "cost_model/layer_cost.h"
#include "cost_model/model_graph.h"
#include "profiles/cluster_catalog.h"

namespace sextant {
namespace {

ModelSpec mixtral(int64_t seq) {
  return load_model_spec(SEXTANT_EXAMPLES "/models/mixtral-8x7b.json", seq);
}

// A group of `n` ranks at 100 GB/s bus bandwidth and 10 µs per latency step.
GroupLinks links(int64_t n) {
  GroupLinks g;
  g.size = n;
  g.bus_bw_bytes_per_s = 100e9;
  g.latency_s = 10e-6;
  return g;
}

LayerContext context(const ModelSpec& m, const ClusterSpec& c, int64_t ep,
                     Recompute rc = Recompute::none) {
  LayerContext ctx{&m, &c.device, Precision::bf16, 1,     1,  false,
                   rc, true,      GroupLinks{},    false, ep, links(ep)};
  return ctx;
}

TEST(Moe, AllToAllIsTwoEachWayOfTheRoutedCopies) {
  const ClusterSpec c = load_cluster("dgx-h100-80gb");
  const ModelSpec m = mixtral(4096);
  // k = 2 routed copies of 4096 tokens of h 4096 in bf16: 64 MiB sent per all-to-all, of
  // which (8 - 1) / 8 leaves the rank, one latency step.
  const double bytes = 2.0 * 4096 * 4096 * 2;
  const double one_s = 10e-6 + bytes * 7.0 / 8.0 / 100e9;
  const LayerCost ep8 = block_cost(context(m, c, 8));
  EXPECT_DOUBLE_EQ(ep8.fwd_ep_comm_s, 2 * one_s);
  EXPECT_DOUBLE_EQ(ep8.bwd_ep_comm_s, 2 * one_s);
  EXPECT_NEAR(ep8.fwd_s() - ep8.fwd_compute_s - ep8.fwd_tp_comm_s, 2 * one_s, 1e-9 * one_s);
  // Full recompute repeats the forward's dispatch and combine in backward.
  const LayerCost full = block_cost(context(m, c, 8, Recompute::full));
  EXPECT_DOUBLE_EQ(full.bwd_ep_comm_s, 4 * one_s);
  // ep = 1: no exchange.
  EXPECT_EQ(block_cost(context(m, c, 1)).fwd_ep_comm_s, 0.0);
}

TEST(Moe, ExpertsPerRankAndTheirGemms) {
  const ClusterSpec c = load_cluster("dgx-h100-80gb");
  const ModelSpec m = mixtral(4096);
  const LayerCost ep1 = block_cost(context(m, c, 1)), ep8 = block_cost(context(m, c, 8));
  const double expert = static_cast<double>(m.expert_params());
  EXPECT_DOUBLE_EQ(ep1.expert_params, 8 * expert);
  EXPECT_DOUBLE_EQ(ep8.expert_params, expert);
  EXPECT_DOUBLE_EQ(ep1.params - ep8.params, 7 * expert);
  // Every rank runs T·k expert tokens however the experts are split: with one expert of
  // 8192 tokens instead of eight of 1024 the grouped GEMM does the same FLOPs, so the
  // compute barely moves (wave quantisation and the rates at the two shapes only).
  EXPECT_NEAR(ep8.fwd_compute_s / ep1.fwd_compute_s, 1.0, 0.1);
  EXPECT_EQ(ep8.fwd_flops, ep1.fwd_flops);
}

TEST(Moe, DenseModelsHaveNoExpertTerms) {
  const ClusterSpec c = load_cluster("dgx-h100-80gb");
  const ModelSpec m = load_model_spec(SEXTANT_EXAMPLES "/models/llama-2-7b.json", 4096);
  LayerContext ctx = context(m, c, 1);
  const LayerCost cost = block_cost(ctx);
  EXPECT_EQ(cost.expert_params, 0.0);
  EXPECT_EQ(cost.fwd_ep_comm_s, 0.0);
  EXPECT_EQ(cost.bwd_ep_comm_s, 0.0);
  EXPECT_EQ(cost.params,
            static_cast<double>(m.attention_params() + m.mlp_params() + 2 * m.norm_params()));
}

TEST(Moe, SharedExpertCountsInFlopsAndParams) {
  const ModelSpec m = load_model_spec(SEXTANT_EXAMPLES "/models/qwen1.5-moe-a2.7b.json", 4096);
  const ModelSpec no_shared = [&] {
    ModelSpec s = m;
    s.shared_expert_ffn_size = 0;
    return s;
  }();
  // 2 FLOPs per multiply-add of its three [h, f_shared] matrices and its [h] gate.
  EXPECT_DOUBLE_EQ(block_fwd_flops_per_token(m) - block_fwd_flops_per_token(no_shared),
                   2.0 * (3.0 * 2048 * 5632 + 2048));
}

// ZeRO shards the experts' states over dp / ep and the dense ones over dp (Megatron-LM's
// accounting), and the optimizer steps over that shard.
TEST(Moe, ExpertStatesShardOverTheExpertDataParallelGroup) {
  const ClusterSpec c = load_cluster("dgx-h100-80gb");
  const ModelSpec m = mixtral(4096);
  JobSpec job;
  job.global_batch = 64;
  job.megatron_memory = true;
  ParallelLayout l;
  l.dp = 16;
  l.ep = 8;
  l.zero = 1;
  l.grad_accum = 4;
  const StageTable table = build_stage_table(ModelGraph(m), context(m, c, 8), 1, 1, GroupLinks{});
  const StageSummary& s = table.stages[0];
  const MemoryBreakdown mem = predict_memory(c, job, l, table);
  const double dense = s.params - s.expert_params;
  EXPECT_DOUBLE_EQ(mem.optimizer_bytes, 12.0 * dense / 16 + 12.0 * s.expert_params / 2);
  EXPECT_DOUBLE_EQ(mem.params_bytes, 2.0 * s.params);
  // The expert gradients are reduced over their own group: with a slower expert-dp link the
  // exposed dp time can only grow.
  const Prediction fast = predict(c, job, m, l, table, links(16), 0.0, links(2));
  GroupLinks slow = links(2);
  slow.bus_bw_bytes_per_s = 1e9;
  const Prediction slowed = predict(c, job, m, l, table, links(16), 0.0, slow);
  EXPECT_GT(slowed.time.dp_comm_s, fast.time.dp_comm_s);
  EXPECT_GT(fast.time.ep_comm_s, 0.0);
}

}  // namespace
}  // namespace sextant
