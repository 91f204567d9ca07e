// Stage construction and the schedule walk.
#include "executor/pipeline.h"

#include <algorithm>
#include <map>

#include "cost_model/schedule.h"
#include "executor/trace_recorder.h"

namespace sextant {

Stage::Stage(const ModelSpec& model, const ParallelLayout& layout, const std::vector<ChunkSpec>& partition,
             CommGroups& comm, uint64_t seed, torch::ScalarType working_dtype, torch::Device device,
             bool flash_attention)
    : model_(model), layout_(layout), comm_(comm), dtype_(working_dtype), device_(device), seed_(seed) {
  ctx_ = ModelContext{&model_,
                      comm_.tp.get(),
                      comm_.ep.get(),
                      model_.is_moe() ? &moe_loss_ : nullptr,
                      layout.sequence_parallel,
                      layout.recompute == Recompute::selective,
                      flash_attention};
  for (const ChunkSpec& spec : partition) {
    if (spec.stage != comm_.coord.pp) continue;
    Chunk chunk{spec, {}};
    if (spec.embedding) add_layer(chunk, LayerKind::embedding, 0);
    for (int64_t i = 0; i < spec.blocks; ++i) add_layer(chunk, LayerKind::block, spec.first_block + i);
    if (spec.head) add_layer(chunk, LayerKind::head, 0);
    chunks_.push_back(std::move(chunk));
  }
  std::sort(chunks_.begin(), chunks_.end(),
            [](const Chunk& a, const Chunk& b) { return a.spec.virtual_stage < b.spec.virtual_stage; });
}

namespace {

// How a parameter's gradient is reduced and its state sharded: over dp, split over tp or
// the same on every tp rank (its gradient then whole on each, or a partial sum over tp);
// routed experts over the expert-dp group.
enum class GroupKind { split, replicated, tp_partial, experts };

GroupKind kind_of(const ParamSpec& s) {
  if (s.expert >= 0) return GroupKind::experts;
  if (s.tp_partial_grad) return GroupKind::tp_partial;
  return s.shard_dim < 0 ? GroupKind::replicated : GroupKind::split;
}

}  // namespace

// A layer's parameters become up to four groups, one per GroupKind; of the routed experts
// only this rank's share (moe.h local_experts).
std::vector<ParamGroup*> Stage::make_groups(LayerKind kind, int64_t index) {
  const bool tied_copy = kind == LayerKind::head && model_.tied_embeddings && layout_.pp > 1;
  const std::vector<ParamSpec> specs = layer_param_specs(model_, kind, index, tied_copy);
  const ExpertRange mine = local_experts(model_, layout_.ep, comm_.ep_rank());
  std::vector<ParamGroup*> made;
  for (GroupKind group : {GroupKind::split, GroupKind::replicated, GroupKind::tp_partial, GroupKind::experts}) {
    std::vector<ParamSpec> part;
    std::vector<torch::Tensor> values;
    for (const ParamSpec& s : specs) {
      if (kind_of(s) != group) continue;
      if (s.expert >= 0 && (s.expert < mine.first || s.expert >= mine.first + mine.count)) continue;
      part.push_back(s);
      values.push_back(init_param(s, seed_, comm_.coord.tp, layout_.tp));
    }
    if (part.empty()) continue;
    const bool replicated = group == GroupKind::replicated || group == GroupKind::tp_partial;
    const bool holds_embedding = part.front().name == "embed.weight";
    Comm& reduce_over = group == GroupKind::experts ? comm_.expert_dp_group() : *comm_.dp;
    groups_.push_back(std::make_unique<ParamGroup>(part, values, replicated, tied_copy && holds_embedding,
                                                   reduce_over, layout_.zero, dtype_, device_));
    ParamGroup* g = groups_.back().get();
    for (size_t i = 0; i < part.size(); ++i) params_[part[i].name] = g->params()[i];
    if (holds_embedding && model_.tied_embeddings && layout_.pp > 1) tied_groups_.push_back(g);
    if (holds_embedding && kind == LayerKind::embedding) embedding_group_ = g;
    made.push_back(g);
  }
  return made;
}

void Stage::add_layer(Chunk& chunk, LayerKind kind, int64_t index) {
  std::vector<ParamGroup*> own = make_groups(kind, index);
  // Tied embeddings on one stage: the head multiplies by the embedding's own weight.
  ParamGroup* borrowed =
      kind == LayerKind::head && model_.tied_embeddings && layout_.pp == 1 ? embedding_group_ : nullptr;
  // Every stage takes each layer's gradients after its backward (optimizer.h).
  // Filled in place: building a Layer and moving it in made GCC warn that the std::function
  // it holds may be used uninitialised (-Wmaybe-uninitialized, GCC 12 and 13).
  Layer& layer = chunk.layers.emplace_back();
  layer.kind = kind;
  layer.hooks = std::make_unique<GroupSet>(own, borrowed);
  layer.run.sharded = layer.hooks.get();
  layer.run.recompute = kind == LayerKind::block && layout_.recompute == Recompute::full;
  if (kind == LayerKind::embedding)
    layer.run.forward = [this](const std::vector<torch::Tensor>& in) { return embedding_forward(params_, in[0], ctx_); };
  else if (kind == LayerKind::block)
    layer.run.forward = [this, index](const std::vector<torch::Tensor>& in) {
      return block_forward(params_, index, in[0], ctx_);
    };
  else
    layer.run.forward = [this](const std::vector<torch::Tensor>& in) { return head_loss(params_, in[0], in[1], ctx_); };
}

torch::Tensor Stage::forward_chunk(const Chunk& chunk, const torch::Tensor& input, const torch::Tensor& targets) {
  torch::Tensor x = input;
  for (const Layer& layer : chunk.layers)
    x = layer.kind == LayerKind::head ? run_layer(layer.run, {x, targets}) : run_layer(layer.run, {x});
  return x;
}

torch::Tensor Stage::run_schedule(const torch::Tensor& tokens, double loss_scale, StepClock* clock) {
  const int64_t pp = layout_.pp, chunks = pp * layout_.vpp, m = tokens.size(0);
  const int64_t stage = comm_.coord.pp, seq = model_.seq_len;
  const int64_t seq_local = layout_.sequence_parallel ? seq / layout_.tp : seq;
  const std::vector<int64_t> activation_shape = {seq_local, tokens.size(1), model_.hidden_size};
  // Tag of the message that feeds global chunk g of micro-batch j (direction 0: activation
  // into g's forward, 1: gradient into g's backward).
  auto tag = [&](int64_t j, int64_t g, int direction) { return static_cast<int>((j * chunks + g) * 2 + direction); };
  struct Slot {
    torch::Tensor input, output;
  };
  std::map<std::pair<int64_t, int64_t>, Slot> slots;
  Comm& link = *comm_.pp;
  torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  for (auto& g : groups_) g->begin_step(m);
  if (model_.is_moe()) {  // moe.h MoeLoss: a micro-batch of b·s tokens, its loss scaled by loss_scale
    moe_loss_.value_weight = model_.router_aux_loss_coef * static_cast<double>(tokens.size(1) * seq) * loss_scale /
                             static_cast<double>(model_.num_layers);
    moe_loss_.grad_scale = moe_loss_.value_weight / static_cast<double>(layout_.tp);
    moe_loss_.counts = comm_.coord.tp == 0;
    moe_loss_.sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  }
  const Schedule schedule = make_schedule(pp, layout_.vpp, m);
  TraceRecorder* trace = clock ? clock->trace() : nullptr;  // the traced step only
  // Pipeline messages of micro-batch j, chunk c (p2p events of the traced step).
  auto receive = [&](int64_t from, int message, int64_t j, int64_t c) {
    torch::Tensor t = torch::empty(activation_shape, torch::TensorOptions().dtype(dtype_).device(device_));
    const TraceSpan span(trace, trace_name::p2p_recv, "p2p", TraceThread::p2p, j, c);
    link.recv(t, static_cast<int>(from), message);
    return t;
  };
  auto send = [&](const torch::Tensor& t, int64_t to, int message, int64_t j, int64_t c) {
    const TraceSpan span(trace, trace_name::p2p_send, "p2p", TraceThread::p2p, j, c);
    link.send(t, static_cast<int>(to), message);
  };
  for (const ScheduleOp& op : schedule.ops[static_cast<size_t>(stage)]) {
    const Chunk& chunk = chunks_[static_cast<size_t>(op.chunk)];
    const int64_t g = op.chunk * pp + stage, j = op.micro_batch;
    Slot& slot = slots[{j, op.chunk}];
    const PhaseScope phase(clock, op.op == PipeOp::forward ? StepPhase::forward : StepPhase::backward);
    if (op.op == PipeOp::forward) {
      const torch::Tensor sample = tokens[j];
      if (chunk.spec.embedding) slot.input = sample.narrow(1, 0, seq);
      else slot.input = receive((g - 1) % pp, tag(j, g, 0), j, op.chunk).requires_grad_(true);
      {
        const TraceSpan span(trace, trace_name::forward, "compute", TraceThread::compute, j, op.chunk);
        slot.output = forward_chunk(chunk, slot.input, sample.narrow(1, 1, seq));
      }
      if (chunk.spec.head) {
        slot.output = slot.output * loss_scale;
        loss_sum += slot.output.detach().to(torch::kDouble).reshape({});
      } else {
        send(slot.output.detach().contiguous(), (g + 1) % pp, tag(j, g + 1, 0), j, op.chunk);
      }
    } else {
      const torch::Tensor grad = chunk.spec.head ? torch::Tensor() : receive((g + 1) % pp, tag(j, g, 1), j, op.chunk);
      {
        const TraceSpan span(trace, trace_name::backward, "compute", TraceThread::compute, j, op.chunk);
        if (chunk.spec.head) torch::autograd::backward({slot.output});
        else torch::autograd::backward({slot.output}, {grad});
      }
      if (!chunk.spec.embedding)
        send(slot.input.grad().contiguous(), (g - 1 + pp) % pp, tag(j, g - 1, 1), j, op.chunk);
      slots.erase({j, op.chunk});
    }
  }
  link.wait_sends();
  return loss_sum;
}

torch::Tensor Stage::aux_loss_sum() const {
  if (moe_loss_.sum.defined()) return moe_loss_.sum;
  return torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device_));
}

}  // namespace sextant
