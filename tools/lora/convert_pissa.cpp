// `lora convert-pissa`: a PiSSA/OLoRA adapter, trained on the residual base W_res = W - s·B0·A0,
// becomes a standard LoRA for the original W. With the initial factors (A0, B0) and the trained
// ones (A1, B1): W_res + s·B1·A1 = W + s·(B1·A1 - B0·A0) = W + s·[B1, -B0]·[A1; A0], a LoRA of rank
// 2r with the same scaling, so r and alpha double (alpha · sqrt(2) with rsLoRA). Reference: PEFT
// `save_pretrained(path_initial_model_for_weight_conversion=...)`, `subtract_mutated_init`.

#include <cmath>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "commands.hpp"
#include "common.hpp"
#include "lora/error.hpp"
#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/io/safetensors.hpp"
#include "outputs.hpp"

namespace lora::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kWhereConvertPissa = "convert-pissa";
constexpr std::string_view kPrefix = "base_model.model.";

struct ConvertArgs {
  std::string initial, trained, out, dtype;
  bool force = false;
};

/// The initial factors: a PEFT adapter folder, or a safetensors file whose keys are
/// `[base_model.model.]<module>.lora_A.weight` / `.lora_B.weight` (PEFT's init_adapter).
class Initial {
 public:
  explicit Initial(const std::string& path) {
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
      m_adapter.emplace(PeftAdapterFile::open(path));
    } else {
      if (!fs::exists(path, ec))
        detail::fail(kWhereConvertPissa,
                     "expected --initial to be an adapter folder or a safetensors file, got '{}' "
                     "(no such file)",
                     path);
      m_tensors.emplace(SafeTensorsReader::open(path));
    }
  }

  /// A0 (r x in), B0 (out x r) and the initial scaling s0 of \p module; \p s1 is used when the
  /// initial factors come without a config.
  void factors(const PeftAdapterFile::Module& m, double s1, Eigen::MatrixXd& A0,
               Eigen::MatrixXd& B0, double& s0) const {
    if (m_adapter) {
      for (const auto& im : m_adapter->modules()) {
        if (im.name != m.name) continue;
        A0 = m_adapter->A<double>(im);
        B0 = m_adapter->B<double>(im);
        s0 = m_adapter->scaling(im);
        return;
      }
      detail::fail(kWhereConvertPissa, "expected module '{}' in the initial adapter, got none",
                   m.name);
    }
    const SafeTensorsReader& st = *m_tensors;
    const auto key = [&](std::string_view part) {
      const std::string plain = m.name + std::string(part);
      return st.contains(plain) ? plain : std::string(kPrefix) + plain;
    };
    const std::string a = key(".lora_A.weight"), b = key(".lora_B.weight");
    if (!st.contains(a) || !st.contains(b)) {
      detail::fail(kWhereConvertPissa,
                   "expected '{}.lora_A.weight' and '{}.lora_B.weight' in '{}', got {}", m.name,
                   m.name, st.sourceName(),
                   st.contains(a)   ? "only lora_A"
                   : st.contains(b) ? "only lora_B"
                                    : "neither");
    }
    A0 = st.matrix<double>(a);
    B0 = st.matrix<double>(b);
    s0 = s1;
  }

  /// The number of modules the initial factors hold.
  std::size_t moduleCount() const {
    if (m_adapter) return m_adapter->modules().size();
    std::size_t n = 0;
    for (const std::string& name : m_tensors->names()) n += name.ends_with(".lora_A.weight");
    return n;
  }

 private:
  std::optional<PeftAdapterFile> m_adapter;
  std::optional<SafeTensorsReader> m_tensors;
};

void run(const ConvertArgs& a) {
  std::vector<fs::path> inputs = adapterInputs(a.trained);
  for (const fs::path& p : adapterInputs(a.initial)) inputs.push_back(p);
  checkOutputFolder(kWhereConvertPissa, "--out", a.out,
                    {"adapter_config.json", "adapter_model.safetensors"}, inputs, a.force);
  const PeftAdapterFile trained = PeftAdapterFile::open(a.trained);
  const AdapterConfig& cfg = trained.config();
  if (cfg.useDora) {
    detail::fail(kWhereConvertPissa,
                 "expected an adapter without DoRA, got use_dora (its magnitude depends on the "
                 "base weight, so the stacked factors would not reproduce it)");
  }
  const Initial initial(a.initial);
  const auto& modules = trained.modules();
  if (initial.moduleCount() != modules.size()) {
    detail::fail(kWhereConvertPissa,
                 "expected the initial factors to cover the {} modules of '{}', got {} modules",
                 modules.size(), a.trained, initial.moduleCount());
  }
  const DType outType =
      a.dtype.empty() ? trained.dtype() : parseDTypeName(a.dtype, kWhereConvertPissa);
  const double factor = cfg.useRslora ? std::sqrt(2.0) : 2.0;

  // The config PEFT writes: r and the rank_pattern doubled, alpha and the alpha_pattern doubled
  // (times sqrt(2) with rsLoRA, which keeps alpha/sqrt(r)), init_lora_weights true.
  AdapterConfig out = cfg;
  out.r *= 2;
  out.loraAlpha *= factor;
  for (auto& [key, r] : out.rankPattern) r *= 2;
  for (auto& [key, alpha] : out.alphaPattern) alpha *= factor;
  out.initLoraWeights = "true";

  PeftAdapterWriter writer(out, outType);
  for (const auto& m : modules) {
    const Eigen::MatrixXd A1 = trained.A<double>(m);
    const Eigen::MatrixXd B1 = trained.B<double>(m);
    const double s1 = trained.scaling(m);
    Eigen::MatrixXd A0, B0;
    double s0 = s1;
    initial.factors(m, s1, A0, B0, s0);
    if (A0.rows() != A1.rows() || A0.cols() != A1.cols() || B0.rows() != B1.rows() ||
        B0.cols() != B1.cols()) {
      detail::fail(kWhereConvertPissa,
                   "expected initial factors of the trained shapes for '{}' (A {}x{}, B {}x{}), "
                   "got A {}x{}, B {}x{}",
                   m.name, A1.rows(), A1.cols(), B1.rows(), B1.cols(), A0.rows(), A0.cols(),
                   B0.rows(), B0.cols());
    }
    const Eigen::Index r = m.rank;
    Eigen::MatrixXd A(2 * r, m.in), B(m.out, 2 * r);
    A.topRows(r) = A1;
    A.bottomRows(r) = A0;
    B.leftCols(r) = B1;
    B.rightCols(r) = -(s0 / s1) * B0;  // s0 == s1 unless the initial config says otherwise
    writer.add(m.name, A, B, m.alpha * factor);
  }
  writer.write(a.out);
  const AdapterConfig written = writer.resolvedConfig();
  fmt::print(
      "converted {} modules: rank r -> 2r (r = {} -> {}), lora_alpha {} -> {}; the delta "
      "is s·(B1·A1 - B0·A0), for the original base weights; written to {}\n",
      modules.size(), cfg.r, written.r, cfg.loraAlpha, written.loraAlpha, a.out);
}

}  // namespace

void addConvertPissa(CLI::App& app) {
  auto args = std::make_shared<ConvertArgs>();
  CLI::App* cmd = app.add_subcommand(
      "convert-pissa",
      "Turn a PiSSA/OLoRA adapter trained on the residual base into a standard LoRA of rank 2r "
      "for the original base weights (A = [A1; A0], B = [B1, -B0]), as PEFT's "
      "path_initial_model_for_weight_conversion does.");
  cmd->add_option("--initial", args->initial,
                  "the adapter right after initialisation: a PEFT adapter folder, or a "
                  "safetensors file of <module>.lora_A.weight / .lora_B.weight")
      ->required();
  cmd->add_option("--trained", args->trained, "the trained PEFT adapter folder")->required();
  cmd->add_option("--out", args->out, "folder for the converted adapter")->required();
  cmd->add_option("--dtype", args->dtype, "f32, f16 or bf16 (default: the trained adapter's)");
  addForceFlag(cmd, args->force);
  cmd->callback([args] { run(*args); });
}

}  // namespace lora::cli
