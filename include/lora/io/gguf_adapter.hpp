#pragma once
/// \file gguf_adapter.hpp
/// \brief LoRA adapters for llama.cpp: PEFT adapter folders to GGUF adapter files and back.
///
/// A GGUF LoRA adapter (llama.cpp `src/llama-adapter.cpp`, written by its
/// `convert_lora_to_gguf.py`) holds `general.architecture`, `general.type = "adapter"`,
/// `adapter.type = "lora"`, `adapter.lora.alpha` (FLOAT32) and per adapted weight a pair
/// `<weight>.lora_a` (PEFT's A, r x in, ne = [in, r]) and `<weight>.lora_b` (PEFT's B, out x r,
/// ne = [r, out]); llama.cpp scales each pair by alpha / r with r read from its lora_b. Weights are
/// named by the architecture table below (`model.layers.N.self_attn.q_proj`, or
/// `layers.N.self_attn.q_proj` for a bare model, -> `blk.N.attn_q.weight`); for `llama` the rows of
/// q's and k's B are permuted per head as llama.cpp permutes the base q/k weights (rotary layout).

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lora/detail/eigen.hpp"

#include "lora/io/gguf.hpp"
#include "lora/io/safetensors.hpp"

namespace lora {

class PeftAdapterFile;

/// \brief Which per-head row permutation a weight's B gets in GGUF.
enum class GgufPermute { None, Query, Key };

/// \brief One adapted weight of an architecture: the HF module suffix after `model.layers.N.`
/// and the GGUF weight name after `blk.N.`.
struct GgufModuleRule {
  std::string_view hf;    ///< e.g. `self_attn.q_proj`
  std::string_view gguf;  ///< e.g. `attn_q`
  GgufPermute permute = GgufPermute::None;
};

/// \brief An architecture as llama.cpp names it, its modules, and the HF names that map to it.
struct GgufArchitecture {
  std::string_view name;                         ///< `llama`, `qwen2`
  std::span<const GgufModuleRule> modules;       ///< the per-layer weights
  std::span<const std::string_view> hfClasses;   ///< config.json `architectures` entries
  std::span<const std::string_view> modelTypes;  ///< config.json `model_type` values
};

/// The table: `llama` (Llama 1-3, Mistral; q and k permuted) and `qwen2` (no permutation).
std::span<const GgufArchitecture> ggufArchitectures() noexcept;
/// The architecture named \p name (as llama.cpp names it); an unknown one throws lora::Error
/// listing the known ones.
const GgufArchitecture& ggufArchitecture(std::string_view name, std::string_view where);

/// \brief Head counts for the q/k permutation.
struct GgufHeads {
  int nHead = 0;    ///< attention heads (q)
  int nHeadKv = 0;  ///< key-value heads (k); 0: nHead
};

/// \brief What a base model's `config.json` says: the architecture (by `architectures[0]` or
/// `model_type`) and the head counts (`num_attention_heads`, `num_key_value_heads`).
struct GgufBaseConfig {
  std::string arch;  ///< empty when the table has no match
  GgufHeads heads;
};
/// Reads \p path (a `config.json`, or a folder holding one); bad JSON or bad counts throw.
GgufBaseConfig readBaseConfig(const std::filesystem::path& path);

/// Permutes the rows of \p B (out x r) as llama.cpp permutes q/k rows for \p heads heads
/// (reshape (heads, 2, out / heads / 2, r), swap axes 1 and 2, reshape back), or undoes it
/// (\p inverse). out must be a multiple of 2 x heads.
Eigen::MatrixXf permuteHeads(const Eigen::Ref<const Eigen::MatrixXf>& B, int heads, bool inverse,
                             std::string_view where);

/// \brief Options of convertPeftToGguf().
struct PeftToGgufOptions {
  std::string arch;               ///< required: a name of ggufArchitectures()
  GgufHeads heads;                ///< required for llama when q or k is adapted
  GgmlType type = GgmlType::F16;  ///< F32, F16, BF16 or Q8_0 (Q8_0 rows not a multiple
                                  ///< of 32 are written as F16, as llama.cpp's converter)
  bool skipUnknown = false;       ///< leave out modules the table does not know
  std::string name;  ///< `general.name` (not written when empty); see ggufDefaultName()
};

/// The `general.name` llama.cpp's converter derives from an adapter folder's name (gguf-py
/// `id_to_title`: `my-lora-v2` -> `My Lora v2`).
std::string ggufDefaultName(const std::filesystem::path& adapterDir);

/// \brief What a conversion did.
struct GgufConversionReport {
  std::size_t modules = 0;           ///< modules written
  std::vector<std::string> skipped;  ///< modules left out (skipUnknown)
  std::vector<std::string> folded;   ///< modules whose scale was folded into B
  double alpha = 0;                  ///< the file's alpha (GGUF) / the adapter's lora_alpha
};

/// Converts the PEFT adapter \p in to the GGUF file \p out (written atomically). Every module's
/// llama.cpp delta alpha / r · B' A equals PEFT's s · B · A: the file's alpha is the value of
/// s·r that most modules share (exactly lora_alpha for a plain adapter, lora_alpha · √r for
/// rsLoRA with one rank), and the few modules whose s·r differs (alpha_pattern, rsLoRA with
/// rank_pattern) get s·r / alpha folded into B. DoRA, an unknown architecture, an unknown module
/// (without skipUnknown), missing head counts, or q/k rows not divisible by the heads throw
/// lora::Error; nothing is written then.
GgufConversionReport convertPeftToGguf(const PeftAdapterFile& in, const std::filesystem::path& out,
                                       const PeftToGgufOptions& options);

/// \brief One module of a GGUF LoRA adapter, as readGgufAdapter() pairs them.
struct GgufAdapterModule {
  std::string module;  ///< HF name: `<prefix>layers.N.self_attn.q_proj`
  const GgufModuleRule* rule = nullptr;
  std::string a, b;  ///< tensor names of lora_a (ne [in, r]) and lora_b ([r, out])
  std::uint64_t rank = 0, in = 0, out = 0;
};

/// \brief A GGUF LoRA adapter's layout: its architecture, alpha and modules (file order).
struct GgufAdapterLayout {
  const GgufArchitecture* arch = nullptr;
  std::optional<double> alpha;  ///< `adapter.lora.alpha`; none: llama.cpp applies B·A unscaled
  std::vector<GgufAdapterModule> modules;
};

/// Checks that \p in is a LoRA adapter as llama.cpp loads it (general.type `adapter`,
/// adapter.type `lora`, a known architecture, a FLOAT32 positive alpha when present, only
/// `.lora_a`/`.lora_b` tensors of the architecture's weights, in pairs, 2-D, of one rank) and
/// returns its modules named `<modulePrefix>layers.N.<hf suffix>`; anything else throws
/// lora::Error naming \p where and the file.
GgufAdapterLayout readGgufAdapter(const GgufReader& in, std::string_view modulePrefix,
                                  std::string_view where);

/// \brief Options of convertGgufToPeft().
struct GgufToPeftOptions {
  GgufHeads heads;                       ///< required for llama when q or k is adapted
  DType dtype = DType::F32;              ///< of the PEFT tensors (F32, F16, BF16)
  std::optional<std::string> baseModel;  ///< `base_model_name_or_path`
  /// Module names are `<modulePrefix>layers.N.self_attn.q_proj`: `model.` for a HF CausalLM
  /// (PEFT keys `base_model.model.model.layers...`), empty for a bare model.
  std::string modulePrefix = "model.";
};

/// Converts a GGUF LoRA adapter to a PEFT adapter folder: the q/k permutation undone, alpha the
/// file's, ranks per module from the tensors (rank_pattern where they differ), so that PEFT's
/// s · B · A equals llama.cpp's delta for every module; a file that is not a LoRA adapter, an
/// unknown architecture or tensor name, a missing or mismatched pair throw lora::Error.
GgufConversionReport convertGgufToPeft(const GgufReader& in, const std::filesystem::path& outDir,
                                       const GgufToPeftOptions& options);

}  // namespace lora
