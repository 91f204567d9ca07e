// The Korthikanti et al. cases through the same search code path the planner uses
// (every axis pinned), compared with the published figures.
#include "planner/validation.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "cost_model/error.h"
#include "cost_model/json_fields.h"
#include "planner/search.h"

namespace sextant {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// Megatron-LM GPT of the paper: LayerNorm, GeLU MLP of 4h, biases, learned positions,
// tied embeddings, dropout 0.1, fp16 with fp32 main gradients, no flash attention.
SearchRequest request_for(const nlohmann::json& common, const nlohmann::json& row,
                          const ClusterSpec& cluster, Recompute recompute, bool sp) {
  nlohmann::json config = {{"model_type", "gpt"},
                           {"name", row.at("name")},
                           {"hidden_size", row.at("hidden")},
                           {"num_attention_heads", row.at("heads")},
                           {"num_hidden_layers", row.at("layers")},
                           {"vocab_size", common.at("vocab_size")},
                           {"max_position_embeddings", common.at("seq_len")},
                           {"tie_word_embeddings", true},
                           {"dropout", 0.1}};
  SearchRequest req;
  req.model = model_spec_from_json(config, "korthikanti2022.json");
  req.cluster = cluster;
  req.gpus = row.at("gpus").get<int64_t>();
  req.job.global_batch = row.at("global_batch").get<int64_t>();
  req.job.precision = Precision::fp16;
  req.job.flash_attention = false;
  req.job.fp32_grads = true;
  req.job.megatron_memory = true;  // the published figures are Megatron-LM's allocations
  std::ostringstream fix;
  const int64_t tp = row.at("tp"), pp = row.at("pp");
  fix << "dp=" << req.gpus / (tp * pp) << ",tp=" << tp << ",pp=" << pp << ",vpp=" << row.at("vpp").get<int64_t>()
      << ",zero=0,micro_batch=" << row.at("micro_batch").get<int64_t>()
      << ",recompute=" << to_string(recompute) << ",sequence_parallel=" << (sp ? "true" : "false")
      << ",offload=none";
  req.fixed = parse_fixed_axes(fix.str());
  req.top_k = 1;
  return req;
}

}  // namespace

std::vector<ValidationRow> validate_korthikanti(const nlohmann::json& data, const ClusterSpec& cluster) {
  std::vector<ValidationRow> rows;
  const nlohmann::json& common = data.at("common");
  for (const nlohmann::json& model : data.at("models")) {
    const std::string name = model.at("name");
    for (const char* setting : {"full", "seqsel"}) {
      const bool seqsel = std::string(setting) == "seqsel";
      SearchRequest req = request_for(common, model, cluster,
                                      seqsel ? Recompute::selective : Recompute::full, seqsel);
      const Candidate best = search(req).candidates.at(0);
      ValidationRow r;
      r.model = name;
      r.setting = setting;
      r.published_s = data.at("iteration_time_s").at(name).at(setting);
      r.predicted_s = best.prediction.time.step_s;
      // The paper's memory figures (Figure 1) are for no recompute and for seqsel.
      const char* memory_setting = seqsel ? "seqsel" : "none";
      SearchRequest memory_req = request_for(common, model, cluster, seqsel ? Recompute::selective : Recompute::none, seqsel);
      const Candidate memory_best = search(memory_req).candidates.at(0);
      const StageTable& table = *memory_best.table;
      const MemoryBreakdown& m = memory_best.prediction.memory;
      const nlohmann::json& published = data.at("memory_gib_per_gpu_first_stage").at(name).at(memory_setting);
      r.published_states_gib = published.at("params_and_optimizer");
      r.published_activations_gib = published.at("activations");
      // The paper's figure is 18 bytes x 12·h²·L / (t·p): the transformer layers of the
      // stage. Compare those; the embedding shard the first stage also holds is reported apart.
      const StageSummary& first = table.stages.at(0);
      const double bytes_per_param = (m.params_bytes + m.grads_bytes + m.optimizer_bytes) / first.params;
      r.predicted_states_gib = first.block_params * bytes_per_param / kGiB;
      r.predicted_embedding_states_gib = (first.params - first.block_params) * bytes_per_param / kGiB;
      r.predicted_activations_gib = m.activations_bytes / kGiB;
      r.breakdown = best.prediction.time;
      rows.push_back(r);
    }
  }
  return rows;
}

std::string validation_table(const std::vector<ValidationRow>& rows) {
  std::ostringstream out;
  out << std::fixed;
  out << "model          setting  published_s  predicted_s  error   | states_GiB pub/pred   err   | "
         "activations_GiB pub/pred  err\n";
  double sum = 0, worst = 0;
  for (const ValidationRow& r : rows) {
    out << std::left << std::setw(15) << r.model << std::setw(8) << r.setting << std::right
        << std::setprecision(2) << std::setw(12) << r.published_s << std::setw(13) << r.predicted_s
        << std::setprecision(1) << std::setw(7) << 100 * r.time_error() << "%  | " << std::setprecision(2)
        << std::setw(8) << r.published_states_gib << std::setw(9) << r.predicted_states_gib
        << std::setprecision(1) << std::setw(7) << 100 * r.states_error() << "% | " << std::setprecision(2)
        << std::setw(10) << r.published_activations_gib << std::setw(10) << r.predicted_activations_gib
        << std::setprecision(1) << std::setw(7) << 100 * r.activations_error() << "%\n";
    sum += std::abs(r.time_error());
    worst = std::max(worst, std::abs(r.time_error()));
  }
  out << std::setprecision(2) << "iteration time: mean |error| " << 100 * sum / static_cast<double>(rows.size())
      << "%, max |error| " << 100 * worst << "%\n";
  return out.str();
}

std::vector<ThroughputRow> validate_megatron_h100(const nlohmann::json& data, const ClusterSpec& cluster) {
  std::vector<ThroughputRow> rows;
  const nlohmann::json& common = data.at("common");
  for (const nlohmann::json& row : data.at("rows")) {
    nlohmann::json config = {{"model_type", "gpt"}, {"name", row.at("params")},
                             {"hidden_size", row.at("hidden")}, {"num_attention_heads", row.at("heads")},
                             {"num_hidden_layers", row.at("layers")}, {"vocab_size", common.at("vocab_size")},
                             {"max_position_embeddings", common.at("seq_len")},
                             {"tie_word_embeddings", false}, {"dropout", 0.0}};
    SearchRequest req;
    req.model = model_spec_from_json(config, "megatron-h100-2024.json");
    req.cluster = cluster;
    req.gpus = row.at("gpus").get<int64_t>();
    req.job.global_batch = row.at("global_batch").get<int64_t>();
    req.job.fp32_grads = true;  // Megatron-LM forces fp32 main gradients under --bf16 (as `sextant plan` does)
    req.job.megatron_memory = true;
    req.fixed = parse_fixed_axes("tp=" + std::to_string(row.at("tp").get<int64_t>()) +
                                 ",pp=" + std::to_string(row.at("pp").get<int64_t>()));
    req.top_k = 1;
    const Candidate best = search(req).candidates.at(0);
    rows.push_back({req.model.name, row.at("tflops_per_gpu").get<double>(),
                    best.prediction.model_tflops_per_gpu, layout_to_string(best.layout)});
  }
  return rows;
}

std::string throughput_table(const std::vector<ThroughputRow>& rows) {
  std::ostringstream out;
  out << std::fixed << "model  published_TFLOP/s  predicted_TFLOP/s  error   layout chosen\n";
  for (const ThroughputRow& r : rows)
    out << std::left << std::setw(6) << r.model << std::right << std::setprecision(1) << std::setw(14)
        << r.published_tflops << std::setw(19) << r.predicted_tflops << std::setw(8) << 100 * r.error()
        << "%  " << r.layout << "\n";
  return out.str();
}

namespace {

// tflops_per_gpu: model FLOPs (Megatron-LM's 72·B·s·L·h²·(1 + s/6h) + 6·B·s·h·V);
// hardware_tflops_per_gpu: plus recompute, which under full recompute is Megatron-LM's
// 96·B·s·L·h²·(1 + s/6h + V/16Lh) accounting of Narayanan et al. (SC21).
const char* const kMetrics[] = {"tokens_per_s_per_gpu", "step_time_s", "tflops_per_gpu",
                                "hardware_tflops_per_gpu", "mfu"};

double metric_of(const std::string& metric, const Prediction& p, int64_t gpus) {
  if (metric == "tokens_per_s_per_gpu") return p.tokens_per_s / static_cast<double>(gpus);
  if (metric == "step_time_s") return p.time.step_s;
  if (metric == "tflops_per_gpu") return p.model_tflops_per_gpu;
  if (metric == "hardware_tflops_per_gpu") return p.hardware_tflops_per_gpu;
  return p.mfu;
}

// A row field, else the table default, else nullptr.
const nlohmann::json* field(const nlohmann::json& row, const nlohmann::json& defaults, const char* key) {
  if (row.contains(key)) return &row.at(key);
  if (defaults.contains(key)) return &defaults.at(key);
  return nullptr;
}

const nlohmann::json& required(const nlohmann::json& row, const nlohmann::json& defaults, const char* key,
                               const std::string& where) {
  const nlohmann::json* v = field(row, defaults, key);
  if (!v) throw InputError(where, key, "missing (neither in the row nor in \"defaults\")");
  return *v;
}

// "fix" of the defaults, overridden key by key by the row's, as a --fix string.
std::string fixed_axes_text(const nlohmann::json& row, const nlohmann::json& defaults, const std::string& where) {
  nlohmann::json merged = nlohmann::json::object();
  for (const nlohmann::json* src : {defaults.contains("fix") ? &defaults.at("fix") : nullptr,
                                    row.contains("fix") ? &row.at("fix") : nullptr}) {
    if (!src) continue;
    if (!src->is_object()) throw InputError(where, "fix", "expected an object");
    for (auto it = src->begin(); it != src->end(); ++it) merged[it.key()] = it.value();
  }
  std::string text;
  for (auto it = merged.begin(); it != merged.end(); ++it) {
    const nlohmann::json& v = it.value();
    std::string value = v.is_string() ? v.get<std::string>() : v.is_boolean() ? (v.get<bool>() ? "true" : "false")
                                                                                : v.dump();
    text += (text.empty() ? "" : ",") + it.key() + "=" + value;
  }
  return text;
}

// The axes of a layout that `fix` leaves to the search.
std::string unpinned_axes(const FixedAxes& f) {
  std::string out;
  auto add = [&](bool pinned, const char* name) {
    if (!pinned) out += (out.empty() ? "" : ",") + std::string(name);
  };
  add(f.dp.has_value(), "dp");
  add(f.tp.has_value(), "tp");
  add(f.pp.has_value(), "pp");
  add(f.vpp.has_value(), "vpp");
  add(f.zero.has_value(), "zero");
  add(f.micro_batch.has_value(), "micro_batch");
  add(f.recompute.has_value(), "recompute");
  add(f.sequence_parallel.has_value(), "sequence_parallel");
  add(f.offload.has_value(), "offload");
  return out;
}

}  // namespace

double PublishedTableResult::mean_abs_error(bool include_approximate) const {
  double sum = 0;
  size_t n = 0;
  for (const PublishedRowResult& r : rows)
    if (include_approximate || r.approximate.empty()) sum += std::abs(r.error()), ++n;
  return n == 0 ? 0 : sum / static_cast<double>(n);
}

double PublishedTableResult::max_abs_error(bool include_approximate) const {
  double worst = 0;
  for (const PublishedRowResult& r : rows)
    if (include_approximate || r.approximate.empty()) worst = std::max(worst, std::abs(r.error()));
  return worst;
}

size_t PublishedTableResult::exact_rows() const {
  return static_cast<size_t>(
      std::count_if(rows.begin(), rows.end(), [](const PublishedRowResult& r) { return r.approximate.empty(); }));
}

std::string PublishedTableResult::bias(bool include_approximate) const {
  double sum = 0;
  for (const PublishedRowResult& r : rows)
    if (include_approximate || r.approximate.empty()) sum += r.error();
  const bool faster = metric == "step_time_s" ? sum < 0 : sum > 0;
  return faster ? "optimistic" : "pessimistic";
}

namespace {

// The search request of one row: its model, cluster, job and pinned (published) axes.
SearchRequest published_row_request(const nlohmann::json& row, const nlohmann::json& defaults,
                                    const nlohmann::json& models,
                                    const std::function<ClusterSpec(const std::string&)>& cluster_for,
                                    const std::string& base_dir, const std::string& where) {
  // The model: an inline config.json object, or a path relative to the document.
  const std::string key = required(row, defaults, "model", where).get<std::string>();
  if (!models.contains(key)) throw InputError(where, "model", "no model \"" + key + "\" in \"models\"");
  const nlohmann::json& model = models.at(key);
  const int64_t seq = required(row, defaults, "seq", where).get<int64_t>();
  SearchRequest req;
  if (model.is_string()) {
    req.model = load_model_spec((std::filesystem::path(base_dir) / model.get<std::string>()).string(), seq);
  } else {
    req.model = model_spec_from_json(model, where, seq);
    if (req.model.name.empty()) req.model.name = key;
  }
  req.cluster = cluster_for(required(row, defaults, "cluster", where).get<std::string>());
  req.gpus = required(row, defaults, "gpus", where).get<int64_t>();
  req.job.global_batch = required(row, defaults, "global_batch", where).get<int64_t>();
  // The published runs are other frameworks' (Megatron-LM, DeepSpeed, torchtitan's FSDP):
  // their memory is Megatron-LM's accounting, not sextant's executor's allocations.
  req.job.megatron_memory = true;
  if (const nlohmann::json* p = field(row, defaults, "precision"))
    req.job.precision = precision_from_string(p->get<std::string>(), where);
  if (const nlohmann::json* g = field(row, defaults, "fp32_grads")) req.job.fp32_grads = g->get<bool>();
  if (const nlohmann::json* f = field(row, defaults, "flash_attention")) req.job.flash_attention = f->get<bool>();
  req.fixed = parse_fixed_axes(fixed_axes_text(row, defaults, where));
  req.top_k = 1;
  return req;
}

}  // namespace

PublishedTableResult validate_published_table(
    const nlohmann::json& data, const std::function<ClusterSpec(const std::string&)>& cluster_for,
    const std::string& base_dir) {
  const std::string doc = data.value("name", std::string("published table"));
  if (data.value("schema", std::string()) != "sextant-published-table/1")
    throw InputError(doc, "schema", "expected \"sextant-published-table/1\"");
  PublishedTableResult result;
  result.name = doc;
  result.source = data.value("source", std::string());
  result.metric = data.value("metric", std::string());
  if (std::find(std::begin(kMetrics), std::end(kMetrics), result.metric) == std::end(kMetrics))
    throw InputError(doc, "metric",
                     "expected tokens_per_s_per_gpu, step_time_s, tflops_per_gpu, hardware_tflops_per_gpu or mfu");
  if (!data.contains("rows") || !data.at("rows").is_array()) throw InputError(doc, "rows", "expected an array");
  const nlohmann::json defaults = data.value("defaults", nlohmann::json::object());
  const nlohmann::json models = data.value("models", nlohmann::json::object());
  for (const nlohmann::json& row : data.at("rows")) {
    const std::string name = row.value("name", std::string("row"));
    const std::string where = doc + ": " + name;
    if (!row.contains("published") || !row.at("published").contains(result.metric))
      throw InputError(where, "published", "no published " + result.metric);
    const SearchRequest req = published_row_request(row, defaults, models, cluster_for, base_dir, where);
    const SearchResult found = search(req);
    if (found.candidates.empty()) throw InputError(where, "fix", "no layout matches the published one");
    const Candidate& best = found.candidates.front();
    PublishedRowResult r;
    r.name = name;
    r.published = row.at("published").at(result.metric).get<double>();
    r.predicted = metric_of(result.metric, best.prediction, req.gpus);
    r.feasible = best.prediction.feasible;
    r.approximate = row.value("approximate", std::string());
    r.layout = layout_to_string(best.layout);
    r.unpublished = unpinned_axes(req.fixed);
    result.rows.push_back(r);
  }
  return result;
}

std::string published_table_report(const PublishedTableResult& result) {
  std::ostringstream out;
  out << std::fixed << result.name << " (" << result.metric << ")\n"
      << "row                      published   predicted   error  layout predicted\n";
  bool any_approximate = false;
  for (const PublishedRowResult& r : result.rows) {
    const int digits = r.published >= 100 ? 0 : 2;
    out << std::left << std::setw(22) << r.name << (r.approximate.empty() ? "  " : " *") << std::right
        << std::setprecision(digits) << std::setw(10) << r.published << std::setw(12) << r.predicted
        << std::setprecision(1) << std::setw(7) << 100 * r.error() << "%  " << r.layout
        << (r.unpublished.empty() ? "" : "  [searched: " + r.unpublished + "]")
        << (r.feasible ? "" : "  (does not fit)") << "\n";
    any_approximate = any_approximate || !r.approximate.empty();
  }
  out << std::setprecision(2) << "exact rows (" << result.exact_rows() << "): mean |error| "
      << 100 * result.mean_abs_error() << "%, max |error| " << 100 * result.max_abs_error() << "%, "
      << result.bias() << "\n";
  if (any_approximate)
    out << "all rows (" << result.rows.size() << ", * = published setting approximated, see the data "
        << "file's \"approximate\"): mean |error| " << 100 * result.mean_abs_error(true) << "%, max |error| "
        << 100 * result.max_abs_error(true) << "%, " << result.bias(true) << "\n";
  return out.str();
}

}  // namespace sextant
