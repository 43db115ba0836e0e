#include "lora/io/safetensors.hpp"

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <numeric>
#include <set>
#include <system_error>
#include <utility>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>

#include "file_bytes.hpp"
#include "little_endian.hpp"
#include "lora/detail/atomic_file.hpp"
#include "lora/detail/half.hpp"
#include "lora/error.hpp"
#include "messages.hpp"
#include "safetensors_header.hpp"

namespace lora {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using detail::fail;
using detail::loadLittle;
using detail::storeLittle;

struct DTypeRow {
  DType dtype;
  std::string_view name;
  std::size_t size;
};

// Names as the reference implementation writes them (note "BOOL").
constexpr std::array<DTypeRow, 15> kDTypes{{
    {DType::Bool, "BOOL", 1},
    {DType::U8, "U8", 1},
    {DType::I8, "I8", 1},
    {DType::I16, "I16", 2},
    {DType::U16, "U16", 2},
    {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2},
    {DType::I32, "I32", 4},
    {DType::U32, "U32", 4},
    {DType::F32, "F32", 4},
    {DType::F64, "F64", 8},
    {DType::I64, "I64", 8},
    {DType::U64, "U64", 8},
    {DType::F8_E4M3, "F8_E4M3", 1},
    {DType::F8_E5M2, "F8_E5M2", 1},
}};

const DTypeRow* findDType(std::string_view name) {
  for (const auto& row : kDTypes) {
    if (row.name == name) return &row;
  }
  return nullptr;
}

std::string knownDTypes() {
  std::string out;
  for (const auto& row : kDTypes) {
    if (!out.empty()) out += ", ";
    out += row.name;
  }
  return out;
}

// a * b, or false on overflow.
bool checkedMul(std::uint64_t a, std::uint64_t b, std::uint64_t& out) noexcept {
  if (a != 0 && b > std::numeric_limits<std::uint64_t>::max() / a) return false;
  out = a * b;
  return true;
}

using detail::shapeText;
bool isUtf8(const std::string& s) {
  try {
    (void)Json(s).dump();
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

std::string printable(const std::string& s) {
  return Json(s).dump(-1, ' ', false, Json::error_handler_t::replace);
}

// IEEE round-to-nearest double -> float without the undefined behaviour of converting an
// out-of-range finite double (the result is +-FLT_MAX or +-inf as IEEE 754 prescribes).
float narrowToFloat(double d) noexcept {
  constexpr double kMax = static_cast<double>(std::numeric_limits<float>::max());
  if (std::isfinite(d) && std::fabs(d) > kMax) {
    // FLT_MAX + half an ulp (2^127 * 2^-24 = 2^103) rounds to infinity (tie goes to even = inf).
    constexpr double kHalfway = kMax + 0x1p103;
    const float big = std::fabs(d) >= kHalfway ? std::numeric_limits<float>::infinity()
                                               : std::numeric_limits<float>::max();
    return std::signbit(d) ? -big : big;
  }
  return static_cast<float>(d);
}

// Encodes n values as `out` (F32, F64, F16 or BF16) into p, one loop per dtype (the dtype is
// not decided per element). double -> F32 checks the whole array once for finite values beyond
// FLT_MAX; without them (the usual case) the conversion is a plain, vectorized loop.
template <typename Scalar>
void encodeValues(const Scalar* values, std::size_t n, DType out, std::byte* p) noexcept {
  const auto each = [&](std::size_t size, auto encode) {
    for (std::size_t k = 0; k < n; ++k, p += size) storeLittle(p, encode(values[k]));
  };
  switch (out) {
    case DType::F32:
      if constexpr (std::is_same_v<Scalar, float>) {
        each(4, [](float x) { return std::bit_cast<std::uint32_t>(x); });
      } else {
        constexpr double kMax = static_cast<double>(std::numeric_limits<float>::max());
        std::size_t beyond = 0;  // counted, not or-ed into a bool: the count vectorizes
        for (std::size_t k = 0; k < n; ++k) beyond += std::fabs(values[k]) > kMax;
        if (beyond != 0) {
          each(4, [](double x) { return std::bit_cast<std::uint32_t>(narrowToFloat(x)); });
        } else {  // no magnitude beyond FLT_MAX (NaN passes): the plain conversion rounds right
          each(4, [](double x) { return std::bit_cast<std::uint32_t>(static_cast<float>(x)); });
        }
      }
      break;
    case DType::F64:
      each(8, [](Scalar x) { return std::bit_cast<std::uint64_t>(static_cast<double>(x)); });
      break;
    case DType::F16:
      each(2, [](Scalar x) { return detail::roundToFormat<detail::F16Format>(x); });
      break;
    default:  // BF16
      each(2, [](Scalar x) { return detail::roundToFormat<detail::BF16Format>(x); });
      break;
  }
}

template <typename Scalar>
Scalar fromDouble(double d) noexcept {
  if constexpr (std::is_same_v<Scalar, float>) {
    return narrowToFloat(d);
  } else {
    return d;
  }
}

// Reads numel elements of size elemSize from src with `load`; with transpose2d the row-major
// [rows, cols] input is stored column-major.
template <typename Scalar, typename Load>
void scatter(const TensorInfo& t, const std::byte* src, std::size_t elemSize, Scalar* out,
             bool transpose2d, Load load) {
  if (transpose2d) {
    // Tile by tile (64 x 64 elements stay in L1), so that neither the reads nor the writes stride
    // through memory one element per cache line.
    constexpr std::size_t kTile = 64;
    const auto rows = static_cast<std::size_t>(t.shape[0]);
    const std::size_t cols = rows == 0 ? 0 : static_cast<std::size_t>(t.numel()) / rows;
    for (std::size_t i0 = 0; i0 < rows; i0 += kTile) {
      const std::size_t iEnd = std::min(rows, i0 + kTile);
      for (std::size_t j0 = 0; j0 < cols; j0 += kTile) {
        const std::size_t jEnd = std::min(cols, j0 + kTile);
        for (std::size_t j = j0; j < jEnd; ++j) {
          for (std::size_t i = i0; i < iEnd; ++i)
            out[j * rows + i] = load(src + (i * cols + j) * elemSize);
        }
      }
    }
  } else {
    const auto n = static_cast<std::size_t>(t.numel());
    for (std::size_t k = 0; k < n; ++k) out[k] = load(src + k * elemSize);
  }
}

template <typename Scalar>
void decodeImpl(const TensorInfo& t, const std::byte* src, Scalar* out, bool transpose2d,
                const std::string& source, std::string_view where) {
  switch (t.dtype) {
    case DType::F32:
      scatter(t, src, 4, out, transpose2d, [](const std::byte* p) {
        return static_cast<Scalar>(std::bit_cast<float>(loadLittle<std::uint32_t>(p)));
      });
      return;
    case DType::F64:
      scatter(t, src, 8, out, transpose2d, [](const std::byte* p) {
        return fromDouble<Scalar>(std::bit_cast<double>(loadLittle<std::uint64_t>(p)));
      });
      return;
    case DType::F16:
      scatter(t, src, 2, out, transpose2d, [](const std::byte* p) {
        return static_cast<Scalar>(detail::halfToFloat(loadLittle<std::uint16_t>(p)));
      });
      return;
    case DType::BF16:
      scatter(t, src, 2, out, transpose2d, [](const std::byte* p) {
        return static_cast<Scalar>(detail::bf16ToFloat(loadLittle<std::uint16_t>(p)));
      });
      return;
    default:
      fail(where,
           "expected a tensor of dtype F16, BF16, F32 or F64, got {} for tensor '{}' in '{}'",
           dtypeName(t.dtype), t.name, source);
  }
}

// Tracks the keys of every open JSON object during parsing, to find duplicates (nlohmann
// silently keeps one of them).
struct DuplicateKeys {
  std::vector<std::set<std::string>> open;
  std::string firstDuplicate;
  bool topLevel = false;
  bool found = false;

  bool operator()(int /*depth*/, Json::parse_event_t event, Json& parsed) {
    switch (event) {
      case Json::parse_event_t::object_start:
        open.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        if (!open.empty()) open.pop_back();
        break;
      case Json::parse_event_t::key:
        if (!open.empty() && parsed.is_string()) {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!open.back().insert(key).second && !found) {
            found = true;
            firstDuplicate = key;
            topLevel = open.size() == 1;
          }
        }
        break;
      default:
        break;
    }
    return true;
  }
};

std::uint64_t nonNegativeInteger(const Json& j, bool& ok) {
  ok = j.is_number_unsigned();
  return ok ? j.get<std::uint64_t>() : 0;
}

TensorInfo parseEntry(const std::string& name, const Json& v, std::uint64_t dataSize,
                      const std::string& source, std::string_view where) {
  if (!v.is_object()) {
    fail(where,
         "expected tensor '{}' in '{}' to be an object with dtype, shape and data_offsets, got {}",
         name, source, detail::jsonBrief(v));
  }
  const auto field = [&](const char* key) -> const Json& {
    const auto it = v.find(key);
    if (it == v.end()) {
      fail(where, "expected a \"{}\" field for tensor '{}' in '{}', got none", key, name, source);
    }
    return *it;
  };

  TensorInfo t;
  t.name = name;

  const Json& dtype = field("dtype");
  if (!dtype.is_string()) {
    fail(where, "expected \"dtype\" of tensor '{}' in '{}' to be a string, got {}", name, source,
         detail::jsonBrief(dtype));
  }
  const DTypeRow* row = findDType(dtype.get_ref<const std::string&>());
  if (row == nullptr) {
    fail(where, "expected a known dtype ({}) for tensor '{}' in '{}', got {}", knownDTypes(), name,
         source, detail::jsonBrief(dtype));
  }
  t.dtype = row->dtype;

  const Json& shape = field("shape");
  if (!shape.is_array()) {
    fail(where, "expected \"shape\" of tensor '{}' in '{}' to be an array of integers, got {}",
         name, source, detail::jsonBrief(shape));
  }
  std::uint64_t numel = 1;
  for (const Json& dim : shape) {
    if (dim.is_number_integer() && !dim.is_number_unsigned()) {
      fail(where, "expected non-negative dimensions for tensor '{}' in '{}', got shape {}", name,
           source, detail::jsonBrief(shape));
    }
    if (!dim.is_number_unsigned()) {
      fail(where, "expected \"shape\" of tensor '{}' in '{}' to be an array of integers, got {}",
           name, source, detail::jsonBrief(shape));
    }
    const auto d = dim.get<std::uint64_t>();
    if (d > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
        !checkedMul(numel, d, numel) ||
        numel > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      fail(where,
           "expected a shape whose element count fits in 63 bits for tensor '{}' in '{}', got "
           "shape {} (overflow)",
           name, source, detail::jsonBrief(shape));
    }
    t.shape.push_back(static_cast<std::int64_t>(d));
  }

  const Json& offsets = field("data_offsets");
  bool okBegin = false;
  bool okEnd = false;
  if (offsets.is_array() && offsets.size() == 2) {
    t.begin = nonNegativeInteger(offsets[0], okBegin);
    t.end = nonNegativeInteger(offsets[1], okEnd);
  }
  if (!okBegin || !okEnd) {
    fail(where,
         "expected \"data_offsets\" of tensor '{}' in '{}' to be two non-negative integers, got {}",
         name, source, detail::jsonBrief(offsets));
  }
  if (t.begin > t.end) {
    fail(where, "expected data_offsets with begin <= end for tensor '{}' in '{}', got [{}, {}]",
         name, source, t.begin, t.end);
  }
  if (t.end > dataSize) {
    fail(where,
         "expected data_offsets within the {}-byte data buffer for tensor '{}' in '{}', got [{}, "
         "{}] (end beyond the buffer)",
         dataSize, name, source, t.begin, t.end);
  }
  std::uint64_t nbytes = 0;
  if (!checkedMul(numel, row->size, nbytes)) {
    fail(where,
         "expected a byte size that fits in 64 bits for tensor '{}' in '{}', got shape {} "
         "of {} (overflow)",
         name, source, shapeText(t.shape), row->name);
  }
  if (t.end - t.begin != nbytes) {
    fail(where,
         "expected {} bytes (shape {} of {}) for tensor '{}' in '{}', got data_offsets [{}, {}] "
         "({} bytes)",
         nbytes, shapeText(t.shape), row->name, name, source, t.begin, t.end, t.end - t.begin);
  }
  return t;
}

}  // namespace

std::size_t dtypeSize(DType dtype) {
  for (const auto& row : kDTypes) {
    if (row.dtype == dtype) return row.size;
  }
  fail("lora::dtypeSize", "expected a DType enumerator, got the value {}", static_cast<int>(dtype));
}

std::string_view dtypeName(DType dtype) {
  for (const auto& row : kDTypes) {
    if (row.dtype == dtype) return row.name;
  }
  fail("lora::dtypeName", "expected a DType enumerator, got the value {}", static_cast<int>(dtype));
}

DType parseDType(std::string_view name) {
  const DTypeRow* row = findDType(name);
  if (row == nullptr) {
    fail("lora::parseDType", "expected one of {}, got '{}'", knownDTypes(), name);
  }
  return row->dtype;
}

std::int64_t TensorInfo::numel() const {
  std::int64_t n = 1;
  for (const std::int64_t d : shape) n *= d;
  return n;
}

// ---------------------------------------------------------------------------------------------
// SafeTensorsReader

// The bytes of a file: read into memory, or mapped.
struct SafeTensorsReader::Storage : detail::FileBytes {};

SafeTensorsReader SafeTensorsReader::open(const std::filesystem::path& path) {
  constexpr std::string_view kWhere = "SafeTensorsReader::open";
  const std::string name = path.string();
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    fail(kWhere, "expected a readable safetensors file, got the folder '{}'", name);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fail(kWhere, "expected a readable safetensors file, got '{}' ({})", name,
         fs::exists(path, ec) ? "cannot open it" : "no such file");
  }
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) fail(kWhere, "expected a file of known size, got '{}' (cannot seek)", name);
  in.seekg(0, std::ios::beg);
  std::vector<std::byte> bytes(static_cast<std::size_t>(size));
  in.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(size));
  if (!in || in.gcount() != static_cast<std::streamsize>(size)) {
    fail(kWhere, "expected to read {} bytes from '{}', got {}", size, name, in.gcount());
  }
  auto storage = std::make_shared<Storage>();
  storage->owned = std::move(bytes);
  return parse(std::move(storage), name, kWhere);
}

SafeTensorsReader SafeTensorsReader::fromBytes(std::vector<std::byte> bytes,
                                               std::string sourceName) {
  auto storage = std::make_shared<Storage>();
  storage->owned = std::move(bytes);
  return parse(std::move(storage), std::move(sourceName), "SafeTensorsReader::fromBytes");
}

SafeTensorsReader SafeTensorsReader::map(const std::filesystem::path& path) {
  constexpr std::string_view kWhere = "SafeTensorsReader::map";
  const std::string name = path.string();
  const int fd = ::open(name.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == EISDIR)
      fail(kWhere, "expected a readable safetensors file, got the folder '{}'", name);
    fail(kWhere, "expected a readable safetensors file, got '{}' ({})", name,
         detail::errnoText(errno));
  }
  struct stat st {};
  void* mapped = MAP_FAILED;
  if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
    mapped = ::mmap(nullptr, static_cast<std::size_t>(st.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  }
  const bool isDir = S_ISDIR(st.st_mode);
  ::close(fd);  // the mapping keeps the file
  if (mapped == MAP_FAILED) {
    if (isDir) fail(kWhere, "expected a readable safetensors file, got the folder '{}'", name);
    return open(path);  // a pipe, an empty file, or no mapping possible: read it
  }
  auto storage = std::make_shared<Storage>();
  storage->mapped = mapped;
  storage->mappedSize = static_cast<std::size_t>(st.st_size);
  return parse(std::move(storage), name, kWhere);
}

SafeTensorsReader SafeTensorsReader::parse(std::shared_ptr<const Storage> storage,
                                           std::string source, std::string_view where) {
  const std::byte* bytes = storage->data();
  const std::uint64_t total = storage->size();
  if (total < 8) {
    fail(where, "expected at least 8 bytes (the header length) in '{}', got {} bytes", source,
         total);
  }
  const auto headerLen = loadLittle<std::uint64_t>(bytes);
  if (headerLen > total - 8) {  // no overflow: total >= 8
    fail(where,
         "expected a header length of at most {} bytes (the rest of the file) in '{}', got {}",
         total - 8, source, headerLen);
  }
  const char* text = reinterpret_cast<const char*>(bytes + 8);
  DuplicateKeys duplicates;
  Json header;
  try {
    header = Json::parse(text, text + headerLen, std::ref(duplicates));
  } catch (const nlohmann::json::exception& e) {
    fail(where, "expected a valid JSON header in '{}', got {}", source, e.what());
  }
  if (!header.is_object()) {
    fail(where, "expected the header of '{}' to be a JSON object, got {}", source,
         header.type_name());
  }
  if (duplicates.found) {
    if (duplicates.topLevel) {
      fail(where, "expected unique tensor names in '{}', got the duplicate name '{}'", source,
           duplicates.firstDuplicate);
    }
    fail(where, "expected unique keys in the header objects of '{}', got the duplicate key '{}'",
         source, duplicates.firstDuplicate);
  }

  const std::uint64_t dataSize = total - 8 - headerLen;
  SafeTensorsReader reader;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& key = it.key();
    const Json& value = it.value();
    if (key == "__metadata__") {
      if (!value.is_object()) {
        fail(where, "expected __metadata__ in '{}' to be a map of strings to strings, got {}",
             source, detail::jsonBrief(value));
      }
      for (auto m = value.begin(); m != value.end(); ++m) {
        if (!m.value().is_string()) {
          fail(where,
               "expected __metadata__ in '{}' to be a map of strings to strings, got {} for key "
               "'{}'",
               source, detail::jsonBrief(m.value()), m.key());
        }
        reader.m_metadata.emplace(m.key(), m.value().get<std::string>());
      }
      continue;
    }
    reader.m_index.emplace(key, reader.m_tensors.size());
    reader.m_tensors.push_back(parseEntry(key, value, dataSize, source, where));
    reader.m_names.push_back(key);
  }

  // The tensors must tile [0, dataSize) exactly, in any order (as the reference requires).
  std::vector<std::size_t> order(reader.m_tensors.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const TensorInfo& x = reader.m_tensors[a];
    const TensorInfo& y = reader.m_tensors[b];
    return std::pair(x.begin, x.end) < std::pair(y.begin, y.end);
  });
  std::uint64_t covered = 0;
  const TensorInfo* previous = nullptr;
  for (const std::size_t i : order) {
    const TensorInfo& t = reader.m_tensors[i];
    if (t.begin < covered) {
      fail(where,
           "expected non-overlapping tensors in '{}', got tensor '{}' [{}, {}] that overlaps "
           "tensor '{}' [{}, {}]",
           source, t.name, t.begin, t.end, previous->name, previous->begin, previous->end);
    }
    if (t.begin > covered) {
      fail(where,
           "expected tensors that cover the data buffer of '{}' without holes, got a hole of "
           "bytes [{}, {}) before tensor '{}'",
           source, covered, t.begin, t.name);
    }
    covered = t.end;
    previous = &t;
  }
  if (covered != dataSize) {
    fail(where,
         "expected tensors that cover the data buffer of '{}' without holes, got a hole of bytes "
         "[{}, {}) after the last tensor{}",
         source, covered, dataSize,
         previous != nullptr ? fmt::format(" '{}'", previous->name) : std::string());
  }

  reader.m_source = std::move(source);
  reader.m_dataStart = static_cast<std::size_t>(8 + headerLen);
  reader.m_storage = std::move(storage);
  return reader;
}

const std::byte* SafeTensorsReader::dataOf(const TensorInfo& t) const {
  return m_storage->data() + m_dataStart + t.begin;
}

bool SafeTensorsReader::isMapped() const noexcept {
  return m_storage != nullptr && m_storage->mapped != nullptr;
}

void SafeTensorsReader::release(std::string_view name) const {
  const TensorInfo& t = tensorOfRank(name, -1, "SafeTensorsReader::release");
  if (!isMapped() || t.end == t.begin) return;
  // Whole pages only (the mapping starts on a page); a page shared with a neighbouring tensor is
  // dropped as well and read again from the file if that tensor is used.
  const auto page = static_cast<std::uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto base = reinterpret_cast<std::uintptr_t>(m_storage->mapped);
  const std::uintptr_t begin = reinterpret_cast<std::uintptr_t>(dataOf(t)) / page * page;
  const std::uintptr_t end = std::min<std::uintptr_t>(
      (reinterpret_cast<std::uintptr_t>(dataOf(t)) + (t.end - t.begin) + page - 1) / page * page,
      (base + m_storage->mappedSize + page - 1) / page * page);
  ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

const TensorInfo* SafeTensorsReader::find(std::string_view name) const {
  const auto it = m_index.find(name);
  return it == m_index.end() ? nullptr : &m_tensors[it->second];
}

bool SafeTensorsReader::contains(std::string_view name) const {
  return find(name) != nullptr;
}

const TensorInfo& SafeTensorsReader::info(std::string_view name) const {
  return tensorOfRank(name, -1, "SafeTensorsReader::info");
}

std::span<const std::byte> SafeTensorsReader::rawBytes(std::string_view name) const {
  const TensorInfo& t = tensorOfRank(name, -1, "SafeTensorsReader::rawBytes");
  return {dataOf(t), static_cast<std::size_t>(t.end - t.begin)};
}

const TensorInfo& SafeTensorsReader::tensorOfRank(std::string_view name, int rank,
                                                  std::string_view where) const {
  const TensorInfo* t = find(name);
  if (t == nullptr) {
    fail(where, "expected the name of a tensor in '{}', got '{}'", m_source, name);
  }
  if (rank >= 0 && t->shape.size() != static_cast<std::size_t>(rank)) {
    fail(where, "expected a {}-D tensor, got shape {} for tensor '{}' in '{}'", rank,
         shapeText(t->shape), t->name, m_source);
  }
  if (rank == -2 && t->shape.size() < 2) {
    fail(where, "expected a tensor of 2 or more dimensions, got shape {} for tensor '{}' in '{}'",
         shapeText(t->shape), t->name, m_source);
  }
  return *t;
}

void SafeTensorsReader::decodeInto(const TensorInfo& t, float* out, bool transpose2d,
                                   std::string_view where) const {
  decodeImpl(t, dataOf(t), out, transpose2d, m_source, where);
}

void SafeTensorsReader::decodeInto(const TensorInfo& t, double* out, bool transpose2d,
                                   std::string_view where) const {
  decodeImpl(t, dataOf(t), out, transpose2d, m_source, where);
}

// ---------------------------------------------------------------------------------------------
// SafeTensorsWriter

void SafeTensorsWriter::checkVectorShape(const std::string& name, std::int64_t rows,
                                         std::int64_t cols) {
  if (rows != 1 && cols != 1) {
    fail("SafeTensorsWriter::addVector",
         "expected a row or column vector for tensor '{}', got a {}x{} matrix", printable(name),
         rows, cols);
  }
}

void SafeTensorsWriter::checkFlatShape(const std::string& name,
                                       const std::vector<std::int64_t>& shape, std::int64_t size) {
  std::uint64_t n = 1;
  for (const std::int64_t d : shape) {
    if (d < 0 || !checkedMul(n, static_cast<std::uint64_t>(d), n)) {
      fail("SafeTensorsWriter::addFlat",
           "expected non-negative dimensions whose product fits in 64 bits for tensor {}, got "
           "shape {}",
           printable(name), shapeText(shape));
    }
  }
  if (n != static_cast<std::uint64_t>(size)) {
    fail("SafeTensorsWriter::addFlat", "expected {} values for shape {} of tensor {}, got {}", n,
         shapeText(shape), printable(name), size);
  }
}

SafeTensorsWriter& SafeTensorsWriter::addRaw(std::string name, DType dtype,
                                             std::vector<std::int64_t> shape,
                                             std::span<const std::byte> data) {
  constexpr std::string_view kWhere = "SafeTensorsWriter::addRaw";
  if (name.empty()) fail(kWhere, "expected a non-empty tensor name, got ''");
  if (name == "__metadata__") {
    fail(kWhere, "expected a tensor name other than the reserved '__metadata__', got it");
  }
  if (!isUtf8(name)) fail(kWhere, "expected a UTF-8 tensor name, got {}", printable(name));
  if (contains(name)) fail(kWhere, "expected a new tensor name, got the duplicate '{}'", name);
  std::uint64_t bytes = dtypeSize(dtype);
  for (const std::int64_t d : shape) {
    if (d < 0 || !checkedMul(bytes, static_cast<std::uint64_t>(d), bytes)) {
      fail(kWhere,
           "expected non-negative dimensions whose byte size fits in 64 bits for tensor '{}', "
           "got shape {}",
           name, shapeText(shape));
    }
  }
  if (bytes != data.size()) {
    fail(kWhere, "expected {} bytes for tensor '{}' ({} x {}), got {}", bytes, name,
         shapeText(shape), dtypeName(dtype), data.size());
  }
  const std::size_t index = m_entries.size();
  m_entries.push_back(
      Entry{name, dtype, std::move(shape), std::vector<std::byte>(data.begin(), data.end())});
  try {
    m_index.emplace(std::move(name), index);
  } catch (...) {
    m_entries.pop_back();
    throw;
  }
  return *this;
}

SafeTensorsWriter& SafeTensorsWriter::append(SafeTensorsWriter&& other) {
  if (&other == this) {
    fail("SafeTensorsWriter::append", "expected another writer, got this one");
  }
  for (const Entry& e : other.m_entries) {
    if (contains(e.name)) {
      fail("SafeTensorsWriter::append", "expected new tensor names, got the duplicate '{}'",
           e.name);
    }
  }
  // Reserve first so that nothing below can throw half-way.
  m_entries.reserve(m_entries.size() + other.m_entries.size());
  std::map<std::string, std::size_t, std::less<>> index = m_index;
  for (std::size_t i = 0; i < other.m_entries.size(); ++i) {
    index.emplace(other.m_entries[i].name, m_entries.size() + i);
  }
  for (Entry& e : other.m_entries) m_entries.push_back(std::move(e));
  m_index.swap(index);
  other.m_entries.clear();
  other.m_index.clear();
  return *this;
}

bool SafeTensorsWriter::contains(std::string_view name) const {
  return m_index.find(name) != m_index.end();
}

SafeTensorsWriter& SafeTensorsWriter::setMetadata(std::string key, std::string value) {
  if (!isUtf8(key) || !isUtf8(value)) {
    fail("SafeTensorsWriter::setMetadata", "expected UTF-8 text, got the key {} and value {}",
         printable(key), printable(value));
  }
  m_metadata.insert_or_assign(std::move(key), std::move(value));
  return *this;
}

void SafeTensorsWriter::addEncoded(std::string name, std::vector<std::int64_t> shape,
                                   const float* values, DType out, std::string_view where) {
  addEncodedImpl(std::move(name), std::move(shape), values, out, where);
}

void SafeTensorsWriter::addEncoded(std::string name, std::vector<std::int64_t> shape,
                                   const double* values, DType out, std::string_view where) {
  addEncodedImpl(std::move(name), std::move(shape), values, out, where);
}

template <typename Scalar>
void SafeTensorsWriter::addEncodedImpl(std::string name, std::vector<std::int64_t> shape,
                                       const Scalar* values, DType out, std::string_view where) {
  if (name.empty()) fail(where, "expected a non-empty tensor name, got ''");
  if (name == "__metadata__") {
    fail(where, "expected a tensor name other than the reserved '__metadata__', got it");
  }
  if (!isUtf8(name)) fail(where, "expected a UTF-8 tensor name, got {}", printable(name));
  if (contains(name)) fail(where, "expected a new tensor name, got the duplicate '{}'", name);
  if (out != DType::F32 && out != DType::F64 && out != DType::F16 && out != DType::BF16) {
    fail(where, "expected an output dtype of F32, F64, F16 or BF16 for tensor '{}', got {}", name,
         dtypeName(out));
  }

  std::size_t n = 1;
  for (const std::int64_t d : shape) n *= static_cast<std::size_t>(d);
  std::vector<std::byte> data(n * dtypeSize(out));
  encodeValues(values, n, out, data.data());

  const std::size_t index = m_entries.size();
  m_entries.push_back(Entry{name, out, std::move(shape), std::move(data)});
  try {
    m_index.emplace(std::move(name), index);
  } catch (...) {
    m_entries.pop_back();
    throw;
  }
}

namespace {

// The position of a dtype in the `Dtype` enum of the safetensors crate (its declaration order:
// BOOL, U8, I8, F8_E5M2, F8_E4M3, I16, U16, F16, BF16, I32, U32, F32, F64, I64, U64), which its
// serializer sorts by, largest first.
int referenceDTypeOrder(DType d) {
  switch (d) {
    case DType::Bool:
      return 0;
    case DType::U8:
      return 1;
    case DType::I8:
      return 2;
    case DType::F8_E5M2:
      return 3;
    case DType::F8_E4M3:
      return 4;
    case DType::I16:
      return 5;
    case DType::U16:
      return 6;
    case DType::F16:
      return 7;
    case DType::BF16:
      return 8;
    case DType::I32:
      return 9;
    case DType::U32:
      return 10;
    case DType::F32:
      return 11;
    case DType::F64:
      return 12;
    case DType::I64:
      return 13;
    case DType::U64:
      return 14;
  }
  return 0;
}

}  // namespace

SafeTensorsWriter& SafeTensorsWriter::sortAsReference() {
  std::vector<std::size_t> order(m_entries.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    const int da = referenceDTypeOrder(m_entries[a].dtype);
    const int db = referenceDTypeOrder(m_entries[b].dtype);
    if (da != db) return da > db;
    return m_entries[a].name < m_entries[b].name;
  });
  std::vector<Entry> sorted;
  sorted.reserve(m_entries.size());
  std::map<std::string, std::size_t, std::less<>> index;
  for (std::size_t i = 0; i < order.size(); ++i) index.emplace(m_entries[order[i]].name, i);
  for (std::size_t i : order) sorted.push_back(std::move(m_entries[i]));
  m_entries.swap(sorted);
  m_index.swap(index);
  return *this;
}

void SafeTensorsWriter::write(const std::filesystem::path& path) const {
  constexpr std::string_view kWhere = "SafeTensorsWriter::write";
  const std::string target = path.string();
  if (!path.has_filename()) fail(kWhere, "expected a file path, got '{}'", target);

  std::vector<detail::SafeTensorsHeaderEntry> entries;
  entries.reserve(m_entries.size());
  std::uint64_t offset = 0;
  for (const Entry& e : m_entries) {
    entries.push_back({e.name, e.dtype, &e.shape, offset, offset + e.data.size()});
    offset += e.data.size();
  }
  const std::string header = detail::safetensorsHeader(entries, m_metadata, kWhere, target);

  detail::AtomicFile file(path, kWhere);
  std::array<std::byte, 8> length{};
  storeLittle(length.data(), static_cast<std::uint64_t>(header.size()));
  file.write(length.data(), length.size());
  file.write(header.data(), header.size());
  for (const Entry& e : m_entries) file.write(e.data.data(), e.data.size());
  file.commit();
}

void SafeTensorsWriter::forEach(
    const std::function<void(const std::string&, DType, const std::vector<std::int64_t>&,
                             std::span<const std::byte>)>& fn) const {
  for (const Entry& e : m_entries) fn(e.name, e.dtype, e.shape, e.data);
}

namespace detail {

std::string safetensorsHeader(const std::vector<SafeTensorsHeaderEntry>& entries,
                              const std::map<std::string, std::string>& metadata,
                              std::string_view where, const std::string& target) {
  // __metadata__ first (as the reference writer does), then the tensors in the order given.
  std::string header;
  try {
    Json h = Json::object();
    if (!metadata.empty()) {
      Json meta = Json::object();
      for (const auto& [key, value] : metadata) meta[key] = value;
      h["__metadata__"] = std::move(meta);
    }
    for (const SafeTensorsHeaderEntry& e : entries) {
      Json entry = Json::object();
      entry["dtype"] = std::string(dtypeName(e.dtype));
      entry["shape"] = *e.shape;
      entry["data_offsets"] = Json::array({e.begin, e.end});
      h[std::string(e.name)] = std::move(entry);
    }
    header = h.dump();
  } catch (const nlohmann::json::exception& e) {
    fail(where, "expected a header that serializes to JSON for '{}', got {}", target, e.what());
  }
  while (header.size() % 8 != 0) header.push_back(' ');
  return header;
}

}  // namespace detail
}  // namespace lora
