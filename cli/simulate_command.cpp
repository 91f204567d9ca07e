// `sextant simulate`: read a plan file, draw its predicted step, write the trace.
#include "cli/simulate_command.h"

#include <CLI/CLI.hpp>
#include <filesystem>
#include <memory>
#include <ostream>

#include "cost_model/error.h"
#include "cost_model/measured_profile.h"
#include "cost_model/store.h"
#include "planner/plan_file.h"
#include "planner/timeline.h"

namespace sextant {

void add_simulate_command(CLI::App& app, SimulateOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "simulate",
      "Write the predicted timeline of one training step as Chrome trace JSON (Perfetto)");
  cmd->add_option("--plan", o.plan_path, "Plan file (sextant plan --out)")->required();
  cmd->add_option("--out", o.out, "Trace file to write (open it in ui.perfetto.dev)")->required();
  cmd->add_option("--db", o.db, "SQLite store holding the measured profile a plan names")
      ->capture_default_str();
}

namespace {

// The plan's cluster with the device figures its prediction came from: the measured
// profile it names, read from the store, or the cluster description's own.
ClusterSpec planned_cluster(const PlanFile& plan, const SimulateOptions& o) {
  ClusterSpec cluster = plan.cluster;
  if (!plan.profile) return cluster;
  const std::string& name = plan.profile->name;
  if (!std::filesystem::exists(o.db))
    throw InputError(o.plan_path, "profile",
                     "names profile \"" + name + "\", and there is no store at " + o.db +
                         " to read it from (--db)");
  const auto [id, data] = Store(o.db).load_profile(name);
  if (id != plan.profile->id)
    throw InputError(o.plan_path, "profile",
                     "names profile \"" + name + "\" #" + std::to_string(plan.profile->id) + "; " +
                         o.db + " holds #" + std::to_string(id) + " under that name");
  cluster.device.measured = std::make_shared<MeasuredProfile>(data, id, "profile " + name);
  return cluster;
}

}  // namespace

void run_simulate(const SimulateOptions& o, std::ostream& out) {
  const PlanFile plan = read_plan_file(o.plan_path);
  const Timeline timeline = plan_timeline(plan, planned_cluster(plan, o), o.plan_path);
  write_chrome_trace(o.out, timeline, "--out");
  out << "predicted step of " << layout_to_string(plan.layout) << ": " << timeline.events.size()
      << " events on " << timeline.processes.size() << " pipeline stages, span "
      << timeline.span_us() / 1e6 << " s (plan: " << plan.prediction.time.step_s
      << " s); written to " << o.out << "\n";
}

}  // namespace sextant
