// Time model: FLOP conventions, recompute, pipeline bubble, where links are slow.
#include <gtest/gtest.h>

#include "cost_model/estimator.h"
#include "cost_model/model_graph.h"
#include "cost_model/topology.h"
#include "profiles/cluster_catalog.h"

namespace sextant {
namespace {

ModelSpec gpt(int64_t h, int64_t a, int64_t layers, int64_t s) {
  nlohmann::json c = {{"model_type", "gpt"}, {"hidden_size", h}, {"num_attention_heads", a},
                      {"num_hidden_layers", layers}, {"vocab_size", 51200},
                      {"max_position_embeddings", s}};
  return model_spec_from_json(c, "test");
}

struct Scenario {
  ClusterSpec cluster = load_cluster("dgx-a100-80gb");
  ModelSpec model = gpt(4096, 32, 16, 2048);
  JobSpec job;
  Prediction run(const ParallelLayout& l) {
    Topology topo(cluster, l.world_size());
    auto first = [&](Axis a) { return topo.group_links(rank_group_of(l, a, 0)); };
    LayerContext ctx{&model, &cluster.device, job.precision, l.micro_batch, l.tp,
                     l.sequence_parallel, l.recompute, job.flash_attention, first(Axis::tp)};
    GroupLinks pp_links;
    if (l.pp > 1) pp_links = topo.group_links({0, rank_group_of(l, Axis::pp, 0)[1]});
    return predict(cluster, job, model, l, build_stage_table(ModelGraph(model), ctx, l.pp, l.vpp, pp_links), first(Axis::dp));
  }
};

// Megatron-LM (Narayanan et al. 2021): per step 72·B·s·L·h²·(1 + s/(6h)) + 6·B·s·h·V.
TEST(Time, ModelFlopsFollowTheMegatronFormula) {
  Scenario s;
  ParallelLayout l;
  l.dp = 8;
  l.grad_accum = 2;
  const Prediction p = s.run(l);
  const double B = 16, sq = 2048, L = 16, h = 4096, V = 51200;
  const double flops = 72 * B * sq * L * h * h * (1 + sq / (6 * h)) + 6 * B * sq * h * V;
  // A few products and quotients of doubles each way: ≤ ~10 u64 ≈ 1e-15 relative.
  EXPECT_NEAR(p.model_tflops_per_gpu * 1e12 * p.time.step_s * 8, flops, 1e-9 * flops);
  EXPECT_NEAR(p.mfu, p.model_tflops_per_gpu / 312.0, 1e-12);
  EXPECT_DOUBLE_EQ(p.hfu, p.mfu);  // no recompute
}

TEST(Time, FullRecomputeCostsAForwardAndCountsInHardwareFlops) {
  Scenario s;
  ParallelLayout l;
  l.tp = 8;
  const Prediction none = s.run(l);
  l.recompute = Recompute::full;
  const Prediction full = s.run(l);
  EXPECT_GT(full.time.step_s, 1.2 * none.time.step_s);
  EXPECT_LT(full.time.step_s, 1.45 * none.time.step_s);
  EXPECT_GT(full.hfu / full.mfu, 1.25);
  EXPECT_LT(full.hfu / full.mfu, 4.0 / 3.0);
  // Memory (cost_model/layer_memory.cpp): a block keeps about five [s, b, h] tensors' worth
  // at tp 8 without SP (four replicated), one under full recompute; the head, kept in both,
  // adds ~0.01 to the ratio.
  EXPECT_LT(full.memory.activations_bytes, 0.25 * none.memory.activations_bytes);
}

TEST(Time, BubbleShrinksWithMoreMicroBatchesAndInterleaving) {
  Scenario s;
  ParallelLayout l;
  l.pp = 4;
  l.grad_accum = 4;
  const Prediction few = s.run(l);
  l.grad_accum = 32;
  const Prediction many = s.run(l);
  EXPECT_GT(few.time.bubble_s / few.time.step_s, 3 * many.time.bubble_s / many.time.step_s);
  l.vpp = 2;
  const Prediction interleaved = s.run(l);
  EXPECT_LT(interleaved.time.bubble_s, 0.6 * many.time.bubble_s);
}

TEST(Time, TensorParallelAcrossNodesIsSlowerThanInside) {
  Scenario s;
  ParallelLayout inside;
  inside.tp = 8;
  inside.dp = 2;
  ParallelLayout across = inside;
  across.order = {Axis::dp, Axis::tp, Axis::pp};  // tp ranks 2 apart: the group spans both nodes
  const Prediction a = s.run(inside), b = s.run(across);
  EXPECT_GT(b.time.tp_comm_s, 2 * a.time.tp_comm_s);
}

TEST(Time, ZeroThreeGathersParametersEveryMicroBatch) {
  Scenario s;
  s.cluster.nic_bw_bytes_per_s /= 50;  // a slow network exposes the gathers
  ParallelLayout l;
  l.dp = 16;
  l.grad_accum = 1;
  l.zero = 2;
  const Prediction z2 = s.run(l);
  l.zero = 3;
  const Prediction z3 = s.run(l);
  l.grad_accum = 4;
  const Prediction z3_more = s.run(l);
  EXPECT_GT(z3.time.dp_comm_s, z2.time.dp_comm_s);
  EXPECT_GT(z3_more.time.dp_comm_s, 2 * z3.time.dp_comm_s);
  EXPECT_LT(z3.memory.params_bytes, z2.memory.params_bytes);
}

TEST(Time, StagesAreCutFromTheGraphBalancingEmbeddingAndHead) {
  Scenario s;
  s.model = gpt(2048, 16, 24, 2048);
  s.model.vocab_size = 64000;  // a head worth about two blocks
  LayerContext ctx{&s.model, &s.cluster.device, s.job.precision, 1, 1, false, Recompute::none, true, GroupLinks{}};
  const StageTable table = build_stage_table(ModelGraph(s.model), ctx, 4, 1, GroupLinks{});
  ASSERT_EQ(table.blocks_per_chunk.size(), 4u);
  int64_t blocks = 0;
  for (int64_t b : table.blocks_per_chunk) blocks += b;
  EXPECT_EQ(blocks, 24);
  EXPECT_TRUE(table.stages.front().has_embedding);
  EXPECT_TRUE(table.stages.back().has_head);
  EXPECT_LT(table.blocks_per_chunk.back(), 6);  // the head takes the place of blocks
  for (int64_t b : table.blocks_per_chunk) EXPECT_GE(b, table.blocks_per_chunk.back());
  double slowest = 0, fastest = 1e300;
  for (const StageSummary& st : table.stages) {
    slowest = std::max(slowest, st.total_s());
    fastest = std::min(fastest, st.total_s());
  }
  const double block_s = table.stages[1].total_s() / static_cast<double>(table.stages[1].blocks);
  EXPECT_LE(slowest - fastest, 1.5 * block_s);  // balanced to within about a block
}

}  // namespace
}  // namespace sextant
