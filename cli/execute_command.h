// `sextant execute`: options and the function that runs it.
#pragma once

#include <string>

#include "executor/trainer.h"

namespace CLI {
class App;
}

namespace sextant {

void add_execute_command(CLI::App& app, ExecuteOptions& options);
// Initialises MPI (a world of one without a launcher), runs, finalises. Returns the exit
// status: 0, 2 for bad input, 3 when training fails; other errors abort the whole job.
int run_execute(const ExecuteOptions& options);

}  // namespace sextant
