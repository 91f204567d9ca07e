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
