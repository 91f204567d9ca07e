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

// Expert groups, written out by hand. dp4 ep2 tp2 pp2, default order (rank = tp + 2·(dp +
// 4·pp)): each dp group {d0, d1, d2, d3} splits into ep groups {d0, d1}, {d2, d3} (experts
// spread over consecutive dp coordinates, Megatron-Core's tp-ep-dp order) and expert-dp
// groups {d0, d2}, {d1, d3} (the ranks holding the same experts).
TEST(Layout, ExpertGroupsDefaultOrder) {
  ParallelLayout l;
  l.dp = 4;
  l.ep = 2;
  l.tp = 2;
  l.pp = 2;
  EXPECT_EQ(rank_groups(l, Axis::dp),
            (Groups{{0, 2, 4, 6}, {1, 3, 5, 7}, {8, 10, 12, 14}, {9, 11, 13, 15}}));
  EXPECT_EQ(ep_groups(l),
            (Groups{{0, 2}, {1, 3}, {4, 6}, {5, 7}, {8, 10}, {9, 11}, {12, 14}, {13, 15}}));
  EXPECT_EQ(expert_dp_groups(l),
            (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13}, {10, 14}, {11, 15}}));
  EXPECT_EQ(ep_group_of(l, 6), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(expert_dp_group_of(l, 6), (std::vector<int64_t>{2, 6}));
}

// The same sizes with dp outermost (rank = tp + 2·(pp + 2·dp)): dp groups stride 4, so an
// ep group pairs ranks 4 apart and an expert-dp group ranks 8 apart.
TEST(Layout, ExpertGroupsDataParallelOutermost) {
  ParallelLayout l;
  l.dp = 4;
  l.ep = 2;
  l.tp = 2;
  l.pp = 2;
  l.order = {Axis::tp, Axis::pp, Axis::dp};
  EXPECT_EQ(rank_groups(l, Axis::dp),
            (Groups{{0, 4, 8, 12}, {1, 5, 9, 13}, {2, 6, 10, 14}, {3, 7, 11, 15}}));
  EXPECT_EQ(ep_groups(l),
            (Groups{{0, 4}, {1, 5}, {2, 6}, {3, 7}, {8, 12}, {9, 13}, {10, 14}, {11, 15}}));
  EXPECT_EQ(expert_dp_groups(l),
            (Groups{{0, 8}, {1, 9}, {2, 10}, {3, 11}, {4, 12}, {5, 13}, {6, 14}, {7, 15}}));
}

// ep = dp: one ep group per dp group and expert-dp groups of one rank; ep = 1: the reverse.
TEST(Layout, ExpertGroupsAtTheExtremes) {
  ParallelLayout l;
  l.dp = 4;
  l.tp = 2;
  l.ep = 4;
  EXPECT_EQ(ep_groups(l), rank_groups(l, Axis::dp));
  EXPECT_EQ(expert_dp_groups(l), (Groups{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}));
  l.ep = 1;
  EXPECT_EQ(expert_dp_groups(l), rank_groups(l, Axis::dp));
  EXPECT_EQ(ep_groups(l), (Groups{{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}}));
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
