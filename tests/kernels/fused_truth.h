// The fused norms and activations computed by LibTorch autograd in float64, with the bound
// each output of ours must meet. Shared by the kernel reference tests and the executor's
// fused-op tests. Inputs are float64 tensors holding values of the tested dtype.
//
// How the bounds are derived (u = unit roundoff: u32 = 2^-24, 2^-8 for bf16, 2^-11 for
// fp16; an output rounded to 16 bits through fp32 rounds twice, u_out = u16 + u32):
//  - Our references compute in double and round each output once: u_out·|truth|.
//  - Both double evaluations (ours and LibTorch's) are within a few u64 per operation of
//    exact; 64·k·u64·M covers them, k the number of terms summed, M the sum of the terms'
//    magnitudes (no cancellation hides in M).
//  - The backward passes take the forward's statistics rounded to fp32 (mean·(1 + δ1),
//    rstd·(1 + δ2), |δ| ≤ u32), as the kernels do. The first-order effect of δ on each
//    output is written out per op below as u32·P; we allow 2·u32·P, the factor 2 covering
//    the second-order terms (O(u32²)) and the (1 + u_out) of the final rounding.
#pragma once

#include <torch/torch.h>

namespace sextant::kernels::fused_truth {

constexpr double kU32 = 0x1p-24, kU64 = 0x1p-53, kU16 = 0x1p-8, kUHalf = 0x1p-11;  // kU16: bf16

struct Truth {
  torch::Tensor value, bound;
};

// rows × hidden inputs; dy is the incoming gradient. u_out: the rounding of y and dx;
// u_param: of the parameter gradients.
struct NormTruth {
  Truth y, mean, rstd, dx, dweight, dbias;
};

inline torch::Tensor sum_rows(const torch::Tensor& t) {
  return t.sum(0);
}

// rmsnorm: dx = r·g - x·r³·mean(g·x). δ2 scales the first term by (1 + δ2) and the second
// by (1 + δ2)³: P = r|g| + 3|x|·r³·mean|g·x|; dweight = Σ dy·x·r: P = Σ|dy·x·r|.
inline NormTruth rmsnorm_truth(const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& dy, double eps, double u_out, double u_param) {
  const double h = static_cast<double>(x.size(1)), rows = static_cast<double>(x.size(0));
  torch::Tensor xl = x.detach().clone().requires_grad_(true),
                wl = w.detach().clone().requires_grad_(true);
  const torch::Tensor y = xl * torch::rsqrt(xl.pow(2).mean(-1, true) + eps) * wl;
  y.backward(dy);
  const torch::Tensor r = torch::rsqrt(x.pow(2).mean(-1, true) + eps), g = dy * w;
  const torch::Tensor dx = xl.grad(), dw = wl.grad();
  const torch::Tensor p_dx = r * g.abs() + 3 * x.abs() * r.pow(3) * (g * x).abs().mean(-1, true);
  const torch::Tensor p_dw = sum_rows((dy * x * r).abs());
  NormTruth t;
  t.y = {y.detach(), u_out * y.detach().abs() + 64 * h * kU64 * y.detach().abs()};
  t.rstd = {r.squeeze(1), (kU32 + 64 * h * kU64) * r.squeeze(1)};
  t.dx = {dx, u_out * dx.abs() + 2 * kU32 * p_dx + 64 * h * kU64 * p_dx};
  t.dweight = {dw, u_param * dw.abs() + 2 * kU32 * p_dw + 64 * rows * kU64 * p_dw};
  return t;
}

// layernorm: with a = |x̂| + r·|mean|, the statistics' rounding moves x̂ by at most u32·a,
// mean(g·x̂) =: M by u32·mean(|g|·a) =: u32·A, and r scales dx by (1 + δ2): for
// dx = r·(g - mean(g) - x̂·M), P = |dx| + r·(a·|M| + |x̂|·A); dweight = Σ dy·x̂: P = Σ|dy|·a.
inline NormTruth layernorm_truth(const torch::Tensor& x, const torch::Tensor& w,
                                 const torch::Tensor& b, const torch::Tensor& dy, double eps,
                                 double u_out, double u_param) {
  const double h = static_cast<double>(x.size(1)), rows = static_cast<double>(x.size(0));
  torch::Tensor xl = x.detach().clone().requires_grad_(true),
                wl = w.detach().clone().requires_grad_(true),
                bl = b.detach().clone().requires_grad_(true);
  const torch::Tensor y = torch::layer_norm(xl, {x.size(1)}, wl, bl, eps);
  y.backward(dy);
  const torch::Tensor mu = x.mean(-1, true);
  const torch::Tensor r = torch::rsqrt((x - mu).pow(2).mean(-1, true) + eps);
  const torch::Tensor xhat = (x - mu) * r, g = dy * w;
  const torch::Tensor a = xhat.abs() + r * mu.abs();
  const torch::Tensor m = (g * xhat).mean(-1, true), big_a = (g.abs() * a).mean(-1, true);
  const torch::Tensor dx = xl.grad(), dw = wl.grad(), db = bl.grad();
  const torch::Tensor p_dx = dx.abs() + r * (a * m.abs() + xhat.abs() * big_a);
  const torch::Tensor m_dx = r * (g.abs() + g.abs().mean(-1, true) + a * big_a);  // the terms' size
  const torch::Tensor p_dw = sum_rows(dy.abs() * a);
  const torch::Tensor m_y = (x.abs() + mu.abs()) * r * w.abs() + b.abs();
  NormTruth t;
  t.y = {y.detach(), u_out * y.detach().abs() + 64 * h * kU64 * m_y};
  t.mean = {mu.squeeze(1), kU32 * mu.squeeze(1).abs() + 64 * h * kU64 * x.abs().mean(-1)};
  t.rstd = {r.squeeze(1), (kU32 + 64 * h * kU64) * r.squeeze(1)};
  t.dx = {dx, u_out * dx.abs() + 2 * kU32 * p_dx + 64 * h * kU64 * m_dx};
  t.dweight = {dw, u_param * dw.abs() + 2 * kU32 * p_dw + 64 * rows * kU64 * p_dw};
  t.dbias = {db, u_param * db.abs() + 64 * rows * kU64 * sum_rows(dy.abs())};
  return t;
}

struct ActivationTruth {
  Truth y, dx, dbias, dup;  // swiglu: dx is dgate
};

// No statistics: each output is a double evaluation rounded once. gelu'(z)'s terms are
// at most 1 + |z|·(1 + 3c·z²) in size (t = tanh ∈ [-1, 1], k < 1).
inline ActivationTruth bias_gelu_truth(const torch::Tensor& x, const torch::Tensor& bias,
                                       const torch::Tensor& dy, double u_out, double u_param) {
  const double rows = static_cast<double>(x.size(0));
  torch::Tensor xl = x.detach().clone().requires_grad_(true),
                bl = bias.detach().clone().requires_grad_(true);
  const torch::Tensor y = torch::gelu(xl + bl, "tanh");
  y.backward(dy);
  const torch::Tensor z = (x + bias).abs();
  const torch::Tensor m_dx = dy.abs() * (1 + z * (1 + 3 * 0.044715 * z * z));
  ActivationTruth t;
  t.y = {y.detach(), u_out * y.detach().abs() + 64 * kU64 * (y.detach().abs() + z)};
  t.dx = {xl.grad(), u_out * xl.grad().abs() + 64 * kU64 * m_dx};
  t.dbias = {bl.grad(), u_param * bl.grad().abs() + 64 * rows * kU64 * sum_rows(m_dx)};
  return t;
}

// dgate = dy·up·σ·(1 + gate·(1 - σ)): terms of size |dy·up|·σ·(1 + |gate|·(1 - σ)).
inline ActivationTruth swiglu_truth(const torch::Tensor& gate, const torch::Tensor& up,
                                    const torch::Tensor& dy, double u_out) {
  torch::Tensor gl = gate.detach().clone().requires_grad_(true),
                ul = up.detach().clone().requires_grad_(true);
  const torch::Tensor y = torch::silu(gl) * ul;
  y.backward(dy);
  const torch::Tensor s = torch::sigmoid(gate);
  const torch::Tensor m_dgate = (dy * up).abs() * s * (1 + gate.abs() * (1 - s));
  ActivationTruth t;
  t.y = {y.detach(), (u_out + 64 * kU64) * y.detach().abs()};
  t.dx = {gl.grad(), u_out * gl.grad().abs() + 64 * kU64 * m_dgate};
  t.dup = {ul.grad(), (u_out + 64 * kU64) * ul.grad().abs()};
  return t;
}

// Largest |got - truth| / (bound + absolute); at most 1 passes. `got` in any dtype and the
// shape of truth. `absolute`: the rounding error of an fp16 output in its subnormal range
// (2^-25), where u_out·|truth| does not hold.
inline double bound_ratio(const torch::Tensor& got, const Truth& truth, double absolute = 0) {
  const torch::Tensor error =
      (got.to(torch::kDouble).reshape(truth.value.sizes()) - truth.value).abs();
  // An element whose bound is 0 (an exact zero) must match exactly.
  return torch::where(error == 0, torch::zeros_like(error), error / (truth.bound + absolute))
      .max()
      .item<double>();
}

}  // namespace sextant::kernels::fused_truth
