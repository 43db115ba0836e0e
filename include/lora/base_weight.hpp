#pragma once
/// \file base_weight.hpp
/// \brief Non-owning views of a caller's frozen base weight W (out x in) and bias b (out).

#include <type_traits>

#include "lora/detail/eigen.hpp"

#include "lora/detail/aliasing.hpp"
#include "lora/error.hpp"
#include "lora/threads.hpp"

namespace lora {

/// Memory order of a matrix buffer. PyTorch tensors are RowMajor; Eigen's default is ColMajor.
enum class Layout { ColMajor, RowMajor };

/// \brief A view of the base weight W (out x in) that the caller owns; nothing is copied.
///
/// Built from any Eigen lvalue with direct access and unit inner stride (Matrix, row-major
/// Matrix, Map, a Block of columns...), or from a raw pointer. A view from a const object is
/// read-only: a layer bound to it can run forward and backward but cannot merge. The caller keeps
/// the memory alive while a layer is bound to it.
///
/// \code
/// Eigen::MatrixXf W = ...;                                  // out x in, the model's weight
/// layer.bindBase(W, bias);                                  // W is used in place
/// float* torchBuffer = ...;                                 // row-major (out, in) from PyTorch
/// layer.bindBase(lora::BaseWeight<float>(torchBuffer, out, in, lora::Layout::RowMajor));
/// \endcode
template <typename Scalar>
class BaseWeight {
 public:
  using Index = Eigen::Index;
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::ColMajor>;
  using RowMatrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using ColMap = Eigen::Map<Matrix, 0, Eigen::OuterStride<>>;
  using RowMap = Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>>;
  using ConstColMap = Eigen::Map<const Matrix, 0, Eigen::OuterStride<>>;
  using ConstRowMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;

  BaseWeight() = default;

  /// A view of an Eigen lvalue, writable (the layer may merge into it) when the expression type
  /// is: a Matrix, a Map or Block of a non-const Matrix. A Map or Ref of const data, or a Block of
  /// a const Matrix, gives a read-only view even when the object itself is not const.
  template <typename Derived>
  BaseWeight(Eigen::DenseBase<Derived>& w)  // NOLINT(google-explicit-constructor)
      : BaseWeight(viewOf(w.derived(), (Derived::Flags & Eigen::LvalueBit) != 0)) {}

  /// A read-only view of a const Eigen lvalue.
  template <typename Derived>
  BaseWeight(const Eigen::DenseBase<Derived>& w)  // NOLINT(google-explicit-constructor)
      : BaseWeight(viewOf(const_cast<Derived&>(w.derived()), false)) {}

  /// Temporaries would dangle: bind to an object that outlives the layer's use of it.
  template <typename Derived>
  BaseWeight(Eigen::DenseBase<Derived>&& w) = delete;

  /// A writable view of a raw buffer; \p outerStride defaults to the dense one.
  BaseWeight(Scalar* data, Index out, Index in, Layout layout, Index outerStride = -1)
      : BaseWeight(data, out, in, layout, outerStride, true) {}
  /// A read-only view of a raw buffer.
  BaseWeight(const Scalar* data, Index out, Index in, Layout layout, Index outerStride = -1)
      : BaseWeight(const_cast<Scalar*>(data), out, in, layout, outerStride, false) {}

  Index rows() const noexcept { return m_rows; }
  Index cols() const noexcept { return m_cols; }
  Layout layout() const noexcept { return m_layout; }
  bool writable() const noexcept { return m_writable; }
  bool empty() const noexcept { return m_data == nullptr; }
  const Scalar* data() const noexcept { return m_data; }
  /// The bytes the view spans (empty for an empty view).
  detail::ByteRange byteRange() const noexcept {
    const bool rowMajor = m_layout == Layout::RowMajor;
    return detail::byteRange(m_data, rowMajor ? m_cols : m_rows, rowMajor ? m_rows : m_cols, 1,
                             m_outerStride);
  }

  /// Calls f with a const Eigen::Map of W in its own layout.
  template <typename F>
  decltype(auto) visit(F&& f) const {
    if (m_layout == Layout::RowMajor)
      return f(ConstRowMap(m_data, m_rows, m_cols, Eigen::OuterStride<>(m_outerStride)));
    return f(ConstColMap(m_data, m_rows, m_cols, Eigen::OuterStride<>(m_outerStride)));
  }
  /// Calls f with a writable Eigen::Map of W (only for writable views).
  template <typename F>
  decltype(auto) visitMutable(F&& f) const {
    if (m_layout == Layout::RowMajor) {
      RowMap map(m_data, m_rows, m_cols, Eigen::OuterStride<>(m_outerStride));
      return f(map);
    }
    ColMap map(m_data, m_rows, m_cols, Eigen::OuterStride<>(m_outerStride));
    return f(map);
  }

 private:
  BaseWeight(Scalar* data, Index out, Index in, Layout layout, Index outerStride, bool writable)
      : m_data(data), m_rows(out), m_cols(in), m_layout(layout), m_writable(writable) {
    const Index dense = layout == Layout::RowMajor ? in : out;
    m_outerStride = outerStride < 0 ? dense : outerStride;
    if (data == nullptr)
      detail::fail("BaseWeight::BaseWeight", "expected a non-null data pointer, got null");
    if (out < 1 || in < 1)
      detail::fail("BaseWeight::BaseWeight", "expected a non-empty weight, got {}x{}", out, in);
    if (m_outerStride < dense)
      detail::fail("BaseWeight::BaseWeight", "expected an outer stride >= {}, got {}", dense,
                   m_outerStride);
  }

  template <typename Derived>
  static BaseWeight viewOf(Derived& w, bool writable) {
    static_assert(bool(Derived::Flags & Eigen::DirectAccessBit),
                  "lora::BaseWeight: the weight must be an Eigen object with direct memory access "
                  "(Matrix, Map or Block), not an expression");
    if (w.innerStride() != 1)
      detail::fail("BaseWeight::BaseWeight", "expected a unit inner stride, got {}",
                   w.innerStride());
    const Layout layout = Derived::IsRowMajor ? Layout::RowMajor : Layout::ColMajor;
    return BaseWeight(const_cast<Scalar*>(w.data()), w.rows(), w.cols(), layout, w.outerStride(),
                      writable);
  }

  Scalar* m_data = nullptr;
  Index m_rows = 0, m_cols = 0, m_outerStride = 0;
  Layout m_layout = Layout::ColMajor;
  bool m_writable = false;
};

/// \brief A read-only view of the base bias (out entries) that the caller owns; may be empty.
template <typename Scalar>
class BaseBias {
 public:
  using Index = Eigen::Index;
  using ConstMap =
      Eigen::Map<const Eigen::Matrix<Scalar, Eigen::Dynamic, 1>, 0, Eigen::InnerStride<>>;

  BaseBias() = default;
  template <typename Derived>
  BaseBias(const Eigen::DenseBase<Derived>& b)  // NOLINT(google-explicit-constructor)
      : m_data(b.derived().data()), m_size(b.size()), m_stride(b.derived().innerStride()) {
    static_assert(bool(Derived::Flags & Eigen::DirectAccessBit),
                  "lora::BaseBias: the bias must be an Eigen object with direct memory access");
    if (b.rows() != 1 && b.cols() != 1)
      detail::fail("BaseBias::BaseBias", "expected a vector, got a {}x{} matrix", b.rows(),
                   b.cols());
  }
  template <typename Derived>
  BaseBias(Eigen::DenseBase<Derived>&& b) = delete;
  /// A bias of \p size entries at \p data (null with size 0: no bias).
  BaseBias(const Scalar* data, Index size) : m_data(data), m_size(size), m_stride(1) {
    if (size < 0) detail::fail("BaseBias::BaseBias", "expected a size >= 0, got {}", size);
    if (data == nullptr && size > 0)
      detail::fail("BaseBias::BaseBias",
                   "expected a non-null data pointer for {} entries, got null", size);
    if (size == 0) m_data = nullptr;
  }

  bool empty() const noexcept { return m_data == nullptr; }
  Index size() const noexcept { return m_size; }
  ConstMap map() const { return ConstMap(m_data, m_size, Eigen::InnerStride<>(m_stride)); }

 private:
  const Scalar* m_data = nullptr;
  Index m_size = 0, m_stride = 1;
};

}  // namespace lora
