// Building the layer DAG and the FLOP conventions shared by every module.
#include "cost_model/model_graph.h"

#include <boost/graph/topological_sort.hpp>

namespace sextant {

const char* to_string(LayerKind kind) {
  switch (kind) {
    case LayerKind::embedding: return "embedding";
    case LayerKind::block: return "block";
    case LayerKind::head: return "head";
    case LayerKind::loss: return "loss";
  }
  return "?";
}

double block_fwd_flops_per_token(const ModelSpec& m) {
  // Weight matrices only (biases and norms are not matmuls): attention, the router, the
  // experts_per_token experts each token visits, and the shared expert with its gate.
  const double h = static_cast<double>(m.hidden_size), f = static_cast<double>(m.ffn_hidden_size);
  const double expert = (m.mlp == MlpKind::swiglu ? 3.0 : 2.0) * h * f;
  const double matmul_weights = h * static_cast<double>(m.q_size() + 2 * m.kv_size()) +
                                static_cast<double>(m.q_size()) * h +
                                expert * static_cast<double>(m.experts_per_token) +
                                (m.is_moe() ? h * static_cast<double>(m.num_experts) : 0.0) +
                                static_cast<double>(m.shared_expert_params());
  const double attention = 2.0 * 2.0 * static_cast<double>(m.seq_len) * static_cast<double>(m.q_size());
  return 2.0 * matmul_weights + attention;
}

double head_fwd_flops_per_token(const ModelSpec& m) {
  return 2.0 * static_cast<double>(m.vocab_size) * static_cast<double>(m.hidden_size);
}

ModelGraph::ModelGraph(const ModelSpec& m) {
  using Vertex = LayerGraph::vertex_descriptor;
  Vertex prev = boost::add_vertex(
      LayerNode{LayerKind::embedding, 0, "embedding", m.embedding_params(), 0.0}, graph_);
  for (int64_t i = 0; i < m.num_layers; ++i) {
    Vertex v = boost::add_vertex(LayerNode{LayerKind::block, i, "block." + std::to_string(i),
                                           m.block_params(), block_fwd_flops_per_token(m)},
                                 graph_);
    boost::add_edge(prev, v, graph_);
    prev = v;
  }
  Vertex head = boost::add_vertex(
      LayerNode{LayerKind::head, 0, "head", m.head_params(), head_fwd_flops_per_token(m)}, graph_);
  boost::add_edge(prev, head, graph_);
  Vertex loss = boost::add_vertex(LayerNode{LayerKind::loss, 0, "loss", 0, 0.0}, graph_);
  boost::add_edge(head, loss, graph_);

  std::vector<Vertex> reversed;
  boost::topological_sort(graph_, std::back_inserter(reversed));
  for (auto it = reversed.rbegin(); it != reversed.rend(); ++it) ordered_.push_back(graph_[*it]);
}

int64_t ModelGraph::total_params() const {
  int64_t total = 0;
  for (const LayerNode& n : ordered_) total += n.params;
  return total;
}

double ModelGraph::fwd_flops_per_token() const {
  double total = 0;
  for (const LayerNode& n : ordered_) total += n.fwd_flops_per_token;
  return total;
}

}  // namespace sextant
