#pragma once
/// \file peft_writer.hpp
/// \brief Writing PEFT LoRA adapter folders (adapter_config.json + adapter_model.safetensors)
/// that PEFT loads, with per-module ranks and alphas expressed through PEFT's pattern rule.
///
/// Layout (reference: PEFT 0.21 `PeftModel.save_pretrained`, `get_peft_model_state_dict`,
/// `PeftConfigMixin.save_pretrained`): tensors `base_model.model.<module>.lora_A.weight` (r x in),
/// `.lora_B.weight` (out x r) and, with DoRA, `.lora_magnitude_vector` (out), with metadata
/// `{"format": "pt"}`; the config is JSON with its top-level keys sorted and an indent of 2.

#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/error.hpp"
#include "lora/io/adapter_config.hpp"
#include "lora/io/safetensors.hpp"
#include "lora/scaling.hpp"

namespace lora {

template <typename Scalar>
class PeftAdapter;  // lora/io/peft_adapter.hpp, which savePeftAdapter's callers include

/// \brief The rank and alpha that PEFT should resolve for one module.
struct ModuleRankAlpha {
  std::string module;  ///< without `base_model.model.`
  int rank = 0;
  double alpha = 0;
};

/// \brief A module that a streaming PeftAdapterWriter (streamTo()) will receive: its name, its
/// largest rank, its shape and whether it has a DoRA magnitude.
struct ModuleBound {
  std::string module;  ///< without `base_model.model.`
  int maxRank = 0;
  Eigen::Index in = 0, out = 0;
  bool dora = false;
};

/// \brief \p module as a `rank_pattern` / `alpha_pattern` key that matches it literally: the
/// regex metacharacters `\ . ^ $ | ? * + ( ) [ ] { }` get a backslash (as Python's `re.escape`
/// does for them). Example: `"layers.0.q_proj"` -> `"layers\.0\.q_proj"`.
std::string escapePatternKey(std::string_view module);

/// \brief Sets `r`, `lora_alpha`, `rank_pattern` and `alpha_pattern` of \p config so that
/// PEFT's rule (the first key `k`, in file order, with `re.match(rf"(.*\.)?({k})$", name)`)
/// gives every module of \p modules its rank and alpha (alpha to 1e-12 relative).
///
/// When the config already does that, it is left as it is (a loaded adapter saved again keeps
/// its patterns). Otherwise `r` / `lora_alpha` become the most frequent rank / alpha (ties: the
/// first module's) and every other module gets one entry, its escaped full name; a name that
/// another module's name ends with (`"layers.0.fc"` and `"model.layers.0.fc"`) is anchored with
/// `^` so that it matches itself only. No key then matches a second module, so the result does
/// not depend on the order of the keys (PEFT sorts them when it saves a config again). A module
/// that the config's list of `target_modules` misses is added to that list; a `target_modules`
/// regex that misses one throws lora::Error. An empty `target_modules` becomes the module names.
void assignPatterns(AdapterConfig& config, const std::vector<ModuleRankAlpha>& modules);

/// \brief The `adapter_config.json` text of \p config: every field of AdapterConfig (peft_type,
/// r, lora_alpha, target_modules, rank_pattern, alpha_pattern, use_rslora, use_dora,
/// fan_in_fan_out, bias, lora_dropout, init_lora_weights, task_type, base_model_name_or_path),
/// `inference_mode: true` when absent, and the other fields of `config.rawJson` unchanged.
/// Top-level keys sorted (as PEFT writes them), pattern keys in their order, indent 2.
std::string adapterConfigJson(const AdapterConfig& config);

/// \brief Writes \p bytes to \p path atomically: a temporary file in the same folder, flushed,
/// synced and renamed over \p path. A failure throws lora::Error naming \p path, removes the
/// temporary file and leaves an existing file at \p path as it was.
void writeFileAtomic(const std::filesystem::path& path, std::string_view bytes);

/// \brief Collects LoRA modules and writes them as a PEFT adapter folder.
///
/// The configuration given to the constructor is the template: its `use_rslora`,
/// `fan_in_fan_out`, `bias`, `lora_dropout`, `init_lora_weights`, `task_type`,
/// `base_model_name_or_path`, `target_modules` and unknown fields are written; `r`,
/// `lora_alpha` and the patterns are chosen by assignPatterns() from the modules, `use_dora`
/// from whether the modules have magnitudes (all or none). Tensors are encoded when added, in
/// the dtype given (F32, F16 or BF16; F64 also works but PEFT loads it as float64).
///
/// write() is fail-safe: both files go to temporary files in the folder first; then the
/// tensors are renamed into place, then the config. If anything fails, the temporaries are
/// removed, an earlier adapter in the folder is left as it was (if the second rename fails, the
/// first is undone from a hard link to the earlier tensors file, or the new file is removed when
/// there was none) and a folder that write() created is removed again. Between the two renames
/// (microseconds) a concurrent reader, or the folder after a crash at that instant, can see the
/// new tensors with the earlier config; PEFT and LoRA++ then refuse it when a rank changed.
/// \code
/// lora::PeftAdapterWriter w(lora::AdapterConfig{}, lora::DType::BF16);
/// w.add("layers.0.self_attn.q_proj", A, B, /*alpha=*/16);   // A r x in, B out x r
/// w.write("my-adapter");
/// \endcode
class PeftAdapterWriter {
 public:
  static constexpr std::string_view kPrefix = "base_model.model.";

  /// \p config: the template (see the class comment); \p dtype: F32, F64, F16 or BF16.
  explicit PeftAdapterWriter(AdapterConfig config = {}, DType dtype = DType::F32);
  PeftAdapterWriter(PeftAdapterWriter&&) noexcept;
  PeftAdapterWriter& operator=(PeftAdapterWriter&&) noexcept;
  PeftAdapterWriter(const PeftAdapterWriter&) = delete;
  PeftAdapterWriter& operator=(const PeftAdapterWriter&) = delete;
  /// A streaming writer destroyed before write() removes its staging file and the folders that
  /// streamTo() created.
  ~PeftAdapterWriter();

  /// Streams to \p dir: from now on the tensors of every module added (add(), append()) are
  /// written at once to a staging file in \p dir (created, with its parents, when needed) and
  /// only the module's name, rank and alpha are kept, so memory stays near one module's tensors
  /// whatever the adapter's size. write(\p dir) then writes the file's header and the config
  /// and moves both into place, as for a writer that is not streaming. \p bounds lists every
  /// module that may be added, with its largest rank: the header comes first in the file but is
  /// written last, into room reserved for the largest header these modules can have (the
  /// format allows the padding). A module not in \p bounds, or larger than its bound, throws
  /// lora::Error when added. Only for an empty writer; a bad \p dir or \p bounds throws
  /// lora::Error (writer unchanged).
  PeftAdapterWriter& streamTo(const std::filesystem::path& dir,
                              const std::vector<ModuleBound>& bounds);
  /// Whether streamTo() was called.
  bool isStreaming() const noexcept { return m_stream != nullptr; }

  /// Adds a module without DoRA: A (r x in), B (out x r), both finite, alpha positive and finite.
  /// The name may carry the `base_model.model.` prefix. A duplicate name, bad shapes, non-finite
  /// values or mixing modules with and without magnitudes throw lora::Error (writer unchanged).
  template <typename DerivedA, typename DerivedB>
  PeftAdapterWriter& add(std::string_view module, const Eigen::MatrixBase<DerivedA>& A,
                         const Eigen::MatrixBase<DerivedB>& B, double alpha) {
    return addImpl(module, A, B, alpha, Eigen::VectorXd(), false);
  }

  /// Adds a DoRA module with magnitude \p m (out finite entries).
  template <typename DerivedA, typename DerivedB, typename DerivedM>
  PeftAdapterWriter& add(std::string_view module, const Eigen::MatrixBase<DerivedA>& A,
                         const Eigen::MatrixBase<DerivedB>& B, double alpha,
                         const Eigen::MatrixBase<DerivedM>& m) {
    return addImpl(module, A, B, alpha, m, true);
  }

  /// Moves the modules of \p other (same dtype and template) to the end of this writer, in
  /// their order: threads can encode modules into writers of their own, joined in a fixed order.
  /// A duplicate module or a DoRA mismatch throws lora::Error and changes neither writer.
  PeftAdapterWriter& append(PeftAdapterWriter&& other);

  std::size_t size() const noexcept { return m_modules.size(); }
  DType dtype() const noexcept { return m_dtype; }
  const std::vector<ModuleRankAlpha>& modules() const noexcept { return m_modules; }

  /// The configuration write() writes: the template with patterns assigned (assignPatterns)
  /// and `use_dora` set, checked by parsing it back and resolving every module.
  AdapterConfig resolvedConfig() const;

  /// Writes `<dir>/adapter_model.safetensors` and `<dir>/adapter_config.json` (see the class
  /// comment); creates \p dir when needed. No module, or any I/O error, throws lora::Error.
  /// A streaming writer writes only to the folder given to streamTo(), once.
  void write(const std::filesystem::path& dir) const;

 private:
  template <typename DerivedA, typename DerivedB, typename DerivedM>
  PeftAdapterWriter& addImpl(std::string_view module, const Eigen::MatrixBase<DerivedA>& A,
                             const Eigen::MatrixBase<DerivedB>& B, double alpha,
                             const Eigen::MatrixBase<DerivedM>& m, bool dora) {
    constexpr const char* where = "PeftAdapterWriter::add";
    if (module.starts_with(kPrefix)) module.remove_prefix(kPrefix.size());
    checkModule(where, module, A.rows(), A.cols(), B.rows(), B.cols(), alpha, dora, m.size(),
                m.rows() == 1 || m.cols() == 1);
    // Evaluated once: Eigen's allFinite() reads an expression twice, and a nullary expression
    // such as MatrixXf::Random gives different values on each read (matrices and views of their
    // storage, such as a transpose, are read in place).
    const auto& Ae = evaluatedOnce(A);
    const auto& Be = evaluatedOnce(B);
    const auto& me = evaluatedOnce(m);
    if (!allFinite(Ae) || !allFinite(Be) || (dora && !allFinite(me)))
      detail::fail(where, "expected finite A, B and magnitude for module '{}', got NaN or Inf",
                   module);
    SafeTensorsWriter local;
    const std::string base = std::string(kPrefix) + std::string(module);
    local.add(base + ".lora_A.weight", Ae, m_dtype);
    local.add(base + ".lora_B.weight", Be, m_dtype);
    if (dora) local.addVector(base + ".lora_magnitude_vector", me, m_dtype);
    commitModule(std::string(module), static_cast<int>(A.rows()), alpha, dora, std::move(local));
    return *this;
  }

  // An expression with storage of its own (a matrix, a block, a transpose) by reference; any
  // other expression evaluated into a matrix.
  template <typename Derived>
  static decltype(auto) evaluatedOnce(const Eigen::MatrixBase<Derived>& x) {
    if constexpr ((Derived::Flags & Eigen::DirectAccessBit) != 0) {
      return static_cast<const Derived&>(x.derived());
    } else {
      return x.derived().eval();
    }
  }
  // allFinite(), over the storage in order when it is one contiguous block (Eigen reads a
  // transpose across its columns, a strided pass).
  template <typename Derived>
  static bool allFinite(const Eigen::MatrixBase<Derived>& x) {
    if constexpr ((Derived::Flags & Eigen::DirectAccessBit) != 0) {
      const Derived& d = x.derived();
      if (d.innerStride() == 1 && (d.outerSize() <= 1 || d.outerStride() == d.innerSize())) {
        using Scalar = typename Derived::Scalar;
        return Eigen::Map<const Eigen::Array<Scalar, Eigen::Dynamic, 1>>(d.data(), d.size())
            .allFinite();
      }
    }
    return x.allFinite();
  }
  void checkModule(const char* where, std::string_view module, Eigen::Index aRows,
                   Eigen::Index aCols, Eigen::Index bRows, Eigen::Index bCols, double alpha,
                   bool dora, Eigen::Index mSize, bool mIsVector) const;
  void commitModule(std::string module, int rank, double alpha, bool dora,
                    SafeTensorsWriter&& tensors);
  // Streaming: writes the tensors to the staging file (all or nothing).
  void streamTensors(const SafeTensorsWriter& tensors, const char* where);
  void writeStreamed(const std::filesystem::path& dir, const std::string& json) const;

  struct Stream;  // src/io/peft_writer.cpp

  AdapterConfig m_config;
  DType m_dtype;
  SafeTensorsWriter m_tensors;
  std::vector<ModuleRankAlpha> m_modules;
  int m_dora = -1;  // -1: no module yet; 0: none has a magnitude; 1: all have one
  std::unique_ptr<Stream> m_stream;
};

/// \brief Saves \p adapter as a PEFT adapter folder in \p dtype: its configuration is the
/// template, every layer's A, B, alpha (and DoRA magnitude) are written. Layers whose scaling
/// mode differs from the config's `use_rslora` throw lora::Error (PEFT has one mode per adapter).
/// \code
/// auto adapter = lora::PeftAdapter<float>::load("in");
/// adapter.layer("layers.0.mlp.up_proj").resize(4);
/// lora::savePeftAdapter(adapter, "out", lora::DType::BF16);   // rank_pattern gets the 4
/// \endcode
template <typename Scalar>
void savePeftAdapter(const PeftAdapter<Scalar>& adapter, const std::filesystem::path& dir,
                     DType dtype = DType::F32) {
  const ScalingMode mode = adapter.config().useRslora ? ScalingMode::RsLora : ScalingMode::Standard;
  PeftAdapterWriter writer(adapter.config(), dtype);
  for (const auto& [name, layer] : adapter) {
    if (layer.scalingMode() != mode)
      detail::fail("savePeftAdapter",
                   "expected every layer to use the config's scaling mode ({}), got {} for '{}'",
                   toString(mode), toString(layer.scalingMode()), name);
    if (layer.isDora()) {
      writer.add(name, layer.A(), layer.B(), layer.alpha(), layer.magnitude());
    } else {
      writer.add(name, layer.A(), layer.B(), layer.alpha());
    }
  }
  writer.write(dir);
}

}  // namespace lora
