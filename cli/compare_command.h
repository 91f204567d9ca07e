// `sextant compare`: predicted against measured, per run in the store.
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

}  // namespace sextant
