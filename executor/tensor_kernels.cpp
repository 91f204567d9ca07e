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

CrossEntropyPartial ce_forward_partial(const torch::Tensor& logits, const torch::Tensor& targets, int64_t vocab_start) {
  TORCH_CHECK(logits.dim() == 2 && logits.is_contiguous() && targets.scalar_type() == torch::kLong &&
                  targets.is_contiguous() && targets.numel() == logits.size(0),
              "ce_forward_partial: logits [tokens, vocab] contiguous and int64 targets [tokens]");
  const int64_t tokens = logits.size(0), vocab = logits.size(1);
  const auto stats = logits.options().dtype(torch::kFloat);
  CrossEntropyPartial out{torch::empty({tokens}, stats), torch::empty({tokens}, stats), torch::empty({tokens}, stats)};
  const kernels::DType dtype = kernel_dtype(logits.scalar_type());
  if (on_gpu(logits)) {
#ifdef SEXTANT_HAVE_CUDA
    kernels::ce_forward_partial(logits.data_ptr(), dtype, tokens, vocab, targets.data_ptr<int64_t>(), vocab_start,
                                out.local_max.data_ptr<float>(), out.local_sum_exp.data_ptr<float>(),
                                out.target_logit.data_ptr<float>(), /*stream=*/nullptr);
#endif
    return out;
  }
  kernels::ce_forward_partial_reference(logits.data_ptr(), dtype, tokens, vocab, targets.data_ptr<int64_t>(),
                                        vocab_start, out.local_max.data_ptr<float>(),
                                        out.local_sum_exp.data_ptr<float>(), out.target_logit.data_ptr<float>());
  return out;
}

torch::Tensor ce_rescale(const CrossEntropyPartial& partial, const torch::Tensor& global_max) {
  const int64_t tokens = global_max.numel();
  torch::Tensor sum_exp = torch::empty_like(global_max);
  if (on_gpu(global_max)) {
#ifdef SEXTANT_HAVE_CUDA
    kernels::ce_rescale(partial.local_max.data_ptr<float>(), partial.local_sum_exp.data_ptr<float>(),
                        global_max.data_ptr<float>(), tokens, sum_exp.data_ptr<float>(), /*stream=*/nullptr);
#endif
    return sum_exp;
  }
  kernels::ce_rescale_reference(partial.local_max.data_ptr<float>(), partial.local_sum_exp.data_ptr<float>(),
                                global_max.data_ptr<float>(), tokens, sum_exp.data_ptr<float>());
  return sum_exp;
}

torch::Tensor ce_loss(const torch::Tensor& global_max, const torch::Tensor& sum_exp, const torch::Tensor& target_logit) {
  const int64_t tokens = global_max.numel();
  torch::Tensor loss = torch::empty_like(global_max);
  if (on_gpu(global_max)) {
#ifdef SEXTANT_HAVE_CUDA
    kernels::ce_loss(global_max.data_ptr<float>(), sum_exp.data_ptr<float>(), target_logit.data_ptr<float>(), tokens,
                     loss.data_ptr<float>(), /*stream=*/nullptr);
#endif
    return loss;
  }
  kernels::ce_loss_reference(global_max.data_ptr<float>(), sum_exp.data_ptr<float>(), target_logit.data_ptr<float>(),
                             tokens, loss.data_ptr<float>());
  return loss;
}

torch::Tensor ce_backward(const torch::Tensor& logits, const torch::Tensor& targets, int64_t vocab_start,
                          const torch::Tensor& global_max, const torch::Tensor& sum_exp,
                          const torch::Tensor& grad_loss) {
  const int64_t tokens = logits.size(0), vocab = logits.size(1);
  const torch::Tensor g = grad_loss.to(torch::kFloat).contiguous();
  torch::Tensor dlogits = torch::empty_like(logits);
  const kernels::DType dtype = kernel_dtype(logits.scalar_type());
  if (on_gpu(logits)) {
#ifdef SEXTANT_HAVE_CUDA
    kernels::ce_backward(logits.data_ptr(), dtype, tokens, vocab, targets.data_ptr<int64_t>(), vocab_start,
                         global_max.data_ptr<float>(), sum_exp.data_ptr<float>(), g.data_ptr<float>(),
                         dlogits.data_ptr(), /*stream=*/nullptr);
#endif
    return dlogits;
  }
  kernels::ce_backward_reference(logits.data_ptr(), dtype, tokens, vocab, targets.data_ptr<int64_t>(), vocab_start,
                                 global_max.data_ptr<float>(), sum_exp.data_ptr<float>(), g.data_ptr<float>(),
                                 dlogits.data_ptr());
  return dlogits;
}

torch::Tensor unscale_on_device(const std::vector<torch::Tensor>& tensors, float inv_scale) {
  if (!tensors.empty() && on_gpu(tensors.front())) {
#ifdef SEXTANT_HAVE_CUDA
    torch::Tensor flag = torch::zeros({1}, tensors.front().options().dtype(torch::kInt));
    kernels::unscale(spans(tensors), inv_scale, flag.data_ptr<int>(), /*stream=*/nullptr);
    return flag.to(torch::kDouble).reshape({});
#endif
  }
  return torch::tensor(kernels::unscale_reference(spans(tensors), inv_scale) ? 1.0 : 0.0, torch::kDouble);
}

// On the CPU: summed in the tensor's dtype, then widened.
torch::Tensor square_sum_on_device(const torch::Tensor& tensor) {
  if (on_gpu(tensor)) {
#ifdef SEXTANT_HAVE_CUDA
    const std::vector<kernels::TensorSpan> one = spans({tensor});
    torch::Tensor sum = torch::zeros({1}, tensor.options().dtype(torch::kDouble));
    torch::Tensor workspace =
        torch::empty({kernels::multi_tensor_chunks(one)}, tensor.options().dtype(torch::kDouble));
    kernels::square_sum(one, sum.data_ptr<double>(), workspace.data_ptr<double>(), /*stream=*/nullptr);
    return sum.reshape({});
#endif
  }
  return tensor.pow(2).sum().to(torch::kDouble);
}

}  // namespace sextant
