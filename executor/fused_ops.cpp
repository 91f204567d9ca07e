// The fused ops' autograd functions and their dispatch (see fused_ops.h).
#include "executor/fused_ops.h"

#include <stdexcept>
#include <string>

#include "executor/tensor_kernels.h"
#include "kernels/reference.h"

#ifdef SEXTANT_HAVE_CUDA
#include "kernels/kernels.h"
#endif

namespace sextant {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
namespace k = kernels;

// True for GPU tensors, which only a build with the CUDA kernels can handle.
bool on_gpu(const torch::Tensor& t) {
#ifndef SEXTANT_HAVE_CUDA
  if (t.is_cuda()) throw std::runtime_error("tensors on a GPU, but this build has no CUDA kernels");
#endif
  return t.is_cuda();
}

void check_dtype(const torch::Tensor& t, const char* op) {
  const torch::ScalarType type = t.scalar_type();
  if (type != torch::kFloat && type != torch::kBFloat16 && type != torch::kHalf)
    throw std::invalid_argument(std::string(op) + ": tensors of " + c10::toString(type) +
                                "; the fused ops take float32, bfloat16, float16 or float64");
}

// Rows of x seen as [rows, last dimension].
int64_t rows_of(const torch::Tensor& x) {
  return x.size(-1) == 0 ? 0 : x.numel() / x.size(-1);
}

torch::Tensor fp32_empty(const torch::Tensor& like, int64_t n) {
  return torch::empty({n}, like.options().dtype(torch::kFloat));
}

// `t` as a contiguous tensor of x's dtype, the one every kernel operand has.
torch::Tensor operand(const torch::Tensor& t, const torch::Tensor& x) {
  return t.to(x.scalar_type()).contiguous();
}

void save_dtype(AutogradContext* ctx, const char* key, const torch::Tensor& t) {
  ctx->saved_data[key] = static_cast<int64_t>(t.scalar_type());
}
torch::ScalarType saved_dtype(AutogradContext* ctx, const char* key) {
  return static_cast<torch::ScalarType>(ctx->saved_data[key].toInt());
}

struct RmsNormOp : torch::autograd::Function<RmsNormOp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight, double eps) {
    const torch::Tensor x = input.contiguous(), w = operand(weight, x);
    const int64_t hidden = x.size(-1), rows = rows_of(x);
    const k::DType dtype = kernel_dtype(x.scalar_type());
    torch::Tensor y = torch::empty_like(x), rstd = fp32_empty(x, rows);
    if (on_gpu(x)) {
#ifdef SEXTANT_HAVE_CUDA
      k::rmsnorm_forward(x.data_ptr(), w.data_ptr(), dtype, rows, hidden, static_cast<float>(eps),
                         y.data_ptr(), rstd.data_ptr<float>(), /*stream=*/nullptr);
#endif
    } else {
      k::rmsnorm_forward_reference(x.data_ptr(), w.data_ptr(), dtype, rows, hidden,
                                   static_cast<float>(eps), y.data_ptr(), rstd.data_ptr<float>());
    }
    ctx->save_for_backward({x, w, rstd});
    save_dtype(ctx, "weight", weight);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1], &rstd = saved[2];
    const torch::Tensor dy = operand(grads[0], x);
    const int64_t hidden = x.size(-1), rows = rows_of(x);
    const k::DType dtype = kernel_dtype(x.scalar_type());
    torch::Tensor dx = torch::empty_like(x), dw = fp32_empty(x, hidden);
    if (on_gpu(x)) {
#ifdef SEXTANT_HAVE_CUDA
      torch::Tensor work = fp32_empty(x, k::norm_backward_workspace_floats(rows, hidden));
      k::rmsnorm_backward(dy.data_ptr(), x.data_ptr(), w.data_ptr(), rstd.data_ptr<float>(), dtype,
                          rows, hidden, dx.data_ptr(), dw.data_ptr<float>(), work.data_ptr<float>(),
                          /*stream=*/nullptr);
#endif
    } else {
      k::rmsnorm_backward_reference(dy.data_ptr(), x.data_ptr(), w.data_ptr(),
                                    rstd.data_ptr<float>(), dtype, rows, hidden, dx.data_ptr(),
                                    dw.data_ptr<float>());
    }
    return {dx, dw.to(saved_dtype(ctx, "weight")), torch::Tensor()};
  }
};

struct LayerNormOp : torch::autograd::Function<LayerNormOp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& weight, const torch::Tensor& bias, double eps) {
    const torch::Tensor x = input.contiguous(), w = operand(weight, x), b = operand(bias, x);
    const int64_t hidden = x.size(-1), rows = rows_of(x);
    const k::DType dtype = kernel_dtype(x.scalar_type());
    torch::Tensor y = torch::empty_like(x), mean = fp32_empty(x, rows), rstd = fp32_empty(x, rows);
    if (on_gpu(x)) {
#ifdef SEXTANT_HAVE_CUDA
      k::layernorm_forward(x.data_ptr(), w.data_ptr(), b.data_ptr(), dtype, rows, hidden,
                           static_cast<float>(eps), y.data_ptr(), mean.data_ptr<float>(),
                           rstd.data_ptr<float>(), /*stream=*/nullptr);
#endif
    } else {
      k::layernorm_forward_reference(x.data_ptr(), w.data_ptr(), b.data_ptr(), dtype, rows, hidden,
                                     static_cast<float>(eps), y.data_ptr(), mean.data_ptr<float>(),
                                     rstd.data_ptr<float>());
    }
    ctx->save_for_backward({x, w, mean, rstd});
    save_dtype(ctx, "weight", weight);
    save_dtype(ctx, "bias", bias);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &w = saved[1], &mean = saved[2], &rstd = saved[3];
    const torch::Tensor dy = operand(grads[0], x);
    const int64_t hidden = x.size(-1), rows = rows_of(x);
    const k::DType dtype = kernel_dtype(x.scalar_type());
    torch::Tensor dx = torch::empty_like(x), dw = fp32_empty(x, hidden), db = fp32_empty(x, hidden);
    if (on_gpu(x)) {
#ifdef SEXTANT_HAVE_CUDA
      torch::Tensor work = fp32_empty(x, k::norm_backward_workspace_floats(rows, hidden));
      k::layernorm_backward(dy.data_ptr(), x.data_ptr(), w.data_ptr(), mean.data_ptr<float>(),
                            rstd.data_ptr<float>(), dtype, rows, hidden, dx.data_ptr(),
                            dw.data_ptr<float>(), db.data_ptr<float>(), work.data_ptr<float>(),
                            /*stream=*/nullptr);
#endif
    } else {
      k::layernorm_backward_reference(
          dy.data_ptr(), x.data_ptr(), w.data_ptr(), mean.data_ptr<float>(), rstd.data_ptr<float>(),
          dtype, rows, hidden, dx.data_ptr(), dw.data_ptr<float>(), db.data_ptr<float>());
    }
    return {dx, dw.to(saved_dtype(ctx, "weight")), db.to(saved_dtype(ctx, "bias")),
            torch::Tensor()};
  }
};

struct BiasGeluOp : torch::autograd::Function<BiasGeluOp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& input,
                               const torch::Tensor& bias) {
    const torch::Tensor x = input.contiguous(), b = operand(bias, x);
    const int64_t n = x.size(-1), rows = rows_of(x);
    const k::DType dtype = kernel_dtype(x.scalar_type());
    torch::Tensor y = torch::empty_like(x);
    if (on_gpu(x)) {
#ifdef SEXTANT_HAVE_CUDA
      k::bias_gelu_forward(x.data_ptr(), b.data_ptr(), dtype, rows, n, y.data_ptr(),
                           /*stream=*/nullptr);
#endif
    } else {
      k::bias_gelu_forward_reference(x.data_ptr(), b.data_ptr(), dtype, rows, n, y.data_ptr());
    }
    ctx->save_for_backward({x, b});
    save_dtype(ctx, "bias", bias);
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &x = saved[0], &b = saved[1];
    const torch::Tensor dy = operand(grads[0], x);
    const int64_t n = x.size(-1), rows = rows_of(x);
    const k::DType dtype = kernel_dtype(x.scalar_type());
    torch::Tensor dx = torch::empty_like(x), db = fp32_empty(x, n);
    if (on_gpu(x)) {
#ifdef SEXTANT_HAVE_CUDA
      torch::Tensor work = fp32_empty(x, k::bias_gelu_backward_workspace_floats(rows, n));
      k::bias_gelu_backward(dy.data_ptr(), x.data_ptr(), b.data_ptr(), dtype, rows, n,
                            dx.data_ptr(), db.data_ptr<float>(), work.data_ptr<float>(),
                            /*stream=*/nullptr);
#endif
    } else {
      k::bias_gelu_backward_reference(dy.data_ptr(), x.data_ptr(), b.data_ptr(), dtype, rows, n,
                                      dx.data_ptr(), db.data_ptr<float>());
    }
    return {dx, db.to(saved_dtype(ctx, "bias"))};
  }
};

struct SwigluOp : torch::autograd::Function<SwigluOp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& gate_in,
                               const torch::Tensor& up_in) {
    const torch::Tensor gate = gate_in.contiguous(), up = operand(up_in, gate);
    const k::DType dtype = kernel_dtype(gate.scalar_type());
    torch::Tensor y = torch::empty_like(gate);
    if (on_gpu(gate)) {
#ifdef SEXTANT_HAVE_CUDA
      k::swiglu_forward(gate.data_ptr(), up.data_ptr(), dtype, gate.numel(), y.data_ptr(),
                        /*stream=*/nullptr);
#endif
    } else {
      k::swiglu_forward_reference(gate.data_ptr(), up.data_ptr(), dtype, gate.numel(),
                                  y.data_ptr());
    }
    ctx->save_for_backward({gate, up});
    return y;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list saved = ctx->get_saved_variables();
    const torch::Tensor &gate = saved[0], &up = saved[1];
    const torch::Tensor dy = operand(grads[0], gate);
    const k::DType dtype = kernel_dtype(gate.scalar_type());
    torch::Tensor dgate = torch::empty_like(gate), dup = torch::empty_like(gate);
    if (on_gpu(gate)) {
#ifdef SEXTANT_HAVE_CUDA
      k::swiglu_backward(dy.data_ptr(), gate.data_ptr(), up.data_ptr(), dtype, gate.numel(),
                         dgate.data_ptr(), dup.data_ptr(), /*stream=*/nullptr);
#endif
    } else {
      k::swiglu_backward_reference(dy.data_ptr(), gate.data_ptr(), up.data_ptr(), dtype,
                                   gate.numel(), dgate.data_ptr(), dup.data_ptr());
    }
    return {dgate, dup};
  }
};

}  // namespace

torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps) {
  if (x.scalar_type() == torch::kDouble)  // model.cpp's norm() in fp64
    return x * torch::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight.to(torch::kDouble);
  check_dtype(x, "rms_norm");
  return RmsNormOp::apply(x, weight, eps);
}

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& weight,
                         const torch::Tensor& bias, double eps) {
  if (x.scalar_type() == torch::kDouble)
    return torch::layer_norm(x, {x.size(-1)}, weight.to(torch::kDouble), bias.to(torch::kDouble),
                             eps);
  check_dtype(x, "layer_norm");
  return LayerNormOp::apply(x, weight, bias, eps);
}

torch::Tensor bias_gelu(const torch::Tensor& x, const torch::Tensor& bias) {
  if (x.scalar_type() == torch::kDouble) return torch::gelu(bias.defined() ? x + bias : x, "tanh");
  check_dtype(x, "bias_gelu");
  return BiasGeluOp::apply(x, bias.defined() ? bias : torch::zeros({x.size(-1)}, x.options()));
}

torch::Tensor swiglu(const torch::Tensor& gate, const torch::Tensor& up) {
  if (gate.sizes() != up.sizes())
    throw std::invalid_argument("swiglu: gate and up differ in shape");
  if (gate.scalar_type() == torch::kDouble) return torch::silu(gate) * up;
  check_dtype(gate, "swiglu");
  return SwigluOp::apply(gate, up);
}

}  // namespace sextant
