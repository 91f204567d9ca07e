// `sextant execute`: train with a plan's layout on the ranks of an MPI job, measure each
// step (time synchronised across ranks, tokens/s, MFU, peak bytes from the counting
// allocator, and the ranks' mean of its forward, backward, optimizer and comm-wait time,
// executor/step_clock.h), write metrics and the run to the store as it goes, checkpoint
// and resume.
// The plan is read with planner/plan_file.h's reader; every job field it carries is either
// honoured or refused before any work.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cost_model/cluster_spec.h"
#include "cost_model/estimator.h"
#include "cost_model/layout.h"
#include "cost_model/model_spec.h"
#include "executor/loss_scaler.h"
#include "executor/optimizer.h"
#include "executor/pipeline.h"
#include "executor/trace_recorder.h"
#include "planner/plan_file.h"

namespace sextant {

// A failure of the training itself (a loss that is not finite).
class TrainingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ExecuteOptions {
  std::string plan_path;
  int64_t steps = 10;
  std::string data = "synthetic";
  std::string db = "sextant.db";
  std::string metrics_out;
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  int64_t keep_checkpoints = 3;  // complete checkpoints left in checkpoint_dir, the latest included
  bool resume = false;
  uint64_t seed = 1234;
  double lr = 1e-3;
  std::string dump_weights;  // folder: full weights per stage after the last step
  std::string device = "auto";  // auto (a GPU when LibTorch sees one), cpu, cuda
  // Train an fp32 plan entirely in float64 on CPU ranks (weights, m, v, gradients,
  // activations, loss, communication), for equivalence checks; such a run is not stored.
  bool fp64 = false;
  // Chrome trace of one measured step (planner/timeline.h's format, one process per rank),
  // written by rank 0; trace_step < 0: the last step.
  std::string trace_path;
  int64_t trace_step = -1;
};

// The working dtype a precision trains in (fp32, bf16, fp16); InputError where this
// LibTorch cannot compute in it on this device (fp16 matmul on CPU needs LibTorch >= 2.1).
torch::ScalarType working_dtype(Precision precision, const std::string& plan_path);

struct OptimizerStepResult {
  double loss = 0, grad_norm = 0;
  double aux_loss = 0;  // MoE: the load-balancing loss, included in `loss`
  bool skipped = false;  // non-finite gradients under dynamic loss scaling: nothing updated
};

// Everything after the last backward of a step: gradients reduced over dp (and tp for
// sequence-parallel replicated weights, and the tied embedding), unscaled and checked
// for inf/NaN on every rank when the scaler is dynamic (an overflow anywhere skips the
// step everywhere and the scaler backs off), clipped by the global norm, AdamW.
// `local_loss` is this rank's share of the loss, already divided by the scale (a float64
// scalar on the device); `local_aux_loss` (MoE, optional) its share of the load-balancing
// loss, likewise, added to it. Replicated weights whose gradients are partial over tp (MoE
// router and shared-expert gate) are summed over tp like those of sequence parallelism.
// The host reads back once: the world all-reduce of [square sum, loss, overflowed ranks,
// aux loss], so every rank takes the same skip decision.
// `tied`: the groups holding a tied embedding on the first and last stage.
OptimizerStepResult optimizer_step(std::vector<std::unique_ptr<ParamGroup>>& groups,
                                   const std::vector<ParamGroup*>& tied, CommGroups& comm, LossScaler& scaler,
                                   const AdamConfig& adam, int64_t step, const torch::Tensor& local_loss,
                                   TraceRecorder* trace = nullptr, const torch::Tensor& local_aux_loss = {});

// Runs the job on this rank (MPI initialised by the caller). Rank 0 writes the log lines,
// the metrics file and the store: the run when it starts, each step as it finishes, and
// how it ended (finished, or failed with its error). Throws InputError before any work on
// bad input (on every rank together), TrainingError when the loss stops being finite.
void execute_plan(const ExecuteOptions& options, std::ostream& log);

}  // namespace sextant
