// lora/io/gguf.hpp and gguf_adapter.hpp without fixtures: the writer's layout against bytes built
// by hand, round trips of every value and tensor type, Q8_0 rounding, the llama q/k permutation
// on a hand-worked 4-head example, unusual but valid orders, and malformed files.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lora/detail/half.hpp"
#include "lora/io/gguf.hpp"
#include "lora/io/gguf_adapter.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/random.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"

namespace {

using lora::GgmlType;
using lora::GgufReader;
using lora::GgufType;
using lora::GgufValue;
using lora::GgufWriter;
using lora::test::errorOf;

// GGUF bytes written field by field, independently of GgufWriter.
struct Raw {
  std::vector<std::byte> b;
  template <typename U>
  Raw& put(U u) {
    const auto* p = reinterpret_cast<const std::byte*>(&u);
    b.insert(b.end(), p, p + sizeof(U));
    return *this;
  }
  Raw& str(const std::string& s) {
    put<std::uint64_t>(s.size());
    const auto* p = reinterpret_cast<const std::byte*>(s.data());
    b.insert(b.end(), p, p + s.size());
    return *this;
  }
  Raw& header(std::uint64_t tensors, std::uint64_t kvs, std::uint32_t version = 3) {
    b.insert(b.end(), {std::byte{'G'}, std::byte{'G'}, std::byte{'U'}, std::byte{'F'}});
    return put<std::uint32_t>(version).put<std::uint64_t>(tensors).put<std::uint64_t>(kvs);
  }
  Raw& kvString(const std::string& k, const std::string& v) {
    return str(k).put<std::uint32_t>(8).str(v);
  }
  Raw& kvF32(const std::string& k, float v) { return str(k).put<std::uint32_t>(6).put<float>(v); }
  Raw& tensor(const std::string& name, std::vector<std::uint64_t> ne, std::uint32_t type,
              std::uint64_t offset) {
    str(name).put<std::uint32_t>(static_cast<std::uint32_t>(ne.size()));
    for (auto d : ne) put<std::uint64_t>(d);
    return put<std::uint32_t>(type).put<std::uint64_t>(offset);
  }
  Raw& pad(std::size_t alignment = 32) {
    while (b.size() % alignment != 0) b.push_back(std::byte{0});
    return *this;
  }
  Raw& zeros(std::size_t n) {
    b.insert(b.end(), n, std::byte{0});
    return *this;
  }
};

Eigen::MatrixXf randomMatrix(Eigen::Index rows, Eigen::Index cols, std::uint64_t seed) {
  lora::Rng rng(seed);
  Eigen::MatrixXf m(rows, cols);
  for (Eigen::Index j = 0; j < cols; ++j)
    for (Eigen::Index i = 0; i < rows; ++i) m(i, j) = static_cast<float>(rng.normal());
  return m;
}

std::string parseError(const std::vector<std::byte>& bytes) {
  return errorOf([&] { (void)GgufReader::fromBytes(bytes, "case.gguf"); });
}

TEST(Gguf, WriterLayoutMatchesBytesBuiltByHand) {
  Eigen::MatrixXf A(2, 3);  // ne = [3, 2], F32: 24 bytes, padded to 32
  A << 1, 2, 3, 4, 5, 6;
  Eigen::MatrixXf B(1, 2);  // ne = [2, 1]
  B << -1, 0.5f;
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("llama"));
  w.set("adapter.lora.alpha", GgufValue::float32(16));
  w.addTensor("a", A, GgmlType::F32);
  w.addTensor("b", B, GgmlType::F32);

  Raw r;
  r.header(2, 2).kvString("general.architecture", "llama").kvF32("adapter.lora.alpha", 16);
  r.tensor("a", {3, 2}, 0, 0).tensor("b", {2, 1}, 0, 32).pad();
  for (float v : {1.f, 2.f, 3.f, 4.f, 5.f, 6.f}) r.put<float>(v);  // row-major: rows contiguous
  r.pad();
  for (float v : {-1.f, 0.5f}) r.put<float>(v);
  r.pad();
  EXPECT_EQ(w.bytes(), r.b);

  lora::test::ScratchDir dir("gguf_layout");
  w.write(dir / "x.gguf");
  EXPECT_EQ(lora::test::readText(dir / "x.gguf"),
            std::string(reinterpret_cast<const char*>(r.b.data()), r.b.size()));
  EXPECT_TRUE(GgufReader::looksLikeGguf(dir / "x.gguf"));
  EXPECT_FALSE(GgufReader::looksLikeGguf(dir.path()));
}

TEST(Gguf, EveryValueAndTensorTypeRoundTrips) {
  GgufWriter w(64);
  w.set("u8", GgufValue::unsignedInt(GgufType::UInt8, 255));
  w.set("i8", GgufValue::signedInt(GgufType::Int8, -128));
  w.set("u16", GgufValue::unsignedInt(GgufType::UInt16, 65535));
  w.set("i16", GgufValue::signedInt(GgufType::Int16, -32768));
  w.set("u32", GgufValue::unsignedInt(GgufType::UInt32, 4000000000u));
  w.set("i32", GgufValue::signedInt(GgufType::Int32, -2000000000));
  w.set("u64", GgufValue::unsignedInt(GgufType::UInt64, ~std::uint64_t{0}));
  w.set("i64", GgufValue::signedInt(GgufType::Int64, INT64_MIN));
  w.set("f32", GgufValue::float32(0.1f));
  w.set("f64", GgufValue::float64(0.1));
  w.set("bool", GgufValue::boolean(true));
  w.set("str", GgufValue::string("h\xc3\xa9llo"));
  w.set("arr", GgufValue::array(GgufType::UInt32, {GgufValue::unsignedInt(GgufType::UInt32, 7),
                                                   GgufValue::unsignedInt(GgufType::UInt32, 9)}));
  w.set("strs",
        GgufValue::array(GgufType::String, {GgufValue::string("a"), GgufValue::string("")}));
  const Eigen::MatrixXf M = randomMatrix(3, 64, 5);
  for (GgmlType t : {GgmlType::F32, GgmlType::F16, GgmlType::BF16, GgmlType::Q8_0})
    w.addTensor(std::string(lora::ggmlTypeName(t)), M, t);

  const GgufReader r = GgufReader::fromBytes(w.bytes(), "rt.gguf");
  EXPECT_EQ(r.version(), 3u);
  EXPECT_EQ(r.alignment(), 64u);
  ASSERT_EQ(r.metadata().size(), 15u);  // general.alignment first, then in order
  EXPECT_EQ(r.metadata()[0].first, "general.alignment");
  EXPECT_EQ(r.metadata()[1].first, "u8");
  EXPECT_EQ(r.metadata()[14].first, "strs");
  EXPECT_EQ(r.value("u8").asUnsigned("t", "u8"), 255u);
  EXPECT_EQ(r.value("i8").asSigned("t", "i8"), -128);
  EXPECT_EQ(r.value("u64").asUnsigned("t", "u64"), ~std::uint64_t{0});
  EXPECT_EQ(r.value("i64").asSigned("t", "i64"), INT64_MIN);
  EXPECT_EQ(r.value("f32").type(), GgufType::Float32);
  EXPECT_EQ(r.value("f32").asFloat("t", "f32"), static_cast<double>(0.1f));
  EXPECT_EQ(r.value("f64").asFloat("t", "f64"), 0.1);
  EXPECT_TRUE(r.value("bool").asBool("t", "bool"));
  EXPECT_EQ(r.value("str").asString("t", "str"), "h\xc3\xa9llo");
  EXPECT_EQ(r.value("arr"),
            GgufValue::array(GgufType::UInt32, {GgufValue::unsignedInt(GgufType::UInt32, 7),
                                                GgufValue::unsignedInt(GgufType::UInt32, 9)}));
  EXPECT_EQ(r.value("strs").asArray("t", "strs").size(), 2u);
  EXPECT_CONTAINS(errorOf([&] { (void)r.value("u8").asString("where", "u8"); }), "STRING");
  EXPECT_CONTAINS(errorOf([&] { (void)r.value("i8").asUnsigned("where", "i8"); }), "non-negative");
  EXPECT_CONTAINS(errorOf([&] { (void)r.value("missing"); }), "missing");

  for (const auto& t : r.tensors()) {
    SCOPED_TRACE(t.name);
    EXPECT_EQ(t.offset % 64, 0u);
    EXPECT_EQ(t.ne, (std::vector<std::uint64_t>{64, 3}));
    const Eigen::MatrixXf back = r.matrix(t);
    ASSERT_EQ(back.rows(), 3);
    ASSERT_EQ(back.cols(), 64);
    for (Eigen::Index i = 0; i < 3; ++i)
      for (Eigen::Index j = 0; j < 64; ++j) {
        const float x = M(i, j);
        switch (t.type) {
          case GgmlType::F32:
            EXPECT_EQ(back(i, j), x);
            break;
          case GgmlType::F16:
            EXPECT_EQ(back(i, j), lora::detail::halfToFloat(lora::detail::floatToHalf(x)));
            break;
          case GgmlType::BF16:
            EXPECT_EQ(back(i, j), lora::detail::bf16ToFloat(lora::detail::floatToBf16(x)));
            break;
          default: {  // Q8_0: within half a step of the block's scale (plus the F16 scale's error)
            const float amax = M.row(i).segment(j / 32 * 32, 32).cwiseAbs().maxCoeff();
            EXPECT_LE(std::abs(back(i, j) - x), amax / 127 * 0.5f + amax * 1e-3f);
          }
        }
      }
  }
  // The writer's file and bytes() agree.
  lora::test::ScratchDir dir("gguf_rt");
  w.write(dir / "rt.gguf");
  const GgufReader mapped = GgufReader::open(dir / "rt.gguf");
  EXPECT_EQ(mapped.fileBytes(), w.bytes().size());
  EXPECT_EQ(mapped.matrix("Q8_0"), r.matrix("Q8_0"));
}

TEST(Gguf, Q8_0RoundsAsGgml) {
  // amax 127 gives d = 1 exactly: q is x rounded half away from zero.
  Eigen::MatrixXf x = Eigen::MatrixXf::Zero(1, 64);
  x(0, 0) = 127;
  x(0, 1) = 2.5f;
  x(0, 2) = -2.5f;
  x(0, 3) = 1.49f;
  x(0, 4) = -0.5f;
  x(0, 5) = -127;
  GgufWriter w;
  w.addTensor("q", x, GgmlType::Q8_0);  // second block all zero: d = 0, q = 0
  const GgufReader r = GgufReader::fromBytes(w.bytes(), "q.gguf");
  const auto raw = r.rawBytes(r.tensor("q"));
  ASSERT_EQ(raw.size(), 68u);
  std::uint16_t d0 = 0, d1 = 0;
  std::memcpy(&d0, raw.data(), 2);
  std::memcpy(&d1, raw.data() + 34, 2);
  EXPECT_EQ(d0, 0x3c00);  // 1.0 in F16
  EXPECT_EQ(d1, 0u);
  const auto q = [&](int j) { return static_cast<int>(static_cast<std::int8_t>(raw[2 + j])); };
  EXPECT_EQ(q(0), 127);
  EXPECT_EQ(q(1), 3);
  EXPECT_EQ(q(2), -3);
  EXPECT_EQ(q(3), 1);
  EXPECT_EQ(q(4), -1);
  EXPECT_EQ(q(5), -127);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(static_cast<int>(raw[36 + j]), 0);
  // Rows must hold whole blocks.
  EXPECT_CONTAINS(
      errorOf([&] { w.addTensor("bad", Eigen::MatrixXf::Ones(2, 40), GgmlType::Q8_0); }),
      "multiple of 32");
}

TEST(Gguf, LlamaPermutationOnAHandWorkedFourHeadExample) {
  // 16 rows, 4 heads: each head's rows (t, j) with t in {0, 1}, j in {0, 1} become (j, t), so
  // within each head the old rows 0 1 2 3 come out as 0 2 1 3.
  Eigen::MatrixXf B(16, 2);
  for (int i = 0; i < 16; ++i) B.row(i) << static_cast<float>(i), static_cast<float>(100 + i);
  const Eigen::MatrixXf P = lora::permuteHeads(B, 4, false, "test");
  const int expected[16] = {0, 2, 1, 3, 4, 6, 5, 7, 8, 10, 9, 11, 12, 14, 13, 15};
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(P(i, 0), static_cast<float>(expected[i])) << "row " << i;
    EXPECT_EQ(P(i, 1), static_cast<float>(100 + expected[i])) << "row " << i;
  }
  EXPECT_EQ(lora::permuteHeads(P, 4, true, "test"), B);
  // One head of 8 rows: 0 4 1 5 2 6 3 7 (the halves interleaved).
  const Eigen::MatrixXf one = lora::permuteHeads(B.topRows(8), 1, false, "test");
  const int interleaved[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  for (int i = 0; i < 8; ++i) EXPECT_EQ(one(i, 0), static_cast<float>(interleaved[i]));
  EXPECT_CONTAINS(errorOf([&] { (void)lora::permuteHeads(B.topRows(10), 4, false, "where"); }),
                  "divisible by 2 x 4 heads");
}

TEST(Gguf, UnusualButValidOrdersAreRead) {
  // KV pairs in another order (alignment last, alpha first), lora_b before lora_a, alignment 16.
  Raw r;
  r.header(2, 5).kvF32("adapter.lora.alpha", 4).kvString("adapter.type", "lora");
  r.kvString("general.type", "adapter").kvString("general.architecture", "qwen2");
  r.str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(16);
  r.tensor("blk.3.ffn_up.weight.lora_b", {2, 4}, 0, 0);   // B: out 4 x r 2
  r.tensor("blk.3.ffn_up.weight.lora_a", {3, 2}, 0, 32);  // A: r 2 x in 3
  r.pad(16);
  for (int i = 0; i < 8; ++i) r.put<float>(static_cast<float>(i + 1));
  for (int i = 0; i < 6; ++i) r.put<float>(static_cast<float>(10 + i));
  r.pad(16);
  const GgufReader g = GgufReader::fromBytes(r.b, "orders.gguf");
  EXPECT_EQ(g.alignment(), 16u);
  EXPECT_EQ(g.tensors()[1].offset, 32u);
  Eigen::MatrixXf B(4, 2), A(2, 3);
  B << 1, 2, 3, 4, 5, 6, 7, 8;
  A << 10, 11, 12, 13, 14, 15;
  EXPECT_EQ(g.matrix("blk.3.ffn_up.weight.lora_b"), B);
  EXPECT_EQ(g.matrix("blk.3.ffn_up.weight.lora_a"), A);

  lora::test::ScratchDir dir("gguf_orders");
  lora::GgufToPeftOptions o;
  o.modulePrefix = "";
  const auto report = lora::convertGgufToPeft(g, dir / "peft", o);
  EXPECT_EQ(report.modules, 1u);
  EXPECT_EQ(report.alpha, 4.0);
  const auto peft = lora::PeftAdapterFile::open(dir / "peft");
  ASSERT_EQ(peft.modules().size(), 1u);
  EXPECT_EQ(peft.modules()[0].name, "layers.3.mlp.up_proj");
  EXPECT_EQ(peft.A<float>(peft.modules()[0]), A);
  EXPECT_EQ(peft.B<float>(peft.modules()[0]), B);
  EXPECT_EQ(peft.scaling(peft.modules()[0]), 2.0);
}

// A valid file to break: one KV, one F32 tensor of ne [32, 2] (256 bytes).
Raw validFile() {
  Raw r;
  r.header(1, 1).kvString("general.architecture", "llama");
  r.tensor("t", {32, 2}, 0, 0).pad();
  return r.zeros(256);
}

TEST(Gguf, MalformedFilesAreErrors) {
  const Raw good = validFile();
  ASSERT_EQ(parseError(good.b), "<no exception>");
  // Every truncation is an error (the data end included).
  for (std::size_t n = 0; n < good.b.size(); ++n) {
    const std::vector<std::byte> cut(good.b.begin(), good.b.begin() + static_cast<long>(n));
    const std::string e = parseError(cut);
    ASSERT_NE(e.find("case.gguf"), std::string::npos) << "length " << n << ": " << e;
  }
  const auto bad = [](auto edit) {
    Raw r;
    edit(r);
    return parseError(r.b);
  };
  EXPECT_CONTAINS(bad([](Raw& r) {
                    r = validFile();
                    r.b[0] = std::byte{'X'};
                  }),
                  "magic");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(0, 0, 1); }), "version 2 or 3");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(0, 0, 4); }), "version 2 or 3");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(0, std::uint64_t{1} << 60); }), "key-value count");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(std::uint64_t{1} << 60, 0); }), "tensor count");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(0, 2).kvString("k", "a").kvString("k", "b"); }),
                  "unique keys");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(0, 1).kvString("", "a"); }), "non-empty key");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(0, 1).str("k").put<std::uint32_t>(13); }),
                  "known value type");
  EXPECT_CONTAINS(
      bad([](Raw& r) { r.header(0, 1).str("k").put<std::uint32_t>(9).put<std::uint32_t>(9); }),
      "nested arrays");
  EXPECT_CONTAINS(
      bad([](Raw& r) {
        r.header(0, 1).str("k").put<std::uint32_t>(9).put<std::uint32_t>(4).put<std::uint64_t>(
            std::uint64_t{1} << 62);
      }),
      "array length");
  EXPECT_CONTAINS(
      bad([](Raw& r) {
        r.header(0, 1).str("general.alignment").put<std::uint32_t>(10).put<std::uint64_t>(32);
      }),
      "UINT32");
  EXPECT_CONTAINS(
      bad([](Raw& r) {
        r.header(0, 1).str("general.alignment").put<std::uint32_t>(4).put<std::uint32_t>(48);
      }),
      "power of two");
  EXPECT_CONTAINS(
      bad([](Raw& r) {
        r.header(2, 0).tensor("t", {32}, 0, 0).tensor("t", {32}, 0, 128).pad().zeros(256);
      }),
      "unique tensor names");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(1, 0).tensor(std::string(64, 'n'), {32}, 0, 0); }),
                  "1 to 63 bytes");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(1, 0).tensor("t", {}, 0, 0).zeros(64); }),
                  "1 to 4 dimensions");
  EXPECT_CONTAINS(bad([](Raw& r) {
                    r.header(1, 0).tensor("t", {1, 1, 1, 1, 1}, 0, 0);
                  }),
                  "1 to 4 dimensions");
  EXPECT_CONTAINS(bad([](Raw& r) {
                    r.header(1, 0).tensor("t", {32, 0}, 0, 0);
                  }),
                  "positive dimensions");
  EXPECT_CONTAINS(
      bad([](Raw& r) {
        r.header(1, 0).tensor("t", {std::uint64_t{1} << 40, std::uint64_t{1} << 40}, 0, 0);
      }),
      "positive dimensions");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(1, 0).tensor("t", {32}, 4, 0); }), "known ggml type");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(1, 0).tensor("t", {40, 2}, 8, 0); }), "multiple of 32");
  // Offsets: unaligned, overlapping, with a gap, or data past the end of the file.
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(1, 0).tensor("t", {8}, 0, 4).pad().zeros(64); }),
                  "offset 0");
  EXPECT_CONTAINS(bad([](Raw& r) {
                    r.header(2, 0).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 0).pad().zeros(64);
                  }),
                  "at offset 32");
  EXPECT_CONTAINS(bad([](Raw& r) {
                    r.header(2, 0).tensor("a", {8}, 0, 0).tensor("b", {8}, 0, 64).pad().zeros(96);
                  }),
                  "at offset 32");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(1, 0).tensor("t", {64}, 0, 0).pad().zeros(200); }),
                  "bytes of tensor data");
  EXPECT_CONTAINS(bad([](Raw& r) { r.header(1, 0).tensor("t", {64}, 0, 0).pad().zeros(100); }),
                  "to fit in 'case.gguf'");
}

TEST(Gguf, AdapterFilesThatAreNotLoraAreErrors) {
  lora::test::ScratchDir dir("gguf_bad_adapter");
  const Eigen::MatrixXf A = randomMatrix(2, 8, 1), B = randomMatrix(6, 2, 2);
  const auto convert = [&](const GgufWriter& w) {
    return errorOf([&] {
      (void)lora::convertGgufToPeft(GgufReader::fromBytes(w.bytes(), "adapter.gguf"), dir / "out",
                                    lora::GgufToPeftOptions{});
    });
  };
  const auto base = [&](const char* type, GgufValue alpha) {
    GgufWriter w;
    w.set("general.architecture", GgufValue::string("qwen2"));
    w.set("general.type", GgufValue::string(type));
    w.set("adapter.type", GgufValue::string("lora"));
    w.set("adapter.lora.alpha", std::move(alpha));
    return w;
  };
  GgufWriter model = base("model", GgufValue::float32(8));
  model.addTensor("blk.0.attn_v.weight.lora_a", A, GgmlType::F32);
  EXPECT_CONTAINS(convert(model), "general.type 'adapter'");
  GgufWriter f64 = base("adapter", GgufValue::float64(8));
  f64.addTensor("blk.0.attn_v.weight.lora_a", A, GgmlType::F32);
  EXPECT_CONTAINS(convert(f64), "FLOAT32");
  GgufWriter half = base("adapter", GgufValue::float32(8));
  half.addTensor("blk.0.attn_v.weight.lora_a", A, GgmlType::F32);
  EXPECT_CONTAINS(convert(half), "both .lora_a and .lora_b");
  GgufWriter ranks = base("adapter", GgufValue::float32(8));
  ranks.addTensor("blk.0.attn_v.weight.lora_a", A, GgmlType::F32);
  ranks.addTensor("blk.0.attn_v.weight.lora_b", randomMatrix(6, 3, 3), GgmlType::F32);
  EXPECT_CONTAINS(convert(ranks), "the same r");
  GgufWriter unknown = base("adapter", GgufValue::float32(8));
  unknown.addTensor("output.weight.lora_a", A, GgmlType::F32);
  unknown.addTensor("output.weight.lora_b", B, GgmlType::F32);
  EXPECT_CONTAINS(convert(unknown), "output.weight.lora_a");
  GgufWriter arch;
  arch.set("general.architecture", GgufValue::string("gpt2"));
  arch.set("general.type", GgufValue::string("adapter"));
  arch.set("adapter.type", GgufValue::string("lora"));
  EXPECT_CONTAINS(convert(arch), "known architecture (llama, qwen2)");
  EXPECT_FALSE(std::filesystem::exists(dir / "out"));
  EXPECT_CONTAINS(errorOf([] { (void)lora::ggufArchitecture("gpt2", "where"); }), "gpt2");
  EXPECT_CONTAINS(errorOf([] { (void)lora::parseGgmlTypeName("q4_0", "where"); }), "q8_0");
  EXPECT_CONTAINS(errorOf([] { GgufWriter w(48); }), "power of two");
  EXPECT_CONTAINS(errorOf([] {
                    GgufWriter w;
                    w.set("k", GgufValue::boolean(true)).set("k", GgufValue::boolean(false));
                  }),
                  "duplicate");
}

TEST(Gguf, KeysOnlyAndNoAlpha) {
  // A file of key-value pairs only needs no padding after its header (ggml's reader agrees).
  Raw keys;
  keys.header(0, 1).kvString("general.architecture", "llama");
  const GgufReader r = GgufReader::fromBytes(keys.b, "keys.gguf");
  EXPECT_TRUE(r.tensors().empty());
  EXPECT_EQ(r.value("general.architecture").asString("t", "a"), "llama");

  // Without adapter.lora.alpha llama.cpp applies B·A unscaled: alpha = r, scaling 1.
  GgufWriter w;
  w.set("general.architecture", GgufValue::string("qwen2"));
  w.set("general.type", GgufValue::string("adapter"));
  w.set("adapter.type", GgufValue::string("lora"));
  const Eigen::MatrixXf A = randomMatrix(3, 8, 11), B = randomMatrix(6, 3, 12);
  w.addTensor("blk.1.attn_v.weight.lora_a", A, GgmlType::F32);
  w.addTensor("blk.1.attn_v.weight.lora_b", B, GgmlType::F32);
  lora::test::ScratchDir dir("gguf_no_alpha");
  w.write(dir / "a.gguf");
  const auto file = lora::PeftAdapterFile::open(dir / "a.gguf");
  ASSERT_TRUE(file.isGguf());
  ASSERT_EQ(file.modules().size(), 1u);
  const auto& m = file.modules()[0];
  EXPECT_EQ(m.name, "model.layers.1.self_attn.v_proj");
  EXPECT_EQ(m.rank, 3);
  EXPECT_EQ(m.alpha, 3.0);
  EXPECT_EQ(file.scaling(m), 1.0);
  EXPECT_EQ(file.A<float>(m), A);
  EXPECT_EQ(file.B<double>(m), B.cast<double>());
  EXPECT_EQ(file.dtypeLabel(), "F32");
}

TEST(Gguf, DefaultNameFollowsGgufPy) {
  EXPECT_EQ(lora::ggufDefaultName("/x/my-lora-v2"), "My Lora v2");
  EXPECT_EQ(lora::ggufDefaultName("/x/my-adapter/"), "My Adapter");
  EXPECT_EQ(lora::ggufDefaultName("Llama-3-8b-LoRA"), "Llama 3 8b LoRA");
}

}  // namespace
