// The SQLite store: one file holds clusters, searches and their ranked plans with the
// predicted breakdown (later: profiles, runs, calibrations). The schema is versioned
// (PRAGMA user_version) and migrated forward on open; every write is one transaction.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "cost_model/calibration.h"
#include "cost_model/cluster_spec.h"
#include "cost_model/estimator.h"
#include "cost_model/layout.h"
#include "cost_model/model_spec.h"
#include "cost_model/profile_data.h"

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

struct StepRecord {
  int64_t step = 0;
  double loss = 0, step_time_s = 0, tokens_per_s = 0, mfu = 0, peak_bytes = 0;
};

// One `sextant execute` run: the plan it executed (with its prediction) and what it measured.
struct RunRecord {
  std::string plan_path;
  int64_t search_id = 0;  // the stored search that produced the plan, 0 if unknown
  nlohmann::json plan;
  std::string model_name, cluster_name, data;
  int64_t world_size = 0;
  nlohmann::json layout;
  double predicted_step_time_s = 0, predicted_tokens_per_s = 0, predicted_peak_bytes = 0;
  std::string cost_model_version;
  std::vector<StepRecord> steps;
};

// Predicted against measured for one run: the measured step time is the median over its
// steps after the first (warm-up), tokens/s follows from it, peak is the largest step's.
struct RunComparison {
  int64_t run_id = 0;
  std::string created_at, model_name, cluster_name, layout, cost_model_version;
  int64_t steps = 0;
  double predicted_step_time_s = 0, measured_step_time_s = 0;
  double predicted_tokens_per_s = 0, measured_tokens_per_s = 0;
  double predicted_peak_bytes = 0, measured_peak_bytes = 0;
  double final_loss = 0;
  std::string profile;            // measured profile the prediction used, "" for the cluster description
  std::string figures;            // figures_source: that profile with its id, or the cluster
  CalibrationFeatures features;   // the prediction's breakdown, for calibration
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
  // Writes a run and its steps in one transaction; returns the run id.
  int64_t save_run(const RunRecord& run);
  std::vector<RunComparison> compare_runs() const;
  // A measured profile (`sextant profile`), stored under its name; a name may be measured
  // again, and the latest wins. Shipped cluster descriptions are never touched.
  // Stored as profile_to_json's document; loaded with profile_from_json (InputError if
  // there is none of that name, or it is malformed).
  int64_t save_profile(const ProfileData& profile);
  std::pair<int64_t, ProfileData> load_profile(const std::string& name) const;
  // Calibrations are versioned by id; the latest is the one in force.
  int64_t save_calibration(const Calibration& calibration, const std::vector<int64_t>& fit_runs,
                           const nlohmann::json& summary);
  std::optional<std::pair<Calibration, std::vector<int64_t>>> latest_calibration() const;

 private:
  void migrate();
  // Runs `body` (which returns the new row's id) in one transaction; SQLite failures
  // become InputError naming the store.
  template <typename Body>
  int64_t write(Body&& body);
  std::string path_;
  std::unique_ptr<SQLite::Database> db_;
};

}  // namespace sextant
