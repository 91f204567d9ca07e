// `sextant export`: read a plan file, turn it into a framework's launch settings, print or
// write them.
#include "cli/export_command.h"

#include <CLI/CLI.hpp>
#include <ostream>

#include "planner/export.h"
#include "planner/plan_file.h"
#include "planner/plan_output.h"

namespace sextant {

void add_export_command(CLI::App& app, ExportOptions& o) {
  CLI::App* cmd = app.add_subcommand(
      "export",
      "Write a plan's layout as Megatron-LM arguments, a DeepSpeed config or a torchtitan TOML");
  cmd->add_option("--plan", o.plan_path, "Plan file (sextant plan --out)")->required();
  cmd->add_option("--to", o.to, "megatron, deepspeed or torchtitan")->required();
  cmd->add_option("--out", o.out, "Write here instead of to stdout");
}

void run_export(const ExportOptions& o, std::ostream& out) {
  const ExportFramework to = export_framework_from_string(o.to);  // before reading anything
  const std::string text = export_plan(read_plan_file(o.plan_path), to);
  if (o.out.empty()) {
    out << text;
    return;
  }
  write_file_atomically(o.out, text, "--out");
  out << to_string(to) << " settings written to " << o.out << "\n";
}

}  // namespace sextant
