// `sextant execute` and `sextant profile` (built into sextant-runtime, the binary that links
// LibTorch and MPI).
#include "cli/execute_command.h"

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
  cmd->add_option("--keep-checkpoints", o.keep_checkpoints,
                  "Keep the K newest checkpoints, delete older ones (K >= 1)")
      ->capture_default_str();
  cmd->add_flag("--resume", o.resume, "Continue from the latest checkpoint in --checkpoint-dir");
  cmd->add_option("--seed", o.seed, "Seed of the parameter initialisation")->capture_default_str();
  cmd->add_option("--lr", o.lr, "AdamW learning rate")->capture_default_str();
  cmd->add_option("--dump-weights", o.dump_weights, "Write the final full weights here (one file per stage)");
  cmd->add_option("--device", o.device, "auto (a GPU when LibTorch sees one), cpu or cuda")->capture_default_str();
  cmd->add_flag(
      "--fp64", o.fp64,
      "Train an fp32 plan entirely in float64 on CPU ranks (equivalence checks; not stored)");
  cmd->add_option("--trace", o.trace_path,
                  "Write one measured step as Chrome trace JSON (Perfetto), one process per rank");
  cmd->add_option("--trace-step", o.trace_step, "The step --trace records (default: the last)");
}

namespace {

// Runs `job` on every rank of an MPI world (a world of one without a launcher) and turns
// its errors into exit statuses: 2 for bad input, 3 when training fails; anything else
// may be one rank's alone and aborts the whole job.
template <typename Job>
int run_under_mpi(Job&& job) {
  int provided = 0;
  MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  int status = 0;
  try {
    job(rank);
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

}  // namespace

int run_execute(const ExecuteOptions& o) {
  return run_under_mpi([&](int) { execute_plan(o, std::cout); });
}

void add_profile_command(CLI::App& app, ProfileOptions& o) {
  CLI::App* cmd = app.add_subcommand("profile", "Measure this machine: GEMMs, memory bandwidth, collectives");
  cmd->add_option("--name", o.name, "Name to store the profile under")->capture_default_str();
  cmd->add_option("--db", o.db, "SQLite store")->capture_default_str();
  cmd->add_flag("--quick", o.quick, "A small grid (seconds instead of minutes)");
  cmd->add_option("--passes", o.passes, "Measure GEMMs and memory this many times; keep each figure's median")
      ->capture_default_str()
      ->check(CLI::Range(1, 20));
}

int run_profile(const ProfileOptions& o) {
  return run_under_mpi([&](int rank) {
    MpiComm world(MPI_COMM_WORLD);
    const ProfileData profile = measure_profile(o, world, std::cerr);
    if (rank == 0) {
      const int64_t id = Store(o.db).save_profile(profile);
      std::cout << "profile \"" << o.name << "\" (" << profile.machine.cpu << ", " << profile.ranks
                << " ranks, torch " << profile.libraries.torch << ") stored as #" << id << " in "
                << o.db << std::endl;
    }
  });
}

}  // namespace sextant
