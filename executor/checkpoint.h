// Checkpoints: one safetensors file per rank with its owned parameters and optimizer
// states, and a manifest; every file is written to a temporary name and renamed, and the
// manifest last, so a checkpoint either exists whole or not at all; `latest` moves to it
// only then, and only then are older checkpoints deleted.
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
// `latest` after all have finished, then prunes DIR to `keep` checkpoints
// (prune_checkpoints). `identity` (layout, model) goes into the manifest. Returns, on rank
// 0, one line per folder it could not delete (reported, not fatal); nothing elsewhere.
std::vector<std::string> save_checkpoint(const std::string& dir, int64_t step,
                                         const NamedTensors& state, const nlohmann::json& identity,
                                         int64_t keep, Comm& world);

// Deletes old checkpoints of DIR so that at most `keep` (>= 1) complete ones remain: the
// one `latest` names and the keep - 1 newest complete ones before it. Also deletes
// folders older than `latest` without a manifest (a write cut short). Never deletes
// `latest`'s checkpoint or anything newer, nor anything but sextant checkpoint folders
// (`step-N`, holding only rank files and the manifest); with no readable `latest` it
// deletes nothing. Each folder loses its manifest first, so one whose deletion fails
// half-way reads as incomplete. Returns one line per folder it could not delete.
std::vector<std::string> prune_checkpoints(const std::string& dir, int64_t keep);
// Reads the latest checkpoint of DIR: its step and this rank's state. InputError if there
// is none, or its identity differs from `identity`.
std::pair<int64_t, NamedTensors> load_checkpoint(const std::string& dir, const nlohmann::json& identity, Comm& world);

}  // namespace sextant
