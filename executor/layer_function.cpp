// The autograd function behind run_layer. Its state (the run, the saved inputs, and for
// ZeRO-3 without recompute the layer's own graph) rides in a capsule in the context.
#include "executor/layer_function.h"

namespace sextant {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

struct LayerState : torch::CustomClassHolder {
  LayerRun run;
  std::vector<torch::Tensor> inputs;  // detached; leaves of the inner graph when it is kept
  torch::Tensor output;               // inner graph's output (kept when not recomputing)
};

std::vector<torch::Tensor> detached_leaves(const std::vector<torch::Tensor>& xs) {
  std::vector<torch::Tensor> out;
  for (const torch::Tensor& x : xs)
    out.push_back(x.detach().requires_grad_(x.requires_grad()));
  return out;
}

// Tensor arguments a, b, c: the first `count` are the layer's inputs; the rest pad the
// fixed signature (LibTorch refuses undefined tensor arguments) or anchor the gradient.
struct LayerFunction : torch::autograd::Function<LayerFunction> {
  static torch::Tensor forward(AutogradContext* ctx, const LayerRun* run, int64_t count, const torch::Tensor& a,
                               const torch::Tensor& b, const torch::Tensor& c) {
    auto state = c10::make_intrusive<LayerState>();
    state->run = *run;
    std::vector<torch::Tensor> inputs = {a, b, c};
    inputs.resize(static_cast<size_t>(count));
    if (run->sharded) run->sharded->before_use();
    torch::Tensor out;
    if (run->recompute) {
      state->inputs = detached_leaves(inputs);
      out = run->forward(inputs);  // grad mode is off inside a custom function's forward
    } else {
      torch::AutoGradMode enable(true);
      state->inputs = detached_leaves(inputs);
      state->output = run->forward(state->inputs);
      out = state->output.detach();
    }
    if (run->sharded) run->sharded->after_use();
    ctx->saved_data["state"] = c10::IValue::make_capsule(state);
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    auto state = c10::static_intrusive_pointer_cast<LayerState>(ctx->saved_data["state"].toCapsule());
    const LayerRun& run = state->run;
    if (run.sharded) run.sharded->before_use();
    torch::Tensor output = state->output;
    if (run.recompute) {
      torch::AutoGradMode enable(true);
      state->inputs = detached_leaves(state->inputs);
      output = run.forward(state->inputs);
    }
    torch::autograd::backward({output}, {grads[0]});
    if (run.sharded) run.sharded->after_backward();
    variable_list out = {torch::Tensor(), torch::Tensor()};  // run, count
    for (const torch::Tensor& x : state->inputs) out.push_back(x.requires_grad() ? x.grad() : torch::Tensor());
    while (out.size() < 5) out.push_back(torch::Tensor());
    ctx->saved_data.erase("state");
    return out;
  }
};

}  // namespace

torch::Tensor run_layer(const LayerRun& run, const std::vector<torch::Tensor>& inputs) {
  TORCH_CHECK(!inputs.empty() && inputs.size() <= 3, "run_layer takes one to three inputs");
  // Recompute only matters where autograd would keep activations: not inside a recomputing
  // layer's first forward (the attention core of a fully recomputed block under flash).
  if ((!run.recompute || !torch::GradMode::is_enabled()) && !run.sharded) return run.forward(inputs);
  std::vector<torch::Tensor> args = inputs;
  // A layer fed only by data (the embedding) still needs its backward to run for its
  // parameters: an empty input that requires grad makes the output require grad.
  bool any_grad = false;
  for (const torch::Tensor& x : inputs) any_grad = any_grad || x.requires_grad();
  if (!any_grad) {
    TORCH_CHECK(args.size() < 3, "run_layer: no room for the gradient anchor");
    args.push_back(torch::empty({0}, torch::requires_grad()));
  }
  while (args.size() < 3) args.push_back(torch::empty({0}));
  return LayerFunction::apply(&run, static_cast<int64_t>(inputs.size()), args[0], args[1], args[2]);
}

}  // namespace sextant
