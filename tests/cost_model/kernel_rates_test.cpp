// Kernel-rate tables: the grid interpolation, the built-in H100 table against the team's
// measurements it was made from, the launch floor, scaling to a derived device, and the
// cost model using them (shape-aware GEMMs, flash attention by shape).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <fstream>

#include "cost_model/error.h"
#include "cost_model/kernel_rates.h"
#include "cost_model/layer_cost.h"
#include "profiles/cluster_catalog.h"

namespace sextant {
namespace {

LogGrid two_by_two() {
  std::vector<std::array<double, 4>> p;
  for (double m : {1024.0, 4096.0})
    for (double n : {1024.0, 4096.0})
      for (double k : {1024.0, 4096.0}) p.push_back({m, n, k, m * n * k});  // any positive surface
  return LogGrid::from_points(p, "test", "grid");
}

TEST(LogGrid, ExactOnItsPointsGeometricBetweenClampedOutside) {
  const LogGrid g = two_by_two();
  EXPECT_NEAR(g.at(1024, 4096, 1024), 1024.0 * 4096 * 1024, 1e-9 * 1024.0 * 4096 * 1024);
  // Halfway in log2(m) between 1024 and 4096 is 2048: log-linear in a power law is exact.
  EXPECT_NEAR(g.at(2048, 1024, 1024), 2048.0 * 1024 * 1024, 1e-9 * 2048.0 * 1024 * 1024);
  EXPECT_DOUBLE_EQ(g.at(64, 1024, 1024), g.at(1024, 1024, 1024));
  EXPECT_DOUBLE_EQ(g.at(1 << 20, 4096, 4096), g.at(4096, 4096, 4096));
}

TEST(LogGrid, RefusesShapesThatAreNoFullGrid) {
  std::vector<std::array<double, 4>> p = {{1024, 1024, 1024, 1}, {2048, 1024, 1024, 1}, {1024, 2048, 1024, 1}};
  EXPECT_THROW(LogGrid::from_points(p, "test", "grid"), InputError);
  EXPECT_THROW(LogGrid::from_points({{1024, 1024, 1024, 0}}, "test", "grid"), InputError);
}

// The built-in table is the team's measurement (tests/data copy of the figures named in
// profiles/kernels/h100-sxm-bf16.json): 469.3 TFLOP/s forward at m=8192, n=k=768; the
// cluster runs it at the sustained clock (kernel_scale 0.9326).
TEST(KernelRates, BuiltInH100TableReproducesTheMeasuredGemm) {
  const ClusterSpec c = load_cluster("h100-sxm-80gb");
  ASSERT_TRUE(c.device.kernels);
  const KernelRates& r = *c.device.kernels;
  const double flops = 2.0 * 8192 * 768 * 768;
  EXPECT_NEAR(flops / r.gemm_s(GemmLayout::forward, 8192, 768, 768), 469.3e12 * 0.9326, 0.6e12);
  // A large square GEMM runs faster per FLOP than the small-hidden one: the point of the surface.
  const double big = 2.0 * 8192 * 8192 * 8192;
  EXPECT_GT(big / r.gemm_s(GemmLayout::forward, 8192, 8192, 8192), 1.4 * flops / r.gemm_s(GemmLayout::forward, 8192, 768, 768));
}

TEST(KernelRates, NoKernelRunsFasterThanTheLaunchFloor) {
  const ClusterSpec c = load_cluster("h100-sxm-80gb");  // owns the table
  const KernelRates& r = *c.device.kernels;
  EXPECT_GT(r.launch_s, 1e-6);
  EXPECT_DOUBLE_EQ(r.memory_s(MemoryOp::add, 1024), r.launch_s);
  EXPECT_DOUBLE_EQ(r.gemm_s(GemmLayout::forward, 16, 16, 16), r.launch_s);
  EXPECT_GT(r.memory_s(MemoryOp::add, 1e9), 1e9 / 5e12);  // no op streams faster than 5 TB/s
}

// Forward+backward was measured for layer_norm: backward is the difference.
TEST(KernelRates, BackwardFromTheForwardPlusBackwardMeasurement) {
  const ClusterSpec c = load_cluster("h100-sxm-80gb");  // owns the table
  const KernelRates& r = *c.device.kernels;
  const double fwd_bytes = 2.0 * 8192 * 768 * 2, bwd_bytes = 1.5 * fwd_bytes;
  const double both_s = (fwd_bytes + bwd_bytes) / 772.8e9;  // layer_norm fwd+bwd [8192,768]: 62.9 MB at 772.8 GB/s
  EXPECT_NEAR(r.memory_bwd_s(MemoryOp::layer_norm, fwd_bytes, bwd_bytes), both_s - r.memory_s(MemoryOp::layer_norm, fwd_bytes),
              1e-9);
  // Flash attention: 4·b·h·s²·d full-square FLOPs at the measured 522.3 TFLOP/s (b 8, heads 12 and
  // 559.4 at heads 16, the same s·d: their mean), at the sustained clock.
  const double flops = 4.0 * 96 * 1024 * 1024 * 64;
  EXPECT_NEAR(flops / r.attention_fwd_s(96, 1024, 64), 0.5 * (522.35 + 559.44) * 1e12 * 0.9326, 1e12);
  EXPECT_GT(r.attention_bwd_s(96, 1024, 64), r.attention_fwd_s(96, 1024, 64));
}

TEST(KernelRates, DerivedDeviceScalesEveryRate) {
  const ClusterSpec h100_cluster = load_cluster("h100-sxm-80gb"), a100_cluster = load_cluster("dgx-a100-80gb");
  const KernelRates& h100 = *h100_cluster.device.kernels;
  const KernelRates& a100 = *a100_cluster.device.kernels;
  const double g = h100.gemm_s(GemmLayout::forward, 8192, 4096, 4096) / a100.gemm_s(GemmLayout::forward, 8192, 4096, 4096);
  EXPECT_NEAR(g, 0.3130 / 0.9326, 1e-9);
  EXPECT_NEAR(h100.memory_s(MemoryOp::gelu, 1e9) / a100.memory_s(MemoryOp::gelu, 1e9), 0.6087, 1e-9);
}

TEST(KernelRates, UnknownTableNameIsOneClearError) {
  const std::string path = ::testing::TempDir() + "/bad_kernels_cluster.json";
  std::ofstream(path) << R"({"name": "x", "nodes": 1, "devices_per_node": 1,
    "device": {"name": "d", "peak_tflops": {"bf16": 100, "fp32": 50}, "memory_gib": 10,
               "memory_bandwidth_gb_per_s": 1000, "kernels": "no-such-table"},
    "intra_node": {"bandwidth_gb_per_s": 100}})";
  try {
    load_cluster(path);
    FAIL() << "accepted an unknown kernel table";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("device.kernels"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("h100-sxm-bf16"), std::string::npos) << e.what();
  }
  std::remove(path.c_str());
}

// With the table, a GPT-2-sized block achieves fewer FLOP/s than a 7B-sized one (small
// GEMMs, memory-bound ops); with one efficiency for every GEMM the gap was far smaller.
TEST(KernelRates, SmallLayersRunBelowTheLargeMatrixRate) {
  const ClusterSpec c = load_cluster("h100-sxm-80gb");
  auto rate = [&](int64_t h, int64_t heads) {
    const ModelSpec m = model_spec_from_json({{"model_type", "gpt"}, {"hidden_size", h}, {"num_attention_heads", heads},
                                              {"num_hidden_layers", 2}, {"vocab_size", 50304},
                                              {"max_position_embeddings", 2048}},
                                             "test");
    LayerContext ctx{&m, &c.device, Precision::bf16, 4, 1, false, Recompute::none, true, GroupLinks{}};
    const LayerCost l = block_cost(ctx);
    return 3 * l.fwd_flops / (l.fwd_compute_s + l.bwd_compute_s);
  };
  EXPECT_LT(rate(768, 12), 0.8 * rate(4096, 32));
}

}  // namespace
}  // namespace sextant
