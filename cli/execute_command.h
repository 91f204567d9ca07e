// `sextant execute` and `sextant compare`: options and the functions that run them.
#pragma once

#include <iosfwd>
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

struct CompareOptions {
  std::string db = "sextant.db";
  std::string format = "table";
};
void add_compare_command(CLI::App& app, CompareOptions& options);
void run_compare(const CompareOptions& options, std::ostream& out);

}  // namespace sextant
