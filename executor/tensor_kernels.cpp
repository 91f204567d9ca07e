// CUDA kernel or CPU reference, by the tensors' device (see tensor_kernels.h).
#include "executor/tensor_kernels.h"

#include <stdexcept>

#ifdef SEXTANT_HAVE_CUDA
#include "kernels/kernels.h"
#endif

namespace sextant {
namespace {

// True for GPU tensors, which only a build with the CUDA kernels can handle.
bool on_gpu(const torch::Tensor& t) {
#ifndef SEXTANT_HAVE_CUDA
  if (t.is_cuda()) throw std::runtime_error("tensors on a GPU, but this build has no CUDA kernels");
#endif
  return t.is_cuda();
}

std::vector<kernels::TensorSpan> spans(const std::vector<torch::Tensor>& tensors) {
  std::vector<kernels::TensorSpan> out;
  for (const torch::Tensor& t : tensors) out.push_back({t.data_ptr<float>(), t.numel()});
  return out;
}

}  // namespace

kernels::DType kernel_dtype(torch::ScalarType type) {
  if (type == torch::kBFloat16) return kernels::DType::bf16;
  if (type == torch::kHalf) return kernels::DType::fp16;
  return kernels::DType::fp32;
}

void adamw_step(torch::Tensor& master, torch::Tensor& m, torch::Tensor& v, const torch::Tensor& grad,
                const torch::Tensor& decay, const kernels::AdamWArgs& args, const torch::Tensor& working) {
  void* out = working.defined() ? working.data_ptr() : nullptr;
  const kernels::DType out_dtype = working.defined() ? kernel_dtype(working.scalar_type()) : kernels::DType::fp32;
  if (on_gpu(master)) {
#ifdef SEXTANT_HAVE_CUDA
    kernels::adamw(master.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), grad.data_ptr<float>(),
                   decay.data_ptr<float>(), master.numel(), args, out, out_dtype, /*stream=*/nullptr);
#endif
    return;
  }
  kernels::adamw_reference(master.data_ptr<float>(), m.data_ptr<float>(), v.data_ptr<float>(), grad.data_ptr<float>(),
                           decay.data_ptr<float>(), master.numel(), args, out, out_dtype);
}

void adamw_step(torch::Tensor& master, torch::Tensor& m, torch::Tensor& v,
                const torch::Tensor& grad, const torch::Tensor& decay,
                const kernels::AdamWArgsOf<double>& args) {
  if (on_gpu(master))
    throw std::runtime_error("fp64 AdamW runs on the CPU only (the CUDA kernels are fp32)");
  kernels::adamw_reference(master.data_ptr<double>(), m.data_ptr<double>(), v.data_ptr<double>(),
                           grad.data_ptr<double>(), decay.data_ptr<double>(), master.numel(), args);
}

bool unscale(const std::vector<torch::Tensor>& tensors, float inv_scale) {
  if (tensors.empty()) return false;
  if (on_gpu(tensors.front())) {
#ifdef SEXTANT_HAVE_CUDA
    torch::Tensor flag = torch::zeros({1}, tensors.front().options().dtype(torch::kInt));
    kernels::unscale(spans(tensors), inv_scale, flag.data_ptr<int>(), /*stream=*/nullptr);
    return flag.item<int>() != 0;
#endif
  }
  return kernels::unscale_reference(spans(tensors), inv_scale);
}

double square_sum(const torch::Tensor& tensor) {
  if (on_gpu(tensor)) {
#ifdef SEXTANT_HAVE_CUDA
    torch::Tensor sum = torch::zeros({1}, tensor.options().dtype(torch::kDouble));
    kernels::square_sum(spans({tensor}), sum.data_ptr<double>(), /*stream=*/nullptr);
    return sum.item<double>();
#endif
  }
  return tensor.pow(2).sum().item<double>();
}

torch::Tensor unscale_on_device(const std::vector<torch::Tensor>& tensors, float inv_scale) {
  if (!tensors.empty() && on_gpu(tensors.front())) {
#ifdef SEXTANT_HAVE_CUDA
    torch::Tensor flag = torch::zeros({1}, tensors.front().options().dtype(torch::kInt));
    kernels::unscale(spans(tensors), inv_scale, flag.data_ptr<int>(), /*stream=*/nullptr);
    return flag.to(torch::kDouble).reshape({});
#endif
  }
  return torch::tensor(unscale(tensors, inv_scale) ? 1.0 : 0.0, torch::kDouble);
}

// The CPU path rounds as square_sum does: summed in the tensor's dtype, then widened.
torch::Tensor square_sum_on_device(const torch::Tensor& tensor) {
  if (on_gpu(tensor)) {
#ifdef SEXTANT_HAVE_CUDA
    torch::Tensor sum = torch::zeros({1}, tensor.options().dtype(torch::kDouble));
    kernels::square_sum(spans({tensor}), sum.data_ptr<double>(), /*stream=*/nullptr);
    return sum.reshape({});
#endif
  }
  return tensor.pow(2).sum().to(torch::kDouble);
}

}  // namespace sextant
