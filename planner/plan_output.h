// What `sextant plan` prints and writes: the ranked table (table, json, csv) and the
// plan file, the contract between planner and executor.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "planner/search.h"

namespace sextant {

nlohmann::json search_to_json(const SearchRequest& request, const SearchResult& result);
std::string search_to_table(const SearchRequest& request, const SearchResult& result);
std::string search_to_csv(const SearchResult& result);

// The plan file for one candidate: model, cluster, job, layout, stage partition,
// predictions and the cost-model version.
nlohmann::json plan_to_json(const SearchRequest& request, const Candidate& candidate,
                            const nlohmann::json& cluster_json);

// Writes `text` to `path` through a temporary file and a rename, so readers never see
// half a file. Throws InputError(field, path, ...) when it cannot.
void write_file_atomically(const std::string& path, const std::string& text, const std::string& field);

}  // namespace sextant
