// MpiComm collectives and the layout's groups, under mpirun with 4 ranks (ctest label mpi).
#include <gtest/gtest.h>
#include <mpi.h>

#include "executor/comm.h"

namespace sextant {
namespace {

TEST(MpiComm, Collectives) {
  MpiComm world(MPI_COMM_WORLD);
  const int r = world.rank(), n = world.size();
  torch::Tensor t = torch::full({3}, static_cast<float>(r + 1));
  world.all_reduce(t);
  EXPECT_TRUE(torch::equal(t, torch::full({3}, static_cast<float>(n * (n + 1) / 2))));
  torch::Tensor m = torch::tensor({static_cast<double>(r)});
  world.all_reduce_max(m);
  EXPECT_EQ(m.item<double>(), n - 1);
  torch::Tensor in = torch::arange(2 * n, torch::kFloat) * (r + 1);
  torch::Tensor out = torch::empty({2});
  world.reduce_scatter(in, out);  // chunk r of Σ_k (k+1)·arange = (n(n+1)/2)·[2r, 2r+1]
  const float s = static_cast<float>(n * (n + 1) / 2);
  EXPECT_TRUE(torch::equal(out, torch::tensor({2.0f * r * s, (2.0f * r + 1) * s})));
  torch::Tensor gathered = torch::empty({n});
  world.all_gather(torch::tensor({static_cast<float>(r)}), gathered);
  EXPECT_TRUE(torch::equal(gathered, torch::arange(n, torch::kFloat)));
  torch::Tensor b = torch::full({2}, static_cast<float>(r == 2 ? 7 : 0));
  world.broadcast(b, 2);
  EXPECT_TRUE(torch::equal(b, torch::full({2}, 7.0f)));
  // A ring of non-blocking sends and blocking receives.
  world.send(torch::full({4}, static_cast<float>(r)), (r + 1) % n, 5);
  torch::Tensor got = torch::empty({4});
  world.recv(got, (r + n - 1) % n, 5);
  world.wait_sends();
  EXPECT_TRUE(torch::equal(got, torch::full({4}, static_cast<float>((r + n - 1) % n))));
  // The overlapped forms give what the blocking ones do once waited for.
  torch::Tensor a = torch::full({3}, static_cast<float>(r + 1));
  torch::Tensor scattered = torch::empty({2});
  world.all_reduce_async(a);
  world.reduce_scatter_async(in, scattered);
  world.wait_async();
  EXPECT_TRUE(torch::equal(a, torch::full({3}, s)));
  EXPECT_TRUE(torch::equal(scattered, out));
}

// Rank r sends (r + p) % 3 rows of two values to peer p, each row naming (sender, row):
// every rank receives exactly its rows, peers in rank order.
TEST(MpiComm, AllToAllWithPerPeerCounts) {
  MpiComm world(MPI_COMM_WORLD);
  const int r = world.rank(), n = world.size();
  std::vector<int64_t> send_rows, recv_rows;
  std::vector<float> values;
  for (int p = 0; p < n; ++p) {
    send_rows.push_back((r + p) % 3);
    recv_rows.push_back((p + r) % 3);
    for (int i = 0; i < (r + p) % 3; ++i) values.insert(values.end(), {static_cast<float>(r), static_cast<float>(i)});
  }
  const torch::Tensor in = torch::tensor(values).view({-1, 2});
  int64_t total = 0;
  for (int64_t c : recv_rows) total += c;
  torch::Tensor out = torch::empty({total, 2});
  world.all_to_all(in, send_rows, out, recv_rows);
  std::vector<float> want;
  for (int p = 0; p < n; ++p)
    for (int i = 0; i < (p + r) % 3; ++i) want.insert(want.end(), {static_cast<float>(p), static_cast<float>(i)});
  EXPECT_TRUE(torch::equal(out, torch::tensor(want).view({-1, 2})));
  torch::Tensor wrong = torch::empty({total + 1, 2});
  EXPECT_THROW(world.all_to_all(in, send_rows, wrong, recv_rows), CommError);
}

// The ep and expert-dp groups hold the ranks cost_model/layout.h lists, in that order;
// without expert parallelism there are none.
TEST(CommGroups, ExpertGroupsMatchTheLayout) {
  ParallelLayout l;
  l.dp = 4;
  l.ep = 2;
  ParallelLayout tp2 = l;
  tp2.dp = 2;
  tp2.tp = 2;
  for (const ParallelLayout& layout : {l, tp2}) {
    CommGroups g = make_comm_groups(layout);
    const int64_t me = g.world->rank();
    for (auto [comm, expected] : {std::pair<Comm*, std::vector<int64_t>>{g.ep.get(), ep_group_of(layout, me)},
                                  {g.expert_dp.get(), expert_dp_group_of(layout, me)}}) {
      ASSERT_NE(comm, nullptr);
      torch::Tensor members = torch::empty({comm->size()}, torch::kLong);
      comm->all_gather(torch::tensor({me}), members);
      EXPECT_EQ(std::vector<int64_t>(members.data_ptr<int64_t>(), members.data_ptr<int64_t>() + comm->size()), expected);
    }
    EXPECT_EQ(g.ep_rank(), g.ep->rank());
  }
  ParallelLayout dense;
  dense.dp = 4;
  CommGroups g = make_comm_groups(dense);
  EXPECT_EQ(g.ep, nullptr);
  EXPECT_EQ(&g.expert_dp_group(), g.dp.get());
}

// Every group built by make_comm_groups holds exactly the ranks the layout's mapping
// lists, ordered by the axis coordinate.
TEST(CommGroups, MatchTheLayoutsRankGroups) {
  for (auto order : {std::array<Axis, 3>{Axis::tp, Axis::dp, Axis::pp}, std::array<Axis, 3>{Axis::pp, Axis::tp, Axis::dp}}) {
    ParallelLayout l;
    l.dp = 2;
    l.tp = 2;
    l.pp = 1;
    l.order = order;
    CommGroups g = make_comm_groups(l);
    const int64_t me = g.world->rank();
    for (auto [axis, comm] : {std::pair<Axis, Comm*>{Axis::tp, g.tp.get()}, {Axis::dp, g.dp.get()}, {Axis::pp, g.pp.get()}}) {
      torch::Tensor members = torch::empty({comm->size()}, torch::kLong);
      comm->all_gather(torch::tensor({me}), members);
      const std::vector<int64_t> expected = rank_group_of(l, axis, me);
      EXPECT_EQ(std::vector<int64_t>(members.data_ptr<int64_t>(), members.data_ptr<int64_t>() + comm->size()), expected);
    }
  }
}

}  // namespace
}  // namespace sextant
