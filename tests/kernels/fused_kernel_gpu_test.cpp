// The fused norm and activation kernels against their CPU references on fresh random
// inputs (never zeros), in fp32, bf16 and fp16, with bounds derived from the kernels' fp32
// roundings. Without a CUDA device every case reports itself skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/kernels.h"
#include "tests/kernels/kernel_gpu_support.h"

namespace sextant::kernels {
namespace {

// Each kernel computes in fp32; its reference computes in double and rounds once (so it
// is the exact result to within one rounding of the output). The bounds below count the
// kernel's fp32 roundings (u32 = 2^-24 each) on the magnitudes they act on; for bf16
// outputs the two results can further fall on either side of a 16-bit rounding boundary:
// one unit, at most 2^-7 (bf16) or 2^-10 (fp16) of the value.
constexpr double kU32 = 0x1p-24;

double out_ulp(DType dtype) {
  return dtype == DType::fp32 ? 0.0 : dtype == DType::bf16 ? 0x1p-7 : 0x1p-10;
}
// That unit near `value`; fp16 values below 2^-14 are subnormal, spaced 2^-24 apart.
double out_err(DType dtype, double value) {
  return out_ulp(dtype) * std::fabs(value) + (dtype == DType::fp16 ? 0x1p-24 : 0.0);
}

// |got - want| <= bound elementwise; reports the first failure.
void expect_within(const std::vector<float>& got, const std::vector<float>& want,
                   const std::vector<double>& bound, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_LE(std::fabs(static_cast<double>(got[i]) - want[i]), bound[i])
        << what << " element " << i << ": " << got[i] << " vs " << want[i];
}

// Values of a dtype: rounded from fp32 draws, kept on the host widened and as they are
// stored, and uploaded.
struct Operand {
  std::vector<float> values;   // widened
  std::vector<uint16_t> bits;  // 16-bit storage (empty for fp32)
  void* device = nullptr;
  const void* host() const {
    return bits.empty() ? static_cast<const void*>(values.data()) : bits.data();
  }
};

// An output buffer of n elements of a dtype on both sides; the device copy starts as NaN
// (all bits set), so an element the kernel never writes fails.
struct Output {
  DType dtype;
  size_t n;
  std::vector<float> f;
  std::vector<uint16_t> b;
  void* device = nullptr;
  void* host() { return dtype == DType::fp32 ? static_cast<void*>(f.data()) : b.data(); }
  std::vector<float> host_values() const { return dtype == DType::fp32 ? f : widen(b, dtype); }
};

class FusedGpu : public KernelGpu {
 protected:
  Operand operand(std::vector<float> x, DType dtype) {
    Operand o;
    if (dtype == DType::fp32) {
      o.values = std::move(x);
      o.device = upload(o.values);
    } else {
      o.bits.resize(x.size());
      cast_reference(x.data(), DType::fp32, o.bits.data(), dtype, static_cast<int64_t>(x.size()));
      o.values = widen(o.bits, dtype);
      o.device = upload(o.bits);
    }
    return o;
  }
  Output output(size_t n, DType dtype) {
    Output o{dtype, n, {}, {}, nullptr};
    if (dtype == DType::fp32)
      o.f.assign(n, 0.f);
    else
      o.b.assign(n, 0);
    const size_t bytes = n * (dtype == DType::fp32 ? 4 : 2);
    CUDA_CHECK(cudaMalloc(&o.device, std::max<size_t>(1, bytes)));
    allocations_.push_back(o.device);
    CUDA_CHECK(cudaMemset(o.device, 0xff, bytes));
    return o;
  }
  std::vector<float> fetch(const Output& o) {
    if (o.dtype == DType::fp32) return download(static_cast<const float*>(o.device), o.n);
    return widen(download(static_cast<const uint16_t*>(o.device), o.n), o.dtype);
  }
  float* fp32_buffer(size_t n) { return static_cast<float*>(output(n, DType::fp32).device); }
};

struct NormShape {
  int64_t rows, hidden;
};
// 16-byte packs (4096, 1000 in both dtypes) and the scalar path (67).
constexpr NormShape kNormShapes[] = {{300, 4096}, {300, 1000}, {77, 67}};

// fp32 sums of a row: each thread adds at most hidden/256 + 8 terms (its packs) in order,
// then 5 shuffle and 3 shared-memory levels: k roundings of the running sum.
double row_sum_roundings(int64_t hidden) {
  return static_cast<double>(hidden) / 256 + 8 + 8;
}

TEST_F(FusedGpu, RmsNormMatchesReference) {
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (NormShape s : kNormShapes) {
      const size_t n = static_cast<size_t>(s.rows * s.hidden), h = static_cast<size_t>(s.hidden);
      const Operand x = operand(random(n, 2.f), dtype), w = operand(random(h, 0.3f, 1.f), dtype),
                    dy = operand(random(n, 1.f), dtype);
      Output y = output(n, dtype), dx = output(n, dtype);
      float *rstd = fp32_buffer(s.rows), *dw = fp32_buffer(h);
      rmsnorm_forward(x.device, w.device, dtype, s.rows, s.hidden, 1e-5f, y.device, rstd, stream_);
      std::vector<float> want_rstd(s.rows), want_dw(h);
      rmsnorm_forward_reference(x.host(), w.host(), dtype, s.rows, s.hidden, 1e-5f, y.host(),
                                want_rstd.data());
      // Σx² is off by ≤ k·u32 relative (positive terms); /hidden, +eps, sqrtf, 1/: rstd by
      // ≤ (k/2 + 4)·u32; y = x·rstd·w two roundings more, and the reference's one.
      const double k = row_sum_roundings(s.hidden);
      const std::vector<float> got_rstd = download(rstd, s.rows);
      std::vector<double> bound(s.rows);
      for (int64_t r = 0; r < s.rows; ++r) bound[r] = (k / 2 + 5) * kU32 * want_rstd[r];
      expect_within(got_rstd, want_rstd, bound, "rstd");
      const std::vector<float> want_y = y.host_values();
      bound.assign(n, 0);
      for (size_t i = 0; i < n; ++i)
        bound[i] = (k / 2 + 7) * kU32 * std::fabs(want_y[i]) + out_err(dtype, want_y[i]);
      expect_within(fetch(y), want_y, bound, "y");

      // Backward from the reference's rstd, so only the backward's own arithmetic differs.
      float* d_rstd = upload(want_rstd);
      std::vector<float> zeros(
          static_cast<size_t>(norm_backward_workspace_floats(s.rows, s.hidden)), 0.f);
      rmsnorm_backward(dy.device, x.device, w.device, d_rstd, dtype, s.rows, s.hidden, dx.device,
                       dw, upload(zeros), stream_);
      rmsnorm_backward_reference(dy.host(), x.host(), w.host(), want_rstd.data(), dtype, s.rows,
                                 s.hidden, dx.host(), want_dw.data());
      // Σ g·x (g = dy·w): ≤ (k + 2)·u32·Σ|g·x|; c = rstd³·Σ/hidden 4 roundings more; dx =
      // rstd·g - x·c 4 more: ≤ (k + 10)·u32·(rstd·|g| + |x|·rstd³·mean|g·x|).
      const std::vector<float> want_dx = dx.host_values();
      std::vector<double> dw_bound(h, 0.0);
      for (int64_t r = 0; r < s.rows; ++r) {
        double gx = 0;
        for (int64_t j = 0; j < s.hidden; ++j)
          gx += std::fabs(dy.values[r * s.hidden + j] * w.values[j] * x.values[r * s.hidden + j]);
        const double inv = want_rstd[r], c = inv * inv * inv * gx / s.hidden;
        for (int64_t j = 0; j < s.hidden; ++j) {
          const size_t i = static_cast<size_t>(r * s.hidden + j);
          bound[i] =
              (k + 10) * kU32 *
                  (inv * std::fabs(dy.values[i] * w.values[j]) + std::fabs(x.values[i]) * c) +
              out_err(dtype, want_dx[i]);
          dw_bound[j] += std::fabs(dy.values[i] * x.values[i]) * inv;
        }
      }
      expect_within(fetch(dx), want_dx, bound, "dx");
      // dweight: each block adds its rows in order in fp32 (at most all of them), each term
      // two roundings; the partials are added in double and rounded once (as the reference).
      for (size_t j = 0; j < h; ++j)
        dw_bound[j] = (s.rows + 3) * kU32 * dw_bound[j] + kU32 * std::fabs(want_dw[j]);
      expect_within(download(dw, h), want_dw, dw_bound, "dweight");
    }
}

// The sum: the same fp32 addition rounded to dtype on both sides, bit for bit. The norm of
// it: rmsnorm's bounds above.
TEST_F(FusedGpu, AddRmsNormMatchesReference) {
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (NormShape s : kNormShapes) {
      const size_t n = static_cast<size_t>(s.rows * s.hidden), h = static_cast<size_t>(s.hidden);
      const Operand x = operand(random(n, 1.f), dtype), res = operand(random(n, 2.f), dtype),
                    w = operand(random(h, 0.3f, 1.f), dtype);
      Output sum = output(n, dtype), y = output(n, dtype);
      float* rstd = fp32_buffer(s.rows);
      add_rmsnorm_forward(x.device, res.device, w.device, dtype, s.rows, s.hidden, 1e-5f,
                          sum.device, y.device, rstd, stream_);
      std::vector<float> want_rstd(s.rows);
      add_rmsnorm_forward_reference(x.host(), res.host(), w.host(), dtype, s.rows, s.hidden, 1e-5f,
                                    sum.host(), y.host(), want_rstd.data());
      EXPECT_EQ(fetch(sum), sum.host_values());
      const double k = row_sum_roundings(s.hidden);
      std::vector<double> bound(s.rows);
      for (int64_t r = 0; r < s.rows; ++r) bound[r] = (k / 2 + 5) * kU32 * want_rstd[r];
      expect_within(download(rstd, s.rows), want_rstd, bound, "rstd");
      const std::vector<float> want_y = y.host_values();
      bound.assign(n, 0);
      for (size_t i = 0; i < n; ++i)
        bound[i] = (k / 2 + 7) * kU32 * std::fabs(want_y[i]) + out_err(dtype, want_y[i]);
      expect_within(fetch(y), want_y, bound, "y");
    }
}

TEST_F(FusedGpu, LayerNormMatchesReference) {
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (NormShape s : kNormShapes) {
      const size_t n = static_cast<size_t>(s.rows * s.hidden), h = static_cast<size_t>(s.hidden);
      const Operand x = operand(random(n, 2.f, 0.5f), dtype),
                    w = operand(random(h, 0.3f, 1.f), dtype),
                    b = operand(random(h, 0.1f, 0.05f), dtype), dy = operand(random(n, 1.f), dtype);
      Output y = output(n, dtype), dx = output(n, dtype);
      float *mean = fp32_buffer(s.rows), *rstd = fp32_buffer(s.rows), *dw = fp32_buffer(h),
            *db = fp32_buffer(h);
      layernorm_forward(x.device, w.device, b.device, dtype, s.rows, s.hidden, 1e-5f, y.device,
                        mean, rstd, stream_);
      std::vector<float> want_mean(s.rows), want_rstd(s.rows), want_dw(h), want_db(h);
      layernorm_forward_reference(x.host(), w.host(), b.host(), dtype, s.rows, s.hidden, 1e-5f,
                                  y.host(), want_mean.data(), want_rstd.data());
      // mean: Σx off by ≤ k·u32·Σ|x|, then /hidden. Σ(x - mean)² (positive terms, 2 roundings
      // each; the mean's own error moves it only to second order): rstd ≤ (k/2 + 5)·u32.
      // y = (x - mean)·rstd·w + b: ≤ (k + 8)·u32 of (|x̂·w| + rstd·|w|·(mean|x| + |mean|) + |b|).
      const double k = row_sum_roundings(s.hidden);
      const std::vector<float> want_y = y.host_values();
      std::vector<double> mean_bound(s.rows), rstd_bound(s.rows), bound(n);
      for (int64_t r = 0; r < s.rows; ++r) {
        double abs_mean = 0;
        for (int64_t j = 0; j < s.hidden; ++j) abs_mean += std::fabs(x.values[r * s.hidden + j]);
        abs_mean /= s.hidden;
        mean_bound[r] = (k + 2) * kU32 * abs_mean;
        rstd_bound[r] = (k / 2 + 5) * kU32 * want_rstd[r];
        for (int64_t j = 0; j < s.hidden; ++j) {
          const size_t i = static_cast<size_t>(r * s.hidden + j);
          const double xhat = (x.values[i] - want_mean[r]) * want_rstd[r];
          bound[i] =
              (k + 8) * kU32 *
                  (std::fabs(xhat * w.values[j]) +
                   want_rstd[r] * std::fabs(w.values[j]) * (abs_mean + std::fabs(want_mean[r])) +
                   std::fabs(b.values[j])) +
              out_err(dtype, want_y[i]);
        }
      }
      expect_within(download(mean, s.rows), want_mean, mean_bound, "mean");
      expect_within(download(rstd, s.rows), want_rstd, rstd_bound, "rstd");
      expect_within(fetch(y), want_y, bound, "y");

      float *d_mean = upload(want_mean), *d_rstd = upload(want_rstd);
      std::vector<float> zeros(
          static_cast<size_t>(norm_backward_workspace_floats(s.rows, s.hidden)), 0.f);
      layernorm_backward(dy.device, x.device, w.device, d_mean, d_rstd, dtype, s.rows, s.hidden,
                         dx.device, dw, db, upload(zeros), stream_);
      layernorm_backward_reference(dy.host(), x.host(), w.host(), want_mean.data(),
                                   want_rstd.data(), dtype, s.rows, s.hidden, dx.host(),
                                   want_dw.data(), want_db.data());
      // x̂ 2 roundings, g = dy·w 1; Σg and Σg·x̂ ≤ (k + 4)·u32 of Σ|g|, Σ|g·x̂|; dx =
      // rstd·(g - mean(g) - x̂·mean(g·x̂)) 5 more: ≤ (k + 8)·u32·rstd·(|g| + mean|g| +
      // |x̂|·mean|g·x̂|).
      const std::vector<float> want_dx = dx.host_values();
      std::vector<double> dw_bound(h, 0.0), db_bound(h, 0.0);
      for (int64_t r = 0; r < s.rows; ++r) {
        const double inv = want_rstd[r];
        double g_abs = 0, gx_abs = 0;
        for (int64_t j = 0; j < s.hidden; ++j) {
          const size_t i = static_cast<size_t>(r * s.hidden + j);
          const double g = std::fabs(dy.values[i] * w.values[j]);
          g_abs += g;
          gx_abs += g * std::fabs((x.values[i] - want_mean[r]) * inv);
        }
        g_abs /= s.hidden;
        gx_abs /= s.hidden;
        for (int64_t j = 0; j < s.hidden; ++j) {
          const size_t i = static_cast<size_t>(r * s.hidden + j);
          const double xhat = std::fabs((x.values[i] - want_mean[r]) * inv);
          bound[i] = (k + 8) * kU32 * inv *
                         (std::fabs(dy.values[i] * w.values[j]) + g_abs + xhat * gx_abs) +
                     out_err(dtype, want_dx[i]);
          dw_bound[j] += std::fabs(dy.values[i]) * xhat;
          db_bound[j] += std::fabs(dy.values[i]);
        }
      }
      expect_within(fetch(dx), want_dx, bound, "dx");
      // Sums over rows as rmsnorm's dweight: ≤ (rows + 4)·u32 of the sum of magnitudes.
      for (size_t j = 0; j < h; ++j) {
        dw_bound[j] = (s.rows + 4) * kU32 * dw_bound[j] + kU32 * std::fabs(want_dw[j]);
        db_bound[j] = (s.rows + 4) * kU32 * db_bound[j] + kU32 * std::fabs(want_db[j]);
      }
      expect_within(download(dw, h), want_dw, dw_bound, "dweight");
      expect_within(download(db, h), want_db, db_bound, "dbias");
    }
}

// GELU's fp32 error. With Q = 1 + |z|·(1 + 3c·z²) (c = 0.044715), which bounds both tanh's
// argument k·(z + c·z³) (k < 1) and each term of gelu'(z): the argument takes 5 roundings,
// k and c rounded to fp32 count as 2 more, and tanhf adds 2 ulp (CUDA Programming Guide,
// single-precision maths functions), so t = tanh(...) is off by ≤ 9·u32·Q. Then
// y = z/2·(1 + t) (z itself rounded once, gelu' ≤ 1.2): ≤ 8·u32·|z|·Q + 3·u32·|y|;
// gelu'(z) = (1 + t)/2 + z/2·(1 - t²)·k·(1 + 3c·z²), its second factor ≤ 0.4·Q, takes t's
// error times ≤ 1/2 + 0.8·Q, plus 6 roundings and z's on terms ≤ Q: ≤ (16·Q² + 10·Q)·u32.
double gelu_q(double z) {
  return 1 + std::fabs(z) * (1 + 3 * 0.044715 * z * z);
}

struct ActivationShape {
  int64_t rows, n;
};
constexpr ActivationShape kActivationShapes[] = {{64, 4096}, {33, 1000}, {17, 67}};

TEST_F(FusedGpu, BiasGeluMatchesReference) {
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (ActivationShape s : kActivationShapes) {
      const size_t count = static_cast<size_t>(s.rows * s.n), n = static_cast<size_t>(s.n);
      const Operand x = operand(random(count, 2.f), dtype),
                    b = operand(random(n, 0.5f, 0.1f), dtype),
                    dy = operand(random(count, 1.f), dtype);
      Output y = output(count, dtype), dx = output(count, dtype);
      float* db = fp32_buffer(n);
      bias_gelu_forward(x.device, b.device, dtype, s.rows, s.n, y.device, stream_);
      bias_gelu_forward_reference(x.host(), b.host(), dtype, s.rows, s.n, y.host());
      std::vector<float> zeros(
          static_cast<size_t>(bias_gelu_backward_workspace_floats(s.rows, s.n)), 0.f),
          want_db(n);
      bias_gelu_backward(dy.device, x.device, b.device, dtype, s.rows, s.n, dx.device, db,
                         upload(zeros), stream_);
      bias_gelu_backward_reference(dy.host(), x.host(), b.host(), dtype, s.rows, s.n, dx.host(),
                                   want_db.data());
      const std::vector<float> want_y = y.host_values(), want_dx = dx.host_values();
      std::vector<double> y_bound(count), dx_bound(count), db_bound(n, 0.0);
      for (size_t i = 0; i < count; ++i) {
        const double z = static_cast<double>(x.values[i]) + b.values[i % n], q = gelu_q(z);
        y_bound[i] = 8 * kU32 * std::fabs(z) * q + 3 * kU32 * std::fabs(want_y[i]) +
                     out_err(dtype, want_y[i]);
        const double dx_error = (16 * q * q + 10 * q) * kU32 * std::fabs(dy.values[i]);
        dx_bound[i] = dx_error + out_err(dtype, want_dx[i]);
        // dbias adds the unrounded dx: their errors, then ≤ rows roundings of the running sum.
        db_bound[i % n] += dx_error + s.rows * kU32 * std::fabs(dy.values[i]) * q;
      }
      for (size_t j = 0; j < n; ++j) db_bound[j] += kU32 * std::fabs(want_db[j]);
      expect_within(fetch(y), want_y, y_bound, "y");
      expect_within(fetch(dx), want_dx, dx_bound, "dx");
      expect_within(download(db, n), want_db, db_bound, "dbias");
    }
}

// σ(g) = 1/(1 + expf(-g)): expf 2 ulp, then 2 roundings: ≤ 4·u32·σ. y = g·σ·up: ≤ 7·u32·|y|
// with the reference's rounding; dup = dy·g·σ likewise. dgate = dy·up·σ·(1 + g·(1 - σ)):
// 1 - σ is off by ≤ 5·u32 absolute (cancellation as σ → 1), g·(1 - σ) by ≤ 6·u32·|g|, the
// sum 1 + ... and three products by 4 roundings, σ by 4, and the reference's rounding:
// ≤ 15·u32·|dy·up|·σ·(1 + |g|).
TEST_F(FusedGpu, SwigluMatchesReference) {
  for (DType dtype : {DType::fp32, DType::bf16, DType::fp16})
    for (size_t n : {size_t{1} << 20, size_t{1000003}}) {
      const Operand gate = operand(random(n, 3.f), dtype), up = operand(random(n, 1.f), dtype),
                    dy = operand(random(n, 1.f), dtype);
      Output y = output(n, dtype), dgate = output(n, dtype), dup = output(n, dtype);
      const int64_t count = static_cast<int64_t>(n);
      swiglu_forward(gate.device, up.device, dtype, count, y.device, stream_);
      swiglu_forward_reference(gate.host(), up.host(), dtype, count, y.host());
      swiglu_backward(dy.device, gate.device, up.device, dtype, count, dgate.device, dup.device,
                      stream_);
      swiglu_backward_reference(dy.host(), gate.host(), up.host(), dtype, count, dgate.host(),
                                dup.host());
      const std::vector<float> want_y = y.host_values(), want_dgate = dgate.host_values(),
                               want_dup = dup.host_values();
      std::vector<double> y_bound(n), dgate_bound(n), dup_bound(n);
      for (size_t i = 0; i < n; ++i) {
        const double g = gate.values[i], sigma = 1 / (1 + std::exp(-g));
        y_bound[i] = 7 * kU32 * std::fabs(want_y[i]) + out_err(dtype, want_y[i]);
        dup_bound[i] = 7 * kU32 * std::fabs(want_dup[i]) + out_err(dtype, want_dup[i]);
        dgate_bound[i] =
            15 * kU32 * std::fabs(dy.values[i] * up.values[i]) * sigma * (1 + std::fabs(g)) +
            out_err(dtype, want_dgate[i]);
      }
      expect_within(fetch(y), want_y, y_bound, "y");
      expect_within(fetch(dgate), want_dgate, dgate_bound, "dgate");
      expect_within(fetch(dup), want_dup, dup_bound, "dup");
    }
}

}  // namespace
}  // namespace sextant::kernels
