// Store: schema migrations, transactional writes, refusal of unusable paths.
#include <gtest/gtest.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "cost_model/error.h"
#include "cost_model/store.h"
#include "tests/test_dir.h"

namespace sextant {
namespace {

std::string temp_db(const char* name) {
  return (test_dir(std::string("store_") + name) / name).string();
}

TEST(Store, CreatesTheLatestSchemaAndReopens) {
  const std::string path = temp_db("store_schema.db");
  {
    Store store(path);
    EXPECT_EQ(store.schema_version(), Store::latest_schema_version());
    EXPECT_EQ(store.count("plans"), 0);
  }
  Store again(path);
  EXPECT_EQ(again.schema_version(), Store::latest_schema_version());
}

TEST(Store, SavesASearchWithItsPlansInOneTransaction) {
  const std::string path = temp_db("store_save.db");
  Store store(path);
  SearchRecord r;
  r.model.name = "m";
  r.cluster_json = {{"name", "c"}};
  r.cluster_name = "c";
  r.gpus = 8;
  r.evaluated = 10;
  r.feasible = 3;
  for (int i = 1; i <= 3; ++i) {
    StoredPlan p;
    p.rank = i;
    p.layout.dp = 8;
    p.prediction.time.step_s = i;
    r.plans.push_back(p);
  }
  const int64_t id = store.save_search(r);
  store.save_search(r);
  EXPECT_GT(id, 0);
  EXPECT_EQ(store.count("searches"), 2);
  EXPECT_EQ(store.count("plans"), 6);
  EXPECT_EQ(store.count("clusters"), 1);  // the same description is stored once
  SQLite::Database db(path);
  SQLite::Statement q(db, "SELECT step_time_s, prediction_json FROM plans WHERE search_id = ? AND rank = 2");
  q.bind(1, id);
  ASSERT_TRUE(q.executeStep());
  EXPECT_DOUBLE_EQ(q.getColumn(0).getDouble(), 2.0);
  EXPECT_NE(q.getColumn(1).getString().find("\"step_time_s\""), std::string::npos);
}

TEST(Store, RefusesDirectoriesMissingFoldersAndNewerSchemas) {
  EXPECT_THROW(Store(::testing::TempDir()), InputError);
  EXPECT_THROW(Store("/nonexistent-dir/sub/x.db"), InputError);
  const std::string path = temp_db("store_newer.db");
  {
    SQLite::Database db(path, SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("PRAGMA user_version = 999");
  }
  try {
    Store s(path);
    FAIL() << "accepted a newer schema";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos);
  }
}

RunStart a_run() {
  RunStart r;
  r.plan_path = "plan.json";
  r.plan_json = "{}";
  r.model_name = "m";
  r.world_size = 2;
  return r;
}

TEST(Store, RunsAreWrittenAsTheyHappen) {
  const std::string path = temp_db("store_runs.db");
  Store store(path);
  const int64_t id = store.begin_run(a_run());
  for (int64_t s = 0; s < 3; ++s) store.append_step(id, {s, 5.0 - s, 0.1, 10, 0.2, 1e6});
  {
    const std::vector<StoredRun> runs = Store(path).runs();  // another reader sees it mid-run
    ASSERT_EQ(runs.size(), 1u);
    EXPECT_EQ(runs[0].status, RunStatus::running);  // this process is alive: not aborted
    EXPECT_EQ(runs[0].steps.size(), 3u);
    EXPECT_EQ(runs[0].steps[2].loss, 3.0);
  }
  store.end_run(id, RunStatus::failed, "loss is nan at step 3");
  const StoredRun r = store.runs().at(0);
  EXPECT_EQ(r.status, RunStatus::failed);
  EXPECT_EQ(r.error, "loss is nan at step 3");
  EXPECT_FALSE(r.ended_at.empty());
}

// A process that began a run and died without ending it: the next open marks it aborted.
TEST(Store, ARunWhoseProcessDiedIsAbortedOnTheNextOpen) {
  const std::string path = temp_db("store_aborted.db");
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    Store store(path);
    store.append_step(store.begin_run(a_run()), {0, 1, 0.1, 10, 0.2, 1e6});
    _exit(0);  // no end_run: as if killed
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  const StoredRun r = Store(path).runs().at(0);
  EXPECT_EQ(r.status, RunStatus::aborted);
  EXPECT_NE(r.error.find("ended without finishing"), std::string::npos) << r.error;
  EXPECT_EQ(r.steps.size(), 1u);
}

// A store written before runs had a status: its runs had all finished.
TEST(Store, OlderRunsMigrateAsFinished) {
  const std::string path = temp_db("store_migrate.db");
  {
    Store store(path);
    store.end_run(store.begin_run(a_run()), RunStatus::finished);
  }
  {
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    db.exec("ALTER TABLE runs DROP COLUMN process_start; ALTER TABLE runs DROP COLUMN pid; "
            "ALTER TABLE runs DROP COLUMN host; ALTER TABLE runs DROP COLUMN ended_at; "
            "DROP INDEX runs_by_status; ALTER TABLE runs DROP COLUMN error; ALTER TABLE runs DROP COLUMN status; "
            "ALTER TABLE run_steps DROP COLUMN forward_s; ALTER TABLE run_steps DROP COLUMN backward_s; "
            "ALTER TABLE run_steps DROP COLUMN optimizer_s; ALTER TABLE run_steps DROP COLUMN comm_wait_s; "
            "ALTER TABLE run_steps DROP COLUMN ep_comm_s; PRAGMA user_version = 4");
  }
  Store store(path);
  EXPECT_EQ(store.schema_version(), Store::latest_schema_version());
  const StoredRun r = store.runs().at(0);
  EXPECT_EQ(r.status, RunStatus::finished);
  EXPECT_FALSE(r.ended_at.empty());
}

// Schema 6: each step's measured breakdown round-trips; a step without one reads back NaN.
TEST(Store, StepBreakdownRoundTrips) {
  const std::string path = temp_db("store_breakdown.db");
  Store store(path);
  const int64_t id = store.begin_run(a_run());
  StepRecord measured{0, 5, 0.5, 10, 0.2, 1e6};
  measured.forward_s = 0.125;
  measured.backward_s = 0.25;
  measured.optimizer_s = 0.0625;
  measured.comm_wait_s = 1.0 / 3;
  store.append_step(id, measured);
  store.append_step(id, {1, 4, 0.5, 10, 0.2, 1e6});
  const StoredRun r = Store(path).runs().at(0);
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps[0].forward_s, 0.125);
  EXPECT_EQ(r.steps[0].backward_s, 0.25);
  EXPECT_EQ(r.steps[0].optimizer_s, 0.0625);
  EXPECT_EQ(r.steps[0].comm_wait_s, 1.0 / 3);
  for (double part : {r.steps[1].forward_s, r.steps[1].backward_s, r.steps[1].optimizer_s, r.steps[1].comm_wait_s})
    EXPECT_TRUE(std::isnan(part));
}

// A schema-5 store (steps without a breakdown) opens, migrates, and reads its steps with NaN parts.
TEST(Store, Schema5StepsReadWithoutABreakdown) {
  const std::string path = temp_db("store_schema5.db");
  {
    Store store(path);
    store.append_step(store.begin_run(a_run()), {0, 1, 0.1, 10, 0.2, 1e6});
  }
  {
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    db.exec("ALTER TABLE run_steps DROP COLUMN forward_s; ALTER TABLE run_steps DROP COLUMN backward_s; "
            "ALTER TABLE run_steps DROP COLUMN optimizer_s; ALTER TABLE run_steps DROP COLUMN comm_wait_s; "
            "ALTER TABLE run_steps DROP COLUMN ep_comm_s; PRAGMA user_version = 5");
  }
  Store store(path);
  EXPECT_EQ(store.schema_version(), 7);
  const StoredRun r = store.runs().at(0);
  ASSERT_EQ(r.steps.size(), 1u);
  EXPECT_EQ(r.steps[0].step_time_s, 0.1);
  EXPECT_TRUE(std::isnan(r.steps[0].forward_s));
  EXPECT_TRUE(std::isnan(r.steps[0].ep_comm_s));
}

// A step's MoE all-to-all time is stored and read back; NaN (NULL) when not measured.
TEST(Store, StepsKeepTheAllToAllTime) {
  const std::string path = temp_db("store_ep_comm.db");
  Store store(path);
  const int64_t run = store.begin_run(a_run());
  StepRecord moe{0, 1, 0.1, 10, 0.2, 1e6, 0.03, 0.05, 0.01, 0.002};
  moe.ep_comm_s = 0.004;
  store.append_step(run, moe);
  store.append_step(run, {1, 1, 0.1, 10, 0.2, 1e6});
  const StoredRun r = store.runs().at(0);
  ASSERT_EQ(r.steps.size(), 2u);
  EXPECT_EQ(r.steps[0].ep_comm_s, 0.004);
  EXPECT_TRUE(std::isnan(r.steps[1].ep_comm_s));
}

}  // namespace
}  // namespace sextant
