// Running one layer (or the attention core) under activation recompute and/or ZeRO-3.
//
//   recompute: forward without keeping activations (only the inputs); backward runs the
//              forward again with gradients on, then backpropagates through it.
//   sharded:   optimizer hooks (ShardedParams) run around the layer's forward and backward.
//
// Without either, the layer runs as plain autograd.
#pragma once

#include <functional>
#include <vector>

#include <torch/torch.h>

namespace sextant {

// What the optimizer does around a layer: ZeRO-3 gathers the parameters before the
// layer's forward and backward and releases them after; under every stage the gradients
// are taken out of the parameters (summed in fp32, reduced over dp) as soon as the
// layer's backward is done.
class ShardedParams {
 public:
  virtual ~ShardedParams() = default;
  virtual void before_use() = 0;
  virtual void after_use() = 0;
  virtual void after_backward() = 0;
};

struct LayerRun {
  std::function<torch::Tensor(const std::vector<torch::Tensor>&)> forward;
  bool recompute = false;
  ShardedParams* sharded = nullptr;
};

// Up to three inputs (the attention core takes q, k, v).
torch::Tensor run_layer(const LayerRun& run, const std::vector<torch::Tensor>& inputs);

}  // namespace sextant
