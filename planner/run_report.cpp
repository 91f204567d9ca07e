// Stored runs against their plans.
#include "planner/run_report.h"

#include "cost_model/json_fields.h"
#include "planner/plan_file.h"

namespace sextant {

RunComparison compare_run(const StoredRun& run) {
  const std::string where = "store: run " + std::to_string(run.id) + ": plan";
  const PlanFile plan = plan_file_from_json(JsonFields::parse_object(run.plan_json, where), where);
  RunComparison c;
  c.run_id = run.id;
  c.created_at = run.created_at;
  c.status = run.status;
  c.error = run.error;
  c.model_name = plan.model.name;
  c.cluster_name = plan.cluster.name;
  c.cost_model_version = plan.cost_model_version;
  c.layout = plan.layout;
  c.predicted_step_time_s = plan.prediction.time.step_s;
  c.predicted_tokens_per_s = plan.prediction.tokens_per_s;
  // What an allocator can count: the executor measures allocated bytes, which never hold the
  // runtime context and reserve of reserved_bytes (as the store's predicted peak).
  c.predicted_peak_bytes = plan.prediction.executor_memory.peak_bytes - plan.prediction.executor_memory.reserved_bytes;
  c.profile = plan.profile ? plan.profile->name : "";
  c.figures = plan.figures();
  c.features = calibration_features(plan.prediction.time);
  c.predicted_time = plan.prediction.time;
  measure_steps(run.steps, c);
  return c;
}

std::vector<RunComparison> compare_runs(const std::vector<StoredRun>& runs) {
  std::vector<RunComparison> out;
  out.reserve(runs.size());
  for (const StoredRun& r : runs) out.push_back(compare_run(r));
  return out;
}

}  // namespace sextant
