// The profiler's batch timing (executor/profiler.h): the arithmetic that turns a batch's
// interval into seconds per run, the batch sizing, and median_s_per_rep driven by a
// scripted clock and by the host clock. On a GPU the same median_s_per_rep runs with a
// CUDA-event clock; that clock itself needs a GPU and is exercised by `sextant profile`.
#include "executor/profiler.h"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace sextant {
namespace {

TEST(SecondsPerRep, DividesTheBatchIntervalByItsRepetitions) {
  EXPECT_DOUBLE_EQ(seconds_per_rep(0.5, 100), 0.005);
  EXPECT_DOUBLE_EQ(seconds_per_rep(0.0, 3), 0.0);
  EXPECT_DOUBLE_EQ(seconds_per_rep(2e-3, 1), 2e-3);
  EXPECT_THROW(seconds_per_rep(1.0, 0), std::invalid_argument);
  EXPECT_THROW(seconds_per_rep(-1.0, 4), std::invalid_argument);
}

TEST(RepsToFill, RepeatsShortWorkUntilTheBatchIsLongEnough) {
  EXPECT_EQ(reps_to_fill(1e-3, 0.01, 1000), 10);
  EXPECT_EQ(reps_to_fill(3e-3, 0.01, 1000), 4);     // ceil(3.33)
  EXPECT_EQ(reps_to_fill(0.02, 0.01, 1000), 1);     // longer than a batch: once
  EXPECT_EQ(reps_to_fill(1e-7, 0.01, 1000), 1000);  // launch-bound work: capped
  EXPECT_EQ(reps_to_fill(0.0, 0.01, 50), 50);       // below the clock's resolution
  EXPECT_THROW(reps_to_fill(1e-3, 0.01, 0), std::invalid_argument);
}

// Answers stop_s() from a script; counts its intervals.
class ScriptedClock final : public IntervalClock {
 public:
  explicit ScriptedClock(std::vector<double> intervals_s) : intervals_s_(std::move(intervals_s)) {}
  void start() override { ++starts; }
  double stop_s() override { return intervals_s_.at(stops++); }
  int starts = 0, stops = 0;

 private:
  std::vector<double> intervals_s_;
};

TEST(MedianSPerRep, SizesBatchesFromOneRunAndKeepsTheMedianPerRun) {
  // The sizing run takes 2 ms, so a 10 ms batch holds 5 runs; three batches then take
  // 10, 30 and 12 ms: 2, 6 and 2.4 ms per run, median 2.4 ms.
  ScriptedClock clock({2e-3, 10e-3, 30e-3, 12e-3});
  int runs = 0;
  BatchTimingOptions o;
  o.warmup = 2;
  o.batches = 3;
  o.batch_s = 0.01;
  o.max_reps = 1000;
  const double s = median_s_per_rep([&] { ++runs; }, clock, o);
  EXPECT_DOUBLE_EQ(s, 2.4e-3);
  EXPECT_EQ(runs, 2 + 1 + 3 * 5);  // warm-up, sizing run, batches
  EXPECT_EQ(clock.starts, 4);
  EXPECT_EQ(clock.stops, 4);
}

TEST(MedianSPerRep, RejectsNoBatches) {
  ScriptedClock clock({});
  BatchTimingOptions o;
  o.batches = 0;
  EXPECT_THROW(median_s_per_rep([] {}, clock, o), std::invalid_argument);
}

// The host clock on real (sleeping) work: each run sleeps 2 ms, so the figure is at least
// that; the upper bound only guards against a figure for the whole batch (a shared,
// loaded machine may oversleep).
TEST(MedianSPerRep, HostClockReportsOneRunNotTheBatch) {
  int waits = 0;
  HostClock clock([&] { ++waits; });
  BatchTimingOptions o;
  o.warmup = 0;
  o.batches = 3;
  o.batch_s = 0.02;
  const double s =
      median_s_per_rep([] { std::this_thread::sleep_for(std::chrono::milliseconds(2)); }, clock, o);
  EXPECT_GE(s, 2e-3);
  EXPECT_LT(s, 20e-3);
  EXPECT_EQ(waits, 1 + 3);  // the wait runs once per interval, not once per run
}

}  // namespace
}  // namespace sextant
