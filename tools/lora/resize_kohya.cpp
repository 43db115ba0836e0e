// `lora resize IN.safetensors OUT.safetensors` on a kohya LoRA: each module's factors read (as
// float32, as kohya's script reads them), resized from the factors by kohya's rules, encoded in
// the output dtype on the worker threads; every other tensor converted to that dtype as kohya
// does; then the file written as kohya's script writes it (tensors sorted as safetensors sorts
// them, metadata updated, hashes recomputed).

#include "resize_kohya.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <optional>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "lora/error.hpp"
#include "lora/io/kohya.hpp"
#include "lora/io/safetensors.hpp"
#include "outputs.hpp"

namespace lora::cli {
namespace {

namespace fs = std::filesystem;
constexpr const char* kWhereKohyaResize = "resize";
using Index = Eigen::Index;

double kohyaUnitRoundoff(DType type) {
  return type == DType::F16 ? 0x1p-11 : type == DType::BF16 ? 0x1p-8 : 0x1p-24;
}

struct KohyaModuleResult {
  Index newRank = 0;
  double newAlpha = 0, sumRetained = 1, froRetained = 1;
  std::optional<SafeTensorsWriter> tensors;
};

// A factor (r x cols or out x r) as the row-major values of the tensor of shape \p shape.
template <typename Derived>
void addFactor(SafeTensorsWriter& w, const std::string& key, std::vector<std::int64_t> shape,
               const Eigen::MatrixBase<Derived>& m, DType type) {
  w.addFlat(key, std::move(shape), m.transpose().reshaped(), type);
}

}  // namespace

void resizeKohya(const KohyaResizeRequest& q) {
  checkKohyaResizeOptions(q.options, kWhereKohyaResize);
  checkOutputFile(kWhereKohyaResize, "OUT", q.out, {fs::path(q.in)}, q.force);
  const SafeTensorsReader st = SafeTensorsReader::map(q.in);
  const KohyaLayout layout = readKohyaLayout(st);
  const auto& modules = layout.modules;
  const DType type = q.options.dtype;

  std::vector<KohyaModuleResult> results(modules.size());
  {
    io::Progress progress("resize", modules.size(), q.common.quiet);
    parallelFor(
        modules.size(), q.threads,
        [&](std::size_t i) {
          const KohyaModule& m = modules[i];
          // kohya's script loads every tensor as float32.
          const Eigen::MatrixXd down = st.flattenedMatrix<float>(m.keyDown).cast<double>();
          const Eigen::MatrixXd up = st.flattenedMatrix<float>(m.keyUp).cast<double>();
          const KohyaResizedModule r =
              kohyaResizeModule(m, up, down, q.options, kohyaUnitRoundoff(type));
          KohyaModuleResult& res = results[i];
          res.newRank = r.newRank;
          res.newAlpha = r.newAlpha;
          res.sumRetained = r.sumRetained;
          res.froRetained = r.froRetained;
          SafeTensorsWriter w;
          const auto k = static_cast<std::int64_t>(r.newRank);
          if (m.isConv()) {
            addFactor(w, m.keyDown, {k, m.in, m.kernelH, m.kernelW}, r.down, type);
            addFactor(w, m.keyUp, {m.out, k, 1, 1}, r.up, type);
          } else {
            addFactor(w, m.keyDown, {k, m.in}, r.down, type);
            addFactor(w, m.keyUp, {m.out, k}, r.up, type);
          }
          Eigen::Matrix<float, 1, 1> alpha;
          alpha(0) = static_cast<float>(r.newAlpha);
          w.addFlat(m.name + ".alpha", {}, alpha, type);
          res.tensors = std::move(w);
          st.release(m.keyDown);
          st.release(m.keyUp);
        },
        &progress);
  }

  SafeTensorsWriter out;
  for (KohyaModuleResult& r : results) {
    out.append(std::move(*r.tensors));
    r.tensors.reset();
  }
  for (const std::string& key : layout.others) {
    // kohya's script converts every tensor to float32 on load and to the output dtype on save.
    const TensorInfo& t = st.info(key);
    out.addFlat(key, t.shape, st.flat<float>(key), type);
  }
  Index oldDim = 0;
  for (const KohyaModule& m : modules) oldDim = std::max(oldDim, m.rank);
  std::map<std::string, std::string> metadata =
      kohyaResizeMetadata(st.metadata(), q.options, oldDim, results.back().newAlpha);
  const Index bytesBefore = static_cast<Index>(fs::file_size(q.in));
  writeKohyaLora(std::move(out), metadata, q.out);
  std::error_code ec;
  const auto bytesAfter = fs::file_size(q.out, ec);
  // What was written, for the report (the hashes are in the file's metadata).
  const SafeTensorsReader written = SafeTensorsReader::map(q.out);
  const auto& meta = written.metadata();
  const auto metaValue = [&](const char* key) {
    const auto it = meta.find(key);
    return it == meta.end() ? std::string() : it->second;
  };

  Index before = 0, after = 0, rankBefore = 0, rankAfter = 0;
  for (std::size_t i = 0; i < modules.size(); ++i) {
    const KohyaModule& m = modules[i];
    before += m.rank * (m.out + m.columns());
    after += results[i].newRank * (m.out + m.columns());
    rankBefore += m.rank;
    rankAfter += results[i].newRank;
  }
  const auto kind = [](const KohyaModule& m) {
    return m.isConv() ? fmt::format("conv {}x{}", m.kernelH, m.kernelW) : std::string("linear");
  };

  if (q.common.json) {
    nlohmann::ordered_json j;
    j["adapter"] = q.in;
    j["out"] = q.out;
    j["format"] = "kohya";
    j["rule"] = q.options.rule == KohyaRule::Fixed          ? "rank"
                : q.options.rule == KohyaRule::SvRatio      ? "sv_ratio"
                : q.options.rule == KohyaRule::SvCumulative ? "sv_cumulative"
                                                            : "sv_fro";
    if (q.options.rule != KohyaRule::Fixed) j["threshold"] = q.options.parameter;
    j["rank"] = q.options.rank;
    j["conv_rank"] = q.options.convRank > 0 ? q.options.convRank : q.options.rank;
    j["dtype"] = std::string(dtypeName(type));
    j["modules"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < modules.size(); ++i) {
      const KohyaModule& m = modules[i];
      const KohyaModuleResult& r = results[i];
      nlohmann::ordered_json e;
      e["name"] = m.name;
      e["kind"] = m.isConv() ? "conv" : "linear";
      if (m.isConv()) e["kernel"] = {m.kernelH, m.kernelW};
      e["out"] = m.out;
      e["in"] = m.in;
      e["old_rank"] = m.rank;
      e["new_rank"] = r.newRank;
      e["old_alpha"] = m.alpha ? nlohmann::ordered_json(*m.alpha) : nlohmann::ordered_json();
      e["new_alpha"] = r.newAlpha;
      e["sum_retained"] = r.sumRetained;
      e["fro_retained"] = r.froRetained;
      j["modules"].push_back(std::move(e));
    }
    j["metadata"] = {{"ss_network_dim", metaValue("ss_network_dim")},
                     {"ss_network_alpha", metaValue("ss_network_alpha")},
                     {"ss_training_comment", metaValue("ss_training_comment")},
                     {"sshs_model_hash", metaValue("sshs_model_hash")},
                     {"sshs_legacy_hash", metaValue("sshs_legacy_hash")}};
    j["summary"] = {{"modules", modules.size()},       {"other_tensors", layout.others.size()},
                    {"rank_before", rankBefore},       {"rank_after", rankAfter},
                    {"params_before", before},         {"params_after", after},
                    {"bytes_before", bytesBefore},     {"bytes_after", ec ? 0 : bytesAfter},
                    {"peak_rss_bytes", peakRssBytes()}};
    fmt::print("{}\n", j.dump(2));
    return;
  }

  Table table(
      {"module", "kind", "out", "in", "rank", "new rank", "alpha", "new alpha", "fro kept"});
  for (std::size_t i = 0; i < modules.size(); ++i) {
    const KohyaModule& m = modules[i];
    const KohyaModuleResult& r = results[i];
    table.add(
        {m.name, kind(m), std::to_string(m.out),
         m.isConv() ? fmt::format("{}·{}·{}", m.in, m.kernelH, m.kernelW) : std::to_string(m.in),
         std::to_string(m.rank), std::to_string(r.newRank),
         m.alpha ? num(*m.alpha) : std::string("none"), num(r.newAlpha),
         fmt::format("{:.2f}%", 100.0 * r.froRetained)});
  }
  table.print(stdout);
  const Index conv = q.options.convRank > 0 ? q.options.convRank : q.options.rank;
  fmt::print("kohya rules (resize_lora.py): {}; {} {}{}\n", q.ruleFlag,
             q.options.rule == KohyaRule::Fixed ? "rank" : "max rank", q.options.rank,
             conv == q.options.rank ? std::string() : fmt::format(", conv {}", conv));
  fmt::print("ss_network_dim {}, ss_network_alpha {}, sshs_model_hash {}\n",
             metaValue("ss_network_dim"), metaValue("ss_network_alpha"),
             metaValue("sshs_model_hash"));
  fmt::print("parameters: {} -> {} ({:.1f}%), rank sum {} -> {}, {} -> {} bytes, written to {}\n",
             before, after, before > 0 ? 100.0 * static_cast<double>(after) / before : 0.0,
             rankBefore, rankAfter, bytesBefore, ec ? 0 : bytesAfter, q.out);
}

}  // namespace lora::cli
