#pragma once
/// \file gguf.hpp
/// \brief GGUF files (llama.cpp's format): a validating reader that maps the file and decodes
/// tensors on demand, and a writer that lays tensors out as ggml's reader requires.
///
/// Layout (GGUF v3, little-endian): the magic `GGUF`, the version (u32), the tensor and KV counts
/// (u64), the KV pairs (key string, value type u32, value), the tensor table (name, dimension
/// count u32, `ne` u64 each, ggml type u32, offset u64), zero padding to the alignment
/// (`general.alignment`, u32, 32 by default), then the tensor data, each tensor at its offset from
/// the start of the data, offsets packed in table order and each padded to the alignment. Strings
/// are a u64 length and UTF-8 bytes; arrays an element type (u32), a count (u64) and the elements.
/// ggml's `ne[0]` is the innermost (row) length: a PEFT lora_A of r x in has `ne = [in, r]`.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "lora/detail/eigen.hpp"

namespace lora {

/// \brief ggml tensor types whose block layout LoRA++ knows (enough to validate any tensor table);
/// F32, F16, BF16 and Q8_0 are also decoded and encoded.
enum class GgmlType : std::uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

/// `F32`, `Q8_0`, ... (ggml's names).
std::string_view ggmlTypeName(GgmlType type) noexcept;
/// `f32`, `f16`, `bf16` or `q8_0` (any case) as a type LoRA++ encodes; anything else throws
/// lora::Error naming \p where.
GgmlType parseGgmlTypeName(std::string_view name, std::string_view where);
/// Elements per block and bytes per block (F32: 1 and 4; Q8_0: 32 and 34); {0, 0} for a type
/// LoRA++ does not know.
std::pair<std::uint32_t, std::uint32_t> ggmlBlock(GgmlType type) noexcept;

/// The value types of GGUF's key-value pairs (their numbers in the file).
enum class GgufType : std::uint32_t {
  UInt8 = 0,
  Int8 = 1,
  UInt16 = 2,
  Int16 = 3,
  UInt32 = 4,
  Int32 = 5,
  Float32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  UInt64 = 10,
  Int64 = 11,
  Float64 = 12,
};

/// `UINT32`, `FLOAT32`, `STRING`, ... (gguf-py's names).
std::string_view ggufTypeName(GgufType type) noexcept;

/// \brief One GGUF value, with its exact type: what is read is written back unchanged.
///
/// Integers are held as 64-bit (signed or unsigned by type), FLOAT32 and FLOAT64 as double
/// (FLOAT32 exactly), arrays as a vector of values of one element type (GGUF has no nested
/// arrays in practice; ggml's reader refuses them, so does this one).
class GgufValue {
 public:
  static GgufValue unsignedInt(GgufType type, std::uint64_t v);  ///< UINT8/16/32/64
  static GgufValue signedInt(GgufType type, std::int64_t v);     ///< INT8/16/32/64
  static GgufValue float32(float v);
  static GgufValue float64(double v);
  static GgufValue boolean(bool v);
  static GgufValue string(std::string v);
  /// Values of one scalar or string type \p element (each element's type must be it).
  static GgufValue array(GgufType element, std::vector<GgufValue> values);

  GgufType type() const noexcept { return m_type; }
  /// The element type of an array (meaningless otherwise).
  GgufType elementType() const noexcept { return m_element; }

  /// The value of an integer of any width and sign that fits in the result; anything else
  /// (another type, a negative value for unsigned) throws lora::Error naming \p where and \p key.
  std::uint64_t asUnsigned(std::string_view where, std::string_view key) const;
  std::int64_t asSigned(std::string_view where, std::string_view key) const;
  /// FLOAT32 or FLOAT64.
  double asFloat(std::string_view where, std::string_view key) const;
  bool asBool(std::string_view where, std::string_view key) const;
  const std::string& asString(std::string_view where, std::string_view key) const;
  const std::vector<GgufValue>& asArray(std::string_view where, std::string_view key) const;

  /// A short rendering for messages and `lora inspect` (arrays: their type and length).
  std::string brief() const;

  friend bool operator==(const GgufValue&, const GgufValue&) = default;

 private:
  GgufValue(
      GgufType type, GgufType element,
      std::variant<std::uint64_t, std::int64_t, double, bool, std::string, std::vector<GgufValue>>
          v)
      : m_type(type), m_element(element), m_value(std::move(v)) {}

  GgufType m_type = GgufType::UInt8;
  GgufType m_element = GgufType::UInt8;
  std::variant<std::uint64_t, std::int64_t, double, bool, std::string, std::vector<GgufValue>>
      m_value;
};

/// \brief One entry of the tensor table.
struct GgufTensorInfo {
  std::string name;
  GgmlType type = GgmlType::F32;
  std::vector<std::uint64_t> ne;  ///< ggml order: ne[0] is the row length
  std::uint64_t offset = 0;       ///< from the start of the data section
  std::uint64_t bytes = 0;        ///< encoded size
  std::uint64_t numel() const noexcept;
};

/// \brief A GGUF file, validated when opened; tensors are decoded when asked for.
///
/// open() maps the file (or reads what cannot be mapped); everything in the header is checked
/// against the file before anything is returned: magic and version (2 or 3), counts that fit in
/// the file, key and string lengths, known value types, no nested arrays, unique keys,
/// `general.alignment` a UINT32 power of two, unique non-empty tensor names of at most 63 bytes,
/// 1 to 4 dimensions with non-zero extents whose product fits, known ggml types with a row length
/// that is a multiple of the type's block, offsets that are exactly ggml's packed layout
/// (aligned, in table order, no gap and no overlap), and data that ends within the file. Any
/// problem throws lora::Error naming the file and what was expected.
/// \code
/// auto gguf = lora::GgufReader::open("adapter.gguf");
/// float alpha = float(gguf.value("adapter.lora.alpha").asFloat("me", "adapter.lora.alpha"));
/// Eigen::MatrixXf A = gguf.matrix("blk.0.attn_q.weight.lora_a");  // r x in
/// \endcode
class GgufReader {
 public:
  static GgufReader open(const std::filesystem::path& path);
  static GgufReader fromBytes(std::vector<std::byte> bytes, std::string sourceName);

  /// Whether \p path starts with GGUF's magic (false for folders and unreadable paths).
  static bool looksLikeGguf(const std::filesystem::path& path);

  const std::string& source() const noexcept { return m_source; }
  std::uint32_t version() const noexcept { return m_version; }
  std::uint64_t alignment() const noexcept { return m_alignment; }
  /// Start of the tensor data in the file, and the file's size.
  std::uint64_t dataOffset() const noexcept { return m_dataOffset; }
  std::uint64_t fileBytes() const noexcept;

  /// The key-value pairs in file order.
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const noexcept { return m_kv; }
  /// The value of \p key, or nullptr.
  const GgufValue* find(std::string_view key) const;
  /// The value of \p key; a missing key throws lora::Error.
  const GgufValue& value(std::string_view key) const;

  /// The tensor table in file order.
  const std::vector<GgufTensorInfo>& tensors() const noexcept { return m_tensors; }
  const GgufTensorInfo* findTensor(std::string_view name) const;
  /// The entry of \p name; a missing tensor throws lora::Error.
  const GgufTensorInfo& tensor(std::string_view name) const;
  /// The encoded bytes of a tensor.
  std::span<const std::byte> rawBytes(const GgufTensorInfo& t) const;

  /// A 1- or 2-D tensor of F32, F16, BF16 or Q8_0 as a matrix of ne[1] rows (1 for 1-D) and
  /// ne[0] columns; other types or more dimensions throw lora::Error.
  Eigen::MatrixXf matrix(std::string_view name) const;
  Eigen::MatrixXf matrix(const GgufTensorInfo& t) const;
  /// The same values in ggml's own (row-major) order: decoded without a transposing copy.
  Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rowMajor(
      const GgufTensorInfo& t) const;
  /// Lets the pages of a tensor go when the file is mapped (as SafeTensorsReader::release).
  void release(const GgufTensorInfo& t) const;

 private:
  struct Storage;  // src/io/gguf.cpp
  GgufReader() = default;
  static GgufReader parse(std::shared_ptr<const Storage> storage, std::string source,
                          std::string_view where);

  std::shared_ptr<const Storage> m_storage;
  std::string m_source;
  std::uint32_t m_version = 3;
  std::uint64_t m_alignment = 32;
  std::uint64_t m_dataOffset = 0;
  std::vector<std::pair<std::string, GgufValue>> m_kv;
  std::map<std::string, std::size_t, std::less<>> m_kvIndex;
  std::vector<GgufTensorInfo> m_tensors;
  std::map<std::string, std::size_t, std::less<>> m_tensorIndex;
};

/// \brief Builds a GGUF file: key-value pairs and tensors in the order added, written atomically.
///
/// The tensor data is packed as ggml's reader requires (each offset the padded sum of the previous
/// sizes, padding bytes zero). Encoding rounds as gguf-py does: F16 and BF16 to nearest, ties to
/// even; Q8_0 in blocks of 32 with d = max|x| / 127 (stored as F16) and q = round(x / d), halves
/// away from zero. A Q8_0 tensor needs a row length that is a multiple of 32.
/// \code
/// lora::GgufWriter w;
/// w.set("general.architecture", lora::GgufValue::string("llama"));
/// w.addTensor("blk.0.attn_q.weight.lora_a", A, lora::GgmlType::F16);   // ne = [in, r]
/// w.write("adapter.gguf");
/// \endcode
class GgufWriter {
 public:
  /// \p alignment: a power of two (written as `general.alignment` when not 32).
  explicit GgufWriter(std::uint32_t alignment = 32);

  /// Appends a key-value pair; a duplicate or empty key, or `general.alignment`, throws.
  GgufWriter& set(std::string key, GgufValue value);
  /// Appends a tensor of rows x cols (ne = [cols, rows]) encoded as \p type from \p m.
  GgufWriter& addTensor(std::string name, const Eigen::Ref<const Eigen::MatrixXf>& m,
                        GgmlType type);
  /// Appends a tensor of already-encoded bytes (a copy from a GgufReader, or bytes encoded with
  /// detail::encodeGgml); their count must be what \p type and \p ne take.
  GgufWriter& addRaw(std::string name, GgmlType type, std::vector<std::uint64_t> ne,
                     std::vector<std::byte> bytes);

  std::size_t tensorCount() const noexcept { return m_tensors.size(); }
  /// The whole file, as write() writes it.
  std::vector<std::byte> bytes() const;
  /// Writes the file atomically (temporary file, fsync, rename); errors throw lora::Error.
  void write(const std::filesystem::path& path) const;

 private:
  struct Tensor {
    std::string name;
    GgmlType type;
    std::vector<std::uint64_t> ne;
    std::vector<std::byte> data;
  };
  void checkName(const std::string& name, std::string_view where) const;
  std::vector<std::byte> header() const;

  std::uint32_t m_alignment;
  std::vector<std::pair<std::string, GgufValue>> m_kv;
  std::vector<Tensor> m_tensors;
  std::map<std::string, std::size_t, std::less<>> m_tensorIndex;
};

/// \p m (rows x cols) encoded as \p type in ggml's layout (rows contiguous; ne = [cols, rows]):
/// F32, F16, BF16, or Q8_0 when cols is a multiple of 32; other types or row lengths throw
/// lora::Error. What GgufWriter::addTensor() stores, for callers that encode on several threads.
std::vector<std::byte> encodeGgmlMatrix(const Eigen::Ref<const Eigen::MatrixXf>& m, GgmlType type);

namespace detail {
/// Encodes \p n floats (row-major, rows of \p rowLength) as \p type into \p out (sized by the
/// caller: n / block * blockBytes). Q8_0 needs rowLength % 32 == 0.
void encodeGgml(const float* values, std::size_t n, GgmlType type, std::byte* out);
/// Decodes \p n values of \p type from \p in.
void decodeGgml(const std::byte* in, std::size_t n, GgmlType type, float* out);
}  // namespace detail

}  // namespace lora
