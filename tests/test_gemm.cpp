// lora/detail/gemm.hpp: every kind of operand and destination against a naive product in long
// double, and bit for bit against Eigen's own expression on column-major operands wherever Eigen
// runs its GEMM or GEMV driver (rows + cols + depth >= 20; below, Eigen's coefficient-based loop
// sums in an order that depends on the destination's type).
#include <cmath>
#include <cstdint>
#include <type_traits>

#include <gtest/gtest.h>

#include "lora/detail/gemm.hpp"
#include "support/matrices.hpp"

namespace {

using Eigen::Index;
using lora::test::gaussian;
using lora::test::Mat;

template <typename Scalar>
using RowMat = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

/// L · R summed in long double, then rounded once.
template <typename Scalar>
Mat<Scalar> naiveProduct(const Mat<Scalar>& lhs, const Mat<Scalar>& rhs) {
  Mat<Scalar> out(lhs.rows(), rhs.cols());
  for (Index i = 0; i < lhs.rows(); ++i)
    for (Index j = 0; j < rhs.cols(); ++j) {
      long double sum = 0;
      for (Index k = 0; k < lhs.cols(); ++k)
        sum += static_cast<long double>(lhs(i, k)) * static_cast<long double>(rhs(k, j));
      out(i, j) = static_cast<Scalar>(sum);
    }
  return out;
}

/// |got - want| within a few roundings of each entry's dot product of magnitudes. The operands
/// are copied into plain matrices: the reference never goes through the code under test.
template <typename Scalar>
void expectProduct(const Mat<Scalar>& got, const std::type_identity_t<Mat<Scalar>>& lhs,
                   const std::type_identity_t<Mat<Scalar>>& rhs) {
  ASSERT_EQ(got.rows(), lhs.rows());
  ASSERT_EQ(got.cols(), rhs.cols());
  const Mat<Scalar> want = naiveProduct<Scalar>(lhs, rhs);
  const Mat<Scalar> bound = naiveProduct<Scalar>(lhs.cwiseAbs(), rhs.cwiseAbs());
  const double eps = static_cast<double>(Eigen::NumTraits<Scalar>::epsilon());
  for (Index i = 0; i < got.rows(); ++i)
    for (Index j = 0; j < got.cols(); ++j)
      EXPECT_LE(std::abs(static_cast<double>(got(i, j)) - static_cast<double>(want(i, j))),
                4.0 * eps * static_cast<double>(lhs.cols() + 1) * static_cast<double>(bound(i, j)))
          << "entry (" << i << ", " << j << ")";
}

template <typename Scalar>
class Gemm : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(Gemm, Scalars);

// (m, k, n): below Eigen's coefficient-based threshold, above it (blocked GEMM), a matrix-vector
// and a vector-matrix shape (Eigen's GEMV), an empty inner dimension.
const Index kShapes[][3] = {{3, 4, 2}, {67, 45, 38}, {70, 33, 1}, {1, 50, 41}, {5, 0, 4}};

TYPED_TEST(Gemm, ColumnMajorOperandsMatchEigen) {
  using Scalar = TypeParam;
  std::uint64_t seed = 1;
  for (const auto& s : kShapes) {
    const Mat<Scalar> L = gaussian<Scalar>(s[0], s[1], seed++),
                      R = gaussian<Scalar>(s[1], s[2], seed++);
    const Mat<Scalar> Lt = L.transpose(), Rt = R.transpose();
    const bool exact = s[0] + s[1] + s[2] >= 20;
    const auto same = [&](const Mat<Scalar>& got, const Mat<Scalar>& want) {
      if (exact) return got == want;
      return got.isApprox(want, 8 * Eigen::NumTraits<Scalar>::epsilon()) ||
             (got - want).norm() <= 8 * Eigen::NumTraits<Scalar>::epsilon() * want.norm();
    };
    Mat<Scalar> want, got;
    want.noalias() = L * R;
    lora::detail::gemm(got, L, R);
    EXPECT_TRUE(same(got, want)) << s[0] << "x" << s[1] << "x" << s[2];
    want.noalias() = Lt.transpose() * R;
    lora::detail::gemm(got, Lt.transpose(), R);
    EXPECT_TRUE(same(got, want));
    want.noalias() = L * Rt.transpose();
    lora::detail::gemm(got, L, Rt.transpose());
    EXPECT_TRUE(same(got, want));
    want.noalias() = Lt.transpose() * Rt.transpose();
    lora::detail::gemm(got, Lt.transpose(), Rt.transpose());
    EXPECT_TRUE(same(got, want));
    // Accumulation and alpha = -1: Eigen's += and -=.
    const Mat<Scalar> C0 = gaussian<Scalar>(s[0], s[2], seed++);
    want = C0;
    want.noalias() += L * R;
    got = C0;
    lora::detail::gemmAdd(got, L, R);
    EXPECT_TRUE(same(got, want));
    want = C0;
    want.noalias() -= L * Rt.transpose();
    got = C0;
    lora::detail::gemmSub(got, L, Rt.transpose());
    EXPECT_TRUE(same(got, want));
    // A scale taken out of the product, as Eigen does with (s L) R.
    const Scalar alpha = Scalar(0.37);
    want.noalias() = (alpha * L) * R;
    EXPECT_TRUE(same(lora::detail::product(L, R, alpha), want));
    if (s[1] == 0) {
      EXPECT_TRUE(got == C0);
    }
  }
}

TYPED_TEST(Gemm, EveryOperandKind) {
  using Scalar = TypeParam;
  const Mat<Scalar> big = gaussian<Scalar>(60, 50, 11);
  const RowMat<Scalar> rowMajor = gaussian<Scalar>(37, 29, 12);
  const Mat<Scalar> R = gaussian<Scalar>(29, 23, 13);
  // Row-major, a block of it, its transpose.
  expectProduct(lora::detail::product(rowMajor, R), rowMajor, R);
  expectProduct(lora::detail::product(rowMajor.middleRows(3, 20), R), rowMajor.middleRows(3, 20),
                R);
  expectProduct(lora::detail::product(rowMajor.transpose(), gaussian<Scalar>(37, 5, 14)),
                Mat<Scalar>(rowMajor.transpose()), gaussian<Scalar>(37, 5, 14));
  // Blocks with an outer stride, a Map, a Ref, a block of a transpose.
  const auto block = big.block(2, 3, 40, 29);
  expectProduct(lora::detail::product(block, R), Mat<Scalar>(block), R);
  const Eigen::Map<const Mat<Scalar>, 0, Eigen::OuterStride<>> map(big.data() + 1, 29, 30,
                                                                   Eigen::OuterStride<>(60));
  expectProduct(lora::detail::product(map.transpose(), R), Mat<Scalar>(map.transpose()), R);
  const Eigen::Ref<const Mat<Scalar>> ref = big.middleCols(4, 29);
  expectProduct(lora::detail::product(ref, R), Mat<Scalar>(ref), R);
  expectProduct(lora::detail::product(big.transpose().middleCols(1, 29), R.leftCols(7)),
                Mat<Scalar>(big.transpose().middleCols(1, 29)), Mat<Scalar>(R.leftCols(7)));
  // No unit-stride storage: a row of a column-major matrix, an expression, a vector.
  expectProduct(lora::detail::product(big.row(5).head(29), R), Mat<Scalar>(big.row(5).head(29)), R);
  const Mat<Scalar> sum = R + R;
  expectProduct(lora::detail::product(big.leftCols(29), R + R), Mat<Scalar>(big.leftCols(29)), sum);
  const Eigen::Matrix<Scalar, Eigen::Dynamic, 1> v = R.col(2);
  expectProduct(lora::detail::product(big.leftCols(29), v), Mat<Scalar>(big.leftCols(29)),
                Mat<Scalar>(v));
}

TYPED_TEST(Gemm, EveryDestinationKind) {
  using Scalar = TypeParam;
  const Mat<Scalar> L = gaussian<Scalar>(31, 17, 21), R = gaussian<Scalar>(17, 26, 22);
  // A plain matrix of the wrong size is resized; a row-major one is written through its transpose.
  Mat<Scalar> resized(2, 3);
  lora::detail::gemm(resized, L, R);
  expectProduct(resized, L, R);
  RowMat<Scalar> rowMajor;
  lora::detail::gemm(rowMajor, L, R);
  expectProduct(Mat<Scalar>(rowMajor), L, R);
  // A block of a larger matrix: only the block changes, and += adds to what it held.
  Mat<Scalar> host = Mat<Scalar>::Constant(40, 30, Scalar(2));
  lora::detail::gemmAdd(host.block(4, 3, 31, 26), L, R);
  expectProduct(Mat<Scalar>(host.block(4, 3, 31, 26).array() - Scalar(2)), L, R);
  EXPECT_TRUE((host.topRows(4).array() == Scalar(2)).all());
  EXPECT_TRUE((host.leftCols(3).array() == Scalar(2)).all());
  EXPECT_TRUE((host.bottomRows(5).array() == Scalar(2)).all());
  EXPECT_TRUE((host.rightCols(1).array() == Scalar(2)).all());
  // A block of a row-major matrix, a Ref, and a destination without unit stride (a transposed
  // row block of a column-major matrix is fine; a row is copied through a temporary).
  RowMat<Scalar> rowHost = RowMat<Scalar>::Zero(35, 30);
  lora::detail::gemm(rowHost.block(1, 2, 31, 26), L, R);
  expectProduct(Mat<Scalar>(rowHost.block(1, 2, 31, 26)), L, R);
  Mat<Scalar> refHost = Mat<Scalar>::Zero(31, 26);
  Eigen::Ref<Mat<Scalar>> ref(refHost);
  lora::detail::gemm(ref, L, R);
  expectProduct(refHost, L, R);
  Mat<Scalar> rows = Mat<Scalar>::Zero(3, 26);
  lora::detail::gemm(rows.row(1), L.row(7), R);
  expectProduct(Mat<Scalar>(rows.row(1)), Mat<Scalar>(L.row(7)), R);
  EXPECT_TRUE(rows.row(0).isZero(0) && rows.row(2).isZero(0));
  lora::detail::gemmSub(rows.row(1), L.row(7), R);
  EXPECT_LE(rows.row(1).cwiseAbs().maxCoeff(), 0) << "x - x is 0 exactly";
}

}  // namespace
