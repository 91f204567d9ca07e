// Topology construction and the bottleneck-link rule for collectives.
#include "cost_model/topology.h"

#include <algorithm>
#include <limits>

#include "cost_model/error.h"
#include "cost_model/measured_profile.h"

namespace sextant {

Topology::Topology(const ClusterSpec& cluster, int64_t devices) : cluster_(cluster) {
  devices_per_node_ = cluster.devices_per_node;
  if (devices < 1 || devices > cluster.max_devices())
    throw InputError("--gpus", "", "cluster " + cluster.name + " has " +
                                       std::to_string(cluster.max_devices()) +
                                       " devices; asked for " + std::to_string(devices));
  if (devices > devices_per_node_ && devices % devices_per_node_ != 0)
    throw InputError("--gpus", "", "more than one node must be whole nodes: a multiple of " +
                                       std::to_string(devices_per_node_) + " (got " +
                                       std::to_string(devices) + ")");
  devices_ = devices;
  nodes_ = (devices + devices_per_node_ - 1) / devices_per_node_;

  const int64_t nics = cluster.nics_per_node;
  const int64_t leaves = (nodes_ + cluster.nodes_per_leaf - 1) / cluster.nodes_per_leaf;
  const double uplink_bw = static_cast<double>(cluster.nodes_per_leaf * nics) *
                           cluster.nic_bw_bytes_per_s / cluster.oversubscription;
  Vertex spine = boost::add_vertex(TopoVertex{VertexKind::spine, 0}, graph_);
  std::vector<Vertex> leaf_vertex;
  for (int64_t l = 0; l < leaves; ++l) {
    leaf_vertex.push_back(boost::add_vertex(TopoVertex{VertexKind::leaf, l}, graph_));
    boost::add_edge(leaf_vertex.back(), spine, TopoEdge{uplink_bw, cluster.inter_latency_s / 2},
                    graph_);
  }
  for (int64_t n = 0; n < nodes_; ++n) {
    node_switch_vertex_.push_back(boost::add_vertex(TopoVertex{VertexKind::node_switch, n}, graph_));
    for (int64_t i = 0; i < nics && nodes_ > 1; ++i) {
      nic_vertex_.push_back(boost::add_vertex(TopoVertex{VertexKind::nic, n * nics + i}, graph_));
      boost::add_edge(nic_vertex_.back(), leaf_vertex[static_cast<size_t>(n / cluster.nodes_per_leaf)],
                      TopoEdge{cluster.nic_bw_bytes_per_s, cluster.inter_latency_s / 2}, graph_);
    }
  }
  for (int64_t d = 0; d < devices_; ++d) {
    const int64_t n = node_of(d);
    device_vertex_.push_back(boost::add_vertex(TopoVertex{VertexKind::device, d}, graph_));
    boost::add_edge(device_vertex_.back(), node_switch_vertex_[static_cast<size_t>(n)],
                    TopoEdge{cluster.intra_bw_bytes_per_s, cluster.intra_latency_s}, graph_);
    if (nodes_ > 1) {  // each device reaches the NIC it is closest to (GPU-NIC affinity)
      const int64_t local = d % devices_per_node_;
      const int64_t nic = n * nics + local * nics / devices_per_node_;
      boost::add_edge(device_vertex_.back(), nic_vertex_[static_cast<size_t>(nic)],
                      TopoEdge{cluster.nic_bw_bytes_per_s, 0.0}, graph_);
    }
  }
}

Topology::Vertex Topology::neighbor_of_kind(Vertex v, VertexKind kind, double* bw,
                                            double* latency) const {
  for (auto [e, end] = boost::out_edges(v, graph_); e != end; ++e) {
    Vertex u = boost::target(*e, graph_);
    if (graph_[u].kind == kind) {
      if (bw) *bw = graph_[*e].bw_bytes_per_s;
      if (latency) *latency = graph_[*e].latency_s;
      return u;
    }
  }
  return std::numeric_limits<Vertex>::max();
}

double Topology::nic_path_bw(Vertex nic, bool spans_leaves) const {
  double nic_bw = 0, uplink_bw = 0;
  Vertex leaf = neighbor_of_kind(nic, VertexKind::leaf, &nic_bw, nullptr);
  if (!spans_leaves) return nic_bw;
  neighbor_of_kind(leaf, VertexKind::spine, &uplink_bw, nullptr);
  // The leaf's up-links are shared by every NIC below it, all busy in a data-parallel step.
  const double per_nic_uplink =
      uplink_bw / static_cast<double>(cluster_.nodes_per_leaf * cluster_.nics_per_node);
  return std::min(nic_bw, per_nic_uplink);
}

double Topology::nic_path_latency(Vertex nic, bool spans_leaves) const {
  double nic_latency = 0, uplink_latency = 0;
  Vertex leaf = neighbor_of_kind(nic, VertexKind::leaf, nullptr, &nic_latency);
  if (spans_leaves) neighbor_of_kind(leaf, VertexKind::spine, nullptr, &uplink_latency);
  return 2 * (nic_latency + uplink_latency);  // up to the common switch and down again
}

GroupLinks Topology::group_links(const std::vector<int64_t>& group) const {
  GroupLinks links;
  links.size = static_cast<int64_t>(group.size());
  if (group.size() <= 1) return links;
  std::vector<int64_t> members = group;
  std::sort(members.begin(), members.end());  // device order is node order
  const int64_t first_node = node_of(members.front()), last_node = node_of(members.back());
  links.crosses_nodes = first_node != last_node;
  const bool spans_leaves =
      first_node / cluster_.nodes_per_leaf != last_node / cluster_.nodes_per_leaf;
  double bw = std::numeric_limits<double>::infinity();
  double latency = 0;
  std::vector<Vertex> nics;
  for (size_t begin = 0; begin < members.size();) {
    size_t end = begin;
    while (end < members.size() && node_of(members[end]) == node_of(members[begin])) ++end;
    double device_to_nic_bw = std::numeric_limits<double>::infinity();
    nics.clear();
    for (size_t i = begin; i < end; ++i) {
      const Vertex device = device_vertex_[static_cast<size_t>(members[i])];
      if (end - begin > 1) {  // ring hops inside the node
        double link_bw = 0, link_latency = 0;
        neighbor_of_kind(device, VertexKind::node_switch, &link_bw, &link_latency);
        bw = std::min(bw, link_bw * cluster_.intra_collective_efficiency);
        latency = std::max(latency, link_latency);
      }
      if (links.crosses_nodes) {
        double b = 0;
        nics.push_back(neighbor_of_kind(device, VertexKind::nic, &b, nullptr));
        device_to_nic_bw = std::min(device_to_nic_bw, b);
      }
    }
    if (links.crosses_nodes) {
      std::sort(nics.begin(), nics.end());
      nics.erase(std::unique(nics.begin(), nics.end()), nics.end());
      double node_capacity = 0;
      for (Vertex nic : nics) {
        node_capacity += std::min(device_to_nic_bw, nic_path_bw(nic, spans_leaves));
        latency = std::max(latency, nic_path_latency(nic, spans_leaves));
      }
      bw = std::min(bw, node_capacity * cluster_.inter_collective_efficiency);
    }
    begin = end;
  }
  links.bus_bw_bytes_per_s = bw;
  links.latency_s = latency;
  if (!links.crosses_nodes && cluster_.device.measured)
    for (Collective op : {Collective::all_reduce, Collective::reduce_scatter, Collective::all_gather,
                          Collective::broadcast, Collective::send_recv})
      links.measured[static_cast<int>(op)] = cluster_.device.measured->collective(op, links.size);
  return links;
}

}  // namespace sextant
