// `sextant execute`: train with a plan's layout on the ranks of an MPI job, measure each
// step (time synchronised across ranks, tokens/s, MFU, peak bytes from the counting
// allocator), write metrics and the run to the store, checkpoint and resume.
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
#include "executor/pipeline.h"

namespace sextant {

// A failure of the training itself (a loss that is not finite).
class TrainingError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct PlanFile {
  std::string path;
  nlohmann::json json;
  ModelSpec model;
  ClusterSpec cluster;
  JobSpec job;
  ParallelLayout layout;
  std::vector<ChunkSpec> partition;
  double predicted_step_time_s = 0, predicted_tokens_per_s = 0, predicted_peak_bytes = 0;
};

// Reads and checks a plan file (written by `sextant plan --out`). InputError names the
// field on anything inconsistent.
PlanFile read_plan_file(const std::string& path);

struct ExecuteOptions {
  std::string plan_path;
  int64_t steps = 10;
  std::string data = "synthetic";
  std::string db = "sextant.db";
  std::string metrics_out;
  std::string checkpoint_dir;
  int64_t checkpoint_every = 0;
  bool resume = false;
  uint64_t seed = 1234;
  double lr = 1e-3;
  std::string dump_weights;  // folder: full weights per stage after the last step
};

// Runs the job on this rank (MPI initialised by the caller). Rank 0 writes the log lines,
// the metrics file and the store. Throws InputError before any work on bad input,
// TrainingError when the loss stops being finite.
void execute_plan(const ExecuteOptions& options, std::ostream& log);

}  // namespace sextant
