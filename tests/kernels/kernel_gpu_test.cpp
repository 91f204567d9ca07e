// Each CUDA kernel against its CPU reference on fresh random inputs (never zeros), at the
// dtype's tolerance. Without a CUDA device every case reports itself skipped.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "kernels/kernels.h"
#include "tests/kernels/kernel_gpu_support.h"

namespace sextant::kernels {
namespace {

TEST_F(KernelGpu, CastIsBitExact) {
  const std::vector<float> x = random(1 << 20, 300.f);
  for (DType dtype : {DType::bf16, DType::fp16}) {
    std::vector<uint16_t> want(x.size()), zeros(x.size(), 0);
    cast_reference(x.data(), DType::fp32, want.data(), dtype, static_cast<int64_t>(x.size()));
    uint16_t* out = upload(zeros);
    cast(upload(x), DType::fp32, out, dtype, static_cast<int64_t>(x.size()), stream_);
    EXPECT_EQ(download(out, x.size()), want);
    std::vector<float> back_zero(x.size(), 0.f);
    float* back = upload(back_zero);
    cast(out, dtype, back, DType::fp32, static_cast<int64_t>(x.size()), stream_);
    EXPECT_EQ(download(back, x.size()), widen(want, dtype));
  }
}

TEST_F(KernelGpu, AdamWMatchesReference) {
  const size_t n = (1 << 20) + 3;
  std::vector<float> master = random(n, 1.f), m = random(n, 0.01f), v = random(n, 0.f, 1e-4f), grad = random(n, 0.1f);
  for (float& x : v) x = std::fabs(x) + 1e-6f;
  std::vector<float> mask(n);
  for (size_t i = 0; i < n; ++i) mask[i] = static_cast<float>(i % 3 != 0);
  AdamWArgs args;
  args.lr = 1e-3f;
  args.weight_decay = 0.1f;
  args.grad_scale = 1.f / 1024;
  args.step = 7;
  for (DType dtype : {DType::bf16, DType::fp16}) {
    float *d_master = upload(master), *d_m = upload(m), *d_v = upload(v);
    std::vector<uint16_t> zeros(n, 0);
    uint16_t* d_working = upload(zeros);
    adamw(d_master, d_m, d_v, upload(grad), upload(mask), static_cast<int64_t>(n), args, d_working, dtype, stream_);
    std::vector<float> r_master = master, r_m = m, r_v = v;
    std::vector<uint16_t> r_working(n);
    adamw_reference(r_master.data(), r_m.data(), r_v.data(), grad.data(), mask.data(), static_cast<int64_t>(n), args,
                    r_working.data(), dtype);
    // Same formula and order in fp32; nvcc may contract a*b+c into one FMA (one rounding
    // fewer), so up to ~8 roundings differ, each ≤ 2 u32: ≤ 16 u32 ≈ 1e-6 relative.
    expect_close(download(d_master, n), r_master, 1e-6f, 1e-7f, "master");
    expect_close(download(d_m, n), r_m, 1e-6f, 1e-9f, "m");
    expect_close(download(d_v, n), r_v, 1e-6f, 1e-12f, "v");
    // The 16-bit copy may differ by one unit where fp32 rounding differs at a tie: one unit
    // is at most 2^-7 (bf16) or 2^-10 (fp16) of the value.
    expect_close(widen(download(d_working, n), dtype), widen(r_working, dtype), dtype == DType::bf16 ? 8e-3f : 1e-3f,
                 0, "working copy");
  }
}

TEST_F(KernelGpu, UnscaleAndSquareSumMatchReference) {
  std::vector<std::vector<float>> host;
  // Chunks of every kind: a 1-element tensor, a partial chunk, 16 whole chunks and a tail,
  // and 400 small tensors so that the chunks overflow one launch (320).
  for (size_t n : {size_t{1}, size_t{1000}, size_t{(1 << 20) + 7}, size_t{4096}}) host.push_back(random(n, 2.f));
  for (int t = 0; t < 400; ++t) host.push_back(random(100 + t, 2.f));
  std::vector<TensorSpan> device, reference;
  for (auto& h : host) {
    device.push_back({upload(h), static_cast<int64_t>(h.size())});
    reference.push_back({h.data(), static_cast<int64_t>(h.size())});
  }
  int* found = upload(std::vector<int>{0});
  unscale(device, 1.f / 8, found, stream_);
  EXPECT_FALSE(unscale_reference(reference, 1.f / 8));
  EXPECT_EQ(download(found, 1)[0], 0);
  for (size_t t = 0; t < host.size(); ++t)  // 1/8 is a power of two: exact
    expect_close(download(device[t].data, host[t].size()), host[t], 0, 0, "unscaled");
  double* sum = upload(std::vector<double>{0.25});  // added to, not overwritten
  std::vector<double> workspace(static_cast<size_t>(multi_tensor_chunks(device)), -1.0);
  square_sum(device, sum, upload(workspace), stream_);
  const double want = 0.25 + square_sum_reference(reference);
  // Both sum exact products (float squares are exact in double) in double, in different
  // orders: the kernel adds ≤ 256 terms per thread, 8 tree levels, 1 chunk partial per
  // thread (420 chunks, 1024 threads) and 10 tree levels more, then the 0.25; the reference
  // ~1.17M terms in a row. Sums of positive terms: ≤ (300 + 1.2M) u64 ≈ 1.4e-10 relative.
  EXPECT_NEAR(download(sum, 1)[0], want, 1.4e-10 * want);

  // One inf in the largest tensor, one NaN in the 4096-element one: both found.
  for (float bad : {std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN()}) {
    const size_t t = std::isinf(bad) ? 2 : 3;
    CUDA_CHECK(cudaMemcpy(device[t].data + 5, &bad, sizeof bad, cudaMemcpyHostToDevice));
    CUDA_CHECK(cudaMemset(found, 0, sizeof(int)));
    unscale(device, 1.f, found, stream_);
    EXPECT_EQ(download(found, 1)[0], 1);
  }
}

TEST_F(KernelGpu, VocabParallelCrossEntropyMatchesReference) {
  const int64_t tokens = 300, vocab = 50304, shards = 2, local = vocab / shards;
  std::uniform_int_distribution<int64_t> pick(0, vocab - 1);
  std::vector<int64_t> targets(tokens);
  for (int64_t& t : targets) t = pick(rng_);
  const std::vector<float> logits = random(static_cast<size_t>(tokens * vocab), 3.f);
  const std::vector<float> grad_loss = random(static_cast<size_t>(tokens), 0.1f, 1.f);
  for (DType dtype : {DType::fp32, DType::bf16}) {
    // dlogits: p = expf (≤ 2 ulp) of a rounded difference (≤ 0.5 ulp of |x - max|), times a
    // rounded reciprocal, minus onehot, times g: a few u32 of p, ≤ 1e-5 relative for the
    // p that matter; bf16: one unit of the 16-bit format (2^-7) where fp32 rounds at a tie.
    const float tol = dtype == DType::fp32 ? 1e-5f : 8e-3f;
    std::vector<float> max_all(tokens, -INFINITY), want_max(tokens), want_sum(tokens), want_target(tokens, 0.f);
    std::vector<std::vector<uint16_t>> half_parts;
    std::vector<std::vector<float>> parts;
    for (int64_t r = 0; r < shards; ++r) {  // shard r holds columns [r·local, (r+1)·local)
      std::vector<float> part(static_cast<size_t>(tokens * local));
      for (int64_t t = 0; t < tokens; ++t)
        std::memcpy(&part[t * local], &logits[t * vocab + r * local], local * sizeof(float));
      parts.push_back(part);
    }
    const void* d_parts[shards];
    std::vector<float> local_max[shards], local_sum[shards];
    for (int64_t r = 0; r < shards; ++r) {
      const void* host_part = parts[r].data();
      if (dtype == DType::bf16) {
        half_parts.emplace_back(parts[r].size());
        cast_reference(parts[r].data(), DType::fp32, half_parts.back().data(), dtype,
                       static_cast<int64_t>(parts[r].size()));
        host_part = half_parts.back().data();
        d_parts[r] = upload(half_parts.back());
      } else {
        d_parts[r] = upload(parts[r]);
      }
      std::vector<float> zeros(tokens, 0.f);
      float *d_max = upload(zeros), *d_sum = upload(zeros), *d_target = upload(zeros);
      ce_forward_partial(d_parts[r], dtype, tokens, local, upload(targets), r * local, d_max, d_sum, d_target,
                         stream_);
      std::vector<float> r_max(tokens), r_sum(tokens), r_target(tokens);
      ce_forward_partial_reference(host_part, dtype, tokens, local, targets.data(), r * local, r_max.data(),
                                   r_sum.data(), r_target.data());
      local_max[r] = download(d_max, tokens);
      local_sum[r] = download(d_sum, tokens);
      expect_close(local_max[r], r_max, 0, 0, "local max");  // max and a copied logit: exact
      // The reference sums in double and rounds once (≤ 1 u32). The kernel's fp32 sum of
      // 25152 exps: ~98 sequential merges per thread, then 5 shuffle and 7 block merges,
      // each ≤ 1 u32 plus an expf rescale (≤ 5 u32) when the max moves, on terms each ≤ ~7
      // u32 off: worst case ~165 u32 ≈ 9.8e-6.
      expect_close(local_sum[r], r_sum, 1e-5f, 0, "local sum of exp");
      expect_close(download(d_target, tokens), r_target, 0, 0, "target logit");
      for (int64_t t = 0; t < tokens; ++t) {
        max_all[t] = std::max(max_all[t], r_max[t]);
        want_target[t] += r_target[t];
      }
    }
    // The tp reductions, done on the host; then the rescale, loss and backward kernels.
    std::fill(want_sum.begin(), want_sum.end(), 0.f);
    for (int64_t r = 0; r < shards; ++r) {
      std::vector<float> zeros(tokens, 0.f), rescaled(tokens);
      float* d_rescaled = upload(zeros);
      ce_rescale(upload(local_max[r]), upload(local_sum[r]), upload(max_all), tokens, d_rescaled, stream_);
      ce_rescale_reference(local_max[r].data(), local_sum[r].data(), max_all.data(), tokens, rescaled.data());
      const std::vector<float> got = download(d_rescaled, tokens);
      expect_close(got, rescaled, 2e-6f, 0,
                   "rescaled sum");  // expf (2 ulp) and a product: ≤ ~6 u32 = 3.6e-7
      for (int64_t t = 0; t < tokens; ++t) want_sum[t] += rescaled[t];
    }
    std::vector<float> zeros(tokens, 0.f), want_loss(tokens);
    float* d_loss = upload(zeros);
    float *d_global_max = upload(max_all), *d_sum_exp = upload(want_sum);
    ce_loss(d_global_max, d_sum_exp, upload(want_target), tokens, d_loss, stream_);
    ce_loss_reference(max_all.data(), want_sum.data(), want_target.data(), tokens, want_loss.data());
    // logf (1 ulp) and two sums of numbers below 32, each ≤ 0.5 ulp(32): ≤ 4e-6 absolute,
    // under 2e-6 + 2e-6·|loss| for any loss above 1 (these are ~10-15).
    expect_close(download(d_loss, tokens), want_loss, 2e-6f, 2e-6f, "loss");
    for (int64_t r = 0; r < shards; ++r) {
      const size_t count = static_cast<size_t>(tokens * local);
      std::vector<float> got(count), want(count);
      if (dtype == DType::bf16) {
        std::vector<uint16_t> out(count, 0), ref(count);
        uint16_t* d_out = upload(out);
        ce_backward(d_parts[r], dtype, tokens, local, upload(targets), r * local, d_global_max, d_sum_exp,
                    upload(grad_loss), d_out, stream_);
        ce_backward_reference(half_parts[r].data(), dtype, tokens, local, targets.data(), r * local, max_all.data(),
                              want_sum.data(), grad_loss.data(), ref.data());
        got = widen(download(d_out, count), dtype);
        want = widen(ref, dtype);
      } else {
        std::vector<float> out(count, 0.f);
        float* d_out = upload(out);
        ce_backward(d_parts[r], dtype, tokens, local, upload(targets), r * local, d_global_max, d_sum_exp,
                    upload(grad_loss), d_out, stream_);
        ce_backward_reference(parts[r].data(), dtype, tokens, local, targets.data(), r * local, max_all.data(),
                              want_sum.data(), grad_loss.data(), want.data());
        got = download(d_out, count);
      }
      expect_close(got, want, tol, 1e-7f, "dlogits");
    }
  }
}

}  // namespace
}  // namespace sextant::kernels
