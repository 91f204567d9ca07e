// `sextant export`: the framework names, the dispatch, and what the exporters share
// (refusals, rank order, the plan's partition, number formatting).
#include "planner/export.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "cost_model/error.h"
#include "planner/export_detail.h"

namespace sextant {

const char* to_string(ExportFramework framework) {
  switch (framework) {
    case ExportFramework::megatron:
      return "megatron";
    case ExportFramework::deepspeed:
      return "deepspeed";
    case ExportFramework::torchtitan:
      return "torchtitan";
  }
  return "?";
}

ExportFramework export_framework_from_string(const std::string& text) {
  for (ExportFramework f :
       {ExportFramework::megatron, ExportFramework::deepspeed, ExportFramework::torchtitan})
    if (text == to_string(f)) return f;
  throw InputError("--to", "", "got \"" + text + "\"; allowed: megatron, deepspeed, torchtitan");
}

std::string export_plan(const PlanFile& plan, ExportFramework to) {
  switch (to) {
    case ExportFramework::megatron:
      return export_megatron(plan);
    case ExportFramework::deepspeed:
      return export_deepspeed(plan);
    case ExportFramework::torchtitan:
      return export_torchtitan(plan);
  }
  throw InputError("--to", "", "unknown framework");
}

namespace export_detail {

void refuse(ExportFramework framework, const std::string& what) {
  throw InputError("--to", to_string(framework), what);
}

std::vector<Axis> effective_order(const ParallelLayout& layout) {
  std::vector<Axis> axes;
  for (Axis a : layout.order)
    if (layout.size(a) > 1) axes.push_back(a);
  return axes;
}

bool orders_as(const ParallelLayout& layout, const std::array<Axis, 3>& framework_order) {
  ParallelLayout as_framework = layout;
  as_framework.order = framework_order;
  return effective_order(layout) == effective_order(as_framework);
}

std::string order_to_string(const std::vector<Axis>& axes) {
  std::string out;
  for (Axis a : axes) out += (out.empty() ? "" : "-") + std::string(to_string(a));
  return out.empty() ? "a single rank" : out;
}

std::string plan_summary(const PlanFile& plan) {
  std::ostringstream out;
  out << (plan.model.name.empty() ? plan.model.model_type : plan.model.name) << ", seq "
      << plan.model.seq_len << ", global batch " << plan.job.global_batch << ", "
      << to_string(plan.job.precision) << (plan.job.fp32_grads ? " (fp32 grads)" : "") << ", "
      << (plan.job.flash_attention ? "flash" : "standard") << " attention, " << plan.gpus
      << " devices (" << plan.cluster.name << "): " << layout_to_string(plan.layout);
  return out.str();
}

std::string model_summary(const ModelSpec& m) {
  std::ostringstream out;
  out << m.num_layers << " layers, hidden " << m.hidden_size << ", " << m.num_heads << " heads ("
      << m.num_kv_heads << " key/value), head dim " << m.head_dim << ", ";
  if (m.is_moe())
    out << m.num_experts << " experts (top " << m.experts_per_token << ") of FFN "
        << m.ffn_hidden_size;
  else
    out << "FFN " << m.ffn_hidden_size;
  out << (m.mlp == MlpKind::swiglu ? " (SwiGLU)" : " (GELU)") << ", "
      << (m.norm == NormKind::rmsnorm ? "RMSNorm" : "LayerNorm") << " eps "
      << format_float(m.norm_eps) << ", ";
  if (m.position == PositionKind::rope) {
    out << "RoPE theta " << format_float(m.rope_theta);
    if (m.rotary_pct != 1.0) out << " on " << format_float(m.rotary_pct) << " of each head";
  } else {
    out << "learned positions (" << m.max_position_embeddings << ")";
  }
  out << ", vocab " << m.vocab_size << ", " << (m.tied_embeddings ? "tied" : "untied")
      << " embeddings";
  if (m.qkv_bias || m.attn_out_bias || m.mlp_bias)
    out << ", biases on" << (m.qkv_bias ? " qkv" : "") << (m.attn_out_bias ? " attn-out" : "")
        << (m.mlp_bias ? " mlp" : "");
  else
    out << ", no biases";
  if (m.parallel_residual) out << ", parallel residual";
  if (m.dropout > 0) out << ", dropout " << format_float(m.dropout);
  return out.str();
}

std::vector<ChunkSpec> checked_partition(const PlanFile& plan) {
  check_partition(plan.partition, plan.layout, plan.model.num_layers, "plan");
  return plan.partition;
}

bool uniform_partition(const std::vector<ChunkSpec>& chunks) {
  for (const ChunkSpec& c : chunks)
    if (c.blocks != chunks.front().blocks) return false;
  return true;
}

bool selective_is_none(const PlanFile& plan) {
  return plan.layout.recompute == Recompute::selective && plan.job.flash_attention;
}

std::string format_float(double value) {
  // As Python's repr: the fewest significant digits that read back as `value`, written
  // plainly for exponents in [-4, 16) and in exponent form otherwise.
  char buf[40];
  int digits = 1;
  for (; digits < 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*e", digits - 1, value);
    if (std::strtod(buf, nullptr) == value) break;
  }
  std::snprintf(buf, sizeof buf, "%.*e", digits - 1, value);
  const char* e = std::strchr(buf, 'e');
  const int exponent = e != nullptr ? std::atoi(e + 1) : 0;
  if (std::isfinite(value) && exponent >= -4 && exponent < 16)
    std::snprintf(buf, sizeof buf, "%.*f", std::max(0, digits - 1 - exponent), value);
  std::string out = buf;
  if (std::isfinite(value) && out.find_first_of(".e") == std::string::npos) out += ".0";
  return out;
}

}  // namespace export_detail
}  // namespace sextant
