// The training loop around Stage: gradients reduced and clipped across every shard,
// AdamW, measurements, checkpoints and the run record.
#include "executor/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <limits>
#include <optional>
#include <ostream>

#include <torch/version.h>
#include <unistd.h>

#include "cost_model/error.h"
#include "cost_model/model_graph.h"
#include "cost_model/store.h"
#include "executor/checkpoint.h"
#include "executor/counting_allocator.h"
#include "executor/data.h"
#include "executor/device.h"
#include "executor/tensor_kernels.h"
#ifdef SEXTANT_HAVE_NCCL
#include "executor/nccl_comm.h"
#endif

namespace sextant {
namespace {

struct StepStats {
  double loss = 0, step_time_s = 0, peak_bytes = 0, grad_norm = 0;
  double aux_loss = 0;  // MoE load-balancing loss, part of loss
  bool skipped = false;
  double loss_scale = 1;
  StepTimes parts;  // the ranks' mean
};

// A deliberate failure for the failure tests: SEXTANT_FAULT="kill:RANK:STEP" makes that
// rank kill itself when the step starts.
void maybe_inject_fault(int rank, int64_t step) {
  const char* spec = std::getenv("SEXTANT_FAULT");
  int fault_rank = -1;
  long long fault_step = -1;
  if (spec && std::sscanf(spec, "kill:%d:%lld", &fault_rank, &fault_step) == 2 && fault_rank == rank &&
      fault_step == step)
    ::kill(::getpid(), SIGKILL);
}

}  // namespace

torch::ScalarType working_dtype(Precision precision, const std::string& plan_path) {
  switch (precision) {
    case Precision::fp32: return torch::kFloat;
    case Precision::bf16: return torch::kBFloat16;
    case Precision::fp16:
#if TORCH_VERSION_MAJOR < 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR < 1)
      if (!torch::cuda::is_available())
        throw InputError(plan_path, "job.precision",
                         "fp16 needs a GPU or LibTorch >= 2.1 (this LibTorch " TORCH_VERSION
                         " has no fp16 matmul on CPU); use bf16 or fp32");
#endif
      return torch::kHalf;
  }
  return torch::kFloat;
}

OptimizerStepResult optimizer_step(std::vector<std::unique_ptr<ParamGroup>>& groups,
                                   const std::vector<ParamGroup*>& tied, CommGroups& comm, LossScaler& scaler,
                                   const AdamConfig& adam, int64_t step, const torch::Tensor& local_loss,
                                   TraceRecorder* trace, const torch::Tensor& local_aux_loss) {
  const ParallelLayout& l = comm.layout;
  {
    const TraceSpan span(trace, trace_name::dp_reduce, "dp-exposed", TraceThread::dp_comm);
    for (auto& g : groups) g->finish_gradients();
    for (auto& g : groups)
      if (g->tp_replicated() && (l.sequence_parallel || g->tp_partial_grad())) comm.tp->all_reduce(g->owned_grad());
    for (ParamGroup* g : tied) comm.embedding->all_reduce(g->owned_grad());
  }
  const TraceSpan span(trace, trace_name::optimizer, "optimizer", TraceThread::compute);

  OptimizerStepResult out;
  const auto scalar = torch::TensorOptions().dtype(torch::kDouble).device(local_loss.device());
  torch::Tensor overflowed = torch::zeros({}, scalar);
  if (scaler.dynamic()) {  // unscale; any rank's inf or NaN skips the step everywhere
    std::vector<torch::Tensor> grads;
    for (auto& g : groups) grads.push_back(g->owned_grad());
    overflowed = unscale_on_device(grads, static_cast<float>(1.0 / scaler.scale())).to(scalar.device());
  }
  // Summed whether or not the step is skipped (then unused): one reduction, one read-back.
  torch::Tensor square_sum = torch::zeros({}, scalar);
  for (auto& g : groups) g->add_grad_square_sum(square_sum, comm.coord.tp == 0);
  const bool counts_loss = comm.last_stage() && comm.coord.tp == 0;
  // The aux loss is counted on every stage (its layers' share), by tp rank 0 (MoeLoss::counts).
  const torch::Tensor aux = local_aux_loss.defined() ? local_aux_loss : torch::zeros({}, scalar);
  torch::Tensor sums =
      torch::stack({square_sum, counts_loss ? local_loss : torch::zeros({}, scalar), overflowed, aux.to(scalar.device())});
  comm.world->all_reduce(sums);
  const torch::Tensor host = sums.to(torch::kCPU);
  const double* summed = host.data_ptr<double>();
  out.aux_loss = summed[3];
  out.loss = summed[1] + summed[3];
  out.skipped = summed[2] > 0;
  if (scaler.dynamic()) scaler.update(out.skipped);
  if (out.skipped) {
    for (auto& g : groups) g->skip_step();
    out.grad_norm = std::numeric_limits<double>::quiet_NaN();
    return out;
  }
  out.grad_norm = std::sqrt(summed[0]);
  const double clip = std::min(1.0, adam.max_grad_norm / (out.grad_norm + 1e-6));
  for (auto& g : groups) g->step(adam, clip, step + 1);
  return out;
}

namespace {

// What the model computes in: the plan's precision, or float64 for an fp32 plan under --fp64.
torch::ScalarType run_dtype(const PlanFile& plan, const ExecuteOptions& o) {
  if (!o.fp64) return working_dtype(plan.job.precision, o.plan_path);
  if (plan.job.precision != Precision::fp32)
    throw InputError("--fp64", "",
                     std::string("needs an fp32 plan (got ") + to_string(plan.job.precision) + ")");
  return torch::kDouble;
}

CommGroups make_gpu_comm_groups(const ParallelLayout& layout, int device) {
#ifdef SEXTANT_HAVE_NCCL
  return make_nccl_comm_groups(layout, device);
#else
  throw InputError("--device", "cuda", "this build has no NCCL backend (NCCL was not found at configure time)");
#endif
}

StepStats train_step(Stage& stage, CommGroups& comm, const PlanFile& plan, const TokenSource& source, int64_t step,
                     const AdamConfig& adam, LossScaler& scaler, torch::Device device, StepClock& clock) {
  const ParallelLayout& l = plan.layout;
  const int64_t batch = plan.job.global_batch, seq = plan.model.seq_len, per_replica = batch / l.dp;
  comm.world->barrier();
  const int device_index = device.is_cuda() ? device.index() : -1;
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
  reset_peak(device_index);
  const auto start = std::chrono::steady_clock::now();
  clock.start();
  torch::Tensor tokens = load_samples(source, step * batch + comm.coord.dp * per_replica, per_replica, seq)
                             .view({l.grad_accum, l.micro_batch, seq + 1})
                             .to(device);
  const double scale = scaler.scale();
  const torch::Tensor local_loss =
      stage.run_schedule(tokens, scale / static_cast<double>(batch * seq), &clock) / scale;
  const torch::Tensor local_aux_loss = stage.aux_loss_sum() / scale;
  OptimizerStepResult r;
  {
    const PhaseScope phase(&clock, StepPhase::optimizer);
    r = optimizer_step(stage.groups(), stage.tied_groups(), comm, scaler, adam, step, local_loss, clock.trace(),
                       local_aux_loss);
  }
  const StepTimes t = clock.finish();

  if (device.is_cuda()) torch::cuda::synchronize(device.index());
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  torch::Tensor maxes = torch::tensor({elapsed, static_cast<double>(peak_bytes(device_index))}, torch::kDouble);
  comm.world->all_reduce_max(maxes);
  torch::Tensor parts =
      torch::tensor({t.forward_s, t.backward_s, t.optimizer_s, t.comm_wait_s, t.ep_comm_s}, torch::kDouble);
  comm.world->all_reduce(parts);
  parts /= static_cast<double>(comm.world->size());
  StepStats s{r.loss, maxes[0].item<double>(), maxes[1].item<double>(), r.grad_norm, r.aux_loss, r.skipped,
              scaler.scale(), {}};
  s.parts = {parts[0].item<double>(), parts[1].item<double>(), parts[2].item<double>(), parts[3].item<double>(),
             parts[4].item<double>()};
  return s;
}

NamedTensors stage_state(Stage& stage) {
  NamedTensors state;
  for (auto& g : stage.groups())
    for (auto& named : g->state()) state.push_back({named.first, named.second.to(torch::kCPU)});
  return state;
}

void restore_state(Stage& stage, const NamedTensors& state) {
  size_t at = 0;
  for (auto& g : stage.groups()) {
    const size_t n = g->state().size();
    if (at + n > state.size()) throw InputError("--resume", "", "checkpoint holds fewer tensors than this layout");
    g->load_state(NamedTensors(state.begin() + static_cast<std::ptrdiff_t>(at), state.begin() + static_cast<std::ptrdiff_t>(at + n)));
    at += n;
  }
}

// `v` of every rank of `group`, concatenated along dim 0 in rank order (collective).
torch::Tensor gathered(const torch::Tensor& v, Comm& group) {
  torch::Tensor all = torch::empty({group.size() * v.numel()}, v.options());
  group.all_gather(v.reshape({-1}).contiguous(), all);
  return all;
}

// Full weights of this stage, gathered over dp, tp and ep, written by its (dp 0, tp 0) rank.
void dump_weights(Stage& stage, CommGroups& comm, const std::string& dir) {
  NamedTensors full;
  for (auto& g : stage.groups()) {
    std::vector<torch::Tensor> values = g->full_values();
    for (size_t i = 0; i < values.size(); ++i) {
      const ParamSpec& spec = g->specs()[i];
      torch::Tensor v = values[i];
      if (spec.shard_dim >= 0 && comm.layout.tp > 1) {
        const torch::Tensor all = gathered(v, *comm.tp);
        std::vector<torch::Tensor> parts;
        for (int64_t r = 0; r < comm.layout.tp; ++r) parts.push_back(all.narrow(0, r * v.numel(), v.numel()).view(v.sizes()));
        v = torch::cat(parts, spec.shard_dim);
      }
      if (g->tied_copy()) continue;
      if (spec.expert < 0 || !comm.ep) {
        full.push_back({spec.name, v});
        continue;
      }
      // A routed expert: the same parameter of the experts every ep rank holds in this place.
      const int64_t per_rank = g->specs().back().expert - g->specs().front().expert + 1;
      const int64_t j = spec.expert - comm.ep_rank() * per_rank;
      const torch::Tensor all = gathered(v, *comm.ep);
      for (int64_t r = 0; r < comm.ep->size(); ++r)
        full.push_back({with_expert(spec.name, r * per_rank + j), all.narrow(0, r * v.numel(), v.numel()).view(v.sizes())});
    }
  }
  if (comm.coord.dp == 0 && comm.coord.tp == 0) {
    std::filesystem::create_directories(dir);
    write_safetensors(dir + "/stage-" + std::to_string(comm.coord.pp) + ".safetensors", full, {});
  }
  comm.world->barrier();
}

}  // namespace

namespace {

// Every job field the plan carries, honoured or refused: global_batch and seq_len shape the
// batches, precision picks the working dtype (working_dtype refuses what this LibTorch
// cannot compute in), flash_attention keeps no attention scores for backward (model.cpp),
// and fp32_grads must hold under 16-bit training, where gradients are always summed over
// micro-batches and reduced over dp in fp32.
void check_job(const PlanFile& plan, const std::string& path) {
  if (plan.job.precision != Precision::fp32 && !plan.job.fp32_grads)
    throw InputError(path, "job.fp32_grads",
                     "false (16-bit gradients) is not supported: the executor sums and reduces gradients in fp32; "
                     "plan with --fp32-grads");
  if (plan.layout.offload != Offload::none)
    throw InputError(path, "layout.offload", "offload is not supported by the executor yet");
}

RunStart run_start(const PlanFile& plan, const ExecuteOptions& o) {
  RunStart r;
  r.plan_path = o.plan_path;
  r.search_id = plan.search_id;
  r.plan_json = plan_file_to_json(plan).dump();
  r.model_name = plan.model.name;
  r.cluster_name = plan.cluster.name;
  r.data = o.data;
  r.world_size = plan.layout.world_size();
  r.layout_json = layout_to_json(plan.layout).dump();
  r.predicted_step_time_s = plan.prediction.time.step_s;
  r.predicted_tokens_per_s = plan.prediction.tokens_per_s;
  // What the allocator will count: the measured peak (counting allocator, or the CUDA caching
  // allocator's allocated bytes) never holds the runtime context and reserve of reserved_bytes.
  r.predicted_peak_bytes = plan.prediction.executor_memory.peak_bytes - plan.prediction.executor_memory.reserved_bytes;
  r.cost_model_version = plan.cost_model_version;
  return r;
}

// What rank 0 writes as the run goes: the store (the run when it starts, each step as it
// finishes, how it ended), the metrics file and the step lines of the log. Only rank 0
// makes one; the others call follow().
// A --fp64 run is not stored: it trains in float64, so its speed is not the plan's.
class RunRecorder {
 public:
  // Collective: opened by rank 0 once the input has been checked (bad input writes
  // nothing); when it cannot, every rank stops with it, before any collective of the run,
  // or the others would wait there for ever.
  RunRecorder(const ExecuteOptions& o, const PlanFile& plan, std::ostream& log) : log_(log), db_(o.db) {
    std::exception_ptr failure;
    try {
      if (!o.fp64) store_.emplace(o.db);
      if (!o.metrics_out.empty()) {
        metrics_.open(o.metrics_out, o.resume ? std::ios::app : std::ios::trunc);
        if (!metrics_) throw InputError("--metrics-out", o.metrics_out, "cannot open for writing");
      }
      if (store_) run_id_ = store_->begin_run(run_start(plan, o));
    } catch (const InputError&) {
      failure = std::current_exception();
    }
    agree(failure);
  }
  static void follow() { agree(nullptr); }  // the other ranks' side of the constructor

  // `moe`: the metrics line also splits the loss into the language-model loss and the
  // load-balancing loss.
  void step(const StepRecord& r, const StepStats& s, const LossScaler& scaler, bool moe) {
    const bool skipped = s.skipped;
    if (store_) store_->append_step(run_id_, r);  // a killed run keeps every step it finished
    nlohmann::json line = {{"step", r.step}, {"loss", r.loss}, {"step_time_s", r.step_time_s},
                           {"tokens_per_s", r.tokens_per_s}, {"mfu", r.mfu}, {"peak_bytes", r.peak_bytes},
                           {"grad_norm", skipped ? nlohmann::json() : nlohmann::json(s.grad_norm)},
                           {"forward_s", r.forward_s}, {"backward_s", r.backward_s}, {"optimizer_s", r.optimizer_s},
                           {"comm_wait_s", r.comm_wait_s}, {"ep_comm_s", s.parts.ep_comm_s}};
    if (moe) {
      line["lm_loss"] = r.loss - s.aux_loss;
      line["aux_loss"] = s.aux_loss;
    }
    if (scaler.dynamic()) {
      line["loss_scale"] = scaler.scale();
      line["skipped"] = skipped;
    }
    if (metrics_.is_open()) metrics_ << line.dump() << std::endl;
    log_ << "step " << r.step << "  loss " << std::setprecision(6) << r.loss << "  " << std::setprecision(4)
         << r.step_time_s << " s  " << std::setprecision(6) << r.tokens_per_s << " tokens/s  peak "
         << std::setprecision(4) << r.peak_bytes / (1 << 20) << " MiB" << std::endl;
  }
  void failed(const std::string& error) noexcept {
    if (!store_) return;
    try {  // the run's own error is the one to report
      store_->end_run(run_id_, RunStatus::failed, error);
    } catch (const std::exception&) {
    }
  }
  void finished() {
    if (!store_) {
      log_ << "run not stored: --fp64 trains in float64, so its speed is not the plan's" << std::endl;
      return;
    }
    store_->end_run(run_id_, RunStatus::finished);
    log_ << "run " << run_id_ << " stored in " << db_ << std::endl;
  }

 private:
  static void agree(std::exception_ptr failure) {
    int failed = failure ? 1 : 0;
    MPI_CHECK(MPI_Bcast(&failed, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (failure) std::rethrow_exception(failure);
    if (failed) throw InputError("rank 0", "", "could not open the store or the metrics file");
  }
  std::ostream& log_;
  std::string db_;
  std::optional<Store> store_;
  std::ofstream metrics_;
  int64_t run_id_ = 0;
};

// --trace names a file in an existing folder, --trace-step a step this run takes.
void check_trace(const ExecuteOptions& o) {
  if (o.trace_path.empty()) {
    if (o.trace_step >= 0) throw InputError("--trace-step", "", "needs --trace FILE");
    return;
  }
  const std::filesystem::path folder = std::filesystem::path(o.trace_path).parent_path();
  if (!folder.empty() && !std::filesystem::is_directory(folder))
    throw InputError("--trace", o.trace_path, "no folder " + folder.string() + " to write the trace in");
  if (o.trace_step >= o.steps)
    throw InputError("--trace-step", "", "must be a step of this run, below --steps " + std::to_string(o.steps) +
                                             " (got " + std::to_string(o.trace_step) + ")");
}

// execute --trace: the chosen step (default the last) recorded on every rank, then written
// by rank 0 (collective); the other steps run with no recorder.
class StepTracer {
 public:
  StepTracer(const ExecuteOptions& o, torch::Device device, int rank)
      : path_(o.trace_path), step_(o.trace_path.empty() ? -1 : o.trace_step >= 0 ? o.trace_step : o.steps - 1),
        rank_(rank), recorder_(device, rank) {}
  void before(int64_t step, StepClock& clock) { clock.set_trace(step == step_ ? &recorder_ : nullptr); }
  void after(int64_t step, const CommGroups& comm, std::ostream& log) {
    if (step != step_) return;
    write_measured_trace(path_, recorder_.finish(), comm, step);
    if (rank_ == 0) log << "trace of step " << step << " written to " << path_ << std::endl;
  }

 private:
  std::string path_;
  int64_t step_;
  int rank_;
  TraceRecorder recorder_;
};

// Everything checked before any work: bad input is refused on every rank alike.
torch::ScalarType check_input(const PlanFile& plan, const ExecuteOptions& o, int world_size) {
  const ParallelLayout& l = plan.layout;
  if (world_size != l.world_size())
    throw InputError(o.plan_path, "layout", "dp*tp*pp = " + std::to_string(l.world_size()) + " but the job has " +
                                                std::to_string(world_size) + " ranks; launch with mpirun -np " +
                                                std::to_string(l.world_size()));
  if (const std::string why = unsupported_reason(plan.model, l); !why.empty()) throw InputError(o.plan_path, "model", why);
  const torch::ScalarType dtype = run_dtype(plan, o);
  check_job(plan, o.plan_path);
  if (o.steps < 1) throw InputError("--steps", "", "must be at least 1");
  if (o.resume && o.checkpoint_dir.empty()) throw InputError("--resume", "", "needs --checkpoint-dir");
  if (o.keep_checkpoints < 1)
    throw InputError("--keep-checkpoints", "", "must be at least 1 (got " + std::to_string(o.keep_checkpoints) + ")");
  check_trace(o);
  return dtype;
}

}  // namespace

void execute_plan(const ExecuteOptions& o, std::ostream& log) {
  const PlanFile plan = read_plan_file(o.plan_path);
  int world_size = 1, world_rank = 0;
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size));
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank));
  const torch::ScalarType dtype = check_input(plan, o, world_size);
  auto source = open_token_source(o.data, plan.model.vocab_size, plan.model.seq_len);
  const DeviceChoice choice = pick_device(o.device, o.fp64);
  if (world_rank == 0 && !choice.note.empty()) log << choice.note << std::endl;
  const torch::Device device = choice.device;

  install_counting_allocator();
  torch::set_num_threads(1);  // one core per rank
  const ParallelLayout& l = plan.layout;
  CommGroups comm = device.is_cuda() ? make_gpu_comm_groups(l, device.index()) : make_comm_groups(l);
  StepClock clock(device);
  time_comm_waits(comm, clock);  // before the stage's groups keep references to them
  Stage stage(plan.model, l, plan.partition, comm, o.seed, dtype, device, plan.job.flash_attention);
  LossScaler scaler(plan.job.precision == Precision::fp16);
  nlohmann::json identity = {{"layout", layout_to_json(l)},
                             {"params", plan.model.total_params()},
                             {"seq_len", plan.model.seq_len},
                             {"global_batch", plan.job.global_batch},
                             {"seed", o.seed}};
  if (o.fp64) identity["fp64"] = true;  // its float64 state is not an fp32 run's
  int64_t first = 0;
  if (o.resume) {
    auto [step, state] = load_checkpoint(o.checkpoint_dir, identity, *comm.world);
    restore_state(stage, state);
    first = step;
  }
  std::optional<RunRecorder> recorder;
  if (world_rank == 0) recorder.emplace(o, plan, log);
  else RunRecorder::follow();
  AdamConfig adam;
  adam.lr = o.lr;
  const double tokens_per_step = static_cast<double>(plan.job.global_batch * plan.model.seq_len);
  const double flops_per_step = 3 * ModelGraph(plan.model).fwd_flops_per_token() * tokens_per_step;
  const double peak = plan.cluster.device.peak_flops_per_s(plan.job.precision) * world_size;
  try {
    StepTracer tracer(o, device, world_rank);
    for (int64_t step = first; step < o.steps; ++step) {
      maybe_inject_fault(world_rank, step);
      tracer.before(step, clock);
      const StepStats s = train_step(stage, comm, plan, *source, step, adam, scaler, device, clock);
      if (s.skipped && world_rank == 0)
        log << "step " << step << "  skipped: gradients overflowed; loss scale now " << s.loss_scale << std::endl;
      if (!s.skipped && !std::isfinite(s.loss))
        throw TrainingError("loss is " + std::to_string(s.loss) + " at step " + std::to_string(step));
      if (recorder)
        recorder->step({step, s.loss, s.step_time_s, tokens_per_step / s.step_time_s,
                        flops_per_step / s.step_time_s / peak, s.peak_bytes, s.parts.forward_s, s.parts.backward_s,
                        s.parts.optimizer_s, s.parts.comm_wait_s, s.parts.ep_comm_s},
                       s, scaler, plan.model.is_moe());
      tracer.after(step, comm, log);
      if (o.checkpoint_every > 0 && !o.checkpoint_dir.empty() && (step + 1) % o.checkpoint_every == 0)
        for (const std::string& problem : save_checkpoint(o.checkpoint_dir, step + 1, stage_state(stage), identity,
                                                          o.keep_checkpoints, *comm.world))
          log << "checkpoint: " << problem << "; the run goes on" << std::endl;
    }
    if (!o.dump_weights.empty()) dump_weights(stage, comm, o.dump_weights);
  } catch (const std::exception& e) {
    if (recorder) recorder->failed(e.what());
    throw;
  }
  if (recorder) recorder->finished();
}

}  // namespace sextant
