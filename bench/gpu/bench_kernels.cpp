// Achieved bandwidth of each CUDA kernel against the device's measured copy bandwidth
// (cudaMemcpy device to device, read + write). Prints a table; without a CUDA device it
// says so and measures nothing.
//   build/bench/bench_kernels [elements]        (default 2^28 = 256 Mi elements)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "kernels/kernels.h"

namespace {

using namespace sextant::kernels;

// Median of 21 timed runs after 3 warm-ups, in seconds.
double time_s(const std::function<void()>& run, cudaStream_t stream) {
  cudaEvent_t start, stop;
  CUDA_CHECK(cudaEventCreate(&start));
  CUDA_CHECK(cudaEventCreate(&stop));
  for (int i = 0; i < 3; ++i) run();
  std::vector<float> ms;
  for (int i = 0; i < 21; ++i) {
    CUDA_CHECK(cudaEventRecord(start, stream));
    run();
    CUDA_CHECK(cudaEventRecord(stop, stream));
    CUDA_CHECK(cudaEventSynchronize(stop));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, start, stop));
    ms.push_back(t);
  }
  std::sort(ms.begin(), ms.end());
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ms[ms.size() / 2] * 1e-3;
}

void* device_random(size_t bytes) {
  std::vector<float> host(bytes / sizeof(float));
  std::mt19937 rng(1);
  std::normal_distribution<float> normal(0.f, 1.f);
  for (float& x : host) x = std::abs(normal(rng)) * 1e-2f + 1e-4f;
  void* p = nullptr;
  CUDA_CHECK(cudaMalloc(&p, bytes));
  CUDA_CHECK(cudaMemcpy(p, host.data(), bytes, cudaMemcpyHostToDevice));
  return p;
}

// The fused norms and activations on bf16 activations of hidden 4096 (FFN width 16384),
// n elements in all, in buffers the caller owns (four of 4n bytes, one of 2n). Bytes are
// those each kernel must move: every bf16 operand read or written once, the statistics,
// and the backward's per-block partial sums written and read back once.
template <typename Row>
void fused_rows(int64_t n, float* a, float* b, float* c, float* d, void* e, cudaStream_t stream,
                Row&& row) {
  // The second half (from byte 2n) of a 4n-byte buffer.
  auto second = [n](float* p) { return static_cast<void*>(reinterpret_cast<uint16_t*>(p) + n); };
  const int64_t hidden = 4096, rows = n / hidden, ffn = 16384, ffn_rows = n / ffn;
  const double elements = static_cast<double>(rows * hidden), stats = 8.0 * rows;
  void *x = e, *y = a, *dy = second(a), *dx = b, *weight = second(b);
  float* statistics = c;                         // mean, rstd: 2·rows floats
  float* grads = d;                              // dweight, dbias
  float* work = static_cast<float*>(second(c));  // up to 2n bytes
  const int64_t groups = norm_backward_workspace_floats(rows, hidden) / (2 * hidden);
  if (norm_backward_workspace_floats(rows, hidden) * 4 > 2 * n ||
      bias_gelu_backward_workspace_floats(ffn_rows, ffn) * 4 > 2 * n) {
    std::printf("(fused kernels skipped: too few elements for their workspace)\n");
    return;
  }
  row("rmsnorm forward (bf16, h 4096)", 4.0 * elements + 4.0 * rows,
      [&] { rmsnorm_forward(x, weight, DType::bf16, rows, hidden, 1e-5f, y, statistics, stream); });
  row("rmsnorm backward (bf16, h 4096)", 6.0 * elements + 8.0 * groups * hidden, [&] {
    rmsnorm_backward(dy, x, weight, statistics, DType::bf16, rows, hidden, dx, grads, work, stream);
  });
  row("add + rmsnorm forward (bf16, h 4096)", 8.0 * elements + 4.0 * rows, [&] {
    add_rmsnorm_forward(x, dy, weight, DType::bf16, rows, hidden, 1e-5f, second(d), y, statistics,
                        stream);
  });
  row("layernorm forward (bf16, h 4096)", 4.0 * elements + stats, [&] {
    layernorm_forward(x, weight, weight, DType::bf16, rows, hidden, 1e-5f, y, statistics,
                      statistics + rows, stream);
  });
  row("layernorm backward (bf16, h 4096)", 6.0 * elements + stats + 16.0 * groups * hidden, [&] {
    layernorm_backward(dy, x, weight, statistics, statistics + rows, DType::bf16, rows, hidden, dx,
                       grads, grads + hidden, work, stream);
  });
  const double ffn_elements = static_cast<double>(ffn_rows * ffn);
  const double gelu_partials =
      8.0 * static_cast<double>(bias_gelu_backward_workspace_floats(ffn_rows, ffn));
  row("bias_gelu forward (bf16, n 16384)", 4.0 * ffn_elements,
      [&] { bias_gelu_forward(x, weight, DType::bf16, ffn_rows, ffn, y, stream); });
  row("bias_gelu backward (bf16, n 16384)", 6.0 * ffn_elements + gelu_partials, [&] {
    bias_gelu_backward(dy, x, weight, DType::bf16, ffn_rows, ffn, dx, grads, work, stream);
  });
  row("swiglu forward (bf16)", 6.0 * n, [&] { swiglu_forward(x, dy, DType::bf16, n, y, stream); });
  row("swiglu backward (bf16)", 10.0 * n,
      [&] { swiglu_backward(dy, x, second(b), DType::bf16, n, dx, second(d), stream); });
}

}  // namespace

int main(int argc, char** argv) {
  if (cuda_device_count() == 0) {
    std::printf("no CUDA device: nothing measured\n");
    return 0;
  }
  const int64_t n = argc > 1 ? std::atoll(argv[1]) : (int64_t{1} << 28);
  cudaDeviceProp prop{};
  CUDA_CHECK(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreate(&stream));
  const size_t fp32_bytes = static_cast<size_t>(n) * 4;
  float* master = static_cast<float*>(device_random(fp32_bytes));
  float* m = static_cast<float*>(device_random(fp32_bytes));
  float* v = static_cast<float*>(device_random(fp32_bytes));
  float* grad = static_cast<float*>(device_random(fp32_bytes));
  void* working = device_random(fp32_bytes / 2);
  int* found = nullptr;
  double* sum = nullptr;
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&found), sizeof(int)));
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&sum), sizeof(double)));

  const double copy_s = time_s([&] { CUDA_CHECK(cudaMemcpyAsync(m, master, fp32_bytes, cudaMemcpyDeviceToDevice, stream)); }, stream);
  const double copy_bw = 2.0 * fp32_bytes / copy_s;
  std::printf("device: %s, %lld elements\n", prop.name, static_cast<long long>(n));
  std::printf("%-34s %10s %10s %8s\n", "kernel", "time ms", "GB/s", "of copy");
  std::printf("%-34s %10.3f %10.1f %7.1f%%\n", "cudaMemcpy D2D (fp32)", copy_s * 1e3, copy_bw / 1e9, 100.0);
  auto row = [&](const std::string& name, double bytes, const std::function<void()>& run) {
    const double t = time_s(run, stream);
    std::printf("%-34s %10.3f %10.1f %7.1f%%\n", name.c_str(), t * 1e3, bytes / t / 1e9, 100.0 * bytes / t / copy_bw);
  };
  AdamWArgs args;
  args.weight_decay = 0.1f;
  args.lr = 1e-6f;
  row("adamw (fp32 master/m/v, bf16 copy)", 30.0 * n,
      [&] { adamw(master, m, v, grad, nullptr, n, args, working, DType::bf16, stream); });
  row("unscale (fp32, 1 tensor)", 8.0 * n, [&] { unscale({{grad, n}}, 1.f, found, stream); });
  std::vector<TensorSpan> many;
  for (int64_t i = 0; i < 256; ++i) many.push_back({grad + i * (n / 256), n / 256});
  row("unscale (fp32, 256 tensors)", 8.0 * n, [&] { unscale(many, 1.f, found, stream); });
  double* partials =
      static_cast<double*>(device_random(static_cast<size_t>(multi_tensor_chunks(many)) * 8));
  row("square_sum (fp32, 256 tensors)", 4.0 * n, [&] { square_sum(many, sum, partials, stream); });
  row("cast fp32 -> bf16", 6.0 * n, [&] { cast(master, DType::fp32, working, DType::bf16, n, stream); });
  row("cast bf16 -> fp32", 6.0 * n, [&] { cast(working, DType::bf16, m, DType::fp32, n, stream); });
  // Cross-entropy on a 50,304-wide bf16 vocab shard (GPT-2's padded vocabulary, tp = 1).
  const int64_t vocab = 50304, tokens = n / 2 / vocab;
  std::vector<int64_t> host_targets(static_cast<size_t>(tokens));
  for (int64_t t = 0; t < tokens; ++t) host_targets[static_cast<size_t>(t)] = (t * 7919) % vocab;
  int64_t* targets = nullptr;
  CUDA_CHECK(cudaMalloc(reinterpret_cast<void**>(&targets), tokens * sizeof(int64_t)));
  CUDA_CHECK(cudaMemcpy(targets, host_targets.data(), tokens * sizeof(int64_t), cudaMemcpyHostToDevice));
  float* rows = static_cast<float*>(device_random(static_cast<size_t>(tokens) * 4 * 4));
  row("ce forward (bf16 logits)", 2.0 * tokens * vocab, [&] {
    ce_forward_partial(working, DType::bf16, tokens, vocab, targets, 0, rows, rows + tokens, rows + 2 * tokens, stream);
  });
  row("ce backward (bf16 logits)", 4.0 * tokens * vocab, [&] {
    ce_backward(working, DType::bf16, tokens, vocab, targets, 0, rows, rows + tokens, rows + 2 * tokens,
                master, stream);
  });
  fused_rows(n, master, m, v, grad, working, stream, row);
  CUDA_CHECK(cudaStreamSynchronize(stream));
  return 0;
}
