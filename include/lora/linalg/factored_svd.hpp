#pragma once
/// \file factored_svd.hpp
/// \brief Truncated SVD of s·B·A computed from the factors, never forming the out x in product.

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

#include <Eigen/Cholesky>
#include "lora/detail/eigen.hpp"
#include "lora/detail/gemm.hpp"

#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/detail/svd_kernels.hpp"
#include "lora/linalg/householder_qr.hpp"

#include "lora/error.hpp"

namespace lora::linalg {

/// \brief SVD of the low-rank product s·B·A, with B (out x r) and A (r x in), from B and A alone.
///
/// With thin QR factorizations B = Q_B R_B and A^T = Q_A R_A, s·B·A = Q_B (s R_B R_A^T) Q_A^T,
/// so the SVD of the small core s R_B R_A^T = U_c Σ V_c^T gives s·B·A = (Q_B U_c) Σ (Q_A V_c)^T.
/// Cost O((out + in)·r² + r³) instead of O(out·in·min(out, in)) for a dense SVD of the product.
///
/// The QRs are CholeskyQR2 (Fukaya, Nakatsukasa, Yanagisawa, Yamamoto, "CholeskyQR2: a simple and
/// communication-avoiding algorithm", ScalA 2014): R from the Cholesky factor of the Gram matrix
/// X^T X, Q = X R^{-1}, done twice; all matrix products, as orthogonal as Householder's QR while
/// the factor's condition number is well below 1/√ε. When the Cholesky factorization fails, the
/// factor has more columns than rows, or the condition estimate exceeds conditionLimit(), that
/// factor falls back to Householder QR (qrMethodB() / qrMethodA() say which ran).
/// Results that will be stored in a lower precision can trade orthogonality for speed:
/// setOrthogonalityTolerance() lets a well-conditioned factor take one Cholesky QR pass instead
/// of two (half the products with the tall factor).
/// B and A are normalized by their largest entry first, so tiny or huge scales neither underflow
/// nor overflow inside the core. At most k = min(r, out, in) singular values exist; they are sorted
/// in decreasing order, and U (out x k) and V (in x k) have orthonormal columns even where σ = 0
/// (for example a fresh adapter with B = 0).
///
/// \code
/// lora::linalg::FactoredSVD<float> svd(B, A, 2.0f);    // SVD of 2·B·A
/// auto sigma = svd.singularValues();                    // k values, decreasing
/// Eigen::MatrixXf U = svd.matrixU(), V = svd.matrixV();
/// \endcode
template <typename Scalar_>
class FactoredSVD {
 public:
  using Scalar = Scalar_;
  using RealScalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  static_assert(std::is_floating_point_v<Scalar>,
                "lora::linalg::FactoredSVD: Scalar must be a real floating-point type");

  /// How the QR of a factor was computed: two Cholesky QR passes, one (only under an
  /// orthogonality tolerance, see setOrthogonalityTolerance()), or Householder QR.
  enum class QrMethod { CholeskyQR2, CholeskyQR, Householder };

  /// The largest estimated condition number of a (normalized) factor for which CholeskyQR2 runs:
  /// 0.01/√ε (about 29 for float, 6.7e5 for double); above it, Householder QR.
  static RealScalar conditionLimit() {
    return RealScalar(0.01) / std::sqrt(Eigen::NumTraits<RealScalar>::epsilon());
  }

  FactoredSVD() = default;

  /// Accepts a loss of orthogonality up to \p tolerance in U and V (‖UᵀU − I‖) in exchange for
  /// less work: a factor whose estimated ε·κ² is at least 100x below \p tolerance gets one
  /// Cholesky QR pass (Q = X R⁻¹ applied once, at the end, to the singular vectors of the core)
  /// instead of two; the product U Σ Vᵀ stays s·B·A to working precision either way. 0, the
  /// default: U and V as orthonormal as Householder's. Meant for results stored in a lower
  /// precision: `lora resize` writing float32 factors passes 2⁻²⁴. Takes effect at the next
  /// compute(); a negative or NaN tolerance throws lora::Error (and changes nothing).
  FactoredSVD& setOrthogonalityTolerance(RealScalar tolerance) {
    if (!(tolerance >= RealScalar(0)))
      detail::fail("FactoredSVD::setOrthogonalityTolerance", "expected a tolerance >= 0, got {}",
                   tolerance);
    m_tolerance = tolerance;
    return *this;
  }
  /// The tolerance set by setOrthogonalityTolerance() (0 by default).
  RealScalar orthogonalityTolerance() const { return m_tolerance; }

  /// Computes the SVD of \p scale · \p B · \p A. \p options: Eigen::ComputeThinU and/or
  /// Eigen::ComputeThinV (both by default); 0 computes singular values only.
  template <typename DerivedB, typename DerivedA>
  FactoredSVD(const Eigen::MatrixBase<DerivedB>& B, const Eigen::MatrixBase<DerivedA>& A,
              Scalar scale = Scalar(1),
              unsigned options = Eigen::ComputeThinU | Eigen::ComputeThinV) {
    compute(B, A, scale, options);
  }

  /// \copydoc FactoredSVD(const Eigen::MatrixBase<DerivedB>&, const Eigen::MatrixBase<DerivedA>&,
  /// Scalar, unsigned)
  template <typename DerivedB, typename DerivedA>
  FactoredSVD& compute(const Eigen::MatrixBase<DerivedB>& B, const Eigen::MatrixBase<DerivedA>& A,
                       Scalar scale = Scalar(1),
                       unsigned options = Eigen::ComputeThinU | Eigen::ComputeThinV) {
    // Column-major storage is read in place; other layouts and expressions are evaluated once.
    return computeFromFactors(B, A, scale, options);
  }

  /// The k = min(r, out, in) singular values, decreasing, all >= 0.
  const Vector& singularValues() const {
    requireComputed("FactoredSVD::singularValues");
    return m_singularValues;
  }
  /// Left singular vectors, out x k, orthonormal columns (to orthogonalityTolerance() when it is
  /// set; needs Eigen::ComputeThinU).
  const Matrix& matrixU() const {
    requireComputed("FactoredSVD::matrixU");
    if (!m_computedU)
      detail::fail("FactoredSVD::matrixU",
                   "expected a decomposition computed with Eigen::ComputeThinU, got one without U");
    return m_matrixU;
  }
  /// Right singular vectors, in x k, orthonormal columns (needs Eigen::ComputeThinV).
  const Matrix& matrixV() const {
    requireComputed("FactoredSVD::matrixV");
    if (!m_computedV)
      detail::fail("FactoredSVD::matrixV",
                   "expected a decomposition computed with Eigen::ComputeThinV, got one without V");
    return m_matrixV;
  }

  /// r x k matrix C_U with U = B · C_U: the left singular vectors in the coordinates of B's
  /// columns (exact when B has full column rank, least squares otherwise). Lets an optimizer carry
  /// per-coordinate state into the singular basis. Needs singular vectors.
  Matrix coordinatesU() const {
    return coordinates("FactoredSVD::coordinatesU", m_rB, m_coreU, m_normB);
  }
  /// r x k matrix C_V with V = A^T · C_V (same conditions as coordinatesU()).
  Matrix coordinatesV() const {
    return coordinates("FactoredSVD::coordinatesV", m_rA, m_coreV, m_normA);
  }

  /// Number of singular values, min(r, out, in).
  Index size() const { return m_singularValues.size(); }
  /// The factors' inner dimension r.
  Index factorRank() const { return m_rB.cols(); }
  /// How the QR of B (of A^T) was computed: CholeskyQR2, CholeskyQR (one pass, under an
  /// orthogonality tolerance), or Householder QR as the fallback.
  QrMethod qrMethodB() const {
    requireComputed("FactoredSVD::qrMethodB");
    return m_methodB;
  }
  /// \copydoc qrMethodB()
  QrMethod qrMethodA() const {
    requireComputed("FactoredSVD::qrMethodA");
    return m_methodA;
  }
  /// Eigen::Success, or Eigen::NoConvergence if the core SVD did not converge.
  Eigen::ComputationInfo info() const {
    requireComputed("FactoredSVD::info");
    return m_info;
  }

 private:
  using ConstRef = Eigen::Ref<const Matrix>;
  // The whole computation, compiled once per Scalar (src/linalg/svd_instances.cpp).
  FactoredSVD& computeFromFactors(const ConstRef& B, const ConstRef& A, Scalar scale,
                                  unsigned options);

  void requireComputed(const char* where) const {
    if (!m_initialized)
      detail::fail(where, "expected a computed decomposition, got one never computed");
  }
  Matrix coordinates(const char* where, const Matrix& R, const Matrix& coreVectors,
                     RealScalar norm) const;
  // One factor's orthonormal basis Q = Q1 · right (rows x p), kept as its two parts: `right` is
  // empty when Q1 already is orthonormal (Householder) and R2^{-1} after CholeskyQR2. After one
  // Cholesky QR pass Q1 is the factor X itself (`source`, read in place) and `right` R1^{-1}.
  // Q itself is never formed: U = Q1 (right U_c) is one product with the tall matrix.
  // `scaled` holds the factor divided by its largest entry when it needed scaling.
  struct Basis {
    Matrix Q1, right, scaled;
    std::optional<ConstRef> source;
    bool sourceTransposed = false;
  };
  // A factor X = M (B) or X = M^T (A^T), rows x r; the orientation is chosen at run time, so the
  // QRs are compiled once per Scalar.
  struct Factor {
    const ConstRef& M;
    bool transposed = false;
    Index rows() const { return transposed ? M.cols() : M.rows(); }
    Index cols() const { return transposed ? M.rows() : M.cols(); }
  };
  // Thin QR of X (rows x r, B or A^T): the basis above and R (p x r) upper triangular, p =
  // min(rows, r); CholeskyQR2 when it is safe, else Householder.
  static QrMethod thinQR(const Factor& X, Basis& basis, Matrix& R, RealScalar tolerance);
  static bool choleskyQR(const Factor& X, Basis& basis, Matrix& R, RealScalar tolerance,
                         QrMethod& method);
  // basis.Q1 · (basis.right · C), the orthonormal basis times the p x k matrix C (k <= p),
  // computed in basis.Q1's storage, block of rows by block of rows, and returned.
  static Matrix applyBasis(Basis& basis, const Matrix& C);

  Matrix m_rB, m_rA, m_coreU, m_coreV, m_matrixU, m_matrixV;
  QrMethod m_methodB = QrMethod::CholeskyQR2, m_methodA = QrMethod::CholeskyQR2;
  Vector m_singularValues;
  RealScalar m_normB = 1, m_normA = 1;
  RealScalar m_tolerance = 0;
  Eigen::ComputationInfo m_info = Eigen::Success;
  bool m_computedU = false, m_computedV = false, m_initialized = false;
};

template <typename Scalar_>
FactoredSVD<Scalar_>& FactoredSVD<Scalar_>::computeFromFactors(const ConstRef& B, const ConstRef& A,
                                                               Scalar scale, unsigned options) {
  constexpr const char* where = "FactoredSVD::compute";
  if (B.cols() != A.rows())
    detail::fail(where,
                 "expected B (out x r) and A (r x in) with the same r, got B {}x{} and A {}x{}",
                 B.rows(), B.cols(), A.rows(), A.cols());
  if (B.cols() < 1 || B.rows() < 1 || A.cols() < 1)
    detail::fail(where, "expected non-empty factors, got B {}x{} and A {}x{}", B.rows(), B.cols(),
                 A.rows(), A.cols());
  if (!std::isfinite(scale)) detail::fail(where, "expected a finite scale, got {}", scale);
  // One pass per factor: the largest magnitude, NaN or Inf when there is one.
  const RealScalar maxB = B.cwiseAbs().template maxCoeff<Eigen::PropagateNaN>();
  if (!std::isfinite(maxB)) detail::fail(where, "expected finite entries in B, got NaN or Inf");
  const RealScalar maxA = A.cwiseAbs().template maxCoeff<Eigen::PropagateNaN>();
  if (!std::isfinite(maxA)) detail::fail(where, "expected finite entries in A, got NaN or Inf");

  const Index out = B.rows();
  const Index in = A.cols();
  const Index r = B.cols();
  const Index pB = std::min(out, r);
  const Index pA = std::min(in, r);
  const Index k = std::min(pB, pA);

  // Factors far from 1 in magnitude are scaled to a largest entry of 1 (a copy), so that the Gram
  // matrices neither overflow nor underflow; others are read in place.
  const auto needsScaling = [](RealScalar m) {
    const RealScalar limit =
        std::ldexp(RealScalar(1), std::numeric_limits<RealScalar>::max_exponent / 4);
    return m > RealScalar(0) && (m > limit || m < RealScalar(1) / limit);
  };
  const RealScalar normB = needsScaling(maxB) ? maxB : RealScalar(1);
  const RealScalar normA = needsScaling(maxA) ? maxA : RealScalar(1);
  Basis basisB, basisA;
  basisB.Q1.swap(m_matrixU);  // a decomposition computed again reuses its storage
  basisA.Q1.swap(m_matrixV);
  Matrix rB, rA;  // pB x r, pA x r
  QrMethod methodB = QrMethod::Householder, methodA = QrMethod::Householder;
  const RealScalar tolerance = m_tolerance;
  const auto qrB = [&] {
    if (normB != RealScalar(1)) {
      basisB.scaled = B / normB;
      const ConstRef ref(basisB.scaled);
      methodB = thinQR({ref, false}, basisB, rB, tolerance);
    } else {
      methodB = thinQR({B, false}, basisB, rB, tolerance);
    }
  };
  const auto qrA = [&] {
    if (normA != RealScalar(1)) {
      basisA.scaled = A / normA;
      const ConstRef ref(basisA.scaled);
      methodA = thinQR({ref, true}, basisA, rA, tolerance);
    } else {
      methodA = thinQR({A, true}, basisA, rA, tolerance);
    }
  };
  // B and A are independent: with two or three threads each factor gets one (a GEMM on 4096 x 64
  // splits poorly in two), with more each gets all of them in turn.
  const bool vectors = (options & (Eigen::ComputeThinU | Eigen::ComputeThinV)) != 0;
  const bool pair =
      lora::numThreads() >= 2 && lora::numThreads() < 4 && (out + in) * r * r >= (Index{1} << 20);
  detail::runPair(pair, qrB, qrA);

  const Matrix core = detail::product(rB, rA.transpose());  // pB x pA
  const auto coreSvd = denseSVD(core, vectors ? (Eigen::ComputeThinU | Eigen::ComputeThinV) : 0u);

  // Multiply the scales one at a time, smallest magnitude first, so that an intermediate
  // product does not overflow when the final one would not.
  Vector sigma = coreSvd.S.head(k);
  const RealScalar absScale = std::abs(scale);
  sigma *= normB;
  sigma *= normA;
  sigma *= absScale;

  const bool wantU = (options & Eigen::ComputeThinU) != 0;
  const bool wantV = (options & Eigen::ComputeThinV) != 0;
  Matrix coreU = vectors ? Matrix(coreSvd.U.leftCols(k)) : Matrix();
  Matrix coreV = vectors ? Matrix(coreSvd.V.leftCols(k)) : Matrix();
  if (scale < Scalar(0)) coreU = -coreU;
  Matrix U, V;
  detail::runPair(
      pair, [&] { U = wantU ? applyBasis(basisB, coreU) : Matrix(); },  // out x k
      [&] { V = wantV ? applyBasis(basisA, coreV) : Matrix(); });       // in x k

  // Nothing below throws: the decomposition changes all at once.
  m_normB = normB;
  m_normA = normA;
  m_methodB = methodB;
  m_methodA = methodA;
  m_rB.swap(rB);
  m_rA.swap(rA);
  m_info = coreSvd.info;
  m_singularValues.swap(sigma);
  m_computedU = wantU;
  m_computedV = wantV;
  m_coreU.swap(coreU);
  m_coreV.swap(coreV);
  m_matrixU.swap(U);
  m_matrixV.swap(V);
  m_initialized = true;
  return *this;
}

template <typename Scalar_>
bool FactoredSVD<Scalar_>::choleskyQR(const Factor& X, Basis& basis, Matrix& R,
                                      RealScalar tolerance, QrMethod& method) {
  // Pass 1: X^T X = R1^T R1, Q1 = X R1^{-1}. Its loss of orthogonality, about ε·κ(X)², is what the
  // condition limit bounds; pass 2, Q1^T Q1 = R2^T R2, makes Q1 R2^{-1} orthonormal to about ε.
  // The triangular inverses are r x r; every product with X or Q1 is a plain GEMM (threaded).
  // Under a tolerance that ε·κ² (estimated) stays 100x below, pass 1 is all: Q1 is not formed,
  // X R1^{-1} is applied once to the core's singular vectors (Yamamoto, Nakatsukasa, Yanagisawa,
  // Fukaya, "Roundoff error analysis of the CholeskyQR2 algorithm", ETNA 44, 2015: the loss of
  // orthogonality of one pass is O(ε·κ²)).
  const Index r = X.cols();
  Matrix G;
  if (X.transposed)
    detail::gram(X.M.transpose(), G);
  else
    detail::gram(X.M, G);
  const Eigen::LLT<Matrix, Eigen::Upper> llt1(G);
  if (llt1.info() != Eigen::Success) return false;
  // rcond(G) estimates 1/κ(X)², in O(r²) (LAPACK's 1-norm estimator).
  const RealScalar limit = conditionLimit();
  if (!(llt1.rcond() > RealScalar(1) / (limit * limit))) return false;
  Matrix inverse = Matrix::Identity(r, r);
  llt1.matrixU().solveInPlace(inverse);  // R1^{-1}
  const RealScalar estimate = Eigen::NumTraits<RealScalar>::epsilon() / llt1.rcond();
  if (tolerance > RealScalar(0) && RealScalar(100) * estimate <= tolerance) {
    if (!inverse.allFinite()) return false;
    basis.Q1.resize(0, 0);
    basis.source.emplace(X.M);
    basis.sourceTransposed = X.transposed;
    basis.right.swap(inverse);
    R = llt1.matrixU();
    method = QrMethod::CholeskyQR;
    return R.allFinite();
  }
  if (X.transposed)
    detail::gemm(basis.Q1, X.M.transpose(), inverse);
  else
    detail::gemm(basis.Q1, X.M, inverse);
  detail::gram(basis.Q1, G);
  const Eigen::LLT<Matrix, Eigen::Upper> llt2(G);
  if (llt2.info() != Eigen::Success) return false;
  basis.right = Matrix::Identity(r, r);
  llt2.matrixU().solveInPlace(basis.right);  // R2^{-1}
  const Matrix R1 = llt1.matrixU(), R2 = llt2.matrixU();
  detail::gemm(R, R2, R1);
  method = QrMethod::CholeskyQR2;
  return basis.Q1.allFinite() && basis.right.allFinite() && R.allFinite();
}

template <typename Scalar_>
typename FactoredSVD<Scalar_>::QrMethod FactoredSVD<Scalar_>::thinQR(const Factor& X, Basis& basis,
                                                                     Matrix& R,
                                                                     RealScalar tolerance) {
  const Index rows = X.rows(), r = X.cols(), p = std::min(rows, r);
  QrMethod method = QrMethod::CholeskyQR2;
  if (r <= rows && choleskyQR(X, basis, R, tolerance, method)) return method;
  basis.source.reset();
  const ThinQR<Scalar> qr(X.transposed ? Matrix(X.M.transpose()) : Matrix(X.M));
  R = qr.matrixR();
  basis.Q1 = qr.matrixQ(p);
  basis.right.resize(0, 0);
  return QrMethod::Householder;
}

template <typename Scalar_>
typename FactoredSVD<Scalar_>::Matrix FactoredSVD<Scalar_>::applyBasis(Basis& basis,
                                                                       const Matrix& C) {
  const Matrix M =
      basis.right.size() == 0 ? C : Matrix(basis.right.template triangularView<Eigen::Upper>() * C);
  constexpr Index kBlock = 256;
  const auto threadsFor = [](Index blocks) {
    return static_cast<int>(std::min<Index>(lora::numThreads(), blocks));
  };
  const Index k = M.cols();
  if (basis.source) {  // one Cholesky QR pass: X (R1^{-1} C), X read in place
    const ConstRef& X = *basis.source;
    const bool transposed = basis.sourceTransposed;
    const Index rows = transposed ? X.cols() : X.rows();
    Matrix out(rows, k);
    const Index blocks = (rows + kBlock - 1) / kBlock;
    const int threads = threadsFor(blocks);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
    for (Index b = 0; b < blocks; ++b) {
      const Index begin = b * kBlock, n = std::min(kBlock, rows - begin);
      if (transposed)
        detail::gemm(out.middleRows(begin, n), X.middleCols(begin, n).transpose(), M);
      else
        detail::gemm(out.middleRows(begin, n), X.middleRows(begin, n), M);
    }
    return out;
  }
  Matrix& Q = basis.Q1;
  const Index rows = Q.rows();
  // Each output row depends on the same row of Q only: blocks of rows are replaced in place (no
  // second tall matrix), on several threads.
  const Index blocks = (rows + kBlock - 1) / kBlock;
  const int threads = threadsFor(blocks);
#pragma omp parallel for num_threads(threads) schedule(static) if (threads > 1)
  for (Index b = 0; b < blocks; ++b) {
    const Index begin = b * kBlock, n = std::min(kBlock, rows - begin);
    Matrix block(n, k);
    detail::gemm(block, Q.middleRows(begin, n), M);
    Q.middleRows(begin, n).leftCols(k) = block;
  }
  if (k < Q.cols()) Q.conservativeResize(rows, k);
  return std::move(Q);
}

template <typename Scalar_>
typename FactoredSVD<Scalar_>::Matrix FactoredSVD<Scalar_>::coordinates(const char* where,
                                                                        const Matrix& R,
                                                                        const Matrix& coreVectors,
                                                                        RealScalar norm) const {
  requireComputed(where);
  if (coreVectors.size() == 0)
    detail::fail(where, "expected a decomposition computed with singular vectors, got values only");
  // The minimum-norm least-squares solution of R c = coreVectors (R is p x r), through the
  // pseudo-inverse of R from its SVD (compiled in liblorapp): singular values at or below
  // max(p, r)·ε·σ_1 count as 0 (numpy's and LAPACK xGELSD's default cut).
  const auto svd = denseSVD(R, Eigen::ComputeThinU | Eigen::ComputeThinV);
  const RealScalar cut = svd.S.size() == 0 ? RealScalar(0)
                                           : svd.S(0) * Eigen::NumTraits<RealScalar>::epsilon() *
                                                 RealScalar(std::max(R.rows(), R.cols()));
  const Vector inverse =
      svd.S.unaryExpr([cut](RealScalar s) { return s > cut ? RealScalar(1) / s : RealScalar(0); });
  const Matrix scaled = inverse.asDiagonal() * detail::product(svd.U.transpose(), coreVectors);
  Matrix c = detail::product(svd.V, scaled);
  c /= norm;
  return c;
}

// Compiled once in liblorapp (src/linalg/svd_instances.cpp). Define LORA_NO_EXTERN_TEMPLATES to
// compile them in the translation unit instead, with its own flags.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template class FactoredSVD<float>;
extern template class FactoredSVD<double>;
#endif

}  // namespace lora::linalg
