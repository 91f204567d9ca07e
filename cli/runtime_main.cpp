// sextant-runtime: the part of sextant that links LibTorch and MPI. `sextant execute ...`
// and `sextant profile ...` replace themselves with this program, same arguments.
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/execute_command.h"

int main(int argc, char** argv) {
  CLI::App app{"sextant execute / profile (launch with mpirun/srun)"};
  app.require_subcommand(1);
  sextant::ExecuteOptions options;
  sextant::add_execute_command(app, options);
  sextant::ProfileOptions profile;
  sextant::add_profile_command(app, profile);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "sextant: error: " << e.what() << "\n";
    return 2;
  }
  if (app.got_subcommand("profile")) return sextant::run_profile(profile);
  return sextant::run_execute(options);
}
