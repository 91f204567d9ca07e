// Linear partition by bisection on the bottleneck weight.
#include "cost_model/partition.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace sextant {
namespace {

// Greedy cut under `bound`, forcing a cut when the items left equal the runs left.
// Returns false if some run would exceed the bound.
bool greedy(const std::vector<double>& w, int64_t parts, double bound, std::vector<int64_t>* counts) {
  const int64_t n = static_cast<int64_t>(w.size());
  std::vector<int64_t> out;
  double current = 0;
  int64_t in_run = 0;
  for (int64_t i = 0; i < n; ++i) {
    // Runs still to open after the current one; each needs at least one item.
    const int64_t runs_after = parts - static_cast<int64_t>(out.size()) - 1;
    const bool must_cut = in_run > 0 && n - i <= runs_after;
    if (in_run > 0 && (current + w[static_cast<size_t>(i)] > bound || must_cut)) {
      out.push_back(in_run);
      current = 0;
      in_run = 0;
      if (static_cast<int64_t>(out.size()) >= parts) return false;
    }
    if (w[static_cast<size_t>(i)] > bound) return false;
    current += w[static_cast<size_t>(i)];
    ++in_run;
  }
  out.push_back(in_run);
  if (static_cast<int64_t>(out.size()) > parts) return false;
  // Fewer runs than asked: split the largest runs until there are exactly `parts`.
  while (static_cast<int64_t>(out.size()) < parts) {
    auto it = std::max_element(out.begin(), out.end());
    if (*it < 2) return false;
    const int64_t half = *it / 2;
    *it -= half;
    out.insert(it + 1, half);
  }
  if (counts) *counts = out;
  return true;
}

}  // namespace

std::vector<int64_t> linear_partition(const std::vector<double>& weights, int64_t parts) {
  const int64_t n = static_cast<int64_t>(weights.size());
  if (parts < 1 || parts > n) throw std::invalid_argument("linear_partition: need 1 <= parts <= items");
  double lo = *std::max_element(weights.begin(), weights.end());
  double hi = std::accumulate(weights.begin(), weights.end(), 0.0);
  std::vector<int64_t> best;
  if (!greedy(weights, parts, hi, &best)) greedy(weights, parts, hi * 2, &best);
  for (int iter = 0; iter < 60 && hi - lo > 1e-9 * hi; ++iter) {
    const double mid = 0.5 * (lo + hi);
    std::vector<int64_t> counts;
    if (greedy(weights, parts, mid, &counts)) {
      hi = mid;
      best = std::move(counts);
    } else {
      lo = mid;
    }
  }
  return best;
}

}  // namespace sextant
