// Memory of one layer on one rank for one micro-batch, itemised as the executor's own
// tensors (executor/model.cpp, fused_ops.cpp, tp_ops.cpp, layer_function.cpp): what
// autograd keeps from forward to backward, and the transient bytes the layer's backward
// needs on top of everything kept. Every term names the tensor it stands for.
#pragma once

#include "cost_model/layer_cost.h"

namespace sextant {

// Bytes one tensor of `bytes` takes from the allocator the executor measures: exact on the
// CPU (executor/counting_allocator.cpp counts requested bytes); on a GPU, PyTorch's
// CUDACachingAllocator rounds every request up to a multiple of 512 bytes (kMinBlockSize,
// c10/cuda/CUDACachingAllocator.cpp round_size) and its allocated_bytes statistic, which
// the executor reads, counts the rounded block.
double allocation_bytes(const DeviceSpec& device, double bytes);

// True when the executor runs attention with LibTorch's fused kernel (executor/model.cpp,
// kHaveFusedAttention): flash attention asked for, on a GPU (LibTorch 2 with CUDA). The CPU
// executor is built against LibTorch 1.13, which has none: it recomputes the explicit core.
bool fused_attention(const LayerContext& ctx);

// Bytes a transformer block keeps from forward to backward (see layer_memory.cpp).
// (block_activation_bytes, in layer_cost.h, is the same function.)
// Transient bytes while the block's backward runs, on top of what it keeps: the highest of
// its backward's moments (MLP, attention, end), each with the leaf gradients of the block's
// `params` taken by then; under full recompute also the rebuilt activations.
double block_workspace_bytes(const LayerContext& ctx, double params);

double embedding_activation_bytes(const LayerContext& ctx);
double embedding_workspace_bytes(const LayerContext& ctx, double params);
double head_activation_bytes(const LayerContext& ctx);
double head_workspace_bytes(const LayerContext& ctx, double params);

}  // namespace sextant
