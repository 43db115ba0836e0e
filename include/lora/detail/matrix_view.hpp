#pragma once
/// \file matrix_view.hpp
/// \brief Internal: a read-only view of any matrix whose coefficients lie in memory with one unit
/// stride (column-major or row-major, with an outer stride), so that code taking one is compiled
/// once per Scalar instead of once per caller's Eigen type.

#include <algorithm>
#include <optional>
#include <type_traits>

#include <Eigen/Core>

namespace lora::detail {

/// Coefficient (i, j) at data[i + j·outerStride] (column-major) or data[i·outerStride + j]
/// (row-major). visit() hands the matching Eigen::Map to a generic callable: code written once
/// is instantiated for exactly two layouts.
template <typename Scalar>
struct ConstMatrixView {
  using Index = Eigen::Index;
  using ColMap = Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>, 0,
                            Eigen::OuterStride<>>;
  using RowMap =
      Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>, 0,
                 Eigen::OuterStride<>>;

  const Scalar* data = nullptr;
  Index rows = 0, cols = 0, outerStride = 1;
  bool rowMajor = false;

  template <typename F>
  decltype(auto) visit(F&& f) const {
    if (rowMajor) return f(RowMap(data, rows, cols, Eigen::OuterStride<>(outerStride)));
    return f(ColMap(data, rows, cols, Eigen::OuterStride<>(outerStride)));
  }
  /// The column-major view as a map (precondition: !rowMajor).
  ColMap colMap() const { return ColMap(data, rows, cols, Eigen::OuterStride<>(outerStride)); }
};

/// The view of \p m's own storage, or nothing when it has none usable (an expression without
/// direct access, an inner stride other than 1, an outer stride that makes rows or columns
/// overlap).
template <typename Derived>
std::optional<ConstMatrixView<typename Derived::Scalar>> viewOf(
    const Eigen::MatrixBase<Derived>& m) {
  if constexpr ((Derived::Flags & Eigen::DirectAccessBit) != 0) {
    const Derived& d = m.derived();
    const Eigen::Index rows = d.rows(), cols = d.cols();
    const Eigen::Index rowStride = d.rowStride(), colStride = d.colStride();
    // A single row or column has no stride across it: any layout reads it.
    if ((rowStride == 1 || rows <= 1) && (cols <= 1 || colStride >= rows))
      return ConstMatrixView<typename Derived::Scalar>{
          d.data(), rows, cols, std::max<Eigen::Index>(cols <= 1 ? rows : colStride, 1), false};
    if ((colStride == 1 || cols <= 1) && (rows <= 1 || rowStride >= cols))
      return ConstMatrixView<typename Derived::Scalar>{
          d.data(), rows, cols, std::max<Eigen::Index>(rows <= 1 ? cols : rowStride, 1), true};
  }
  return std::nullopt;
}

/// The column-major map of \p m's own storage, or nothing when it is not one (see viewOf()).
template <typename Derived>
std::optional<Eigen::Map<Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>, 0,
                         Eigen::OuterStride<>>>
columnMajorMapOf(Eigen::MatrixBase<Derived>& m) {
  if constexpr ((Derived::Flags & Eigen::DirectAccessBit) != 0 &&
                (Derived::Flags & Eigen::LvalueBit) != 0) {
    Derived& d = m.derived();
    if (auto v = viewOf(d); v && !v->rowMajor)
      return Eigen::Map<Eigen::Matrix<typename Derived::Scalar, Eigen::Dynamic, Eigen::Dynamic>, 0,
                        Eigen::OuterStride<>>(d.data(), v->rows, v->cols,
                                              Eigen::OuterStride<>(v->outerStride));
  }
  return std::nullopt;
}

}  // namespace lora::detail
