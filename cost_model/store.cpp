// Store: migrations and transactional writes through SQLiteCpp. Values are always
// bound to statements, never pasted into SQL.
#include "cost_model/store.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>

#include <SQLiteCpp/SQLiteCpp.h>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"

namespace sextant {
namespace {

// Migration i brings the schema from version i to i + 1. Append only.
const std::vector<const char*>& migrations() {
  static const std::vector<const char*> steps = {
      R"sql(
      CREATE TABLE clusters (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, description_json TEXT NOT NULL,
        created_at TEXT NOT NULL, UNIQUE (name, description_json));
      CREATE TABLE searches (
        id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, cost_model_version TEXT NOT NULL,
        cluster_id INTEGER NOT NULL REFERENCES clusters(id), gpus INTEGER NOT NULL,
        model_name TEXT NOT NULL, model_json TEXT NOT NULL, params INTEGER NOT NULL,
        seq_len INTEGER NOT NULL, global_batch INTEGER NOT NULL, precision TEXT NOT NULL,
        fixed TEXT NOT NULL, evaluated INTEGER NOT NULL, feasible INTEGER NOT NULL,
        seconds REAL NOT NULL);
      CREATE TABLE plans (
        id INTEGER PRIMARY KEY, search_id INTEGER NOT NULL REFERENCES searches(id),
        rank INTEGER NOT NULL, feasible INTEGER NOT NULL, reason TEXT NOT NULL,
        dp INTEGER NOT NULL, tp INTEGER NOT NULL, pp INTEGER NOT NULL, vpp INTEGER NOT NULL,
        zero INTEGER NOT NULL, micro_batch INTEGER NOT NULL, grad_accum INTEGER NOT NULL,
        recompute TEXT NOT NULL, sequence_parallel INTEGER NOT NULL, offload TEXT NOT NULL,
        step_time_s REAL NOT NULL, tokens_per_s REAL NOT NULL, model_tflops_per_gpu REAL NOT NULL,
        hardware_tflops_per_gpu REAL NOT NULL, mfu REAL NOT NULL, peak_bytes REAL NOT NULL,
        prediction_json TEXT NOT NULL);
      CREATE INDEX plans_by_search ON plans(search_id, rank);
      )sql",
      R"sql(
      CREATE TABLE runs (
        id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, plan_path TEXT NOT NULL,
        search_id INTEGER, plan_json TEXT NOT NULL, model_name TEXT NOT NULL, cluster_name TEXT NOT NULL,
        world_size INTEGER NOT NULL, layout_json TEXT NOT NULL, data TEXT NOT NULL,
        predicted_step_time_s REAL NOT NULL, predicted_tokens_per_s REAL NOT NULL,
        predicted_peak_bytes REAL NOT NULL, cost_model_version TEXT NOT NULL);
      CREATE TABLE run_steps (
        run_id INTEGER NOT NULL REFERENCES runs(id), step INTEGER NOT NULL, loss REAL NOT NULL,
        step_time_s REAL NOT NULL, tokens_per_s REAL NOT NULL, mfu REAL NOT NULL,
        peak_bytes REAL NOT NULL, PRIMARY KEY (run_id, step));
      )sql",
      R"sql(
      CREATE TABLE profiles (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, created_at TEXT NOT NULL,
        machine_json TEXT NOT NULL, libraries_json TEXT NOT NULL, profile_json TEXT NOT NULL);
      CREATE INDEX profiles_by_name ON profiles(name, id);
      )sql",
      R"sql(
      CREATE TABLE calibrations (
        id INTEGER PRIMARY KEY, created_at TEXT NOT NULL, cost_model_version TEXT NOT NULL,
        factors_json TEXT NOT NULL, fit_runs_json TEXT NOT NULL, summary_json TEXT NOT NULL);
      )sql",
      // Runs are written as they happen: a status, and who runs it, to tell a run still
      // going from one whose process died. Runs stored before this all finished.
      R"sql(
      ALTER TABLE runs ADD COLUMN status TEXT NOT NULL DEFAULT 'finished';
      ALTER TABLE runs ADD COLUMN error TEXT NOT NULL DEFAULT '';
      ALTER TABLE runs ADD COLUMN ended_at TEXT NOT NULL DEFAULT '';
      ALTER TABLE runs ADD COLUMN host TEXT NOT NULL DEFAULT '';
      ALTER TABLE runs ADD COLUMN pid INTEGER NOT NULL DEFAULT 0;
      ALTER TABLE runs ADD COLUMN process_start TEXT NOT NULL DEFAULT '';
      UPDATE runs SET ended_at = created_at;
      CREATE INDEX runs_by_status ON runs(status);
      )sql",
      // Each step's measured breakdown; NULL in steps stored before it was measured.
      R"sql(
      ALTER TABLE run_steps ADD COLUMN forward_s REAL;
      ALTER TABLE run_steps ADD COLUMN backward_s REAL;
      ALTER TABLE run_steps ADD COLUMN optimizer_s REAL;
      ALTER TABLE run_steps ADD COLUMN comm_wait_s REAL;
      )sql",
      // The MoE all-to-alls of each step; NULL in steps stored before it was measured.
      R"sql(
      ALTER TABLE run_steps ADD COLUMN ep_comm_s REAL;
      )sql",
  };
  return steps;
}

std::string now_utc() {
  std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  return buf;
}

std::string host_name() {
  char name[256] = {};
  if (gethostname(name, sizeof name - 1) != 0) return "";
  return name;
}

// Identifies a process across pid reuse: the boot and the process's start time in clock
// ticks since boot (proc(5), /proc/PID/stat field 22). "" where /proc cannot tell.
std::string process_start(int64_t pid) {
  std::ifstream boot("/proc/sys/kernel/random/boot_id"), stat("/proc/" + std::to_string(pid) + "/stat");
  std::string boot_id, line;
  if (!std::getline(boot, boot_id) || !std::getline(stat, line)) return "";
  const size_t after_name = line.rfind(')');  // the command name may hold spaces
  if (after_name == std::string::npos) return "";
  std::istringstream fields(line.substr(after_name + 2));  // field 3 onwards
  std::string field;
  for (int i = 3; i <= 22 && fields >> field; ++i) {
  }
  return boot_id + ":" + field;
}

// Whether the process that began a run on this host has ended.
bool process_gone(int64_t pid, const std::string& started) {
  if (pid <= 0) return false;
  if (!started.empty()) return process_start(pid) != started;
  return ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
}

const char* const kRunStatusNames[] = {"running", "finished", "failed", "aborted"};

RunStatus run_status_from(const std::string& text) {
  for (int i = 0; i < 4; ++i)
    if (text == kRunStatusNames[i]) return static_cast<RunStatus>(i);
  throw std::invalid_argument("store: unknown run status " + text);
}

}  // namespace

const char* to_string(RunStatus status) { return kRunStatusNames[static_cast<int>(status)]; }

Store::Store(const std::string& path) : path_(path) {
  try {
    db_ = std::make_unique<SQLite::Database>(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db_->exec("PRAGMA foreign_keys = ON");
    db_->setBusyTimeout(5000);
    // Write-ahead log: readers (compare) never block a run appending its steps, and a
    // process killed mid-transaction leaves the file intact. NORMAL syncs at checkpoints:
    // durable against a killed process, which is what runs must survive.
    db_->exec("PRAGMA journal_mode = WAL");
    db_->exec("PRAGMA synchronous = NORMAL");
    migrate();
    mark_aborted_runs();
  } catch (const SQLite::Exception& e) {
    throw InputError("--db", path, std::string("cannot open a writable SQLite database: ") + e.what());
  }
}

Store::~Store() = default;

int Store::latest_schema_version() { return static_cast<int>(migrations().size()); }

int Store::schema_version() const { return db_->execAndGet("PRAGMA user_version").getInt(); }

void Store::migrate() {
  const int have = schema_version();
  if (have > latest_schema_version())
    throw InputError("--db", path_, "schema version " + std::to_string(have) +
                                        " is newer than this sextant understands (" +
                                        std::to_string(latest_schema_version()) + ")");
  if (have == latest_schema_version()) return;
  SQLite::Transaction tx(*db_);
  for (int v = have; v < latest_schema_version(); ++v) db_->exec(migrations()[static_cast<size_t>(v)]);
  db_->exec("PRAGMA user_version = " + std::to_string(latest_schema_version()));  // integer, not input
  tx.commit();
}

template <typename Body>
int64_t Store::write(Body&& body) {
  try {
    SQLite::Transaction tx(*db_);
    const int64_t id = body(*db_);
    tx.commit();
    return id;
  } catch (const SQLite::Exception& e) {
    throw InputError("--db", path_, std::string("cannot write to the database: ") + e.what());
  }
}

int64_t Store::count(const std::string& table) const {
  for (const char* known : {"clusters", "searches", "plans", "runs", "run_steps", "profiles", "calibrations"})
    if (table == known) return db_->execAndGet("SELECT COUNT(*) FROM " + table).getInt64();
  throw std::invalid_argument("Store::count: unknown table " + table);
}

namespace {

int64_t insert_cluster(SQLite::Database& db, const SearchRecord& r) {
  const std::string text = r.cluster_json.dump();
  SQLite::Statement insert(db,
      "INSERT OR IGNORE INTO clusters (name, description_json, created_at) VALUES (?, ?, ?)");
  insert.bind(1, r.cluster_name);
  insert.bind(2, text);
  insert.bind(3, now_utc());
  insert.exec();
  SQLite::Statement find(db, "SELECT id FROM clusters WHERE name = ? AND description_json = ?");
  find.bind(1, r.cluster_name);
  find.bind(2, text);
  find.executeStep();
  return find.getColumn(0).getInt64();
}

int64_t insert_search(SQLite::Database& db, const SearchRecord& r, int64_t cluster_id) {
  SQLite::Statement search(db,
      "INSERT INTO searches (created_at, cost_model_version, cluster_id, gpus, model_name, "
      "model_json, params, seq_len, global_batch, precision, fixed, evaluated, feasible, seconds) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  int i = 1;
  search.bind(i++, now_utc());
  search.bind(i++, kCostModelVersion);
  search.bind(i++, cluster_id);
  search.bind(i++, r.gpus);
  search.bind(i++, r.model.name);
  search.bind(i++, model_spec_to_json(r.model).dump());
  search.bind(i++, r.model.total_params());
  search.bind(i++, r.model.seq_len);
  search.bind(i++, r.job.global_batch);
  search.bind(i++, to_string(r.job.precision));
  search.bind(i++, r.fixed);
  search.bind(i++, r.evaluated);
  search.bind(i++, r.feasible);
  search.bind(i++, r.seconds);
  search.exec();
  return db.getLastInsertRowid();
}

void insert_plans(SQLite::Database& db, int64_t search_id, const std::vector<StoredPlan>& plans) {
  SQLite::Statement plan(db,
      "INSERT INTO plans (search_id, rank, feasible, reason, dp, tp, pp, vpp, zero, micro_batch, "
      "grad_accum, recompute, sequence_parallel, offload, step_time_s, tokens_per_s, "
      "model_tflops_per_gpu, hardware_tflops_per_gpu, mfu, peak_bytes, prediction_json) "
      "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
  for (const StoredPlan& p : plans) {
    const ParallelLayout& l = p.layout;
    const Prediction& pr = p.prediction;
    int j = 1;
    plan.bind(j++, search_id);
    plan.bind(j++, p.rank);
    plan.bind(j++, pr.feasible ? 1 : 0);
    plan.bind(j++, infeasible_reason(pr));
    for (int64_t v : {l.dp, l.tp, l.pp, l.vpp, static_cast<int64_t>(l.zero), l.micro_batch, l.grad_accum})
      plan.bind(j++, v);
    plan.bind(j++, to_string(l.recompute));
    plan.bind(j++, l.sequence_parallel ? 1 : 0);
    plan.bind(j++, to_string(l.offload));
    for (double v : {pr.time.step_s, pr.tokens_per_s, pr.model_tflops_per_gpu, pr.hardware_tflops_per_gpu,
                     pr.mfu, pr.memory.peak_bytes})
      plan.bind(j++, v);
    plan.bind(j++, prediction_to_json(pr).dump());
    plan.exec();
    plan.reset();
  }
}

}  // namespace

int64_t Store::save_search(const SearchRecord& r) {
  return write([&](SQLite::Database& db) {
    const int64_t search_id = insert_search(db, r, insert_cluster(db, r));
    insert_plans(db, search_id, r.plans);
    return search_id;
  });
}

int64_t Store::begin_run(const RunStart& r) {
  return write([&](SQLite::Database& db) {
    SQLite::Statement run(db,
        "INSERT INTO runs (created_at, plan_path, search_id, plan_json, model_name, cluster_name, world_size, "
        "layout_json, data, predicted_step_time_s, predicted_tokens_per_s, predicted_peak_bytes, cost_model_version, "
        "status, host, pid, process_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?)");
    int i = 1;
    run.bind(i++, now_utc());
    run.bind(i++, r.plan_path);
    if (r.search_id > 0) run.bind(i++, r.search_id);
    else run.bind(i++);  // NULL: a plan file from elsewhere
    run.bind(i++, r.plan_json);
    run.bind(i++, r.model_name);
    run.bind(i++, r.cluster_name);
    run.bind(i++, r.world_size);
    run.bind(i++, r.layout_json);
    run.bind(i++, r.data);
    run.bind(i++, r.predicted_step_time_s);
    run.bind(i++, r.predicted_tokens_per_s);
    run.bind(i++, r.predicted_peak_bytes);
    run.bind(i++, r.cost_model_version);
    run.bind(i++, host_name());
    run.bind(i++, static_cast<int64_t>(getpid()));
    run.bind(i++, process_start(getpid()));
    run.exec();
    return db.getLastInsertRowid();
  });
}

void Store::append_step(int64_t run_id, const StepRecord& st) {
  write([&](SQLite::Database& db) {
    SQLite::Statement step(db,
        "INSERT INTO run_steps (run_id, step, loss, step_time_s, tokens_per_s, mfu, peak_bytes, forward_s, "
        "backward_s, optimizer_s, comm_wait_s, ep_comm_s) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    step.bind(1, run_id);
    step.bind(2, st.step);
    step.bind(3, st.loss);
    step.bind(4, st.step_time_s);
    step.bind(5, st.tokens_per_s);
    step.bind(6, st.mfu);
    step.bind(7, st.peak_bytes);
    int column = 8;
    for (double part : {st.forward_s, st.backward_s, st.optimizer_s, st.comm_wait_s, st.ep_comm_s}) {
      if (std::isnan(part))
        step.bind(column++);  // NULL: not measured
      else
        step.bind(column++, part);
    }
    step.exec();
    return run_id;
  });
}

void Store::end_run(int64_t run_id, RunStatus status, const std::string& error) {
  write([&](SQLite::Database& db) {
    SQLite::Statement end(db, "UPDATE runs SET status = ?, error = ?, ended_at = ? WHERE id = ?");
    end.bind(1, to_string(status));
    end.bind(2, error);
    end.bind(3, now_utc());
    end.bind(4, run_id);
    end.exec();
    return run_id;
  });
}

void Store::mark_aborted_runs() {
  const std::string host = host_name();
  std::vector<std::pair<int64_t, int64_t>> gone;  // run id, pid
  SQLite::Statement q(*db_, "SELECT id, pid, process_start FROM runs WHERE status = 'running' AND host = ?");
  q.bind(1, host);
  while (q.executeStep())
    if (process_gone(q.getColumn(1).getInt64(), q.getColumn(2).getString()))
      gone.push_back({q.getColumn(0).getInt64(), q.getColumn(1).getInt64()});
  for (const auto& [id, pid] : gone)
    end_run(id, RunStatus::aborted, "process " + std::to_string(pid) + " on " + host + " ended without finishing the run");
}

std::vector<StoredRun> Store::runs() const {
  std::vector<StoredRun> out;
  SQLite::Statement runs(*db_,
      "SELECT id, created_at, ended_at, status, error, plan_path, plan_json, data, world_size FROM runs ORDER BY id");
  SQLite::Statement steps(*db_,
      "SELECT step, loss, step_time_s, tokens_per_s, mfu, peak_bytes, forward_s, backward_s, optimizer_s, comm_wait_s, "
      "ep_comm_s FROM run_steps WHERE run_id = ? ORDER BY step");
  while (runs.executeStep()) {
    StoredRun r;
    r.id = runs.getColumn(0).getInt64();
    r.created_at = runs.getColumn(1).getString();
    r.ended_at = runs.getColumn(2).getString();
    r.status = run_status_from(runs.getColumn(3).getString());
    r.error = runs.getColumn(4).getString();
    r.plan_path = runs.getColumn(5).getString();
    r.plan_json = runs.getColumn(6).getString();
    r.data = runs.getColumn(7).getString();
    r.world_size = runs.getColumn(8).getInt64();
    steps.bind(1, r.id);
    while (steps.executeStep()) {
      StepRecord s{steps.getColumn(0).getInt64(), steps.getColumn(1).getDouble(), steps.getColumn(2).getDouble(),
                   steps.getColumn(3).getDouble(), steps.getColumn(4).getDouble(), steps.getColumn(5).getDouble()};
      double* parts[] = {&s.forward_s, &s.backward_s, &s.optimizer_s, &s.comm_wait_s, &s.ep_comm_s};
      for (int i = 0; i < 5; ++i)
        if (!steps.getColumn(6 + i).isNull()) *parts[i] = steps.getColumn(6 + i).getDouble();
      r.steps.push_back(s);
    }
    steps.reset();
    out.push_back(std::move(r));
  }
  return out;
}

int64_t Store::save_profile(const ProfileData& data) {
  const nlohmann::json profile = profile_to_json(data);
  return write([&](SQLite::Database& db) {
    SQLite::Statement insert(db,
        "INSERT INTO profiles (name, created_at, machine_json, libraries_json, profile_json) VALUES (?, ?, ?, ?, ?)");
    insert.bind(1, profile.at("name").get<std::string>());
    insert.bind(2, now_utc());
    insert.bind(3, profile.at("machine").dump());
    insert.bind(4, profile.at("libraries").dump());
    insert.bind(5, profile.dump());
    insert.exec();
    return db.getLastInsertRowid();
  });
}

std::pair<int64_t, ProfileData> Store::load_profile(const std::string& name) const {
  SQLite::Statement q(*db_, "SELECT id, profile_json FROM profiles WHERE name = ? ORDER BY id DESC LIMIT 1");
  q.bind(1, name);
  if (!q.executeStep()) {
    std::string known;
    SQLite::Statement all(*db_, "SELECT DISTINCT name FROM profiles ORDER BY name");
    while (all.executeStep()) known += (known.empty() ? "" : ", ") + all.getColumn(0).getString();
    throw InputError("--profile", name, "no such profile in " + path_ + (known.empty() ? " (run `sextant profile`)" : "; stored: " + known));
  }
  const std::string where = "profile " + name;
  const nlohmann::json json = JsonFields::parse_object(q.getColumn(1).getString(), where);
  return {q.getColumn(0).getInt64(), profile_from_json(json, where)};
}

int64_t Store::save_calibration(const Calibration& c, const std::vector<int64_t>& fit_runs, const nlohmann::json& summary) {
  return write([&](SQLite::Database& db) {
    SQLite::Statement insert(db,
        "INSERT INTO calibrations (created_at, cost_model_version, factors_json, fit_runs_json, summary_json) "
        "VALUES (?, ?, ?, ?, ?)");
    insert.bind(1, now_utc());
    insert.bind(2, c.cost_model_version);
    insert.bind(3, calibration_to_json(c).dump());
    insert.bind(4, nlohmann::json(fit_runs).dump());
    insert.bind(5, summary.dump());
    insert.exec();
    return db.getLastInsertRowid();
  });
}

std::optional<std::pair<Calibration, std::vector<int64_t>>> Store::latest_calibration() const {
  SQLite::Statement q(*db_,
      "SELECT id, factors_json, fit_runs_json, cost_model_version FROM calibrations ORDER BY id DESC LIMIT 1");
  if (!q.executeStep()) return std::nullopt;
  Calibration c = calibration_from_json(nlohmann::json::parse(q.getColumn(1).getString()), q.getColumn(0).getInt64());
  c.cost_model_version = q.getColumn(3).getString();
  return std::make_pair(c, nlohmann::json::parse(q.getColumn(2).getString()).get<std::vector<int64_t>>());
}

}  // namespace sextant
