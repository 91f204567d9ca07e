// This rank's pipeline stage: its chunks of the model (from the plan's partition), their
// parameters in ZeRO groups, and one training step's forward and backward walked along
// the schedule table (cost_model/schedule.h) with activations and gradients passed by
// send/recv between stages.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include <torch/torch.h>

#include "cost_model/estimator.h"
#include "cost_model/layout.h"
#include "cost_model/model_spec.h"
#include "executor/comm.h"
#include "executor/layer_function.h"
#include "executor/model.h"
#include "executor/moe.h"
#include "executor/optimizer.h"
#include "executor/step_clock.h"

namespace sextant {

class Stage {
 public:
  Stage(const ModelSpec& model, const ParallelLayout& layout, const std::vector<ChunkSpec>& partition,
        CommGroups& groups, uint64_t seed, torch::ScalarType working_dtype = torch::kFloat,
        torch::Device device = torch::kCPU, bool flash_attention = true);

  // Forward and backward of every micro-batch of one step. tokens: [m, b, s + 1] for this
  // dp rank. Each micro-batch's summed token loss is scaled by loss_scale before backward.
  // Returns the sum of the scaled losses computed here (last stage), else 0, as a float64
  // scalar on the device: nothing is read back to the host inside the step.
  // `clock` (optional) is told which ops are forward and which backward.
  torch::Tensor run_schedule(const torch::Tensor& tokens, double loss_scale, StepClock* clock = nullptr);

  std::vector<std::unique_ptr<ParamGroup>>& groups() { return groups_; }
  // Groups holding the word embedding on the first and last stage (tied, pp > 1).
  const std::vector<ParamGroup*>& tied_groups() const { return tied_groups_; }
  // The MoE load-balancing loss of the last run_schedule's micro-batches, scaled as its
  // return value and counted on tp rank 0 only (a float64 scalar on the device; 0 for a
  // dense model).
  torch::Tensor aux_loss_sum() const;

 private:
  struct Layer {
    LayerKind kind;
    LayerRun run;
    std::unique_ptr<GroupSet> hooks;
  };
  struct Chunk {
    ChunkSpec spec;
    std::vector<Layer> layers;
  };
  void add_layer(Chunk& chunk, LayerKind kind, int64_t index);
  std::vector<ParamGroup*> make_groups(LayerKind kind, int64_t index);
  torch::Tensor forward_chunk(const Chunk& chunk, const torch::Tensor& input, const torch::Tensor& targets);

  const ModelSpec& model_;
  ParallelLayout layout_;
  CommGroups& comm_;
  torch::ScalarType dtype_;  // what the model computes in: fp32, or the bf16/fp16 working copy
  torch::Device device_;
  uint64_t seed_;
  ModelContext ctx_;
  std::vector<Chunk> chunks_;  // by virtual stage
  ParamMap params_;
  std::vector<std::unique_ptr<ParamGroup>> groups_;
  std::vector<ParamGroup*> tied_groups_;
  ParamGroup* embedding_group_ = nullptr;  // the word embedding's group on this rank
  MoeLoss moe_loss_;
};

}  // namespace sextant
