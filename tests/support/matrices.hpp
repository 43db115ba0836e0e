#pragma once
// Test support: seeded random matrices and tolerances per Scalar.

#include <algorithm>
#include <cstdint>

#include <Eigen/Core>

#include "lora/linalg/householder_qr.hpp"
#include "lora/random.hpp"

namespace lora::test {

template <typename Scalar>
using Mat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
template <typename Scalar>
using Vec = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

/// Gaussian matrix with entries N(0, stddev²), reproducible from the seed.
template <typename Scalar>
Mat<Scalar> gaussian(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed,
                     double stddev = 1.0) {
  Mat<Scalar> m(rows, cols);
  lora::Rng rng(seed);
  lora::fillNormal(m, rng, 0.0, stddev);
  return m;
}

/// A rows x cols matrix with orthonormal columns (rows >= cols), reproducible from the seed: the
/// thin Q of a Gaussian matrix.
inline Mat<double> orthonormal(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  return lora::linalg::ThinQR<double>(gaussian<double>(rows, cols, seed)).matrixQ(cols);
}

/// The accuracy the issue asks of each Scalar: 1e-5 relative for float, 1e-12 for double.
template <typename Scalar>
constexpr double tolerance() {
  return sizeof(Scalar) == sizeof(float) ? 1e-5 : 1e-12;
}

/// ‖got − want‖ / ‖want‖ (Frobenius), with ‖want‖ = 0 read as the smallest positive double.
inline double relErr(const Eigen::MatrixXd& got, const Eigen::MatrixXd& want) {
  return (got - want).norm() / std::max(want.norm(), 1e-300);
}
/// \copydoc relErr(const Eigen::MatrixXd&, const Eigen::MatrixXd&)
template <typename Scalar>
double relErr(const Mat<Scalar>& got, const Mat<Scalar>& want) {
  return double((got - want).norm()) / std::max(double(want.norm()), 1e-300);
}

}  // namespace lora::test
