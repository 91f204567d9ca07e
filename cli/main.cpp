// sextant: the one binary. Subcommands are thin; bad input exits with status 2 and one
// line naming the file or flag, the field, and what is allowed.
#include <iostream>

#include <CLI/CLI.hpp>

#include "cli/execute_command.h"
#include "cli/plan_command.h"
#include "cost_model/error.h"

int main(int argc, char** argv) {
  CLI::App app{"sextant: plan, run and check parallel training of large models"};
  app.require_subcommand(1);
  sextant::PlanOptions plan_options;
  sextant::add_plan_command(app, plan_options);
  sextant::ExecuteOptions execute_options;
  sextant::add_execute_command(app, execute_options);
  sextant::CompareOptions compare_options;
  sextant::add_compare_command(app, compare_options);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "sextant: error: " << e.what() << "\n";
    return 2;
  }
  if (app.got_subcommand("execute")) return sextant::run_execute(execute_options);
  try {
    if (app.got_subcommand("plan")) sextant::run_plan(plan_options, std::cout);
    if (app.got_subcommand("compare")) sextant::run_compare(compare_options, std::cout);
  } catch (const sextant::InputError& e) {
    std::cerr << "sextant: error: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "sextant: internal error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
