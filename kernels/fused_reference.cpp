// CPU references of the fused norm and activation kernels (formulas in reference.h): each
// output computed in double from the widened inputs and rounded once to its type.
#include <cmath>
#include <vector>

#include "kernels/reference.h"
#include "kernels/reference_io.h"

namespace sextant::kernels {
namespace {

using reference_io::load;
using reference_io::store;

constexpr double kGeluK = 0.79788456080286535588;  // sqrt(2/π)
constexpr double kGeluC = 0.044715;

double gelu(double z) {
  return 0.5 * z * (1 + std::tanh(kGeluK * (z + kGeluC * z * z * z)));
}

double gelu_grad(double z) {
  const double t = std::tanh(kGeluK * (z + kGeluC * z * z * z));
  return 0.5 * (1 + t) + 0.5 * z * (1 - t * t) * kGeluK * (1 + 3 * kGeluC * z * z);
}

double sigmoid(double z) {
  return 1 / (1 + std::exp(-z));
}

// Rounds per-column double sums to the fp32 output.
void round_into(const std::vector<double>& sums, float* out) {
  for (size_t j = 0; j < sums.size(); ++j) out[j] = static_cast<float>(sums[j]);
}

}  // namespace

void rmsnorm_forward_reference(const void* x, const void* weight, DType dtype, int64_t rows,
                               int64_t hidden, float eps, void* y, float* rstd) {
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t base = r * hidden;
    double squares = 0;
    for (int64_t j = 0; j < hidden; ++j) {
      const double v = load(x, dtype, base + j);
      squares += v * v;
    }
    const double inv = 1 / std::sqrt(squares / static_cast<double>(hidden) + eps);
    rstd[r] = static_cast<float>(inv);
    for (int64_t j = 0; j < hidden; ++j)
      store(y, dtype, base + j,
            static_cast<float>(static_cast<double>(load(x, dtype, base + j)) * inv *
                               load(weight, dtype, j)));
  }
}

void rmsnorm_backward_reference(const void* dy, const void* x, const void* weight,
                                const float* rstd, DType dtype, int64_t rows, int64_t hidden,
                                void* dx, float* dweight) {
  std::vector<double> dw(static_cast<size_t>(hidden), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t base = r * hidden;
    const double inv = rstd[r];
    double gx = 0;  // Σ g·x
    for (int64_t j = 0; j < hidden; ++j)
      gx += static_cast<double>(load(dy, dtype, base + j)) * load(weight, dtype, j) *
            load(x, dtype, base + j);
    const double c = inv * inv * inv * gx / static_cast<double>(hidden);
    for (int64_t j = 0; j < hidden; ++j) {
      const double g = static_cast<double>(load(dy, dtype, base + j)) * load(weight, dtype, j);
      const double v = load(x, dtype, base + j);
      store(dx, dtype, base + j, static_cast<float>(inv * g - v * c));
      dw[static_cast<size_t>(j)] += static_cast<double>(load(dy, dtype, base + j)) * v * inv;
    }
  }
  round_into(dw, dweight);
}

void add_rmsnorm_forward_reference(const void* x, const void* residual, const void* weight,
                                   DType dtype, int64_t rows, int64_t hidden, float eps, void* sum,
                                   void* y, float* rstd) {
  for (int64_t i = 0; i < rows * hidden; ++i)
    store(sum, dtype, i,
          load(x, dtype, i) + load(residual, dtype, i));  // fp32 add of two dtype values
  rmsnorm_forward_reference(sum, weight, dtype, rows, hidden, eps, y, rstd);
}

void layernorm_forward_reference(const void* x, const void* weight, const void* bias, DType dtype,
                                 int64_t rows, int64_t hidden, float eps, void* y, float* mean,
                                 float* rstd) {
  const double h = static_cast<double>(hidden);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t base = r * hidden;
    double sum = 0;
    for (int64_t j = 0; j < hidden; ++j) sum += load(x, dtype, base + j);
    const double mu = sum / h;
    double squares = 0;
    for (int64_t j = 0; j < hidden; ++j) {
      const double d = load(x, dtype, base + j) - mu;
      squares += d * d;
    }
    const double inv = 1 / std::sqrt(squares / h + eps);
    mean[r] = static_cast<float>(mu);
    rstd[r] = static_cast<float>(inv);
    for (int64_t j = 0; j < hidden; ++j) {
      const double xhat = (load(x, dtype, base + j) - mu) * inv;
      store(y, dtype, base + j,
            static_cast<float>(xhat * load(weight, dtype, j) +
                               static_cast<double>(load(bias, dtype, j))));
    }
  }
}

void layernorm_backward_reference(const void* dy, const void* x, const void* weight,
                                  const float* mean, const float* rstd, DType dtype, int64_t rows,
                                  int64_t hidden, void* dx, float* dweight, float* dbias) {
  const double h = static_cast<double>(hidden);
  std::vector<double> dw(static_cast<size_t>(hidden), 0.0), db(static_cast<size_t>(hidden), 0.0);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t base = r * hidden;
    const double mu = mean[r], inv = rstd[r];
    auto xhat = [&](int64_t j) { return (load(x, dtype, base + j) - mu) * inv; };
    auto g = [&](int64_t j) {
      return static_cast<double>(load(dy, dtype, base + j)) * load(weight, dtype, j);
    };
    double g_sum = 0, gx_sum = 0;
    for (int64_t j = 0; j < hidden; ++j) {
      g_sum += g(j);
      gx_sum += g(j) * xhat(j);
    }
    for (int64_t j = 0; j < hidden; ++j) {
      store(dx, dtype, base + j,
            static_cast<float>(inv * (g(j) - g_sum / h - xhat(j) * (gx_sum / h))));
      const double d = load(dy, dtype, base + j);
      dw[static_cast<size_t>(j)] += d * xhat(j);
      db[static_cast<size_t>(j)] += d;
    }
  }
  round_into(dw, dweight);
  round_into(db, dbias);
}

void bias_gelu_forward_reference(const void* x, const void* bias, DType dtype, int64_t rows,
                                 int64_t n, void* y) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const double z = static_cast<double>(load(x, dtype, r * n + j)) + load(bias, dtype, j);
      store(y, dtype, r * n + j, static_cast<float>(gelu(z)));
    }
}

void bias_gelu_backward_reference(const void* dy, const void* x, const void* bias, DType dtype,
                                  int64_t rows, int64_t n, void* dx, float* dbias) {
  std::vector<double> db(static_cast<size_t>(n), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t j = 0; j < n; ++j) {
      const double z = static_cast<double>(load(x, dtype, r * n + j)) + load(bias, dtype, j);
      const double d = load(dy, dtype, r * n + j) * gelu_grad(z);
      store(dx, dtype, r * n + j, static_cast<float>(d));
      db[static_cast<size_t>(j)] += d;
    }
  round_into(db, dbias);
}

void swiglu_forward_reference(const void* gate, const void* up, DType dtype, int64_t n, void* y) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = load(gate, dtype, i);
    store(y, dtype, i, static_cast<float>(g * sigmoid(g) * load(up, dtype, i)));
  }
}

void swiglu_backward_reference(const void* dy, const void* gate, const void* up, DType dtype,
                               int64_t n, void* dgate, void* dup) {
  for (int64_t i = 0; i < n; ++i) {
    const double g = load(gate, dtype, i), u = load(up, dtype, i), d = load(dy, dtype, i);
    const double s = sigmoid(g);
    store(dgate, dtype, i, static_cast<float>(d * u * s * (1 + g * (1 - s))));
    store(dup, dtype, i, static_cast<float>(d * g * s));
  }
}

}  // namespace sextant::kernels
