// GGUF reader and writer. The layout and the checks follow ggml's own reader (ggml/src/gguf.cpp)
// and gguf-py's writer (gguf-py/gguf/gguf_writer.py, quants.py); the code is LoRA++'s.
#include "lora/io/gguf.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <type_traits>

#include <fmt/format.h>

#include "file_bytes.hpp"
#include "little_endian.hpp"
#include "lora/detail/atomic_file.hpp"
#include "lora/detail/half.hpp"
#include "lora/error.hpp"

namespace lora {

namespace fs = std::filesystem;
using detail::appendLittle;
using detail::fail;
using detail::loadLittle;

namespace {

constexpr std::uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr std::uint64_t kDefaultAlignment = 32;
constexpr std::size_t kMaxName = 63;  // ggml's GGML_MAX_NAME is 64 with the terminating zero
constexpr std::size_t kMaxDims = 4;   // GGML_MAX_DIMS

bool isScalarType(GgufType t) {
  return static_cast<std::uint32_t>(t) <= static_cast<std::uint32_t>(GgufType::Float64) &&
         t != GgufType::String && t != GgufType::Array;
}

std::size_t scalarSize(GgufType t) {
  switch (t) {
    case GgufType::UInt8:
    case GgufType::Int8:
    case GgufType::Bool:
      return 1;
    case GgufType::UInt16:
    case GgufType::Int16:
      return 2;
    case GgufType::UInt32:
    case GgufType::Int32:
    case GgufType::Float32:
      return 4;
    default:
      return 8;
  }
}

bool isUnsignedType(GgufType t) {
  return t == GgufType::UInt8 || t == GgufType::UInt16 || t == GgufType::UInt32 ||
         t == GgufType::UInt64;
}
bool isSignedType(GgufType t) {
  return t == GgufType::Int8 || t == GgufType::Int16 || t == GgufType::Int32 ||
         t == GgufType::Int64;
}

std::uint64_t padTo(std::uint64_t n, std::uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

// A cursor over the header bytes; every read is checked against the end.
class Cursor {
 public:
  Cursor(const std::byte* data, std::uint64_t size, const std::string& source,
         std::string_view where)
      : m_data(data), m_size(size), m_source(source), m_where(where) {}

  std::uint64_t position() const { return m_pos; }
  std::uint64_t left() const { return m_size - m_pos; }

  void need(std::uint64_t bytes, std::string_view what) {
    if (bytes > left())
      fail(m_where, "expected {} more bytes for {} at offset {} of '{}', got the end of the file",
           bytes, what, m_pos, m_source);
  }
  template <typename U>
  U read(std::string_view what) {
    need(sizeof(U), what);
    const U u = loadLittle<U>(m_data + m_pos);
    m_pos += sizeof(U);
    return u;
  }
  std::string string(std::string_view what) {
    const auto n = read<std::uint64_t>(what);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(m_data + m_pos), static_cast<std::size_t>(n));
    m_pos += n;
    return s;
  }

 private:
  const std::byte* m_data;
  std::uint64_t m_size;
  std::uint64_t m_pos = 0;
  const std::string& m_source;
  std::string_view m_where;
};

GgufValue readScalar(Cursor& c, GgufType t, std::string_view what) {
  switch (t) {
    case GgufType::UInt8:
      return GgufValue::unsignedInt(t, c.read<std::uint8_t>(what));
    case GgufType::UInt16:
      return GgufValue::unsignedInt(t, c.read<std::uint16_t>(what));
    case GgufType::UInt32:
      return GgufValue::unsignedInt(t, c.read<std::uint32_t>(what));
    case GgufType::UInt64:
      return GgufValue::unsignedInt(t, c.read<std::uint64_t>(what));
    case GgufType::Int8:
      return GgufValue::signedInt(t, std::bit_cast<std::int8_t>(c.read<std::uint8_t>(what)));
    case GgufType::Int16:
      return GgufValue::signedInt(t, std::bit_cast<std::int16_t>(c.read<std::uint16_t>(what)));
    case GgufType::Int32:
      return GgufValue::signedInt(t, std::bit_cast<std::int32_t>(c.read<std::uint32_t>(what)));
    case GgufType::Int64:
      return GgufValue::signedInt(t, std::bit_cast<std::int64_t>(c.read<std::uint64_t>(what)));
    case GgufType::Float32:
      return GgufValue::float32(std::bit_cast<float>(c.read<std::uint32_t>(what)));
    case GgufType::Float64:
      return GgufValue::float64(std::bit_cast<double>(c.read<std::uint64_t>(what)));
    case GgufType::Bool:
      return GgufValue::boolean(c.read<std::uint8_t>(what) != 0);
    default:  // String
      return GgufValue::string(c.string(what));
  }
}

void writeValue(std::vector<std::byte>& out, const GgufValue& v);

void writeString(std::vector<std::byte>& out, const std::string& s) {
  appendLittle<std::uint64_t>(out, s.size());
  const std::size_t at = out.size();
  out.resize(at + s.size());
  if (!s.empty()) std::memcpy(out.data() + at, s.data(), s.size());
}

void writeScalar(std::vector<std::byte>& out, const GgufValue& v) {
  constexpr std::string_view w = "GgufWriter";
  switch (v.type()) {
    case GgufType::UInt8:
    case GgufType::Int8:
      appendLittle<std::uint8_t>(
          out, static_cast<std::uint8_t>(isUnsignedType(v.type()) ? v.asUnsigned(w, "")
                                                                  : v.asSigned(w, "")));
      break;
    case GgufType::UInt16:
    case GgufType::Int16:
      appendLittle<std::uint16_t>(
          out, static_cast<std::uint16_t>(isUnsignedType(v.type()) ? v.asUnsigned(w, "")
                                                                   : v.asSigned(w, "")));
      break;
    case GgufType::UInt32:
    case GgufType::Int32:
      appendLittle<std::uint32_t>(
          out, static_cast<std::uint32_t>(isUnsignedType(v.type()) ? v.asUnsigned(w, "")
                                                                   : v.asSigned(w, "")));
      break;
    case GgufType::UInt64:
      appendLittle<std::uint64_t>(out, v.asUnsigned(w, ""));
      break;
    case GgufType::Int64:
      appendLittle<std::uint64_t>(out, static_cast<std::uint64_t>(v.asSigned(w, "")));
      break;
    case GgufType::Float32:
      appendLittle<std::uint32_t>(
          out, std::bit_cast<std::uint32_t>(static_cast<float>(v.asFloat(w, ""))));
      break;
    case GgufType::Float64:
      appendLittle<std::uint64_t>(out, std::bit_cast<std::uint64_t>(v.asFloat(w, "")));
      break;
    case GgufType::Bool:
      appendLittle<std::uint8_t>(out, v.asBool(w, "") ? 1 : 0);
      break;
    case GgufType::String:
      writeString(out, v.asString(w, ""));
      break;
    case GgufType::Array: {
      const auto& items = v.asArray(w, "");
      appendLittle<std::uint32_t>(out, static_cast<std::uint32_t>(v.elementType()));
      appendLittle<std::uint64_t>(out, items.size());
      for (const GgufValue& item : items) writeValue(out, item);
      break;
    }
  }
}

void writeValue(std::vector<std::byte>& out, const GgufValue& v) {
  writeScalar(out, v);
}

std::string shownName(std::string_view s) {
  std::string out = "'";
  for (const char c : s.substr(0, 80)) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? fmt::format("\\x{:02x}", u) : std::string(1, c);
  }
  if (s.size() > 80) out += "...";
  return out + "'";
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Types

std::string_view ggmlTypeName(GgmlType type) noexcept {
  switch (type) {
    case GgmlType::F32:
      return "F32";
    case GgmlType::F16:
      return "F16";
    case GgmlType::Q4_0:
      return "Q4_0";
    case GgmlType::Q4_1:
      return "Q4_1";
    case GgmlType::Q5_0:
      return "Q5_0";
    case GgmlType::Q5_1:
      return "Q5_1";
    case GgmlType::Q8_0:
      return "Q8_0";
    case GgmlType::Q8_1:
      return "Q8_1";
    case GgmlType::Q2_K:
      return "Q2_K";
    case GgmlType::Q3_K:
      return "Q3_K";
    case GgmlType::Q4_K:
      return "Q4_K";
    case GgmlType::Q5_K:
      return "Q5_K";
    case GgmlType::Q6_K:
      return "Q6_K";
    case GgmlType::Q8_K:
      return "Q8_K";
    case GgmlType::I8:
      return "I8";
    case GgmlType::I16:
      return "I16";
    case GgmlType::I32:
      return "I32";
    case GgmlType::I64:
      return "I64";
    case GgmlType::F64:
      return "F64";
    case GgmlType::BF16:
      return "BF16";
  }
  return "unknown";
}

std::pair<std::uint32_t, std::uint32_t> ggmlBlock(GgmlType type) noexcept {
  // Block sizes and bytes per block from ggml's type traits (ggml/src/ggml.c).
  switch (type) {
    case GgmlType::F32:
      return {1, 4};
    case GgmlType::F16:
      return {1, 2};
    case GgmlType::BF16:
      return {1, 2};
    case GgmlType::Q4_0:
      return {32, 18};
    case GgmlType::Q4_1:
      return {32, 20};
    case GgmlType::Q5_0:
      return {32, 22};
    case GgmlType::Q5_1:
      return {32, 24};
    case GgmlType::Q8_0:
      return {32, 34};
    case GgmlType::Q8_1:
      return {32, 36};
    case GgmlType::Q2_K:
      return {256, 84};
    case GgmlType::Q3_K:
      return {256, 110};
    case GgmlType::Q4_K:
      return {256, 144};
    case GgmlType::Q5_K:
      return {256, 176};
    case GgmlType::Q6_K:
      return {256, 210};
    case GgmlType::Q8_K:
      return {256, 292};
    case GgmlType::I8:
      return {1, 1};
    case GgmlType::I16:
      return {1, 2};
    case GgmlType::I32:
      return {1, 4};
    case GgmlType::I64:
      return {1, 8};
    case GgmlType::F64:
      return {1, 8};
  }
  return {0, 0};
}

GgmlType parseGgmlTypeName(std::string_view name, std::string_view where) {
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (lower == "f32") return GgmlType::F32;
  if (lower == "f16") return GgmlType::F16;
  if (lower == "bf16") return GgmlType::BF16;
  if (lower == "q8_0") return GgmlType::Q8_0;
  fail(where, "expected a GGUF tensor type f32, f16, bf16 or q8_0, got {}", shownName(name));
}

std::string_view ggufTypeName(GgufType type) noexcept {
  switch (type) {
    case GgufType::UInt8:
      return "UINT8";
    case GgufType::Int8:
      return "INT8";
    case GgufType::UInt16:
      return "UINT16";
    case GgufType::Int16:
      return "INT16";
    case GgufType::UInt32:
      return "UINT32";
    case GgufType::Int32:
      return "INT32";
    case GgufType::Float32:
      return "FLOAT32";
    case GgufType::Bool:
      return "BOOL";
    case GgufType::String:
      return "STRING";
    case GgufType::Array:
      return "ARRAY";
    case GgufType::UInt64:
      return "UINT64";
    case GgufType::Int64:
      return "INT64";
    case GgufType::Float64:
      return "FLOAT64";
  }
  return "unknown";
}

// ---------------------------------------------------------------------------------------------
// GgufValue

GgufValue GgufValue::unsignedInt(GgufType type, std::uint64_t v) {
  if (!isUnsignedType(type))
    fail("GgufValue::unsignedInt", "expected UINT8, UINT16, UINT32 or UINT64, got {}",
         ggufTypeName(type));
  const std::uint64_t max = scalarSize(type) == 8
                                ? std::numeric_limits<std::uint64_t>::max()
                                : (std::uint64_t{1} << (8 * scalarSize(type))) - 1;
  if (v > max)
    fail("GgufValue::unsignedInt", "expected a value that fits in {}, got {}", ggufTypeName(type),
         v);
  return GgufValue(type, type, v);
}

GgufValue GgufValue::signedInt(GgufType type, std::int64_t v) {
  if (!isSignedType(type))
    fail("GgufValue::signedInt", "expected INT8, INT16, INT32 or INT64, got {}",
         ggufTypeName(type));
  if (scalarSize(type) < 8) {
    const std::int64_t max = (std::int64_t{1} << (8 * scalarSize(type) - 1)) - 1;
    if (v > max || v < -max - 1)
      fail("GgufValue::signedInt", "expected a value that fits in {}, got {}", ggufTypeName(type),
           v);
  }
  return GgufValue(type, type, v);
}

GgufValue GgufValue::float32(float v) {
  return GgufValue(GgufType::Float32, GgufType::Float32, static_cast<double>(v));
}
GgufValue GgufValue::float64(double v) {
  return GgufValue(GgufType::Float64, GgufType::Float64, v);
}
GgufValue GgufValue::boolean(bool v) {
  return GgufValue(GgufType::Bool, GgufType::Bool, v);
}
GgufValue GgufValue::string(std::string v) {
  return GgufValue(GgufType::String, GgufType::String, std::move(v));
}

GgufValue GgufValue::array(GgufType element, std::vector<GgufValue> values) {
  if (element == GgufType::Array || static_cast<std::uint32_t>(element) > 12)
    fail("GgufValue::array", "expected a scalar or string element type, got {}",
         ggufTypeName(element));
  for (const GgufValue& v : values) {
    if (v.type() != element)
      fail("GgufValue::array", "expected elements of type {}, got one of type {}",
           ggufTypeName(element), ggufTypeName(v.type()));
  }
  return GgufValue(GgufType::Array, element, std::move(values));
}

std::uint64_t GgufValue::asUnsigned(std::string_view where, std::string_view key) const {
  if (isUnsignedType(m_type)) return std::get<std::uint64_t>(m_value);
  if (isSignedType(m_type) && std::get<std::int64_t>(m_value) >= 0)
    return static_cast<std::uint64_t>(std::get<std::int64_t>(m_value));
  fail(where, "expected a non-negative integer for '{}', got {} {}", key, ggufTypeName(m_type),
       brief());
}

std::int64_t GgufValue::asSigned(std::string_view where, std::string_view key) const {
  if (isSignedType(m_type)) return std::get<std::int64_t>(m_value);
  if (isUnsignedType(m_type) &&
      std::get<std::uint64_t>(m_value) <=
          static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
    return static_cast<std::int64_t>(std::get<std::uint64_t>(m_value));
  fail(where, "expected an integer for '{}', got {} {}", key, ggufTypeName(m_type), brief());
}

double GgufValue::asFloat(std::string_view where, std::string_view key) const {
  if (m_type == GgufType::Float32 || m_type == GgufType::Float64) return std::get<double>(m_value);
  fail(where, "expected a FLOAT32 or FLOAT64 for '{}', got {} {}", key, ggufTypeName(m_type),
       brief());
}

bool GgufValue::asBool(std::string_view where, std::string_view key) const {
  if (m_type == GgufType::Bool) return std::get<bool>(m_value);
  fail(where, "expected a BOOL for '{}', got {} {}", key, ggufTypeName(m_type), brief());
}

const std::string& GgufValue::asString(std::string_view where, std::string_view key) const {
  if (m_type == GgufType::String) return std::get<std::string>(m_value);
  fail(where, "expected a STRING for '{}', got {} {}", key, ggufTypeName(m_type), brief());
}

const std::vector<GgufValue>& GgufValue::asArray(std::string_view where,
                                                 std::string_view key) const {
  if (m_type == GgufType::Array) return std::get<std::vector<GgufValue>>(m_value);
  fail(where, "expected an ARRAY for '{}', got {} {}", key, ggufTypeName(m_type), brief());
}

std::string GgufValue::brief() const {
  return std::visit(
      [this](const auto& v) -> std::string {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return shownName(v);
        } else if constexpr (std::is_same_v<T, std::vector<GgufValue>>) {
          return fmt::format("[{} x {}]", v.size(), ggufTypeName(m_element));
        } else if constexpr (std::is_same_v<T, double>) {
          return fmt::format("{}", m_type == GgufType::Float32 ? static_cast<float>(v) : v);
        } else {
          return fmt::format("{}", v);
        }
      },
      m_value);
}

std::uint64_t GgufTensorInfo::numel() const noexcept {
  std::uint64_t n = 1;
  for (const std::uint64_t d : ne) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Encoding and decoding (gguf-py quants.py: F16 as numpy's astype, BF16 and Q8_0 bit-exact with
// ggml's reference code)

namespace detail {

void encodeGgml(const float* values, std::size_t n, GgmlType type, std::byte* out) {
  switch (type) {
    case GgmlType::F32:
      for (std::size_t i = 0; i < n; ++i, out += 4)
        std::memcpy(out, &values[i], 4);  // little-endian hosts only (checked at compile time)
      break;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (std::size_t i = 0; i < n; ++i, out += 2) {
        const std::uint16_t h = type == GgmlType::F16 ? roundToFormat<F16Format>(values[i])
                                                      : roundToFormat<BF16Format>(values[i]);
        std::memcpy(out, &h, 2);
      }
      break;
    case GgmlType::Q8_0:
      // Per block of 32: d = max|x| / 127, id = 1 / d (0 when d = 0), q = round(x · id) with
      // halves away from zero, all in float; d stored as F16 (ggml quantize_row_q8_0_ref).
      for (std::size_t b = 0; b < n / 32; ++b, out += 34) {
        const float* x = values + 32 * b;
        float amax = 0;
        for (int j = 0; j < 32; ++j) amax = std::max(amax, std::fabs(x[j]));
        const float d = amax / 127.0f;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        const std::uint16_t h = roundToFormat<F16Format>(d);
        std::memcpy(out, &h, 2);
        for (int j = 0; j < 32; ++j) {
          const float q = std::round(x[j] * id);  // std::round: halves away from zero, as roundf
          out[2 + j] = static_cast<std::byte>(static_cast<std::int8_t>(q));
        }
      }
      break;
    default:
      fail("GgufWriter::addTensor", "expected a tensor type F32, F16, BF16 or Q8_0, got {}",
           ggmlTypeName(type));
  }
}

void decodeGgml(const std::byte* in, std::size_t n, GgmlType type, float* out) {
  switch (type) {
    case GgmlType::F32:
      std::memcpy(out, in, 4 * n);
      break;
    case GgmlType::F16:
    case GgmlType::BF16:
      for (std::size_t i = 0; i < n; ++i, in += 2) {
        std::uint16_t h;
        std::memcpy(&h, in, 2);
        out[i] = type == GgmlType::F16 ? halfToFloat(h) : bf16ToFloat(h);
      }
      break;
    case GgmlType::Q8_0:
      for (std::size_t b = 0; b < n / 32; ++b, in += 34) {
        std::uint16_t h;
        std::memcpy(&h, in, 2);
        const float d = halfToFloat(h);
        for (int j = 0; j < 32; ++j)
          out[32 * b + j] = d * static_cast<float>(std::bit_cast<std::int8_t>(in[2 + j]));
      }
      break;
    default:
      fail("GgufReader::matrix", "expected a tensor of type F32, F16, BF16 or Q8_0, got {}",
           ggmlTypeName(type));
  }
}

}  // namespace detail

static_assert(std::endian::native == std::endian::little,
              "lora/io/gguf: tensor data is copied as little-endian bytes");

std::vector<std::byte> encodeGgmlMatrix(const Eigen::Ref<const Eigen::MatrixXf>& m, GgmlType type) {
  constexpr std::string_view kWhere = "encodeGgmlMatrix";
  if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16 &&
      type != GgmlType::Q8_0)
    fail(kWhere, "expected a tensor type F32, F16, BF16 or Q8_0, got {}", ggmlTypeName(type));
  const auto [block, blockBytes] = ggmlBlock(type);
  if (m.cols() % block != 0)
    fail(kWhere, "expected a row length that is a multiple of {} for {}, got {}", block,
         ggmlTypeName(type), m.cols());
  if (!m.allFinite()) fail(kWhere, "expected finite values, got NaN or Inf");
  const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rows = m;
  const auto n = static_cast<std::size_t>(rows.size());
  std::vector<std::byte> out(n / block * blockBytes);
  detail::encodeGgml(rows.data(), n, type, out.data());
  return out;
}

// ---------------------------------------------------------------------------------------------
// GgufReader

// The bytes of a file: read into memory, or mapped.
struct GgufReader::Storage : detail::FileBytes {};

std::uint64_t GgufReader::fileBytes() const noexcept {
  return m_storage ? m_storage->size() : 0;
}

bool GgufReader::looksLikeGguf(const fs::path& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

GgufReader GgufReader::open(const fs::path& path) {
  constexpr std::string_view kWhere = "GgufReader::open";
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == EISDIR) fail(kWhere, "expected a readable GGUF file, got the folder '{}'", name);
    fail(kWhere, "expected a readable GGUF file, got '{}' ({})", name, detail::errnoText(errno));
  }
  struct stat st {};
  void* mapped = MAP_FAILED;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0)
    mapped = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  auto storage = std::make_shared<Storage>();
  if (mapped != MAP_FAILED) {
    storage->mapped = mapped;
    storage->mappedSize = static_cast<std::size_t>(st.st_size);
    ::close(fd);
  } else {
    if (S_ISDIR(st.st_mode)) {
      ::close(fd);
      fail(kWhere, "expected a readable GGUF file, got the folder '{}'", name);
    }
    // A pipe or an empty file: read what there is.
    char buffer[1 << 16];
    for (;;) {
      const ssize_t got = ::read(fd, buffer, sizeof buffer);
      if (got < 0) {
        const int err = errno;
        ::close(fd);
        fail(kWhere, "expected to read '{}', got {}", name, detail::errnoText(err));
      }
      if (got == 0) break;
      const auto* p = reinterpret_cast<const std::byte*>(buffer);
      storage->owned.insert(storage->owned.end(), p, p + got);
    }
    ::close(fd);
  }
  return parse(std::move(storage), name, kWhere);
}

GgufReader GgufReader::fromBytes(std::vector<std::byte> bytes, std::string sourceName) {
  auto storage = std::make_shared<Storage>();
  storage->owned = std::move(bytes);
  return parse(std::move(storage), std::move(sourceName), "GgufReader::fromBytes");
}

GgufReader GgufReader::parse(std::shared_ptr<const Storage> storage, std::string source,
                             std::string_view where) {
  GgufReader r;
  const std::byte* bytes = storage->data();
  const std::uint64_t total = storage->size();
  Cursor c(bytes, total, source, where);

  const auto magic = c.read<std::uint32_t>("the magic");
  if (magic != kMagic)
    fail(where,
         "expected a GGUF file (magic 'GGUF') in '{}', got the bytes {:02x} {:02x} {:02x} {:02x}",
         source, magic & 0xff, (magic >> 8) & 0xff, (magic >> 16) & 0xff, magic >> 24);
  r.m_version = c.read<std::uint32_t>("the version");
  if (r.m_version != 2 && r.m_version != 3)
    fail(where, "expected GGUF version 2 or 3 in '{}', got version {}", source, r.m_version);
  const auto nTensors = c.read<std::uint64_t>("the tensor count");
  const auto nKv = c.read<std::uint64_t>("the key-value count");
  // Each pair takes at least 8 + 4 + 1 bytes and each tensor 8 + 4 + 8 + 4 + 8: counts that
  // cannot fit are refused before anything is allocated for them.
  if (nKv > c.left() / 13)
    fail(where, "expected a key-value count that fits in '{}' ({} bytes), got {}", source, total,
         nKv);
  if (nTensors > c.left() / 32)
    fail(where, "expected a tensor count that fits in '{}' ({} bytes), got {}", source, total,
         nTensors);

  r.m_kv.reserve(static_cast<std::size_t>(nKv));
  for (std::uint64_t i = 0; i < nKv; ++i) {
    std::string key = c.string("a key");
    if (key.empty()) fail(where, "expected a non-empty key (pair {}) in '{}', got ''", i, source);
    if (r.m_kvIndex.count(key) != 0)
      fail(where, "expected unique keys in '{}', got {} twice", source, shownName(key));
    const auto type = static_cast<GgufType>(c.read<std::uint32_t>("a value type"));
    const std::string what = fmt::format("the value of {}", shownName(key));
    GgufValue value = GgufValue::boolean(false);
    if (isScalarType(type) || type == GgufType::String) {
      value = readScalar(c, type, what);
    } else if (type == GgufType::Array) {
      const auto element = static_cast<GgufType>(c.read<std::uint32_t>("an array type"));
      if (element == GgufType::Array)
        fail(where, "expected an array of scalars or strings for {} in '{}', got nested arrays",
             shownName(key), source);
      if (!isScalarType(element) && element != GgufType::String)
        fail(where, "expected a known array element type for {} in '{}', got {}", shownName(key),
             source, static_cast<std::uint32_t>(element));
      const auto n = c.read<std::uint64_t>("an array length");
      const std::uint64_t least = element == GgufType::String ? 8 : scalarSize(element);
      if (n > c.left() / least)
        fail(where, "expected an array length for {} that fits in '{}', got {}", shownName(key),
             source, n);
      std::vector<GgufValue> items;
      items.reserve(static_cast<std::size_t>(n));
      for (std::uint64_t j = 0; j < n; ++j) items.push_back(readScalar(c, element, what));
      value = GgufValue::array(element, std::move(items));
    } else {
      fail(where, "expected a known value type (0 to 12) for {} in '{}', got {}", shownName(key),
           source, static_cast<std::uint32_t>(type));
    }
    r.m_kvIndex.emplace(key, r.m_kv.size());
    r.m_kv.emplace_back(std::move(key), std::move(value));
  }

  if (const GgufValue* a = r.find("general.alignment")) {
    if (a->type() != GgufType::UInt32)
      fail(where, "expected general.alignment as a UINT32 in '{}', got {}", source,
           ggufTypeName(a->type()));
    const std::uint64_t alignment = a->asUnsigned(where, "general.alignment");
    if (alignment == 0 || !std::has_single_bit(alignment))
      fail(where, "expected general.alignment to be a power of two in '{}', got {}", source,
           alignment);
    r.m_alignment = alignment;
  }

  r.m_tensors.reserve(static_cast<std::size_t>(nTensors));
  std::uint64_t expectedOffset = 0;
  for (std::uint64_t i = 0; i < nTensors; ++i) {
    GgufTensorInfo t;
    t.name = c.string("a tensor name");
    if (t.name.empty() || t.name.size() > kMaxName)
      fail(where, "expected a tensor name of 1 to {} bytes (tensor {}) in '{}', got {} bytes",
           kMaxName, i, source, t.name.size());
    if (r.m_tensorIndex.count(t.name) != 0)
      fail(where, "expected unique tensor names in '{}', got {} twice", source, shownName(t.name));
    const auto dims = c.read<std::uint32_t>("a dimension count");
    if (dims == 0 || dims > kMaxDims)
      fail(where, "expected 1 to {} dimensions for tensor {} in '{}', got {}", kMaxDims,
           shownName(t.name), source, dims);
    std::uint64_t numel = 1;
    for (std::uint32_t d = 0; d < dims; ++d) {
      const auto n = c.read<std::uint64_t>("a dimension");
      if (n == 0 || n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
          numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) / n)
        fail(where,
             "expected positive dimensions whose product fits in 63 bits for tensor {} in '{}', "
             "got {} in dimension {}",
             shownName(t.name), source, n, d);
      numel *= n;
      t.ne.push_back(n);
    }
    const auto rawType = c.read<std::uint32_t>("a tensor type");
    t.type = static_cast<GgmlType>(rawType);
    const auto [block, blockBytes] = ggmlBlock(t.type);
    if (block == 0)
      fail(where, "expected a known ggml type for tensor {} in '{}', got type {}",
           shownName(t.name), source, rawType);
    if (t.ne[0] % block != 0)
      fail(where,
           "expected a row length that is a multiple of {} ({}'s block) for tensor {} in '{}', "
           "got {}",
           block, ggmlTypeName(t.type), shownName(t.name), source, t.ne[0]);
    t.bytes = numel / block * blockBytes;  // numel < 2^63 and blockBytes / block <= 8: no overflow
    t.offset = c.read<std::uint64_t>("a tensor offset");
    if (t.offset != expectedOffset)
      fail(where,
           "expected tensor {} at offset {} of the data in '{}' (packed in table order, aligned "
           "to {}), got offset {}",
           shownName(t.name), expectedOffset, source, r.m_alignment, t.offset);
    if (t.bytes > total)
      fail(where, "expected tensor {} to fit in '{}' ({} bytes), got {} bytes", shownName(t.name),
           source, total, t.bytes);
    expectedOffset = padTo(t.offset + t.bytes, r.m_alignment);
    r.m_tensorIndex.emplace(t.name, r.m_tensors.size());
    r.m_tensors.push_back(std::move(t));
  }

  // Without tensors there is no data section, and ggml does not ask for the padding either.
  r.m_dataOffset = r.m_tensors.empty() ? c.position() : padTo(c.position(), r.m_alignment);
  const std::uint64_t dataEnd =
      r.m_tensors.empty() ? r.m_dataOffset
                          : r.m_dataOffset + r.m_tensors.back().offset + r.m_tensors.back().bytes;
  if (r.m_dataOffset > total || dataEnd > total)
    fail(where, "expected {} bytes of tensor data from offset {} in '{}', got a file of {} bytes",
         dataEnd - std::min(r.m_dataOffset, dataEnd), r.m_dataOffset, source, total);
  r.m_storage = std::move(storage);
  r.m_source = std::move(source);
  return r;
}

const GgufValue* GgufReader::find(std::string_view key) const {
  const auto it = m_kvIndex.find(key);
  return it == m_kvIndex.end() ? nullptr : &m_kv[it->second].second;
}

const GgufValue& GgufReader::value(std::string_view key) const {
  if (const GgufValue* v = find(key)) return *v;
  fail("GgufReader::value", "expected the key {} in '{}', got no such key", shownName(key),
       m_source);
}

const GgufTensorInfo* GgufReader::findTensor(std::string_view name) const {
  const auto it = m_tensorIndex.find(name);
  return it == m_tensorIndex.end() ? nullptr : &m_tensors[it->second];
}

const GgufTensorInfo& GgufReader::tensor(std::string_view name) const {
  if (const GgufTensorInfo* t = findTensor(name)) return *t;
  fail("GgufReader::tensor", "expected the tensor {} in '{}', got no such tensor", shownName(name),
       m_source);
}

std::span<const std::byte> GgufReader::rawBytes(const GgufTensorInfo& t) const {
  return {m_storage->data() + m_dataOffset + t.offset, static_cast<std::size_t>(t.bytes)};
}

Eigen::MatrixXf GgufReader::matrix(std::string_view name) const {
  return matrix(tensor(name));
}

Eigen::MatrixXf GgufReader::matrix(const GgufTensorInfo& t) const {
  return rowMajor(t);
}

Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> GgufReader::rowMajor(
    const GgufTensorInfo& t) const {
  if (t.ne.size() > 2)
    fail("GgufReader::matrix", "expected a 1- or 2-D tensor for {} in '{}', got {} dimensions",
         shownName(t.name), m_source, t.ne.size());
  if (t.type != GgmlType::F32 && t.type != GgmlType::F16 && t.type != GgmlType::BF16 &&
      t.type != GgmlType::Q8_0)
    fail("GgufReader::matrix",
         "expected a tensor of type F32, F16, BF16 or Q8_0 for {} in '{}', got {}",
         shownName(t.name), m_source, ggmlTypeName(t.type));
  const auto cols = static_cast<Eigen::Index>(t.ne[0]);
  const auto rows = static_cast<Eigen::Index>(t.ne.size() == 2 ? t.ne[1] : 1);
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> m(rows, cols);
  const auto raw = rawBytes(t);
  detail::decodeGgml(raw.data(), static_cast<std::size_t>(t.numel()), t.type, m.data());
  return m;
}

void GgufReader::release(const GgufTensorInfo& t) const {
  if (m_storage->mapped == nullptr || t.bytes == 0) return;
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = reinterpret_cast<std::uintptr_t>(m_storage->data() + m_dataOffset + t.offset);
  const std::uintptr_t first = (begin + page - 1) / page * page;  // whole pages inside the tensor
  const std::uintptr_t last = (begin + t.bytes) / page * page;
  if (last > first)
    ::madvise(reinterpret_cast<void*>(first), last - first, MADV_DONTNEED);  // advice only
}

// ---------------------------------------------------------------------------------------------
// GgufWriter

GgufWriter::GgufWriter(std::uint32_t alignment) : m_alignment(alignment) {
  if (alignment == 0 || !std::has_single_bit(alignment))
    fail("GgufWriter", "expected an alignment that is a power of two, got {}", alignment);
  if (alignment != kDefaultAlignment)
    m_kv.emplace_back("general.alignment", GgufValue::unsignedInt(GgufType::UInt32, alignment));
}

GgufWriter& GgufWriter::set(std::string key, GgufValue value) {
  constexpr std::string_view kWhere = "GgufWriter::set";
  if (key.empty()) fail(kWhere, "expected a non-empty key, got ''");
  if (key == "general.alignment")
    fail(kWhere, "expected a key other than general.alignment (the constructor sets it), got it");
  for (const auto& kv : m_kv) {
    if (kv.first == key) fail(kWhere, "expected a new key, got the duplicate {}", shownName(key));
  }
  m_kv.emplace_back(std::move(key), std::move(value));
  return *this;
}

void GgufWriter::checkName(const std::string& name, std::string_view where) const {
  if (name.empty() || name.size() > kMaxName)
    fail(where, "expected a tensor name of 1 to {} bytes, got {} ({} bytes)", kMaxName,
         shownName(name), name.size());
  if (m_tensorIndex.count(name) != 0)
    fail(where, "expected a new tensor name, got the duplicate {}", shownName(name));
}

GgufWriter& GgufWriter::addTensor(std::string name, const Eigen::Ref<const Eigen::MatrixXf>& m,
                                  GgmlType type) {
  constexpr std::string_view kWhere = "GgufWriter::addTensor";
  checkName(name, kWhere);
  if (m.size() == 0)
    fail(kWhere, "expected a non-empty matrix for {}, got {}x{}", shownName(name), m.rows(),
         m.cols());
  if (type != GgmlType::F32 && type != GgmlType::F16 && type != GgmlType::BF16 &&
      type != GgmlType::Q8_0)
    fail(kWhere, "expected a tensor type F32, F16, BF16 or Q8_0 for {}, got {}", shownName(name),
         ggmlTypeName(type));
  const auto [block, blockBytes] = ggmlBlock(type);
  if (m.cols() % block != 0)
    fail(kWhere, "expected a row length that is a multiple of {} for {} as {}, got {}", block,
         shownName(name), ggmlTypeName(type), m.cols());
  if (!m.allFinite())
    fail(kWhere, "expected finite values for {}, got NaN or Inf", shownName(name));
  Tensor t{std::move(name),
           type,
           {static_cast<std::uint64_t>(m.cols()), static_cast<std::uint64_t>(m.rows())},
           encodeGgmlMatrix(m, type)};
  m_tensorIndex.emplace(t.name, m_tensors.size());
  m_tensors.push_back(std::move(t));
  return *this;
}

GgufWriter& GgufWriter::addRaw(std::string name, GgmlType type, std::vector<std::uint64_t> ne,
                               std::vector<std::byte> bytes) {
  constexpr std::string_view kWhere = "GgufWriter::addRaw";
  checkName(name, kWhere);
  const auto [block, blockBytes] = ggmlBlock(type);
  if (block == 0)
    fail(kWhere, "expected a known ggml type for {}, got type {}", shownName(name),
         static_cast<std::uint32_t>(type));
  if (ne.empty() || ne.size() > kMaxDims || ne[0] % block != 0)
    fail(kWhere, "expected 1 to {} dimensions and a row length that is a multiple of {} for {}",
         kMaxDims, block, shownName(name));
  std::uint64_t numel = 1;
  for (const std::uint64_t d : ne) {
    if (d == 0 || numel > std::numeric_limits<std::uint64_t>::max() / 8 / d)
      fail(kWhere, "expected positive dimensions that fit for {}", shownName(name));
    numel *= d;
  }
  if (numel / block * blockBytes != bytes.size())
    fail(kWhere, "expected {} bytes for {} ({}), got {}", numel / block * blockBytes,
         shownName(name), ggmlTypeName(type), bytes.size());
  m_tensorIndex.emplace(name, m_tensors.size());
  m_tensors.push_back(Tensor{std::move(name), type, std::move(ne), std::move(bytes)});
  return *this;
}

std::vector<std::byte> GgufWriter::header() const {
  std::vector<std::byte> out;
  appendLittle<std::uint32_t>(out, kMagic);
  appendLittle<std::uint32_t>(out, 3);
  appendLittle<std::uint64_t>(out, m_tensors.size());
  appendLittle<std::uint64_t>(out, m_kv.size());
  for (const auto& [key, value] : m_kv) {
    writeString(out, key);
    appendLittle<std::uint32_t>(out, static_cast<std::uint32_t>(value.type()));
    writeValue(out, value);
  }
  std::uint64_t offset = 0;
  for (const Tensor& t : m_tensors) {
    writeString(out, t.name);
    appendLittle<std::uint32_t>(out, static_cast<std::uint32_t>(t.ne.size()));
    for (const std::uint64_t d : t.ne) appendLittle<std::uint64_t>(out, d);
    appendLittle<std::uint32_t>(out, static_cast<std::uint32_t>(t.type));
    appendLittle<std::uint64_t>(out, offset);
    offset = padTo(offset + t.data.size(), m_alignment);
  }
  out.resize(padTo(out.size(), m_alignment), std::byte{0});
  return out;
}

std::vector<std::byte> GgufWriter::bytes() const {
  std::vector<std::byte> out = header();
  for (const Tensor& t : m_tensors) {
    out.insert(out.end(), t.data.begin(), t.data.end());
    out.resize(padTo(out.size(), m_alignment), std::byte{0});
  }
  return out;
}

void GgufWriter::write(const fs::path& path) const {
  detail::AtomicFile file(path, "GgufWriter::write");
  const std::vector<std::byte> head = header();
  file.write(head.data(), head.size());
  static constexpr std::byte kZeros[64] = {};
  for (const Tensor& t : m_tensors) {
    file.write(t.data.data(), t.data.size());
    const std::size_t pad = padTo(t.data.size(), m_alignment) - t.data.size();
    for (std::size_t left = pad; left > 0;) {
      const std::size_t n = std::min(left, sizeof kZeros);
      file.write(kZeros, n);
      left -= n;
    }
  }
  file.commit();
}

}  // namespace lora
