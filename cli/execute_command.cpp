// `sextant execute` (built into sextant-execute, the binary that links LibTorch and MPI).
#include "cli/execute_command.h"

#include <iostream>

#include <CLI/CLI.hpp>
#include <mpi.h>

#include "cost_model/error.h"

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

}  // namespace sextant
