// Rank mapping: golden tables of rank groups, round trips.
#include <gtest/gtest.h>

#include "cost_model/layout.h"

namespace sextant {
namespace {

using Groups = std::vector<std::vector<int64_t>>;

// The example in Megatron-LM's parallel_state docstring: 16 GPUs, tp=2, pp=4, dp=2.
TEST(Layout, MegatronDocstringGroups) {
  ParallelLayout l;
  l.tp = 2;
  l.pp = 4;
  l.dp = 2;
  EXPECT_EQ(rank_groups(l, Axis::tp),
            (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}, {8, 9}, {10, 11}, {12, 13}, {14, 15}}));
  EXPECT_EQ(rank_groups(l, Axis::pp),
            (Groups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  EXPECT_EQ(rank_groups(l, Axis::dp),
            (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}));
}

TEST(Layout, PipelineInsideDataParallelOrder) {
  ParallelLayout l;
  l.tp = 2;
  l.pp = 2;
  l.dp = 2;
  l.order = {Axis::tp, Axis::pp, Axis::dp};  // rank = tp + 2 * (pp + 2 * dp)
  EXPECT_EQ(rank_groups(l, Axis::pp), (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}}));
  EXPECT_EQ(rank_groups(l, Axis::dp), (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}}));
  EXPECT_EQ(rank_to_coord(l, 6), (RankCoord{1, 1, 0}));
}

TEST(Layout, CoordinatesRoundTripAndGroupsPartitionTheWorld) {
  ParallelLayout l;
  l.tp = 4;
  l.pp = 3;
  l.dp = 5;
  for (int64_t r = 0; r < l.world_size(); ++r) {
    RankCoord c = rank_to_coord(l, r);
    EXPECT_EQ(r, c.tp + 4 * (c.dp + 5 * c.pp));
    EXPECT_EQ(coord_to_rank(l, c), r);
  }
  for (Axis a : {Axis::tp, Axis::dp, Axis::pp}) {
    std::vector<int> seen(static_cast<size_t>(l.world_size()), 0);
    for (const auto& g : rank_groups(l, a)) {
      EXPECT_EQ(static_cast<int64_t>(g.size()), l.size(a));
      for (int64_t r : g) ++seen[static_cast<size_t>(r)];
    }
    for (int s : seen) EXPECT_EQ(s, 1);
  }
}

}  // namespace
}  // namespace sextant
