// The plan file's one writer and one reader.
#include "planner/plan_file.h"

#include "cost_model/calibration.h"
#include "cost_model/error.h"
#include "cost_model/json_fields.h"
#include "planner/plan_output.h"

namespace sextant {
namespace {

nlohmann::json partition_to_json(const std::vector<ChunkSpec>& partition) {
  nlohmann::json out = nlohmann::json::array();
  for (const ChunkSpec& c : partition)
    out.push_back({{"chunk", c.chunk}, {"stage", c.stage}, {"virtual_stage", c.virtual_stage},
                   {"first_block", c.first_block}, {"blocks", c.blocks}, {"embedding", c.embedding},
                   {"head", c.head}});
  return out;
}

std::vector<ChunkSpec> partition_from_json(const JsonFields& top, const ParallelLayout& l, int64_t layers) {
  const nlohmann::json& list = top.json().contains("partition") ? top.json()["partition"] : nlohmann::json();
  if (!list.is_array()) throw InputError(top.where(), "partition", "missing; write the plan with `sextant plan --out`");
  std::vector<ChunkSpec> out;
  for (const nlohmann::json& c : list) {
    if (!c.is_object()) throw InputError(top.where(), "partition", "expected a list of objects");
    JsonFields f(c, top.where() + ": partition");
    out.push_back({f.integer("chunk", 0, 1 << 20), f.integer("stage", 0, 1 << 20),
                   f.integer("virtual_stage", 0, 1 << 10), f.integer("first_block", 0, layers),
                   f.integer("blocks", 1, layers), f.boolean_or("embedding", false), f.boolean_or("head", false)});
  }
  check_partition(out, l, layers, top.where());
  return out;
}

std::optional<ProfileRef> profile_from_json(const JsonFields& top) {
  if (!top.has("profile")) return std::nullopt;
  const JsonFields f = top.object("profile");
  ProfileRef p;
  p.name = f.string("name");
  p.id = f.integer("id", 1, int64_t{1} << 62);
  p.date = f.string_or("date", "");
  p.machine = f.json().value("machine", nlohmann::json::object());
  p.libraries = f.json().value("libraries", nlohmann::json::object());
  return p;
}

}  // namespace

void check_partition(const std::vector<ChunkSpec>& chunks, const ParallelLayout& l, int64_t layers,
                     const std::string& where) {
  auto bad = [&](const std::string& what) { throw InputError(where, "partition", what); };
  if (static_cast<int64_t>(chunks.size()) != l.pp * l.vpp)
    bad("has " + std::to_string(chunks.size()) + " chunks; pp*vpp = " + std::to_string(l.pp * l.vpp));
  int64_t next_block = 0;
  for (size_t g = 0; g < chunks.size(); ++g) {
    const ChunkSpec& c = chunks[g];
    const int64_t gi = static_cast<int64_t>(g);
    if (c.chunk != gi || c.stage != gi % l.pp || c.virtual_stage != gi / l.pp)
      bad("chunk " + std::to_string(g) + " is not on stage g mod pp as virtual stage g / pp");
    if (c.first_block != next_block || c.blocks < 1)
      bad("chunk " + std::to_string(g) + " does not continue at block " + std::to_string(next_block));
    if (c.embedding != (g == 0) || c.head != (g + 1 == chunks.size()))
      bad("the embedding must be in the first chunk and the head in the last");
    next_block += c.blocks;
  }
  if (next_block != layers)
    bad("holds " + std::to_string(next_block) + " blocks; the model has " + std::to_string(layers));
}

std::string PlanFile::figures() const {
  return figures_source(profile ? profile->name : "", profile ? profile->id : 0, cluster.name);
}

PlanFile plan_file_for(const SearchRequest& req, const Candidate& c, const nlohmann::json& model_config,
                       const nlohmann::json& cluster_json) {
  PlanFile p;
  p.model = req.model;
  p.model_config = model_config;
  p.cluster = req.cluster;
  p.cluster_json = cluster_json;
  p.gpus = req.gpus;
  p.job = req.job;
  p.layout = c.layout;
  p.partition = chunks_of(*c.table);
  p.feasible = c.prediction.feasible;
  p.prediction = c.prediction;
  if (req.calibration) p.calibration_id = req.calibration->id;
  return p;
}

nlohmann::json plan_file_to_json(const PlanFile& p) {
  nlohmann::json model = model_spec_to_json(p.model);
  model["config"] = p.model_config;
  nlohmann::json profile = nullptr;
  if (p.profile)
    profile = {{"name", p.profile->name}, {"id", p.profile->id}, {"date", p.profile->date},
               {"machine", p.profile->machine}, {"libraries", p.profile->libraries}};
  return {{"format", kPlanFormat},
          {"cost_model_version", p.cost_model_version},
          {"model", model},
          {"cluster", p.cluster_json},
          {"gpus", p.gpus},
          {"job", {{"global_batch", p.job.global_batch}, {"seq_len", p.model.seq_len},
                   {"precision", to_string(p.job.precision)}, {"flash_attention", p.job.flash_attention},
                   {"fp32_grads", p.job.fp32_grads},
                   {"memory_model", p.job.megatron_memory ? "megatron" : "sextant"}}},
          {"layout", layout_to_json(p.layout)},
          {"partition", partition_to_json(p.partition)},
          {"feasible", p.feasible},
          {"predicted", prediction_to_json(p.prediction)},
          {"profile", profile},
          {"calibration", p.calibration_id > 0 ? nlohmann::json(p.calibration_id) : nlohmann::json()},
          {"store", p.search_id > 0 ? nlohmann::json({{"search_id", p.search_id}, {"rank", p.search_rank}})
                                    : nlohmann::json()}};
}

PlanFile plan_file_from_json(const nlohmann::json& json, const std::string& where) {
  PlanFile p;
  const JsonFields top(json, where);
  if (top.string_or("format", "") != kPlanFormat)
    throw InputError(where, "format", std::string("expected \"") + kPlanFormat + "\"; write the plan with `sextant plan --out`");
  p.cost_model_version = top.string("cost_model_version");
  const JsonFields model = top.object("model");
  const JsonFields job = top.object("job");
  const int64_t seq = job.integer("seq_len", 1, 1 << 22);
  p.model_config = model.object("config").json();
  p.model = model_spec_from_json(p.model_config, where + ": model.config", seq);
  if (p.model.name.empty()) p.model.name = model.string_or("name", "model");
  if (model.integer("params", 1, int64_t{1} << 62) != p.model.total_params())
    throw InputError(where, "model.params",
                     "does not match the model config (" + std::to_string(p.model.total_params()) + ")");
  p.job.global_batch = job.integer("global_batch", 1, int64_t{1} << 31);
  p.job.precision = precision_from_string(job.string("precision"), where + ": job.precision");
  p.job.flash_attention = job.boolean_or("flash_attention", true);
  p.job.fp32_grads = job.boolean_or("fp32_grads", false);
  const std::string memory_model = job.string_or("memory_model", "megatron");
  if (memory_model != "sextant" && memory_model != "megatron")
    throw InputError(where, "job.memory_model", "expected sextant or megatron");
  p.job.megatron_memory = memory_model == "megatron";
  p.layout = layout_from_json(top.object("layout").json(), where);
  p.gpus = top.integer_or("gpus", p.layout.world_size(), 1, 1 << 20);
  if (p.gpus != p.layout.world_size())
    throw InputError(where, "gpus", "must equal dp*tp*pp = " + std::to_string(p.layout.world_size()));
  p.cluster_json = top.object("cluster").json();
  p.cluster = share_cpu_node(cluster_spec_from_json(p.cluster_json, where + ": cluster"), p.gpus);
  if (p.layout.global_batch() != p.job.global_batch)
    throw InputError(where, "layout", "dp*micro_batch*grad_accum must equal job.global_batch");
  if (p.layout.pp * p.layout.vpp > p.model.num_layers)
    throw InputError(where, "layout", "pp*vpp must not exceed the model's " + std::to_string(p.model.num_layers) + " layers");
  if (const std::string why = expert_parallel_problem(p.model, p.layout.ep); !why.empty())
    throw InputError(where, "layout.ep", why);
  if (p.layout.vpp > 1 && p.layout.grad_accum % p.layout.pp != 0)
    throw InputError(where, "layout", "interleaving (vpp > 1) needs grad_accum divisible by pp");
  p.partition = partition_from_json(top, p.layout, p.model.num_layers);
  p.feasible = top.boolean_or("feasible", true);
  p.prediction = prediction_from_json(top.object("predicted").json(), where + ": predicted");
  p.prediction.feasible = p.feasible;
  p.prediction.capacity_bytes = p.cluster.device.memory_bytes;
  p.profile = profile_from_json(top);
  p.calibration_id = top.has("calibration") ? top.integer("calibration", 1, int64_t{1} << 62) : 0;
  if (top.has("store")) {
    const JsonFields store = top.object("store");
    p.search_id = store.integer("search_id", 1, int64_t{1} << 62);
    p.search_rank = store.integer_or("rank", 1, 1, int64_t{1} << 31);
  }
  return p;
}

void write_plan_file(const std::string& path, const PlanFile& plan) {
  write_file_atomically(path, plan_file_to_json(plan).dump(2) + "\n", "--out");
}

PlanFile read_plan_file(const std::string& path) {
  return plan_file_from_json(JsonFields::load_object_file(path), path);
}

}  // namespace sextant
