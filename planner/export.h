// `sextant export`: a plan as the launch settings of the frameworks people train with —
// Megatron-LM command-line arguments, a DeepSpeed JSON config, a torchtitan TOML file.
// Each exporter is a pure function of the plan file. It returns the whole text, or throws
// one InputError(where "--to", field = the framework, what = which part of the layout the
// framework cannot express and why). It never prints a different layout than the plan's:
// what a framework does differently in a way the layout does not fix (gradient dtype, a
// model the user must supply) is said in the output's own comments.
//
// The options come from one release of each framework, named at the top of every output:
// see the kTarget constants below and README.md ("sextant export") for the mapping.
#pragma once

#include <string>

#include "planner/plan_file.h"

namespace sextant {

enum class ExportFramework { megatron, deepspeed, torchtitan };

const char* to_string(ExportFramework framework);
// "megatron", "deepspeed" or "torchtitan"; InputError("--to", "", ...) listing them otherwise.
ExportFramework export_framework_from_string(const std::string& text);

// The releases whose option names the exporters use (tag, file read, commit).
inline constexpr const char* kMegatronTarget =
    "Megatron-LM core_v0.19.0 (megatron/training/arguments.py at 5be9626)";
inline constexpr const char* kDeepSpeedTarget =
    "DeepSpeed v0.19.5 (docs/_pages/config-json.md at cf44300)";
inline constexpr const char* kTorchtitanTarget =
    "torchtitan v0.2.2 (torchtitan/config/job_config.py at 73a0e69)";

// Arguments for pretrain_gpt.py, one per line with `\` continuations.
std::string export_megatron(const PlanFile& plan);
// A DeepSpeed config (JSON; its "_comment" lines say what the config cannot).
std::string export_deepspeed(const PlanFile& plan);
// A torchtitan job config (TOML) for torchtitan/train.py --job.config_file.
std::string export_torchtitan(const PlanFile& plan);

std::string export_plan(const PlanFile& plan, ExportFramework to);

}  // namespace sextant
