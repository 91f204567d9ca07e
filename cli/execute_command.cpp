// `sextant execute` and `sextant compare`.
#include "cli/execute_command.h"

#include <cmath>
#include <filesystem>
#include <iomanip>
#include <iostream>

#include <CLI/CLI.hpp>
#include <mpi.h>

#include "cost_model/error.h"
#include "cost_model/store.h"

namespace sextant {

void add_execute_command(CLI::App& app, ExecuteOptions& o) {
  CLI::App* cmd = app.add_subcommand("execute", "Train with a plan's layout (launch with mpirun/srun)");
  cmd->add_option("--plan", o.plan_path, "Plan file written by `sextant plan --out`")->required();
  cmd->add_option("--steps", o.steps, "Number of training steps")->capture_default_str();
  cmd->add_option("--data", o.data, "synthetic, a text file (bytes), or a uint16 .bin token file")
      ->capture_default_str();
  cmd->add_option("--db", o.db, "SQLite store")->capture_default_str();
  cmd->add_option("--metrics-out", o.metrics_out, "One JSON line per step");
  cmd->add_option("--checkpoint-dir", o.checkpoint_dir, "Folder for sharded checkpoints");
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "Checkpoint every K steps");
  cmd->add_flag("--resume", o.resume, "Continue from the latest checkpoint in --checkpoint-dir");
  cmd->add_option("--seed", o.seed, "Seed of the parameter initialisation")->capture_default_str();
  cmd->add_option("--lr", o.lr, "AdamW learning rate")->capture_default_str();
  cmd->add_option("--dump-weights", o.dump_weights, "Write the final full weights here (one file per stage)");
}

int run_execute(const ExecuteOptions& o) {
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  int status = 0;
  try {
    execute_plan(o, std::cout);
  } catch (const InputError& e) {  // every rank reads the same input: all stop here
    if (rank == 0) std::cerr << "sextant: error: " << e.what() << "\n";
    status = 2;
  } catch (const TrainingError& e) {  // the loss is global: all ranks stop at the same step
    if (rank == 0) std::cerr << "sextant: training stopped: " << e.what() << "\n";
    status = 3;
  } catch (const std::exception& e) {  // anything else may be one rank's: end the whole job
    std::cerr << "sextant: rank " << rank << ": " << e.what() << "\n";
    MPI_Abort(MPI_COMM_WORLD, 1);
  }
  MPI_Finalize();
  return status;
}

void add_compare_command(CLI::App& app, CompareOptions& o) {
  CLI::App* cmd = app.add_subcommand("compare", "Predicted against measured, per run");
  cmd->add_option("--db", o.db, "SQLite store")->capture_default_str();
  cmd->add_option("--format", o.format, "table or json")->capture_default_str();
}

void run_compare(const CompareOptions& o, std::ostream& out) {
  if (o.format != "table" && o.format != "json")
    throw InputError("--format", "", "got \"" + o.format + "\"; allowed: table, json");
  if (!std::filesystem::exists(o.db)) throw InputError("--db", o.db, "no such store; run `sextant execute` first");
  const std::vector<RunComparison> runs = Store(o.db).compare_runs();
  auto error = [](double predicted, double measured) { return measured > 0 ? 100 * (predicted / measured - 1) : NAN; };
  if (o.format == "json") {
    nlohmann::json j = nlohmann::json::array();
    for (const RunComparison& r : runs)
      j.push_back({{"run", r.run_id}, {"created_at", r.created_at}, {"model", r.model_name},
                   {"cluster", r.cluster_name}, {"layout", nlohmann::json::parse(r.layout)},
                   {"cost_model_version", r.cost_model_version}, {"steps", r.steps}, {"final_loss", r.final_loss},
                   {"step_time_s", {{"predicted", r.predicted_step_time_s}, {"measured", r.measured_step_time_s},
                                    {"error_pct", error(r.predicted_step_time_s, r.measured_step_time_s)}}},
                   {"tokens_per_s", {{"predicted", r.predicted_tokens_per_s}, {"measured", r.measured_tokens_per_s},
                                     {"error_pct", error(r.predicted_tokens_per_s, r.measured_tokens_per_s)}}},
                   {"peak_bytes", {{"predicted", r.predicted_peak_bytes}, {"measured", r.measured_peak_bytes},
                                   {"error_pct", error(r.predicted_peak_bytes, r.measured_peak_bytes)}}}});
    out << j.dump(2) << "\n";
    return;
  }
  out << " run  model         layout                                   steps  step_s pred/meas    err  "
         "tokens/s pred/meas      err  peak_MiB pred/meas    err\n";
  for (const RunComparison& r : runs) {
    const nlohmann::json l = nlohmann::json::parse(r.layout);
    std::ostringstream layout;
    layout << "dp" << l["dp"] << " tp" << l["tp"] << " pp" << l["pp"] << " vpp" << l["vpp"] << " z" << l["zero"]
           << " mb" << l["micro_batch"] << " ga" << l["grad_accum"] << " " << l["recompute"].get<std::string>()
           << (l["sequence_parallel"].get<bool>() ? " sp" : "");
    out << std::setw(4) << r.run_id << "  " << std::left << std::setw(13) << r.model_name.substr(0, 13)
        << std::setw(41) << layout.str() << std::right << std::setw(5) << r.steps << std::fixed
        << std::setprecision(4) << std::setw(9) << r.predicted_step_time_s << std::setw(9) << r.measured_step_time_s
        << std::setprecision(1) << std::setw(7) << error(r.predicted_step_time_s, r.measured_step_time_s) << "%"
        << std::setprecision(0) << std::setw(11) << r.predicted_tokens_per_s << std::setw(10)
        << r.measured_tokens_per_s << std::setprecision(1) << std::setw(8)
        << error(r.predicted_tokens_per_s, r.measured_tokens_per_s) << "%" << std::setprecision(1) << std::setw(10)
        << r.predicted_peak_bytes / (1 << 20) << std::setw(9) << r.measured_peak_bytes / (1 << 20) << std::setw(7)
        << error(r.predicted_peak_bytes, r.measured_peak_bytes) << "%\n";
  }
  if (!runs.empty()) out << "cost model: " << runs.back().cost_model_version << "\n";
}

}  // namespace sextant
