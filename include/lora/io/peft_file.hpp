#pragma once
/// \file peft_file.hpp
/// \brief A PEFT LoRA adapter folder read module by module: validated once, tensors decoded on
/// demand (what the `lora` tool uses to keep its memory near the adapter's own size).

#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/io/adapter_config.hpp"
#include "lora/io/gguf_adapter.hpp"
#include "lora/io/kohya.hpp"
#include "lora/io/safetensors.hpp"
#include "lora/scaling.hpp"

namespace lora {

/// \brief An adapter folder (`adapter_config.json` + `adapter_model.safetensors`) whose modules
/// are decoded one at a time.
///
/// open() checks everything that PeftAdapter::load checks, from the headers alone: key names
/// (`base_model.model.<module>.lora_A.weight`, `.lora_B.weight`, `.lora_magnitude_vector`),
/// both factors present, 2-D factors whose ranks agree, the rank the config's pattern rule gives
/// (PEFT `get_pattern_key`), DoRA magnitudes present exactly when `use_dora` and of length out.
/// The tensors file is mapped, not read (SafeTensorsReader::map): A, B and m are read from it
/// and decoded when asked for, and release() lets their pages go, so a caller that handles one
/// module at a time holds about one module's tensors and temporaries, whatever the adapter's
/// size. The file must not be truncated or rewritten while the object lives. Finite values are
/// checked by whoever computes with them (FactoredSVD, Layer).
///
/// A GGUF LoRA adapter for llama.cpp (a file, recognized by its content) opens as the same kind
/// of object (openGguf()): its modules under their HF names, the file's alpha as every module's
/// alpha, its ranks through `rank_pattern`, scaling alpha / r as llama.cpp applies it. B is
/// returned as llama.cpp stores it unless head counts are given: for llama's q and k its rows are
/// then permuted per head, which changes neither the spectrum nor a truncated SVD (both commute
/// with a row permutation), but does matter for a merge into a HF base weight.
///
/// A kohya-format Stable Diffusion LoRA (a `.safetensors` file, lora/io/kohya.hpp) opens as one too
/// (openKohya()): modules under their kohya names, A = lora_down as r x (in·kh·kw), B = lora_up as
/// out x r, alpha as stored (r without one: scale 1), scaling alpha / r.
/// \code
/// auto file = lora::PeftAdapterFile::open("my-adapter");
/// for (const auto& m : file.modules()) {
///   Eigen::MatrixXd A = file.A<double>(m), B = file.B<double>(m);
///   fmt::print("{}: r = {}, s = {}\n", m.name, m.rank, file.scaling(m));
/// }
/// \endcode
class PeftAdapterFile {
 public:
  using Index = Eigen::Index;
  template <typename Scalar>
  using Matrix = Eigen::Matrix<Scalar, Eigen::Dynamic, Eigen::Dynamic>;
  template <typename Scalar>
  using Vector = Eigen::Matrix<Scalar, Eigen::Dynamic, 1>;

  /// One adapted module, as the file's headers describe it.
  struct Module {
    std::string name;          ///< without `base_model.model.`, e.g. `layers.0.self_attn.q_proj`
    std::string keyA, keyB;    ///< tensor names of lora_A (r x in) and lora_B (out x r)
    std::string keyMagnitude;  ///< DoRA `lora_magnitude_vector` (out), empty without DoRA
    Index rank = 0, in = 0, out = 0;
    double alpha = 0;  ///< from `alpha_pattern` / `lora_alpha`
    /// GGUF only, llama's q and k: B's rows are un-permuted on read for this many heads (> 0),
    /// or stay as llama.cpp stores them (-1: no head counts were given); 0 otherwise.
    int ggufHeads = 0;
    /// kohya conv modules: the kernel (`in` is then channels·kh·kw); 0 otherwise.
    Index kernelH = 0, kernelW = 0;
  };

  /// Reads and validates `<dir>/adapter_config.json` and `<dir>/adapter_model.safetensors`; any
  /// problem throws lora::Error naming the file (and the module). A GGUF file instead of a folder
  /// is opened as openGguf() opens it (recognized by its content).
  static PeftAdapterFile open(const std::filesystem::path& dir);
  /// Opens the GGUF LoRA adapter \p path (see the class comment): module names
  /// `<modulePrefix>layers.N.self_attn.q_proj`, B un-permuted for llama's q/k when \p heads
  /// gives the counts. A file that is not a LoRA adapter llama.cpp loads throws lora::Error.
  static PeftAdapterFile openGguf(const std::filesystem::path& path, const GgufHeads& heads = {},
                                  std::string_view modulePrefix = "model.");

  /// Opens the kohya-format LoRA file \p path (see the class comment); the tensors of a PEFT
  /// folder (`adapter_model.safetensors`), or a file without LoRA modules, throw lora::Error.
  static PeftAdapterFile openKohya(const std::filesystem::path& path);

  /// Whether the adapter was read from a kohya file, and then its layout (modules in the same
  /// order as modules()).
  bool isKohya() const noexcept { return m_kohya != nullptr; }
  const KohyaLayout* kohya() const noexcept { return m_kohya.get(); }
  /// Whether the adapter was read from a GGUF file, and then its reader and architecture.
  bool isGguf() const noexcept { return m_gguf != nullptr; }
  const GgufReader* gguf() const noexcept { return m_gguf.get(); }
  const GgufArchitecture* ggufArchitecture() const noexcept { return m_ggufArch; }
  /// The storage type of the first lora_A: `F32`, `F16`, `BF16`, `F64`, or for GGUF also `Q8_0`.
  std::string dtypeLabel() const;

  const AdapterConfig& config() const noexcept { return m_config; }
  const SafeTensorsReader& tensors() const noexcept { return m_tensors; }
  /// Modules in the order of their first tensor in the file.
  const std::vector<Module>& modules() const noexcept { return m_modules; }
  ScalingMode scalingMode() const noexcept {
    return m_config.useRslora ? ScalingMode::RsLora : ScalingMode::Standard;
  }
  /// s = alpha / r (or alpha / sqrt(r) with `use_rslora`).
  double scaling(const Module& m) const { return scalingFor(m.alpha, m.rank, scalingMode()); }
  /// Whether the adapter is DoRA (`use_dora`).
  bool isDora() const noexcept { return m_config.useDora; }
  /// The dtype of the first lora_A tensor (what a rewrite keeps by default; a GGUF Q8_0 adapter
  /// says F32, which holds its dequantized values exactly).
  DType dtype() const;
  /// Size of `adapter_model.safetensors` (or of the GGUF file) in bytes.
  std::size_t fileBytes() const noexcept { return m_fileBytes; }
  /// Trainable parameters of a module: r (in + out), plus out with DoRA.
  Index parameterCount(const Module& m) const noexcept {
    return m.rank * (m.in + m.out) + (m.keyMagnitude.empty() ? 0 : m.out);
  }

  template <typename Scalar>
  Matrix<Scalar> A(const Module& m) const {
    if (m_gguf) return ggufFactor<Scalar>(m, false);
    if (m_kohya) return m_tensors.flattenedMatrix<Scalar>(m.keyA);
    return m_tensors.matrix<Scalar>(m.keyA);
  }
  template <typename Scalar>
  Matrix<Scalar> B(const Module& m) const {
    if (m_gguf) return ggufFactor<Scalar>(m, true);
    if (m_kohya) return m_tensors.flattenedMatrix<Scalar>(m.keyB);
    return m_tensors.matrix<Scalar>(m.keyB);
  }
  /// Lets the pages of a module's tensors go (SafeTensorsReader::release): call it when done
  /// with the module; its tensors are read from the file again if asked for.
  void release(const Module& m) const {
    if (m_gguf) {
      releaseGguf(m);
      return;
    }
    m_tensors.release(m.keyA);
    m_tensors.release(m.keyB);
    if (!m.keyMagnitude.empty()) m_tensors.release(m.keyMagnitude);
  }
  /// The DoRA magnitude (empty without DoRA).
  template <typename Scalar>
  Vector<Scalar> magnitude(const Module& m) const {
    if (m.keyMagnitude.empty()) return Vector<Scalar>();
    return m_tensors.vector<Scalar>(m.keyMagnitude);
  }

 private:
  PeftAdapterFile(AdapterConfig config, SafeTensorsReader tensors)
      : m_config(std::move(config)), m_tensors(std::move(tensors)) {}

  // A GGUF factor decoded in one pass from the file's row-major storage (compiled for float
  // and double in src/io/peft_file.cpp).
  template <typename Scalar>
  Matrix<Scalar> ggufFactor(const Module& m, bool b) const;
  void releaseGguf(const Module& m) const;

  AdapterConfig m_config;
  SafeTensorsReader m_tensors;
  std::shared_ptr<const GgufReader> m_gguf;
  std::shared_ptr<const KohyaLayout> m_kohya;
  const GgufArchitecture* m_ggufArch = nullptr;
  std::vector<Module> m_modules;
  std::size_t m_fileBytes = 0;
};

extern template PeftAdapterFile::Matrix<float> PeftAdapterFile::ggufFactor<float>(const Module&,
                                                                                  bool) const;
extern template PeftAdapterFile::Matrix<double> PeftAdapterFile::ggufFactor<double>(const Module&,
                                                                                    bool) const;

}  // namespace lora
