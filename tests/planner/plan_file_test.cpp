// The plan file: one writer, one reader. A plan written from a search reads back as the
// same plan (its partition is the stage table the search computed), and every field the
// reader checks is refused with the field named.
#include <gtest/gtest.h>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"
#include "planner/plan_file.h"
#include "profiles/cluster_catalog.h"
#include "tests/test_dir.h"

namespace sextant {
namespace {

PlanFile llama_plan(const std::string& fix) {
  const std::string path = SEXTANT_EXAMPLES "/models/llama-2-7b.json";
  const nlohmann::json config = JsonFields::load_object_file(path);
  SearchRequest r;
  r.model = model_spec_from_json(config, path, 4096);
  nlohmann::json cluster_json;
  r.cluster = load_cluster("dgx-h100-80gb", &cluster_json);
  r.gpus = 64;
  r.job.global_batch = 512;
  r.fixed = parse_fixed_axes(fix);
  r.top_k = 1;
  const Candidate best = search(r).candidates.at(0);
  PlanFile p = plan_file_for(r, best, config, cluster_json);
  p.search_id = 7;
  p.search_rank = 1;
  p.profile = ProfileRef{"h100-measured", 3, "2026-11-22", {{"gpu", "H100"}}, {{"torch", "2.11"}}};
  return p;
}

const char* const kInterleaved =
    "dp=4,tp=2,pp=8,vpp=2,zero=1,micro_batch=1,recompute=selective,sequence_parallel=true,offload=none";

TEST(PlanFile, WhatIsWrittenReadsBackTheSame) {
  const PlanFile p = llama_plan(kInterleaved);
  const nlohmann::json written = plan_file_to_json(p);
  const PlanFile q = plan_file_from_json(written, "plan.json");
  EXPECT_EQ(plan_file_to_json(q), written);  // nothing lost, nothing added
  EXPECT_EQ(q.model.total_params(), 6738415616LL);
  EXPECT_EQ(q.layout.vpp, 2);
  EXPECT_EQ(q.partition, p.partition);
  EXPECT_EQ(q.partition.size(), 16u);
  EXPECT_EQ(q.prediction.time.step_s, p.prediction.time.step_s);
  EXPECT_EQ(q.prediction.memory.peak_bytes, p.prediction.memory.peak_bytes);
  EXPECT_EQ(q.figures(), "profile h100-measured #3");
  EXPECT_EQ(q.search_id, 7);
  EXPECT_EQ(q.cost_model_version, kCostModelVersion);
}

TEST(PlanFile, ThePartitionIsTheSearchsStageTable) {
  SearchRequest r;
  r.model = load_model_spec(SEXTANT_EXAMPLES "/models/llama-2-7b.json", 4096);
  r.cluster = load_cluster("dgx-h100-80gb");
  r.gpus = 64;
  r.job.global_batch = 512;
  r.fixed = parse_fixed_axes(kInterleaved);
  const Candidate best = search(r).candidates.at(0);
  ASSERT_TRUE(best.table);
  const std::vector<ChunkSpec> chunks = chunks_of(*best.table);
  int64_t blocks = 0;
  for (size_t g = 0; g < chunks.size(); ++g) {
    EXPECT_EQ(chunks[g].stage, static_cast<int64_t>(g) % 8);
    EXPECT_EQ(chunks[g].first_block, blocks);
    blocks += chunks[g].blocks;
  }
  EXPECT_EQ(blocks, 32);
  EXPECT_TRUE(chunks.front().embedding && chunks.back().head);
  EXPECT_EQ(plan_file_for(r, best, nlohmann::json::object(), nlohmann::json::object()).partition, chunks);
}

// Each edit makes the reader refuse, naming `field`.
void expect_refused(const std::function<void(nlohmann::json&)>& edit, const std::string& field) {
  nlohmann::json j = plan_file_to_json(llama_plan(kInterleaved));
  edit(j);
  try {
    plan_file_from_json(j, "plan.json");
    ADD_FAILURE() << "accepted; expected a refusal naming " << field;
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(field), std::string::npos) << e.what();
    EXPECT_EQ(std::string(e.what()).rfind("plan.json", 0), 0u) << e.what();
  }
}

TEST(PlanFile, InconsistentFieldsAreRefusedByName) {
  expect_refused([](nlohmann::json& j) { j["format"] = "sextant-plan 9"; }, "format");
  expect_refused([](nlohmann::json& j) { j.erase("cost_model_version"); }, "cost_model_version");
  expect_refused([](nlohmann::json& j) { j["model"]["config"]["num_hidden_layers"] = 30; }, "model.params");
  expect_refused([](nlohmann::json& j) { j["model"]["config"]["hidden_size"] = "big"; }, "hidden_size");
  expect_refused([](nlohmann::json& j) { j["gpus"] = 32; }, "gpus");
  expect_refused([](nlohmann::json& j) { j["job"]["global_batch"] = 100; }, "layout");
  expect_refused([](nlohmann::json& j) { j["job"]["precision"] = "fp8"; }, "precision");
  expect_refused([](nlohmann::json& j) { j["job"]["fp32_grads"] = "yes"; }, "fp32_grads");
  expect_refused([](nlohmann::json& j) { j["layout"]["zero"] = 4; }, "zero");
  // Expert parallelism on a dense model, or not dividing dp.
  expect_refused([](nlohmann::json& j) { j["layout"]["ep"] = j["layout"]["dp"]; }, "layout.ep");
  expect_refused([](nlohmann::json& j) { j["layout"]["ep"] = 3; }, "ep");
  expect_refused([](nlohmann::json& j) { j["layout"]["grad_accum"] = 12; j["layout"]["dp"] = 4; j["job"]["global_batch"] = 48; }, "layout");
  expect_refused([](nlohmann::json& j) { j.erase("partition"); }, "partition");
  expect_refused([](nlohmann::json& j) { j["partition"][1]["stage"] = 5; }, "partition");
  expect_refused([](nlohmann::json& j) { j["partition"].erase(j["partition"].size() - 1); }, "partition");
  expect_refused([](nlohmann::json& j) { j["partition"][0]["blocks"] = 3; }, "partition");
  expect_refused([](nlohmann::json& j) { j["predicted"]["time"].erase("bubble_s"); }, "bubble_s");
  expect_refused([](nlohmann::json& j) { j["predicted"]["memory"]["peak_bytes"] = -1; }, "peak_bytes");
  expect_refused([](nlohmann::json& j) { j["cluster"]["devices_per_node"] = 0; }, "devices_per_node");
  expect_refused([](nlohmann::json& j) { j["profile"] = {{"id", 3}}; }, "name");
  expect_refused([](nlohmann::json& j) { j["calibration"] = "latest"; }, "calibration");
  expect_refused([](nlohmann::json& j) { j["store"] = {{"rank", 1}}; }, "search_id");
}

TEST(PlanFile, FilesAreWrittenWholeAndUnreadableOnesNamed) {
  const std::string path = (test_dir("plan_file") / "plan.json").string();
  write_plan_file(path, llama_plan(kInterleaved));
  EXPECT_EQ(read_plan_file(path).layout.tp, 2);
  EXPECT_THROW(read_plan_file((test_dir("plan_file_missing") / "no-such-plan.json").string()), InputError);
  EXPECT_THROW(write_plan_file("/nonexistent-dir/plan.json", llama_plan(kInterleaved)), InputError);
}

}  // namespace
}  // namespace sextant
