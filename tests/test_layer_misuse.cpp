// lora::Layer misused as a careless caller would: read-only weights (really read-only pages),
// outputs that alias inputs or the layer's own state, copies of bound and merged layers, raw
// bias pointers. Each case gets the right answer or a lora::Error that changes nothing.
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include "lora/layer.hpp"
#include "support/errors.hpp"
#include "support/matrices.hpp"

namespace {

using lora::test::errorOf;
using lora::test::gaussian;
using lora::test::Mat;
using lora::test::tolerance;
using lora::test::Vec;

template <typename S>
lora::Layer<S> trained(Eigen::Index out, Eigen::Index in, Eigen::Index r, std::uint64_t seed) {
  return lora::Layer<S>::fromFactors(gaussian<S>(r, in, seed, 0.3),
                                     gaussian<S>(out, r, seed + 1, 0.3), 2.0 * double(r));
}

using lora::test::relErr;

// Pages that the process may read and not write: a write is SIGSEGV, not a wrong number.
class ReadOnlyPages {
 public:
  explicit ReadOnlyPages(std::size_t bytes) {
    const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
    m_size = (bytes + page - 1) / page * page;
    m_data = mmap(nullptr, m_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m_data == MAP_FAILED) throw std::runtime_error("mmap failed");
  }
  ReadOnlyPages(const ReadOnlyPages&) = delete;
  ReadOnlyPages& operator=(const ReadOnlyPages&) = delete;
  ~ReadOnlyPages() { munmap(m_data, m_size); }
  void* data() const { return m_data; }
  void protect() const {
    if (mprotect(m_data, m_size, PROT_READ) != 0) throw std::runtime_error("mprotect failed");
  }

 private:
  void* m_data = nullptr;
  std::size_t m_size = 0;
};

template <typename S>
class LayerMisuse : public ::testing::Test {};
using Scalars = ::testing::Types<float, double>;
TYPED_TEST_SUITE(LayerMisuse, Scalars);

// A Map of const data, a Ref to const, a Block of a const matrix: the C++ objects are not const,
// their expression types are read-only. Bound, they run forward and backward; merge and
// unmerge throw before touching the weight (here on read-only pages, where a write would crash).
TYPED_TEST(LayerMisuse, ReadOnlyStorageIsUsedAndNeverWritten) {
  using S = TypeParam;
  const Eigen::Index out = 6, in = 5;
  const Mat<S> W = gaussian<S>(out, in, 1);
  ReadOnlyPages pages(sizeof(S) * std::size_t(out * in));
  std::memcpy(pages.data(), W.data(), sizeof(S) * std::size_t(out * in));
  pages.protect();
  const S* ro = static_cast<const S*>(pages.data());
  const Mat<S> X = gaussian<S>(4, in, 2), dY = gaussian<S>(4, out, 3);

  auto reference = trained<S>(out, in, 2, 7);
  Mat<S> Wcopy = W;
  reference.bindBase(Wcopy);
  const Mat<S> want = reference.forward(X);

  Eigen::Map<const Mat<S>> constMap(ro, out, in);
  Eigen::Ref<const Mat<S>> constRef(constMap);
  auto constBlock = W.block(0, 0, out, in);  // Block<const Mat<S>>: W is const
  const std::vector<lora::BaseWeight<S>> views = {
      lora::BaseWeight<S>(constMap), lora::BaseWeight<S>(constRef), lora::BaseWeight<S>(constBlock),
      lora::BaseWeight<S>(ro, out, in, lora::Layout::ColMajor)};
  for (std::size_t i = 0; i < views.size(); ++i) {
    SCOPED_TRACE(i);
    EXPECT_FALSE(views[i].writable());
    auto layer = trained<S>(out, in, 2, 7);
    layer.bindBase(views[i]);
    EXPECT_LE(relErr<S>(layer.forward(X), want), 10 * tolerance<S>());
    Mat<S> dX;
    layer.backward(X, dY, dX);
    EXPECT_EQ(dX.rows(), 4);
    const std::string e = errorOf([&] { layer.merge(); });
    EXPECT_NE(e.find("Layer::merge"), std::string::npos) << e;
    EXPECT_NE(e.find("writable"), std::string::npos) << e;
    EXPECT_FALSE(layer.isMerged());
    EXPECT_LE(relErr<S>(layer.forward(X), want), 10 * tolerance<S>());
  }
  EXPECT_EQ(Mat<S>(Eigen::Map<const Mat<S>>(ro, out, in)), W);
  // A Map and a Block of a non-const matrix stay writable.
  Mat<S> Wm = W;
  Eigen::Map<Mat<S>> map(Wm.data(), out, in);
  EXPECT_TRUE(lora::BaseWeight<S>(map).writable());
  auto block = Wm.block(0, 0, out, in);
  EXPECT_TRUE(lora::BaseWeight<S>(block).writable());
}

// forward(X, X) on a square layer, an output over part of the input, backward with dX over X or
// dY: the answers equal those of separate buffers.
TYPED_TEST(LayerMisuse, OutputsThatAliasInputsGetTheRightAnswer) {
  using S = TypeParam;
  const Eigen::Index n = 8;
  Mat<S> W = gaussian<S>(n, n, 1);
  Vec<S> b = gaussian<S>(n, 1, 2);
  auto layer = trained<S>(n, n, 3, 4);
  layer.bindBase(W, b);
  const Mat<S> X0 = gaussian<S>(n, n, 5), dY0 = gaussian<S>(n, n, 6);
  const Mat<S> Y0 = layer.forward(X0);

  Mat<S> X = X0;
  layer.forward(X, X);
  EXPECT_LE(relErr<S>(X, Y0), 10 * tolerance<S>());

  // Output rows 2..5 of a taller buffer whose rows 0..7 are the input.
  Mat<S> tall(n + 4, n);
  tall.topRows(n) = X0;
  auto in = tall.topRows(n);
  auto outRows = tall.middleRows(2, n);
  layer.forward(in, outRows);
  EXPECT_LE(relErr<S>(Mat<S>(tall.middleRows(2, n)), Y0), 10 * tolerance<S>());

  // Row-major views of the same buffer (the header-only path).
  using RowMat = Eigen::Matrix<S, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  RowMat R = X0;
  layer.forward(R, R);
  EXPECT_LE(relErr<S>(Mat<S>(R), Y0), 10 * tolerance<S>());

  // backward: the reference with separate buffers, then dX over X and dX over dY.
  Mat<S> dXwant;
  layer.zeroGrad();
  layer.backward(X0, dY0, dXwant);
  const Mat<S> gA = layer.gradA(), gB = layer.gradB();
  for (int which = 0; which < 2; ++which) {
    SCOPED_TRACE(which);
    Mat<S> Xb = X0, dYb = dY0;
    layer.zeroGrad();
    if (which == 0) {
      layer.backward(Xb, dYb, Xb);
      EXPECT_LE(relErr<S>(Xb, dXwant), 10 * tolerance<S>());
    } else {
      layer.backward(Xb, dYb, dYb);
      EXPECT_LE(relErr<S>(dYb, dXwant), 10 * tolerance<S>());
    }
    EXPECT_LE(relErr<S>(layer.gradA(), gA), 10 * tolerance<S>());
    EXPECT_LE(relErr<S>(layer.gradB(), gB), 10 * tolerance<S>());
  }
}

// The layer's own gradients given as input: read before they are overwritten.
TYPED_TEST(LayerMisuse, GradientsGivenAsInputAreReadFirst) {
  using S = TypeParam;
  const Eigen::Index r = 4, in = 6, out = 4;
  auto layer = trained<S>(out, in, r, 3);
  const Mat<S> X0 = gaussian<S>(r, in, 1), dY0 = gaussian<S>(r, out, 2);
  layer.backward(X0, dY0, lora::GradMode::Overwrite);  // gradA is r x in: the shape of X
  const Mat<S> Xsame = layer.gradA();
  auto expect = trained<S>(out, in, r, 3);
  expect.backward(Xsame, dY0, lora::GradMode::Overwrite);
  layer.backward(layer.gradA(), dY0, lora::GradMode::Overwrite);
  EXPECT_LE(relErr<S>(layer.gradA(), expect.gradA()), 10 * tolerance<S>());
  EXPECT_LE(relErr<S>(layer.gradB(), expect.gradB()), 10 * tolerance<S>());
}

// An output over W, A, B or a gradient would destroy what the layer reads: refused, nothing
// changed.
TYPED_TEST(LayerMisuse, OutputsOverTheLayersStateAreRefused) {
  using S = TypeParam;
  const Eigen::Index n = 6, r = 6;
  Mat<S> W = gaussian<S>(n, n, 1);
  auto layer = trained<S>(n, n, r, 2);
  layer.bindBase(W);
  const Mat<S> X = gaussian<S>(n, n, 3), dY = gaussian<S>(n, n, 4);
  layer.backward(X, dY);
  const Mat<S> W0 = W, A0 = layer.A(), B0 = layer.B(), gA0 = layer.gradA(), gB0 = layer.gradB();
  std::string e = errorOf([&] { layer.forward(X, W); });
  EXPECT_NE(e.find("Layer::forward(): expected an output that shares no memory with the layer's "
                   "bound base weight"),
            std::string::npos)
      << e;
  e = errorOf([&] { layer.forward(X, layer.A()); });
  EXPECT_NE(e.find("factors or gradients"), std::string::npos) << e;
  e = errorOf([&] { layer.backward(X, dY, layer.gradB()); });
  EXPECT_NE(e.find("Layer::backward(): expected an output that shares no memory"),
            std::string::npos)
      << e;
  EXPECT_EQ(W, W0);
  EXPECT_EQ(layer.A(), A0);
  EXPECT_EQ(layer.B(), B0);
  EXPECT_EQ(layer.gradA(), gA0);
  EXPECT_EQ(layer.gradB(), gB0);
}

// Copies are unbound and unmerged, so two copies can never merge or unmerge one delta twice
// into one weight; a move hands the binding over; assigning over a merged layer is refused.
TYPED_TEST(LayerMisuse, CopiesCannotCorruptASharedWeight) {
  using S = TypeParam;
  Mat<S> W = gaussian<S>(6, 5, 1);
  const Mat<S> W0 = W;
  auto layer = trained<S>(6, 5, 2, 3);
  layer.bindBase(W);
  layer.merge();
  const Mat<S> Wmerged = W;

  lora::Layer<S> copy = layer;
  EXPECT_FALSE(copy.hasBase());
  EXPECT_FALSE(copy.isMerged());
  EXPECT_EQ(copy.A(), layer.A());
  EXPECT_EQ(copy.B(), layer.B());
  EXPECT_THROW(copy.unmerge(), lora::Error);
  EXPECT_THROW(copy.merge(), lora::Error);  // no base
  EXPECT_EQ(W, Wmerged);

  // Assigning over the merged layer would strand its delta in W.
  const std::string e = errorOf([&] { layer = copy; });
  EXPECT_NE(e.find("Layer::operator=(): expected an unmerged layer"), std::string::npos) << e;
  EXPECT_TRUE(layer.isMerged());
  EXPECT_THROW(layer = std::move(copy), lora::Error);
  EXPECT_TRUE(layer.isMerged());

  // A move carries the binding and the merge; the moved-from layer is unbound.
  lora::Layer<S> moved = std::move(layer);
  EXPECT_TRUE(moved.isMerged());
  EXPECT_TRUE(moved.hasBase());
  EXPECT_FALSE(layer.hasBase());  // NOLINT(bugprone-use-after-move): documented state
  EXPECT_FALSE(layer.isMerged());
  moved.unmerge();
  EXPECT_LE(relErr<S>(W, W0), 10 * tolerance<S>());

  // Copy assignment to an unmerged layer: the target is unbound afterwards.
  auto other = trained<S>(6, 5, 2, 9);
  Mat<S> W2 = W0;
  other.bindBase(W2);
  other = moved;
  EXPECT_FALSE(other.hasBase());
  EXPECT_TRUE(moved.hasBase());
  // Self-assignment keeps everything.
  auto& alias = moved;
  moved = alias;
  EXPECT_TRUE(moved.hasBase());
}

TYPED_TEST(LayerMisuse, RawBiasPointersAreChecked) {
  using S = TypeParam;
  const std::string e = errorOf([] { lora::BaseBias<S>(nullptr, 3); });
  EXPECT_NE(
      e.find("BaseBias::BaseBias(): expected a non-null data pointer for 3 entries, got null"),
      std::string::npos)
      << e;
  EXPECT_THROW((lora::BaseBias<S>(nullptr, -1)), lora::Error);
  EXPECT_TRUE((lora::BaseBias<S>(nullptr, 0).empty()));
  const S values[2] = {S(1), S(2)};
  const lora::BaseBias<S> two(values, 2);
  EXPECT_EQ(two.size(), 2);
  EXPECT_EQ(two.map()(1), S(2));
}

// DoRA's merged rows are m_i times a unit vector: near the largest float they may round past
// it. Merge then either throws with W untouched or leaves every entry finite.
TEST(LayerMisuseDora, MergeNeverWritesInfinities) {
  const float big = std::numeric_limits<float>::max();
  for (float v : {1.0f, 3.0f, 7.0f, 1.7f, 0.3f, 1e-3f, 13.0f}) {
    SCOPED_TRACE(v);
    Mat<float> W = Mat<float>::Zero(3, 4);
    W(0, 1) = v;
    W(1, 2) = 2 * v;
    W(2, 3) = -v;
    const Mat<float> W0 = W;
    auto layer =
        lora::Layer<float>::fromFactors(Mat<float>::Zero(1, 4), Mat<float>::Zero(3, 1), 1.0);
    layer.bindBase(W);
    layer.setMagnitude(Vec<float>::Constant(3, big));
    try {
      layer.merge();
      EXPECT_TRUE(W.allFinite());
      layer.unmerge();
    } catch (const lora::Error& e) {
      EXPECT_NE(std::string(e.what()).find("overflow"), std::string::npos)
          << e.what();  // either check
      EXPECT_EQ(W, W0);
      EXPECT_FALSE(layer.isMerged());
    }
  }
}

// resize() at the current rank changes nothing: factors, alpha, gradients; no spectrum.
TYPED_TEST(LayerMisuse, ResizeAtTheCurrentRankIsANoOp) {
  using S = TypeParam;
  auto layer = trained<S>(6, 5, 3, 1);
  layer.backward(gaussian<S>(4, 5, 2), gaussian<S>(4, 6, 3));
  const Mat<S> A = layer.A(), B = layer.B(), gA = layer.gradA(), gB = layer.gradB();
  const double alpha = layer.alpha();
  const auto report = layer.resize(3);
  EXPECT_EQ(layer.A(), A);
  EXPECT_EQ(layer.B(), B);
  EXPECT_EQ(layer.gradA(), gA);
  EXPECT_EQ(layer.gradB(), gB);
  EXPECT_EQ(layer.alpha(), alpha);
  EXPECT_EQ(report.singularValues.size(), 0);
  EXPECT_EQ(report.transformA, Mat<S>::Identity(3, 3));
  EXPECT_EQ(report.transformB, Mat<S>::Identity(3, 3));
}

}  // namespace
