// Topology: which links a group crosses decides its bus bandwidth.
#include <gtest/gtest.h>

#include "cost_model/error.h"
#include "cost_model/topology.h"
#include "profiles/cluster_catalog.h"

namespace sextant {
namespace {

TEST(Topology, TensorGroupInsideANodeRidesNvlink) {
  ClusterSpec c = load_cluster("dgx-h100-80gb");
  Topology topo(c, 64);
  EXPECT_EQ(topo.nodes(), 8);
  GroupLinks tp = topo.group_links({0, 1, 2, 3, 4, 5, 6, 7});
  EXPECT_FALSE(tp.crosses_nodes);
  EXPECT_DOUBLE_EQ(tp.bus_bw_bytes_per_s, 450e9 * 0.8);
}

TEST(Topology, DataGroupAcrossNodesRidesTheNics) {
  ClusterSpec c = load_cluster("dgx-h100-80gb");
  Topology topo(c, 64);
  // One member per node: one 400 Gb/s NIC each.
  GroupLinks one = topo.group_links({0, 8, 16, 24, 32, 40, 48, 56});
  EXPECT_TRUE(one.crosses_nodes);
  EXPECT_DOUBLE_EQ(one.bus_bw_bytes_per_s, 50e9 * 0.9);
  // Eight members per node: eight NICs per node, capped by NVLink.
  std::vector<int64_t> all;
  for (int64_t i = 0; i < 16; ++i) all.push_back(i);
  GroupLinks eight = topo.group_links(all);
  EXPECT_DOUBLE_EQ(eight.bus_bw_bytes_per_s, std::min(8 * 50e9 * 0.9, 450e9 * 0.8));
  EXPECT_GT(eight.latency_s, topo.group_links({0, 1}).latency_s);
}

TEST(Topology, OversubscribedSpineSlowsGroupsThatSpanLeaves) {
  ClusterSpec c = load_cluster("dgx-a100-80gb");
  c.nodes_per_leaf = 2;
  c.oversubscription = 4;
  Topology topo(c, 32);
  GroupLinks same_leaf = topo.group_links({0, 8});
  GroupLinks across = topo.group_links({0, 16});
  EXPECT_DOUBLE_EQ(same_leaf.bus_bw_bytes_per_s, 25e9 * 0.9);
  EXPECT_DOUBLE_EQ(across.bus_bw_bytes_per_s, 25e9 / 4 * 0.9);
}

TEST(Topology, SharedNicIsSharedByItsDevices) {
  ClusterSpec c = load_cluster(SEXTANT_EXAMPLES "/clusters/two-node-a100-pcie.json");
  Topology topo(c, 8);
  GroupLinks dp = topo.group_links({0, 1, 2, 3, 4, 5, 6, 7});  // 4 per node, one NIC each node
  EXPECT_DOUBLE_EQ(dp.bus_bw_bytes_per_s, 100e9 / 8);
}

TEST(Topology, DevicesMustBeWholeNodesBeyondOne) {
  ClusterSpec c = load_cluster("dgx-a100-80gb");
  EXPECT_NO_THROW(Topology(c, 4));
  EXPECT_THROW(Topology(c, 12), InputError);
  EXPECT_THROW(Topology(c, 0), InputError);
  EXPECT_THROW(Topology(c, c.max_devices() + 8), InputError);
}

TEST(Collective, NcclTestsBusFactors) {
  EXPECT_DOUBLE_EQ(bus_factor(Collective::all_reduce, 8), 2.0 * 7 / 8);
  EXPECT_DOUBLE_EQ(bus_factor(Collective::all_gather, 8), 7.0 / 8);
  EXPECT_DOUBLE_EQ(bus_factor(Collective::reduce_scatter, 4), 3.0 / 4);
  GroupLinks links{8, 100e9, 0.0, false};
  EXPECT_DOUBLE_EQ(collective_time_s(Collective::all_reduce, 1e9, links), 1e9 * 2 * 7 / 8 / 100e9);
  EXPECT_EQ(collective_time_s(Collective::all_reduce, 1e9, GroupLinks{}), 0.0);
}

}  // namespace
}  // namespace sextant
