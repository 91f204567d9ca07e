// Fused norms and activations as LibTorch autograd ops, on tensors of any leading shape
// (the last dimension is `hidden` or `n`). Each picks its implementation by the input:
//   CUDA tensor, fp32/bf16/fp16: our CUDA kernel (kernels/kernels.h), on the legacy default
//     stream as tensor_kernels.cpp does;
//   CPU tensor, fp32/bf16/fp16: the kernel's CPU reference (kernels/reference.h), so CI
//     runs the same glue the GPU does;
//   fp64 (`execute --fp64`): the plain LibTorch expression model.cpp computes, with
//     LibTorch's own autograd.
// The kernels compute in fp32 and take every operand in the input's dtype, so parameters
// are cast to it; their gradients (summed over rows in fp32) come back in the parameter's
// own dtype.
#pragma once

#include <torch/torch.h>

namespace sextant {

// x·rstd·weight, rstd = 1/sqrt(mean(x²) + eps) over the last dimension; weight [hidden].
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

// (x - mean)·rstd·weight + bias over the last dimension; weight and bias [hidden].
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight,
                         const torch::Tensor& bias, double eps);

// gelu(x + bias) with GELU's tanh approximation (torch::gelu(·, "tanh")); bias [n], or
// undefined for none.
torch::Tensor bias_gelu(const torch::Tensor& x, const torch::Tensor& bias);

// silu(gate)·up, element by element; gate and up of one shape and dtype.
torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up);

}  // namespace sextant
