// Pipeline schedules: golden tables, in-flight counts, and the closed-form step time
// the planner uses against the simulator.
#include <gtest/gtest.h>

#include "cost_model/partition.h"
#include "cost_model/schedule.h"

namespace sextant {
namespace {

TEST(Schedule, OneFOneBGoldenTable) {
  const Schedule s = make_schedule(/*pp=*/4, /*vpp=*/1, /*m=*/6);
  EXPECT_EQ(schedule_to_string(s),
            "F0 F1 F2 F3 B0 F4 B1 F5 B2 B3 B4 B5 \n"
            "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 B4 B5 \n"
            "F0 F1 B0 F2 B1 F3 B2 F4 B3 F5 B4 B5 \n"
            "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 \n");
}

TEST(Schedule, InterleavedGoldenTable) {
  const Schedule s = make_schedule(/*pp=*/2, /*vpp=*/2, /*m=*/4);
  // Stage 0 warms up with 2(pp-1) + (vpp-1)·pp = 4 chunk-forwards.
  EXPECT_EQ(schedule_to_string(s),
            "F0.0 F1.0 F0.1 F1.1 F2.0 B0.1 F3.0 B1.1 F2.1 B0.0 F3.1 B1.0 B2.1 B3.1 B2.0 B3.0 \n"
            "F0.0 F1.0 F0.1 B0.1 F1.1 B1.1 F2.0 B0.0 F3.0 B1.0 F2.1 B2.1 F3.1 B3.1 B2.0 B3.0 \n");
}

TEST(Schedule, InFlightClosedFormMatchesTheTable) {
  for (int64_t pp : {1, 2, 4, 8})
    for (int64_t vpp : {1, 2, 3})
      for (int64_t m : {1, 2, 4, 8, 16}) {
        if (vpp > 1 && (m % pp != 0 || pp == 1)) continue;
        const Schedule s = make_schedule(pp, vpp, m);
        std::vector<std::vector<double>> ones(static_cast<size_t>(pp), std::vector<double>(static_cast<size_t>(vpp), 1.0));
        const SimulationResult r = simulate(s, ones, ones, 0.0);
        for (int64_t i = 0; i < pp; ++i)
          EXPECT_EQ(r.peak_in_flight[static_cast<size_t>(i)], max_in_flight_chunks(pp, vpp, m, i))
              << "pp=" << pp << " vpp=" << vpp << " m=" << m << " stage=" << i;
      }
}

// The planner's formulas: 1F1B (m-1)·max + Σ t_i; interleaved m·max + (Σ - max)/vpp.
TEST(Schedule, ClosedFormStepTimeEqualsSimulationOnUniformStages) {
  for (int64_t pp : {1, 2, 4, 8})
    for (int64_t vpp : {1, 2, 4})
      for (int64_t m : {4, 8, 16, 32}) {
        if (vpp > 1 && (m % pp != 0 || pp == 1)) continue;
        const double f = 1.0 / static_cast<double>(vpp), b = 2.0 / static_cast<double>(vpp);
        std::vector<std::vector<double>> fwd(static_cast<size_t>(pp), std::vector<double>(static_cast<size_t>(vpp), f));
        std::vector<std::vector<double>> bwd(static_cast<size_t>(pp), std::vector<double>(static_cast<size_t>(vpp), b));
        const double simulated = simulate(make_schedule(pp, vpp, m), fwd, bwd, 0.0).step_s;
        const double t = 3.0, mm = static_cast<double>(m), p = static_cast<double>(pp);
        const double formula = vpp == 1 ? (mm - 1) * t + p * t : mm * t + (p - 1) * t / static_cast<double>(vpp);
        // Every time is a multiple of 1/4: exact in binary, so simulated == formula exactly.
        EXPECT_NEAR(simulated, formula, 1e-9) << "pp=" << pp << " vpp=" << vpp << " m=" << m;
      }
}

TEST(Schedule, SlowestStageBoundsOneFOneB) {
  // Non-uniform stages: the closed form is exact for a slow last stage.
  std::vector<std::vector<double>> fwd = {{1}, {1}, {1}, {1.5}}, bwd = {{2}, {2}, {2}, {3}};
  const double simulated = simulate(make_schedule(4, 1, 8), fwd, bwd, 0.0).step_s;
  EXPECT_NEAR(simulated, 7 * 4.5 + 3 * 3 + 4.5, 1e-9);  // halves and integers: exact
}

double max_run(const std::vector<double>& w, const std::vector<int64_t>& counts) {
  double worst = 0;
  size_t i = 0;
  int64_t total = 0;
  for (int64_t n : counts) {
    EXPECT_GE(n, 1);
    total += n;
    double run = 0;
    for (int64_t k = 0; k < n; ++k) run += w.at(i++);
    worst = std::max(worst, run);
  }
  EXPECT_EQ(total, static_cast<int64_t>(w.size()));
  return worst;
}

TEST(Partition, FindsTheOptimalBottleneckWithNonEmptyRuns) {
  EXPECT_EQ(linear_partition({1, 1, 1, 1}, 2), (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(linear_partition({1, 1, 1}, 3), (std::vector<int64_t>{1, 1, 1}));
  const std::vector<double> a = {3, 1, 1, 1, 1, 1};
  // Sums of at most a few doubles near 3: off by ≤ 2 ulp(3) ≈ 9e-16.
  EXPECT_NEAR(max_run(a, linear_partition(a, 3)), 3.0, 1e-6);
  const std::vector<double> b = {2, 1, 1, 1, 1, 1, 1, 2};
  EXPECT_NEAR(max_run(b, linear_partition(b, 4)), 3.0, 1e-6);
  const std::vector<double> c = {1.5, 1, 1, 1, 1, 1, 1, 1, 1, 1.8};
  EXPECT_NEAR(max_run(c, linear_partition(c, 4)), 3.0, 1e-6);
  const std::vector<double> d(96, 1.0);
  EXPECT_EQ(linear_partition(d, 96), std::vector<int64_t>(96, 1));
}

}  // namespace
}  // namespace sextant
