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

#include <vector>

namespace lora::linalg {

/// Arithmetic mean (an error for no values).
double mean(const std::vector<double>& v);

/// Population standard deviation, sqrt(Σ(x − mean)² / n) (numpy's default, ddof = 0).
double populationStd(const std::vector<double>& v);

/// The median; for an even count the mean of the two middle values.
double median(std::vector<double> v);

/// The least-squares slope of \p y against x = 0, 1, ..., n−1 (at least 2 values).
double leastSquaresSlope(const std::vector<double>& y);

}  // namespace lora::linalg
