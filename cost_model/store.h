// The SQLite store: one file holds clusters, searches and their ranked plans with the
// predicted breakdown (later: profiles, runs, calibrations). The schema is versioned
// (PRAGMA user_version) and migrated forward on open; every write is one transaction.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cost_model/cluster_spec.h"
#include "cost_model/estimator.h"
#include "cost_model/layout.h"
#include "cost_model/model_spec.h"

namespace SQLite {
class Database;
}

namespace sextant {

struct StoredPlan {
  int64_t rank = 0;  // 1 = best
  ParallelLayout layout;
  Prediction prediction;
};

struct SearchRecord {
  ModelSpec model;
  nlohmann::json cluster_json;
  std::string cluster_name;
  int64_t gpus = 0;
  JobSpec job;
  std::string fixed;  // the --fix text, "" if none
  int64_t evaluated = 0, feasible = 0;
  double seconds = 0;
  std::vector<StoredPlan> plans;
};

class Store {
 public:
  // Opens or creates the database and migrates it; InputError("--db", ...) if it cannot.
  explicit Store(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  static int latest_schema_version();
  int schema_version() const;
  // Writes the search, its cluster and plans in one transaction; returns the search id.
  int64_t save_search(const SearchRecord& record);
  int64_t count(const std::string& table) const;  // rows in a known table (tests, reports)

 private:
  void migrate();
  std::string path_;
  std::unique_ptr<SQLite::Database> db_;
};

}  // namespace sextant
