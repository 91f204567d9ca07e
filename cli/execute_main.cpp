// sextant-execute: the part of sextant that links LibTorch and MPI. `sextant execute ...`
// replaces itself with this program, which takes the same arguments.
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/execute_command.h"

int main(int argc, char** argv) {
  CLI::App app{"sextant execute: train with a plan's layout (launch with mpirun/srun)"};
  app.require_subcommand(1);
  sextant::ExecuteOptions options;
  sextant::add_execute_command(app, options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "sextant: error: " << e.what() << "\n";
    return 2;
  }
  return sextant::run_execute(options);
}
