#pragma once
/// \file statistics.hpp
/// \brief The few statistics of a series the training monitor and the rank manager use, with
/// numpy's conventions: mean, population standard deviation (`np.std`), median (`np.median`: the
/// mean of the two middle values for an even count) and the least-squares slope of y against
/// 0, 1, ..., n−1 (`np.polyfit(range(n), y, 1)[0]`).
///
/// \code
/// double b = lora::linalg::leastSquaresSlope({3.0, 2.5, 2.1});   // per step
/// \endcode

#include <algorithm>
#include <cmath>
#include <vector>

#include "lora/error.hpp"

namespace lora::linalg {

/// Arithmetic mean (an error for no values).
inline double mean(const std::vector<double>& v) {
  if (v.empty()) detail::fail("mean", "expected at least one value, got none");
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

/// Population standard deviation, sqrt(Σ(x − mean)² / n) (numpy's default, ddof = 0).
inline double populationStd(const std::vector<double>& v) {
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

/// The median; for an even count the mean of the two middle values.
inline double median(std::vector<double> v) {
  if (v.empty()) detail::fail("median", "expected at least one value, got none");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/// The least-squares slope of \p y against x = 0, 1, ..., n−1 (at least 2 values).
inline double leastSquaresSlope(const std::vector<double>& y) {
  if (y.size() < 2)
    detail::fail("leastSquaresSlope", "expected at least 2 values, got {}", y.size());
  const double n = static_cast<double>(y.size());
  const double xMean = (n - 1) / 2;
  const double yMean = mean(y);
  double sxy = 0, sxx = 0;
  for (std::size_t i = 0; i < y.size(); ++i) {
    const double dx = static_cast<double>(i) - xMean;
    sxy += dx * (y[i] - yMean);
    sxx += dx * dx;
  }
  return sxy / sxx;
}

}  // namespace lora::linalg
