// The measurements behind `sextant profile`.
#include "executor/profiler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <ostream>
#include <stdexcept>

#include <torch/version.h>
#include <unistd.h>

#include "cost_model/collective.h"
#include "cost_model/median.h"
#include "executor/fused_ops.h"
#ifdef SEXTANT_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "kernels/kernels.h"  // CUDA_CHECK
#endif

namespace sextant {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// Run once to warm up, then repeat until `budget_s` (at least 3, at most `max_reps`
// times) and keep the median: the rate the work sustains, which the fastest repetition
// overstates when ranks share a node's caches and memory.
template <typename F>
double median_s(F&& run, double budget_s, int max_reps) {
  run();
  std::vector<double> times;
  const double stop = now_s() + budget_s;
  for (int i = 0; i < max_reps && (i < 3 || now_s() < stop); ++i) {
    const double t0 = now_s();
    run();
    times.push_back(now_s() - t0);
  }
  return median_of(std::move(times));
}

std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) return line.substr(line.find(':') + 2);
  return "unknown";
}

std::string device_name() {
  if (!torch::cuda::is_available()) return "cpu";
#ifdef SEXTANT_HAVE_CUDA
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) return std::string("cuda: ") + prop.name;
#endif
  return "cuda";
}

// Fills the profile's machine, libraries, date and ranks.
void describe_machine(Comm& world, ProfileData& profile) {
  char host[256] = {0};
  gethostname(host, sizeof host - 1);
  char mpi[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int length = 0;
  MPI_Get_library_version(mpi, &length);
  std::string mpi_version(mpi, static_cast<size_t>(length));
  mpi_version = mpi_version.substr(0, mpi_version.find_first_of(",\n"));
  std::time_t t = std::time(nullptr);
  char date[32];
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  profile.machine = {host, cpu_model(), static_cast<int64_t>(std::thread::hardware_concurrency()),
                     device_name()};
  profile.libraries = {TORCH_VERSION, mpi_version};
  profile.date = date;
  profile.ranks = world.size();
}

#ifdef SEXTANT_HAVE_CUDA
// The GPU's own clock: two events on the legacy default stream, the stream LibTorch
// queues work on unless told otherwise. cudaEventElapsedTime resolves about 0.5 us
// (CUDA Runtime API reference), far below a batch of `batch_s`.
class CudaEventClock final : public IntervalClock {
 public:
  CudaEventClock() {
    CUDA_CHECK(cudaEventCreate(&start_));
    CUDA_CHECK(cudaEventCreate(&stop_));
  }
  ~CudaEventClock() override {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  CudaEventClock(const CudaEventClock&) = delete;
  CudaEventClock& operator=(const CudaEventClock&) = delete;
  void start() override { CUDA_CHECK(cudaEventRecord(start_, nullptr)); }
  double stop_s() override {
    CUDA_CHECK(cudaEventRecord(stop_, nullptr));
    CUDA_CHECK(cudaEventSynchronize(stop_));
    float ms = 0;
    CUDA_CHECK(cudaEventElapsedTime(&ms, start_, stop_));
    return 1e-3 * ms;
  }

 private:
  cudaEvent_t start_ = nullptr, stop_ = nullptr;
};
#endif

// Seconds one run of `run` takes on `device`. CPU: the median of single runs on the host
// clock (median_s). GPU: batches of runs between CUDA events (median_s_per_rep); where
// sextant was built without CUDA but LibTorch has it, the same batches on the host clock
// with one synchronize per batch.
double seconds_per_run(const std::function<void()>& run, const torch::Device& device,
                       double budget_s, int max_reps) {
  if (!device.is_cuda()) return median_s(run, budget_s, max_reps);
#ifdef SEXTANT_HAVE_CUDA
  CudaEventClock clock;
#else
  HostClock clock([&] { torch::cuda::synchronize(device.index()); });  // timed to completion
#endif
  return median_s_per_rep(run, clock);
}

struct GemmShape {
  torch::ScalarType dtype;
  int64_t m, n, k;
};

std::vector<GemmShape> gemm_grid(bool quick, const torch::Device& device) {
  std::vector<int64_t> sizes = quick ? std::vector<int64_t>{64, 256} : std::vector<int64_t>{64, 256, 1024, 2048};
  if (device.is_cuda() && !quick) sizes = {256, 1024, 4096, 8192};
  std::vector<GemmShape> grid;
  for (auto dtype : {torch::kFloat, torch::kBFloat16}) {
    if (quick && dtype != torch::kFloat) continue;
    for (int64_t m : sizes)
      for (int64_t n : sizes)
        for (int64_t k : sizes) grid.push_back({dtype, m, n, k});
  }
  return grid;
}

const char* dtype_name(torch::ScalarType dtype) { return dtype == torch::kFloat ? "fp32" : "bf16"; }

double gemm_flops_per_s(const GemmShape& g, const torch::Device& device) {
  const auto options = torch::TensorOptions().dtype(g.dtype).device(device);
  torch::Tensor a = torch::randn({g.m, g.k}, options), b = torch::randn({g.k, g.n}, options);
  const double t = seconds_per_run([&] { torch::mm(a, b); }, device, 0.05, 20);
  return 2.0 * static_cast<double>(g.m * g.n * g.k) / t;
}

// Device-to-device copy: bytes read plus bytes written per second.
double measure_copy_bandwidth(bool quick, const torch::Device& device) {
  const int64_t n = (quick ? 8 : (device.is_cuda() ? 256 : 64)) << 20;  // floats
  const auto options = torch::TensorOptions().device(device);
  torch::Tensor src = torch::ones({n}, options), dst = torch::empty({n}, options);
  const double t = seconds_per_run([&] { dst.copy_(src); }, device, 0.2, 10);
  return 2.0 * static_cast<double>(n) * 4 / t;
}

// A layer's memory-bound ops, forward, on [tokens, hidden] fp32 activations, run by the
// kernels `sextant execute` runs (executor/fused_ops.h): layer norm, bias + tanh-GELU,
// SwiGLU; softmax over the last dimension (the attention core's, LibTorch's) and the
// residual add. Bytes as the cost model counts them: each op reads and writes its tensor
// once, SwiGLU and the add read two.
double measure_elementwise_bandwidth(bool quick, const torch::Device& device) {
  const int64_t rows = quick ? 256 : 2048, cols = 1024;
  const auto options = torch::TensorOptions().device(device);
  torch::Tensor x = torch::randn({rows, cols}, options), y = torch::randn({rows, cols}, options);
  torch::Tensor w = torch::ones({cols}, options), b = torch::zeros({cols}, options);
  const double bytes = static_cast<double>(rows * cols) * 4 * (2 + 2 + 3 + 2 + 3);
  torch::NoGradGuard no_grad;
  const double t = seconds_per_run(
      [&] {
        layer_norm(x, w, b, 1e-5);
        bias_gelu(x, b);
        swiglu(x, y);
        torch::softmax(x, -1);
        torch::add(x, y);
      },
      device, 0.2, 10);
  return bytes / t;
}

// One collective at one size on `comm`; returns the slowest rank's time.
double time_collective(Collective op, int64_t bytes, Comm& comm) {
  const int64_t n = std::max<int64_t>(bytes / 4, comm.size());
  const int64_t count = n / comm.size() * comm.size();
  torch::Tensor full = torch::ones({count}), part = torch::empty({count / comm.size()});
  auto run = [&] {
    switch (op) {
      case Collective::all_reduce: comm.all_reduce(full); break;
      case Collective::reduce_scatter: comm.reduce_scatter(full, part); break;
      case Collective::all_gather: comm.all_gather(part, full); break;
      case Collective::send_recv: {  // a ring: everyone sends to the next and receives from the previous
        comm.send(part, (comm.rank() + 1) % comm.size(), 7);
        torch::Tensor got = torch::empty_like(part);
        comm.recv(got, (comm.rank() + comm.size() - 1) % comm.size(), 7);
        comm.wait_sends();
        break;
      }
      default: break;
    }
  };
  // Every rank must run the same number of repetitions, so the count comes from the
  // slowest rank's warm-up, not from each rank's own clock.
  auto slowest = [&](double t) {
    torch::Tensor v = torch::tensor({t}, torch::kDouble);
    comm.all_reduce_max(v);
    return v.item<double>();
  };
  comm.barrier();
  double t0 = now_s();
  run();
  const double warmup_s = slowest(now_s() - t0);
  const int reps = static_cast<int>(std::clamp(0.05 / std::max(warmup_s, 1e-9), 3.0, 10.0));
  std::vector<double> times;
  for (int i = 0; i < reps; ++i) {
    t0 = now_s();
    run();
    times.push_back(now_s() - t0);
  }
  return slowest(median_of(std::move(times)));
}

std::vector<CollectivePoint> measure_collectives(const ProfileOptions& o, Comm& world,
                                                 std::ostream& progress) {
  std::vector<CollectivePoint> out;
  const int64_t largest = o.quick ? (1 << 20) : (256 << 20);
  for (int group = 2; group <= world.size(); group *= 2) {
    MPI_Comm split;
    MPI_CHECK(MPI_Comm_split(MPI_COMM_WORLD, world.rank() < group ? 0 : MPI_UNDEFINED, world.rank(), &split));
    if (split != MPI_COMM_NULL) {
      MpiComm comm(split);
      for (Collective op : {Collective::all_reduce, Collective::reduce_scatter, Collective::all_gather, Collective::send_recv}) {
        for (int64_t bytes = 1024; bytes <= largest; bytes *= 4) {
          const double t = time_collective(op, bytes, comm);
          const double algbw = static_cast<double>(bytes) / t;
          out.push_back({op, group, bytes, t, algbw, algbw * bus_factor(op, group)});
        }
        if (world.rank() == 0) progress << to_string(op) << " over " << group << " ranks: 1 KiB - " << (largest >> 20)
                                        << " MiB measured" << std::endl;
      }
    }
    world.barrier();
  }
  return out;
}

// Max over min of one figure's passes, minus one: how much the machine drifted.
double spread(const std::vector<double>& passes) {
  const auto [lo, hi] = std::minmax_element(passes.begin(), passes.end());
  return *hi / *lo - 1;
}

}  // namespace

void HostClock::start() {
  start_s_ = now_s();
}

double HostClock::stop_s() {
  wait_();
  return now_s() - start_s_;
}

double seconds_per_rep(double elapsed_s, int reps) {
  if (reps < 1)
    throw std::invalid_argument("seconds_per_rep: reps must be >= 1, got " + std::to_string(reps));
  if (!(elapsed_s >= 0)) throw std::invalid_argument("seconds_per_rep: elapsed_s must be >= 0");
  return elapsed_s / reps;
}

int reps_to_fill(double one_s, double batch_s, int max_reps) {
  if (max_reps < 1) throw std::invalid_argument("reps_to_fill: max_reps must be >= 1");
  if (!(one_s > 0)) return max_reps;  // too short for the clock to see
  return static_cast<int>(
      std::clamp(std::ceil(batch_s / one_s), 1.0, static_cast<double>(max_reps)));
}

double median_s_per_rep(const std::function<void()>& run, IntervalClock& clock,
                        const BatchTimingOptions& o) {
  if (o.batches < 1) throw std::invalid_argument("median_s_per_rep: batches must be >= 1");
  for (int i = 0; i < o.warmup; ++i) run();
  clock.start();
  run();
  const int reps = reps_to_fill(clock.stop_s(), o.batch_s, o.max_reps);
  std::vector<double> per_rep;
  for (int b = 0; b < o.batches; ++b) {
    clock.start();
    for (int i = 0; i < reps; ++i) run();
    per_rep.push_back(seconds_per_rep(clock.stop_s(), reps));
  }
  return median_of(std::move(per_rep));
}

ProfileData measure_profile(const ProfileOptions& o, Comm& world, std::ostream& progress) {
  torch::set_num_threads(1);
  ProfileData profile;
  describe_machine(world, profile);
  profile.name = o.name;
  const bool report = world.rank() == 0;
  // A GPU when LibTorch sees one (GEMMs and copies there; collectives stay on MPI).
  const torch::Device device = torch::cuda::is_available() ? torch::Device(torch::kCUDA, 0) : torch::Device(torch::kCPU);
  // Compute and memory figures are measured in whole passes and each keeps its median
  // over the passes: a machine whose speed drifts (a shared VM) then biases no shape.
  const std::vector<GemmShape> grid = gemm_grid(o.quick, device);
  std::vector<std::vector<double>> gemm(grid.size());
  std::vector<double> copy, elementwise;
  for (int pass = 0; pass < o.passes; ++pass) {
    for (size_t i = 0; i < grid.size(); ++i) gemm[i].push_back(gemm_flops_per_s(grid[i], device));
    copy.push_back(measure_copy_bandwidth(o.quick, device));
    elementwise.push_back(measure_elementwise_bandwidth(o.quick, device));
    if (report)
      progress << "pass " << pass + 1 << "/" << o.passes << ": gemm " << grid.size() << " shapes (fp32"
               << (o.quick ? "" : ", bf16") << "), copy " << copy.back() / 1e9 << " GB/s, memory-bound layer ops "
               << elementwise.back() / 1e9 << " GB/s" << std::endl;
  }
  profile.passes = o.passes;
  std::vector<double> gemm_spread;
  for (size_t i = 0; i < grid.size(); ++i) {
    profile.gemm.push_back(
        {dtype_name(grid[i].dtype), grid[i].m, grid[i].n, grid[i].k, median_of(gemm[i])});
    gemm_spread.push_back(spread(gemm[i]));
  }
  profile.memory_bandwidth_bytes_per_s = median_of(copy);
  profile.elementwise_bytes_per_s = median_of(elementwise);
  profile.spread_across_passes =
      PassSpread{median_of(gemm_spread), spread(copy), spread(elementwise)};
  if (report)
    progress << "median of " << o.passes << " passes: copy " << median_of(copy) / 1e9
             << " GB/s, memory-bound layer ops " << median_of(elementwise) / 1e9
             << " GB/s; GEMM rates moved by " << 100 * median_of(gemm_spread) << "% between passes (median shape)"
             << std::endl;
  profile.collectives = measure_collectives(o, world, progress);
  return profile;
}

}  // namespace sextant
