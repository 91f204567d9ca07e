// `sextant execute` and `sextant profile`: options and the functions that run them.
#pragma once

#include <string>

#include "executor/profiler.h"
#include "executor/trainer.h"

namespace CLI {
class App;
}

namespace sextant {

void add_execute_command(CLI::App& app, ExecuteOptions& options);
// Initialises MPI (a world of one without a launcher), runs, finalises. Returns the exit
// status: 0, 2 for bad input, 3 when training fails; other errors abort the whole job.
int run_execute(const ExecuteOptions& options);

void add_profile_command(CLI::App& app, ProfileOptions& options);
// Measures under MPI (profiles every group size the job has) and stores the profile.
int run_profile(const ProfileOptions& options);

}  // namespace sextant
