// The MoE MLP: routing, dispatch and combine over the ep group, the experts, the shared
// expert and the load-balancing loss (see moe.h). Shapes: T tokens of this micro-batch
// (s·b, the whole sequence on every tp rank), k experts per token, E experts, ep ranks
// holding L = E/ep each.
#include "executor/moe.h"

#include <numeric>

#include "executor/fused_ops.h"
#include "executor/tp_ops.h"

namespace sextant {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

const torch::Tensor& at(const ParamMap& p, const std::string& name) {
  auto it = p.find(name);
  TORCH_CHECK(it != p.end(), "missing parameter ", name);
  return it->second;
}

// SwiGLU MLP `prefix` (gate, up: column-parallel; down: row-parallel) on rows x [n, h]:
// this tp rank's partial output [n, h].
torch::Tensor swiglu_mlp(const ParamMap& p, const std::string& prefix, const torch::Tensor& x) {
  // An expert no token chose: no kernel launches on nothing, and no gradient (the
  // optimizer counts a missing gradient as zeros).
  if (x.size(0) == 0) return torch::zeros({0, at(p, prefix + "down.weight").size(0)}, x.options());
  torch::Tensor inner = swiglu(torch::matmul(x, at(p, prefix + "gate.weight").t()),
                               torch::matmul(x, at(p, prefix + "up.weight").t()));
  return torch::matmul(inner, at(p, prefix + "down.weight").t());
}

void keep_pointer(AutogradContext* ctx, const char* key, const void* pointer) {
  ctx->saved_data[key] = static_cast<int64_t>(reinterpret_cast<intptr_t>(pointer));
}
template <typename T>
T* pointer_of(AutogradContext* ctx, const char* key) {
  return reinterpret_cast<T*>(static_cast<intptr_t>(ctx->saved_data[key].toInt()));
}

torch::Tensor exchanged(const torch::Tensor& x, const std::vector<int64_t>& send_rows,
                        const std::vector<int64_t>& recv_rows, Comm& comm) {
  std::vector<int64_t> shape = x.sizes().vec();
  shape[0] = std::accumulate(recv_rows.begin(), recv_rows.end(), int64_t{0});
  torch::Tensor out = torch::empty(shape, x.options());
  comm.all_to_all(x.contiguous(), send_rows, out, recv_rows);
  return out;
}

struct AllToAllRows : torch::autograd::Function<AllToAllRows> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Comm* comm,
                               const std::vector<int64_t>& send_rows,
                               const std::vector<int64_t>& recv_rows) {
    keep_pointer(ctx, "comm", comm);
    ctx->saved_data["send"] = send_rows;
    ctx->saved_data["recv"] = recv_rows;
    return exchanged(x, send_rows, recv_rows, *comm);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    const std::vector<int64_t> send_rows = ctx->saved_data["send"].toIntVector();
    const std::vector<int64_t> recv_rows = ctx->saved_data["recv"].toIntVector();
    return {exchanged(g[0], recv_rows, send_rows, *pointer_of<Comm>(ctx, "comm")), torch::Tensor(),
            torch::Tensor(), torch::Tensor()};
  }
};

// Identity on y forward; backward, besides y's gradient, seeds the layer's aux loss with
// grad_scale and adds its value to the step's sum (once per layer and micro-batch: the
// backward runs once whether or not the forward was recomputed). Megatron-Core's
// MoEAuxLossAutoScaler: the aux loss reaches the optimizer without passing through the
// pipeline's loss.
struct AttachAuxLoss : torch::autograd::Function<AttachAuxLoss> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& y,
                               const torch::Tensor& aux, MoeLoss* loss) {
    keep_pointer(ctx, "loss", loss);
    ctx->save_for_backward({aux});
    return y.view_as(y);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    MoeLoss& loss = *pointer_of<MoeLoss>(ctx, "loss");
    const torch::Tensor aux = ctx->get_saved_variables()[0];
    if (loss.counts) loss.sum += aux.detach().to(torch::kDouble) * loss.value_weight;
    return {g[0], torch::full_like(aux, loss.grad_scale), torch::Tensor()};
  }
};

// Where each received row goes to be grouped by local expert: received rows come per
// source peer q, each peer's rows ordered by local expert j (counts[q][j], [ep, L] on the
// host). Returns the row order that lists expert 0's rows (from every peer, in peer order),
// then expert 1's, ...; and each expert's row count.
std::vector<int64_t> rows_by_expert(const torch::Tensor& counts, std::vector<int64_t>& per_expert) {
  const int64_t peers = counts.size(0), local = counts.size(1);
  const int64_t* c = counts.data_ptr<int64_t>();
  std::vector<int64_t> start(static_cast<size_t>(peers * local));
  int64_t at = 0;
  for (int64_t i = 0; i < peers * local; ++i) {  // peer-major: the order rows arrive in
    start[static_cast<size_t>(i)] = at;
    at += c[i];
  }
  std::vector<int64_t> order;
  order.reserve(static_cast<size_t>(at));
  per_expert.assign(static_cast<size_t>(local), 0);
  for (int64_t j = 0; j < local; ++j)
    for (int64_t q = 0; q < peers; ++q) {
      const int64_t i = q * local + j;
      for (int64_t r = 0; r < c[i]; ++r) order.push_back(start[static_cast<size_t>(i)] + r);
      per_expert[static_cast<size_t>(j)] += c[i];
    }
  return order;
}

// How many rows go to and come from each ep peer, from this rank's per-expert counts [E]
// (on the device): the counts are exchanged first (an all-to-all of int64, one row of L
// per peer), then read back to the host, where the exchange of the rows needs them.
struct Exchange {
  std::vector<int64_t> send_rows, recv_rows;
  torch::Tensor received_counts;  // [ep, L] on the host: rows from peer q for local expert j
};

std::vector<int64_t> row_sums(const torch::Tensor& counts) {
  const torch::Tensor sums = counts.sum(1).to(torch::kCPU).contiguous();
  return std::vector<int64_t>(sums.data_ptr<int64_t>(), sums.data_ptr<int64_t>() + sums.numel());
}

Exchange plan_exchange(const torch::Tensor& counts, int64_t ep, int64_t local, Comm* comm) {
  Exchange x;
  const torch::Tensor mine = counts.view({ep, local});
  torch::Tensor got = mine;
  if (comm) {
    got = torch::empty_like(mine);
    const std::vector<int64_t> one_row(static_cast<size_t>(ep), 1);
    comm->all_to_all(mine.contiguous(), one_row, got, one_row);
  }
  x.send_rows = row_sums(mine);
  x.received_counts = got.to(torch::kCPU).contiguous();
  x.recv_rows = row_sums(x.received_counts);
  return x;
}

// This rank's experts on the rows it received [R, h] (peer order): each expert on its
// rows, outputs [R, h] in the same order. `received` is taken by value and dropped once
// regrouped (the experts' matmuls keep the regrouped copy), and the per-expert outputs once
// concatenated, so at most two [R, h] buffers beyond the kept ones are alive at once.
torch::Tensor run_local_experts(const ParamMap& p, const std::string& prefix,
                                torch::Tensor received, const Exchange& x,
                                const ExpertRange& mine) {
  std::vector<int64_t> per_expert;
  const std::vector<int64_t> order = rows_by_expert(x.received_counts, per_expert);
  const bool regroup = x.received_counts.size(0) > 1;  // one peer: already grouped by expert
  const torch::Tensor by_expert = torch::tensor(order, torch::kLong).to(received.device());
  const torch::Tensor expert_in = regroup ? received.index_select(0, by_expert) : received;
  received = torch::Tensor();
  std::vector<torch::Tensor> outputs;
  int64_t row = 0;
  for (int64_t j = 0; j < mine.count; ++j) {
    const int64_t n = per_expert[static_cast<size_t>(j)];
    const std::string name = prefix + "experts." + std::to_string(mine.first + j) + ".";
    outputs.push_back(swiglu_mlp(p, name, expert_in.narrow(0, row, n)));
    row += n;
  }
  torch::Tensor out = torch::cat(outputs, 0);  // grouped by expert
  outputs.clear();
  if (!regroup) return out;
  return torch::empty_like(out).index_copy(0, by_expert, out);
}

// The routed experts on tokens [T, h]: this tp rank's partial Σ_k w_tk·expert_k(x_t), [T, h].
torch::Tensor routed_experts(const ParamMap& p, const std::string& prefix,
                             const torch::Tensor& tokens, const Routing& r,
                             const ModelContext& ctx) {
  const ModelSpec& m = *ctx.model;
  const int64_t T = tokens.size(0), k = m.experts_per_token;
  const int64_t ep = ctx.ep ? ctx.ep->size() : 1;
  const ExpertRange mine = local_experts(m, ep, ctx.ep ? ctx.ep->rank() : 0);
  // The T·k slots (t·k + i: token t's i-th choice) sorted by expert, stably: each peer's
  // rows are then contiguous and ordered by expert.
  const torch::Tensor slot_experts = r.experts.reshape({-1});
  const torch::Tensor sorted =
      std::get<1>(slot_experts.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  const Exchange x =
      plan_exchange(torch::bincount(slot_experts, {}, m.num_experts), ep, mine.count, ctx.ep);
  // Each [T·k, h] stage is dropped as soon as the next one exists (the permuted tokens once
  // sent, the expert outputs once returned): autograd keeps none of them.
  torch::Tensor rows = tokens.index_select(0, torch::div(sorted, k, "trunc"));
  rows = all_to_all_rows(rows, x.send_rows, x.recv_rows, ctx.ep);
  rows = run_local_experts(p, prefix, std::move(rows), x, mine);
  rows = all_to_all_rows(rows, x.recv_rows, x.send_rows, ctx.ep);
  // Back to slot order, then each token's k outputs weighed and summed in slot order.
  const torch::Tensor slots = torch::empty_like(rows).index_copy(0, sorted, rows);
  rows = torch::Tensor();
  return (slots.view({T, k, -1}) * r.weights.unsqueeze(-1)).sum(1);
}

}  // namespace

ExpertRange local_experts(const ModelSpec& m, int64_t ep, int64_t ep_rank) {
  const int64_t count = m.num_experts / ep;
  return {ep_rank * count, count};
}

void add_moe_param_specs(std::vector<ParamSpec>& out, const ModelSpec& m, int64_t index) {
  using Init = ParamSpec::Init;
  const std::string b = "blocks." + std::to_string(index) + ".moe.";
  const int64_t h = m.hidden_size, f = m.ffn_hidden_size, fs = m.shared_expert_ffn_size;
  ParamSpec router{b + "router.weight", {m.num_experts, h}, -1, Init::normal, true};
  router.tp_partial_grad = true;
  out.push_back(router);
  for (int64_t e = 0; e < m.num_experts; ++e) {
    const std::string x = b + "experts." + std::to_string(e) + ".";
    for (ParamSpec s :
         {ParamSpec{x + "gate.weight", {f, h}, 0}, ParamSpec{x + "up.weight", {f, h}, 0},
          ParamSpec{x + "down.weight", {h, f}, 1}}) {
      s.expert = e;
      out.push_back(s);
    }
  }
  if (fs > 0) {
    out.push_back({b + "shared.gate.weight", {fs, h}, 0});
    out.push_back({b + "shared.up.weight", {fs, h}, 0});
    out.push_back({b + "shared.down.weight", {h, fs}, 1});
    ParamSpec gate{b + "shared_gate.weight", {1, h}, -1, Init::normal, true};
    gate.tp_partial_grad = true;
    out.push_back(gate);
  }
}

std::string with_expert(const std::string& name, int64_t expert) {
  const std::string key = ".experts.";
  const size_t at = name.find(key);
  TORCH_CHECK(at != std::string::npos, name, " is not a routed expert's parameter");
  const size_t id = at + key.size(), end = name.find('.', id);
  return name.substr(0, id) + std::to_string(expert) + name.substr(end);
}

Routing route(const torch::Tensor& logits, const ModelSpec& m) {
  Routing r;
  r.probs = torch::softmax(logits, -1, at_least_fp32(logits.scalar_type()));
  auto top = r.probs.topk(m.experts_per_token, -1);
  torch::Tensor weights = std::get<0>(top);
  if (m.norm_topk_prob) weights = weights / weights.sum(-1, /*keepdim=*/true);
  r.weights = weights.to(logits.scalar_type());
  r.experts = std::get<1>(top);
  return r;
}

torch::Tensor load_balancing_loss(const Routing& r, int64_t num_experts) {
  const int64_t tokens = r.probs.size(0);
  const torch::Tensor share =
      torch::bincount(r.experts.reshape({-1}), {}, num_experts).to(r.probs.scalar_type()) /
      static_cast<double>(tokens);  // f_e, summed over the k slots
  return (share * r.probs.mean(0)).sum() * static_cast<double>(num_experts);
}

torch::Tensor all_to_all_rows(const torch::Tensor& x, const std::vector<int64_t>& send_rows,
                              const std::vector<int64_t>& recv_rows, Comm* ep) {
  if (!ep) return x;
  return AllToAllRows::apply(x, ep, send_rows, recv_rows);
}

torch::Tensor moe_mlp(const ParamMap& p, int64_t index, const torch::Tensor& h,
                      const ModelContext& ctx) {
  const ModelSpec& m = *ctx.model;
  const std::string prefix = "blocks." + std::to_string(index) + ".moe.";
  const torch::Tensor x =
      ctx.sequence_parallel ? gather_from_sp(h, *ctx.tp) : copy_to_tp(h, *ctx.tp);
  const torch::Tensor tokens = x.reshape({-1, m.hidden_size});  // [T, h], T = s·b
  const Routing r = route(torch::matmul(tokens, at(p, prefix + "router.weight").t()), m);
  torch::Tensor y = routed_experts(p, prefix, tokens, r, ctx);
  if (m.shared_expert_ffn_size > 0) {
    const torch::Tensor gate =
        torch::sigmoid(torch::matmul(tokens, at(p, prefix + "shared_gate.weight").t()));
    y = y + gate * swiglu_mlp(p, prefix + "shared.", tokens);
  }
  if (ctx.moe_loss)
    y = AttachAuxLoss::apply(y, load_balancing_loss(r, m.num_experts), ctx.moe_loss);
  y = y.view(x.sizes());
  return ctx.sequence_parallel ? reduce_scatter_to_sp(y, *ctx.tp) : reduce_from_tp(y, *ctx.tp);
}

}  // namespace sextant
