// `sextant simulate`: the predicted timeline of one training step of a plan, as Chrome
// trace-event JSON (planner/timeline.h); options and the one function that runs it.
#pragma once

#include <iosfwd>
#include <string>

namespace CLI {
class App;
}

namespace sextant {

struct SimulateOptions {
  std::string plan_path;          // a plan file (sextant plan --out)
  std::string out;                // the trace file
  std::string db = "sextant.db";  // where the measured profile a plan names is read from
};

void add_simulate_command(CLI::App& app, SimulateOptions& options);
// Reads the plan, rebuilds its stage table, writes the trace through a temporary file and a
// rename, prints one line. InputError on a bad plan or an unwritable --out; nothing is
// written then.
void run_simulate(const SimulateOptions& options, std::ostream& out);

}  // namespace sextant
