// Memory model: the ZeRO paper's 2 + 2 + 12 bytes per parameter, sharded per stage over
// dp; the Korthikanti activation formulas; pipeline in-flight micro-batches.
#include <gtest/gtest.h>

#include "cost_model/estimator.h"
#include "cost_model/layer_cost.h"
#include "profiles/cluster_catalog.h"

namespace sextant {
namespace {

ModelSpec gpt(int64_t h, int64_t a, int64_t layers, int64_t s, double dropout = 0.1,
              int64_t vocab = 51200) {
  nlohmann::json c = {{"model_type", "gpt"}, {"hidden_size", h}, {"num_attention_heads", a},
                      {"num_hidden_layers", layers}, {"vocab_size", vocab},
                      {"max_position_embeddings", s}, {"dropout", dropout}};
  return model_spec_from_json(c, "test");
}

LayerContext ctx_for(const ModelSpec& m, const ClusterSpec& c, int64_t b, int64_t t, bool sp, Recompute rc) {
  return LayerContext{&m, &c.device, Precision::fp16, b, t, sp, rc, /*flash=*/false, GroupLinks{}};
}

TEST(Memory, KorthikantiPerLayerActivationFormulas) {
  const ClusterSpec c = load_cluster("dgx-a100-80gb");
  const int64_t h = 6144, a = 64, s = 2048, b = 4;
  const ModelSpec m = gpt(h, a, 4, s);
  const double sbh = static_cast<double>(s * b * h), ash = static_cast<double>(a * s) / h;
  // Formulas of ~1e10 bytes from integers, powers of two and a·s/h: double is off by
  // ~1e-6 bytes, far inside 1 byte.
  for (int64_t t : {1, 2, 8}) {
    const double td = static_cast<double>(t);
    EXPECT_NEAR(block_activation_bytes(ctx_for(m, c, b, t, false, Recompute::none)),
                sbh * (10 + 24 / td + 5 * ash / td), 1.0);
    EXPECT_NEAR(block_activation_bytes(ctx_for(m, c, b, t, true, Recompute::none)),
                sbh / td * (34 + 5 * ash), 1.0);
    EXPECT_NEAR(block_activation_bytes(ctx_for(m, c, b, t, true, Recompute::selective)),
                sbh / td * 34, 1.0);
    EXPECT_NEAR(block_activation_bytes(ctx_for(m, c, b, t, false, Recompute::full)), 2 * sbh, 1.0);
    EXPECT_NEAR(block_activation_bytes(ctx_for(m, c, b, t, true, Recompute::full)), 2 * sbh / td, 1.0);
  }
}

StageTable table_for(const ModelSpec& m, const ClusterSpec& c, const ParallelLayout& l, Precision p) {
  LayerContext ctx{&m, &c.device, p, l.micro_batch, l.tp, l.sequence_parallel, l.recompute, true, GroupLinks{}};
  return build_stage_table(ModelGraph(m), ctx, l.pp, l.vpp, GroupLinks{});
}

TEST(Memory, ZeroStagesShardSixteenBytesPerParameter) {
  const ClusterSpec c = load_cluster("dgx-a100-80gb");
  const ModelSpec m = gpt(4096, 32, 8, 1024);
  ParallelLayout l;
  l.dp = 8;
  JobSpec job;
  job.precision = Precision::bf16;
  const StageTable table = table_for(m, c, l, job.precision);
  const double n = static_cast<double>(m.total_params());
  ASSERT_DOUBLE_EQ(table.stages[0].params, n);
  const double expected[4][3] = {{2 * n, 2 * n, 12 * n},
                                 {2 * n, 2 * n, 12 * n / 8},
                                 {2 * n, 2 * n / 8, 12 * n / 8},
                                 {2 * n / 8, 2 * n / 8, 12 * n / 8}};
  for (int zero = 0; zero <= 3; ++zero) {
    l.zero = zero;
    const MemoryBreakdown mem = predict_memory(c, job, l, table);
    EXPECT_DOUBLE_EQ(mem.params_bytes, expected[zero][0]) << "zero " << zero;
    EXPECT_DOUBLE_EQ(mem.grads_bytes, expected[zero][1]) << "zero " << zero;
    EXPECT_DOUBLE_EQ(mem.optimizer_bytes, expected[zero][2]) << "zero " << zero;
    EXPECT_DOUBLE_EQ(mem.peak_bytes, mem.params_bytes + mem.grads_bytes + mem.optimizer_bytes +
                                         mem.activations_bytes + mem.comm_buffer_bytes +
                                         mem.workspace_bytes + mem.reserved_bytes);
  }
  l.offload = Offload::optimizer;
  EXPECT_EQ(predict_memory(c, job, l, table).optimizer_bytes, 0.0);
  job.fp32_grads = true;
  l.zero = 0;
  l.offload = Offload::none;
  EXPECT_DOUBLE_EQ(predict_memory(c, job, l, table).grads_bytes, 4 * n);
  job.precision = Precision::fp32;
  const MemoryBreakdown fp32 = predict_memory(c, job, l, table);
  EXPECT_DOUBLE_EQ(fp32.params_bytes + fp32.grads_bytes + fp32.optimizer_bytes, 16 * n);
}

TEST(Memory, OneFOneBKeepsPpMinusStageMicroBatches) {
  const ClusterSpec c = load_cluster("dgx-a100-80gb");
  const ModelSpec m = gpt(2048, 16, 8, 1024, 0.1, /*vocab=*/1024);  // small head: 2 blocks a stage
  ParallelLayout l;
  l.pp = 4;
  l.grad_accum = 8;
  const StageTable table = table_for(m, c, l, Precision::bf16);
  JobSpec job;
  const MemoryBreakdown worst = predict_memory(c, job, l, table);
  EXPECT_EQ(worst.stage, 0);  // the first stage holds pp micro-batches
  EXPECT_DOUBLE_EQ(worst.activations_bytes, 4 * table.stages[0].activation_bytes);
  l.grad_accum = 2;  // fewer micro-batches than stages
  EXPECT_DOUBLE_EQ(predict_memory(c, job, l, table).activations_bytes, 2 * table.stages[0].activation_bytes);
}

TEST(Memory, InterleavingHoldsTheKorthikantiExtraFraction) {
  // First stage: L·(1 + (pp-1)/(pp·vpp)) layers' activations (Korthikanti et al. §4.4).
  const ClusterSpec c = load_cluster("dgx-a100-80gb");
  const ModelSpec m = gpt(2048, 16, 24, 1024, /*dropout=*/0.0, /*vocab=*/1024);
  ParallelLayout l;
  l.pp = 4;
  l.vpp = 3;
  l.grad_accum = 8;
  l.recompute = Recompute::full;
  const StageTable table = table_for(m, c, l, Precision::bf16);
  const double per_block = table.stages[1].activation_bytes / static_cast<double>(table.stages[1].blocks);
  JobSpec job;
  const MemoryBreakdown mem = predict_memory(c, job, l, table);
  const double layers_held = 24.0 * (1 + 3.0 / 12.0);
  // A modelling tolerance, not a rounding one (no BLAS, the same on every machine): the
  // model gives exactly 30 blocks' worth today.
  EXPECT_NEAR(mem.activations_bytes / per_block, layers_held, 0.05 * layers_held);
}

}  // namespace
}  // namespace sextant
