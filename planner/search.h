// The search: every dp × tp × pp × vpp × ep × zero × micro-batch × recompute × sequence
// parallel × offload layout of a model on N devices, pruned where sizes do not divide
// or memory does not fit, ranked by predicted throughput.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cost_model/calibration.h"
#include "cost_model/cluster_spec.h"
#include "cost_model/estimator.h"
#include "cost_model/layout.h"
#include "cost_model/model_spec.h"

namespace sextant {

// Axes pinned with --fix k=v,... (keys as in the JSON layout).
struct FixedAxes {
  std::optional<int64_t> dp, tp, pp, vpp, ep, micro_batch, grad_accum;
  std::optional<int> zero;
  std::optional<Recompute> recompute;
  std::optional<bool> sequence_parallel;
  std::optional<Offload> offload;
  std::string text;  // as given
  // Every axis that the global batch does not determine is pinned.
  bool complete() const;
};

// Parses "tp=8,pp=2,ep=4,recompute=full"; throws InputError("--fix", key, ...) on bad input.
FixedAxes parse_fixed_axes(const std::string& text);

struct SearchRequest {
  ModelSpec model;
  ClusterSpec cluster;
  int64_t gpus = 1;
  JobSpec job;
  FixedAxes fixed;
  int64_t top_k = 10;
  // Correction factors fitted to measured runs (sextant calibrate), with the GEMM factor of
  // this request's figures in force (calibration_for); rankings use calibrated predictions.
  std::optional<Calibration> calibration;
};

struct Candidate {
  ParallelLayout layout;
  Prediction prediction;
  // The per-stage costs and partition the prediction was computed from (shared by the
  // candidates that differ only in zero and offload).
  std::shared_ptr<const StageTable> table;
};

struct SearchResult {
  std::vector<Candidate> candidates;  // best first; infeasible ones only when nothing fits
  int64_t evaluated = 0, feasible = 0;
  double seconds = 0;
};

// Throws InputError when the request itself is impossible (pinned sizes that do not
// multiply to the device count, a global batch that no dp divides, ...).
SearchResult search(const SearchRequest& request);

// One layout of the request's model on its cluster (request.gpus is ignored: the layout's
// world), predicted as the search predicts its final candidates: stage table, links, and
// the pipeline walked on the schedule table. The layout must be one the search allows.
Candidate evaluate_layout(const SearchRequest& request, const ParallelLayout& layout);

}  // namespace sextant
