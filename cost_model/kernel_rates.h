// Measured kernel rates of one device, as the cost model uses them: GEMM FLOP/s over an
// (m, n, k) grid per layout, memory-bound bytes/s per op kind by bytes touched, causal
// flash-attention FLOP/s by shape, and the launch floor of a kernel. Built-in tables live in
// profiles/kernels/ (scripts/kernel_table.py writes them from event-timed microbenchmarks);
// a cluster file names one as device.kernels, optionally scaled to another device with
// the derivation stated in the cluster's source.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sextant {

// log(value) interpolated trilinearly in log2(m), log2(n), log2(k) over a full grid,
// clamped at its edges.
class LogGrid {
 public:
  // points: (m, n, k, value > 0). InputError naming `where` and `field` unless they form a
  // full grid.
  static LogGrid from_points(const std::vector<std::array<double, 4>>& points, const std::string& where,
                             const std::string& field);
  double at(double m, double n, double k) const;
  bool empty() const { return log_value_.empty(); }

 private:
  std::vector<double> m_, n_, k_;  // sorted distinct log2 sizes
  std::vector<double> log_value_;  // [i_m][i_n][i_k]
};

// The GEMMs of a linear layer y = x·Wᵀ: forward is NT; both backward GEMMs (dx = dy·W,
// dW = dyᵀ·x) use the NN measurements, at their own shapes.
enum class GemmLayout { forward, backward };
enum class MemoryOp { copy, add, layer_norm, rms_norm, gelu, swiglu, cross_entropy, adamw };
const char* to_string(MemoryOp op);

struct KernelRates {
  std::string name, source;
  double launch_s = 0;       // device time per back-to-back tiny kernel: the floor of any kernel
  double host_s_per_op = 0;  // host time to issue one eager op
  LogGrid gemm_forward, gemm_backward;  // FLOP/s
  // Per op kind: (log bytes, log bytes/s) sorted by bytes, interpolated, clamped.
  std::map<MemoryOp, std::vector<std::pair<double, double>>> memory;
  // The backward of layer_norm and cross_entropy where forward+backward was measured.
  std::map<MemoryOp, std::vector<std::pair<double, double>>> memory_fwd_bwd;
  // Causal flash attention by s·d: (log(s·d), log FLOP/s) with full-square FLOPs 4·b·heads·s²·d
  // forward, and 3.5× those forward + backward (backward 2.5×, FlashAttention-2's counting).
  std::vector<std::pair<double, double>> attention_fwd, attention_fwd_bwd;

  // One GEMM (or `batch` of them), never below the launch floor.
  double gemm_s(GemmLayout layout, double m, double n, double k, double batch = 1.0) const;
  // A memory-bound kernel touching `bytes` (forward), or its backward moving `bwd_bytes`.
  double memory_s(MemoryOp op, double bytes) const;
  double memory_bwd_s(MemoryOp op, double fwd_bytes, double bwd_bytes) const;
  // Causal flash attention over batch_heads sequences of length s and head dim d.
  double attention_fwd_s(double batch_heads, double s, double d) const;
  double attention_bwd_s(double batch_heads, double s, double d) const;
};

// Reads a profiles/kernels/*.json table (see scripts/kernel_table.py). `scale`: the
// factors for gemm, memory and attention rates (derived devices); InputError naming `where`.
KernelRates kernel_rates_from_json(const nlohmann::json& json, const std::string& where,
                                   const std::array<double, 3>& scale = {1.0, 1.0, 1.0});

}  // namespace sextant
