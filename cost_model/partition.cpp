// Linear partition by bisection on the bottleneck weight.
#include "cost_model/partition.h"

#include <algorithm>
#include <cmath>
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

// Uniform interior (every model sextant reads: equal blocks, embedding on the first,
// head on the last): how many items each kind of run can take under `bound` is a
// division, so the check is O(1). Fills first and last runs, spreads the rest evenly.
bool uniform_fill(const std::vector<double>& w, int64_t parts, double bound, std::vector<int64_t>* counts) {
  const int64_t n = static_cast<int64_t>(w.size());
  const double b = w[1], first_extra = w.front() - b, last_extra = w.back() - b;
  if (parts == 1) {
    if (std::accumulate(w.begin(), w.end(), 0.0) > bound) return false;
    if (counts) *counts = {n};
    return true;
  }
  auto cap = [&](double extra) { return static_cast<int64_t>(std::floor((bound - extra) / b + 1e-9)); };
  const int64_t cap_first = std::min(cap(first_extra), n - (parts - 1));
  const int64_t cap_last = std::min(cap(last_extra), n - (parts - 1));
  const int64_t cap_mid = parts > 2 ? cap(0.0) : 0;
  if (cap_first < 1 || cap_last < 1 || (parts > 2 && cap_mid < 1)) return false;
  if (cap_first + cap_last + (parts - 2) * cap_mid < n) return false;
  if (!counts) return true;
  // As even a split as the bound allows: start from n / parts everywhere, then move items
  // from over-full middle runs to the ends while they have room.
  const int64_t mid_runs = parts - 2;
  int64_t first = std::min(cap_first, std::max<int64_t>(1, n / parts));
  int64_t last = std::min(cap_last, std::max<int64_t>(1, n / parts));
  while (mid_runs > 0 && n - first - last > mid_runs * cap_mid) {
    if (first < cap_first) ++first;
    else if (last < cap_last) ++last;
    else return false;
  }
  if (mid_runs == 0) {  // two runs: the ends take everything
    first = std::min(cap_first, n - 1);
    last = n - first;
    if (last > cap_last) return false;
  }
  const int64_t mid_total = n - first - last;
  if (mid_runs > 0 && mid_total < mid_runs) return false;
  counts->assign(static_cast<size_t>(parts), 0);
  (*counts)[0] = first;
  counts->back() = last;
  for (int64_t i = 0; i < mid_runs; ++i)
    (*counts)[static_cast<size_t>(i + 1)] = mid_total / mid_runs + (i < mid_total % mid_runs ? 1 : 0);
  return true;
}

bool interior_uniform(const std::vector<double>& w) {
  if (w.size() < 3) return false;
  for (size_t i = 2; i + 1 < w.size(); ++i)
    if (w[i] != w[1]) return false;
  return w[1] > 0 && w.front() >= w[1] && w.back() >= w[1];
}

}  // namespace

std::vector<int64_t> linear_partition(const std::vector<double>& weights, int64_t parts) {
  const int64_t n = static_cast<int64_t>(weights.size());
  if (parts < 1 || parts > n) throw std::invalid_argument("linear_partition: need 1 <= parts <= items");
  const auto fits = interior_uniform(weights) ? uniform_fill : greedy;
  double lo = *std::max_element(weights.begin(), weights.end());
  double hi = std::accumulate(weights.begin(), weights.end(), 0.0);
  for (int iter = 0; iter < 60 && hi - lo > 1e-9 * hi; ++iter) {
    const double mid = 0.5 * (lo + hi);
    if (fits(weights, parts, mid, nullptr)) hi = mid;
    else lo = mid;
  }
  std::vector<int64_t> best;
  if (!fits(weights, parts, hi, &best)) greedy(weights, parts, hi * (1 + 1e-9), &best);
  return best;
}

}  // namespace sextant
