// Cutting a chain of layers into contiguous pipeline chunks that balance predicted time.
#pragma once

#include <cstdint>
#include <vector>

namespace sextant {

// Splits items (in order) into exactly `parts` contiguous non-empty runs minimising the
// largest run's weight. Returns the item count of each run. Requires 1 <= parts <= items.
// Binary search on the bound with a greedy check: O(items · log(1/precision)).
std::vector<int64_t> linear_partition(const std::vector<double>& weights, int64_t parts);

}  // namespace sextant
