// A plan as Megatron-LM command-line arguments (pretrain_gpt.py), with the option names of
// Megatron-LM core_v0.19.0. Most of them are generated there from dataclass fields by
// megatron/training/argument_utils.py (TransformerConfig in megatron/core/transformer/
// transformer_config.py, ModelParallelConfig in megatron/core/model_parallel_config.py,
// TrainingConfig, DistributedInitConfig, TokenizerConfig in megatron/training/config/);
// the rest are written out in megatron/training/arguments.py.
#include <cmath>
#include <sstream>

#include "planner/export.h"
#include "planner/export_detail.h"

namespace sextant {
namespace {

using namespace export_detail;

constexpr ExportFramework kMegatron = ExportFramework::megatron;

// Megatron-LM's RankGenerator orders ranks tp-cp-ep-dp-pp (innermost first), or
// tp-cp-ep-pp-dp with --use-tp-pp-dp-mapping (DistributedInitConfig.use_tp_pp_dp_mapping).
constexpr std::array<Axis, 3> kDefaultOrder = {Axis::tp, Axis::dp, Axis::pp};
constexpr std::array<Axis, 3> kTpPpDpOrder = {Axis::tp, Axis::pp, Axis::dp};

struct Args {
  std::vector<std::string> lines;
  void add(const std::string& flag) { lines.push_back(flag); }
  void add(const std::string& flag, const std::string& value) {
    lines.push_back(flag + " " + value);
  }
  void add(const std::string& flag, int64_t value) { add(flag, std::to_string(value)); }
};

// Everything in the plan that core_v0.19.0 has no argument for; refuses on the first.
void check_expressible(const PlanFile& plan) {
  const ParallelLayout& l = plan.layout;
  const ModelSpec& m = plan.model;
  if (!orders_as(l, kDefaultOrder) && !orders_as(l, kTpPpDpOrder))
    refuse(kMegatron, "rank order " + order_to_string(effective_order(l)) +
                          " (innermost first): Megatron-LM orders ranks tp-dp-pp, or tp-pp-dp "
                          "with --use-tp-pp-dp-mapping, and has no option for this order");
  if (l.zero >= 2 && l.pp > 1)
    refuse(kMegatron, "zero=" + std::to_string(l.zero) + " with pp=" + std::to_string(l.pp) +
                          ": ZeRO-2/3 in Megatron-LM is Megatron-FSDP (--use-megatron-fsdp "
                          "--data-parallel-sharding-strategy), whose guide, examples and "
                          "functional tests in core_v0.19.0 cover pp=1 only; re-plan with "
                          "--fix zero=1 or pp=1");
  if (l.offload == Offload::params)
    refuse(kMegatron,
           "offload=params: core_v0.19.0 has no command-line option that keeps "
           "parameters on the host (--optimizer-cpu-offload moves optimizer states "
           "only; the weight-offloading fields of TransformerConfig have no "
           "argument)");
  if (l.offload == Offload::optimizer && l.zero != 1)
    refuse(kMegatron, "offload=optimizer with zero=" + std::to_string(l.zero) +
                          ": --optimizer-cpu-offload needs --use-precision-aware-optimizer, "
                          "documented with the distributed optimizer (zero=1) only");
  if (m.num_kv_heads % l.tp != 0)
    refuse(kMegatron, "tp=" + std::to_string(l.tp) + " with " + std::to_string(m.num_kv_heads) +
                          " key/value heads: Megatron-LM splits the query groups over tp "
                          "(--num-query-groups must be a multiple of tp)");
  const bool all_bias = m.qkv_bias && m.attn_out_bias && m.mlp_bias;
  const bool no_bias = !m.qkv_bias && !m.attn_out_bias && !m.mlp_bias;
  const bool qkv_only = m.qkv_bias && !m.attn_out_bias && !m.mlp_bias;
  if (!all_bias && !no_bias && !qkv_only)
    refuse(kMegatron, "the model's biases (qkv " + std::string(m.qkv_bias ? "on" : "off") +
                          ", attention output " + (m.attn_out_bias ? "on" : "off") + ", MLP " +
                          (m.mlp_bias ? "on" : "off") +
                          "): Megatron-LM puts biases on every linear layer (default), on none "
                          "(--disable-bias-linear) or on QKV only (--add-qkv-bias)");
  // schedules.py: micro-batches run in groups of pp per virtual stage (the default group
  // size); a last group smaller than pp is an error.
  if (l.vpp > 1 && l.grad_accum % l.pp != 0)
    refuse(kMegatron, "vpp=" + std::to_string(l.vpp) + " with " + std::to_string(l.grad_accum) +
                          " micro-batches per step: Megatron-LM's interleaved schedule needs a "
                          "multiple of pp=" +
                          std::to_string(l.pp));
  if (m.is_moe() && all_bias && l.tp > 1)
    refuse(kMegatron, "an MoE with biases at tp=" + std::to_string(l.tp) +
                          ": Megatron-LM supports expert biases only with expert tp 1");
  if (m.is_moe() && l.tp > 1 && !l.sequence_parallel)
    refuse(kMegatron, "an MoE at tp=" + std::to_string(l.tp) +
                          " without sequence parallelism: Megatron-LM's MoE layer raises an "
                          "error in training with tp > 1 unless sequence parallelism is on");
  if (m.parallel_residual)
    refuse(kMegatron,
           "the model's parallel residual (GPT-NeoX): Megatron-LM's GPT layer has "
           "no option for attention and MLP reading the same input");
  if (l.sequence_parallel && l.tp > 1 && m.seq_len % l.tp != 0)
    refuse(kMegatron, "sequence parallel with seq " + std::to_string(m.seq_len) +
                          " not divisible by tp=" + std::to_string(l.tp));
  if (m.position == PositionKind::learned && m.seq_len > m.max_position_embeddings)
    refuse(kMegatron, "seq " + std::to_string(m.seq_len) + " beyond the model's " +
                          std::to_string(m.max_position_embeddings) +
                          " learned positions (--max-position-embeddings would add rows)");
  if (m.position == PositionKind::rope && m.rope_theta != std::floor(m.rope_theta))
    refuse(kMegatron,
           "RoPE theta " + format_float(m.rope_theta) + ": --rotary-base takes an integer");
}

// "Et*4|t*4|...|t*4L": the stages of --pipeline-model-parallel-layout, in the model's
// order (layout[v·pp + p] is virtual stage v of pipeline rank p, as sextant's chunks).
std::string pipeline_layout(const std::vector<ChunkSpec>& chunks) {
  std::string out;
  for (const ChunkSpec& c : chunks) {
    if (!out.empty()) out += "|";
    if (c.embedding) out += "E";
    if (c.blocks == 1) out += "t";
    if (c.blocks > 1) out += "t*" + std::to_string(c.blocks);
    if (c.head) out += "L";
  }
  return out;
}

void add_parallelism(const PlanFile& plan, Args& a, std::vector<std::string>& notes) {
  const ParallelLayout& l = plan.layout;
  a.add("--tensor-model-parallel-size", l.tp);
  a.add("--pipeline-model-parallel-size", l.pp);
  const std::vector<ChunkSpec> chunks = checked_partition(plan);
  if (l.pp > 1 && !uniform_partition(chunks)) {
    // Megatron's default split is uniform; this names every chunk (and sets vpp).
    a.add("--pipeline-model-parallel-layout", "\"" + pipeline_layout(chunks) + "\"");
    notes.push_back(
        "the plan's stages are uneven, so --pipeline-model-parallel-layout places "
        "them (E embedding, t block, L output layer and loss); it also sets vpp");
  } else if (l.vpp > 1) {
    a.add("--num-virtual-stages-per-pipeline-rank", l.vpp);
  }
  if (plan.model.is_moe()) {
    // ep is carved out of dp (Megatron-Core's tp-cp-ep-dp-pp order), experts split over tp
    // (--expert-tensor-parallel-size defaults to tp), tokens exchanged by all-to-all.
    a.add("--expert-model-parallel-size", l.ep);
    if (l.ep > 1) a.add("--moe-token-dispatcher-type", "alltoall");
  }
  if (l.sequence_parallel && l.tp > 1) a.add("--sequence-parallel");
  if (!orders_as(l, kDefaultOrder)) a.add("--use-tp-pp-dp-mapping");
  a.add("--micro-batch-size", l.micro_batch);
  a.add("--global-batch-size", l.global_batch());
}

void add_model(const PlanFile& plan, Args& a, std::vector<std::string>& notes) {
  const ModelSpec& m = plan.model;
  const int64_t tp = plan.layout.tp;
  a.add("--seq-length", m.seq_len);
  a.add("--max-position-embeddings", m.position == PositionKind::rope
                                         ? std::max(m.max_position_embeddings, m.seq_len)
                                         : m.max_position_embeddings);
  a.add("--num-layers", m.num_layers);
  a.add("--hidden-size", m.hidden_size);
  a.add("--ffn-hidden-size", m.ffn_hidden_size);
  a.add("--num-attention-heads", m.num_heads);
  if (m.num_kv_heads != m.num_heads) {
    a.add("--group-query-attention");
    a.add("--num-query-groups", m.num_kv_heads);
  }
  a.add("--kv-channels", m.head_dim);
  if (m.is_moe()) {  // megatron/core/transformer/moe/README.md, "MoE Related Arguments"
    a.add("--num-experts", m.num_experts);
    a.add("--moe-router-topk", m.experts_per_token);
    a.add("--moe-ffn-hidden-size", m.ffn_hidden_size);
    // Megatron's default (softmax over the top k) is Mixtral's renormalised top-k;
    // qwen2_moe without norm_topk_prob takes softmax over all experts first.
    if (!m.norm_topk_prob) a.add("--moe-router-pre-softmax");
    a.add("--moe-aux-loss-coeff", format_float(m.router_aux_loss_coef));
    if (m.shared_expert_ffn_size > 0) {
      a.add("--moe-shared-expert-intermediate-size", m.shared_expert_ffn_size);
      a.add("--moe-shared-expert-gate");  // qwen2_moe's sigmoid gate on the shared expert
    }
    if (m.num_experts / plan.layout.ep > 1) a.add("--moe-grouped-gemm");
  }
  a.add("--normalization", m.norm == NormKind::rmsnorm ? "RMSNorm" : "LayerNorm");
  a.add("--norm-epsilon", format_float(m.norm_eps));
  if (m.mlp == MlpKind::swiglu) a.add("--swiglu");  // GELU is Megatron's default
  if (m.position == PositionKind::rope) {
    a.add("--position-embedding-type", "rope");
    a.add("--rotary-base", static_cast<int64_t>(m.rope_theta));
    a.add("--rotary-percent", format_float(m.rotary_pct));
  } else {
    a.add("--position-embedding-type", "learned_absolute");
  }
  if (!m.tied_embeddings) a.add("--untie-embeddings-and-output-weights");
  if (!m.qkv_bias || !m.attn_out_bias || !m.mlp_bias) a.add("--disable-bias-linear");
  if (m.qkv_bias && !m.attn_out_bias) a.add("--add-qkv-bias");
  // Megatron's defaults are 0.1; the plan's model has its own.
  a.add("--hidden-dropout", format_float(m.dropout));
  a.add("--attention-dropout", format_float(m.dropout));
  // The vocabulary-parallel embedding needs a multiple of tp; --padded-vocab-size fixes the
  // size instead of padding the tokenizer's to a multiple of 128·tp.
  const int64_t vocab = (m.vocab_size + tp - 1) / tp * tp;
  a.add("--padded-vocab-size", vocab);
  if (vocab != m.vocab_size)
    notes.push_back("vocabulary padded " + std::to_string(m.vocab_size) + " -> " +
                    std::to_string(vocab) + " (a multiple of tp=" + std::to_string(tp) +
                    "); the plan counted " + std::to_string(m.vocab_size));
  // flash: no s×s score matrix kept (TE's flash-attention backend); standard: materialised.
  a.add("--attention-backend", plan.job.flash_attention ? "flash" : "unfused");
}

void add_precision(const PlanFile& plan, Args& a) {
  const JobSpec& job = plan.job;
  if (job.precision == Precision::bf16) {
    a.add("--bf16");
    // Under bf16 Megatron turns fp32 gradient accumulation on unless told otherwise.
    a.add(job.fp32_grads ? "--accumulate-allreduce-grads-in-fp32" : "--grad-reduce-in-bf16");
  } else if (job.precision == Precision::fp16) {
    a.add("--fp16");  // dynamic loss scaling: no --loss-scale
    a.add("--initial-loss-scale", int64_t{1} << kInitialLossScalePower);
    a.add("--min-loss-scale", format_float(kMinLossScale));
    a.add("--loss-scale-window", kLossScaleWindow);
    a.add("--hysteresis", kLossScaleHysteresis);
    if (job.fp32_grads) a.add("--accumulate-allreduce-grads-in-fp32");
  }  // fp32: Megatron's default, no flag
  a.add("--clip-grad", format_float(kClipGradNorm));
}

void add_recompute(const PlanFile& plan, Args& a, std::vector<std::string>& notes) {
  const Recompute r = plan.layout.recompute;
  if (r == Recompute::full) {
    a.add("--recompute-granularity", "full");
    a.add("--recompute-method", "uniform");
    a.add("--recompute-num-layers", 1);
  } else if (selective_is_none(plan)) {
    notes.push_back(
        "recompute=selective under flash attention is no recompute in the plan "
        "(there is no s*s score matrix to drop), so no recompute arguments");
  } else if (r == Recompute::selective) {
    a.add("--recompute-granularity", "selective");
    a.add("--recompute-modules", "core_attn");
  }
}

void add_data_parallel(const PlanFile& plan, Args& a, std::vector<std::string>& notes) {
  const ParallelLayout& l = plan.layout;
  if (l.zero >= 1) a.add("--use-distributed-optimizer");
  if (l.zero >= 2) {  // Megatron-FSDP (docs/user-guide/features/megatron_fsdp.md)
    a.add("--use-megatron-fsdp");
    a.add("--data-parallel-sharding-strategy", l.zero == 2 ? "optim_grads" : "optim_grads_params");
    a.add("--ckpt-format", "fsdp_dtensor");  // required by Megatron-FSDP
    notes.push_back("Megatron-FSDP refuses CUDA_DEVICE_MAX_CONNECTIONS=1: leave it unset");
  }
  if (l.offload == Offload::optimizer) {  // megatron/core/optimizer/cpu_offloading/README.md
    a.add("--optimizer-cpu-offload");
    a.add("--optimizer-offload-fraction", format_float(1.0));
    a.add("--use-precision-aware-optimizer");
  }
}

}  // namespace

std::string export_megatron(const PlanFile& plan) {
  check_expressible(plan);
  const ParallelLayout& l = plan.layout;
  Args a;
  std::vector<std::string> notes;
  add_parallelism(plan, a, notes);
  add_model(plan, a, notes);
  add_precision(plan, a);
  add_recompute(plan, a, notes);
  add_data_parallel(plan, a, notes);

  std::ostringstream out;
  out << "# " << kMegatronTarget << ": arguments for pretrain_gpt.py\n"
      << "# sextant plan: " << plan_summary(plan) << "\n"
      << "# launch " << l.world_size() << " ranks (dp " << l.dp << " x tp " << l.tp << " x pp "
      << l.pp << (l.ep > 1 ? ", ep " + std::to_string(l.ep) + " within dp" : std::string())
      << "); add the data, tokenizer, optimizer and checkpoint arguments\n";
  for (const std::string& note : notes) out << "# note: " << note << "\n";
  for (size_t i = 0; i < a.lines.size(); ++i)
    out << a.lines[i] << (i + 1 < a.lines.size() ? " \\\n" : "\n");
  return out.str();
}

}  // namespace sextant
