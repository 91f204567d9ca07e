// Holding the cost model against published measurements: Korthikanti et al. (MLSys
// 2023) iteration times and per-GPU memory of four GPT models on DGX A100 nodes; the
// Megatron-LM H100 table; and any published throughput table in the generic
// "sextant-published-table/1" form (validate_published_table). Used by the accuracy tests.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cost_model/cluster_spec.h"
#include "cost_model/estimator.h"

namespace sextant {

struct ValidationRow {
  std::string model;
  std::string setting;  // "full" or "seqsel"
  double published_s = 0, predicted_s = 0;
  double published_states_gib = 0, predicted_states_gib = 0;          // params+grads+optimizer
  double published_activations_gib = 0, predicted_activations_gib = 0;
  double predicted_embedding_states_gib = 0;
  TimeBreakdown breakdown;  // first stage's embedding shard, not in the paper's figure
  double time_error() const { return predicted_s / published_s - 1.0; }
  double states_error() const { return predicted_states_gib / published_states_gib - 1.0; }
  double activations_error() const {
    return predicted_activations_gib / published_activations_gib - 1.0;
  }
};

// `data`: the korthikanti2022.json document; `cluster`: the DGX A100 description.
std::vector<ValidationRow> validate_korthikanti(const nlohmann::json& data, const ClusterSpec& cluster);
std::string validation_table(const std::vector<ValidationRow>& rows);

// The softer reference: Megatron-LM's H100 weak-scaling table (TFLOP/s per GPU, with
// micro-batch, recompute and ZeRO unpublished: the search picks them; tp and pp pinned).
struct ThroughputRow {
  std::string model;
  double published_tflops = 0, predicted_tflops = 0;
  std::string layout;
  double error() const { return predicted_tflops / published_tflops - 1.0; }
};
std::vector<ThroughputRow> validate_megatron_h100(const nlohmann::json& data, const ClusterSpec& cluster);
std::string throughput_table(const std::vector<ThroughputRow>& rows);

// A published throughput table with its layouts (tests/data/torchtitan-a100-2024.json,
// mtnlg-530b-2022.json, megatron-a100-2021.json). The document:
//   {"schema": "sextant-published-table/1", "name", "source", "assumptions": [...],
//    "metric": one of tokens_per_s_per_gpu, step_time_s, tflops_per_gpu (model FLOPs),
//              hardware_tflops_per_gpu (with recompute), mfu,
//    "defaults": {any row field},
//    "models": {"key": HF-style config.json object, or a path relative to the document},
//    "rows": [{"name", "model": key, "cluster": built-in name or path, "gpus", "global_batch",
//              "seq", "precision": bf16|fp16|fp32, "fp32_grads", "flash_attention",
//              "fix": {dp, tp, pp, vpp, zero, micro_batch, grad_accum, recompute,
//                      sequence_parallel, offload},  -- the published layout
//              "approximate": "why" (optional: a published setting sextant can only approximate),
//              "published": {metric: value, ...}}]}
// A row field missing from the row is taken from "defaults"; "fix" objects are merged
// (row wins). Layout axes left out of "fix" are unpublished: the search picks them, as
// validate_megatron_h100 does for micro-batch, recompute and ZeRO.
struct PublishedRowResult {
  std::string name;
  double published = 0, predicted = 0;  // in the table's metric
  bool feasible = true;                 // the best layout fits in memory
  std::string approximate;              // non-empty: flagged in the report
  std::string layout;                   // the layout predicted (pinned axes + the search's picks)
  std::string unpublished;              // the axes the search picked, e.g. "zero,micro_batch,recompute"
  double error() const { return predicted / published - 1.0; }
};
struct PublishedTableResult {
  std::string name, metric, source;
  std::vector<PublishedRowResult> rows;
  // Over the rows whose published setting sextant expresses exactly (the accuracy bar),
  // or over every row with `include_approximate`.
  double mean_abs_error(bool include_approximate = false) const;
  double max_abs_error(bool include_approximate = false) const;
  size_t exact_rows() const;
  // Sign of the mean error over the same rows, for the report: "optimistic" when sextant
  // predicts faster than published (more tokens/s or TFLOP/s, or less time), else
  // "pessimistic".
  std::string bias(bool include_approximate = false) const;
};
// `cluster_for` resolves a row's "cluster" (the CLI passes load_cluster); `base_dir` is
// where model paths are resolved. Throws InputError on a malformed document.
PublishedTableResult validate_published_table(
    const nlohmann::json& data, const std::function<ClusterSpec(const std::string&)>& cluster_for,
    const std::string& base_dir = ".");
std::string published_table_report(const PublishedTableResult& result);

}  // namespace sextant
