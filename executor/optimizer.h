// Parameters in flat fp32 buffers (fp64 under --fp64), ZeRO 0-3 over the data-parallel
// group, and AdamW with weight decay and global-norm clipping across every shard.
//
// Each layer's parameters form up to two groups (split over tp, or the same on every tp
// rank), each one flat buffer padded to a multiple of dp; a group is also the gradient
// bucket. This rank owns elements [r·P/dp, (r+1)·P/dp) of a group for ZeRO >= 1.
//   ZeRO-0: every rank keeps everything; gradients all-reduced after the last micro-batch.
//   ZeRO-1: optimizer states for the owned shard; gradients reduce-scattered after the last
//           micro-batch; updated shards all-gathered.
//   ZeRO-2: as 1, but each layer's gradients are reduce-scattered right after its backward
//           in every micro-batch and accumulated in the shard; full gradients are freed.
//   ZeRO-3: as 2, and the parameters themselves are kept as shards, gathered for each
//           layer's forward and backward and released after.
//
// Mixed precision (working dtype bf16 or fp16): the flat buffers above hold the fp32
// master weights; the model computes with a 16-bit working copy (the autograd leaves),
// which the AdamW step writes (kernels/reference.h, the CPU twin of the CUDA kernel) and
// ZeRO-1/2 all-gather in 16 bits. Gradients are accumulated and reduced in fp32.
// Under `execute --fp64` (working dtype fp64) everything above is float64 instead: master
// weights, m, v and gradients, with no separate working copy.
#pragma once

#include <cstdint>
#include <vector>

#include <torch/torch.h>

#include "executor/comm.h"
#include "executor/layer_function.h"
#include "executor/model.h"

namespace sextant {

struct AdamConfig {
  double lr = 1e-3;
  double beta1 = 0.9, beta2 = 0.95, eps = 1e-8;
  double weight_decay = 0.1;
  double max_grad_norm = 1.0;
};

class ParamGroup final : public ShardedParams {
 public:
  // `values` are this rank's tp slices of `specs`, in order.
  ParamGroup(std::vector<ParamSpec> specs, const std::vector<torch::Tensor>& values, bool tp_replicated,
             bool tied_copy, Comm& dp, int zero, torch::ScalarType working_dtype = torch::kFloat,
             torch::Device device = torch::kCPU);

  const std::vector<ParamSpec>& specs() const { return specs_; }
  const std::vector<torch::Tensor>& params() const { return params_; }  // autograd leaves
  bool tp_replicated() const { return tp_replicated_; }
  bool tied_copy() const { return tied_copy_; }

  void before_use() override;      // ZeRO-3: gather
  void after_use() override;       // ZeRO-3: release
  // ZeRO-2/3: reduce-scatter into the shard (3: then release); 16-bit ZeRO-0/1: move the
  // micro-batch's gradients into the fp32 accumulator.
  void after_backward() override;

  // After the last micro-batch: ZeRO-0/1 reduce the accumulated gradients over dp.
  void finish_gradients();
  // The reduced gradient of the elements this rank updates (full for ZeRO-0).
  torch::Tensor& owned_grad() { return grad_; }
  // Sum of squares of owned_grad() this rank contributes to the global norm.
  double grad_square_sum(bool count_replicated_here) const;
  // AdamW on the owned elements with gradients scaled by clip_coef; ZeRO-1/2 all-gather.
  void step(const AdamConfig& config, double clip_coef, int64_t step);
  // Drops the reduced gradients without updating anything (a step skipped on overflow).
  void skip_step() { grad_.zero_(); }
  // Checkpoint state: owned parameters, m and v, under names unique on this rank (on the
  // group's device).
  std::vector<std::pair<std::string, torch::Tensor>> state() const;
  // Restores state() (same layout); ZeRO-1/2 all-gather the parameters again.
  void load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state);
  // Full (dp-gathered) values of the parameters, on the CPU, for reports and comparisons.
  std::vector<torch::Tensor> full_values();

 private:
  torch::Tensor flat_grads_of_params() const;
  void point_params_at(const torch::Tensor& flat);
  // Master weights, m, v and gradients: fp32, or fp64 under --fp64.
  torch::ScalarType master_dtype() const { return at_least_fp32(working_dtype_); }
  bool mixed() const { return working_dtype_ != master_dtype(); }
  void refresh_working_copy();  // from the master values, after a step or a restore

  std::vector<ParamSpec> specs_;
  std::vector<std::vector<int64_t>> local_shapes_;
  std::vector<torch::Tensor> params_;
  bool tp_replicated_ = false, tied_copy_ = false;
  Comm& dp_;
  int zero_ = 0;
  torch::ScalarType working_dtype_ = torch::kFloat;
  int64_t numel_ = 0, padded_ = 0;
  torch::Tensor flat_;     // ZeRO 0-2: every master value; ZeRO-3: undefined
  torch::Tensor shard_;    // the owned master elements (a view of flat_ for ZeRO 0-2)
  torch::Tensor working_;  // ZeRO 0-2: what the parameters view (flat_ itself in fp32)
  torch::Tensor accum_;    // 16-bit ZeRO 0-1: fp32 gradient sum over micro-batches
  std::vector<torch::Tensor> pending_;  // ZeRO 2-3 on NCCL: reduce-scatters started, not yet summed
  torch::Tensor grad_, m_, v_, decay_;
};

// Several groups behaving as one around a layer (a layer's two groups, or the head with
// the word embedding it shares when embeddings are tied on one stage).
class GroupSet final : public ShardedParams {
 public:
  explicit GroupSet(std::vector<ParamGroup*> groups) : groups_(std::move(groups)) {}
  void before_use() override;
  void after_use() override;
  void after_backward() override;

 private:
  std::vector<ParamGroup*> groups_;
};

}  // namespace sextant
