// The statistics of lora/linalg/statistics.hpp (numpy's conventions).
#include "lora/linalg/statistics.hpp"

#include <algorithm>
#include <cmath>

#include "lora/error.hpp"

namespace lora::linalg {

double mean(const std::vector<double>& v) {
  if (v.empty()) detail::fail("mean", "expected at least one value, got none");
  double s = 0;
  for (double x : v) s += x;
  return s / static_cast<double>(v.size());
}

double populationStd(const std::vector<double>& v) {
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size()));
}

double median(std::vector<double> v) {
  if (v.empty()) detail::fail("median", "expected at least one value, got none");
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double leastSquaresSlope(const std::vector<double>& y) {
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
