#include "lora/io/kohya_resize.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "lora/error.hpp"
#include "lora/linalg/factored_svd.hpp"
#include "lora/linalg/householder_qr.hpp"
#include "lora/linalg/spectrum.hpp"
#include "safetensors_header.hpp"
#include "sha256.hpp"

namespace lora {
namespace {

using detail::fail;
using Index = Eigen::Index;

// resize_lora.py's MIN_SV: a module whose largest singular value is at most this gets rank 1.
constexpr double kMinSv = 1e-6;

std::string_view ruleName(KohyaRule rule) {
  switch (rule) {
    case KohyaRule::SvRatio:
      return "sv_ratio";
    case KohyaRule::SvCumulative:
      return "sv_cumulative";
    case KohyaRule::SvFro:
      return "sv_fro";
    case KohyaRule::Fixed:
      break;
  }
  return "fixed";
}

}  // namespace

namespace detail {

std::string pythonFloatRepr(double value) {
  if (std::isnan(value)) return "nan";
  if (std::isinf(value)) return value > 0 ? "inf" : "-inf";
  // The shortest digits that round-trip, laid out as Python's repr: positional for decimal
  // exponents in [-4, 16), else d.ddde±XX.
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, value, std::chars_format::scientific);
  const std::string_view text(buf, static_cast<std::size_t>(r.ptr - buf));
  const std::size_t e = text.find('e');
  std::string_view mantissa = text.substr(0, e);
  const int exponent = std::atoi(std::string(text.substr(e + 1)).c_str());
  std::string sign;
  if (mantissa.front() == '-') {
    sign = "-";
    mantissa.remove_prefix(1);
  }
  std::string digits;
  for (const char c : mantissa)
    if (c != '.') digits.push_back(c);
  if (exponent >= -4 && exponent < 16) {
    std::string out;
    if (exponent < 0) {
      out = "0." + std::string(static_cast<std::size_t>(-exponent - 1), '0') + digits;
    } else {
      const auto intDigits = static_cast<std::size_t>(exponent) + 1;
      if (digits.size() <= intDigits) {
        out = digits + std::string(intDigits - digits.size(), '0') + ".0";
      } else {
        out = digits.substr(0, intDigits) + "." + digits.substr(intDigits);
      }
    }
    return sign + out;
  }
  std::string out = digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  return fmt::format("{}{}e{}{:02d}", sign, out, exponent < 0 ? '-' : '+', std::abs(exponent));
}

}  // namespace detail

void checkKohyaResizeOptions(const KohyaResizeOptions& o, std::string_view where) {
  if (o.rank < 1) fail(where, "expected a rank >= 1, got {}", o.rank);
  if (o.convRank < 0) fail(where, "expected a conv rank >= 1 (or 0: the rank), got {}", o.convRank);
  switch (o.rule) {
    case KohyaRule::Fixed:
      break;
    case KohyaRule::SvRatio:
      if (!(std::isfinite(o.parameter) && o.parameter >= 1.0))
        fail(where, "expected the sv_ratio parameter to be a finite number >= 1, got {}",
             o.parameter);
      break;
    case KohyaRule::SvCumulative:
    case KohyaRule::SvFro:
      if (!(o.parameter > 0.0 && o.parameter <= 1.0))
        fail(where, "expected the {} parameter in (0, 1], got {}", ruleName(o.rule), o.parameter);
      break;
  }
  if (o.dtype != DType::F32 && o.dtype != DType::F16 && o.dtype != DType::BF16)
    fail(where, "expected an output dtype of F32, F16 or BF16, got {}", dtypeName(o.dtype));
}

Index kohyaNewRank(const Eigen::VectorXd& sigma, Index n, KohyaRule rule, double parameter,
                   Index rank) {
  constexpr std::string_view kWhere = "kohyaNewRank";
  if (n < 1 || sigma.size() > n)
    fail(kWhere, "expected n >= 1 and at most n singular values, got n = {} and {} values", n,
         sigma.size());
  if (rank < 1) fail(kWhere, "expected a rank >= 1, got {}", rank);
  Index k = rank;
  if (rule != KohyaRule::Fixed) {
    // kohya's SVD is of the dense n-column delta: the values beyond the factors' rank are 0.
    Eigen::VectorXd full = Eigen::VectorXd::Zero(n);
    full.head(sigma.size()) = sigma;
    Index index = 1;
    if (rule == KohyaRule::SvRatio) {
      index = linalg::kohyaSvRatio(full, parameter);
    } else if (rule == KohyaRule::SvCumulative) {
      index = linalg::kohyaSvCumulative(full, parameter);
    } else {
      index = linalg::kohyaSvFro(full, parameter);
    }
    k = index + 1;  // one more than the index: kohya's own arithmetic
  }
  const double top = sigma.size() > 0 ? sigma(0) : 0.0;
  if (top <= kMinSv) return 1;
  return std::min(k, rank);
}

double kohyaNewAlpha(std::optional<double> alpha, Index oldRank, Index newRank) {
  if (!alpha) return static_cast<double>(newRank);  // scale 1.0 (a Python float): float(1.0 * k)
  // torch: a float32 alpha / int rank, times an int, both in float32.
  const float scale = static_cast<float>(*alpha) / static_cast<float>(oldRank);
  return static_cast<double>(scale * static_cast<float>(newRank));
}

KohyaResizedModule kohyaResizeModule(const KohyaModule& m, const Eigen::MatrixXd& up,
                                     const Eigen::MatrixXd& down, const KohyaResizeOptions& options,
                                     double orthogonalityTolerance) {
  constexpr std::string_view kWhere = "kohyaResizeModule";
  checkKohyaResizeOptions(options, kWhere);
  const Index cols = m.columns();
  if (up.rows() != m.out || up.cols() != m.rank || down.rows() != m.rank || down.cols() != cols) {
    fail(kWhere, "expected up {}x{} and down {}x{} for module '{}', got up {}x{} and down {}x{}",
         m.out, m.rank, m.rank, cols, m.name, up.rows(), up.cols(), down.rows(), down.cols());
  }
  linalg::FactoredSVD<double> svd;
  svd.setOrthogonalityTolerance(orthogonalityTolerance);
  svd.compute(up, down, 1.0);
  if (svd.info() != Eigen::Success)
    fail(kWhere, "expected the SVD of up·down for module '{}' to converge, got no convergence",
         m.name);
  KohyaResizedModule r;
  r.sigma = svd.singularValues();
  const Index n = std::min(m.out, cols);
  const Index k = kohyaNewRank(r.sigma, n, options.rule, options.parameter, options.rankFor(m));
  if (k > n) {
    fail(kWhere,
         "expected a rank of at most {} = min(out, in·kh·kw) for module '{}' ({} x {}), got {} "
         "(kohya's resize_lora.py stops with an error here)",
         n, m.name, m.out, cols, k);
  }
  const Index p = r.sigma.size();
  const Index kept = std::min(k, p);
  r.newRank = k;
  r.newAlpha = kohyaNewAlpha(m.alpha, m.rank, k);
  r.up.resize(m.out, k);
  r.down.resize(k, cols);
  r.up.leftCols(kept) = svd.matrixU().leftCols(kept) * r.sigma.head(kept).asDiagonal();
  r.down.topRows(kept) = svd.matrixV().leftCols(kept).transpose();
  if (k > p) {
    // Above the factors' rank the singular values are 0: up gets zero columns and down unit rows
    // orthogonal to the others (kohya's full SVD completes V the same way, up to the basis).
    r.up.rightCols(k - p).setZero();
    const Eigen::MatrixXd Q = linalg::ThinQR<double>(svd.matrixV()).matrixQ(k);
    r.down.bottomRows(k - p) = Q.rightCols(k - p).transpose();
  }
  const double sum = r.sigma.sum(), fro = r.sigma.squaredNorm();
  r.sumRetained = sum > 0 ? r.sigma.head(kept).sum() / sum : 1.0;
  r.froRetained = fro > 0 ? std::sqrt(r.sigma.head(kept).squaredNorm() / fro) : 1.0;
  return r;
}

std::map<std::string, std::string> kohyaResizeMetadata(std::map<std::string, std::string> meta,
                                                       const KohyaResizeOptions& options,
                                                       Index oldDim, double lastAlpha) {
  checkKohyaResizeOptions(options, "kohyaResizeMetadata");
  const auto found = meta.find("ss_training_comment");
  const std::string comment = found == meta.end() ? std::string() : found->second;
  if (options.rule == KohyaRule::Fixed) {
    const Index conv = options.convRank > 0 ? options.convRank : options.rank;
    const std::string convDesc =
        conv == options.rank ? std::string() : fmt::format(" (conv: {})", conv);
    meta["ss_training_comment"] = fmt::format("dimension is resized from {} to {}{}; {}", oldDim,
                                              options.rank, convDesc, comment);
    meta["ss_network_dim"] = std::to_string(options.rank);
    meta["ss_network_alpha"] = detail::pythonFloatRepr(lastAlpha);
  } else {
    meta["ss_training_comment"] =
        fmt::format("Dynamic resize with {}: {} from {}; {}", ruleName(options.rule),
                    detail::pythonFloatRepr(options.parameter), oldDim, comment);
    meta["ss_network_dim"] = "Dynamic";
    meta["ss_network_alpha"] = "Dynamic";
  }
  return meta;
}

KohyaHashes kohyaHashes(const SafeTensorsWriter& tensors,
                        const std::map<std::string, std::string>& metadata) {
  std::map<std::string, std::string> training;
  for (const auto& [key, value] : metadata)
    if (key.starts_with("ss_")) training.emplace(key, value);
  std::vector<detail::SafeTensorsHeaderEntry> entries;
  std::vector<std::span<const std::byte>> data;
  entries.reserve(tensors.size());
  data.reserve(tensors.size());
  std::uint64_t offset = 0;
  tensors.forEach([&](const std::string& name, DType dtype, const std::vector<std::int64_t>& shape,
                      std::span<const std::byte> bytes) {
    entries.push_back({name, dtype, &shape, offset, offset + bytes.size()});
    data.push_back(bytes);
    offset += bytes.size();
  });
  const std::string header =
      detail::safetensorsHeader(entries, training, "kohyaHashes", "(the hashed file)");

  KohyaHashes h;
  detail::Sha256 model;
  for (const auto& bytes : data) model.update(bytes);
  h.model = model.hexDigest();

  // The legacy hash: bytes [1 MiB, 1 MiB + 64 KiB) of the whole file (length, header, data), or
  // what of them exists.
  constexpr std::uint64_t kBegin = 0x100000, kEnd = kBegin + 0x10000;
  detail::Sha256 legacy;
  std::array<std::byte, 8> length{};
  for (int i = 0; i < 8; ++i)
    length[static_cast<std::size_t>(i)] =
        static_cast<std::byte>(static_cast<std::uint64_t>(header.size()) >> (8 * i));
  std::uint64_t position = 0;
  const auto window = [&](std::span<const std::byte> piece) {
    const std::uint64_t from = std::max(position, kBegin);
    const std::uint64_t to = std::min(position + piece.size(), kEnd);
    if (from < to) legacy.update(piece.subspan(from - position, to - from));
    position += piece.size();
  };
  window(length);
  window(std::as_bytes(std::span(header.data(), header.size())));
  for (const auto& bytes : data) {
    if (position >= kEnd) break;
    window(bytes);
  }
  h.legacy = legacy.hexDigest().substr(0, 8);
  return h;
}

void writeKohyaLora(SafeTensorsWriter tensors, std::map<std::string, std::string> metadata,
                    const std::filesystem::path& path) {
  tensors.sortAsReference();
  const KohyaHashes h = kohyaHashes(tensors, metadata);
  metadata["sshs_model_hash"] = h.model;
  metadata["sshs_legacy_hash"] = h.legacy;
  for (auto& [key, value] : metadata) tensors.setMetadata(key, value);
  tensors.write(path);
}

}  // namespace lora
