// Our kernels (kernels/) on LibTorch tensors: the CUDA kernel for tensors on a GPU, its
// CPU reference otherwise. The one place the executor chooses between them. Kernels run
// on the legacy default stream, the one LibTorch's own ops use unless told otherwise.
#pragma once

#include <vector>

#include <torch/torch.h>

#include "kernels/reference.h"

namespace sextant {

kernels::DType kernel_dtype(torch::ScalarType type);

// AdamW on contiguous fp32 `master`, `m`, `v`, `grad` and `decay` (0/1 mask), in place;
// writes the updated master into `working` (bf16/fp16) when it is defined.
void adamw_step(torch::Tensor& master, torch::Tensor& m, torch::Tensor& v, const torch::Tensor& grad,
                const torch::Tensor& decay, const kernels::AdamWArgs& args, const torch::Tensor& working);
// The same on contiguous fp64 CPU tensors (`execute --fp64`): the reference's double instantiation.
void adamw_step(torch::Tensor& master, torch::Tensor& m, torch::Tensor& v,
                const torch::Tensor& grad, const torch::Tensor& decay,
                const kernels::AdamWArgsOf<double>& args);

// Scales every fp32 tensor in place by inv_scale; returns a float64 scalar on the tensors'
// device, 1 if any element is inf or NaN, else 0.
torch::Tensor unscale_on_device(const std::vector<torch::Tensor>& tensors, float inv_scale);
// Σ x² over a contiguous fp32 (or, on the CPU, fp64) tensor, as a float64 scalar on its
// device. Both leave the result on the device for the trainer to read once per step.
torch::Tensor square_sum_on_device(const torch::Tensor& tensor);

// The vocab-parallel cross-entropy of kernels/reference.h on tensors: logits [tokens,
// vocab_local] contiguous in fp32/bf16/fp16, targets [tokens] int64, every statistic fp32
// [tokens]. One pass over the logits forward and one backward, whatever the dtype.
struct CrossEntropyPartial {
  torch::Tensor local_max, local_sum_exp, target_logit;
};
CrossEntropyPartial ce_forward_partial(const torch::Tensor& logits, const torch::Tensor& targets, int64_t vocab_start);
// sum_exp rescaled from this shard's max to the global one.
torch::Tensor ce_rescale(const CrossEntropyPartial& partial, const torch::Tensor& global_max);
torch::Tensor ce_loss(const torch::Tensor& global_max, const torch::Tensor& sum_exp, const torch::Tensor& target_logit);
// dlogits in the logits' dtype.
torch::Tensor ce_backward(const torch::Tensor& logits, const torch::Tensor& targets, int64_t vocab_start,
                          const torch::Tensor& global_max, const torch::Tensor& sum_exp,
                          const torch::Tensor& grad_loss);

}  // namespace sextant
