// The autograd functions behind tp_ops.h. A Comm* travels through the autograd context
// as an integer: the groups outlive every graph built during a step.
#include "executor/tp_ops.h"

#include "executor/tensor_kernels.h"

namespace sextant {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void keep_comm(AutogradContext* ctx, Comm& comm) {
  ctx->saved_data["comm"] = static_cast<int64_t>(reinterpret_cast<intptr_t>(&comm));
}
Comm& comm_of(AutogradContext* ctx) {
  return *reinterpret_cast<Comm*>(static_cast<intptr_t>(ctx->saved_data["comm"].toInt()));
}

torch::Tensor all_reduced(const torch::Tensor& x, Comm& comm) {
  torch::Tensor out = x.contiguous().clone();
  comm.all_reduce(out);
  return out;
}

torch::Tensor gathered_dim0(const torch::Tensor& x, Comm& comm) {
  auto shape = x.sizes().vec();
  shape[0] *= comm.size();
  torch::Tensor out = torch::empty(shape, x.options());
  comm.all_gather(x.contiguous(), out);
  return out;
}

torch::Tensor reduce_scattered_dim0(const torch::Tensor& x, Comm& comm) {
  auto shape = x.sizes().vec();
  TORCH_CHECK(shape[0] % comm.size() == 0, "sequence length must divide by tp under sequence parallelism");
  shape[0] /= comm.size();
  torch::Tensor out = torch::empty(shape, x.options());
  comm.reduce_scatter(x.contiguous(), out);
  return out;
}

torch::Tensor slice_dim0(const torch::Tensor& x, Comm& comm) {
  const int64_t part = x.size(0) / comm.size();
  return x.narrow(0, comm.rank() * part, part).contiguous();
}

struct CopyToTp : torch::autograd::Function<CopyToTp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Comm* comm) {
    keep_comm(ctx, *comm);
    return x.view_as(x);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {all_reduced(g[0], comm_of(ctx)), torch::Tensor()};
  }
};

struct ReduceFromTp : torch::autograd::Function<ReduceFromTp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Comm* comm) {
    return all_reduced(x, *comm);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) { return {g[0], torch::Tensor()}; }
};

struct GatherFromSp : torch::autograd::Function<GatherFromSp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Comm* comm) {
    keep_comm(ctx, *comm);
    return gathered_dim0(x, *comm);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {reduce_scattered_dim0(g[0], comm_of(ctx)), torch::Tensor()};
  }
};

struct ReduceScatterToSp : torch::autograd::Function<ReduceScatterToSp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Comm* comm) {
    keep_comm(ctx, *comm);
    return reduce_scattered_dim0(x, *comm);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {gathered_dim0(g[0], comm_of(ctx)), torch::Tensor()};
  }
};

struct ScatterToSp : torch::autograd::Function<ScatterToSp> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, Comm* comm) {
    keep_comm(ctx, *comm);
    return slice_dim0(x, *comm);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    return {gathered_dim0(g[0], comm_of(ctx)), torch::Tensor()};
  }
};

// loss_i = log Σ_v exp(z_iv) - z_i,target, with the max, the sum and the target logit
// combined over the vocabulary shards; gradient softmax - onehot on the local shard.
// Logits in fp32/bf16/fp16 go through the project's kernels (kernels/reference.h: one
// pass forward, one backward, statistics in fp32; the CUDA kernel on a GPU, its CPU
// reference otherwise) and keep only the logits themselves for backward. Float64 logits
// (`execute --fp64`) use LibTorch ops, which keep the float64 probabilities.
struct VocabParallelCrossEntropy : torch::autograd::Function<VocabParallelCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits,
                               const torch::Tensor& targets, int64_t vocab_start, Comm* comm) {
    if (logits.scalar_type() == torch::kDouble) return forward_wide(ctx, logits, targets, vocab_start, *comm);
    const torch::Tensor x = logits.contiguous(), y = targets.contiguous();
    const CrossEntropyPartial partial = ce_forward_partial(x, y, vocab_start);
    torch::Tensor global_max = partial.local_max.clone();
    if (comm->size() > 1) comm->all_reduce_max(global_max);
    torch::Tensor sums = torch::stack({ce_rescale(partial, global_max), partial.target_logit});  // one all-reduce
    if (comm->size() > 1) comm->all_reduce(sums);
    torch::Tensor sum_exp = sums[0].contiguous(), target_logit = sums[1].contiguous();
    ctx->save_for_backward({x, y, global_max, sum_exp});
    ctx->saved_data["vocab_start"] = vocab_start;
    return ce_loss(global_max, sum_exp, target_logit);
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    auto saved = ctx->get_saved_variables();
    if (saved.size() == 3) return backward_wide(saved, g[0]);
    const torch::Tensor dlogits =
        ce_backward(saved[0], saved[1], ctx->saved_data["vocab_start"].toInt(), saved[2], saved[3], g[0]);
    return {dlogits, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }

 private:
  static torch::Tensor forward_wide(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& targets,
                                    int64_t vocab_start, Comm& comm) {
    const int64_t local_vocab = logits.size(1);
    torch::Tensor max = std::get<0>(logits.max(1)).contiguous();
    comm.all_reduce_max(max);
    torch::Tensor shifted = logits - max.unsqueeze(1);
    torch::Tensor exp = shifted.exp();
    torch::Tensor sum = exp.sum(1).contiguous();
    comm.all_reduce(sum);
    torch::Tensor local = targets - vocab_start;
    torch::Tensor mine = (local >= 0) & (local < local_vocab);
    torch::Tensor index = torch::where(mine, local, torch::zeros_like(local));
    torch::Tensor target_logit = shifted.gather(1, index.unsqueeze(1)).squeeze(1) * mine.to(logits.dtype());
    target_logit = target_logit.contiguous();
    comm.all_reduce(target_logit);
    ctx->save_for_backward({exp / sum.unsqueeze(1), index, mine});
    return sum.log() - target_logit;
  }
  static variable_list backward_wide(const variable_list& saved, const torch::Tensor& g) {
    torch::Tensor grad = saved[0].clone();
    grad.scatter_add_(1, saved[1].unsqueeze(1), -saved[2].to(grad.dtype()).unsqueeze(1));
    return {grad * g.unsqueeze(1), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor copy_to_tp(const torch::Tensor& x, Comm& tp) {
  return tp.size() == 1 ? x : CopyToTp::apply(x, &tp);
}
torch::Tensor reduce_from_tp(const torch::Tensor& x, Comm& tp) {
  return tp.size() == 1 ? x : ReduceFromTp::apply(x, &tp);
}
torch::Tensor gather_from_sp(const torch::Tensor& x, Comm& tp) {
  return tp.size() == 1 ? x : GatherFromSp::apply(x, &tp);
}
torch::Tensor reduce_scatter_to_sp(const torch::Tensor& x, Comm& tp) {
  return tp.size() == 1 ? x : ReduceScatterToSp::apply(x, &tp);
}
torch::Tensor scatter_to_sp(const torch::Tensor& x, Comm& tp) {
  return tp.size() == 1 ? x : ScatterToSp::apply(x, &tp);
}
torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                           int64_t vocab_start, Comm& tp) {
  return VocabParallelCrossEntropy::apply(logits, targets, vocab_start, &tp);
}

}  // namespace sextant
