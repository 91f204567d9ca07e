// `sextant plan`: options and the one function that runs it.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <string>

namespace CLI {
class App;
}

namespace sextant {

struct PlanOptions {
  std::string model_path;
  std::string cluster = "dgx-h100-80gb";
  int64_t gpus = 0;
  int64_t global_batch = 0;
  int64_t seq = 0;  // 0: the model's context length
  std::string precision = "bf16";
  std::string attention = "flash";
  // Gradients summed and reduced in fp32: --fp32-grads, --no-fp32-grads, or neither: on for
  // bf16 (as Megatron-LM forces), off for fp16 (Megatron-LM's and the ZeRO paper's default).
  bool fp32_grads_on = false, fp32_grads_off = false;
  std::string memory_model = "megatron";
  std::string fix;
  std::string format = "table";
  int64_t top = 10;
  std::string out;  // plan file, "" for none
  std::string db = "sextant.db";
  std::string profile;  // a measured profile in the store, "" for the cluster description
  bool calibrated = false;  // apply the store's latest calibration
};

void add_plan_command(CLI::App& app, PlanOptions& options);
// Runs the search, stores it, prints the result to `out`. Throws InputError on bad input.
void run_plan(const PlanOptions& options, std::ostream& out);

}  // namespace sextant
