// Checkpoints: one safetensors file per rank with its owned parameters and optimizer
// states, and a manifest; every file is written to a temporary name and renamed, and the
// manifest last, so a checkpoint either exists whole or not at all.
//   DIR/step-N/rank-R.safetensors, DIR/step-N/manifest.json, DIR/latest (text: "step-N")
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "executor/comm.h"

namespace sextant {

using NamedTensors = std::vector<std::pair<std::string, torch::Tensor>>;

// safetensors: 8-byte little-endian header length, JSON header (dtype, shape, data_offsets
// per tensor, optional __metadata__), then the raw bytes. F32, F64 and I64 are supported.
void write_safetensors(const std::string& path, const NamedTensors& tensors, const nlohmann::json& metadata);
NamedTensors read_safetensors(const std::string& path);  // in file order; InputError if malformed

// Collective over the world: every rank writes its file; rank 0 writes the manifest and
// `latest` after all have finished. `identity` (layout, model) goes into the manifest.
void save_checkpoint(const std::string& dir, int64_t step, const NamedTensors& state, const nlohmann::json& identity,
                     Comm& world);
// Reads the latest checkpoint of DIR: its step and this rank's state. InputError if there
// is none, or its identity differs from `identity`.
std::pair<int64_t, NamedTensors> load_checkpoint(const std::string& dir, const nlohmann::json& identity, Comm& world);

}  // namespace sextant
