// Holding the cost model against published measurements: Korthikanti et al. (MLSys
// 2023) iteration times and per-GPU memory of four GPT models on DGX A100 nodes.
// Used by `sextant validate` and by the accuracy test.
#pragma once

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

}  // namespace sextant
