#pragma once
/// \file partial_svd.hpp
/// \brief The k largest singular triplets of a matrix, to a stated residual tolerance.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <Spectra/SymEigsSolver.h>
#include "lora/detail/eigen.hpp"
#include "lora/detail/gemm.hpp"

#include "lora/error.hpp"
#include "lora/linalg/dense_svd.hpp"
#include "lora/linalg/detail/svd_kernels.hpp"
#include "lora/linalg/symmetric_eigen.hpp"
#include "lora/random.hpp"

namespace lora::linalg {

/// How PartialSVD computes the triplets.
enum class PartialSVDMethod {
  Auto,         ///< Dense when min(m, n) <= max(128, 6k), else Lanczos
  Dense,        ///< Eigen's BDCSVD of the whole matrix (exact to rounding, O(m·n·min(m, n)))
  BlockKrylov,  ///< restarted block Krylov (block Lanczos) with Rayleigh–Ritz, float/double GEMMs
  Lanczos,      ///< Spectra's SymEigsSolver on W^T W (or W W^T), certified by BlockKrylov
};

/// Options of PartialSVD. Every field has a working default.
struct PartialSVDOptions {
  /// τ >= 0: every returned triplet meets max(‖W v_i − σ_i u_i‖, ‖W^T u_i − σ_i v_i‖) <= τ·σ_1.
  /// 0 picks PartialSVD<Scalar>::defaultTolerance() (1e-5 for float, 1e-10 for double).
  double tolerance = 0.0;
  /// Most Krylov blocks (BlockKrylov) or Lanczos restarts (Lanczos) before giving up with
  /// info() == Eigen::NoConvergence; 0 picks 300.
  Eigen::Index maxIterations = 0;
  /// Block size p of BlockKrylov; 0 picks k + max(8, k/2), capped at min(m, n).
  Eigen::Index blockSize = 0;
  PartialSVDMethod method = PartialSVDMethod::Auto;
  std::uint64_t seed = 0;  ///< seeds the random starting block
};

/// \brief The k largest singular triplets (u_i, σ_i, v_i) of W (m x n), each certified to a
/// residual tolerance: max(‖W v_i − σ_i u_i‖, ‖W^T u_i − σ_i v_i‖) <= τ·σ_1.
///
/// The residuals are measured on the returned vectors with two extra products (W V and W^T U),
/// not estimated, and residual() reports the largest one. With a gap δ_i between σ_i and the
/// rest of the spectrum, the angle between the computed and the exact singular vectors is at most
/// about τ·σ_1/δ_i (Wedin's theorem), and each σ_i is within √2·τ·σ_1 of a singular value of W.
///
/// Methods (PartialSVDMethod), all on the Gram operator of the smaller side (W^T W when m >= n):
/// - Dense: Eigen's BDCSVD of all of W; Auto's choice when min(m, n) <= max(128, 6k).
/// - Lanczos (Auto's choice otherwise): Spectra's SymEigsSolver, ARPACK's implicitly restarted
///   Lanczos (Spectra 1.0, Qiu), with ncv = max(2k + 1, k + 16); each step is one product with W
///   and one with W^T (GEMV). Its vectors then start the block method, which certifies them
///   (usually with one block) or polishes them.
/// - BlockKrylov: restarted block Lanczos with full reorthogonalization (Golub & Underwood 1977;
///   Musco & Musco, "Randomized block Krylov methods", NeurIPS 2015): blocks of p columns (GEMMs),
///   a basis of up to 10 blocks, thick restart keeping k + p Ritz vectors, Rayleigh–Ritz through
///   the projected Gram matrix held in double. Measured on 4096 x 4096 float (docs/performance.md)
///   it needs 2–4x more products than Lanczos; a GEMM with 16–24 columns costs about 4–5 GEMVs
///   with Eigen here, so Lanczos is as fast or faster and is the default.
/// k = min(m, n) and rank-deficient W are handled: the basis is completed with random directions
/// once W's range is exhausted, and zero singular values come with orthonormal singular vectors.
///
/// Non-convergence is a status, not an exception: info() is Eigen::NoConvergence when the
/// tolerance was not met within maxIterations (or is below what the Scalar's rounding allows), and
/// the best triplets found are returned with their residual(). Bad input (k out of range, a
/// non-finite W, a negative tolerance) throws lora::Error and leaves the object unchanged.
///
/// \code
/// lora::linalg::PartialSVD<float> svd(W, 16);          // top 16 triplets of W, τ = 1e-5
/// if (svd.info() == Eigen::Success) use(svd.matrixU(), svd.singularValues(), svd.matrixV());
/// fmt::print("residual {:.1e} after {} blocks\n", svd.residual(), svd.iterations());
/// \endcode
template <typename Scalar_>
class PartialSVD {
 public:
  using Scalar = Scalar_;
  using RealScalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  static_assert(std::is_floating_point_v<Scalar>,
                "lora::linalg::PartialSVD: Scalar must be a real floating-point type");

  /// The tolerance used when PartialSVDOptions::tolerance is 0: 1e-5 for float, 1e-10 for double
  /// (about 100 and 5e5 units of rounding of the Scalar, which the residual of an exact SVD rounded
  /// to Scalar already reaches on large matrices).
  static constexpr double defaultTolerance() {
    return std::is_same_v<Scalar, float> ? 1e-5 : 1e-10;
  }

  PartialSVD() = default;

  /// Computes the top \p k triplets of \p W (see compute()).
  template <typename Derived>
  PartialSVD(const Eigen::MatrixBase<Derived>& W, Index k, const PartialSVDOptions& options = {}) {
    compute(W, k, options);
  }

  /// Computes the top \p k (1 <= k <= min(m, n)) singular triplets of \p W. A Matrix, Map or
  /// Block of this Scalar (row-major and strided included) is read in place, never copied except
  /// by the Dense method; another expression is evaluated once into a temporary.
  template <typename Derived>
  PartialSVD& compute(const Eigen::MatrixBase<Derived>& W, Index k,
                      const PartialSVDOptions& options = {}) {
    static_assert(std::is_same_v<typename Derived::Scalar, Scalar>,
                  "lora::linalg::PartialSVD: the matrix Scalar must match PartialSVD's Scalar");
    detail::withStorage(
        W, [&](const View& S, bool transposed) { computeStored(S, transposed, k, options); });
    return *this;
  }

  /// The k singular values, decreasing, >= 0.
  const Vector& singularValues() const { return require("PartialSVD::singularValues").S; }
  /// Left singular vectors, m x k, orthonormal columns.
  const Matrix& matrixU() const { return require("PartialSVD::matrixU").U; }
  /// Right singular vectors, n x k, orthonormal columns.
  const Matrix& matrixV() const { return require("PartialSVD::matrixV").V; }
  /// Eigen::Success when every triplet met the tolerance, else Eigen::NoConvergence.
  Eigen::ComputationInfo info() const {
    const Result& r = require("PartialSVD::info");
    return r.residual <= r.tolerance ? Eigen::Success : Eigen::NoConvergence;
  }
  /// The achieved max_i max(‖W v_i − σ_i u_i‖, ‖W^T u_i − σ_i v_i‖) / σ_1 (0 when W = 0),
  /// measured on the returned vectors.
  double residual() const { return require("PartialSVD::residual").residual; }
  /// The tolerance τ that was asked for (after defaults).
  double tolerance() const { return require("PartialSVD::tolerance").tolerance; }
  /// Krylov blocks added (BlockKrylov), Lanczos restarts plus polishing blocks (Lanczos), or 0
  /// (Dense).
  Index iterations() const { return require("PartialSVD::iterations").iterations; }
  /// Products of W or W^T with one vector, counting each column of a block product and the
  /// residual check (0 for Dense, which factors W as a whole).
  Index matrixProducts() const { return require("PartialSVD::matrixProducts").products; }
  /// The method that ran (Auto resolved; Lanczos becomes BlockKrylov when k >= min(m, n) − 1).
  PartialSVDMethod method() const { return require("PartialSVD::method").method; }

 private:
  using View = detail::StridedView<Scalar>;
  // The tall matrix the methods run on: W or W^T, whichever has rows >= cols.
  using Tall = detail::OrientedView<Scalar>;

  // W = S (transposed == false) or S^T. Everything below is compiled once per Scalar.
  void computeStored(const View& S, bool transposed, Index k, const PartialSVDOptions& options);

  struct Result {
    Matrix U, V;
    Vector S;
    double residual = 0.0;
    double tolerance = 0.0;
    Index iterations = 0;
    Index products = 0;
    PartialSVDMethod method = PartialSVDMethod::Dense;
  };
  struct Tuning {
    Index k = 1;
    Scalar tolerance = 0;
    Index maxIterations = 300;
    Index blockSize = 8;
    Scalar scale = 1;  // 1 / max|W|: keeps the Krylov blocks near unit size
  };

  const Result& require(const char* who) const {
    if (!m_initialized)
      detail::fail(who, "expected a computed decomposition (call compute() first), got none");
    return m_result;
  }

  // Explicit residual of the triplets of the tall matrix A, relative to S(0).
  static double measure(const Tall& A, const Matrix& U, const Vector& S, const Matrix& V,
                        Index& products) {
    Matrix R1(A.rows(), V.cols()), R2(A.cols(), U.cols());
    A.times(R1, V);
    R1 -= U * S.asDiagonal();
    A.timesTransposed(R2, U);
    R2 -= V * S.asDiagonal();
    products += 2 * V.cols();
    if (S(0) == Scalar(0)) return 0.0;
    const Scalar worst = std::max(R1.colwise().norm().maxCoeff(), R2.colwise().norm().maxCoeff());
    return static_cast<double>(worst) / static_cast<double>(S(0));
  }

  // A is tall (rows >= cols): the right-hand space has the smaller dimension.
  static void run(const Tall& A, const Tuning& t, Rng& rng, Result& r) {
    switch (r.method) {
      case PartialSVDMethod::Dense:
        dense(A, t, r);
        break;
      case PartialSVDMethod::Lanczos:
        lanczos(A, t, rng, r);
        break;
      default:
        blockKrylov(A, t, rng, nullptr, r);
        break;
    }
  }

  static void dense(const Tall& A, const Tuning& t, Result& r) {
    const Matrix copy = A.dense();
    const auto svd = denseSVD(copy);
    r.U = svd.U.leftCols(t.k);
    r.V = svd.V.leftCols(t.k);
    r.S = svd.S.head(t.k);
    r.iterations = 0;
    r.products = 0;
    Index ignored = 0;
    r.residual = measure(A, r.U, r.S, r.V, ignored);
  }

  // y = c² A^T A x, the Gram operator Spectra iterates on.
  struct GramOp {
    using Scalar = Scalar_;
    const Tall& a;
    Scalar c2;
    mutable Vector tmp;
    Index rows() const { return a.cols(); }
    Index cols() const { return a.cols(); }
    void perform_op(const Scalar* xIn, Scalar* yOut) const {
      const Eigen::Map<const Vector> x(xIn, a.cols());
      Eigen::Map<Vector> y(yOut, a.cols());
      a.times(tmp, x);
      a.timesTransposed(y, tmp);
      y *= c2;
    }
  };

  static void lanczos(const Tall& A, const Tuning& t, Rng& rng, Result& r) {
    const Index n = A.cols();
    GramOp op{A, t.scale * t.scale, Vector(A.rows())};
    const Index ncv = std::min(n, std::max(2 * t.k + 1, t.k + 16));
    Spectra::SymEigsSolver<GramOp> eigs(op, t.k, ncv);
    Vector start(n);
    fillNormal(start, rng, 0.0, 1.0);
    eigs.init(start.data());
    // Spectra's test is ‖G x − θ x‖ < tol·|θ| on G = c² W^T W; with θ_i = (cσ_i)² this is the
    // τ·σ_1-relative triplet test (or stricter), so the certification below rarely adds a block.
    eigs.compute(Spectra::SortRule::LargestAlge, t.maxIterations, t.tolerance,
                 Spectra::SortRule::LargestAlge);
    const Matrix vectors = eigs.eigenvectors(t.k);
    const Index spectraProducts = 2 * eigs.num_operations();
    const Index spectraIterations = eigs.num_iterations();
    blockKrylov(A, t, rng, &vectors, r);
    r.products += spectraProducts;
    r.iterations += spectraIterations;
  }

  // Restarted block Krylov on c² A^T A with Rayleigh–Ritz through the projected Gram matrix
  // (in double), thick restart, and an explicit residual check of the k Ritz triplets.
  static void blockKrylov(const Tall& A, const Tuning& t, Rng& rng, const Matrix* start,
                          Result& r) {
    using MatrixD = Eigen::MatrixXd;
    const Index m = A.rows(), n = A.cols(), k = t.k;
    const Index p = std::min(t.blockSize, n);
    // Basis cap: 10 blocks (at least k + 2p); no restart when the cap would come near n.
    const Index wanted = std::max(k + 2 * p, 10 * p);
    const Index dMax = wanted + p < n ? wanted : n;
    const Index keep = k + p;  // Ritz vectors kept at a restart (only when dMax < n)
    const Scalar c = t.scale;
    const Scalar tol = t.tolerance;
    const Scalar eps = std::numeric_limits<Scalar>::epsilon();

    Matrix K(n, dMax), Z(m, dMax), T(n, dMax);  // basis, c·A·K, c·A^T·(c·A·K)
    MatrixD G(dMax, dMax);                      // Z^T Z, the projected Gram matrix
    Index d = 0, lastBegin = 0, lastWidth = 0;
    r.products = 0;
    r.iterations = 0;

    auto append = [&](const Matrix& X) {
      const Index w = X.cols();
      K.middleCols(d, w) = X;
      auto Zb = Z.middleCols(d, w);
      A.times(Zb, X);
      Zb *= c;
      auto Tb = T.middleCols(d, w);
      A.timesTransposed(Tb, Zb);
      Tb *= c;
      const MatrixD Zd = Zb.template cast<double>();
      detail::gemm(G.block(0, d, d + w, w), Z.leftCols(d + w).template cast<double>().transpose(),
                   Zd);
      G.block(d, 0, w, d) = G.block(0, d, d, w).transpose();
      lastBegin = d;
      lastWidth = w;
      d += w;
      r.products += 2 * w;
      ++r.iterations;
    };

    {  // the starting block: the given vectors, completed with Gaussian ones
      Matrix X(n, p);
      Index given = 0;
      if (start != nullptr) {
        given = std::min(start->cols(), p);
        X.leftCols(given) = start->leftCols(given);
      }
      if (given < p) {
        Matrix fresh(n, p - given);
        fillNormal(fresh, rng, 0.0, 1.0);
        X.rightCols(p - given) = fresh;
      }
      detail::orthonormalizeColumns(X);
      append(X);
    }

    MatrixD Yd;
    Eigen::VectorXd theta;  // Ritz values of c² A^T A, decreasing
    for (;;) {
      const bool full = d == n;
      const bool restart = !full && dMax < n && d + std::min(p, n - d) > dMax;
      const bool budget = r.iterations >= t.maxIterations;
      if (d >= k) {
        const auto eig = symmetricEigen(G.topLeftCorner(d, d));
        theta = eig.values.reverse().cwiseMax(0.0);
        Yd = eig.vectors.rowwise().reverse();
        const Matrix Yk = Yd.leftCols(k).template cast<Scalar>();
        const Vector sk = theta.head(k).cwiseSqrt().template cast<Scalar>();
        const Scalar s1 = sk(0);
        // Estimated Gram residuals ‖c²A^T A v − θ v‖ of the Ritz vectors v = K y.
        Matrix E = detail::product(T.leftCols(d), Yk);
        detail::gemmSub(E, K.leftCols(d), Matrix(Yk * sk.cwiseAbs2().asDiagonal()));
        bool gate = true;
        for (Index i = 0; i < k && gate; ++i) {
          const Scalar g = E.col(i).norm();
          gate = g <= tol * s1 * std::max(sk(i), tol * s1) || g <= Scalar(64) * eps * s1 * s1;
        }
        if (gate || full || budget) {
          // Ritz triplets, orthonormal U even where σ = 0, then the measured residual.
          Matrix V = detail::product(K.leftCols(d), Yk);
          const Matrix AV = detail::product(Z.leftCols(d), Yk);
          Matrix Uh, Wh;
          Vector sh;
          detail::tallThinSvd<Scalar>(AV, Uh, sh, Wh);
          Matrix Vr = detail::product(V, Wh);
          Vector S = sh / c;
          const double residual = measure(A, Uh, S, Vr, r.products);
          if (residual <= static_cast<double>(tol) || full || budget) {
            r.U = std::move(Uh);
            r.V = std::move(Vr);
            r.S = std::move(S);
            r.residual = residual;
            return;
          }
        }
      }
      // The next block: the part of the last block's image outside the basis.
      const Index w = std::min(p, n - (restart ? keep : d));
      Matrix X = T.middleCols(lastBegin, std::min(lastWidth, w));
      if (X.cols() < w) {
        Matrix wide(n, w);
        wide.leftCols(X.cols()) = X;
        Matrix fresh(n, w - X.cols());
        fillNormal(fresh, rng, 0.0, 1.0);
        wide.rightCols(w - X.cols()) = fresh;
        X.swap(wide);
      }
      detail::orthonormalizeAgainst<Scalar>(K.leftCols(d), X, rng);
      if (restart) {
        // Thick restart: keep the top `keep` Ritz vectors; X stays orthogonal to them.
        const Matrix Yk = Yd.leftCols(keep).template cast<Scalar>();
        Matrix tmp = detail::product(K.leftCols(d), Yk);
        K.leftCols(keep) = tmp;
        detail::gemm(tmp, Z.leftCols(d), Yk);
        Z.leftCols(keep) = tmp;
        detail::gemm(tmp, T.leftCols(d), Yk);
        T.leftCols(keep) = tmp;
        G.topLeftCorner(keep, keep) = theta.head(keep).asDiagonal();
        d = keep;
      }
      append(X);
    }
  }

  Result m_result;
  bool m_initialized = false;
};

template <typename Scalar_>
void PartialSVD<Scalar_>::computeStored(const View& S, bool transposed, Index k,
                                        const PartialSVDOptions& options) {
  constexpr const char* where = "PartialSVD::compute";
  const Index m = transposed ? S.cols() : S.rows();
  const Index n = transposed ? S.rows() : S.cols();
  if (m < 1 || n < 1) detail::fail(where, "expected a non-empty matrix, got {}x{}", m, n);
  const Index minDim = std::min(m, n);
  if (k < 1 || k > minDim)
    detail::fail(where, "expected 1 <= k <= min(m, n) = {}, got k = {}", minDim, k);
  if (!(std::isfinite(options.tolerance) && options.tolerance >= 0.0))
    detail::fail(where, "expected a finite tolerance >= 0, got {}", options.tolerance);
  if (options.maxIterations < 0)
    detail::fail(where, "expected maxIterations >= 0, got {}", options.maxIterations);
  if (options.blockSize < 0)
    detail::fail(where, "expected blockSize >= 0, got {}", options.blockSize);
  if (!S.allFinite()) detail::fail(where, "expected a finite matrix, got NaN or Inf");

  Result r;
  r.tolerance = options.tolerance > 0.0 ? options.tolerance : defaultTolerance();
  const Scalar maxAbs = S.cwiseAbs().maxCoeff();
  if (maxAbs == Scalar(0)) {
    r.U = Matrix::Identity(m, k);
    r.V = Matrix::Identity(n, k);
    r.S = Vector::Zero(k);
    r.method = PartialSVDMethod::Dense;
  } else {
    PartialSVDMethod method = options.method;
    if (method == PartialSVDMethod::Auto)
      method = minDim <= std::max<Index>(128, 6 * k) ? PartialSVDMethod::Dense
                                                     : PartialSVDMethod::Lanczos;
    // Spectra needs k < min(m, n) - 1 and room for its Lanczos basis.
    if (method == PartialSVDMethod::Lanczos && k + 1 >= minDim)
      method = PartialSVDMethod::BlockKrylov;
    r.method = method;
    Tuning t;
    t.k = k;
    t.tolerance = static_cast<Scalar>(r.tolerance);
    t.maxIterations = options.maxIterations > 0 ? options.maxIterations : 300;
    t.blockSize = options.blockSize > 0 ? options.blockSize : k + std::max<Index>(8, k / 2);
    t.scale = Scalar(1) / maxAbs;
    Rng rng(options.seed);
    // The methods run on a tall A (rows >= cols): A = S or S^T; U and V swap when A = W^T.
    const bool tallS = S.rows() >= S.cols();
    run(Tall{S, !tallS}, t, rng, r);
    if (tallS == transposed) r.U.swap(r.V);
    detail::normalizeSigns<Scalar>(r.U, r.V);
  }
  m_result = std::move(r);
  m_initialized = true;
}

// Compiled once in liblorapp (src/linalg/svd_instances.cpp): a translation unit that uses
// PartialSVD<float> or <double> instantiates only the thin compute() wrapper, not the methods.
// Define LORA_NO_EXTERN_TEMPLATES to compile them in the translation unit instead, with its own
// flags (the benchmarks do, for -march=native and OpenMP).
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template class PartialSVD<float>;
extern template class PartialSVD<double>;
#endif

}  // namespace lora::linalg
