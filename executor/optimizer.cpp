// ParamGroup: flat buffers, ZeRO reductions, AdamW.
#include "executor/optimizer.h"

#include <cmath>

#include "executor/tensor_kernels.h"

namespace sextant {

ParamGroup::ParamGroup(std::vector<ParamSpec> specs, const std::vector<torch::Tensor>& values,
                       bool tp_replicated, bool tied_copy, Comm& dp, int zero, torch::ScalarType working_dtype,
                       torch::Device device)
    : specs_(std::move(specs)), tp_replicated_(tp_replicated), tied_copy_(tied_copy), dp_(dp), zero_(zero),
      working_dtype_(working_dtype) {
  for (const torch::Tensor& v : values) {
    local_shapes_.push_back(v.sizes().vec());
    numel_ += v.numel();
  }
  const int64_t dp_size = dp_.size();
  padded_ = (numel_ + dp_size - 1) / dp_size * dp_size;
  // The values come in fp32 (init_param) and are widened here under --fp64.
  const auto master = torch::TensorOptions().dtype(master_dtype());
  torch::Tensor full = torch::zeros({padded_}, master);
  torch::Tensor decay = torch::zeros({padded_}, master);
  int64_t offset = 0;
  for (size_t i = 0; i < values.size(); ++i) {
    full.narrow(0, offset, values[i].numel()).copy_(values[i].reshape({-1}));
    if (specs_[i].decay) decay.narrow(0, offset, values[i].numel()).fill_(1.0);
    offset += values[i].numel();
  }
  full = full.to(device);
  const int64_t part = zero_ == 0 ? padded_ : padded_ / dp_size;
  const int64_t begin = zero_ == 0 ? 0 : dp_.rank() * part;
  decay_ = decay.narrow(0, begin, part).to(device).clone();
  grad_ = torch::zeros({part}, full.options());
  m_ = torch::zeros({part}, full.options());
  v_ = torch::zeros({part}, full.options());
  for (size_t i = 0; i < values.size(); ++i)
    params_.push_back(torch::empty({0}, full.options().dtype(working_dtype_)).requires_grad_(true));
  if (zero_ == 3) {
    shard_ = full.narrow(0, begin, part).clone();  // the rest is dropped
  } else {
    flat_ = full;
    shard_ = flat_.narrow(0, begin, part);
    working_ = mixed() ? flat_.to(working_dtype_) : flat_;
    point_params_at(working_);
  }
  if (zero_ == 1 && dp_size > 1) accum_ = torch::zeros({padded_}, full.options());
}

void ParamGroup::refresh_working_copy() {
  if (zero_ == 3) return;  // gathered (and cast) at each use
  if (zero_ == 0) {
    if (mixed()) working_.copy_(flat_);
    return;
  }
  torch::Tensor owned = shard_.to(working_dtype_).contiguous();
  if (!mixed()) owned = owned.clone();  // MPI forbids aliasing input and output
  dp_.all_gather(owned, working_);
}

// Parameters become views of `flat` (autograd keeps its references when the data is
// swapped, see set_data), so in-place updates of the flat buffer are their new values.
void ParamGroup::point_params_at(const torch::Tensor& flat) {
  int64_t offset = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    const int64_t n = c10::multiply_integers(local_shapes_[i]);
    params_[i].set_data(flat.narrow(0, offset, n).view(local_shapes_[i]));
    offset += n;
  }
}

torch::Tensor ParamGroup::flat_grads_of_params() const {
  torch::Tensor flat = torch::zeros({padded_}, grad_.options());
  int64_t offset = 0;
  for (const torch::Tensor& p : params_) {
    const int64_t n = p.numel();
    if (p.grad().defined()) flat.narrow(0, offset, n).copy_(p.grad().reshape({-1}));
    offset += n;
  }
  return flat;
}

// No flat copy: each gradient (16-bit or not) is added into its slice in the master dtype.
void ParamGroup::add_grads_into(torch::Tensor& flat) const {
  int64_t offset = 0;
  for (const torch::Tensor& p : params_) {
    const int64_t n = p.numel();
    if (p.grad().defined()) flat.narrow(0, offset, n).add_(p.grad().reshape({-1}));
    offset += n;
  }
}

void ParamGroup::release_grads() {
  for (torch::Tensor& p : params_) p.mutable_grad() = torch::Tensor();
}

void ParamGroup::before_use() {
  if (zero_ != 3) return;
  torch::Tensor full = torch::empty({padded_}, shard_.options().dtype(working_dtype_));
  dp_.all_gather(shard_.to(working_dtype_).contiguous(), full);
  point_params_at(full);
}

void ParamGroup::after_use() {
  if (zero_ != 3) return;
  for (torch::Tensor& p : params_)
    p.set_data(torch::empty({0}, shard_.options().dtype(working_dtype_)));
}

void ParamGroup::begin_step(int64_t micro_batches) {
  micro_batches_ = micro_batches;
  backwards_ = 0;
  reduction_started_ = false;
}

void ParamGroup::after_backward() {
  torch::NoGradGuard no_grad;
  ++backwards_;
  take_grads();
  if (!reduces_per_micro_batch() && backwards_ == micro_batches_)
    start_reduction();  // overlaps the backward of the layers before
  after_use();
}

void ParamGroup::take_grads() {
  if (reduces_per_micro_batch())
    reduce_scatter_micro_batch();
  else
    add_grads_into(accum_.defined() ? accum_ : grad_);
  release_grads();
}

void ParamGroup::sum_pending() {
  if (!pending_.defined()) return;
  dp_.wait_async();
  grad_ += pending_;
  pending_ = torch::Tensor();
}

// On NCCL the reduction of this layer's gradients overlaps the backward of the layers
// before it; the previous micro-batch's is waited for and summed first, so one reduced
// copy per group is in flight at most. On MPI it is done at once.
void ParamGroup::reduce_scatter_micro_batch() {
  torch::Tensor flat = flat_grads_of_params();
  sum_pending();
  torch::Tensor reduced = torch::empty_like(grad_);
  dp_.reduce_scatter_async(flat, reduced);
  if (dp_.defers_async())
    pending_ = reduced;
  else
    grad_ += reduced;
}

void ParamGroup::start_reduction() {
  if (reduction_started_ || dp_.size() == 1 || zero_ >= 2) return;
  reduction_started_ = true;
  if (zero_ == 0)
    dp_.all_reduce_async(grad_);
  else
    dp_.reduce_scatter_async(accum_, grad_);
}

void ParamGroup::finish_gradients() {
  torch::NoGradGuard no_grad;
  // Gradients no after_backward has taken (a layer whose backward did not run here).
  bool left_over = false;
  for (const torch::Tensor& p : params_) left_over = left_over || p.grad().defined();
  if (left_over) {
    TORCH_CHECK(!reduction_started_, "gradients of ", specs_.front().name, " arrived after their reduction started");
    take_grads();
  }
  if (reduces_per_micro_batch()) {
    sum_pending();
  } else if (dp_.size() > 1) {
    start_reduction();
    dp_.wait_async();
    if (accum_.defined()) accum_.zero_();
  }
  backwards_ = 0;
  reduction_started_ = false;
}

void ParamGroup::add_grad_square_sum(torch::Tensor& sum, bool count_replicated_here) const {
  if (tied_copy_ || (tp_replicated_ && !count_replicated_here)) return;
  if (zero_ == 0 && dp_.rank() != 0) return;  // every dp rank holds the same sum
  sum += square_sum_on_device(grad_);
}

namespace {

// The AdamW arguments in the master weights' type (float, or double under --fp64).
template <typename T>
kernels::AdamWArgsOf<T> adam_args(const AdamConfig& c, double clip_coef, int64_t step) {
  kernels::AdamWArgsOf<T> args;
  args.lr = static_cast<T>(c.lr);
  args.beta1 = static_cast<T>(c.beta1);
  args.beta2 = static_cast<T>(c.beta2);
  args.eps = static_cast<T>(c.eps);
  args.weight_decay = static_cast<T>(c.weight_decay);  // matrices only, by the decay mask
  args.grad_scale = static_cast<T>(clip_coef);
  args.step = step;
  return args;
}

}  // namespace

void ParamGroup::step(const AdamConfig& c, double clip_coef, int64_t step) {
  torch::NoGradGuard no_grad;
  // ZeRO-0 writes the whole working copy here; ZeRO-1/2 write their shard of it, then gather.
  // At dp = 1 the shard is everything: the working copy is written in place, as for ZeRO-0.
  torch::Tensor working_out;
  if (mixed() && zero_ < 3)
    working_out = gathers_after_step() ? torch::empty({shard_.numel()}, working_.options()) : working_;
  if (master_dtype() == torch::kDouble)
    adamw_step(shard_, m_, v_, grad_, decay_, adam_args<double>(c, clip_coef, step));
  else
    adamw_step(shard_, m_, v_, grad_, decay_, adam_args<float>(c, clip_coef, step), working_out);
  grad_.zero_();
  if (gathers_after_step()) {
    torch::Tensor mine = working_out.defined() ? working_out : shard_.clone();  // MPI forbids aliasing
    dp_.all_gather(mine, working_);
  }
}

std::vector<std::pair<std::string, torch::Tensor>> ParamGroup::state() const {
  const std::string key = specs_.front().name + (tp_replicated_ ? "+replicated" : "+split");
  return {{key + ".param", shard_}, {key + ".exp_avg", m_}, {key + ".exp_avg_sq", v_}};
}

void ParamGroup::load_state(const std::vector<std::pair<std::string, torch::Tensor>>& state) {
  torch::NoGradGuard no_grad;
  const auto mine = this->state();
  TORCH_CHECK(state.size() == mine.size(), "checkpoint state does not match group ", specs_.front().name);
  for (size_t i = 0; i < mine.size(); ++i) {
    TORCH_CHECK(state[i].second.sizes() == mine[i].second.sizes(), "checkpoint tensor ", state[i].first,
                " has another shape than this layout's");
  }
  shard_.copy_(state[0].second);
  m_.copy_(state[1].second);
  v_.copy_(state[2].second);
  refresh_working_copy();
}

std::vector<torch::Tensor> ParamGroup::full_values() {
  torch::Tensor full = flat_;
  if (zero_ == 3 || (zero_ > 0 && mixed())) {  // the master values live in the shards
    full = torch::empty({padded_}, shard_.options());
    dp_.all_gather(shard_.clone(), full);
  }
  full = full.to(torch::kCPU);
  std::vector<torch::Tensor> out;
  int64_t offset = 0;
  for (const auto& shape : local_shapes_) {
    const int64_t n = c10::multiply_integers(shape);
    out.push_back(full.narrow(0, offset, n).view(shape).clone());
    offset += n;
  }
  return out;
}

void GroupSet::before_use() {
  for (ParamGroup* g : own_) g->before_use();
  if (borrowed_) borrowed_->before_use();
}
void GroupSet::after_use() {
  for (ParamGroup* g : own_) g->after_use();
  if (borrowed_) borrowed_->after_use();
}
void GroupSet::after_backward() {
  for (ParamGroup* g : own_) g->after_backward();
  if (borrowed_) borrowed_->after_use();
}

}  // namespace sextant
