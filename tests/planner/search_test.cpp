// Search: enumeration, pruning, pinning, ranking.
#include <set>

#include <gtest/gtest.h>

#include "cost_model/error.h"
#include "planner/search.h"
#include "profiles/cluster_catalog.h"

namespace sextant {
namespace {

SearchRequest llama_request(int64_t gpus, int64_t batch, const std::string& fix = "") {
  SearchRequest r;
  r.model = load_model_spec(SEXTANT_EXAMPLES "/models/llama-2-7b.json", 4096);
  r.cluster = load_cluster("dgx-h100-80gb");
  r.gpus = gpus;
  r.job.global_batch = batch;
  r.fixed = parse_fixed_axes(fix);
  return r;
}

TEST(Search, EveryCandidateDividesAndFitsAndIsRankedByThroughput) {
  const SearchResult res = search(llama_request(64, 1024));
  ASSERT_FALSE(res.candidates.empty());
  EXPECT_GT(res.evaluated, 1000);
  EXPECT_GT(res.feasible, 0);
  EXPECT_LE(res.feasible, res.evaluated);
  for (size_t i = 0; i < res.candidates.size(); ++i) {
    const Candidate& c = res.candidates[i];
    const ParallelLayout& l = c.layout;
    EXPECT_TRUE(c.prediction.feasible);
    EXPECT_EQ(l.world_size(), 64);
    EXPECT_EQ(l.global_batch(), 1024);
    EXPECT_EQ(32 % l.tp, 0);
    EXPECT_LE(c.prediction.memory.peak_bytes, 80.0 * (1 << 30));
    if (i > 0) {
      EXPECT_LE(c.prediction.tokens_per_s, res.candidates[i - 1].prediction.tokens_per_s);
    }
  }
}

TEST(Search, PinnedAxesAreRespected) {
  const SearchResult res = search(llama_request(64, 1024, "tp=4,pp=2,recompute=full,zero=1"));
  ASSERT_FALSE(res.candidates.empty());
  for (const Candidate& c : res.candidates) {
    EXPECT_EQ(c.layout.tp, 4);
    EXPECT_EQ(c.layout.pp, 2);
    EXPECT_EQ(c.layout.dp, 8);
    EXPECT_EQ(c.layout.zero, 1);
    EXPECT_EQ(c.layout.recompute, Recompute::full);
  }
}

TEST(Search, APinnedLayoutThatDoesNotFitIsStillReportedWithTheReason) {
  SearchRequest r = llama_request(8, 64, "dp=8,tp=1,pp=1,vpp=1,zero=0,micro_batch=8,recompute=none,"
                                         "sequence_parallel=false,offload=none");
  ASSERT_TRUE(r.fixed.complete());
  const SearchResult res = search(r);
  ASSERT_EQ(res.candidates.size(), 1u);
  EXPECT_EQ(res.feasible, 0);
  const Prediction& p = res.candidates[0].prediction;
  EXPECT_FALSE(p.feasible);
  const std::string reason = infeasible_reason(p);
  EXPECT_NE(reason.find("over by"), std::string::npos) << reason;
  EXPECT_NE(reason.find("stage 0"), std::string::npos) << reason;
}

TEST(Search, ImpossibleRequestsAreRefusedWithTheField) {
  auto message = [](const SearchRequest& r) {
    try {
      search(r);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(llama_request(64, 1024, "dp=4,tp=4,pp=2")).find("dp*tp*pp"), std::string::npos);
  EXPECT_NE(message(llama_request(64, 1024, "tp=3")).find("dp*tp*pp"), std::string::npos);
  EXPECT_NE(message(llama_request(64, 1024, "tp=64,pp=1")).find("tp"), std::string::npos);
  EXPECT_NE(message(llama_request(64, 1024, "pp=64")).find("pp"), std::string::npos);
  EXPECT_NE(message(llama_request(64, 7, "dp=8")).find("global-batch"), std::string::npos);
  EXPECT_NE(message(llama_request(12, 64)).find("--gpus"), std::string::npos);
}

// ep: a dense model is searched at ep = 1 only; a MoE model at every ep dividing dp and the
// experts (Mixtral: 8), and a pinned ep is kept.
TEST(Search, ExpertParallelismIsSearchedForMoeModelsOnly) {
  const SearchResult dense = search(llama_request(64, 1024));
  for (const Candidate& c : dense.candidates) EXPECT_EQ(c.layout.ep, 1);
  SearchRequest r;
  r.model = load_model_spec(SEXTANT_EXAMPLES "/models/mixtral-8x7b.json", 4096);
  r.cluster = load_cluster("dgx-h100-80gb");
  r.gpus = 64;
  r.job.global_batch = 512;
  r.top_k = 200;
  std::set<int64_t> seen;
  for (const Candidate& c : search(r).candidates) {
    EXPECT_EQ(c.layout.dp % c.layout.ep, 0);
    EXPECT_EQ(8 % c.layout.ep, 0);
    seen.insert(c.layout.ep);
  }
  EXPECT_GT(seen.size(), 1u);
  r.fixed = parse_fixed_axes("ep=4,tp=2");
  for (const Candidate& c : search(r).candidates) {
    EXPECT_EQ(c.layout.ep, 4);
    EXPECT_GT(c.prediction.time.ep_comm_s, 0.0);
  }
}

TEST(Search, FixParsing) {
  const FixedAxes f = parse_fixed_axes("tp=2,recompute=selective,sequence_parallel=true,offload=optimizer");
  EXPECT_EQ(*f.tp, 2);
  EXPECT_EQ(*f.recompute, Recompute::selective);
  EXPECT_TRUE(*f.sequence_parallel);
  EXPECT_EQ(*f.offload, Offload::optimizer);
  EXPECT_FALSE(f.complete());
  EXPECT_THROW(parse_fixed_axes("mp=2"), InputError);
  EXPECT_THROW(parse_fixed_axes("zero=4"), InputError);
  EXPECT_THROW(parse_fixed_axes("tp=two"), InputError);
  EXPECT_THROW(parse_fixed_axes("tp=0"), InputError);
  EXPECT_THROW(parse_fixed_axes("recompute=most"), InputError);
  EXPECT_THROW(parse_fixed_axes("sequence_parallel=yes"), InputError);
  EXPECT_THROW(parse_fixed_axes("tp"), InputError);
}

TEST(Search, MoreMemoryPressureChoosesMoreSharding) {
  // 70B-class dense model on 8 GPUs: nothing fits without sharding or offload.
  SearchRequest r = llama_request(64, 256);
  r.model.hidden_size = 8192;
  r.model.num_heads = 64;
  r.model.num_kv_heads = 8;
  r.model.head_dim = 128;
  r.model.ffn_hidden_size = 28672;
  r.model.num_layers = 80;
  const SearchResult res = search(r);
  ASSERT_FALSE(res.candidates.empty());
  const ParallelLayout& best = res.candidates[0].layout;
  EXPECT_TRUE(best.tp * best.pp > 1 || best.zero >= 1) << layout_to_string(best);
}

}  // namespace
}  // namespace sextant
