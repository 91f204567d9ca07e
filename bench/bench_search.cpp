// Speed of the planner's full search (issue target: >= 10^6 layouts evaluated per
// second for a 175B GPT on 1024 GPUs; a 1T model on 16,384 GPUs in under 2 s).
// Run: build/bench/bench_search
#include <benchmark/benchmark.h>

#include "planner/search.h"
#include "profiles/cluster_catalog.h"

namespace sextant {
namespace {

SearchRequest gpt_request(int64_t hidden, int64_t heads, int64_t layers, int64_t gpus, int64_t batch) {
  nlohmann::json c = {{"model_type", "gpt"}, {"name", "gpt"}, {"hidden_size", hidden},
                      {"num_attention_heads", heads}, {"num_hidden_layers", layers},
                      {"vocab_size", 51200}, {"max_position_embeddings", 2048}};
  SearchRequest r;
  r.model = model_spec_from_json(c, "bench");
  r.cluster = load_cluster("dgx-a100-80gb");
  r.gpus = gpus;
  r.job.global_batch = batch;
  return r;
}

void run(benchmark::State& state, const SearchRequest& request) {
  int64_t layouts = 0;
  for (auto _ : state) {
    SearchResult result = search(request);
    layouts += result.evaluated;
    benchmark::DoNotOptimize(result);
  }
  state.counters["layouts"] = static_cast<double>(layouts) / static_cast<double>(state.iterations());
  state.counters["layouts_per_s"] = benchmark::Counter(static_cast<double>(layouts), benchmark::Counter::kIsRate);
}

void BM_Search_GPT175B_1024GPUs(benchmark::State& state) {
  run(state, gpt_request(12288, 96, 96, 1024, 1536));
}
void BM_Search_GPT1T_16384GPUs(benchmark::State& state) {
  run(state, gpt_request(25600, 160, 128, 16384, 4096));
}
BENCHMARK(BM_Search_GPT175B_1024GPUs)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Search_GPT1T_16384GPUs)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace sextant

BENCHMARK_MAIN();
