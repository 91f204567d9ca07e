// Cluster lookup: built-in names first, then files.
#include "profiles/cluster_catalog.h"

#include <filesystem>
#include <map>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"

namespace sextant {

const std::map<std::string, std::string>& builtin_cluster_texts();  // generated
const std::map<std::string, std::string>& builtin_kernel_texts();   // generated

namespace {

// device.kernels may name a built-in table (profiles/kernels/NAME.json): put the table
// itself in its place, so the description stored with a plan stands alone.
void resolve_kernel_table(nlohmann::json& json, const std::string& where) {
  if (!json.contains("device") || !json["device"].is_object()) return;
  nlohmann::json& device = json["device"];
  if (!device.contains("kernels") || !device["kernels"].is_string()) return;
  const std::string name = device["kernels"].get<std::string>();
  auto it = builtin_kernel_texts().find(name);
  if (it == builtin_kernel_texts().end()) {
    std::string known;
    for (const auto& [n, text] : builtin_kernel_texts()) known += (known.empty() ? "" : ", ") + n;
    throw InputError(where, "device.kernels", "unknown kernel table \"" + name + "\"; built-in: " + known);
  }
  device["kernels"] = JsonFields::parse_object(it->second, "built-in kernel table " + name);
}

}  // namespace

std::vector<std::string> builtin_cluster_names() {
  std::vector<std::string> names;
  for (const auto& [name, text] : builtin_cluster_texts()) names.push_back(name);
  return names;
}

ClusterSpec load_cluster(const std::string& name_or_path, nlohmann::json* json_out) {
  auto it = builtin_cluster_texts().find(name_or_path);
  nlohmann::json json;
  std::string where;
  if (it != builtin_cluster_texts().end()) {
    where = "built-in cluster " + name_or_path;
    json = JsonFields::parse_object(it->second, where);
  } else if (std::filesystem::exists(name_or_path)) {
    where = name_or_path;
    json = JsonFields::load_object_file(name_or_path);
  } else {
    std::string known;
    for (const std::string& n : builtin_cluster_names()) known += (known.empty() ? "" : ", ") + n;
    throw InputError("--cluster", "",
                     "unknown cluster \"" + name_or_path + "\"; built-in: " + known +
                         "; or a path to a cluster JSON file");
  }
  resolve_kernel_table(json, where);
  if (json_out) *json_out = json;
  return cluster_spec_from_json(json, where);
}

}  // namespace sextant
