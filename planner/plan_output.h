// What `sextant plan` prints: the ranked table (table, json or csv). The plan file it
// writes is planner/plan_file.h's.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "planner/search.h"

namespace sextant {

nlohmann::json search_to_json(const SearchRequest& request, const SearchResult& result);
std::string search_to_table(const SearchRequest& request, const SearchResult& result);
std::string search_to_csv(const SearchResult& result);

// Writes `text` to `path` through a temporary file and a rename, so readers never see
// half a file. Throws InputError(field, path, ...) when it cannot.
void write_file_atomically(const std::string& path, const std::string& text, const std::string& field);

}  // namespace sextant
