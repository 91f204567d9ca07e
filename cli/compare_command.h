// `sextant compare` and `sextant calibrate`: predicted against measured, per run in the
// store, and the correction factors fitted to those runs.
#pragma once

#include <iosfwd>
#include <string>

namespace CLI {
class App;
}

namespace sextant {

struct CompareOptions {
  std::string db = "sextant.db";
  std::string format = "table";
};

void add_compare_command(CLI::App& app, CompareOptions& options);
void run_compare(const CompareOptions& options, std::ostream& out);

struct CalibrateOptions {
  std::string db = "sextant.db";
  bool all = false;  // fit on every run (default: every other model+layout; the rest held out)
};
void add_calibrate_command(CLI::App& app, CalibrateOptions& options);
void run_calibrate(const CalibrateOptions& options, std::ostream& out);

}  // namespace sextant
