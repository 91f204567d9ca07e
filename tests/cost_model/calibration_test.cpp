// Measured profiles and calibration: the fits recover known values; interpolation returns
// the measurements at grid points.
#include <cmath>

#include <gtest/gtest.h>

#include "cost_model/calibration.h"
#include "cost_model/error.h"
#include "cost_model/measured_profile.h"

namespace sextant {
namespace {

TEST(Calibration, LatencyBandwidthFitRecoversTheLine) {
  std::vector<std::pair<double, double>> points;
  for (double bytes = 1024; bytes <= (64 << 20); bytes *= 4) points.push_back({bytes, 20e-6 + bytes / 5e9});
  const auto [latency, rate] = fit_latency_bandwidth(points);
  // Exact data, and the weighted normal equations do not cancel (sw·sxx/det = 1.04): the fit
  // is off by ~1e-16 relative; these bounds are 5e-5 and 2e-7 relative, no BLAS involved.
  EXPECT_NEAR(latency, 20e-6, 1e-9);
  EXPECT_NEAR(rate, 5e9, 1e3);
}

TEST(Calibration, LeastSquaresRecoversFactorsAndKeepsThemNonNegative) {
  // Two sources of figures, each with its own GEMM factor; the other factors shared.
  Calibration truth{0, {{"profile a #1", 1.4}, {"cluster c", 0.7}}, 1, 3.0, 0.8, 0.01};
  std::vector<CalibrationSample> samples;
  for (int i = 0; i < 10; ++i) {
    CalibrationFeatures f{0.1 + 0.05 * i, 0.02 * ((i * 3) % 5 + 1), 0.01 * ((i * 7) % 4), 4.0 + (i % 3) * 4};
    const std::string figures = i % 2 ? "cluster c" : "profile a #1";
    samples.push_back({f, figures, calibrated_step_s(f, *calibration_for(truth, figures))});
  }
  const Calibration fit = fit_calibration(samples);
  ASSERT_EQ(fit.compute_factor_by_figures.size(), 2u);
  // Exact data, solved by Eigen's pivoted QR: recovered to ≤ 4e-15 here; 1e-6 is rounding-proof.
  EXPECT_NEAR(fit.compute_factor_by_figures.at("profile a #1"), 1.4, 1e-6);
  EXPECT_NEAR(fit.compute_factor_by_figures.at("cluster c"), 0.7, 1e-6);
  EXPECT_NEAR(fit.vector_factor, 3.0, 1e-6);
  EXPECT_NEAR(fit.comm_factor, 0.8, 1e-6);
  EXPECT_NEAR(fit.per_layer_pass_s, 0.01, 1e-8);
  EXPECT_EQ(calibration_for(fit, "profile a #2"), std::nullopt);  // another measurement: no factor
  EXPECT_NEAR(calibration_for(fit, "cluster c")->compute_factor, 0.7, 1e-6);
  // Runs that would want a negative overhead: it is held at 0 and the rest refitted.
  for (CalibrationSample& s : samples) s.measured_step_s -= 0.02 * s.features.layer_passes;
  const Calibration held = fit_calibration(samples);
  EXPECT_EQ(held.per_layer_pass_s, 0.0);
  for (const auto& entry : held.compute_factor_by_figures) EXPECT_GE(entry.second, 0.0);
}

TEST(Calibration, JsonRoundTripAndOlderSingleFactor) {
  const Calibration c{0, {{"profile p #3", 1.25}}, 1, 2.0, 0.5, 0.002};
  const Calibration back = calibration_from_json(calibration_to_json(c), 9);
  EXPECT_EQ(back.id, 9);
  EXPECT_EQ(back.compute_factor_by_figures, c.compute_factor_by_figures);
  EXPECT_EQ(back.vector_factor, 2.0);
  EXPECT_EQ(back.per_layer_pass_s, 0.002);
  // Stored before the factors were per source: one GEMM factor for every source.
  const Calibration old = calibration_from_json(
      {{"compute_factor", 1.5}, {"vector_factor", 1.0}, {"comm_factor", 1.0}, {"per_layer_pass_s", 0.0}}, 2);
  ASSERT_TRUE(calibration_for(old, "cluster anything"));
  EXPECT_EQ(calibration_for(old, "cluster anything")->compute_factor, 1.5);
}

ProfileData small_profile() {
  ProfileData p;
  p.name = "t";
  p.memory_bandwidth_bytes_per_s = 1e10;
  for (int m : {64, 256})
    for (int n : {64, 256})
      for (int k : {64, 256}) p.gemm.push_back({"fp32", m, n, k, 1e9 * (m + n + k)});
  for (int64_t bytes : {1024, 65536, 4194304})
    p.collectives.push_back(
        {Collective::all_reduce, 2, bytes, 1e-5 + static_cast<double>(bytes) / 2e9, 0, 0});
  return p;
}

TEST(MeasuredProfile, InterpolatesGemmsAndFitsCollectives) {
  const MeasuredProfile p(small_profile(), 7, "test");
  // At grid points the interpolation returns the measurement up to rounding (~1e-15 relative).
  EXPECT_NEAR(p.gemm_flops_per_s(Precision::fp32, 64, 64, 64), 192e9, 1e3);
  EXPECT_NEAR(p.gemm_flops_per_s(Precision::fp32, 256, 256, 256), 768e9, 1e4);
  const double mid = p.gemm_flops_per_s(Precision::fp32, 128, 128, 128);
  EXPECT_GT(mid, 192e9);
  EXPECT_LT(mid, 768e9);
  EXPECT_NEAR(p.gemm_flops_per_s(Precision::bf16, 4096, 4096, 4096), 768e9, 1e4);  // clamped; bf16 falls back to fp32
  const CollectiveFit* fit = p.collective(Collective::all_reduce, 2);
  ASSERT_NE(fit, nullptr);
  EXPECT_NEAR(fit->latency_s, 1e-5, 1e-9);  // exact data: off by ~1e-16 relative (see above)
  EXPECT_NEAR(fit->bus_bw_bytes_per_s, 2e9 * bus_factor(Collective::all_reduce, 2), 1e3);
  EXPECT_EQ(p.collective(Collective::all_gather, 2), nullptr);
  EXPECT_EQ(p.elementwise_bw_bytes_per_s(), 1e10);  // not measured: copy bandwidth
  ProfileData holes = small_profile();
  holes.gemm.erase(holes.gemm.begin());
  EXPECT_THROW(MeasuredProfile(holes, 1, "test"), InputError);
  ProfileData no_fp32 = small_profile();
  for (GemmPoint& g : no_fp32.gemm) g.dtype = "bf16";
  EXPECT_THROW(MeasuredProfile(no_fp32, 1, "test"), InputError);
}

}  // namespace
}  // namespace sextant
