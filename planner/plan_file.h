// The plan file: the contract between `sextant plan` and everything that runs or reads a
// plan (execute, compare, calibrate, export, simulate). This is its one home: one typed
// value, one writer (plan_file_to_json / write_plan_file) and one reader
// (plan_file_from_json / read_plan_file). Nothing else builds or parses plan JSON.
//
// On disk (format "sextant-plan 1"):
//   {"format", "cost_model_version",
//    "model": {model_spec_to_json fields, "config"},  config: the model config as read
//    "cluster": {...}, "gpus",                        cluster: the description as read
//    "job": {"global_batch", "seq_len", "precision", "flash_attention", "fp32_grads"},
//    "layout": {...}, "partition": [{"chunk", "stage", "virtual_stage", "first_block",
//                                    "blocks", "embedding", "head"}, ...],
//    "feasible", "predicted": {... prediction_to_json ...},
//    "profile": null | {"name", "id", "date", "machine", "libraries"},
//    "calibration": null | id, "store": {"search_id", "rank"} | null}
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cost_model/cluster_spec.h"
#include "cost_model/estimator.h"
#include "cost_model/layout.h"
#include "cost_model/model_spec.h"
#include "planner/search.h"

namespace sextant {

inline constexpr const char* kPlanFormat = "sextant-plan 1";

// The measured profile a plan's figures came from (sextant profile --name).
struct ProfileRef {
  std::string name;
  int64_t id = 0;
  std::string date;
  nlohmann::json machine = nlohmann::json::object(), libraries = nlohmann::json::object();
};

struct PlanFile {
  std::string cost_model_version = kCostModelVersion;  // of the model that made the predictions
  ModelSpec model;                 // seq_len is the job's sequence length
  nlohmann::json model_config;     // the config as read; the executor rebuilds the model from it
  ClusterSpec cluster;             // as planned: share_cpu_node(description, gpus)
  nlohmann::json cluster_json;     // the description as read
  int64_t gpus = 1;
  JobSpec job;
  ParallelLayout layout;
  std::vector<ChunkSpec> partition;  // the stage table the search computed, by chunk
  bool feasible = true;
  Prediction prediction;
  std::optional<ProfileRef> profile;  // none: the cluster description's figures
  int64_t calibration_id = 0;         // 0: uncalibrated
  int64_t search_id = 0, search_rank = 0;  // the stored search it came from (0: none)

  // "profile NAME #ID" or "cluster NAME": where the prediction's device figures came from.
  std::string figures() const;
};

// The plan of `candidate`, as the search for `request` computed it (stage table included),
// with the model config and cluster description as read. The caller adds the profile and
// the stored search, which the search does not know.
PlanFile plan_file_for(const SearchRequest& request, const Candidate& candidate, const nlohmann::json& model_config,
                       const nlohmann::json& cluster_json);

// The partition as Stage (executor/pipeline.h) and the schedule table assume it: pp·vpp
// chunks covering the model's blocks in order, chunk g on stage g mod pp as virtual stage
// g / pp, the embedding in the first and the head in the last. InputError(where,
// "partition", ...) otherwise. The reader checks every plan with it; code that builds a
// PlanFile itself can too.
void check_partition(const std::vector<ChunkSpec>& partition, const ParallelLayout& layout, int64_t layers,
                     const std::string& where);

nlohmann::json plan_file_to_json(const PlanFile& plan);
// Checks every field and the consistency between them (params against the config,
// dp·micro_batch·grad_accum against the batch, the partition against the layers);
// InputError naming `where` and the field otherwise.
PlanFile plan_file_from_json(const nlohmann::json& json, const std::string& where);

// Through a temporary file and a rename, so readers never see half a plan.
void write_plan_file(const std::string& path, const PlanFile& plan);
PlanFile read_plan_file(const std::string& path);

}  // namespace sextant
