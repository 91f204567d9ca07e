// Dynamic loss scaling for fp16 training, with Megatron-LM's rules: start at 2^16;
// after `growth_interval` steps without overflow, double; on an overflow, the step is
// skipped and the hysteresis counter drops by one; when it reaches zero the scale halves
// (never below `min_scale`). The counter is restored only by a growth. bf16 and fp32 do
// not scale (scale 1, nothing skipped).
#pragma once

#include <algorithm>
#include <cstdint>

namespace sextant {

struct LossScalerOptions {
  double initial_scale = 65536.0;
  double growth_factor = 2.0, backoff_factor = 0.5;
  int64_t growth_interval = 1000;
  int hysteresis = 2;
  double min_scale = 1.0;
};

class LossScaler {
 public:
  // `dynamic` false: a constant scale of 1 that never skips a step.
  explicit LossScaler(bool dynamic, LossScalerOptions options = {})
      : dynamic_(dynamic), options_(options), scale_(dynamic ? options.initial_scale : 1.0),
        hysteresis_left_(options.hysteresis) {}

  bool dynamic() const { return dynamic_; }
  double scale() const { return scale_; }

  // After each step's unscale: `found_non_finite` true means the step was skipped.
  void update(bool found_non_finite) {
    if (!dynamic_) return;
    if (found_non_finite) {
      clean_steps_ = 0;
      if (--hysteresis_left_ <= 0) scale_ = std::max(scale_ * options_.backoff_factor, options_.min_scale);
      return;
    }
    if (++clean_steps_ == options_.growth_interval) {
      clean_steps_ = 0;
      hysteresis_left_ = options_.hysteresis;
      scale_ *= options_.growth_factor;
    }
  }

 private:
  bool dynamic_;
  LossScalerOptions options_;
  double scale_;
  int hysteresis_left_;
  int64_t clean_steps_ = 0;
};

}  // namespace sextant
