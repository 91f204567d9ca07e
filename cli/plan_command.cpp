// `sextant plan`: read the model and cluster, search, store, print, write the plan file.
#include "cli/plan_command.h"

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <ostream>

#include <CLI/CLI.hpp>

#include "cost_model/calibration.h"
#include "cost_model/error.h"
#include "cost_model/json_fields.h"
#include "cost_model/measured_profile.h"
#include "cost_model/store.h"
#include "planner/plan_file.h"
#include "planner/plan_output.h"
#include "planner/search.h"
#include "profiles/cluster_catalog.h"

namespace sextant {

void add_plan_command(CLI::App& app, PlanOptions& o) {
  CLI::App* plan = app.add_subcommand("plan", "Recommend a parallel layout for a model on a cluster");
  plan->add_option("--model", o.model_path, "Hugging Face config.json or sextant model JSON")->required();
  plan->add_option("--cluster", o.cluster, "Built-in cluster name or a cluster JSON file")
      ->capture_default_str();
  plan->add_option("--gpus", o.gpus, "Number of devices to use")->required();
  plan->add_option("--global-batch", o.global_batch, "Global batch size in sequences")->required();
  plan->add_option("--seq", o.seq, "Sequence length (default: the model's context length)");
  plan->add_option("--precision", o.precision, "bf16, fp16 or fp32")->capture_default_str();
  plan->add_option("--attention", o.attention, "flash or standard (materialised scores)")
      ->capture_default_str();
  CLI::Option* on = plan->add_flag("--fp32-grads", o.fp32_grads_on,
                                   "Sum and reduce gradients in fp32 (Megatron-LM's main grads); default: on for "
                                   "bf16 (as Megatron-LM forces), off for fp16");
  plan->add_flag("--no-fp32-grads", o.fp32_grads_off, "Keep 16-bit gradients (2 bytes per parameter)")->excludes(on);
  plan->add_option("--memory-model", o.memory_model,
                   "What a layout must fit: megatron (Megatron-LM's and the ZeRO paper's accounting: 2+2+12 "
                   "bytes per parameter, Korthikanti et al.'s activations) or sextant (what sextant execute "
                   "allocates). Every plan also reports sextant execute's own peak")
      ->check(CLI::IsMember({"sextant", "megatron"}))
      ->capture_default_str();
  plan->add_option("--fix", o.fix,
                   "Pin axes: k=v,... (dp, tp, pp, vpp, ep, zero, micro_batch, "
                   "grad_accum, recompute, sequence_parallel, offload); ep (MoE expert "
                   "parallelism, carved out of dp) must divide dp and the number of experts");
  plan->add_option("--format", o.format, "table, json or csv")->capture_default_str();
  plan->add_option("--top", o.top, "How many layouts to list")->capture_default_str();
  plan->add_option("--out", o.out, "Write the best layout's plan file here");
  plan->add_option("--db", o.db, "SQLite store")->capture_default_str();
  plan->add_option("--profile", o.profile, "Use a measured profile from the store (sextant profile --name)");
  plan->add_flag("--calibrated", o.calibrated, "Apply the store's latest calibration (sextant calibrate)");
}

namespace {

// The store's latest calibration with the GEMM factor of `figures` in force; InputError
// when there is none, it corrects another cost model's predictions, or no fitted run used
// these figures.
Calibration calibration_in_force(const std::string& db, const std::string& figures) {
  if (!std::filesystem::exists(db)) throw InputError("--calibrated", "", "no store at " + db);
  const auto latest = Store(db).latest_calibration();
  if (!latest) throw InputError("--calibrated", "", "no calibration in " + db + " (run `sextant calibrate`)");
  const Calibration& c = latest->first;
  if (c.cost_model_version != kCostModelVersion)
    throw InputError("--calibrated", "", "calibration #" + std::to_string(c.id) + " corrects \"" + c.cost_model_version +
                                             "\", not this \"" + kCostModelVersion +
                                             "\"; plan and execute again, then run `sextant calibrate`");
  const std::optional<Calibration> calibration = calibration_for(c, figures);
  if (!calibration) {
    std::string fitted;
    for (const auto& entry : c.compute_factor_by_figures) fitted += (fitted.empty() ? "" : ", ") + entry.first;
    throw InputError("--calibrated", "", "calibration #" + std::to_string(c.id) + " has no run predicted from " +
                                             figures + " (fitted: " + fitted +
                                             "); execute plans made with it, then run `sextant calibrate`");
  }
  return *calibration;
}

void check_range(const char* flag, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi)
    throw InputError(flag, "", "must be an integer in [" + std::to_string(lo) + ", " +
                                   std::to_string(hi) + "] (got " + std::to_string(value) + ")");
}

}  // namespace

void run_plan(const PlanOptions& o, std::ostream& out) {
  check_range("--gpus", o.gpus, 1, 1 << 20);
  check_range("--global-batch", o.global_batch, 1, int64_t{1} << 31);
  check_range("--seq", o.seq, 0, 1 << 22);
  check_range("--top", o.top, 1, 100000);
  if (o.format != "table" && o.format != "json" && o.format != "csv")
    throw InputError("--format", "", "got \"" + o.format + "\"; allowed: table, json, csv");
  if (o.attention != "flash" && o.attention != "standard")
    throw InputError("--attention", "", "got \"" + o.attention + "\"; allowed: flash, standard");

  SearchRequest req;
  const nlohmann::json model_config = JsonFields::load_object_file(o.model_path);
  req.model = model_spec_from_json(model_config, o.model_path, o.seq);
  if (req.model.name.empty()) req.model.name = o.model_path;
  nlohmann::json cluster_json;
  req.cluster = share_cpu_node(load_cluster(o.cluster, &cluster_json), o.gpus);
  std::optional<ProfileRef> profile;
  if (!o.profile.empty()) {
    if (!std::filesystem::exists(o.db)) throw InputError("--profile", o.profile, "no store at " + o.db);
    const auto [id, data] = Store(o.db).load_profile(o.profile);
    req.cluster.device.measured = std::make_shared<MeasuredProfile>(data, id, "profile " + o.profile);
    profile = ProfileRef{o.profile, id, data.date, machine_to_json(data.machine), libraries_to_json(data.libraries)};
  }
  // The calibration's GEMM factor is the one fitted for these figures (this profile, or the cluster).
  const std::string figures = figures_source(o.profile, profile ? profile->id : 0, req.cluster.name);
  if (o.calibrated) req.calibration = calibration_in_force(o.db, figures);
  req.gpus = o.gpus;
  req.job.global_batch = o.global_batch;
  req.job.precision = precision_from_string(o.precision, "--precision");
  req.job.flash_attention = o.attention == "flash";
  req.job.megatron_memory = o.memory_model == "megatron";
  req.job.fp32_grads = o.fp32_grads_on || (!o.fp32_grads_off && req.job.precision == Precision::bf16);
  req.fixed = parse_fixed_axes(o.fix);
  req.top_k = o.top;

  if (!o.out.empty()) {  // refuse an unwritable plan path before anything is written
    const std::string probe = o.out + ".tmp";
    if (!std::ofstream(probe)) throw InputError("--out", o.out, "cannot write the plan file here");
    std::remove(probe.c_str());
  }
  const SearchResult result = search(req);

  SearchRecord record{req.model, cluster_json, req.cluster.name, req.gpus, req.job, o.fix,
                      result.evaluated, result.feasible, result.seconds, {}};
  for (size_t i = 0; i < result.candidates.size(); ++i)
    record.plans.push_back({static_cast<int64_t>(i) + 1, result.candidates[i].layout,
                            result.candidates[i].prediction});
  const int64_t search_id = Store(o.db).save_search(record);
  if (!o.out.empty() && !result.candidates.empty()) {
    PlanFile plan = plan_file_for(req, result.candidates.front(), model_config, cluster_json);
    plan.profile = profile;
    plan.search_id = search_id;  // runs of this plan link back here
    plan.search_rank = 1;
    write_plan_file(o.out, plan);
  }

  const nlohmann::json profile_json =
      profile ? nlohmann::json({{"name", profile->name}, {"id", profile->id}}) : nlohmann::json();
  if (o.format == "json") {
    nlohmann::json j = search_to_json(req, result);
    j["profile"] = profile_json;
    out << j.dump(2) << "\n";
  }
  else if (o.format == "csv") out << search_to_csv(result);
  else {
    out << search_to_table(req, result);
    if (profile) out << "figures from measured profile \"" << o.profile << "\" (#" << profile->id << ")\n";
    if (req.calibration)
      out << "step times calibrated by calibration #" << req.calibration->id << " (GEMM x"
          << req.calibration->compute_factor << " for " << figures << ")\n";
  }
  if (!o.out.empty() && o.format == "table") out << "plan written to " << o.out << "\n";
}

}  // namespace sextant
