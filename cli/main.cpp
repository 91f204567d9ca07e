// sextant: the one binary. Subcommands are thin; bad input exits with status 2 and one
// line naming the file or flag, the field, and what is allowed.
#include <iostream>

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <string>

#include "cli/compare_command.h"
#include "cli/export_command.h"
#include "cli/plan_command.h"
#include "cli/simulate_command.h"
#include "cost_model/error.h"

namespace {

// `sextant execute` and `sextant profile` run in sextant-runtime, beside this binary, which
// links LibTorch and MPI; the planner stays free of their start-up cost. Replaces this process (before MPI
// starts, so it works under mpirun and srun too). Without the runtime beside it (a build
// without the executor, or one that has not built it yet), says how to get it: exit status 2.
int exec_executor(char** argv) {
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  std::string dir = n > 0 ? std::string(self, static_cast<size_t>(n)) : std::string(argv[0]);
  dir = dir.substr(0, dir.find_last_of('/') + 1);
  const std::string executor = dir + "sextant-runtime";
  if (access(executor.c_str(), X_OK) != 0) {
    std::cerr << "sextant: error: " << argv[1]
              << " needs sextant-runtime, which this build does not have (no " << executor
              << "); run ./scripts/build.sh sextant-runtime in the sextant checkout (installs "
                 "LibTorch and OpenMPI, builds the executor)\n";
    return 2;
  }
  argv[0] = const_cast<char*>(executor.c_str());
  // One core per rank: BLAS libraries read these when they load, so they are set here,
  // before the runtime starts (a user's own setting wins). Profiles and runs then measure
  // the same thing whether or not a launcher binds the rank to one core.
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
  setenv("OMP_NUM_THREADS", "1", 0);
  execv(executor.c_str(), argv);
  std::cerr << "sextant: error: cannot start " << executor << ": " << std::strerror(errno) << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "execute" || std::string(argv[1]) == "profile")) return exec_executor(argv);
  CLI::App app{"sextant: plan, run and check parallel training of large models"};
  app.require_subcommand(1);
  sextant::PlanOptions plan_options;
  sextant::add_plan_command(app, plan_options);
  app.add_subcommand("execute", "Train with a plan's layout (launch with mpirun/srun); see execute --help")
      ->allow_extras();
  app.add_subcommand("profile", "Measure this machine (GEMMs, bandwidth, collectives); see profile --help")
      ->allow_extras();
  sextant::CompareOptions compare_options;
  sextant::add_compare_command(app, compare_options);
  sextant::CalibrateOptions calibrate_options;
  sextant::add_calibrate_command(app, calibrate_options);
  sextant::ExportOptions export_options;
  sextant::add_export_command(app, export_options);
  sextant::SimulateOptions simulate_options;
  sextant::add_simulate_command(app, simulate_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "sextant: error: " << e.what() << "\n";
    return 2;
  }
  try {
    if (app.got_subcommand("plan")) sextant::run_plan(plan_options, std::cout);
    if (app.got_subcommand("compare")) sextant::run_compare(compare_options, std::cout);
    if (app.got_subcommand("calibrate")) sextant::run_calibrate(calibrate_options, std::cout);
    if (app.got_subcommand("export")) sextant::run_export(export_options, std::cout);
    if (app.got_subcommand("simulate")) sextant::run_simulate(simulate_options, std::cout);
  } catch (const sextant::InputError& e) {
    std::cerr << "sextant: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sextant: internal error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
