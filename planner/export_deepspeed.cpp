// A plan as a DeepSpeed config, with the keys of DeepSpeed v0.19.5's configuration
// reference (docs/_pages/config-json.md) and the rules its engine applies to them
// (deepspeed/runtime/engine.py, _do_optimizer_sanity_check). A DeepSpeed config carries the
// data-parallel layout only: the model, its tensor and pipeline parallelism and its
// activation checkpointing are the training script's code. JSON has no comments, so the
// config's "_comment" lines (a top-level key DeepSpeed does not read) say what the script
// must do.
#include <nlohmann/json.hpp>

#include "planner/export.h"
#include "planner/export_detail.h"

namespace sextant {
namespace {

using namespace export_detail;

constexpr ExportFramework kDeepSpeed = ExportFramework::deepspeed;

void check_expressible(const PlanFile& plan) {
  const ParallelLayout& l = plan.layout;
  if (l.tp > 1)
    refuse(kDeepSpeed,
           "tp=" + std::to_string(l.tp) +
               ": the config's tensor parallelism (AutoTP, tensor_parallel.autotp_size) "
               "splits only the blocks' linear layers, keeping the embedding and "
               "output layer whole on every rank and without sequence parallelism; "
               "the plan's Megatron-style tp (vocabulary-parallel embedding and loss) "
               "needs model code such as Megatron-DeepSpeed");
  if (l.pp > 1)
    refuse(kDeepSpeed,
           "pp=" + std::to_string(l.pp) +
               ": DeepSpeed pipelines a model written as deepspeed.pipe.PipelineModule; "
               "a config cannot express the stages");
  if (l.ep > 1)
    refuse(kDeepSpeed,
           "ep=" + std::to_string(l.ep) +
               ": DeepSpeed's expert parallelism is the ep_size argument of "
               "deepspeed.moe.layer.MoE in the model code (expert groups made from it), "
               "which the config JSON has no key for");
  if (l.offload != Offload::none && l.zero == 0)
    refuse(kDeepSpeed, "offload=" + std::string(to_string(l.offload)) +
                           " with zero=0: offload_optimizer needs ZeRO stage 1, 2 or 3");
  if (l.offload == Offload::params && l.zero != 3)
    refuse(kDeepSpeed, "offload=params with zero=" + std::to_string(l.zero) +
                           ": offload_param is valid only with ZeRO stage 3");
  if (plan.job.fp32_grads && plan.job.precision != Precision::fp32 && l.zero == 0)
    refuse(kDeepSpeed, "fp32 gradients with " + std::string(to_string(plan.job.precision)) +
                           " at zero=0: DeepSpeed's engine refuses a gradient accumulation "
                           "dtype other than the model's without ZeRO (\"unsupported mix\")");
}

std::vector<std::string> script_notes(const PlanFile& plan) {
  const ParallelLayout& l = plan.layout;
  std::vector<std::string> notes = {
      std::string(kDeepSpeedTarget), "sextant plan: " + plan_summary(plan),
      "launch " + std::to_string(l.world_size()) +
          " ranks: DeepSpeed's data-parallel degree is the world size (dp=" + std::to_string(l.dp) +
          ")",
      "the training script supplies the model: " + model_summary(plan.model) + ", with " +
          (plan.job.flash_attention ? "flash attention (no s*s score matrix kept)"
                                    : "standard attention (s*s scores kept)")};
  if (l.recompute == Recompute::full)
    notes.push_back(
        "recompute=full: the model must checkpoint every transformer block "
        "(deepspeed.checkpointing.checkpoint, which activation_checkpointing "
        "configures, or Hugging Face's gradient_checkpointing_enable())");
  else if (selective_is_none(plan))
    notes.push_back(
        "recompute=selective under flash attention is no recompute in the plan "
        "(there is no s*s score matrix to drop): checkpoint nothing");
  else if (l.recompute == Recompute::selective)
    notes.push_back(
        "recompute=selective: the model must checkpoint the attention core (scores, "
        "softmax, dropout) of every block with deepspeed.checkpointing.checkpoint");
  if (l.offload != Offload::none)
    notes.push_back(
        "offload: the optimizer step runs on the host as DeepSpeedCPUAdam; name the "
        "optimizer in an \"optimizer\" section (or pass DeepSpeedCPUAdam)");
  return notes;
}

nlohmann::ordered_json offload_to(const char* device) {
  return {{"device", device}, {"pin_memory", true}};
}

}  // namespace

std::string export_deepspeed(const PlanFile& plan) {
  check_expressible(plan);
  const ParallelLayout& l = plan.layout;
  const JobSpec& job = plan.job;
  nlohmann::ordered_json config;
  config["_comment"] = script_notes(plan);
  config["train_batch_size"] = l.global_batch();
  config["train_micro_batch_size_per_gpu"] = l.micro_batch;
  config["gradient_accumulation_steps"] = l.grad_accum;
  config["gradient_clipping"] = kClipGradNorm;
  config["bf16"] = {{"enabled", job.precision == Precision::bf16}};
  if (job.precision == Precision::fp16)
    config["fp16"] = {{"enabled", true},
                      {"loss_scale", 0},  // 0: dynamic
                      {"initial_scale_power", kInitialLossScalePower},
                      {"loss_scale_window", kLossScaleWindow},
                      {"hysteresis", kLossScaleHysteresis},
                      {"min_loss_scale", kMinLossScale}};
  else
    config["fp16"] = {{"enabled", false}};
  if (job.fp32_grads && job.precision != Precision::fp32)
    config["data_types"] = {{"grad_accum_dtype", "fp32"}};

  nlohmann::ordered_json zero = {{"stage", l.zero}};
  // The plan overlaps the gradient reduction with the backward pass.
  if (l.zero >= 1) zero["overlap_comm"] = true;
  if (l.offload != Offload::none) zero["offload_optimizer"] = offload_to("cpu");
  if (l.offload == Offload::params) zero["offload_param"] = offload_to("cpu");
  config["zero_optimization"] = zero;

  if (l.recompute == Recompute::full ||
      (l.recompute == Recompute::selective && !selective_is_none(plan)))
    config["activation_checkpointing"] = {{"partition_activations", false},
                                          {"cpu_checkpointing", false},
                                          {"contiguous_memory_optimization", false},
                                          {"synchronize_checkpoint_boundary", false},
                                          {"profile", false}};
  return config.dump(2) + "\n";
}

}  // namespace sextant
