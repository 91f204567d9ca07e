// Parameters in flat fp32 buffers (fp64 under --fp64), ZeRO 0-3 over the data-parallel
// group, and AdamW with weight decay and global-norm clipping across every shard.
//
// Each layer's parameters form up to two groups (split over tp, or the same on every tp
// rank), each one flat buffer padded to a multiple of dp; a group is also the gradient
// bucket. This rank owns elements [r·P/dp, (r+1)·P/dp) of a group for ZeRO >= 1.
// MoE layers add a group of the router and shared-expert gate (replicated over tp,
// gradients summed over tp), and one of this rank's routed experts, whose "dp" is the
// expert-dp group (size dp/ep): everything below then holds over that group instead.
//   ZeRO-0: every rank keeps everything; gradients all-reduced after the last micro-batch.
//   ZeRO-1: optimizer states for the owned shard; gradients reduce-scattered after the last
//           micro-batch; updated shards all-gathered.
//   ZeRO-2: as 1, but each layer's gradients are reduce-scattered right after its backward
//           in every micro-batch and accumulated in the shard; full gradients are freed.
//   ZeRO-3: as 2, and the parameters themselves are kept as shards, gathered for each
//           layer's forward and backward and released after.
//
// Gradients leave the autograd leaves after every layer's backward, in every micro-batch
// and under every stage (after_backward), and are summed in the master dtype:
//   ZeRO-0, and any stage at dp = 1: straight into grad_ (full), each parameter's
//     gradient added into its slice; the all-reduce of ZeRO-0 starts, asynchronously, as
//     soon as the last micro-batch's backward of the group is done.
//   ZeRO-1 (dp > 1): into a full accumulator accum_, reduce-scattered into grad_ in the same
//     way after the last micro-batch.
//   ZeRO-2/3 (dp > 1): a padded flat copy per micro-batch is reduce-scattered; at most one
//     reduction per group is in flight (the previous one is waited for and summed before
//     the next starts), so micro-batches' gradients never pile up.
// At dp = 1 no collective runs and no flat copy is made: every stage costs what ZeRO-0 does.
//
// Mixed precision (working dtype bf16 or fp16): the flat buffers above hold the fp32
// master weights; the model computes with a 16-bit working copy (the autograd leaves),
// which the AdamW step writes (kernels/reference.h, the CPU twin of the CUDA kernel) and
// ZeRO-1/2 all-gather in 16 bits. Gradients are accumulated and reduced in fp32: a
// micro-batch's 16-bit gradients are only ever summed within that micro-batch.
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
  // Replicated over tp with gradients that are partial sums over tp (ParamSpec::tp_partial_grad).
  bool tp_partial_grad() const { return specs_.front().tp_partial_grad; }
  bool tied_copy() const { return tied_copy_; }

  void before_use() override;      // ZeRO-3: gather
  void after_use() override;       // ZeRO-3: release
  // Moves this micro-batch's gradients out of the parameters (see the top of the file);
  // after the last micro-batch's, ZeRO-0/1 start their reduction. ZeRO-3: then release.
  void after_backward() override;

  // Before a step's first micro-batch: how many there are (after_backward counts them).
  void begin_step(int64_t micro_batches);
  // After the last micro-batch: waits for (or, if not started, runs) the reduction over dp.
  void finish_gradients();
  // The reduced gradient of the elements this rank updates (full for ZeRO-0).
  torch::Tensor& owned_grad() { return grad_; }
  // Adds the sum of squares of owned_grad() this rank contributes to the global norm to
  // `sum` (a float64 scalar on the group's device; nothing is read back).
  void add_grad_square_sum(torch::Tensor& sum, bool count_replicated_here) const;
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
  void add_grads_into(torch::Tensor& flat) const;  // each parameter's gradient into its slice
  void release_grads();
  void reduce_scatter_micro_batch();  // ZeRO-2/3 at dp > 1
  void start_reduction();             // ZeRO-0/1 at dp > 1, after the last micro-batch
  // One micro-batch's gradients out of the parameters: reduce-scattered (ZeRO-2/3, dp > 1)
  // or added into the fp32 accumulator; then released.
  void take_grads();
  // Waits for the reduce-scatter in flight, if any, and adds it into grad_.
  void sum_pending();
  bool reduces_per_micro_batch() const { return zero_ >= 2 && dp_.size() > 1; }
  bool gathers_after_step() const { return (zero_ == 1 || zero_ == 2) && dp_.size() > 1; }
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
  torch::Tensor accum_;    // ZeRO-1 at dp > 1: the full gradient sum over micro-batches
  torch::Tensor pending_;  // ZeRO 2-3 on NCCL: the one reduce-scatter started, not yet summed
  int64_t micro_batches_ = 0, backwards_ = 0;  // of this step: expected, seen by after_backward
  bool reduction_started_ = false;
  torch::Tensor grad_, m_, v_, decay_;
};

// Several groups behaving as one around a layer: the layer's own groups, and a borrowed
// one (the word embedding the head shares when embeddings are tied on one stage), which
// is gathered and released with them but whose gradients are taken by its own layer, so
// each group's after_backward runs once per micro-batch and the head's and embedding's
// contributions are summed by autograd, as in a plain graph.
class GroupSet final : public ShardedParams {
 public:
  explicit GroupSet(std::vector<ParamGroup*> own, ParamGroup* borrowed = nullptr)
      : own_(std::move(own)), borrowed_(borrowed) {}
  void before_use() override;
  void after_use() override;
  void after_backward() override;

 private:
  std::vector<ParamGroup*> own_;
  ParamGroup* borrowed_ = nullptr;
};

}  // namespace sextant
