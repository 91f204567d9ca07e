// `sextant export`: options and the one function that runs it.
#pragma once

#include <iosfwd>
#include <string>

namespace CLI {
class App;
}

namespace sextant {

struct ExportOptions {
  std::string plan_path;  // a plan file (sextant plan --out)
  std::string to;         // megatron, deepspeed or torchtitan
  std::string out;        // "" for stdout
};

void add_export_command(CLI::App& app, ExportOptions& options);
// Reads the plan, writes the framework's settings to `out` or to options.out (through a
// temporary file and a rename). Throws InputError on a bad flag, a bad plan file, or a
// layout the framework cannot express; nothing is written then.
void run_export(const ExportOptions& options, std::ostream& out);

}  // namespace sextant
