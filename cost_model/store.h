// The SQLite store: one file holds clusters, searches and their ranked plans with the
// predicted breakdown, profiles, runs with their steps, and calibrations. The schema is
// versioned (PRAGMA user_version) and migrated forward on open; every write is one
// transaction. The store keeps and returns records; their analysis lives in the planner.
#pragma once

#include <cmath>
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
  // Where the step's time went on the ranks (their mean; executor/step_clock.h): NaN in
  // steps stored before schema 6 measured it.
  double forward_s = NAN, backward_s = NAN, optimizer_s = NAN, comm_wait_s = NAN;
  double ep_comm_s = NAN;  // MoE all-to-alls, apart from the parts above; NaN before schema 7
};

enum class RunStatus { running, finished, failed, aborted };
const char* to_string(RunStatus status);

// What a `sextant execute` run stores when it starts: the plan it executes (the plan file's
// JSON, written by planner/plan_file.h) and a few of its fields as columns for SQL readers.
struct RunStart {
  std::string plan_path;
  int64_t search_id = 0;  // the stored search that produced the plan, 0 if unknown
  std::string plan_json;  // the plan file as executed
  std::string model_name, cluster_name, data;
  int64_t world_size = 0;
  std::string layout_json;
  double predicted_step_time_s = 0, predicted_tokens_per_s = 0, predicted_peak_bytes = 0;
  std::string cost_model_version;  // the plan's: the model that made its predictions
};

// A stored run as it is, for the analysis (planner/run_report.h) to read: the plan's JSON,
// how the run ended and every step it finished.
struct StoredRun {
  int64_t id = 0;
  std::string created_at, ended_at;  // ended_at "" while running
  RunStatus status = RunStatus::running;
  std::string error;  // failed or aborted: why
  std::string plan_path, plan_json, data;
  int64_t world_size = 0;
  std::vector<StepRecord> steps;  // in step order
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
  // Runs are written as they happen, so a run that is killed keeps what it measured: it is
  // stored (status running) when it starts, each finished step is appended in its own
  // transaction, and it ends as finished or failed. A run still `running` whose process is
  // gone (same host: no such process, or another one under its pid) is marked aborted
  // whenever a store is opened; one from another host is left as it is.
  int64_t begin_run(const RunStart& run);
  void append_step(int64_t run_id, const StepRecord& step);
  void end_run(int64_t run_id, RunStatus status, const std::string& error = "");
  std::vector<StoredRun> runs() const;
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
  void mark_aborted_runs();
  // Runs `body` (which returns the new row's id) in one transaction; SQLite failures
  // become InputError naming the store.
  template <typename Body>
  int64_t write(Body&& body);
  std::string path_;
  std::unique_ptr<SQLite::Database> db_;
};

}  // namespace sextant
