// Helpers the three exporters share (planner/export_*.cpp); not part of the planner's API.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "planner/export.h"

namespace sextant {
namespace export_detail {

// Settings sextant execute uses and every exporter writes: global-norm clipping, and
// fp16's dynamic loss scaling (initial 2^16, doubled after 1000 clean steps, halved
// after 2 overflows in a row, never below 1), as executor/loss_scaler.h and
// executor/optimizer.h. They equal DeepSpeed's documented fp16 defaults.
inline constexpr double kClipGradNorm = 1.0;
inline constexpr int kInitialLossScalePower = 16;
inline constexpr int kLossScaleWindow = 1000;
inline constexpr int kLossScaleHysteresis = 2;
inline constexpr int kMinLossScale = 1;

// Throws InputError("--to", framework, what): the layout cannot be expressed.
[[noreturn]] void refuse(ExportFramework framework, const std::string& what);

// The axes with more than one rank, innermost first: only their order matters.
std::vector<Axis> effective_order(const ParallelLayout& layout);
// Whether the layout's ranks are ordered as a framework orders them (innermost first).
bool orders_as(const ParallelLayout& layout, const std::array<Axis, 3>& framework_order);
std::string order_to_string(const std::vector<Axis>& axes);  // "tp-dp-pp"

// One line: model, sequence, batch, precision, devices, and the layout.
std::string plan_summary(const PlanFile& plan);
// One line: the architecture the framework's model must have.
std::string model_summary(const ModelSpec& model);

// The plan's chunks in model order, checked: pp·vpp of them, chunk g on stage g mod pp as
// virtual stage g / pp (the interleaving Megatron-LM and torchtitan's looped schedules
// use), consecutive blocks, embedding first and head last. InputError naming the plan
// otherwise.
std::vector<ChunkSpec> checked_partition(const PlanFile& plan);
// Every chunk holds the same number of blocks.
bool uniform_partition(const std::vector<ChunkSpec>& chunks);

// sextant's selective recompute drops the s×s attention scores; with flash attention
// there are none, and the cost model treats it exactly as no recompute.
bool selective_is_none(const PlanFile& plan);

// Shortest decimal that reads back as `value`, always with a '.' or exponent ("1.0",
// "1e-05") so that TOML and Python read a float.
std::string format_float(double value);

}  // namespace export_detail
}  // namespace sextant
