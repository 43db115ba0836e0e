#pragma once
/// \file rank_capacity.hpp
/// \brief What a rank buys (the article's section 1.1): parameters, compression and capacity.

#include <limits>
#include <span>
#include <vector>

#include <Eigen/Core>

#include "lora/error.hpp"

namespace lora::analysis {

/// One rank of a rankCapacity() table.
struct RankCapacityRow {
  Eigen::Index rank = 0;
  Eigen::Index parameters = 0;  ///< r·(out + in): A (r x in) and B (out x r)
  double compressionRatio = 0;  ///< out·in / (r·(out + in)): full matrix vs LoRA parameters
  Eigen::Index capacity = 0;    ///< min(r, out, in): the most singular values s·B·A can have
};

/// rankCapacity()'s result: the layer's shape, its full parameter count and one row per rank.
struct RankCapacity {
  Eigen::Index out = 0, in = 0;
  Eigen::Index fullParameters = 0;  ///< out·in
  std::vector<RankCapacityRow> rows;
};

/// \brief Parameters, compression ratio and capacity of a LoRA layer over an out x in weight, for
/// each rank of \p ranks (in the given order).
///
/// Source: the article's `analyze_rank_capacity(d, k, ranks)` (section 1.1), with d = in and
/// k = out. A rank above min(out, in) buys parameters and no capacity; its compression ratio is
/// below 1 once r > out·in / (out + in), where LoRA stores more numbers than the full matrix.
/// out, in and every rank must be >= 1 (lora::Error otherwise, naming the value).
/// \code
/// auto cap = lora::analysis::rankCapacity(768, 768, std::vector<Eigen::Index>{8, 16});
/// // cap.rows[0]: 12288 parameters, 48x compression, capacity 8
/// \endcode
inline RankCapacity rankCapacity(Eigen::Index out, Eigen::Index in,
                                 std::span<const Eigen::Index> ranks) {
  constexpr const char* where = "rankCapacity";
  if (out < 1 || in < 1) detail::fail(where, "expected out, in >= 1, got {} x {}", out, in);
  if (ranks.empty()) detail::fail(where, "expected at least one rank, got none");
  constexpr Eigen::Index kMax = std::numeric_limits<Eigen::Index>::max();
  if (out > kMax / in || out > kMax - in)
    detail::fail(where, "expected a shape whose parameter count fits in 63 bits, got {} x {}", out,
                 in);
  RankCapacity result;
  result.out = out;
  result.in = in;
  result.fullParameters = out * in;
  for (const Eigen::Index r : ranks) {
    if (r < 1) detail::fail(where, "expected ranks >= 1, got {}", r);
    if (r > kMax / (out + in))
      detail::fail(where, "expected r·(out + in) to fit in 63 bits, got r = {}", r);
    RankCapacityRow row;
    row.rank = r;
    row.parameters = r * (out + in);
    row.compressionRatio =
        static_cast<double>(result.fullParameters) / static_cast<double>(row.parameters);
    row.capacity = std::min({r, out, in});
    result.rows.push_back(row);
  }
  return result;
}

}  // namespace lora::analysis
