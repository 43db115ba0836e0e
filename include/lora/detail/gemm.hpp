#pragma once
/// \file gemm.hpp
/// \brief Matrix products through one compiled function per Scalar: `gemm(C, L, R)` is
/// `C.noalias() = L * R`, `gemmAdd(C, L, R)` is `C.noalias() += L * R`, `gemmSub(C, L, R)` is
/// `C.noalias() -= L * R`, `product(L, R)` a new matrix L · R (each with an optional alpha: the
/// product of alpha · L and R). C must not share memory with L or R.
///
/// Eigen compiles its product glue (the GEMM driver, its OpenMP region, the coefficient-based loop
/// for small sizes) once per combination of operand and destination types: `A * B.transpose()`,
/// `A.topRows(k) * B` and `Map * Ref` are three instantiations, about 0.6 s of compile time each
/// per translation unit (docs/development.md). Here every operand is first viewed as a
/// column-major strided map, transposed or not, so all products of a Scalar share four
/// instantiations, compiled once in liblorapp (src/detail/eigen_kernels.cpp). The arithmetic is
/// Eigen's own product on the same storage (see gemmStrided for where it is bit for bit).
/// Operands without unit-stride storage (expressions, a row of a column-major matrix) are
/// evaluated into a temporary first, as Eigen does for them inside a product.

#include <algorithm>
#include <type_traits>

#include "lora/detail/eigen.hpp"

namespace lora::detail {

template <typename Scalar>
using GemmMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
/// A read-only column-major operand with an outer stride.
template <typename Scalar>
using GemmView = Eigen::Map<const GemmMatrix<Scalar>, 0, Eigen::OuterStride<>>;
/// A writable column-major destination with an outer stride.
template <typename Scalar>
using GemmTarget = Eigen::Map<GemmMatrix<Scalar>, 0, Eigen::OuterStride<>>;

/// dst = alpha · op(lhs) · op(rhs) (accumulate: dst += ...), op(X) = X^T where the flag is set.
/// dst has its size already and shares no memory with lhs or rhs. From rows + cols + depth = 20
/// on, where Eigen runs its GEMM (or GEMV) driver, the result is bit for bit that of
/// `dst.noalias() = lhs * rhs` (`+=`, `-=`, `(alpha * lhs) * rhs`) on the same storage: Eigen takes
/// alpha out of the product and scales the accumulated sums by it. Below, Eigen's
/// coefficient-based loop sums in an order that depends on the destination's type, even in Eigen.
template <typename Scalar>
void gemmStrided(GemmTarget<Scalar> dst, const GemmView<Scalar>& lhs, bool lhsTransposed,
                 const GemmView<Scalar>& rhs, bool rhsTransposed, Scalar alpha, bool accumulate) {
  if (!accumulate) dst.setZero();
  if (!lhsTransposed && !rhsTransposed)
    dst.noalias() += alpha * lhs * rhs;
  else if (lhsTransposed && !rhsTransposed)
    dst.noalias() += alpha * lhs.transpose() * rhs;
  else if (!lhsTransposed)
    dst.noalias() += alpha * lhs * rhs.transpose();
  else
    dst.noalias() += alpha * lhs.transpose() * rhs.transpose();
}

#ifndef LORA_NO_EXTERN_TEMPLATES
extern template void gemmStrided<float>(GemmTarget<float>, const GemmView<float>&, bool,
                                        const GemmView<float>&, bool, float, bool);
extern template void gemmStrided<double>(GemmTarget<double>, const GemmView<double>&, bool,
                                         const GemmView<double>&, bool, double, bool);
#endif

/// An operand as a GemmView of its storage: X = view(), or X = view()^T for a row-major X (the
/// transpose of a column-major array). X without unit-stride storage is evaluated into a copy the
/// operand owns.
template <typename Scalar>
class GemmOperand {
 public:
  template <typename Derived>
  explicit GemmOperand(const Eigen::MatrixBase<Derived>& x) {
    static_assert(std::is_same_v<typename Derived::Scalar, Scalar>, "gemm: mixed scalar types");
    if constexpr ((Derived::Flags & Eigen::DirectAccessBit) != 0) {
      const Derived& d = x.derived();
      if (d.innerStride() == 1) {
        if constexpr (static_cast<bool>(Derived::IsRowMajor))
          set(d.data(), d.cols(), d.rows(), d.outerStride(), true);
        else
          set(d.data(), d.rows(), d.cols(), d.outerStride(), false);
        return;
      }
    }
    m_copy = x;
    set(m_copy.data(), m_copy.rows(), m_copy.cols(), m_copy.rows(), false);
  }
  GemmOperand(const GemmOperand&) = delete;
  GemmOperand& operator=(const GemmOperand&) = delete;

  /// The stored array, column-major.
  GemmView<Scalar> view() const {
    return GemmView<Scalar>(m_data, m_rows, m_cols, Eigen::OuterStride<>(m_stride));
  }
  /// Whether the operand is view()^T.
  bool transposed() const { return m_transposed; }
  Eigen::Index rows() const { return m_transposed ? m_cols : m_rows; }
  Eigen::Index cols() const { return m_transposed ? m_rows : m_cols; }

 private:
  void set(const Scalar* data, Eigen::Index rows, Eigen::Index cols, Eigen::Index stride,
           bool transposed) {
    m_data = data;
    m_rows = rows;
    m_cols = cols;
    m_stride = std::max(stride, rows);
    m_transposed = transposed;
  }

  const Scalar* m_data = nullptr;
  Eigen::Index m_rows = 0, m_cols = 0, m_stride = 0;
  bool m_transposed = false;
  GemmMatrix<Scalar> m_copy;
};

/// dst (=, or += when \p accumulate) alpha · lhs · rhs. A plain-matrix dst is resized when
/// assigned.
template <typename Dst, typename Lhs, typename Rhs>
void gemmInto(Dst& dst, const Lhs& lhs, const Rhs& rhs, typename Dst::Scalar alpha,
              bool accumulate) {
  using Scalar = typename Dst::Scalar;
  static_assert(std::is_same_v<typename Lhs::Scalar, Scalar>, "gemm: mixed scalar types");
  const GemmOperand<Scalar> l(lhs), r(rhs);
  eigen_assert(l.cols() == r.rows() && "gemm: inner dimensions differ");
  if constexpr (std::is_base_of_v<Eigen::PlainObjectBase<Dst>, Dst>) {
    if (!accumulate) dst.resize(l.rows(), r.cols());
  }
  eigen_assert(dst.rows() == l.rows() && dst.cols() == r.cols() && "gemm: wrong destination size");
  if constexpr ((Dst::Flags & Eigen::DirectAccessBit) != 0 &&
                (Dst::Flags & Eigen::LvalueBit) != 0) {
    if (dst.innerStride() == 1) {
      if constexpr (static_cast<bool>(Dst::IsRowMajor)) {
        // dst^T = op(rhs)^T op(lhs)^T, into the column-major array dst^T.
        GemmTarget<Scalar> t(dst.data(), dst.cols(), dst.rows(),
                             Eigen::OuterStride<>(std::max(dst.outerStride(), dst.cols())));
        gemmStrided<Scalar>(t, r.view(), !r.transposed(), l.view(), !l.transposed(), alpha,
                            accumulate);
      } else {
        GemmTarget<Scalar> t(dst.data(), dst.rows(), dst.cols(),
                             Eigen::OuterStride<>(std::max(dst.outerStride(), dst.rows())));
        gemmStrided<Scalar>(t, l.view(), l.transposed(), r.view(), r.transposed(), alpha,
                            accumulate);
      }
      return;
    }
  }
  GemmMatrix<Scalar> t(dst.rows(), dst.cols());
  GemmTarget<Scalar> target(t.data(), t.rows(), t.cols(), Eigen::OuterStride<>(t.rows()));
  gemmStrided<Scalar>(target, l.view(), l.transposed(), r.view(), r.transposed(), alpha, false);
  if (accumulate)
    dst += t;
  else
    dst = t;
}

/// `dst.noalias() = alpha * lhs * rhs`, alpha applied to the accumulated sums as Eigen does.
template <typename Dst, typename Lhs, typename Rhs>
void gemm(Dst&& dst, const Lhs& lhs, const Rhs& rhs,
          typename std::remove_cvref_t<Dst>::Scalar alpha = 1) {
  gemmInto(dst, lhs, rhs, alpha, false);
}

/// `dst.noalias() += alpha * lhs * rhs`.
template <typename Dst, typename Lhs, typename Rhs>
void gemmAdd(Dst&& dst, const Lhs& lhs, const Rhs& rhs,
             typename std::remove_cvref_t<Dst>::Scalar alpha = 1) {
  gemmInto(dst, lhs, rhs, alpha, true);
}

/// `dst.noalias() -= lhs * rhs`.
template <typename Dst, typename Lhs, typename Rhs>
void gemmSub(Dst&& dst, const Lhs& lhs, const Rhs& rhs) {
  gemmInto(dst, lhs, rhs, -1, true);
}

/// alpha · lhs · rhs as a new column-major matrix.
template <typename Lhs, typename Rhs>
GemmMatrix<typename Lhs::Scalar> product(const Lhs& lhs, const Rhs& rhs,
                                         typename Lhs::Scalar alpha = 1) {
  GemmMatrix<typename Lhs::Scalar> out;
  gemmInto(out, lhs, rhs, alpha, false);
  return out;
}

}  // namespace lora::detail
