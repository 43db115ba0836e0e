#pragma once
/// \file layer.hpp
/// \brief lora::Layer: a LoRA adapter over a caller-owned linear layer, in PEFT's layout.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <type_traits>
#include <utility>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/base_weight.hpp"
#include "lora/detail/aliasing.hpp"
#include "lora/detail/base_binding.hpp"
#include "lora/detail/gemm.hpp"
#include "lora/error.hpp"
#include "lora/init/initializer.hpp"
#include "lora/init/peft_default.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/random.hpp"
#include "lora/resize.hpp"
#include "lora/scaling.hpp"
#include "lora/threads.hpp"

namespace lora {

/// Construction options of a Layer.
struct LayerOptions {
  Eigen::Index rank = 8;  ///< r >= 1 (may exceed min(out, in), as PEFT allows)
  double alpha = 8.0;     ///< lora_alpha, positive and finite
  ScalingMode scaling = ScalingMode::Standard;
  std::uint64_t seed = 0;  ///< seeds the initializer (now and on every later grow)
};

/// Whether backward adds to the stored gradients (PyTorch's `.grad` semantics) or replaces them.
enum class GradMode { Accumulate, Overwrite };

/// \brief A LoRA layer: y = x W^T + b + s (x A^T) B^T, with A (r x in), B (out x r) and
/// s = alpha/r (or alpha/sqrt(r) with rsLoRA), exactly as PEFT computes it.
///
/// The layer owns A, B, their gradients and its initializer; the base weight W and bias b belong
/// to the caller and are used in place through bindBase(). Batches are N x in (rows are samples,
/// as in PyTorch) and may be any Eigen expression, Map or Ref, row-major included.
/// Optionally DoRA (Liu et al., "DoRA: Weight-Decomposed Low-Rank Adaptation", 2024; PEFT
/// `use_dora`): with V = W + s B A and c = m / ||V||_row, y = c ⊙ (x W^T + s (x A^T) B^T) + b.
///
/// Every method that gets bad input throws lora::Error and leaves the layer as it was.
///
/// \code
/// Eigen::MatrixXf W = Eigen::MatrixXf::Random(64, 32);          // caller's frozen weight
/// lora::Layer<float> layer(64, 32, {.rank = 4, .alpha = 8, .seed = 1});
/// layer.bindBase(W);
/// Eigen::MatrixXf X = Eigen::MatrixXf::Random(10, 32), Y = layer.forward(X);
/// layer.backward(X, Y);                                          // dL/dY = Y, for example
/// auto report = layer.resize(2);                                 // best rank-2 delta
/// \endcode
template <typename Scalar_>
class Layer {
 public:
  using Scalar = Scalar_;
  using RealScalar = Scalar_;
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;
  using Initializer = init::AnyInitializer<Scalar>;

  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "lora::Layer: Scalar must be float or double");

  /// A fresh layer for an out x in base weight, factors drawn by \p initializer.
  Layer(Index outFeatures, Index inFeatures, const LayerOptions& options,
        Initializer initializer = init::PeftDefault{});

  /// A fresh layer built on the caller's base weight \p weight (out x in) and optional \p bias,
  /// bound as by bindBase(). The initializer sees W (PiSSA, OLoRA, MiLoRA, ... read it); when its
  /// factors ask for it (BaseUpdate::SubtractDelta), W becomes the residual W − s·B·A in place, so
  /// the model's output is unchanged, and W must then be writable. Nothing is changed if it throws.
  ///
  /// \code
  /// Eigen::MatrixXf W = ...;  // 4096 x 4096, becomes the PiSSA residual
  /// lora::Layer<float> layer(W, {.rank = 16, .alpha = 16}, lora::init::Pissa{});
  /// \endcode
  Layer(BaseWeight<Scalar> weight, const LayerOptions& options,
        Initializer initializer = init::PeftDefault{}, BaseBias<Scalar> bias = {});

  /// A layer from existing factors A (r x in) and B (out x r).
  template <typename DerivedA, typename DerivedB>
  static Layer fromFactors(const Eigen::MatrixBase<DerivedA>& A,
                           const Eigen::MatrixBase<DerivedB>& B, double alpha,
                           ScalingMode scaling = ScalingMode::Standard,
                           Initializer initializer = init::PeftDefault{}, std::uint64_t seed = 0) {
    constexpr const char* where = "Layer::fromFactors";
    checkShapes(where, A, B);
    checkAlpha(where, alpha);
    Layer layer(B.rows(), A.cols(), A.rows(), alpha, scaling, std::move(initializer), seed);
    layer.m_A = A;
    layer.m_B = B;
    checkFinite(where, layer.m_A, layer.m_B);
    layer.zeroGrad();
    return layer;
  }

  // ---- the base layer ---------------------------------------------------------------------

  /// Uses the caller's W (out x in) and optional bias (out) in place. The caller keeps them alive
  /// while bound. Rebinding a merged layer is an error (the merge lives in the old W).
  void bindBase(BaseWeight<Scalar> weight, BaseBias<Scalar> bias = {});
  /// Forgets the base (an error while merged).
  void unbindBase();
  bool hasBase() const noexcept { return !m_bind.weight.empty(); }
  const BaseWeight<Scalar>& base() const noexcept { return m_bind.weight; }

  // ---- forward / backward -------------------------------------------------------------------

  /// Y = X W^T + b + s (X A^T) B^T for X (N x in); Y (N x out) is resized if it can be, else it
  /// must already have that shape. Merged: Y = X W^T + b. Needs a bound base.
  ///
  /// Y may share memory with X (`layer.forward(X, X)` on a square layer): X is then read into a
  /// copy first and the answer is the same. Y sharing memory with the layer's own state (the
  /// bound W, A, B, their gradients) is an error.
  template <typename DerivedX, typename DerivedY>
  void forward(const Eigen::MatrixBase<DerivedX>& X,
               const Eigen::MatrixBase<DerivedY>& Yout) const {
    refuseOutputOverState("Layer::forward", Yout);
    if (detail::mayAlias(X, Yout)) {
      const Matrix Xc = X;
      forwardInto(Xc, Yout);
    } else {
      forwardInto(X, Yout);
    }
  }
  /// \copydoc forward(const Eigen::MatrixBase<DerivedX>&, const Eigen::MatrixBase<DerivedY>&) const
  template <typename DerivedX>
  Matrix forward(const Eigen::MatrixBase<DerivedX>& X) const {
    Matrix Y;
    forward(X, Y);
    return Y;
  }

  /// The adapter's own contribution s (X A^T) B^T (no base needed; not DoRA-scaled).
  template <typename DerivedX>
  Matrix adapterForward(const Eigen::MatrixBase<DerivedX>& X) const {
    checkInput("Layer::adapterForward", X.rows(), X.cols());
    return adapterForwardRef(ConstRef(X.derived()));
  }

  /// Gradients of the loss with respect to A and B from the batch X (N x in) and dL/dY (N x out):
  /// dL/dB = s dY^T (X A^T), dL/dA = s (dY B)^T X. They are added to gradA()/gradB()
  /// (GradMode::Accumulate, like PyTorch's `.grad`) or replace them (GradMode::Overwrite).
  /// Needs no base, except for DoRA layers: with z = x W^T + s (x A^T) B^T, n = ||W + s B A||_row
  /// and c = m / n, y = c ⊙ z + b, and the norm n is detached (a constant of the backward pass,
  /// DoRA paper §4.3, as PEFT's lora/dora.py computes it), so dL/dm_j = Σ_i dY_ij z_ij / n_j
  /// (gradMagnitude()) and A and B see dY ⊙ c in place of dY. DoRA backward needs a bound base
  /// and an unmerged layer.
  template <typename DerivedX, typename DerivedG>
  void backward(const Eigen::MatrixBase<DerivedX>& X, const Eigen::MatrixBase<DerivedG>& dY,
                GradMode mode = GradMode::Accumulate) {
    // X or dY given as this layer's own gradients are read into copies before those change.
    if (readsGradients(X)) {
      const Matrix Xc = X;
      return backward(Xc, dY, mode);
    }
    if (readsGradients(dY)) {
      const Matrix Gc = dY;
      return backward(X, Gc, mode);
    }
    checkBackward("Layer::backward", X.rows(), X.cols(), dY.rows(), dY.cols());
    static_assert(std::is_same_v<typename DerivedX::Scalar, Scalar> &&
                      std::is_same_v<typename DerivedG::Scalar, Scalar>,
                  "lora::Layer: the batch's Scalar must be the layer's Scalar");
    backwardRef(ConstRef(X.derived()), ConstRef(dY.derived()), mode);
  }

  /// As backward(X, dY, mode), and also writes dL/dX = dY W + s (dY B) A (N x in) into \p dX
  /// (overwritten; resized if it can be). Needs a bound base; merged layers use dY W.
  ///
  /// dX may share memory with X or dY (they are then read into copies first); dX sharing memory
  /// with the layer's own state (W, A, B, the gradients) is an error.
  template <typename DerivedX, typename DerivedG, typename DerivedDX>
  void backward(const Eigen::MatrixBase<DerivedX>& X, const Eigen::MatrixBase<DerivedG>& dY,
                const Eigen::MatrixBase<DerivedDX>& dXout, GradMode mode = GradMode::Accumulate) {
    refuseOutputOverState("Layer::backward", dXout);
    if (readsGradients(X) || detail::mayAlias(X, dXout)) {
      const Matrix Xc = X;
      return backward(Xc, dY, dXout, mode);
    }
    if (readsGradients(dY) || detail::mayAlias(dY, dXout)) {
      const Matrix Gc = dY;
      return backward(X, Gc, dXout, mode);
    }
    constexpr const char* where = "Layer::backward";
    requireBase(where);
    checkBackward(where, X.rows(), X.cols(), dY.rows(), dY.cols());
    DerivedDX& dX = prepareOutput(where, dXout, X.rows(), m_in);
    static_assert(std::is_same_v<typename DerivedX::Scalar, Scalar> &&
                      std::is_same_v<typename DerivedG::Scalar, Scalar>,
                  "lora::Layer: the batch's Scalar must be the layer's Scalar");
    const ConstRef x(X.derived()), g(dY.derived());
    writeThrough(dX, [&](OutRef out) { backwardInputRef(x, g, out, mode); });
  }

  const Matrix& gradA() const noexcept { return m_gradA; }
  const Matrix& gradB() const noexcept { return m_gradB; }
  /// dL/dm of the DoRA magnitude (out entries; empty when DoRA is off).
  const Vector& gradMagnitude() const noexcept { return m_gradMagnitude; }
  /// Sets the gradients to zero (the magnitude's too).
  void zeroGrad();

  // ---- merge --------------------------------------------------------------------------------

  /// W += s B A in the bound base weight (DoRA: W = c ⊙ (W + s B A)). Computed as one rank-r
  /// update of W, without an out x in temporary unless the values are so large that overflow
  /// must be checked entry by entry. Merging a merged layer is an error.
  void merge();

  /// Undoes merge(): W -= s B A (DoRA: W = W / c - s B A), up to rounding.
  void unmerge();
  bool isMerged() const noexcept { return m_bind.merged; }

  /// s B A, the only call that forms an out x in matrix.
  Matrix deltaWeight() const;

  // ---- rank -----------------------------------------------------------------------------------

  /// Singular values of s B A from the factors (min(r, out, in) of them, decreasing).
  Vector spectrum() const;

  /// Changes the rank to \p newRank.
  /// - Shrink: s·B·A becomes its best rank-k approximation (Eckart–Young), from the factored SVD;
  ///   σ is split per ResizeOptions::split. Directions with σ ≈ 0 keep a unit-norm row in A and a
  ///   zero column in B, so the layer stays trainable as a fresh PEFT adapter does.
  /// - Grow: s·B·A is unchanged; new rows of A come from the layer's initializer (drawn from
  ///   its seeded stream), new columns of B are zero.
  /// - Alpha bookkeeping per ResizeOptions::alpha. Gradients are reset to zero (they belong to
  ///   the old coordinates). The report carries the change of basis, and on a shrink the spectrum.
  /// - At the current rank nothing changes: factors, alpha and gradients stay as they are, and the
  ///   report has identity transforms and no spectrum (no SVD is computed).
  ResizeReport<Scalar> resize(Index newRank, const ResizeOptions& options = {});

  /// Keeps the singular triplets of s·B·A with the given indices (into the decreasing spectrum,
  /// 0-based, distinct, in any order) and drops the others: the new rank is keep.size() and
  /// s·B·A becomes Σ_{i in keep} σ_i u_i v_i^T. The pruning step of AdaLoRA-style allocation,
  /// which keeps the most *important* triplets rather than the largest. Options, alpha
  /// bookkeeping, report and change of basis as for resize().
  ResizeReport<Scalar> keepDirections(const std::vector<Index>& keep,
                                      const ResizeOptions& options = {});

  // ---- parameters ---------------------------------------------------------------------------

  Index rank() const noexcept { return m_A.rows(); }
  Index inFeatures() const noexcept { return m_in; }
  Index outFeatures() const noexcept { return m_out; }
  double alpha() const noexcept { return m_alpha; }
  ScalingMode scalingMode() const noexcept { return m_mode; }
  /// s = alpha/r, or alpha/sqrt(r) with rsLoRA.
  double scaling() const noexcept { return scalingFor(m_alpha, rank(), m_mode); }
  /// Trainable parameters: r·(in + out), plus out for a DoRA magnitude.
  Index parameterCount() const noexcept { return rank() * (m_in + m_out) + m_magnitude.size(); }
  const Matrix& A() const noexcept { return m_A; }
  const Matrix& B() const noexcept { return m_B; }
  const std::string& initializerName() const noexcept { return m_init.name(); }

  /// Replaces A (r x in) and B (out x r); r may change (alpha is kept, gradients reset).
  template <typename DerivedA, typename DerivedB>
  void setFactors(const Eigen::MatrixBase<DerivedA>& A, const Eigen::MatrixBase<DerivedB>& B) {
    constexpr const char* where = "Layer::setFactors";
    if (m_bind.merged)
      detail::fail(where, "expected an unmerged layer, got a merged one (unmerge first)");
    checkShapes(where, A, B);
    if (A.cols() != m_in || B.rows() != m_out)
      detail::fail(where, "expected A r x {} and B {} x r, got A {}x{} and B {}x{}", m_in, m_out,
                   A.rows(), A.cols(), B.rows(), B.cols());
    Matrix newA = A, newB = B;
    checkFinite(where, newA, newB);
    const bool sameRank = newA.rows() == rank();
    m_A.swap(newA);
    m_B.swap(newB);
    if (!sameRank) zeroGrad();
  }

  /// A += dA and B += dB (an optimizer step); the result must be finite.
  template <typename DerivedA, typename DerivedB>
  void updateFactors(const Eigen::MatrixBase<DerivedA>& dA, const Eigen::MatrixBase<DerivedB>& dB) {
    constexpr const char* where = "Layer::updateFactors";
    if (m_bind.merged)
      detail::fail(where, "expected an unmerged layer, got a merged one (unmerge first)");
    if (dA.rows() != m_A.rows() || dA.cols() != m_A.cols() || dB.rows() != m_B.rows() ||
        dB.cols() != m_B.cols())
      detail::fail(where, "expected dA {}x{} and dB {}x{}, got dA {}x{} and dB {}x{}", m_A.rows(),
                   m_A.cols(), m_B.rows(), m_B.cols(), dA.rows(), dA.cols(), dB.rows(), dB.cols());
    Matrix newA = m_A + dA;
    Matrix newB = m_B + dB;
    checkFinite(where, newA, newB);
    m_A.swap(newA);
    m_B.swap(newB);
  }

  /// Sets alpha (positive, finite); the scaling follows.
  void setAlpha(double alpha);
  void setScalingMode(ScalingMode mode);

  // ---- DoRA -----------------------------------------------------------------------------------

  bool isDora() const noexcept { return m_magnitude.size() != 0; }
  /// The DoRA magnitude m (out entries; empty when DoRA is off).
  const Vector& magnitude() const noexcept { return m_magnitude; }
  /// Turns DoRA on with magnitude \p m (out finite entries).
  template <typename Derived>
  void setMagnitude(const Eigen::MatrixBase<Derived>& m) {
    constexpr const char* where = "Layer::setMagnitude";
    if (m_bind.merged) detail::fail(where, "expected an unmerged layer, got a merged one");
    if (m.size() != m_out || (m.rows() != 1 && m.cols() != 1))
      detail::fail(where, "expected a vector of {} entries, got {}x{}", m_out, m.rows(), m.cols());
    Vector v = m;
    if (!v.allFinite()) detail::fail(where, "expected finite magnitudes, got NaN or Inf");
    if (m_magnitude.size() != m_out) m_gradMagnitude.setZero(m_out);  // DoRA turned on
    m_magnitude.swap(v);
  }
  /// Turns DoRA on with PEFT's initial magnitude m = ||W + s B A||_row (needs a bound base).
  void initDoraMagnitude();
  void disableDora();

 private:
  Layer(Index out, Index in, Index rank, double alpha, ScalingMode mode, Initializer init,
        std::uint64_t seed);

  Scalar scalingScalar() const noexcept { return static_cast<Scalar>(scaling()); }

  // Every batch is handed to the compiled members below (instantiated once in liblorapp,
  // src/layer.cpp) as an Eigen::Ref: read in place when it is column-major with unit inner stride
  // (Matrix, Map, Block, Ref), evaluated once into a column-major copy otherwise (a row-major
  // matrix, an expression). An output that is not column-major with unit inner stride is
  // computed into a Matrix and copied. So a caller's translation unit instantiates only these
  // thin wrappers, whatever the types it passes.
  using ConstRef = Eigen::Ref<const Matrix>;
  using OutRef = Eigen::Ref<Matrix>;
  template <typename Derived>
  static constexpr bool kColumnMajorOutput =
      (Derived::Flags & Eigen::LvalueBit) != 0 && (Derived::Flags & Eigen::DirectAccessBit) != 0 &&
      (Derived::Flags & Eigen::RowMajorBit) == 0 && Derived::InnerStrideAtCompileTime == 1;

  template <typename Derived, typename F>
  static void writeThrough(Derived& out, F&& f) {
    if constexpr (kColumnMajorOutput<Derived>) {
      f(OutRef(out));
    } else {
      Matrix tmp(out.rows(), out.cols());
      f(OutRef(tmp));
      out = tmp;
    }
  }
  template <typename DerivedX, typename DerivedY>
  void forwardInto(const Eigen::MatrixBase<DerivedX>& X,
                   const Eigen::MatrixBase<DerivedY>& Yout) const {
    static_assert((DerivedY::Flags & Eigen::LvalueBit) != 0,
                  "lora::Layer::forward: the output must be writable");
    static_assert(std::is_same_v<typename DerivedX::Scalar, Scalar>,
                  "lora::Layer: the batch's Scalar must be the layer's Scalar");
    constexpr const char* where = "Layer::forward";
    requireBase(where);
    checkInput(where, X.rows(), X.cols());
    DerivedY& Y = prepareOutput(where, Yout, X.rows(), m_out);
    const ConstRef x(X.derived());
    writeThrough(Y, [&](OutRef out) { forwardRef(x, out); });
  }
  /// Whether \p M shares memory with gradA() or gradB(), which backward writes.
  template <typename Derived>
  bool readsGradients(const Eigen::MatrixBase<Derived>& M) const noexcept {
    if constexpr (detail::kDirectAccess<Derived>) {
      const detail::ByteRange r = detail::byteRange(M);
      return r.intersects(detail::byteRange(m_gradA)) || r.intersects(detail::byteRange(m_gradB));
    } else {
      return false;  // an expression is evaluated before the gradients are written
    }
  }
  /// An output may not be written over W, A, B or the gradients: the layer reads them while it
  /// writes, and they would be lost.
  template <typename Derived>
  void refuseOutputOverState(const char* where, const Eigen::MatrixBase<Derived>& out) const {
    if constexpr (detail::kDirectAccess<Derived>) refuseOutputOver(where, detail::byteRange(out));
  }
  void refuseOutputOver(const char* where, const detail::ByteRange& out) const;

  void forwardRef(const ConstRef& X, OutRef Y) const;
  Matrix adapterForwardRef(const ConstRef& X) const;
  void backwardRef(const ConstRef& X, const ConstRef& dY, GradMode mode);
  void backwardInputRef(const ConstRef& X, const ConstRef& dY, OutRef dX, GradMode mode);
  /// The gradients into gradA()/gradB() (and gradMagnitude() for DoRA); \p G gets (dY' B), with
  /// dY' the gradient the factors see (dY, or dY ⊙ c for DoRA, then also written to \p dYc).
  void gradients(const char* where, const ConstRef& X, const ConstRef& dY, GradMode mode, Matrix& G,
                 Matrix* dYc);
  void factorGradients(const char* where, const ConstRef& X, const ConstRef& dY, GradMode mode,
                       Matrix& G, Vector* gm);
  /// DoRA's gradients (see backward()), the norm detached.
  void doraGradients(const char* where, const ConstRef& X, const ConstRef& dY, GradMode mode,
                     Matrix& G, Matrix* dYc);

  init::Request<Scalar> request(Index rank, double alpha) const;

  static void checkRank(const char* where, Index rank) {
    if (rank < 1) detail::fail(where, "expected a rank >= 1, got {}", rank);
  }
  static void checkAlpha(const char* where, double alpha) {
    if (!(std::isfinite(alpha) && alpha > 0.0))
      detail::fail(where, "expected alpha to be a positive finite number, got {}", alpha);
  }
  template <typename DerivedA, typename DerivedB>
  static void checkShapes(const char* where, const Eigen::MatrixBase<DerivedA>& A,
                          const Eigen::MatrixBase<DerivedB>& B) {
    if (A.rows() < 1 || A.cols() < 1 || B.rows() < 1 || A.rows() != B.cols())
      detail::fail(
          where,
          "expected A (r x in) and B (out x r) with the same r >= 1, got A {}x{} and B {}x{}",
          A.rows(), A.cols(), B.rows(), B.cols());
  }
  static void checkFinite(const char* where, const Matrix& A, const Matrix& B);
  void requireBase(const char* where) const;
  void requireWritableBase(const char* where) const;
  /// X must be N x in.
  void checkInput(const char* where, Index rows, Index cols) const;
  /// X (N x in) and dY (N x out); a DoRA layer also needs its base, unmerged.
  void checkBackward(const char* where, Index xRows, Index xCols, Index gRows, Index gCols) const;

  template <typename Derived>
  static Derived& prepareOutput(const char* where, const Eigen::MatrixBase<Derived>& out,
                                Index rows, Index cols) {
    Derived& o = const_cast<Derived&>(out.derived());  // Eigen's idiom for output arguments
    if (o.rows() == rows && o.cols() == cols) return o;
    if constexpr (std::is_base_of_v<Eigen::PlainObjectBase<Derived>, Derived>) {
      o.resize(rows, cols);
      return o;
    } else {
      detail::fail(where, "expected an output of {}x{}, got {}x{}", rows, cols, o.rows(), o.cols());
    }
  }

  /// True when |W| + |s B A| stays finite for sure: max|W| + max_i ||sB_i|| max_j ||A_j|| < max.
  template <typename DerivedW>
  bool updateCannotOverflow(const DerivedW& W, const Matrix& sB) const {
    const double bound = static_cast<double>(W.cwiseAbs().maxCoeff()) +
                         static_cast<double>(sB.rowwise().norm().maxCoeff()) *
                             static_cast<double>(m_A.colwise().norm().maxCoeff());
    return bound < 0.5 * static_cast<double>(std::numeric_limits<Scalar>::max());
  }

  /// ||W_i + s B_i A|| for every row i, from ||W_i||² + 2s B_i (A W_i^T) + s² B_i (A A^T) B_i^T:
  /// r x out work, no out x in temporary.
  template <typename DerivedW>
  Vector rowNormsOfSum(const DerivedW& W) const {
    const Scalar s = scalingScalar();
    const Matrix P = detail::product(m_A, W.transpose());    // r x out
    const Matrix G = detail::product(m_A, m_A.transpose());  // r x r
    const Matrix BG = detail::product(m_B, G);               // out x r
    Vector sq = W.rowwise().squaredNorm();
    sq.array() += Scalar(2) * s * (m_B.array() * P.transpose().array()).rowwise().sum();
    sq.array() += s * s * (BG.array() * m_B.array()).rowwise().sum();
    return sq.cwiseMax(Scalar(0)).cwiseSqrt();
  }

  /// DoRA's c = m / ||W + s B A||_row.
  Vector doraScale() const;

  /// The report's rank and alpha bookkeeping for a change to \p newRank.
  ResizeReport<Scalar> reportFor(Index newRank, const ResizeOptions& options) const;

  /// Checks the new factors and takes them (nothing below the check throws).
  void commit(const char* where, const ResizeReport<Scalar>& report, const Rng& rng, Matrix& newA,
              Matrix& newB);

  /// New factors from the chosen singular triplets of s·B·A: row j of A is dA_j v_{keep[j]}^T,
  /// column j of B is dB_j u_{keep[j]}, with dA_j dB_j = σ_{keep[j]} / s_new split per \p split.
  /// Rows beyond keep.size() (a rank above the number of singular values) come from the
  /// initializer with zero columns in B.
  void keepTriplets(ResizeReport<Scalar>& report, const linalg::FactoredSVD<Scalar>& svd,
                    const std::vector<Index>& keep, Rng& rng, SigmaSplit split, Matrix& newA,
                    Matrix& newB) const;

  /// The last \p count rows of a fresh rank-\p rank A for a grow, drawn from the layer's stream.
  /// A data-dependent initializer (PiSSA, LoRA-GA, EVA, ...) is not re-run: its data belongs to
  /// the moment of construction. New rows then follow PeftDefault's distribution.
  Matrix growRows(Index rank, Index count, double alpha, Rng& rng) const;

  // First, so that an assignment refused by it (over a merged layer) changes nothing else.
  detail::BaseBinding<Scalar> m_bind;  // W, b and the merge state; not carried by copies
  Index m_out = 0, m_in = 0;
  Matrix m_A, m_B, m_gradA, m_gradB;
  double m_alpha = 1.0;
  ScalingMode m_mode = ScalingMode::Standard;
  Initializer m_init;
  Rng m_rng;
  Vector m_magnitude;      // DoRA m; empty when DoRA is off
  Vector m_gradMagnitude;  // dL/dm; empty when DoRA is off
};

template <typename Scalar_>
Layer<Scalar_>::Layer(Index outFeatures, Index inFeatures, const LayerOptions& options,
                      Initializer initializer)
    : m_out(outFeatures),
      m_in(inFeatures),
      m_alpha(options.alpha),
      m_mode(options.scaling),
      m_init(std::move(initializer)),
      m_rng(options.seed) {
  constexpr const char* where = "Layer::Layer";
  if (outFeatures < 1 || inFeatures < 1)
    detail::fail(where, "expected out and in features >= 1, got {}x{}", outFeatures, inFeatures);
  checkRank(where, options.rank);
  checkAlpha(where, options.alpha);
  init::Factors<Scalar> f = m_init.initialize(request(options.rank, options.alpha), m_rng);
  checkFinite(where, f.A, f.B);
  if (f.baseUpdate == init::BaseUpdate::SubtractDelta)
    detail::fail(where,
                 "expected a base weight for initializer '{}', which subtracts s·B·A from it "
                 "(build the Layer on its base weight), got none",
                 m_init.name());
  m_A = std::move(f.A);
  m_B = std::move(f.B);
  zeroGrad();
}

template <typename Scalar_>
Layer<Scalar_>::Layer(BaseWeight<Scalar> weight, const LayerOptions& options,
                      Initializer initializer, BaseBias<Scalar> bias)
    : m_out(weight.rows()),
      m_in(weight.cols()),
      m_alpha(options.alpha),
      m_mode(options.scaling),
      m_init(std::move(initializer)),
      m_rng(options.seed) {
  constexpr const char* where = "Layer::Layer";
  if (weight.empty()) detail::fail(where, "expected a base weight view, got an empty one");
  checkRank(where, options.rank);
  checkAlpha(where, options.alpha);
  if (!bias.empty() && bias.size() != m_out)
    detail::fail(where, "expected a bias of {} entries, got {}", m_out, bias.size());
  init::Request<Scalar> req = request(options.rank, options.alpha);
  req.weight = weight;
  init::Factors<Scalar> f = m_init.initialize(req, m_rng);
  checkFinite(where, f.A, f.B);
  if (f.baseUpdate == init::BaseUpdate::SubtractDelta && !weight.writable())
    detail::fail(where,
                 "expected a writable base weight (initializer '{}' subtracts s·B·A from it), "
                 "got a read-only view",
                 m_init.name());
  init::applyBaseUpdate(weight, f, req.scalingFactor());  // last: nothing above mutates W
  m_A = std::move(f.A);
  m_B = std::move(f.B);
  m_bind.weight = weight;
  m_bind.bias = bias;
  zeroGrad();
}

template <typename Scalar_>
void Layer<Scalar_>::bindBase(BaseWeight<Scalar> weight, BaseBias<Scalar> bias) {
  constexpr const char* where = "Layer::bindBase";
  if (m_bind.merged)
    detail::fail(where, "expected an unmerged layer, got a merged one (unmerge first)");
  if (weight.empty()) detail::fail(where, "expected a weight view, got an empty one");
  if (weight.rows() != m_out || weight.cols() != m_in)
    detail::fail(where, "expected a base weight of {}x{} (out x in), got {}x{}", m_out, m_in,
                 weight.rows(), weight.cols());
  if (!bias.empty() && bias.size() != m_out)
    detail::fail(where, "expected a bias of {} entries, got {}", m_out, bias.size());
  m_bind.weight = weight;
  m_bind.bias = bias;
}

template <typename Scalar_>
void Layer<Scalar_>::unbindBase() {
  if (m_bind.merged)
    detail::fail("Layer::unbindBase", "expected an unmerged layer, got a merged one");
  m_bind.weight = BaseWeight<Scalar>();
  m_bind.bias = BaseBias<Scalar>();
}

template <typename Scalar_>
void Layer<Scalar_>::zeroGrad() {
  m_gradA.setZero(rank(), m_in);
  m_gradB.setZero(m_out, rank());
  m_gradMagnitude.setZero(m_magnitude.size());
}

template <typename Scalar_>
void Layer<Scalar_>::merge() {
  constexpr const char* where = "Layer::merge";
  if (m_bind.merged) detail::fail(where, "expected an unmerged layer, got one already merged");
  requireWritableBase(where);
  m_bind.weight.visitMutable([&](auto& W) {
    Vector c;
    if (isDora()) c = doraScale();
    const Matrix sB = scalingScalar() * m_B;
    if (isDora()) {
      // The rows of W + sBA scaled by c: checked whole before W is touched.
      Matrix merged = W;
      detail::gemmAdd(merged, sB, m_A);
      merged.array().colwise() *= c.array();
      if (!merged.allFinite())
        detail::fail(where, "expected a merged weight with finite entries, got overflow to Inf");
      W = merged;
    } else {
      if (!updateCannotOverflow(W, sB)) {
        const Matrix delta = detail::product(sB, m_A);
        if (!(W + delta).allFinite())
          detail::fail(where, "expected a merged weight with finite entries, got overflow to Inf");
      }
      detail::gemmAdd(W, sB, m_A);
    }
    m_bind.mergeScale = std::move(c);
  });
  m_bind.merged = true;
}

template <typename Scalar_>
void Layer<Scalar_>::unmerge() {
  constexpr const char* where = "Layer::unmerge";
  if (!m_bind.merged) detail::fail(where, "expected a merged layer, got one not merged");
  requireWritableBase(where);
  m_bind.weight.visitMutable([&](auto& W) {
    if (isDora()) W.array().colwise() /= m_bind.mergeScale.array();
    detail::gemmAdd(W, m_B, m_A, -scalingScalar());
  });
  m_bind.mergeScale.resize(0);
  m_bind.merged = false;
}

template <typename Scalar_>
typename Layer<Scalar_>::Matrix Layer<Scalar_>::deltaWeight() const {
  return detail::product(m_B, m_A, scalingScalar());
}

template <typename Scalar_>
typename Layer<Scalar_>::Vector Layer<Scalar_>::spectrum() const {
  return linalg::FactoredSVD<Scalar>(m_B, m_A, scalingScalar(), 0).singularValues();
}

template <typename Scalar_>
ResizeReport<Scalar_> Layer<Scalar_>::resize(Index newRank, const ResizeOptions& options) {
  constexpr const char* where = "Layer::resize";
  checkRank(where, newRank);
  if (m_bind.merged)
    detail::fail(where, "expected an unmerged layer, got a merged one (unmerge first)");
  const Index r = rank();
  ResizeReport<Scalar> report = reportFor(newRank, options);
  if (newRank == r) {
    report.transformA = Matrix::Identity(r, r);
    report.transformB = Matrix::Identity(r, r);
    return report;
  }
  Rng rng = m_rng;  // committed only on success
  Matrix newA(newRank, m_in), newB(m_out, newRank);
  if (newRank > r) {
    const bool keepScaling = options.alpha == AlphaPolicy::KeepScaling;
    const Scalar carry =
        keepScaling ? Scalar(1) : static_cast<Scalar>(report.oldScaling / report.newScaling);
    newA.topRows(r) = m_A;
    newA.bottomRows(newRank - r) = growRows(newRank, newRank - r, report.newAlpha, rng);
    newB.leftCols(r) = keepScaling ? m_B : Matrix(carry * m_B);
    newB.rightCols(newRank - r).setZero();
    report.transformA = Matrix::Identity(newRank, r);
    report.transformB = carry * Matrix::Identity(r, newRank);
  } else {
    const linalg::FactoredSVD<Scalar> svd(m_B, m_A, scalingScalar());
    std::vector<Index> top(static_cast<std::size_t>(std::min(newRank, svd.size())));
    std::iota(top.begin(), top.end(), Index{0});
    keepTriplets(report, svd, top, rng, options.split, newA, newB);
  }
  commit(where, report, rng, newA, newB);
  return report;
}

template <typename Scalar_>
ResizeReport<Scalar_> Layer<Scalar_>::keepDirections(const std::vector<Index>& keep,
                                                     const ResizeOptions& options) {
  constexpr const char* where = "Layer::keepDirections";
  if (m_bind.merged)
    detail::fail(where, "expected an unmerged layer, got a merged one (unmerge first)");
  if (keep.empty()) detail::fail(where, "expected at least one direction to keep, got none");
  const Index available = std::min({rank(), m_out, m_in});  // singular values of s·B·A
  std::vector<bool> seen(static_cast<std::size_t>(available), false);
  for (Index i : keep) {
    if (i < 0 || i >= available)
      detail::fail(where, "expected indices in [0, {}), got {}", available, i);
    if (seen[static_cast<std::size_t>(i)])
      detail::fail(where, "expected distinct indices, got {} twice", i);
    seen[static_cast<std::size_t>(i)] = true;
  }
  const Index newRank = static_cast<Index>(keep.size());
  ResizeReport<Scalar> report = reportFor(newRank, options);
  const linalg::FactoredSVD<Scalar> svd(m_B, m_A, scalingScalar());
  Rng rng = m_rng;
  Matrix newA(newRank, m_in), newB(m_out, newRank);
  keepTriplets(report, svd, keep, rng, options.split, newA, newB);
  commit(where, report, rng, newA, newB);
  return report;
}

template <typename Scalar_>
void Layer<Scalar_>::setAlpha(double alpha) {
  if (m_bind.merged)
    detail::fail("Layer::setAlpha", "expected an unmerged layer, got a merged one");
  checkAlpha("Layer::setAlpha", alpha);
  m_alpha = alpha;
}

template <typename Scalar_>
void Layer<Scalar_>::setScalingMode(ScalingMode mode) {
  if (m_bind.merged)
    detail::fail("Layer::setScalingMode", "expected an unmerged layer, got a merged one");
  m_mode = mode;
}

template <typename Scalar_>
void Layer<Scalar_>::initDoraMagnitude() {
  constexpr const char* where = "Layer::initDoraMagnitude";
  if (m_bind.merged) detail::fail(where, "expected an unmerged layer, got a merged one");
  requireBase(where);
  m_magnitude = m_bind.weight.visit([&](const auto& W) { return rowNormsOfSum(W); });
  m_gradMagnitude.setZero(m_out);
}

template <typename Scalar_>
void Layer<Scalar_>::disableDora() {
  if (m_bind.merged)
    detail::fail("Layer::disableDora", "expected an unmerged layer, got a merged one");
  m_magnitude.resize(0);
  m_gradMagnitude.resize(0);
}

template <typename Scalar_>
Layer<Scalar_>::Layer(Index out, Index in, Index rank, double alpha, ScalingMode mode,
                      Initializer init, std::uint64_t seed)
    : m_out(out), m_in(in), m_alpha(alpha), m_mode(mode), m_init(std::move(init)), m_rng(seed) {
  m_A.resize(rank, in);
  m_B.resize(out, rank);
}

template <typename Scalar_>
init::Request<Scalar_> Layer<Scalar_>::request(Index rank, double alpha) const {
  init::Request<Scalar> req;
  req.outFeatures = m_out;
  req.inFeatures = m_in;
  req.rank = rank;
  req.alpha = alpha;
  req.scaling = m_mode;
  return req;
}

template <typename Scalar_>
void Layer<Scalar_>::checkFinite(const char* where, const Matrix& A, const Matrix& B) {
  if (!A.allFinite()) detail::fail(where, "expected finite entries in A, got NaN or Inf");
  if (!B.allFinite()) detail::fail(where, "expected finite entries in B, got NaN or Inf");
}

template <typename Scalar_>
void Layer<Scalar_>::requireBase(const char* where) const {
  if (m_bind.weight.empty())
    detail::fail(where, "expected a bound base weight (call bindBase first), got none");
}

template <typename Scalar_>
void Layer<Scalar_>::requireWritableBase(const char* where) const {
  requireBase(where);
  if (!m_bind.weight.writable())
    detail::fail(where, "expected a writable base weight, got a read-only view");
}

template <typename Scalar_>
typename Layer<Scalar_>::Vector Layer<Scalar_>::doraScale() const {
  const Vector norms = m_bind.weight.visit([&](const auto& W) { return rowNormsOfSum(W); });
  Vector c = m_magnitude.cwiseQuotient(norms);
  if (!c.allFinite())
    detail::fail("Layer::doraScale",
                 "expected a finite DoRA scale m / ||W + sBA|| in every row, got NaN or Inf (a "
                 "zero row, or a magnitude that overflows against the row's norm)");
  return c;
}

template <typename Scalar_>
ResizeReport<Scalar_> Layer<Scalar_>::reportFor(Index newRank, const ResizeOptions& options) const {
  ResizeReport<Scalar> report;
  report.oldRank = rank();
  report.newRank = newRank;
  report.oldAlpha = m_alpha;
  report.oldScaling = scaling();
  const bool keepScaling = options.alpha == AlphaPolicy::KeepScaling;
  report.newAlpha = keepScaling ? alphaFor(report.oldScaling, newRank, m_mode) : m_alpha;
  report.newScaling = keepScaling ? report.oldScaling : scalingFor(m_alpha, newRank, m_mode);
  return report;
}

template <typename Scalar_>
void Layer<Scalar_>::commit(const char* where, const ResizeReport<Scalar>& report, const Rng& rng,
                            Matrix& newA, Matrix& newB) {
  checkFinite(where, newA, newB);
  m_A.swap(newA);
  m_B.swap(newB);
  m_alpha = report.newAlpha;
  m_rng = rng;
  zeroGrad();
}

template <typename Scalar_>
void Layer<Scalar_>::keepTriplets(ResizeReport<Scalar>& report,
                                  const linalg::FactoredSVD<Scalar>& svd,
                                  const std::vector<Index>& keep, Rng& rng, SigmaSplit split,
                                  Matrix& newA, Matrix& newB) const {
  const Index r = rank();
  const Index k = report.newRank;
  const Index kept = static_cast<Index>(keep.size());
  const Vector& sigma = svd.singularValues();
  report.singularValues = sigma;
  std::vector<bool> chosen(static_cast<std::size_t>(sigma.size()), false);
  for (Index i : keep) chosen[static_cast<std::size_t>(i)] = true;
  report.discarded.resize(sigma.size() - kept);
  double keptEnergy = 0.0;
  for (Index i = 0, d = 0; i < sigma.size(); ++i) {
    if (chosen[static_cast<std::size_t>(i)]) {
      keptEnergy += static_cast<double>(sigma(i)) * static_cast<double>(sigma(i));
    } else {
      report.discarded(d++) = sigma(i);
    }
  }
  const double total = sigma.template cast<double>().squaredNorm();
  report.retainedEnergy = total > 0.0 ? keptEnergy / total : 1.0;

  Vector dA(kept), dB(kept);
  const double sNew = report.newScaling;
  const double tiny = static_cast<double>(std::numeric_limits<Scalar>::epsilon()) *
                      static_cast<double>(sigma.size() > 0 ? sigma(0) : Scalar(0));
  for (Index j = 0; j < kept; ++j) {
    const double value = static_cast<double>(sigma(keep[static_cast<std::size_t>(j)]));
    if (value <= tiny) {  // a null direction: unit row in A, zero column in B
      dA(j) = Scalar(1);
      dB(j) = Scalar(0);
      continue;
    }
    const double c = value / sNew;
    switch (split) {
      case SigmaSplit::Balanced:
        dA(j) = dB(j) = static_cast<Scalar>(std::sqrt(c));
        break;
      case SigmaSplit::IntoA:
        dA(j) = static_cast<Scalar>(c);
        dB(j) = Scalar(1);
        break;
      case SigmaSplit::IntoB:
        dA(j) = Scalar(1);
        dB(j) = static_cast<Scalar>(c);
        break;
    }
  }
  const Matrix coordsU = svd.coordinatesU(), coordsV = svd.coordinatesV();
  report.transformA = Matrix::Zero(k, r);
  report.transformB = Matrix::Zero(r, k);
  for (Index j = 0; j < kept; ++j) {
    const Index i = keep[static_cast<std::size_t>(j)];
    newA.row(j) = dA(j) * svd.matrixV().col(i).transpose();
    newB.col(j) = dB(j) * svd.matrixU().col(i);
    report.transformA.row(j) = dA(j) * coordsV.col(i).transpose();
    report.transformB.col(j) = dB(j) * coordsU.col(i);
  }
  if (kept < k) {  // r > min(out, in) and k above the number of singular values
    newA.bottomRows(k - kept) = growRows(k, k - kept, report.newAlpha, rng);
    newB.rightCols(k - kept).setZero();
  }
}

template <typename Scalar_>
typename Layer<Scalar_>::Matrix Layer<Scalar_>::growRows(Index rank, Index count, double alpha,
                                                         Rng& rng) const {
  const init::Request<Scalar> req = request(rank, alpha);
  init::Factors<Scalar> fresh = m_init.dataDependent() ? init::PeftDefault{}.initialize(req, rng)
                                                       : m_init.initialize(req, rng);
  return fresh.A.bottomRows(count);
}

template <typename Scalar_>
void Layer<Scalar_>::checkInput(const char* where, Index rows, Index cols) const {
  if (cols != m_in)
    detail::fail(where, "expected X with {} columns (N x in), got {}x{}", m_in, rows, cols);
}

template <typename Scalar_>
void Layer<Scalar_>::checkBackward(const char* where, Index xRows, Index xCols, Index gRows,
                                   Index gCols) const {
  checkInput(where, xRows, xCols);
  if (gRows != xRows || gCols != m_out)
    detail::fail(where, "expected dY of {}x{} (N x out), got {}x{}", xRows, m_out, gRows, gCols);
  if (isDora()) {
    requireBase(where);  // z and the norm of W + sBA need W
    if (m_bind.merged)
      detail::fail(where,
                   "expected an unmerged DoRA layer (the norm of W + sBA is taken on the "
                   "unmerged weight), got a merged one");
  }
}

template <typename Scalar_>
void Layer<Scalar_>::refuseOutputOver(const char* where, const detail::ByteRange& out) const {
  const bool weight = m_bind.weight.byteRange().intersects(out);
  if (weight || out.intersects(detail::byteRange(m_A)) || out.intersects(detail::byteRange(m_B)) ||
      out.intersects(detail::byteRange(m_gradA)) || out.intersects(detail::byteRange(m_gradB)))
    detail::fail(where,
                 "expected an output that shares no memory with the layer's {}, got one that does",
                 weight ? "bound base weight" : "factors or gradients");
}

// Y = X W^T + s (X A^T) B^T (+ DoRA's column scale) + b; merged: Y = X W^T + b.
template <typename Scalar_>
void Layer<Scalar_>::forwardRef(const ConstRef& X, OutRef Y) const {
  m_bind.weight.visit([&](const auto& W) { detail::gemm(Y, X, W.transpose()); });
  if (!m_bind.merged) {
    // The product is evaluated first and scaled in place (see factorGradients).
    Matrix T;
    detail::gemm(T, X, m_A.transpose());
    T *= scalingScalar();
    detail::gemmAdd(Y, T, m_B.transpose());
    if (isDora()) Y.array().rowwise() *= doraScale().transpose().array();
  }
  if (!m_bind.bias.empty()) Y.rowwise() += m_bind.bias.map().transpose();
}

template <typename Scalar_>
typename Layer<Scalar_>::Matrix Layer<Scalar_>::adapterForwardRef(const ConstRef& X) const {
  Matrix T;
  detail::gemm(T, X, m_A.transpose());
  T *= scalingScalar();
  return detail::product(T, m_B.transpose());
}

template <typename Scalar_>
void Layer<Scalar_>::backwardRef(const ConstRef& X, const ConstRef& dY, GradMode mode) {
  Matrix G;
  gradients("Layer::backward", X, dY, mode, G, nullptr);
}

// dX = dY W + s (dY B) A (DoRA: dY ⊙ c in place of dY); merged: dX = dY W.
template <typename Scalar_>
void Layer<Scalar_>::backwardInputRef(const ConstRef& X, const ConstRef& dY, OutRef dX,
                                      GradMode mode) {
  Matrix G;   // dY' B, shared by dA and dX
  Matrix Gc;  // DoRA: dY ⊙ c, what W and the factors see
  gradients("Layer::backward", X, dY, mode, G, &Gc);
  m_bind.weight.visit([&](const auto& W) {
    if (isDora())
      detail::gemm(dX, Gc, W);
    else
      detail::gemm(dX, dY, W);
  });
  if (!m_bind.merged) {
    G *= scalingScalar();
    detail::gemmAdd(dX, G, m_A);
  }
}

template <typename Scalar_>
void Layer<Scalar_>::gradients(const char* where, const ConstRef& X, const ConstRef& dY,
                               GradMode mode, Matrix& G, Matrix* dYc) {
  if (isDora())
    doraGradients(where, X, dY, mode, G, dYc);
  else
    factorGradients(where, X, dY, mode, G, nullptr);
}

template <typename Scalar_>
void Layer<Scalar_>::factorGradients(const char* where, const ConstRef& X, const ConstRef& dY,
                                     GradMode mode, Matrix& G, Vector* gm) {
  const Scalar s = scalingScalar();
  const Matrix T = detail::product(X, m_A.transpose());  // N x r
  detail::gemm(G, dY, m_B);                              // N x r
  // Products are evaluated first and scaled in place.
  Matrix gB;
  detail::gemm(gB, dY.transpose(), T);
  gB *= s;
  Matrix gA;
  detail::gemm(gA, G.transpose(), X);
  gA *= s;
  if (mode == GradMode::Accumulate) {
    gA += m_gradA;
    gB += m_gradB;
    if (gm != nullptr) *gm += m_gradMagnitude;
  }
  if (!gA.allFinite() || !gB.allFinite() || (gm != nullptr && !gm->allFinite()))
    detail::fail(where, "expected finite gradients, got NaN or Inf (check X and dY)");
  m_gradA.swap(gA);
  m_gradB.swap(gB);
  if (gm != nullptr) m_gradMagnitude.swap(*gm);
}

// DoRA, the norm detached (Liu et al. 2024, DoRA §4.3; PEFT lora/dora.py).
template <typename Scalar_>
void Layer<Scalar_>::doraGradients(const char* where, const ConstRef& X, const ConstRef& dY,
                                   GradMode mode, Matrix& G, Matrix* dYc) {
  const Vector n = m_bind.weight.visit([&](const auto& W) { return rowNormsOfSum(W); });
  const Vector c = m_magnitude.cwiseQuotient(n);
  if (!c.allFinite())
    detail::fail(where,
                 "expected a finite DoRA scale m / ||W + sBA|| in every row, got NaN or Inf (a "
                 "zero row, or a magnitude that overflows against the row's norm)");
  Matrix Z;  // z = x W^T + s (x A^T) B^T, N x out
  m_bind.weight.visit([&](const auto& W) { detail::gemm(Z, X, W.transpose()); });
  Matrix T;
  detail::gemm(T, X, m_A.transpose());
  T *= scalingScalar();
  detail::gemmAdd(Z, T, m_B.transpose());
  Vector gm = dY.cwiseProduct(Z).colwise().sum().transpose();
  gm = gm.cwiseQuotient(n);
  Matrix Gc = dY * c.asDiagonal();
  factorGradients(where, X, Gc, mode, G, &gm);
  if (dYc != nullptr) *dYc = std::move(Gc);
}

// Compiled once in liblorapp (src/layer.cpp): a translation unit that uses Layer<float> or
// Layer<double> instantiates only the thin member templates it calls (forward and backward hand
// views of their batches to compiled members). Define
// LORA_NO_EXTERN_TEMPLATES to compile everything in the translation unit instead.
#ifndef LORA_NO_EXTERN_TEMPLATES
extern template class Layer<float>;
extern template class Layer<double>;
#endif

}  // namespace lora
