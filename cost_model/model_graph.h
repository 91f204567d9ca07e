// ModelGraph: the model as a Boost.Graph DAG of layers — embedding, blocks, head,
// loss — each with its parameter count and forward FLOPs per token. The planner cuts
// pipeline stages from it in topological order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <boost/graph/adjacency_list.hpp>

#include "cost_model/model_spec.h"

namespace sextant {

enum class LayerKind { embedding, block, head, loss };
const char* to_string(LayerKind kind);

struct LayerNode {
  LayerKind kind = LayerKind::block;
  int64_t index = 0;  // block number; 0 for the others
  std::string name;
  int64_t params = 0;
  double fwd_flops_per_token = 0;  // model FLOPs (matmuls), full layer before any split
};

using LayerGraph = boost::adjacency_list<boost::vecS, boost::vecS, boost::bidirectionalS, LayerNode>;

class ModelGraph {
 public:
  explicit ModelGraph(const ModelSpec& model);
  const LayerGraph& graph() const { return graph_; }
  // Layers in topological order (embedding, block 0..L-1, head, loss).
  const std::vector<LayerNode>& layers() const { return ordered_; }
  int64_t total_params() const;
  // Model FLOPs of one forward pass per token (sum over layers).
  double fwd_flops_per_token() const;

 private:
  LayerGraph graph_;
  std::vector<LayerNode> ordered_;
};

// Forward matmul FLOPs per token of one block at sequence length seq_len: 2 per
// multiply-add of every weight a token meets, plus attention scores and context
// (2·s·q_size each). Counted over the full s×s score matrix, as Megatron-LM does.
double block_fwd_flops_per_token(const ModelSpec& model);
double head_fwd_flops_per_token(const ModelSpec& model);

}  // namespace sextant
