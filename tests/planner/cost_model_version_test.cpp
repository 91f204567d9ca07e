// The cost-model version moves with every change that moves a prediction. A fixed set of
// layouts (dense and MoE, GPU clusters and CPU ranks, every axis exercised) is predicted and
// held against tests/data/cost_model_golden.json, written by the version it names:
//  - same version, different predictions: the change moved predictions without bumping
//    kCostModelVersion (cost_model/estimator.h). Bump it, then regenerate the file;
//  - another version: regenerate the file (SEXTANT_UPDATE_GOLDEN=1 build/tests/planner_tests
//    --gtest_filter='CostModelVersion.*'), and read its diff: it is what the change moved.
// Tolerance 1e-9 relative: the predictions are a few thousand double operations on the same
// inputs, so machines can differ only where libm's exp/log/pow round their last bit
// (~1e-16 relative each); a real model change moves them by far more than 1e-9.
#include <cmath>
#include <cstdlib>
#include <fstream>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cost_model/json_fields.h"
#include "planner/search.h"
#include "profiles/cluster_catalog.h"

namespace sextant {
namespace {

const char* const kGoldenPath = SEXTANT_TEST_DATA "/cost_model_golden.json";

struct GoldenCase {
  const char* model;    // under examples/models
  const char* cluster;  // built-in name, or under examples/clusters
  int64_t gpus, global_batch, seq;
  Precision precision;
  bool flash_attention, fp32_grads;
  const char* fix;  // every axis pinned
};

const GoldenCase kCases[] = {
    {"llama-2-7b", "dgx-h100-80gb", 64, 1024, 4096, Precision::bf16, true, true,
     "dp=16,tp=4,pp=1,vpp=1,zero=1,micro_batch=2,recompute=none,sequence_parallel=true,offload=none"},
    {"llama-2-7b", "dgx-h100-80gb", 64, 512, 4096, Precision::bf16, true, false,
     "dp=4,tp=2,pp=8,vpp=2,zero=0,micro_batch=1,recompute=full,sequence_parallel=true,offload=none"},
    {"gpt2", "dgx-a100-80gb", 16, 512, 1024, Precision::fp16, false, false,
     "dp=16,tp=1,pp=1,vpp=1,zero=3,micro_batch=8,recompute=none,sequence_parallel=false,offload=optimizer"},
    {"mixtral-8x7b", "dgx-h100-80gb", 64, 256, 4096, Precision::bf16, true, true,
     "dp=2,tp=8,pp=4,vpp=1,zero=1,micro_batch=1,recompute=selective,sequence_parallel=true,offload=none"},
    {"gpt-neox-20b", "examples/clusters/two-node-a100-pcie.json", 8, 64, 2048, Precision::bf16, false, true,
     "dp=1,tp=4,pp=2,vpp=1,zero=0,micro_batch=1,recompute=selective,sequence_parallel=false,offload=none"},
    {"qwen2-0.5b", "h200-141gb", 1, 64, 4096, Precision::bf16, true, true,
     "dp=1,tp=1,pp=1,vpp=1,zero=0,micro_batch=4,recompute=none,sequence_parallel=false,offload=none"},
    {"tiny-llama", "local-cpu", 4, 16, 128, Precision::fp32, true, false,
     "dp=2,tp=1,pp=2,vpp=1,zero=2,micro_batch=2,recompute=none,sequence_parallel=false,offload=none"},
};

std::string case_name(const GoldenCase& c) { return std::string(c.model) + " " + c.cluster + " " + c.fix; }

nlohmann::json predict_case(const GoldenCase& c) {
  SearchRequest r;
  r.model = load_model_spec(std::string(SEXTANT_EXAMPLES) + "/models/" + c.model + ".json", c.seq);
  const std::string cluster = c.cluster;
  r.cluster = share_cpu_node(
      load_cluster(cluster.rfind("examples/", 0) == 0 ? std::string(SEXTANT_EXAMPLES) + cluster.substr(8) : cluster),
      c.gpus);
  r.gpus = c.gpus;
  r.job.global_batch = c.global_batch;
  r.job.precision = c.precision;
  r.job.flash_attention = c.flash_attention;
  r.job.fp32_grads = c.fp32_grads;
  r.fixed = parse_fixed_axes(c.fix);
  r.top_k = 1;
  const Candidate best = search(r).candidates.at(0);
  nlohmann::json out = prediction_to_json(best.prediction);
  out["feasible"] = best.prediction.feasible;
  return out;
}

// Every number in `got` within 1e-9 relative of `want`, at the same paths.
void expect_same(const nlohmann::json& want, const nlohmann::json& got, const std::string& path, int* moved) {
  if (want.is_object()) {
    for (auto it = want.begin(); it != want.end(); ++it) {
      ASSERT_TRUE(got.contains(it.key())) << path << "." << it.key();
      expect_same(it.value(), got.at(it.key()), path + "." + it.key(), moved);
    }
    EXPECT_EQ(want.size(), got.size()) << path << ": fields added or removed";
  } else if (want.is_number()) {
    const double a = want.get<double>(), b = got.get<double>();
    const bool same = std::abs(a - b) <= 1e-9 * std::max(std::abs(a), std::abs(b));
    if (!same) {
      ++*moved;
      ADD_FAILURE() << path << ": golden " << a << ", now " << b;
    }
  } else {
    EXPECT_EQ(want, got) << path;
  }
}

TEST(CostModelVersion, PredictionsMoveOnlyWithTheVersion) {
  if (std::getenv("SEXTANT_UPDATE_GOLDEN")) {
    nlohmann::json cases = nlohmann::json::array();
    for (const GoldenCase& c : kCases) cases.push_back({{"case", case_name(c)}, {"predicted", predict_case(c)}});
    std::ofstream(kGoldenPath) << nlohmann::json({{"cost_model_version", kCostModelVersion},
                                                  {"regenerate", "SEXTANT_UPDATE_GOLDEN=1 build/tests/planner_tests "
                                                                 "--gtest_filter='CostModelVersion.*'"},
                                                  {"cases", cases}})
                                      .dump(1)
                               << "\n";
    GTEST_SKIP() << "rewrote " << kGoldenPath << " for " << kCostModelVersion;
  }
  const nlohmann::json golden = JsonFields::load_object_file(kGoldenPath);
  const std::string version = golden.at("cost_model_version");
  ASSERT_EQ(version, kCostModelVersion) << kGoldenPath << " was written by another cost model: regenerate it "
                                        << "(SEXTANT_UPDATE_GOLDEN=1) and read its diff";
  const nlohmann::json& cases = golden.at("cases");
  ASSERT_EQ(cases.size(), std::size(kCases)) << "cases added or removed: regenerate the golden file";
  int moved = 0;
  for (size_t i = 0; i < std::size(kCases); ++i) {
    ASSERT_EQ(cases[i].at("case"), case_name(kCases[i]));
    expect_same(cases[i].at("predicted"), predict_case(kCases[i]), case_name(kCases[i]), &moved);
  }
  EXPECT_EQ(moved, 0) << "predictions moved under the same version \"" << kCostModelVersion
                      << "\": bump kCostModelVersion in cost_model/estimator.h, then regenerate " << kGoldenPath;
}

}  // namespace
}  // namespace sextant
