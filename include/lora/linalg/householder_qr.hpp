#pragma once
/// \file householder_qr.hpp
/// \brief Householder QR, compiled once in liblorapp for float and double.
///
/// Eigen::HouseholderQR and the application of its Q (blocked Householder reflectors) cost about
/// 4 s of compile time per scalar type in every translation unit that uses them. The headers of
/// LoRA++ that orthonormalize (the randomized and partial SVDs, the factored SVD's fallback,
/// OLoRA, EVA, PEFT's orthogonal init, random orthogonal matrices) use ThinQR instead, so a
/// program pays that once, in the library.

#include <algorithm>
#include <type_traits>

#include "lora/detail/eigen.hpp"

namespace lora::linalg {

/// X = Q R for a rows x cols matrix X: Q orthogonal (rows x rows, kept as p = min(rows, cols)
/// Householder reflectors, never formed unless asked), R upper trapezoidal (p x cols). The same
/// algorithm as Eigen::HouseholderQR (blocked, LAPACK's xGEQRF), so the same results.
///
/// \code
/// lora::linalg::ThinQR<float> qr(X);          // X: any float matrix or expression
/// Eigen::MatrixXf Q = qr.matrixQ();           // rows x p, orthonormal columns
/// Eigen::MatrixXf R = qr.matrixR();           // p x cols, X = Q R
/// \endcode
template <typename Scalar_>
class ThinQR {
 public:
  using Scalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "lora::linalg::ThinQR: compiled for float and double only");

  /// Decomposes \p X (taken by value: pass an rvalue to decompose it in its own storage).
  explicit ThinQR(Matrix X);

  /// Rows of X (and of Q).
  Index rows() const { return m_qr.rows(); }
  /// Columns of X (and of R).
  Index cols() const { return m_qr.cols(); }

  /// R, p x cols, upper trapezoidal (zeros below the diagonal).
  Matrix matrixR() const;
  /// The thin Q, rows x p, orthonormal columns: X = matrixQ() · matrixR().
  Matrix matrixQ() const { return matrixQ(std::min(rows(), cols())); }
  /// The first \p columns columns of the full Q (rows x rows); \p columns > p completes the thin
  /// Q to an orthonormal basis of more of the space. \p columns outside [0, rows] throws
  /// lora::Error.
  Matrix matrixQ(Index columns) const;
  /// \p M := Q · \p M with the full rows x rows Q, applied as reflectors (no Q formed). \p M must
  /// have rows() rows, else lora::Error (and \p M is unchanged).
  void applyQ(Matrix& M) const;

 private:
  Matrix m_qr;      // Eigen's compact form: R on and above the diagonal, reflectors below
  Vector m_coeffs;  // the reflectors' coefficients
};

}  // namespace lora::linalg
