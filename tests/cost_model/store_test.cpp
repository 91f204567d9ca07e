// Store: schema migrations, transactional writes, refusal of unusable paths.
#include <gtest/gtest.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <cstdio>
#include <filesystem>

#include "cost_model/error.h"
#include "cost_model/store.h"

namespace sextant {
namespace {

std::string temp_db(const char* name) {
  std::string path = ::testing::TempDir() + name;
  std::remove(path.c_str());
  return path;
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

}  // namespace
}  // namespace sextant
