// Topology: the devices of a cluster and the links between them, as a Boost.Graph.
// Vertices are devices, per-node switches (NVSwitch or shared memory), NICs, leaf
// switches and one spine; edges carry bandwidth per direction and latency.
// A group's collective cost comes from the slowest links its members cross.
#pragma once

#include <cstdint>
#include <vector>

#include <boost/graph/adjacency_list.hpp>

#include "cost_model/cluster_spec.h"
#include "cost_model/collective.h"

namespace sextant {

enum class VertexKind { device, node_switch, nic, leaf, spine };

struct TopoVertex {
  VertexKind kind = VertexKind::device;
  int64_t index = 0;  // device, node, NIC, leaf index
};

struct TopoEdge {
  double bw_bytes_per_s = 0;
  double latency_s = 0;
};

using TopoGraph =
    boost::adjacency_list<boost::vecS, boost::vecS, boost::undirectedS, TopoVertex, TopoEdge>;

class Topology {
 public:
  // The first `devices` devices of the cluster: whole nodes, or part of the first node.
  // Throws InputError when the cluster does not have them or they are not whole nodes.
  Topology(const ClusterSpec& cluster, int64_t devices);

  int64_t devices() const { return devices_; }
  int64_t nodes() const { return nodes_; }
  int64_t node_of(int64_t device) const { return device / devices_per_node_; }
  const TopoGraph& graph() const { return graph_; }

  // Bus bandwidth and latency for a collective among `group` (device indices).
  // Intra-node: the device-to-switch links. Across nodes: per node, the NICs its members
  // use (one ring channel each, as NCCL spreads channels over NICs), each limited by the
  // slowest link on its way up the fat tree (leaf up-links shared per NIC when the group
  // spans leaves); the group runs at its slowest node.
  GroupLinks group_links(const std::vector<int64_t>& group) const;

 private:
  using Vertex = TopoGraph::vertex_descriptor;
  double nic_path_bw(Vertex nic, bool spans_leaves) const;
  double nic_path_latency(Vertex nic, bool spans_leaves) const;
  Vertex neighbor_of_kind(Vertex v, VertexKind kind, double* bw, double* latency) const;

  TopoGraph graph_;
  const ClusterSpec& cluster_;
  int64_t devices_ = 0, devices_per_node_ = 1, nodes_ = 1;
  std::vector<Vertex> device_vertex_, node_switch_vertex_, nic_vertex_;
};

}  // namespace sextant
