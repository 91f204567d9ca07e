// Tensor-parallel communication as autograd functions (Megatron-LM's conjugate pairs)
// and the vocab-parallel cross-entropy. Activations are [s, b, h]: sequence first, so
// sequence parallelism splits dimension 0.
#pragma once

#include <torch/torch.h>

#include "executor/comm.h"

namespace sextant {

// f: identity forward, all-reduce backward (input of a column-parallel linear).
torch::Tensor copy_to_tp(const torch::Tensor& x, Comm& tp);
// g: all-reduce forward, identity backward (output of a row-parallel linear).
torch::Tensor reduce_from_tp(const torch::Tensor& x, Comm& tp);
// Sequence parallel: all-gather along dim 0 forward, reduce-scatter backward.
torch::Tensor gather_from_sp(const torch::Tensor& x, Comm& tp);
// Sequence parallel: reduce-scatter along dim 0 forward, all-gather backward.
torch::Tensor reduce_scatter_to_sp(const torch::Tensor& x, Comm& tp);
// This rank's slice of dim 0 (forward), all-gather backward.
torch::Tensor scatter_to_sp(const torch::Tensor& x, Comm& tp);

// Per-token loss of logits sharded over the vocabulary: logits [n, V/tp] hold vocabulary
// entries [vocab_start, vocab_start + V/tp); targets [n] are global token ids. Logits in
// fp32, bf16 or fp16 give an fp32 loss (computed in fp32 from the 16-bit logits, which
// are all backward keeps); float64 logits give a float64 loss.
torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                           int64_t vocab_start, Comm& tp);

}  // namespace sextant
