#pragma once
/// \file safetensors.hpp
/// \brief Reading and writing the safetensors format (HuggingFace), with full validation.
///
/// Layout (reference: the Rust crate `safetensors`): an 8-byte little-endian u64 `N`, `N` bytes
/// of UTF-8 JSON header, then the data buffer. The header maps each tensor name to
/// `{"dtype": "F32", "shape": [rows, cols], "data_offsets": [begin, end]}`, offsets relative to
/// the start of the buffer; an optional `"__metadata__"` holds a string -> string map. Tensors
/// are row-major (C order) and little-endian; together they cover the buffer exactly.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "lora/detail/eigen.hpp"

namespace lora {

/// \brief Element type of a safetensors tensor, named as in the file (`"F32"`, `"BOOL"`, ...).
///
/// Sizes in bytes: Bool, U8, I8, F8_E4M3, F8_E5M2: 1; I16, U16, F16, BF16: 2; I32, U32, F32: 4;
/// I64, U64, F64: 8. Example: `dtypeSize(parseDType("BF16")) == 2`.
enum class DType {
  Bool,
  U8,
  I8,
  I16,
  U16,
  F16,
  BF16,
  I32,
  U32,
  F32,
  F64,
  I64,
  U64,
  F8_E4M3,
  F8_E5M2
};

/// \brief Bytes per element of `dtype`, e.g. `dtypeSize(DType::F16) == 2`.
std::size_t dtypeSize(DType dtype);

/// \brief The name of `dtype` in a safetensors header, e.g. `dtypeName(DType::BF16) == "BF16"`.
std::string_view dtypeName(DType dtype);

/// \brief Inverse of dtypeName (case-sensitive); an unknown name throws lora::Error.
///
/// Example: `parseDType("F32") == DType::F32`; `parseDType("f32")` throws.
DType parseDType(std::string_view name);

/// \brief One header entry: name, dtype, shape and the byte range `[begin, end)` in the buffer.
///
/// `end - begin == numel() * dtypeSize(dtype)`, with `numel()` the product of `shape` (1 for a
/// scalar, shape `[]`). Example: `{"w", DType::F32, {2, 3}, 0, 24}`.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0;
  std::uint64_t end = 0;

  /// Product of the dimensions (1 for shape `[]`).
  std::int64_t numel() const;
};

/// \brief An in-memory safetensors file, validated when it is opened.
///
/// Every malformed input (short file, header length past the end, bad JSON, missing or ill-typed
/// fields, unknown dtype, negative or overflowing shape, offsets out of range or inconsistent with
/// the shape, overlapping tensors, holes in the buffer, duplicate names, bad `__metadata__`)
/// throws lora::Error naming the file and the tensor; nothing reads out of bounds. Typed reads
/// convert F16, BF16, F32 and F64 to `Scalar` (float or double).
/// \code
/// auto st = lora::SafeTensorsReader::open("adapter_model.safetensors");
/// for (const auto& name : st.names()) {
///   if (st.info(name).shape.size() == 2) Eigen::MatrixXd w = st.matrix<double>(name);
/// }
/// \endcode
class SafeTensorsReader {
 public:
  using Index = Eigen::Index;
  template <typename Scalar>
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  template <typename Scalar>
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// Reads and validates the whole file; a missing or unreadable file throws lora::Error.
  static SafeTensorsReader open(const std::filesystem::path& path);
  /// Validates `bytes` (a complete file); `sourceName` is used in error messages.
  static SafeTensorsReader fromBytes(std::vector<std::byte> bytes, std::string sourceName);
  /// Maps the file into memory (mmap, read-only) instead of reading it, and validates its header
  /// and offsets as open() does: only the header is read now, a tensor's bytes when it is
  /// decoded, and release() gives them back, so a caller that handles one tensor (or module) at
  /// a time keeps about that much of the file in memory. The file must not be truncated or
  /// rewritten while the reader (or a copy) lives: as with any mapping (safetensors' own
  /// `safe_open` maps too), reading a page the file no longer has stops the process. What cannot
  /// be mapped (a pipe, an empty file) is read as open() reads it.
  static SafeTensorsReader map(const std::filesystem::path& path);

  /// Tensor names in the order of the header in the file (without `__metadata__`).
  const std::vector<std::string>& names() const { return m_names; }
  /// Number of tensors.
  std::size_t size() const { return m_names.size(); }
  /// Whether a tensor `name` exists.
  bool contains(std::string_view name) const;
  /// The header entry of `name`; an unknown name throws lora::Error.
  const TensorInfo& info(std::string_view name) const;
  /// The `__metadata__` map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return m_metadata; }
  /// The path or name given when opening, as used in error messages.
  const std::string& sourceName() const { return m_source; }
  /// The raw little-endian bytes of `name` (any dtype), valid while the reader lives.
  std::span<const std::byte> rawBytes(std::string_view name) const;
  /// Tells a mapped reader (map()) that the bytes of `name` are not needed for now: the system
  /// may drop them from memory, and reads them from the file again if they are used. Readers
  /// from open() and fromBytes() keep their bytes. An unknown name throws lora::Error.
  void release(std::string_view name) const;
  /// Whether the reader maps its file (map() on a regular, non-empty file).
  bool isMapped() const noexcept;

  /// A 2-D tensor of shape `[rows, cols]` as a `rows x cols` matrix.
  ///
  /// Another rank, or a dtype other than F16/BF16/F32/F64, throws lora::Error.
  template <typename Scalar>
  Matrix<Scalar> matrix(std::string_view name) const {
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                  "SafeTensorsReader::matrix: Scalar must be float or double");
    const TensorInfo& t = tensorOfRank(name, 2, "SafeTensorsReader::matrix");
    Matrix<Scalar> m(static_cast<Index>(t.shape[0]), static_cast<Index>(t.shape[1]));
    decodeInto(t, m.data(), true, "SafeTensorsReader::matrix");
    return m;
  }

  /// A tensor of rank 2 or more as a `shape[0] x (shape[1]·shape[2]·…)` matrix: each index of the
  /// first dimension a row, the rest flattened in row-major (C) order, as PyTorch's
  /// `t.reshape(shape[0], -1)` (a conv kernel `[out, in, kh, kw]` becomes out x (in·kh·kw)).
  /// Rank 0 or 1, or a dtype other than F16/BF16/F32/F64, throws lora::Error.
  template <typename Scalar>
  Matrix<Scalar> flattenedMatrix(std::string_view name) const {
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                  "SafeTensorsReader::flattenedMatrix: Scalar must be float or double");
    const TensorInfo& t = tensorOfRank(name, -2, "SafeTensorsReader::flattenedMatrix");
    const auto rows = static_cast<Index>(t.shape[0]);
    Matrix<Scalar> m(rows, rows == 0 ? 0 : static_cast<Index>(t.numel()) / rows);
    decodeInto(t, m.data(), true, "SafeTensorsReader::flattenedMatrix");
    return m;
  }

  /// A 1-D tensor as a column vector; another rank or dtype throws lora::Error.
  template <typename Scalar>
  Vector<Scalar> vector(std::string_view name) const {
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                  "SafeTensorsReader::vector: Scalar must be float or double");
    const TensorInfo& t = tensorOfRank(name, 1, "SafeTensorsReader::vector");
    Vector<Scalar> v(static_cast<Index>(t.shape[0]));
    decodeInto(t, v.data(), false, "SafeTensorsReader::vector");
    return v;
  }

  /// A tensor of any rank as its `numel()` elements in row-major (C) order.
  template <typename Scalar>
  Vector<Scalar> flat(std::string_view name) const {
    static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                  "SafeTensorsReader::flat: Scalar must be float or double");
    const TensorInfo& t = tensorOfRank(name, -1, "SafeTensorsReader::flat");
    Vector<Scalar> v(static_cast<Index>(t.numel()));
    decodeInto(t, v.data(), false, "SafeTensorsReader::flat");
    return v;
  }

 private:
  struct Storage;  // the file's bytes: owned, or a mapping (src/io/safetensors.cpp)

  SafeTensorsReader() = default;
  static SafeTensorsReader parse(std::shared_ptr<const Storage> storage, std::string sourceName,
                                 std::string_view where);
  const std::byte* dataOf(const TensorInfo& t) const;
  const TensorInfo* find(std::string_view name) const;
  // rank -1: any rank; -2: rank 2 or more.
  const TensorInfo& tensorOfRank(std::string_view name, int rank, std::string_view where) const;
  // Writes numel() elements; with transpose2d the row-major data, as shape[0] rows of the rest,
  // goes to a column-major array.
  void decodeInto(const TensorInfo& t, float* out, bool transpose2d, std::string_view where) const;
  void decodeInto(const TensorInfo& t, double* out, bool transpose2d, std::string_view where) const;

  std::string m_source;
  std::shared_ptr<const Storage> m_storage;  // shared by copies: the bytes never change
  std::size_t m_dataStart = 0;
  std::vector<TensorInfo> m_tensors;  // header order
  std::vector<std::string> m_names;   // header order
  std::map<std::string, std::size_t, std::less<>> m_index;
  std::map<std::string, std::string> m_metadata;
};

/// \brief Collects tensors and writes a safetensors file atomically.
///
/// Output dtypes: F32, F64, F16, BF16 (narrowing rounds to nearest even; values beyond the range
/// become infinity). Header entries keep insertion order; the header is padded with spaces to a
/// multiple of 8 bytes, as the reference Rust implementation does. `write` goes to a temporary
/// file in the target folder and renames it over `path`, so a failed write leaves an existing
/// file untouched and no temporary behind.
/// \code
/// lora::SafeTensorsWriter w;
/// w.add("lora_A.weight", Eigen::MatrixXf::Random(8, 64), lora::DType::BF16);
/// w.setMetadata("format", "pt");
/// w.write("adapter_model.safetensors");
/// \endcode
class SafeTensorsWriter {
 public:
  /// Adds the matrix `m` as a 2-D tensor of shape `[rows, cols]` (stored row-major).
  ///
  /// A duplicate or empty name, `"__metadata__"`, a name that is not UTF-8, or a dtype other
  /// than F32/F64/F16/BF16 throws lora::Error (the writer is then unchanged).
  template <typename Derived>
  SafeTensorsWriter& add(std::string name, const Eigen::MatrixBase<Derived>& m,
                         DType out = DType::F32) {
    using Work = WorkScalar<typename Derived::Scalar>;
    if constexpr (std::is_same_v<typename Derived::Scalar, Work> &&
                  (Derived::Flags & Eigen::RowMajorBit) &&
                  (Derived::Flags & Eigen::DirectAccessBit)) {
      // Already row-major and contiguous (say, the transpose of a column-major matrix): encoded
      // from its own storage, no copy.
      const Derived& d = m.derived();
      if (d.innerStride() == 1 && (d.rows() <= 1 || d.outerStride() == d.cols())) {
        addEncoded(std::move(name),
                   {static_cast<std::int64_t>(d.rows()), static_cast<std::int64_t>(d.cols())},
                   d.data(), out, "SafeTensorsWriter::add");
        return *this;
      }
    }
    const Eigen::Matrix<Work, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> rowMajor =
        m.template cast<Work>();
    addEncoded(
        std::move(name),
        {static_cast<std::int64_t>(rowMajor.rows()), static_cast<std::int64_t>(rowMajor.cols())},
        rowMajor.data(), out, "SafeTensorsWriter::add");
    return *this;
  }

  /// Adds a row or column vector as a 1-D tensor of shape `[size]`; a matrix with more than one
  /// row and column throws lora::Error, like the checks of add().
  template <typename Derived>
  SafeTensorsWriter& addVector(std::string name, const Eigen::MatrixBase<Derived>& v,
                               DType out = DType::F32) {
    using Work = WorkScalar<typename Derived::Scalar>;
    checkVectorShape(name, static_cast<std::int64_t>(v.rows()),
                     static_cast<std::int64_t>(v.cols()));
    const Eigen::Matrix<Work, Eigen::Dynamic, 1> flat =
        v.derived().template cast<Work>().reshaped();
    addEncoded(std::move(name), {static_cast<std::int64_t>(flat.size())}, flat.data(), out,
               "SafeTensorsWriter::addVector");
    return *this;
  }

  /// Adds a tensor of any rank from \p values, its `numel()` elements in row-major (C) order
  /// (any Eigen vector or matrix; a matrix is read in its own storage order, so pass a vector or
  /// a `.reshaped()` view), encoded as \p out. Negative dimensions, or a shape whose product is
  /// not `values.size()`, throw lora::Error, like the checks of add().
  /// \code
  /// w.addFlat("conv.weight", {8, 3, 3, 3}, flatValues, lora::DType::BF16);
  /// \endcode
  template <typename Derived>
  SafeTensorsWriter& addFlat(std::string name, std::vector<std::int64_t> shape,
                             const Eigen::MatrixBase<Derived>& values, DType out = DType::F32) {
    using Work = WorkScalar<typename Derived::Scalar>;
    checkFlatShape(name, shape, static_cast<std::int64_t>(values.size()));
    const Eigen::Matrix<Work, Eigen::Dynamic, 1> flat =
        values.derived().template cast<Work>().reshaped();
    addEncoded(std::move(name), std::move(shape), flat.data(), out, "SafeTensorsWriter::addFlat");
    return *this;
  }

  /// Adds a tensor from its raw little-endian bytes, in any dtype (e.g. to copy a tensor from a
  /// SafeTensorsReader unchanged: `w.addRaw(n, info.dtype, info.shape, reader.rawBytes(n))`).
  /// A byte count other than numel x dtypeSize, a negative dimension, or a bad name (as for
  /// add()) throws lora::Error and leaves the writer unchanged.
  SafeTensorsWriter& addRaw(std::string name, DType dtype, std::vector<std::int64_t> shape,
                            std::span<const std::byte> data);

  /// Moves every tensor of \p other, in its order, to the end of this writer (its metadata is
  /// not taken). Lets threads encode tensors into writers of their own and a caller join them in
  /// a fixed order. A name that this writer already has throws lora::Error, and then neither
  /// writer is changed.
  SafeTensorsWriter& append(SafeTensorsWriter&& other);

  /// Puts the tensors in the order in which the reference writer (the `safetensors` Rust crate,
  /// behind `safetensors.torch.save_file`) lays them out: by dtype, the larger enumerator of its
  /// `Dtype` first, then by name (byte order). A file written after this has the header and data
  /// section that `save_file` writes for the same tensors and metadata, byte for byte, apart from
  /// the order of the metadata keys (the reference writer's order is a hash map's).
  SafeTensorsWriter& sortAsReference();

  /// Sets `__metadata__[key] = value` (replacing an earlier value); non-UTF-8 text throws.
  SafeTensorsWriter& setMetadata(std::string key, std::string value);

  /// Writes the file atomically (temporary file in the same folder, flush, close, rename).
  /// Any failure throws lora::Error naming `path`, removes the temporary file and leaves an
  /// existing file at `path` as it was.
  void write(const std::filesystem::path& path) const;

  /// Calls \p fn with the name, dtype, shape and encoded (little-endian) bytes of every tensor,
  /// in the order added.
  void forEach(const std::function<void(const std::string&, DType, const std::vector<std::int64_t>&,
                                        std::span<const std::byte>)>& fn) const;
  /// The `__metadata__` entries set so far.
  const std::map<std::string, std::string>& metadata() const { return m_metadata; }

  /// Number of tensors added.
  std::size_t size() const { return m_entries.size(); }
  /// Whether a tensor `name` was added.
  bool contains(std::string_view name) const;

 private:
  template <typename S>
  using WorkScalar = std::conditional_t<std::is_same_v<S, float>, float, double>;

  struct Entry {
    std::string name;
    DType dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::byte> data;
  };

  static void checkVectorShape(const std::string& name, std::int64_t rows, std::int64_t cols);
  static void checkFlatShape(const std::string& name, const std::vector<std::int64_t>& shape,
                             std::int64_t size);
  void addEncoded(std::string name, std::vector<std::int64_t> shape, const float* values, DType out,
                  std::string_view where);
  void addEncoded(std::string name, std::vector<std::int64_t> shape, const double* values,
                  DType out, std::string_view where);
  template <typename Scalar>
  void addEncodedImpl(std::string name, std::vector<std::int64_t> shape, const Scalar* values,
                      DType out, std::string_view where);

  std::vector<Entry> m_entries;
  std::map<std::string, std::size_t, std::less<>> m_index;
  std::map<std::string, std::string> m_metadata;
};

}  // namespace lora
