// The measured profile's JSON: struct -> JSON -> struct is exact; profiles in the format
// `sextant profile` has stored all along (and the older ones without the elementwise
// rate or passes) still load, from JSON and from a store; bad fields are named.
#include <cstdio>

#include <gtest/gtest.h>
#include <SQLiteCpp/SQLiteCpp.h>

#include "cost_model/error.h"
#include "cost_model/measured_profile.h"
#include "cost_model/profile_data.h"
#include "cost_model/store.h"

namespace sextant {
namespace {

ProfileData full_profile() {
  ProfileData p;
  p.name = "local-cpu-2ranks";
  p.date = "2024-05-01T12:34:56Z";
  p.machine = {"node-7", "AMD EPYC 7B13", 2, "cpu"};
  p.libraries = {"1.13.1", "Open MPI v4.1.4"};
  p.ranks = 2;
  for (const char* dtype : {"fp32", "bf16"})
    for (int64_t m : {64, 256})
      for (int64_t n : {64, 256})
        for (int64_t k : {64, 256})
          p.gemm.push_back({dtype, m, n, k, 1.0 / 3 * 1e9 * static_cast<double>(m + n + k)});
  p.memory_bandwidth_bytes_per_s = 11.3e9 + 0.1;
  p.elementwise_bytes_per_s = 6.2e9 / 7;
  p.passes = 3;
  p.spread_across_passes = PassSpread{0.26, 0.031, 1.0 / 9};
  for (Collective op : {Collective::all_reduce, Collective::send_recv})
    for (int64_t bytes : {1024, 4096}) {
      const double t = 1e-5 + static_cast<double>(bytes) / 3e9;
      p.collectives.push_back({op, 2, bytes, t, static_cast<double>(bytes) / t,
                               static_cast<double>(bytes) / t * bus_factor(op, 2)});
    }
  return p;
}

TEST(ProfileData, RoundTripsThroughJsonText) {
  const ProfileData p = full_profile();
  const nlohmann::json j = profile_to_json(p);
  EXPECT_EQ(profile_from_json(nlohmann::json::parse(j.dump()), "test"), p);
  // Without the fields older profiles lack: they stay absent.
  ProfileData old = p;
  old.elementwise_bytes_per_s.reset();
  old.passes.reset();
  old.spread_across_passes.reset();
  const nlohmann::json old_json = profile_to_json(old);
  EXPECT_FALSE(old_json.contains("elementwise_bytes_per_s"));
  EXPECT_FALSE(old_json.contains("passes"));
  EXPECT_FALSE(old_json.contains("spread_across_passes"));
  EXPECT_EQ(profile_from_json(nlohmann::json::parse(old_json.dump()), "test"), old);
  EXPECT_NE(old, p);
}

// A profile as `sextant profile --quick` has stored it since passes were added (the keys
// of executor/profiler.cpp before ProfileData existed).
const char* kStoredProfile = R"({
  "collectives": [
    {"algbw_bytes_per_s": 95325681.1, "busbw_bytes_per_s": 95325681.1, "bytes": 1024, "op": "all_reduce",
     "ranks": 2, "time_s": 1.0742e-05},
    {"algbw_bytes_per_s": 1730137465.2, "busbw_bytes_per_s": 1730137465.2, "bytes": 1048576, "op": "send_recv",
     "ranks": 2, "time_s": 0.00060606}
  ],
  "date": "2024-06-02T08:15:03Z",
  "elementwise_bytes_per_s": 6212345678.9,
  "gemm": [
    {"dtype": "fp32", "flops_per_s": 20123456789.0, "k": 64, "m": 64, "n": 64},
    {"dtype": "fp32", "flops_per_s": 25123456789.0, "k": 256, "m": 64, "n": 64},
    {"dtype": "fp32", "flops_per_s": 22123456789.0, "k": 64, "m": 64, "n": 256},
    {"dtype": "fp32", "flops_per_s": 27123456789.0, "k": 256, "m": 64, "n": 256},
    {"dtype": "fp32", "flops_per_s": 21123456789.0, "k": 64, "m": 256, "n": 64},
    {"dtype": "fp32", "flops_per_s": 26123456789.0, "k": 256, "m": 256, "n": 64},
    {"dtype": "fp32", "flops_per_s": 23123456789.0, "k": 64, "m": 256, "n": 256},
    {"dtype": "fp32", "flops_per_s": 30123456789.0, "k": 256, "m": 256, "n": 256}
  ],
  "libraries": {"mpi": "Open MPI v4.1.4", "torch": "1.13.1"},
  "machine": {"cores": 2, "cpu": "Intel(R) Xeon(R) CPU @ 2.20GHz", "device": "cpu", "hostname": "sandbox"},
  "memory_bandwidth_bytes_per_s": 11312345678.9,
  "name": "quick",
  "passes": 2,
  "ranks": 2,
  "spread_across_passes": {"copy": 0.0412, "elementwise": 0.0123, "gemm_median": 0.2611}
})";

TEST(ProfileData, ReadsTheStoredFormat) {
  const nlohmann::json j = nlohmann::json::parse(kStoredProfile);
  const ProfileData p = profile_from_json(j, "test");
  EXPECT_EQ(p.name, "quick");
  EXPECT_EQ(p.date, "2024-06-02T08:15:03Z");
  EXPECT_EQ(p.machine.cpu, "Intel(R) Xeon(R) CPU @ 2.20GHz");
  EXPECT_EQ(p.machine.cores, 2);
  EXPECT_EQ(p.machine.device, "cpu");
  EXPECT_EQ(p.machine.hostname, "sandbox");
  EXPECT_EQ(p.libraries.torch, "1.13.1");
  EXPECT_EQ(p.libraries.mpi, "Open MPI v4.1.4");
  EXPECT_EQ(p.ranks, 2);
  ASSERT_EQ(p.gemm.size(), 8u);
  EXPECT_EQ(p.gemm[1].dtype, "fp32");
  EXPECT_EQ(p.gemm[1].m, 64);
  EXPECT_EQ(p.gemm[1].k, 256);
  EXPECT_EQ(p.gemm[1].flops_per_s, 25123456789.0);
  EXPECT_EQ(p.memory_bandwidth_bytes_per_s, 11312345678.9);
  EXPECT_EQ(p.elementwise_bytes_per_s, 6212345678.9);
  EXPECT_EQ(p.passes, 2);
  ASSERT_TRUE(p.spread_across_passes);
  EXPECT_EQ(p.spread_across_passes->gemm_median, 0.2611);
  EXPECT_EQ(p.spread_across_passes->copy, 0.0412);
  ASSERT_EQ(p.collectives.size(), 2u);
  EXPECT_EQ(p.collectives[1].op, Collective::send_recv);
  EXPECT_EQ(p.collectives[1].bytes, 1048576);
  EXPECT_EQ(p.collectives[1].time_s, 0.00060606);
  EXPECT_EQ(p.collectives[1].busbw_bytes_per_s, 1730137465.2);
  // Written back, it is the same document: the format did not change.
  EXPECT_EQ(profile_to_json(p), j);
  const MeasuredProfile measured(p, 4, "test");
  EXPECT_NEAR(measured.gemm_flops_per_s(Precision::fp32, 64, 64, 256), 25123456789.0, 1);
  EXPECT_EQ(measured.elementwise_bw_bytes_per_s(), 6212345678.9);
  ASSERT_NE(measured.collective(Collective::send_recv, 2), nullptr);
}

// The first profiles had neither the elementwise rate nor passes.
TEST(ProfileData, ReadsProfilesFromBeforeElementwiseAndPasses) {
  nlohmann::json j = nlohmann::json::parse(kStoredProfile);
  for (const char* key : {"elementwise_bytes_per_s", "passes", "spread_across_passes"})
    j.erase(key);
  const ProfileData p = profile_from_json(j, "test");
  EXPECT_FALSE(p.elementwise_bytes_per_s);
  EXPECT_FALSE(p.passes);
  EXPECT_FALSE(p.spread_across_passes);
  EXPECT_EQ(profile_to_json(p), j);
  EXPECT_EQ(MeasuredProfile(p, 1, "test").elementwise_bw_bytes_per_s(), 11312345678.9);
}

std::string error_of(const nlohmann::json& j) {
  try {
    profile_from_json(j, "profile quick");
  } catch (const InputError& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ProfileData, NamesTheBadField) {
  const nlohmann::json good = nlohmann::json::parse(kStoredProfile);
  nlohmann::json j = good;
  j["gemm"][3].erase("m");
  EXPECT_EQ(error_of(j), "profile quick: gemm[3]: m: missing required field");
  j = good;
  j["gemm"][0]["flops_per_s"] = "fast";
  EXPECT_EQ(error_of(j), "profile quick: gemm[0]: flops_per_s: expected a number in [1, 1e+20]");
  j = good;
  j["gemm"][0]["dtype"] = "fp8";
  EXPECT_EQ(error_of(j), "profile quick: gemm[0]: dtype: got \"fp8\"; allowed: fp32, bf16");
  j = good;
  j["collectives"][1]["op"] = "all_to_all";
  EXPECT_NE(error_of(j).find(
                "profile quick: collectives[1]: op: got \"all_to_all\"; allowed: all_reduce"),
            std::string::npos)
      << error_of(j);
  j = good;
  j["collectives"][0]["ranks"] = 1;
  EXPECT_NE(error_of(j).find("profile quick: collectives[0]: ranks: expected an integer in [2,"),
            std::string::npos);
  j = good;
  j.erase("memory_bandwidth_bytes_per_s");
  EXPECT_EQ(error_of(j), "profile quick: memory_bandwidth_bytes_per_s: missing required field");
  j = good;
  j["machine"].erase("cpu");
  EXPECT_EQ(error_of(j), "profile quick: machine: cpu: missing required field");
  j = good;
  j["collectives"] = 5;
  EXPECT_EQ(error_of(j), "profile quick: collectives: expected a JSON array");
  j = good;
  j["gemm"][2] = 5;
  EXPECT_EQ(error_of(j), "profile quick: gemm[2]: expected a JSON object");
  j = good;
  j["spread_across_passes"]["copy"] = -1;
  EXPECT_NE(error_of(j).find("profile quick: spread_across_passes: copy: expected a number in [0,"),
            std::string::npos);
}

TEST(ProfileData, StoreSavesAndLoadsTheStructAndReadsRowsOfTheStoredFormat) {
  const std::string path = ::testing::TempDir() + "store_profiles.db";
  std::remove(path.c_str());
  Store store(path);
  const ProfileData p = full_profile();
  const int64_t id = store.save_profile(p);
  const auto [loaded_id, loaded] = store.load_profile(p.name);
  EXPECT_EQ(loaded_id, id);
  EXPECT_EQ(loaded, p);
  {  // a row written before ProfileData, as the old save_profile wrote it
    SQLite::Database db(path, SQLite::OPEN_READWRITE);
    const nlohmann::json j = nlohmann::json::parse(kStoredProfile);
    SQLite::Statement insert(
        db,
        "INSERT INTO profiles (name, created_at, machine_json, libraries_json, profile_json) "
        "VALUES (?, ?, ?, ?, ?)");
    insert.bind(1, "quick");
    insert.bind(2, "2024-06-02 08:15:03");
    insert.bind(3, j["machine"].dump());
    insert.bind(4, j["libraries"].dump());
    insert.bind(5, j.dump());
    insert.exec();
  }
  const auto [old_id, old] = Store(path).load_profile("quick");
  EXPECT_GT(old_id, id);
  EXPECT_EQ(profile_to_json(old), nlohmann::json::parse(kStoredProfile));
  EXPECT_THROW(store.load_profile("nope"), InputError);
}

}  // namespace
}  // namespace sextant
