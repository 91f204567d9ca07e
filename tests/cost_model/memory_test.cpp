// Memory model: the executor's own allocations, itemised (cost_model/layer_memory.cpp,
// cost_model/memory.cpp) and checked here against bytes counted by hand for small models;
// pipeline in-flight micro-batches. tests/executor/training_test.cpp holds the model
// against the executor's measured peak.
#include <algorithm>

#include <gtest/gtest.h>

#include "cost_model/estimator.h"
#include "cost_model/layer_cost.h"
#include "cost_model/layer_memory.h"
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

ModelSpec llama(int64_t seq) {
  nlohmann::json c = {{"model_type", "llama"},       {"hidden_size", 64},
                      {"intermediate_size", 176},    {"num_attention_heads", 4},
                      {"num_key_value_heads", 2},    {"num_hidden_layers", 4},
                      {"vocab_size", 256},           {"max_position_embeddings", seq},
                      {"tie_word_embeddings", false}};
  ModelSpec m = model_spec_from_json(c, "test");
  m.seq_len = seq;
  return m;
}

// tiny-llama (h 64, 4 heads of 16, 2 KV heads, SwiGLU 176, rope), s 8, b 2: T = 16 tokens,
// fp32 on CPU ranks. Every byte below is one tensor of executor/model.cpp, counted by hand.
TEST(Memory, BlockKeepsTheExecutorsTensors) {
  const ClusterSpec cpu = load_cluster("local-cpu");
  const ModelSpec m = llama(8);
  const double T = 16, h = 64, q = 64, kv = 32, f = 176, e = 4, s = 8, rot = 16;
  LayerContext c{&m,    &cpu.device,     Precision::fp32, 2,           1,
                 false, Recompute::none, /*flash=*/true,  GroupLinks{}};
  const double residuals = 2 * T * h * e;        // x + attention, block output
  const double norm_outputs = 2 * T * h * e;     // inputs of the QKV and MLP linears
  const double rstd = 2 * T * 4;                 // one fp32 per row and norm
  const double rotary_tables = 4 * s * rot * 4;  // cos, sin for Q and for K
  const double qkv = T * (q + 2 * kv) * e;       // rotated Q, K and V: the recomputed core's inputs
  const double context = T * q * e;              // permuted copy, the out-projection input
  const double mlp = 3 * T * f * e;              // gate, up, swiglu output
  const double kept = residuals + norm_outputs + rstd + rotary_tables + qkv + context + mlp;
  EXPECT_EQ(kept, 64640.0);
  EXPECT_DOUBLE_EQ(block_activation_bytes(c), kept);

  // Backward, on top, at its highest of three moments (layer_memory.cpp). MLP: dgate and
  // dup, and the down weight's gradient. Attention: the core rebuilt (Q copy, K and V
  // repeated to 4 heads, bool mask, fp32 softmax) and its backward (context gradient,
  // gradients of probabilities and scores), with the MLP and out-projection weights'
  // gradients taken, and the MLP tensors, norm2 output, residual sum and context freed.
  // End: every leaf gradient, all kept tensors freed. At this size the gradients dominate.
  const double params = static_cast<double>(m.attention_params() + m.mlp_params() + 2 * m.norm_params());
  const double scores = 2 * 4 * s * s;
  const double rebuilt = T * q * e + 2 * T * q * e + s * s + scores * 4;
  const double core_backward = T * q * e + 2 * scores * 4;
  const double mlp_moment = 2 * T * f * e + h * f * e;
  const double attention_moment =
      rebuilt + core_backward + (3 * h * f + q * h) * e - (3 * T * f * e + T * h * e + T * h * e + T * q * e);
  const double end_moment = params * e - kept;
  ASSERT_GT(attention_moment, std::max(mlp_moment, end_moment));
  EXPECT_DOUBLE_EQ(block_workspace_bytes(c, params), attention_moment);

  // Full recompute keeps the output only; backward rebuilds the rest.
  c.recompute = Recompute::full;
  EXPECT_DOUBLE_EQ(block_activation_bytes(c), T * h * e);
  EXPECT_DOUBLE_EQ(block_workspace_bytes(c, params), attention_moment + kept - T * h * e);
}

TEST(Memory, EmbeddingAndHeadKeepTheExecutorsTensors) {
  const ClusterSpec cpu = load_cluster("local-cpu");
  const ModelSpec m = llama(8);
  const double T = 16, h = 64, v = 256, e = 2;  // bf16
  const LayerContext c{&m,   &cpu.device, Precision::bf16, 2, 1, false, Recompute::none,
                       true, GroupLinks{}};
  // Output, vocab-shard mask [b, s, 1], int64 indices.
  EXPECT_DOUBLE_EQ(embedding_activation_bytes(c), T * h * e + T * e + T * 8);
  // rstd, norm output, logits in bf16, int64 targets, fp32 max and sum of exp.
  EXPECT_DOUBLE_EQ(head_activation_bytes(c), T * 4 + T * h * e + T * v * e + T * 8 + 2 * T * 4);
  EXPECT_DOUBLE_EQ(head_workspace_bytes(c, v * h),
                   T * v * e + v * h * e);  // dlogits, leaf gradient
}

TEST(Memory, GpuAllocationsRoundTo512Bytes) {
  const ClusterSpec gpu = load_cluster("h100-sxm-80gb");
  const ClusterSpec cpu = load_cluster("local-cpu");
  EXPECT_EQ(allocation_bytes(gpu.device, 1), 512.0);
  EXPECT_EQ(allocation_bytes(gpu.device, 1025), 1536.0);
  EXPECT_EQ(allocation_bytes(gpu.device, 2048), 2048.0);
  EXPECT_EQ(allocation_bytes(cpu.device, 1025), 1025.0);
  // On a GPU the fused kernel keeps Q, K and V repeated to every head, the output and the
  // log-sum-exp instead of recomputing the core.
  const ModelSpec m = llama(8);
  const LayerContext c{&m,   &gpu.device, Precision::bf16, 2, 1, false, Recompute::none,
                       true, GroupLinks{}};
  EXPECT_TRUE(fused_attention(c));
  const double T = 16, q = 64, e = 2;
  const LayerContext on_cpu{&m,   &cpu.device, Precision::bf16, 2, 1, false, Recompute::none,
                            true, GroupLinks{}};
  // Fused keeps repeated K, V (2·T·q) and the output (T·q) where the CPU kept K, V (2·T·kv);
  // the log-sum-exp, 2·4·8 fp32, rounds to one 512-byte block, and so does each of the two
  // norms' rstd (T fp32); everything else is a multiple of 512 bytes already.
  const double delta = 3 * T * q * e - 2 * T * 32 * e + 512 + 2 * (512 - T * 4);
  EXPECT_DOUBLE_EQ(block_activation_bytes(c) - block_activation_bytes(on_cpu), delta);
}

StageTable table_for(const ModelSpec& m, const ClusterSpec& c, const ParallelLayout& l, Precision p) {
  LayerContext ctx{&m, &c.device, p, l.micro_batch, l.tp, l.sequence_parallel, l.recompute, true, GroupLinks{}};
  return build_stage_table(ModelGraph(m), ctx, l.pp, l.vpp, GroupLinks{});
}

// optimizer.cpp per parameter: fp32 master flat_ (ZeRO-3: shard), the bf16 working copy
// (not under ZeRO-3), fp32 grad_ (sharded from ZeRO-1; ZeRO-1 adds the full accum_, ZeRO-2/3
// on NCCL the reduced shard in flight), and m_, v_ and decay_ (fp32, sharded from ZeRO-1).
TEST(Memory, ZeroStagesHoldTheOptimizersBuffers) {
  const ClusterSpec c = load_cluster("dgx-a100-80gb");
  const ModelSpec m = gpt(4096, 32, 8, 1024);
  ParallelLayout l;
  l.dp = 8;
  JobSpec job;
  job.precision = Precision::bf16;
  const StageTable table = table_for(m, c, l, job.precision);
  const double n = static_cast<double>(m.total_params());
  ASSERT_DOUBLE_EQ(table.stages[0].params, n);
  const double expected[4][3] = {{6 * n, 4 * n, 12 * n},
                                 {6 * n, 4 * n / 8 + 4 * n, 12 * n / 8},
                                 {6 * n, 2 * 4 * n / 8, 12 * n / 8},
                                 {4 * n / 8, 2 * 4 * n / 8, 12 * n / 8}};
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
  l.zero = 0;
  l.offload = Offload::none;
  job.precision = Precision::fp32;  // no working copy: the leaves view the master weights
  const MemoryBreakdown fp32 = predict_memory(c, job, l, table);
  EXPECT_DOUBLE_EQ(fp32.params_bytes + fp32.grads_bytes + fp32.optimizer_bytes, 20 * n);
  l.dp = 1;  // at dp = 1 every stage is ZeRO-0 (optimizer.h), bar ZeRO-3's gathered copy
  l.zero = 2;
  const MemoryBreakdown one = predict_memory(c, job, l, table);
  EXPECT_DOUBLE_EQ(one.params_bytes + one.grads_bytes + one.optimizer_bytes, 20 * n);
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
  // The first stage starts with the embedding: nothing received, and the step's tokens.
  EXPECT_DOUBLE_EQ(worst.activations_bytes,
                   4 * table.stages[0].activation_bytes + 8 * table.micro_batch_token_bytes);
  l.grad_accum = 2;  // fewer micro-batches than stages
  EXPECT_DOUBLE_EQ(predict_memory(c, job, l, table).activations_bytes,
                   2 * table.stages[0].activation_bytes + 2 * table.micro_batch_token_bytes);
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
  // The executor also keeps each in-flight chunk's input, one [s, b, h] each: the received
  // activation (2 of the 3 chunks) or the embedding's output (chunk 0): 15 chunks in flight
  // (2(pp−1) + (vpp−1)·pp + 1). What remains is the embedding's mask and indices and the
  // step's tokens: 5·T·(2 + 8) + 8·(s + 1)·8 bytes, 0.03 of a block's 2·s·h here.
  const double chunk_inputs = 15;
  const double small = (5 * 1024 * 10 + 8 * 1025 * 8) / per_block;
  EXPECT_NEAR(mem.activations_bytes / per_block, layers_held + chunk_inputs + small, 1e-9);
}

}  // namespace
}  // namespace sextant
