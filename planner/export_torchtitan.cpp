// A plan as a torchtitan job config (TOML), with the fields of torchtitan v0.2.2
// (torchtitan/config/job_config.py) and the behaviour of its Llama-style models there
// (torchtitan/models/llama3/infra/parallelize.py, torchtitan/distributed/utils.py,
// pipeline_parallel.py, parallel_dims.py, train.py). Data parallelism is FSDP2 (shard) or
// DDP (replicate); tensor parallelism always shards the norms over the sequence; mixed
// precision comes from FSDP2 or, on a plain data-parallel job, from autocast.
#include <sstream>

#include "planner/export.h"
#include "planner/export_detail.h"

namespace sextant {
namespace {

using namespace export_detail;

constexpr ExportFramework kTorchtitan = ExportFramework::torchtitan;

// ParallelDims.build_mesh: ["pp", "dp_replicate", "fsdp", "tp"], outermost first.
constexpr std::array<Axis, 3> kMeshOrder = {Axis::tp, Axis::dp, Axis::pp};

void check_expressible(const PlanFile& plan) {
  const ParallelLayout& l = plan.layout;
  const ModelSpec& m = plan.model;
  const std::string tp = "tp=" + std::to_string(l.tp);
  if (!orders_as(l, kMeshOrder))
    refuse(kTorchtitan, "rank order " + order_to_string(effective_order(l)) +
                            " (innermost first): torchtitan's device mesh is always tp-dp-pp");
  if (plan.job.precision == Precision::fp16)
    refuse(kTorchtitan, "fp16: training.mixed_precision_param accepts bfloat16 or float32 only");
  // This also settles selective recompute: under flash attention it is no recompute
  // (exported as mode "none"), and torchtitan's own selective modes (every n-th block, or
  // per-op saving of matmul outputs) do not recompute only the attention core.
  if (!plan.job.flash_attention)
    refuse(kTorchtitan,
           "standard attention: torchtitan's models run attention in fused SDPA or "
           "FlexAttention kernels and never keep the s*s scores the plan counted; "
           "re-plan with --attention flash");
  if (l.zero == 1)
    refuse(kTorchtitan,
           "zero=1: FSDP2 shards gradients with the optimizer states, so "
           "optimizer-only sharding has no setting; re-plan with --fix zero=2");
  if (l.zero == 0 && l.dp > 1 && (l.tp > 1 || l.pp > 1))
    refuse(kTorchtitan, "zero=0 with " + tp + " pp=" + std::to_string(l.pp) +
                            ": torchtitan's replicated data parallelism (DDP) refuses any other "
                            "parallelism (\"DDP has not supported > 1D parallelism\")");
  if (l.dp == 1 && (l.tp > 1 || l.pp > 1) && plan.job.precision == Precision::bf16)
    refuse(kTorchtitan, "bf16 with dp=1 and " + tp + " pp=" + std::to_string(l.pp) +
                            ": torchtitan applies mixed precision through FSDP2, and without data "
                            "parallelism it turns mixed precision off under TP or PP");
  if (l.tp > 1 && !l.sequence_parallel)
    refuse(kTorchtitan, tp + " without sequence parallelism: torchtitan's TP plan always shards "
                             "the norms over the sequence (SequenceParallel)");
  if (l.tp > 1 && (m.num_kv_heads % l.tp != 0 || m.seq_len % l.tp != 0))
    refuse(kTorchtitan,
           tp + " with " + std::to_string(m.num_kv_heads) + " key/value heads and seq " +
               std::to_string(m.seq_len) +
               ": torchtitan splits both the key/value heads and the sequence over tp");
  if (l.offload == Offload::optimizer)
    refuse(kTorchtitan,
           "offload=optimizer: training.enable_cpu_offload offloads parameters, "
           "gradients and optimizer states together (FSDP2 CPUOffloadPolicy); "
           "optimizer-only offload has no setting");
  if (l.offload == Offload::params && l.zero != 3)
    refuse(kTorchtitan, "offload=params with zero=" + std::to_string(l.zero) +
                            ": FSDP2's CPU offload needs sharded parameters (zero=3)");
  // job_config.py Parallelism.expert_parallel_degree: with etp = tp, ep is carved out of
  // data_parallel_shard_degree (dp_shard % ep == 0), which only FSDP2 (zero 2/3) has.
  if (l.ep > 1 && l.zero < 2)
    refuse(kTorchtitan, "ep=" + std::to_string(l.ep) + " with zero=" + std::to_string(l.zero) +
                            ": torchtitan carves expert parallelism out of the FSDP2 shard "
                            "dimension (data_parallel_shard_degree), which zero 0/1 leave at 1; "
                            "re-plan with --fix zero=2 or zero=3");
}

std::string quoted(const std::string& s) {
  return "\"" + s + "\"";
}

// The model parts in order, with the module names of torchtitan's decoder models
// (tok_embeddings, layers.<i>, norm, output), as generate_llm_fqn_per_model_part uses.
std::string model_parts(const std::vector<ChunkSpec>& chunks) {
  std::string out = "[\n";
  for (const ChunkSpec& c : chunks) {
    std::string part;
    auto add = [&](const std::string& name) { part += (part.empty() ? "" : ", ") + quoted(name); };
    if (c.embedding) add("tok_embeddings");
    for (int64_t b = c.first_block; b < c.first_block + c.blocks; ++b)
      add("layers." + std::to_string(b));
    if (c.head) {
      add("norm");
      add("output");
    }
    out += "  [" + part + "],\n";
  }
  return out + "]";
}

void write_header(const PlanFile& plan, std::ostream& out) {
  const ParallelLayout& l = plan.layout;
  out << "# " << kTorchtitanTarget << ": a job config for torchtitan/train.py --job.config_file\n"
      << "# sextant plan: " << plan_summary(plan) << "\n"
      << "# launch " << l.world_size() << " ranks (dp " << l.dp << " x tp " << l.tp << " x pp "
      << l.pp << "); add the dataset, optimizer and checkpoint settings\n";
  if (!plan.job.fp32_grads && plan.job.precision == Precision::bf16)
    out << "# note: torchtitan keeps and reduces gradients in float32 "
           "(mixed_precision_reduce allows only float32); the plan counted 2-byte gradients "
           "(plan with --fp32-grads to match)\n";
  if (selective_is_none(plan))
    out << "# note: recompute=selective under flash attention is no recompute in the plan "
           "(there is no s*s score matrix to drop), so mode = \"none\"\n";
  if (l.pp > 1 && l.zero >= 2)
    out << "# note: with pp > 1, PyTorch's pipeline stages (torch.distributed.pipelining, "
           "backward_maybe_with_nosync) keep FSDP2's weights and gradients unsharded from a "
           "stage's first backward to its last and reduce-scatter once per step; the plan's zero="
        << l.zero << " kept them sharded, so the device peak will be higher than planned\n";
  if (l.offload == Offload::params)
    out << "# note: FSDP2's CPU offload also keeps the gradient shards on the host; the plan "
           "kept them on the device\n";
}

void write_model(const PlanFile& plan, std::ostream& out) {
  out << "\n[model]\n"
      << "# torchtitan builds a model from a registered name and flavor; sextant does not pick "
         "one.\n"
      << "# Fill in a flavor with exactly the plan's architecture, which its figures assume:\n"
      << "#   " << model_summary(plan.model) << "\n"
      << "name = \"<fill in: a registered torchtitan model>\"\n"
      << "flavor = \"<fill in: a flavor of it with the architecture above>\"\n";
}

void write_training(const PlanFile& plan, std::ostream& out) {
  const ParallelLayout& l = plan.layout;
  // With pp the micro-batches of a step are the pipeline's (local batch = mb·ga, one
  // accumulation step); without, torchtitan accumulates global / (local·dp) steps.
  const int64_t local_batch = l.pp > 1 ? l.micro_batch * l.grad_accum : l.micro_batch;
  out << "\n[training]\n"
      << "local_batch_size = " << local_batch << "\n"
      << "global_batch_size = " << l.global_batch() << "\n"
      << "seq_len = " << plan.model.seq_len << "\n"
      << "max_norm = " << format_float(kClipGradNorm) << "\n"
      << "dtype = \"float32\"  # fp32 master weights and optimizer states\n"
      << "mixed_precision_param = "
      << (plan.job.precision == Precision::bf16 ? "\"bfloat16\"" : "\"float32\"") << "\n"
      << "mixed_precision_reduce = \"float32\"\n"
      << "enable_cpu_offload = " << (l.offload == Offload::params ? "true" : "false") << "\n";
}

void write_parallelism(const PlanFile& plan, std::ostream& out) {
  const ParallelLayout& l = plan.layout;
  const bool shard = l.zero >= 2;  // zero=0: replicate (DDP); zero=2/3: FSDP2
  out << "\n[parallelism]\n"
      << "data_parallel_replicate_degree = " << (shard ? 1 : l.dp) << "\n"
      << "data_parallel_shard_degree = " << (shard ? l.dp : 1) << "\n";
  if (shard)  // ZeRO-3 frees gathered weights after forward; ZeRO-2 keeps them to backward
    out << "fsdp_reshard_after_forward = " << (l.zero == 3 ? "\"always\"" : "\"never\"") << "\n";
  out << "tensor_parallel_degree = " << l.tp << "\n"
      << "context_parallel_degree = 1\n"
      << "pipeline_parallel_degree = " << l.pp << "\n";
  if (plan.model.is_moe())  // routed experts over ep ranks, each split over tp (etp = tp)
    out << "expert_parallel_degree = " << l.ep << "\n"
        << "expert_tensor_parallel_degree = " << (l.ep > 1 ? l.tp : 1) << "\n";
  if (l.pp > 1) {
    out << "pipeline_parallel_schedule = " << (l.vpp > 1 ? "\"Interleaved1F1B\"" : "\"1F1B\"")
        << "\n"
        << "pipeline_parallel_microbatch_size = " << l.micro_batch << "\n"
        << "# the plan's " << l.pp * l.vpp << " model parts, part i on pipeline rank i mod " << l.pp
        << "\n"
        << "module_fqns_per_model_part = " << model_parts(checked_partition(plan)) << "\n";
  }
}

}  // namespace

std::string export_torchtitan(const PlanFile& plan) {
  check_expressible(plan);
  std::ostringstream out;
  write_header(plan, out);
  write_model(plan, out);
  write_training(plan, out);
  write_parallelism(plan, out);
  out << "\n[activation_checkpoint]\n"
      << "mode = " << (plan.layout.recompute == Recompute::full ? "\"full\"" : "\"none\"") << "\n";
  return out.str();
}

}  // namespace sextant
