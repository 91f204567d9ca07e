// Cluster lookup: built-in names first, then files.
#include "profiles/cluster_catalog.h"

#include <filesystem>
#include <map>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"

namespace sextant {

const std::map<std::string, std::string>& builtin_cluster_texts();  // generated

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
  if (json_out) *json_out = json;
  return cluster_spec_from_json(json, where);
}

}  // namespace sextant
