// Tests for lora/detail/half.hpp and lora/io/safetensors.hpp.

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <Eigen/Core>

#include "lora/detail/half.hpp"
#include "lora/error.hpp"
#include "lora/io/atomic_file.hpp"
#include "lora/io/safetensors.hpp"
#include "support/errors.hpp"

#if __has_include(<sys/resource.h>) && __has_include(<csignal>)
#include <sys/resource.h>

#include <csignal>
#define LORA_TEST_HAVE_RLIMIT 1
#endif
#if __has_include(<unistd.h>)
#include <unistd.h>
#endif

namespace {

namespace fs = std::filesystem;
using lora::DType;
using lora::SafeTensorsReader;
using lora::SafeTensorsWriter;
using lora::detail::bf16ToFloat;
using lora::detail::doubleToBf16;
using lora::detail::doubleToHalf;
using lora::detail::floatToBf16;
using lora::detail::floatToHalf;
using lora::detail::halfToFloat;

std::uint32_t bitsOf(float f) {
  return std::bit_cast<std::uint32_t>(f);
}
float floatOf(std::uint32_t u) {
  return std::bit_cast<float>(u);
}

using lora::test::errorOf;

// ---------------------------------------------------------------------------------------------
// half.hpp

TEST(HalfConversion, KnownF16Patterns) {
  EXPECT_EQ(bitsOf(halfToFloat(0x0000)), 0x00000000u);
  EXPECT_EQ(bitsOf(halfToFloat(0x8000)), 0x80000000u);  // -0
  EXPECT_EQ(halfToFloat(0x3c00), 1.0f);
  EXPECT_EQ(halfToFloat(0xc000), -2.0f);
  EXPECT_EQ(halfToFloat(0x3555), 0.333251953125f);
  EXPECT_EQ(halfToFloat(0x7bff), 65504.0f);                  // largest finite
  EXPECT_EQ(halfToFloat(0x0400), std::ldexp(1.0f, -14));     // smallest normal
  EXPECT_EQ(halfToFloat(0x0001), std::ldexp(1.0f, -24));     // smallest subnormal
  EXPECT_EQ(halfToFloat(0x03ff), std::ldexp(1023.0f, -24));  // largest subnormal
  EXPECT_EQ(halfToFloat(0x8001), -std::ldexp(1.0f, -24));
  EXPECT_EQ(halfToFloat(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_EQ(halfToFloat(0xfc00), -std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(halfToFloat(0x7e00)));
  EXPECT_TRUE(std::isnan(halfToFloat(0x7c01)));  // signalling NaN stays NaN
  EXPECT_TRUE(std::signbit(halfToFloat(0xfe00)));

  EXPECT_EQ(floatToHalf(0.0f), 0x0000);
  EXPECT_EQ(floatToHalf(-0.0f), 0x8000);
  EXPECT_EQ(floatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(floatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(floatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(floatToHalf(std::ldexp(1023.0f, -24)), 0x03ff);
  EXPECT_EQ(floatToHalf(std::numeric_limits<float>::infinity()), 0x7c00);
  EXPECT_EQ(floatToHalf(-std::numeric_limits<float>::infinity()), 0xfc00);
  EXPECT_EQ(floatToHalf(std::numeric_limits<float>::quiet_NaN()), 0x7e00);
  const std::uint16_t fromSignalling = floatToHalf(floatOf(0x7f800001u));
  EXPECT_TRUE(std::isnan(halfToFloat(fromSignalling))) << std::hex << fromSignalling;
  EXPECT_EQ(floatToHalf(floatOf(0xffc00000u)) & 0x8000, 0x8000);  // NaN keeps its sign
  EXPECT_EQ(doubleToHalf(0.1), 0x2e66);
  EXPECT_EQ(doubleToHalf(1.0 / 3.0), 0x3555);
}

TEST(HalfConversion, F16RoundsToNearestEven) {
  // Ties at 1.0 (ulp 2^-10): halfway to the odd neighbour goes down, to the even one goes up.
  EXPECT_EQ(floatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(floatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(floatToHalf(1.0f + std::ldexp(1.0f, -11) + std::ldexp(1.0f, -20)), 0x3c01);
  EXPECT_EQ(floatToHalf(1.0f + std::ldexp(1.0f, -11) - std::ldexp(1.0f, -20)), 0x3c00);
  // Overflow: max + ulp/2 = 65520 is a tie whose even neighbour is infinity.
  EXPECT_EQ(floatToHalf(65519.0f), 0x7bff);
  EXPECT_EQ(floatToHalf(65520.0f), 0x7c00);
  EXPECT_EQ(floatToHalf(1e6f), 0x7c00);
  EXPECT_EQ(floatToHalf(-1e30f), 0xfc00);
  // Subnormal range (quantum 2^-24).
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -25)), 0x0000);   // tie -> even 0
  EXPECT_EQ(floatToHalf(std::ldexp(3.0f, -26)), 0x0001);   // 0.75 quantum
  EXPECT_EQ(floatToHalf(std::ldexp(3.0f, -25)), 0x0002);   // tie 1.5 -> 2
  EXPECT_EQ(floatToHalf(std::ldexp(1.0f, -26)), 0x0000);   // 0.25 quantum
  EXPECT_EQ(floatToHalf(-std::ldexp(1.0f, -30)), 0x8000);  // underflow keeps sign
  EXPECT_EQ(floatToHalf(std::numeric_limits<float>::denorm_min()), 0x0000);
  EXPECT_EQ(floatToHalf(std::ldexp(2047.0f, -25)), 0x0400);  // 1023.5 quanta -> normal
  EXPECT_EQ(floatToHalf(std::ldexp(2045.0f, -25)), 0x03fe);  // 1022.5 -> 1022
  // double -> half rounds once: 1 + 2^-11 + 2^-40 is above the tie, but through float it
  // would become the tie 1 + 2^-11 and round down.
  const double x = 1.0 + std::ldexp(1.0, -11) + std::ldexp(1.0, -40);
  EXPECT_EQ(doubleToHalf(x), 0x3c01);
  EXPECT_EQ(floatToHalf(static_cast<float>(x)), 0x3c00);
  EXPECT_EQ(doubleToHalf(1e300), 0x7c00);
  EXPECT_EQ(doubleToHalf(1e-300), 0x0000);
}

TEST(HalfConversion, KnownBf16Patterns) {
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(floatToBf16(-0.0f), 0x8000);
  EXPECT_EQ(bitsOf(bf16ToFloat(0x8000)), 0x80000000u);
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(bf16ToFloat(0xff80), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::quiet_NaN()), 0x7fc0);
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(floatOf(0x7f800001u)))));  // payload in low bits
  EXPECT_EQ(bf16ToFloat(0x0001), floatOf(0x00010000u));                     // subnormal
  // Ties to even.
  EXPECT_EQ(floatToBf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(floatToBf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
  EXPECT_EQ(floatToBf16(floatOf(0x3f808001u)), 0x3f81);
  EXPECT_EQ(floatToBf16(floatOf(0x00008000u)), 0x0000);  // subnormal tie -> even
  EXPECT_EQ(floatToBf16(floatOf(0x00018000u)), 0x0002);
  EXPECT_EQ(floatToBf16(floatOf(0x00007fffu)), 0x0000);
  // Overflow: FLT_MAX is above the largest bf16 + half ulp.
  EXPECT_EQ(floatToBf16(std::numeric_limits<float>::max()), 0x7f80);
  EXPECT_EQ(floatToBf16(floatOf(0x7f7f7fffu)), 0x7f7f);
  EXPECT_EQ(doubleToBf16(0.1), 0x3dcd);
  EXPECT_EQ(doubleToBf16(1e300), 0x7f80);
  const double x = 1.0 + std::ldexp(1.0, -8) + std::ldexp(1.0, -40);  // above the tie
  EXPECT_EQ(doubleToBf16(x), 0x3f81);
}

TEST(HalfConversion, AllPatternsRoundTrip) {
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    const float f = halfToFloat(bits);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(halfToFloat(floatToHalf(f)))) << h;
    } else {
      ASSERT_EQ(floatToHalf(f), bits) << std::hex << h;
      ASSERT_EQ(doubleToHalf(static_cast<double>(f)), bits) << std::hex << h;
    }
    const float b = bf16ToFloat(bits);
    if (std::isnan(b)) {
      EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(b)))) << h;
    } else {
      ASSERT_EQ(floatToBf16(b), bits) << std::hex << h;
      ASSERT_EQ(bitsOf(b), static_cast<std::uint32_t>(h) << 16);
    }
  }
}

// Independent reference for float -> bf16: the nearer of the two bf16 neighbours (computed in
// double, where the differences are exact), ties to the even one.
std::uint16_t referenceBf16(float f) {
  const std::uint32_t u = bitsOf(f);
  const auto down = static_cast<std::uint16_t>(u >> 16);  // toward zero
  if ((u & 0xffffu) == 0) return down;
  const auto up = static_cast<std::uint16_t>(down + 1);  // away from zero (may become inf)
  const double x = std::fabs(static_cast<double>(f));
  const double lo = std::fabs(static_cast<double>(bf16ToFloat(down)));
  const double hi = (up & 0x7fffu) == 0x7f80u ? std::ldexp(1.0, 128)  // inf: as if 2^128
                                              : std::fabs(static_cast<double>(bf16ToFloat(up)));
  if (x - lo < hi - x) return down;
  if (x - lo > hi - x) return up;
  return (down & 1u) == 0 ? down : up;
}

TEST(HalfConversion, MatchesReferenceOnRandomValues) {
  std::mt19937 gen(1234);
  for (int i = 0; i < 200000; ++i) {
    const float f = floatOf(static_cast<std::uint32_t>(gen()));
    if (std::isnan(f)) continue;
    ASSERT_EQ(floatToBf16(f), referenceBf16(f)) << std::hex << bitsOf(f);
    ASSERT_EQ(doubleToBf16(static_cast<double>(f)), referenceBf16(f)) << std::hex << bitsOf(f);
#ifdef __FLT16_MAX__
    // The compiler's _Float16 is an independent oracle for F16 (tests only).
    const _Float16 h = static_cast<_Float16>(f);
    ASSERT_EQ(floatToHalf(f), std::bit_cast<std::uint16_t>(h)) << std::hex << bitsOf(f);
    const double d = std::ldexp(static_cast<double>(gen()) / 4294967296.0 - 0.5,
                                static_cast<int>(gen() % 40) - 28);
    ASSERT_EQ(doubleToHalf(d), std::bit_cast<std::uint16_t>(static_cast<_Float16>(d))) << d;
#endif
  }
#ifdef __FLT16_MAX__
  for (std::uint32_t h = 0; h <= 0xffff; ++h) {
    const float expected =
        static_cast<float>(std::bit_cast<_Float16>(static_cast<std::uint16_t>(h)));
    const float got = halfToFloat(static_cast<std::uint16_t>(h));
    if (std::isnan(expected)) {
      EXPECT_TRUE(std::isnan(got));
    } else {
      ASSERT_EQ(bitsOf(got), bitsOf(expected)) << std::hex << h;
    }
  }
#endif
}

// ---------------------------------------------------------------------------------------------
// DType

TEST(DTypeTest, NamesAndSizes) {
  const std::vector<std::pair<DType, std::size_t>> all = {
      {DType::Bool, 1}, {DType::U8, 1},      {DType::I8, 1},     {DType::I16, 2},
      {DType::U16, 2},  {DType::F16, 2},     {DType::BF16, 2},   {DType::I32, 4},
      {DType::U32, 4},  {DType::F32, 4},     {DType::F64, 8},    {DType::I64, 8},
      {DType::U64, 8},  {DType::F8_E4M3, 1}, {DType::F8_E5M2, 1}};
  for (const auto& [dtype, size] : all) {
    EXPECT_EQ(lora::dtypeSize(dtype), size) << lora::dtypeName(dtype);
    EXPECT_EQ(lora::parseDType(lora::dtypeName(dtype)), dtype);
  }
  EXPECT_EQ(lora::dtypeName(DType::Bool), "BOOL");
  EXPECT_EQ(lora::dtypeName(DType::BF16), "BF16");
  EXPECT_THROW(lora::parseDType("f32"), lora::Error);
  EXPECT_CONTAINS(errorOf([] { lora::parseDType("F128"); }), "F128");
}

// ---------------------------------------------------------------------------------------------
// Round trips through files

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("lorapp-") + info->test_suite_name() + "-" + info->name();
#ifdef __unix__
    name += "-" + std::to_string(::getpid());
#endif
    m_dir = fs::temp_directory_path() / name;
    fs::remove_all(m_dir);
    fs::create_directories(m_dir);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(m_dir, ec);
  }

  std::set<std::string> listing() const {
    std::set<std::string> out;
    for (const auto& e : fs::directory_iterator(m_dir)) out.insert(e.path().filename().string());
    return out;
  }

  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  }

  fs::path m_dir;
};

using SafeTensorsRoundTrip = TempDir;

template <typename Scalar>
Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> sampleMatrix(Eigen::Index rows,
                                                                   Eigen::Index cols) {
  Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic> m(rows, cols);
  std::mt19937 gen(static_cast<unsigned>(rows * 131 + cols));
  std::normal_distribution<double> dist(0.0, 3.0);
  for (Eigen::Index j = 0; j < cols; ++j) {
    for (Eigen::Index i = 0; i < rows; ++i) m(i, j) = static_cast<Scalar>(dist(gen));
  }
  return m;
}

// What a value becomes after a trip through `dtype`.
double expectedAfter(double x, DType dtype, bool fromFloat) {
  switch (dtype) {
    case DType::F32:
      return static_cast<float>(x);
    case DType::F64:
      return x;
    case DType::F16:
      return halfToFloat(fromFloat ? floatToHalf(static_cast<float>(x)) : doubleToHalf(x));
    default:
      return bf16ToFloat(fromFloat ? floatToBf16(static_cast<float>(x)) : doubleToBf16(x));
  }
}

template <typename Scalar>
void checkRoundTrip(const fs::path& file, DType dtype) {
  constexpr bool kFloat = std::is_same_v<Scalar, float>;
  auto m = sampleMatrix<Scalar>(5, 7);
  m(0, 0) = Scalar(0);
  m(1, 0) = -Scalar(0);
  m(2, 0) = std::numeric_limits<Scalar>::infinity();
  m(3, 0) = Scalar(1e5);  // overflows F16
  m(4, 0) = std::numeric_limits<Scalar>::denorm_min();
  const Eigen::Matrix<Scalar, Eigen::Dynamic, 1> v = sampleMatrix<Scalar>(9, 1);
  SafeTensorsWriter w;
  w.add("layer.weight", m, dtype).addVector("layer.bias", v, dtype);
  w.addVector("row", v.transpose(), dtype);
  w.add("empty", Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>(0, 3), dtype);
  w.write(file);

  const auto st = SafeTensorsReader::open(file);
  ASSERT_EQ(st.names(), (std::vector<std::string>{"layer.weight", "layer.bias", "row", "empty"}));
  EXPECT_EQ(st.info("layer.weight").shape, (std::vector<std::int64_t>{5, 7}));
  EXPECT_EQ(st.info("layer.weight").dtype, dtype);
  EXPECT_EQ(st.info("layer.bias").shape, (std::vector<std::int64_t>{9}));
  EXPECT_EQ(st.info("empty").shape, (std::vector<std::int64_t>{0, 3}));
  EXPECT_EQ(st.info("empty").numel(), 0);

  const auto check = [&](double got, double x) {
    const double want = expectedAfter(x, dtype, kFloat);
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got));
    } else {
      EXPECT_EQ(got, want) << "x = " << x << " dtype " << lora::dtypeName(dtype);
      EXPECT_EQ(std::signbit(got), std::signbit(want));
    }
  };
  const Eigen::MatrixXd md = st.matrix<double>("layer.weight");
  const Eigen::MatrixXf mf = st.matrix<float>("layer.weight");
  ASSERT_EQ(md.rows(), 5);
  ASSERT_EQ(md.cols(), 7);
  for (Eigen::Index i = 0; i < 5; ++i) {
    for (Eigen::Index j = 0; j < 7; ++j) {
      check(md(i, j), static_cast<double>(m(i, j)));
      check(static_cast<double>(mf(i, j)), static_cast<float>(md(i, j)));
    }
  }
  const Eigen::VectorXd vd = st.vector<double>("layer.bias");
  const Eigen::VectorXd rd = st.vector<double>("row");
  for (Eigen::Index i = 0; i < v.size(); ++i) {
    check(vd(i), static_cast<double>(v(i)));
    check(rd(i), static_cast<double>(v(i)));
  }
  EXPECT_EQ(st.matrix<double>("empty").rows(), 0);
  EXPECT_EQ(st.matrix<double>("empty").cols(), 3);

  // Row-major on disk: the second stored element is m(0, 1), read via flat() too.
  const Eigen::VectorXd flat = st.flat<double>("layer.weight");
  ASSERT_EQ(flat.size(), 35);
  EXPECT_EQ(flat(1), md(0, 1));
  EXPECT_EQ(flat(7), md(1, 0));
  EXPECT_EQ(st.rawBytes("layer.weight").size(), 35 * lora::dtypeSize(dtype));
}

TEST_F(SafeTensorsRoundTrip, AllFloatDTypesFromFloatAndDouble) {
  for (const DType dtype : {DType::F32, DType::F64, DType::F16, DType::BF16}) {
    SCOPED_TRACE(std::string(lora::dtypeName(dtype)));
    checkRoundTrip<float>(m_dir / "f.safetensors", dtype);
    checkRoundTrip<double>(m_dir / "d.safetensors", dtype);
  }
  EXPECT_EQ(listing(), (std::set<std::string>{"f.safetensors", "d.safetensors"}));
}

TEST_F(SafeTensorsRoundTrip, ExactValuesForF32AndF64) {
  Eigen::MatrixXd m(2, 3);
  m << 0.1, -1e-310, 1e300, 3.0, -0.0, 1.0 / 3.0;
  Eigen::MatrixXf f(2, 3);
  f << 0.1f, -1e-40f, 3e38f, 3.0f, -0.0f, 1.0f / 3.0f;
  SafeTensorsWriter w;
  w.add("d", m, DType::F64).add("f", f, DType::F32);
  w.write(m_dir / "x.safetensors");
  const auto st = SafeTensorsReader::open(m_dir / "x.safetensors");
  EXPECT_EQ(st.matrix<double>("d"), m);
  EXPECT_EQ(st.matrix<float>("f"), f);
  EXPECT_EQ(st.matrix<double>("f"), f.cast<double>());
  // Narrowing F64 -> float on read follows IEEE (1e300 -> inf, no UB).
  EXPECT_EQ(st.matrix<float>("d")(0, 2), std::numeric_limits<float>::infinity());
}

TEST_F(SafeTensorsRoundTrip, MetadataAndHeaderLayout) {
  SafeTensorsWriter w;
  w.setMetadata("format", "pt").setMetadata("note", "héllo").setMetadata("format", "np");
  w.addVector("b", Eigen::VectorXf::Ones(3), DType::F16);
  w.add("a", Eigen::MatrixXf::Ones(1, 1));
  w.write(m_dir / "m.safetensors");

  const std::string bytes = slurp(m_dir / "m.safetensors");
  ASSERT_GE(bytes.size(), 8u);
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i)
    n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  EXPECT_EQ(n % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + n + 3 * 2 + 4);
  const std::string header = bytes.substr(8, n);
  EXPECT_EQ(header.front(), '{');
  EXPECT_EQ(header.find_last_not_of(' '), header.rfind('}'));
  EXPECT_LT(header.find("\"b\""), header.find("\"a\""));  // insertion order

  const auto st = SafeTensorsReader::open(m_dir / "m.safetensors");
  EXPECT_EQ(st.metadata(),
            (std::map<std::string, std::string>{{"format", "np"}, {"note", "héllo"}}));
  EXPECT_EQ(st.names(), (std::vector<std::string>{"b", "a"}));
  EXPECT_EQ(st.size(), 2u);
  EXPECT_TRUE(st.contains("a"));
  EXPECT_FALSE(st.contains("c"));
  EXPECT_EQ(st.vector<float>("b"), Eigen::VectorXf::Ones(3));
}

TEST_F(SafeTensorsRoundTrip, ReadErrors) {
  SafeTensorsWriter w;
  w.add("m", Eigen::MatrixXf::Ones(2, 2)).addVector("v", Eigen::VectorXf::Ones(2));
  w.write(m_dir / "r.safetensors");
  const auto st = SafeTensorsReader::open(m_dir / "r.safetensors");

  EXPECT_THROW((void)st.info("nope"), lora::Error);
  EXPECT_CONTAINS(errorOf([&] { (void)st.info("nope"); }), "'nope'");
  EXPECT_THROW((void)st.vector<float>("m"), lora::Error);
  EXPECT_CONTAINS(errorOf([&] { (void)st.vector<float>("m"); }),
                  "expected a 1-D tensor, got shape [2, 2]");
  EXPECT_THROW((void)st.matrix<double>("v"), lora::Error);
  EXPECT_CONTAINS(errorOf([&] { (void)st.matrix<double>("v"); }),
                  "expected a 2-D tensor, got shape [2]");
  EXPECT_THROW((void)st.matrix<double>("missing"), lora::Error);

  const std::string missing = (m_dir / "missing.safetensors").string();
  EXPECT_THROW(SafeTensorsReader::open(missing), lora::Error);
  EXPECT_CONTAINS(errorOf([&] { SafeTensorsReader::open(missing); }), missing);
  EXPECT_CONTAINS(errorOf([&] { SafeTensorsReader::open(m_dir); }), "folder");

  // A truncated file on disk: the message names the path and the tensor.
  const fs::path cut = m_dir / "cut.safetensors";
  fs::copy_file(m_dir / "r.safetensors", cut);
  fs::resize_file(cut, fs::file_size(cut) - 2);
  const std::string message = errorOf([&] { SafeTensorsReader::open(cut); });
  EXPECT_CONTAINS(message, "SafeTensorsReader::open(): expected");
  EXPECT_CONTAINS(message, cut.string());
  EXPECT_CONTAINS(message, "'v'");
  EXPECT_CONTAINS(message, "beyond the buffer");
}

TEST_F(SafeTensorsRoundTrip, MappedReaderReadsWhatOpenReads) {
  SafeTensorsWriter w;
  Eigen::MatrixXf big(300, 200);  // more than a page, so release() drops whole pages
  for (Eigen::Index i = 0; i < big.size(); ++i) big.data()[i] = static_cast<float>(i) * 0.5f;
  w.setMetadata("format", "pt")
      .add("big", big)
      .addVector("v", Eigen::VectorXd::LinSpaced(5, 0, 1), DType::BF16);
  w.write(m_dir / "m.safetensors");
  const auto opened = SafeTensorsReader::open(m_dir / "m.safetensors");
  const auto mapped = SafeTensorsReader::map(m_dir / "m.safetensors");
  EXPECT_FALSE(opened.isMapped());
  EXPECT_TRUE(mapped.isMapped());
  EXPECT_EQ(mapped.names(), opened.names());
  EXPECT_EQ(mapped.metadata(), opened.metadata());
  EXPECT_EQ(mapped.matrix<float>("big"), big);
  EXPECT_EQ(mapped.vector<double>("v"), opened.vector<double>("v"));
  // Released bytes are read from the file again when used; a copy shares the mapping.
  mapped.release("big");
  mapped.release("v");
  opened.release("big");  // no effect on a reader that holds its bytes
  const SafeTensorsReader copy = mapped;
  EXPECT_EQ(copy.matrix<float>("big"), big);
  EXPECT_EQ(mapped.matrix<float>("big"), big);
  EXPECT_EQ(opened.matrix<float>("big"), big);
  EXPECT_CONTAINS(errorOf([&] { mapped.release("nope"); }),
                  "SafeTensorsReader::release(): expected the name of a tensor");

  // Errors name the function and the file; what cannot be mapped is read.
  const std::string missing = (m_dir / "missing.safetensors").string();
  EXPECT_CONTAINS(errorOf([&] { SafeTensorsReader::map(missing); }),
                  "SafeTensorsReader::map(): expected a readable");
  EXPECT_CONTAINS(errorOf([&] { SafeTensorsReader::map(missing); }), missing);
  EXPECT_CONTAINS(errorOf([&] { SafeTensorsReader::map(m_dir); }), "folder");
  std::ofstream(m_dir / "empty.safetensors").close();
  EXPECT_CONTAINS(errorOf([&] { SafeTensorsReader::map(m_dir / "empty.safetensors"); }),
                  "expected at least 8 bytes");
  const fs::path cut = m_dir / "cut.safetensors";
  fs::copy_file(m_dir / "m.safetensors", cut);
  fs::resize_file(cut, fs::file_size(cut) - 2);
  EXPECT_CONTAINS(errorOf([&] { SafeTensorsReader::map(cut); }), "beyond the buffer");
}

TEST(SafeTensorsWriterTest, AddErrorsLeaveTheWriterUnchanged) {
  SafeTensorsWriter w;
  w.add("a", Eigen::MatrixXf::Ones(2, 2));
  EXPECT_THROW(w.add("a", Eigen::MatrixXf::Ones(1, 1)), lora::Error);
  EXPECT_CONTAINS(errorOf([&] { w.add("a", Eigen::MatrixXd::Ones(1, 1)); }), "duplicate");
  EXPECT_THROW(w.add("i", Eigen::MatrixXf::Ones(1, 1), DType::I32), lora::Error);
  EXPECT_CONTAINS(errorOf([&] { w.add("i", Eigen::MatrixXf::Ones(1, 1), DType::I32); }), "I32");
  EXPECT_THROW(w.add("__metadata__", Eigen::MatrixXf::Ones(1, 1)), lora::Error);
  EXPECT_THROW(w.add("", Eigen::MatrixXf::Ones(1, 1)), lora::Error);
  EXPECT_THROW(w.add("bad\xff", Eigen::MatrixXf::Ones(1, 1)), lora::Error);
  EXPECT_THROW(w.addVector("m", Eigen::MatrixXf::Ones(2, 2)), lora::Error);
  EXPECT_THROW(w.setMetadata("k", "\xc3"), lora::Error);
  EXPECT_EQ(w.size(), 1u);
  EXPECT_TRUE(w.contains("a"));
  EXPECT_FALSE(w.contains("i"));
}

// ---------------------------------------------------------------------------------------------
// Atomic write

using SafeTensorsAtomicWrite = TempDir;

TEST_F(SafeTensorsAtomicWrite, MissingFolderIsAnError) {
  SafeTensorsWriter w;
  w.add("a", Eigen::MatrixXf::Ones(2, 2));
  const fs::path target = m_dir / "no" / "such" / "x.safetensors";
  EXPECT_THROW(w.write(target), lora::Error);
  EXPECT_CONTAINS(errorOf([&] { w.write(target); }), target.string());
  EXPECT_FALSE(fs::exists(m_dir / "no"));
  EXPECT_TRUE(listing().empty());
}

TEST_F(SafeTensorsAtomicWrite, ReplacesAnExistingFileAndLeavesNoTemporary) {
  const fs::path target = m_dir / "x.safetensors";
  { std::ofstream(target) << "old contents"; }
  SafeTensorsWriter w;
  w.add("a", Eigen::MatrixXd::Constant(3, 2, 0.5), DType::F64);
  w.write(target);
  EXPECT_EQ(listing(), (std::set<std::string>{"x.safetensors"}));
  EXPECT_EQ(SafeTensorsReader::open(target).matrix<double>("a"),
            Eigen::MatrixXd::Constant(3, 2, 0.5));
}

TEST_F(SafeTensorsAtomicWrite, TargetIsAFolderLeavesNoTemporary) {
  fs::create_directories(m_dir / "dir.safetensors" / "inside");
  SafeTensorsWriter w;
  w.add("a", Eigen::MatrixXf::Ones(2, 2));
  EXPECT_THROW(w.write(m_dir / "dir.safetensors"), lora::Error);
  EXPECT_EQ(listing(), (std::set<std::string>{"dir.safetensors"}));
  EXPECT_TRUE(fs::exists(m_dir / "dir.safetensors" / "inside"));
}

// The text files (monitor CSV/JSON, rank config, reports) go through the same writer as the
// adapters: exclusive temporary, checked write and close, fsync, rename, folder fsync.
TEST_F(SafeTensorsAtomicWrite, TextFilesUseTheSameWriter) {
  const fs::path target = m_dir / "history.csv";
  { std::ofstream(target) << "old"; }
  lora::train::writeFileAtomically(target, "step,loss\n1,0.5\n", "Monitor::writeCsv");
  EXPECT_EQ(listing(), (std::set<std::string>{"history.csv"}));
  std::ifstream in(target);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "step,loss\n1,0.5\n");
  // The writer's own messages: a folder as target, a missing folder; nothing left behind.
  fs::create_directories(m_dir / "dir.csv");
  EXPECT_CONTAINS(errorOf([&] { lora::train::writeFileAtomically(m_dir / "dir.csv", "x", "W"); }),
                  "W(): expected a file path, got the folder");
  EXPECT_CONTAINS(
      errorOf([&] { lora::train::writeFileAtomically(m_dir / "no" / "x.csv", "x", "W"); }),
      "W(): expected a writable folder for");
  EXPECT_EQ(listing(), (std::set<std::string>{"dir.csv", "history.csv"}));
}

#ifdef LORA_TEST_HAVE_RLIMIT
// A write that fails half way (file size limit, EFBIG) must keep the old file and remove the
// temporary one.
TEST_F(SafeTensorsAtomicWrite, FailedWriteKeepsTheExistingFile) {
  const fs::path target = m_dir / "x.safetensors";
  { std::ofstream(target, std::ios::binary) << "old contents"; }
  SafeTensorsWriter w;
  w.add("big", Eigen::MatrixXf::Ones(200, 200));

  rlimit old{};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  rlimit small = old;
  small.rlim_cur = 1024;
  auto* previous = std::signal(SIGXFSZ, SIG_IGN);
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  try {
    w.write(target);
    message = "<no exception>";
  } catch (const lora::Error& e) {
    message = e.what();
  }
  ::setrlimit(RLIMIT_FSIZE, &old);
  std::signal(SIGXFSZ, previous);

  EXPECT_CONTAINS(message, "SafeTensorsWriter::write()");
  EXPECT_EQ(slurp(target), "old contents");
  EXPECT_EQ(listing(), (std::set<std::string>{"x.safetensors"}));
}
#endif

// ---------------------------------------------------------------------------------------------
// Malformed files, built byte by byte

std::vector<std::byte> fileBytes(const std::string& header, std::size_t dataSize,
                                 std::optional<std::uint64_t> declared = std::nullopt) {
  const std::uint64_t n = declared.value_or(header.size());
  std::vector<std::byte> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((n >> (8 * i)) & 0xffu));
  for (const char c : header) out.push_back(static_cast<std::byte>(c));
  out.resize(out.size() + dataSize, std::byte{0});
  return out;
}

struct MalformedCase {
  std::string label;
  std::vector<std::byte> bytes;
  std::vector<std::string> words;  // each must appear in the message
};

std::string entry(const std::string& name, const std::string& dtype, const std::string& shape,
                  const std::string& offsets) {
  return "\"" + name + "\":{\"dtype\":" + dtype + ",\"shape\":" + shape +
         ",\"data_offsets\":" + offsets + "}";
}

std::vector<MalformedCase> malformedCases() {
  const auto one = [](const std::string& e, std::size_t data) {
    return fileBytes("{" + e + "}", data);
  };
  const std::string f32 = "\"F32\"";
  return {
      {"Empty", {}, {"at least 8 bytes", "got 0"}},
      {"ShortFile", {std::byte{1}, std::byte{0}, std::byte{0}}, {"at least 8 bytes", "got 3"}},
      {"HeaderLongerThanFile", fileBytes("{}", 0, 1000), {"header length", "got 1000"}},
      {"HeaderLengthOverflow",
       fileBytes("{}", 16, std::numeric_limits<std::uint64_t>::max()),
       {"header length", "18446744073709551615"}},
      {"HeaderOneByteTooLong", fileBytes("{}", 0, 3), {"header length"}},
      {"InvalidJson", fileBytes("{\"a\": ", 0), {"valid JSON"}},
      {"InvalidUtf8", fileBytes("{\"\xff\":1}", 0), {"valid JSON"}},
      {"TrailingGarbage", fileBytes("{} x", 0), {"valid JSON"}},
      {"NotAnObject", fileBytes("[1,2]", 0), {"JSON object", "array"}},
      {"EntryNotObject", fileBytes("{\"w\":5}", 0), {"'w'", "object"}},
      {"MissingDtype",
       fileBytes("{\"w\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
       {"\"dtype\"", "'w'"}},
      {"MissingShape",
       fileBytes("{\"w\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4),
       {"\"shape\"", "'w'"}},
      {"MissingOffsets",
       fileBytes("{\"w\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4),
       {"\"data_offsets\"", "'w'"}},
      {"DtypeNotString", one(entry("w", "5", "[1]", "[0,4]"), 4), {"\"dtype\"", "string", "'w'"}},
      {"UnknownDtype",
       one(entry("w", "\"F128\"", "[1]", "[0,16]"), 16),
       {"known dtype", "F128", "'w'"}},
      {"ShapeNotArray", one(entry("w", f32, "\"2x2\"", "[0,16]"), 16), {"\"shape\"", "'w'"}},
      {"ShapeFloat", one(entry("w", f32, "[2.5]", "[0,8]"), 8), {"integers", "'w'"}},
      {"ShapeBool", one(entry("w", f32, "[true]", "[0,4]"), 4), {"integers", "'w'"}},
      {"NegativeDim", one(entry("w", f32, "[2,-3]", "[0,8]"), 8), {"non-negative", "'w'"}},
      {"ShapeOverflow",
       one(entry("w", f32, "[4294967296,4294967296,16]", "[0,8]"), 8),
       {"overflow", "'w'"}},
      {"DimTooLarge",
       one(entry("w", "\"U8\"", "[18446744073709551615]", "[0,8]"), 8),
       {"overflow", "'w'"}},
      {"ByteSizeOverflow",
       one(entry("w", "\"F64\"", "[4611686018427387904]", "[0,8]"), 8),
       {"overflow", "'w'"}},
      {"OffsetsNotArray",
       one(entry("w", f32, "[1]", "\"0-4\""), 4),
       {"two non-negative integers", "'w'"}},
      {"OffsetsOneElement",
       one(entry("w", f32, "[1]", "[4]"), 4),
       {"two non-negative integers", "'w'"}},
      {"OffsetsThreeElements",
       one(entry("w", f32, "[1]", "[0,4,8]"), 8),
       {"two non-negative integers"}},
      {"OffsetsNegative",
       one(entry("w", f32, "[1]", "[-4,0]"), 4),
       {"two non-negative integers", "'w'"}},
      {"OffsetsFloat",
       one(entry("w", f32, "[1]", "[0,4.0]"), 4),
       {"two non-negative integers", "'w'"}},
      {"BeginAfterEnd", one(entry("w", f32, "[1]", "[8,4]"), 8), {"begin <= end", "'w'", "[8, 4]"}},
      {"EndBeyondBuffer", one(entry("w", f32, "[2]", "[0,8]"), 4), {"beyond the buffer", "'w'"}},
      {"HugeEnd",
       one(entry("w", f32, "[1]", "[18446744073709551612,18446744073709551615]"), 4),
       {"beyond the buffer", "'w'"}},
      {"SizeMismatch",
       one(entry("w", f32, "[3]", "[0,8]"), 8),
       {"expected 12 bytes", "'w'", "8 bytes"}},
      {"Overlap",
       fileBytes(
           "{" + entry("a", f32, "[2]", "[0,8]") + "," + entry("b", f32, "[2]", "[4,12]") + "}",
           12),
       {"overlap", "'a'", "'b'"}},
      {"SameRange",
       fileBytes(
           "{" + entry("a", f32, "[1]", "[0,4]") + "," + entry("b", f32, "[1]", "[0,4]") + "}", 4),
       {"overlap"}},
      {"HoleBetween",
       fileBytes(
           "{" + entry("a", f32, "[1]", "[0,4]") + "," + entry("b", f32, "[1]", "[8,12]") + "}",
           12),
       {"hole", "[4, 8)", "'b'"}},
      {"HoleAtStart", one(entry("w", f32, "[1]", "[4,8]"), 8), {"hole", "'w'"}},
      {"HoleAtEnd", one(entry("w", f32, "[1]", "[0,4]"), 8), {"hole", "[4, 8)", "'w'"}},
      {"BufferWithoutTensors", fileBytes("{}", 4), {"hole"}},
      {"DuplicateName",
       fileBytes(
           "{" + entry("w", f32, "[1]", "[0,4]") + "," + entry("w", f32, "[1]", "[4,8]") + "}", 8),
       {"duplicate name 'w'"}},
      {"DuplicateField",
       fileBytes(
           "{\"w\":{\"dtype\":\"F32\",\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4),
       {"duplicate key 'dtype'"}},
      {"MetadataNotObject", fileBytes("{\"__metadata__\":5}", 0), {"__metadata__", "5"}},
      {"MetadataValueNotString",
       fileBytes("{\"__metadata__\":{\"k\":1}}", 0),
       {"__metadata__", "'k'"}},
      {"MetadataNull", fileBytes("{\"__metadata__\":null}", 0), {"__metadata__"}},
  };
}

class SafeTensorsMalformed : public ::testing::TestWithParam<MalformedCase> {};

TEST_P(SafeTensorsMalformed, IsAnErrorNamingTheProblem) {
  const MalformedCase& c = GetParam();
  EXPECT_THROW((void)SafeTensorsReader::fromBytes(c.bytes, "bad.safetensors"), lora::Error);
  const std::string message =
      errorOf([&] { (void)SafeTensorsReader::fromBytes(c.bytes, "bad.safetensors"); });
  EXPECT_CONTAINS(message, "SafeTensorsReader::fromBytes(): expected");
  EXPECT_CONTAINS(message, "bad.safetensors");
  for (const std::string& word : c.words) EXPECT_CONTAINS(message, word);
}

INSTANTIATE_TEST_SUITE_P(Cases, SafeTensorsMalformed, ::testing::ValuesIn(malformedCases()),
                         [](const auto& info) { return info.param.label; });

TEST(SafeTensorsValid, TensorsInAnyOrderAndEmptyFiles) {
  const std::string f32 = "\"F32\"";
  // Header order b, a while the data is a then b; plus an empty tensor and a scalar.
  const auto bytes = fileBytes(
      "{\"__metadata__\":{\"k\":\"v\"}," + entry("b", f32, "[1,2]", "[8,16]") + "," +
          entry("a", f32, "[2]", "[0,8]") + "," + entry("e", "\"I32\"", "[0,5]", "[16,16]") + "," +
          entry("s", "\"F16\"", "[]", "[16,18]") + "}   ",
      18);
  const auto st = SafeTensorsReader::fromBytes(bytes, "ok");
  EXPECT_EQ(st.names(), (std::vector<std::string>{"b", "a", "e", "s"}));
  EXPECT_EQ(st.metadata().at("k"), "v");
  EXPECT_EQ(st.info("s").numel(), 1);
  EXPECT_EQ(st.info("e").numel(), 0);
  EXPECT_EQ(st.info("b").begin, 8u);
  EXPECT_EQ(st.matrix<float>("b"), Eigen::MatrixXf::Zero(1, 2));
  EXPECT_EQ(st.flat<double>("s").size(), 1);
  EXPECT_THROW((void)st.flat<float>("e"), lora::Error);  // I32 is not a float dtype
  EXPECT_CONTAINS(errorOf([&] { (void)st.flat<float>("e"); }), "I32");
  EXPECT_EQ(st.rawBytes("e").size(), 0u);

  EXPECT_EQ(SafeTensorsReader::fromBytes(fileBytes("{}", 0), "empty").size(), 0u);
  EXPECT_EQ(SafeTensorsReader::fromBytes(fileBytes("{}      ", 0), "padded").size(), 0u);
}

TEST(SafeTensorsValid, ReadsUnalignedLittleEndianData) {
  // Header length = 3 (mod 8): the data starts at an odd offset, every element is misaligned.
  std::string header = "{" + entry("x", "\"F64\"", "[2,1]", "[0,16]") + "," +
                       entry("h", "\"BF16\"", "[1]", "[16,18]") + "}";
  while (header.size() % 8 != 3) header.push_back(' ');
  std::vector<std::byte> bytes = fileBytes(header, 18);
  const std::size_t start = bytes.size() - 18;
  const double values[2] = {1.5, -2.25};
  for (int k = 0; k < 2; ++k) {
    const auto u = std::bit_cast<std::uint64_t>(values[k]);
    for (int i = 0; i < 8; ++i) {
      bytes[start + 8 * static_cast<std::size_t>(k) + static_cast<std::size_t>(i)] =
          static_cast<std::byte>((u >> (8 * i)) & 0xffu);
    }
  }
  bytes[start + 16] = std::byte{0x80};  // BF16 0x3f80 = 1.0, little-endian
  bytes[start + 17] = std::byte{0x3f};
  const auto st = SafeTensorsReader::fromBytes(bytes, "unaligned");
  EXPECT_EQ(st.matrix<double>("x")(1, 0), -2.25);
  EXPECT_EQ(st.vector<float>("h")(0), 1.0f);
}

}  // namespace
