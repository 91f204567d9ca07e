// The built-in cluster descriptions (profiles/clusters/*.json, compiled in) and the
// lookup that takes a built-in name or a path to a user-written cluster JSON.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cost_model/cluster_spec.h"

namespace sextant {

std::vector<std::string> builtin_cluster_names();
// A built-in name, or a path to a JSON file. Throws InputError("--cluster", ...) for
// anything else. `json_out`, if given, receives the description as read.
ClusterSpec load_cluster(const std::string& name_or_path, nlohmann::json* json_out = nullptr);

}  // namespace sextant
