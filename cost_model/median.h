// The median of a sample (the mean of the middle two for an even count).
#pragma once

#include <algorithm>
#include <vector>

namespace sextant {

inline double median_of(std::vector<double> values) {
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

}  // namespace sextant
