// ModelSpec: exact parameter counts of public configurations, HF defaults, bad input.
#include "cost_model/model_spec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"
#include "cost_model/model_graph.h"

namespace sextant {
namespace {

nlohmann::json load(const std::string& path) { return JsonFields::load_object_file(path); }

// ../shared/validation/param-counts.json, copied with its source into tests/data.
TEST(ModelSpec, PublishedParameterCountsAreExact) {
  const nlohmann::json data = load(SEXTANT_TEST_DATA "/param-counts.json");
  ASSERT_GE(data.at("models").size(), 4u);
  for (const nlohmann::json& row : data.at("models")) {
    ModelSpec m = model_spec_from_json(row.at("config"), row.at("name"));
    EXPECT_EQ(m.total_params(), row.at("params").get<int64_t>()) << row.at("name");
    EXPECT_EQ(ModelGraph(m).total_params(), m.total_params()) << row.at("name");
    // MoE rows: the exact counts round to the model cards' totals and activated counts
    // (given to 0.1B, or to 1B when a whole number).
    for (const auto& [key, count] :
         {std::pair<const char*, int64_t>{"published_total_b", m.total_params()},
          {"published_active_b",
           m.embedding_params() + m.num_layers * m.block_active_params() + m.head_params()}}) {
      if (!row.contains(key)) continue;
      const double published = row.at(key).get<double>();
      const double tolerance = published == std::floor(published) ? 0.5 : 0.05;
      EXPECT_NEAR(static_cast<double>(count) / 1e9, published, tolerance)
          << row.at("name") << " " << key;
    }
  }
}

TEST(ModelSpec, ShippedExamplesHaveTheirPublishedSizes) {
  // Counts of the Hugging Face checkpoints of these configurations.
  const std::pair<const char*, int64_t> cases[] = {{"gpt2.json", 124439808},
                                                   {"llama-2-7b.json", 6738415616},
                                                   {"llama-3-8b.json", 8030261248},
                                                   {"mixtral-8x7b.json", 46702792704},
                                                   {"gpt-neox-20b.json", 20554567680},
                                                   {"mistral-7b.json", 7241732096},
                                                   {"qwen2-0.5b.json", 494032768},
                                                   {"mixtral-8x22b.json", 140620634112},
                                                   {"qwen1.5-moe-a2.7b.json", 14315784192},
                                                   {"qwen2-57b-a14b.json", 57408658944},
                                                   {"tiny-mixtral.json", 254784},
                                                   {"tiny-qwen2-moe.json", 193728}};
  for (const auto& [file, params] : cases) {
    ModelSpec m = load_model_spec(std::string(SEXTANT_EXAMPLES "/models/") + file);
    EXPECT_EQ(m.total_params(), params) << file;
  }
}

TEST(ModelSpec, Gpt2DefaultsFollowTheHuggingFaceConfig) {
  ModelSpec m = model_spec_from_json(
      {{"model_type", "gpt2"}, {"n_embd", 64}, {"n_layer", 2}, {"n_head", 4}, {"vocab_size", 100}}, "t");
  EXPECT_EQ(m.ffn_hidden_size, 256);  // n_inner defaults to 4 * n_embd
  EXPECT_TRUE(m.tied_embeddings);
  EXPECT_EQ(m.max_position_embeddings, 1024);
  EXPECT_EQ(m.seq_len, 1024);
  EXPECT_EQ(m.position, PositionKind::learned);
}

TEST(ModelSpec, GqaAndQwenBiasAndNeoxRotary) {
  nlohmann::json llama = {{"model_type", "llama"}, {"hidden_size", 64}, {"intermediate_size", 128},
                          {"num_attention_heads", 8}, {"num_key_value_heads", 2},
                          {"num_hidden_layers", 1}, {"vocab_size", 10}};
  ModelSpec l = model_spec_from_json(llama, "t");
  EXPECT_EQ(l.kv_size(), 16);
  EXPECT_EQ(l.attention_params(), 64 * (64 + 2 * 16) + 64 * 64);
  llama["model_type"] = "qwen2";
  ModelSpec q = model_spec_from_json(llama, "t");
  EXPECT_EQ(q.attention_params() - l.attention_params(), 64 + 2 * 16);  // q, k, v biases
  nlohmann::json neox = {{"model_type", "gpt_neox"}, {"hidden_size", 64}, {"intermediate_size", 256},
                         {"num_attention_heads", 4}, {"num_hidden_layers", 1}, {"vocab_size", 10}};
  ModelSpec n = model_spec_from_json(neox, "t");
  EXPECT_DOUBLE_EQ(n.rotary_pct, 0.25);
  EXPECT_TRUE(n.parallel_residual);
  EXPECT_FALSE(n.tied_embeddings);
}

TEST(ModelSpec, SeqOverridesTheContextLength) {
  ModelSpec m = load_model_spec(SEXTANT_EXAMPLES "/models/llama-2-7b.json", 8192);
  EXPECT_EQ(m.seq_len, 8192);
}

TEST(ModelSpec, MixtralCountsAllExpertsButActivatesTwo) {
  ModelSpec m = load_model_spec(SEXTANT_EXAMPLES "/models/mixtral-8x7b.json");
  EXPECT_EQ(m.num_experts, 8);
  EXPECT_EQ(m.experts_per_token, 2);
  const int64_t expert = 3 * m.hidden_size * m.ffn_hidden_size;
  EXPECT_EQ(m.block_params() - m.block_active_params(), 6 * expert);
}

void expect_error(const nlohmann::json& config, const std::string& fragment) {
  try {
    model_spec_from_json(config, "model.json");
    FAIL() << "accepted: " << config.dump();
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("model.json"), std::string::npos) << e.what();
  }
}

TEST(ModelSpec, BadFieldsAreNamed) {
  nlohmann::json good = {{"model_type", "llama"}, {"hidden_size", 64}, {"intermediate_size", 128},
                         {"num_attention_heads", 8}, {"num_hidden_layers", 2}, {"vocab_size", 10}};
  auto with = [&](const char* key, nlohmann::json value) {
    nlohmann::json c = good;
    c[key] = value;
    return c;
  };
  auto without = [&](const char* key) {
    nlohmann::json c = good;
    c.erase(key);
    return c;
  };
  expect_error(with("model_type", "bert"), "unknown model_type");
  expect_error(without("model_type"), "model_type: missing");
  expect_error(without("hidden_size"), "hidden_size: missing");
  expect_error(with("hidden_size", "4096"), "hidden_size: expected an integer");
  expect_error(with("hidden_size", 0), "hidden_size: expected an integer in [1,");
  expect_error(with("hidden_size", -5), "hidden_size");
  expect_error(with("hidden_size", 1.5), "hidden_size");
  expect_error(with("num_hidden_layers", 1e300), "num_hidden_layers");
  expect_error(with("vocab_size", 9223372036854775807LL), "vocab_size");
  expect_error(with("num_attention_heads", 7), "num_attention_heads: must divide the hidden size");
  expect_error(with("num_key_value_heads", 3), "num_key_value_heads: must divide");
  expect_error(with("tie_word_embeddings", "yes"), "tie_word_embeddings: expected true or false");
}

TEST(JsonFields, FilesThatAreNotJsonObjects) {
  const std::string dir = ::testing::TempDir();
  auto write = [&](const std::string& name, const std::string& text) {
    std::ofstream(dir + name) << text;
    return dir + name;
  };
  auto message = [](const std::string& path) {
    try {
      JsonFields::load_object_file(path);
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_NE(message(dir + "missing.json").find("cannot open"), std::string::npos);
  EXPECT_NE(message(write("empty.json", "")).find("empty"), std::string::npos);
  EXPECT_NE(message(write("bad.json", "{\"a\": ")).find("not valid JSON"), std::string::npos);
  EXPECT_NE(message(write("text.json", "hello")).find("not valid JSON"), std::string::npos);
  EXPECT_NE(message(write("array.json", "[1, 2]")).find("JSON object"), std::string::npos);
}

}  // namespace
}  // namespace sextant
