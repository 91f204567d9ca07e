// CPU references of the kernels (see reference.h).
#include "kernels/reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/reference_io.h"

namespace sextant::kernels {
namespace {

using reference_io::load;
using reference_io::store;

uint32_t bits_of(float x) {
  uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  return b;
}

float float_of(uint32_t b) {
  float x;
  std::memcpy(&x, &b, sizeof x);
  return x;
}

}  // namespace

uint16_t float_to_bf16(float x) {
  const uint32_t b = bits_of(x);
  if ((b & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((b >> 16) | 0x0040u);  // quiet NaN
  const uint32_t rounded = b + 0x7fffu + ((b >> 16) & 1u);
  return static_cast<uint16_t>(rounded >> 16);
}

float bf16_to_float(uint16_t x) { return float_of(static_cast<uint32_t>(x) << 16); }

uint16_t float_to_fp16(float x) {
  uint32_t f = bits_of(x);
  const uint16_t sign = static_cast<uint16_t>((f >> 16) & 0x8000u);
  f &= 0x7fffffffu;
  if (f > 0x7f800000u) return sign | 0x7e00u;   // NaN
  if (f >= 0x477ff000u) return sign | 0x7c00u;  // ≥ 65520 rounds to inf
  if (f < 0x38800000u) {                        // below 2^-14: subnormal or zero
    const int exponent = static_cast<int>(f >> 23);
    if (exponent < 102) return sign;  // below 2^-25
    const uint32_t mantissa = (f & 0x7fffffu) | 0x800000u;
    const int shift = 126 - exponent;
    uint32_t r = mantissa >> shift;
    const uint32_t rest = mantissa & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rest > half || (rest == half && (r & 1u))) ++r;
    return static_cast<uint16_t>(sign | r);
  }
  f -= 112u << 23;  // rebias the exponent from 127 to 15
  return static_cast<uint16_t>(sign | ((f + 0xfffu + ((f >> 13) & 1u)) >> 13));
}

float fp16_to_float(uint16_t x) {
  const uint32_t sign = static_cast<uint32_t>(x & 0x8000u) << 16;
  const uint32_t exponent = (x >> 10) & 0x1fu, mantissa = x & 0x3ffu;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign ? -magnitude : magnitude;
  }
  if (exponent == 31) return float_of(sign | 0x7f800000u | (mantissa << 13));
  return float_of(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

void cast_reference(const void* src, DType src_dtype, void* dst, DType dst_dtype, int64_t n) {
  for (int64_t i = 0; i < n; ++i) store(dst, dst_dtype, i, load(src, src_dtype, i));
}

namespace {

// One body for every element type: the fp32 step and --fp64's double step are the same formula.
template <typename T>
void adamw_of(T* master, T* m, T* v, const T* grad, const T* decay, int64_t n,
              const AdamWArgsOf<T>& a, void* working, DType working_dtype) {
  const T correction1 = T(1) - std::pow(a.beta1, static_cast<T>(a.step));
  const T correction2 = T(1) - std::pow(a.beta2, static_cast<T>(a.step));
  for (int64_t i = 0; i < n; ++i) {
    const T g = grad[i] * a.grad_scale;
    m[i] = a.beta1 * m[i] + (T(1) - a.beta1) * g;
    v[i] = a.beta2 * v[i] + (T(1) - a.beta2) * g * g;
    const T update = (m[i] / correction1) / (std::sqrt(v[i] / correction2) + a.eps);
    const T wd = decay ? decay[i] * a.weight_decay : a.weight_decay;
    master[i] -= a.lr * (update + wd * master[i]);
    if (working) store(working, working_dtype, i, static_cast<float>(master[i]));
  }
}

}  // namespace

void adamw_reference(float* master, float* m, float* v, const float* grad, const float* decay,
                     int64_t n, const AdamWArgs& a, void* working, DType working_dtype) {
  adamw_of(master, m, v, grad, decay, n, a, working, working_dtype);
}

void adamw_reference(double* master, double* m, double* v, const double* grad, const double* decay,
                     int64_t n, const AdamWArgsOf<double>& a) {
  adamw_of(master, m, v, grad, decay, n, a, nullptr, DType::fp32);
}

bool unscale_reference(const std::vector<TensorSpan>& tensors, float inv_scale) {
  bool found = false;
  for (const TensorSpan& t : tensors)
    for (int64_t i = 0; i < t.n; ++i) {
      t.data[i] *= inv_scale;
      if (!std::isfinite(t.data[i])) found = true;
    }
  return found;
}

double square_sum_reference(const std::vector<TensorSpan>& tensors) {
  double sum = 0;
  for (const TensorSpan& t : tensors)
    for (int64_t i = 0; i < t.n; ++i) sum += static_cast<double>(t.data[i]) * t.data[i];
  return sum;
}

void ce_forward_partial_reference(const void* logits, DType dtype, int64_t tokens, int64_t vocab_local,
                                  const int64_t* targets, int64_t vocab_start, float* local_max,
                                  float* local_sum_exp, float* target_logit) {
  for (int64_t t = 0; t < tokens; ++t) {
    float best = -std::numeric_limits<float>::infinity();
    double sum =
        0;  // in double: summing 25k fp32 terms would cost the reference ~sqrt(n) units itself
    for (int64_t j = 0; j < vocab_local; ++j) {  // online softmax: rescale the sum when the max grows
      const float x = load(logits, dtype, t * vocab_local + j);
      if (x > best) {
        sum = sum * std::exp(static_cast<double>(best) - x) + 1.0;
        best = x;
      } else {
        sum += std::exp(static_cast<double>(x) - best);
      }
    }
    local_max[t] = best;
    local_sum_exp[t] = static_cast<float>(sum);
    const int64_t local = targets[t] - vocab_start;
    target_logit[t] = local >= 0 && local < vocab_local ? load(logits, dtype, t * vocab_local + local) : 0.f;
  }
}

void ce_rescale_reference(const float* local_max, const float* local_sum_exp, const float* global_max,
                          int64_t tokens, float* sum_exp) {
  for (int64_t t = 0; t < tokens; ++t)
    sum_exp[t] = static_cast<float>(local_sum_exp[t] *
                                    std::exp(static_cast<double>(local_max[t]) - global_max[t]));
}

void ce_loss_reference(const float* global_max, const float* sum_exp, const float* target_logit, int64_t tokens,
                       float* loss) {
  for (int64_t t = 0; t < tokens; ++t)
    loss[t] = static_cast<float>(std::log(static_cast<double>(sum_exp[t])) + global_max[t] -
                                 target_logit[t]);
}

void ce_backward_reference(const void* logits, DType dtype, int64_t tokens, int64_t vocab_local,
                           const int64_t* targets, int64_t vocab_start, const float* global_max,
                           const float* sum_exp, const float* grad_loss, void* dlogits) {
  for (int64_t t = 0; t < tokens; ++t) {
    const int64_t local = targets[t] - vocab_start;
    for (int64_t j = 0; j < vocab_local; ++j) {
      const int64_t i = t * vocab_local + j;
      const double p =
          std::exp(static_cast<double>(load(logits, dtype, i)) - global_max[t]) / sum_exp[t];
      store(dlogits, dtype, i, static_cast<float>((p - (j == local ? 1.0 : 0.0)) * grad_loss[t]));
    }
  }
}

}  // namespace sextant::kernels
