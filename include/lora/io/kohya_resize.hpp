#pragma once
/// \file kohya_resize.hpp
/// \brief Resizing kohya-format Stable Diffusion LoRAs with the rules of sd-scripts'
/// `networks/resize_lora.py` (kohya-ss/sd-scripts, main branch as of 2026-02), from the factors.
///
/// kohya's script forms each module's dense delta up·down and takes its full SVD; here the SVD
/// comes from the factors (linalg::FactoredSVD, O((out + in)·r²)), which gives the same singular
/// values and the same truncated delta. Its rules, which users of the script know:
/// - the SVD is of up·down without the scale; n = min(out, in·kh·kw);
/// - linear modules take `rank` (`--new_rank`, default 4), conv modules `convRank`
///   (`--new_conv_rank`, default: rank);
/// - a fixed rank is that rank, also above the old rank (the extra directions have σ = 0);
/// - the dynamic rules pick k (sv_ratio: #{σ_i > σ_1/T}; sv_cumulative: the smallest k with
///   Σ_{i≤k} σ_i ≥ T Σσ; sv_fro: the same on σ² with T²), clamp it to [1, n − 1], add one, and cap
///   the result at the module's rank setting;
/// - a module whose σ_1 ≤ 1e-6 gets rank 1, whatever the rule;
/// - new alpha = float32(float32(alpha / old rank) · new rank), alpha = old rank when absent;
///   up = U·diag(σ), down = Vᵀ, truncated; stored in the chosen dtype (float32 by default).

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "lora/detail/eigen.hpp"

#include "lora/io/kohya.hpp"
#include "lora/io/safetensors.hpp"

namespace lora {

/// \brief How kohya's resize picks a module's new rank (`--dynamic_method`, or none).
enum class KohyaRule { Fixed, SvRatio, SvCumulative, SvFro };

/// \brief The settings of a resize, as resize_lora.py's options.
struct KohyaResizeOptions {
  KohyaRule rule = KohyaRule::Fixed;
  double parameter = 0;       ///< T of a dynamic rule (`--dynamic_param`)
  Eigen::Index rank = 4;      ///< `--new_rank`: the rank (Fixed) or the cap (dynamic rules)
  Eigen::Index convRank = 0;  ///< `--new_conv_rank` for conv modules; 0: the same as rank
  DType dtype = DType::F32;   ///< `--save_precision`: F32, F16 or BF16

  Eigen::Index rankFor(const KohyaModule& m) const noexcept {
    return m.isConv() && convRank > 0 ? convRank : rank;
  }
};

/// \brief Checks \p options (rank ≥ 1, T in the rule's range, a storable dtype); throws
/// lora::Error naming \p where otherwise.
void checkKohyaResizeOptions(const KohyaResizeOptions& options, std::string_view where);

/// \brief The new rank kohya's `rank_resize` gives a module of \p n = min(out, columns) whose
/// unscaled delta has the singular values \p sigma (decreasing; values beyond sigma.size() are 0),
/// with the rank setting \p rank (see the file comment).
/// \code
/// Eigen::VectorXd s(4); s << 4, 2, 1, 1;
/// lora::kohyaNewRank(s, 320, lora::KohyaRule::SvCumulative, 0.75, 8);  // 2 + 1 = 3
/// \endcode
Eigen::Index kohyaNewRank(const Eigen::VectorXd& sigma, Eigen::Index n, KohyaRule rule,
                          double parameter, Eigen::Index rank);

/// \brief kohya's new alpha: float32(float32(alpha / oldRank) · newRank), or newRank without an
/// alpha (its value as a double).
double kohyaNewAlpha(std::optional<double> alpha, Eigen::Index oldRank, Eigen::Index newRank);

/// \brief One module resized.
struct KohyaResizedModule {
  Eigen::Index newRank = 0;
  double newAlpha = 0;
  Eigen::MatrixXd up;      ///< out x newRank: U·diag(σ)
  Eigen::MatrixXd down;    ///< newRank x columns: Vᵀ (orthonormal rows)
  Eigen::VectorXd sigma;   ///< the singular values of the unscaled delta up·down
  double sumRetained = 1;  ///< Σ_{i<k} σ_i / Σσ (kohya's "sum(S) retained")
  double froRetained = 1;  ///< sqrt(Σ_{i<k} σ_i² / Σσ²) (kohya's "fro retained")
};

/// \brief Resizes one module from its factors \p up (out x r) and \p down (r x columns) as
/// kohya's script would (see the file comment). A fixed rank above n = min(out, columns), which
/// kohya's script crashes on, throws lora::Error naming the module. \p orthogonalityTolerance is
/// handed to FactoredSVD (the output dtype's unit roundoff is enough for stored factors).
KohyaResizedModule kohyaResizeModule(const KohyaModule& module, const Eigen::MatrixXd& up,
                                     const Eigen::MatrixXd& down, const KohyaResizeOptions& options,
                                     double orthogonalityTolerance = 0);

/// \brief The metadata resize_lora.py writes: \p metadata with `ss_training_comment` prefixed by
/// what was done, `ss_network_dim` / `ss_network_alpha` set to the rank and the last module's
/// alpha (fixed rank; \p lastAlpha) or to "Dynamic"; \p oldDim is the largest old rank. The
/// hashes are set by writeKohyaLora().
std::map<std::string, std::string> kohyaResizeMetadata(std::map<std::string, std::string> metadata,
                                                       const KohyaResizeOptions& options,
                                                       Eigen::Index oldDim, double lastAlpha);

/// \brief The two hashes kohya's tools store (`sshs_model_hash`, `sshs_legacy_hash`), as
/// sd-scripts' `precalculate_safetensors_hashes` computes them: the file that \p tensors would
/// make with only the `ss_` keys of \p metadata; the SHA-256 of its data section, and the first
/// 8 hex digits of the SHA-256 of its bytes [1 MiB, 1 MiB + 64 KiB).
struct KohyaHashes {
  std::string model, legacy;
};
KohyaHashes kohyaHashes(const SafeTensorsWriter& tensors,
                        const std::map<std::string, std::string>& metadata);

/// \brief Writes \p tensors as kohya's scripts save a LoRA: tensors in the reference writer's
/// order (SafeTensorsWriter::sortAsReference), \p metadata with the two hashes (re)computed, to
/// \p path atomically.
void writeKohyaLora(SafeTensorsWriter tensors, std::map<std::string, std::string> metadata,
                    const std::filesystem::path& path);

namespace detail {
/// Python's `repr` of a float (shortest round trip: `8.0`, `0.9`, `1e-05`, `1e+16`), as kohya's
/// scripts write numbers into metadata.
std::string pythonFloatRepr(double value);
}  // namespace detail

}  // namespace lora
