#pragma once
/// \file rank_capacity.hpp
/// \brief What a rank buys (the article's section 1.1): parameters, compression and capacity.

#include <span>
#include <vector>

#include "lora/detail/eigen.hpp"

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
RankCapacity rankCapacity(Eigen::Index out, Eigen::Index in, std::span<const Eigen::Index> ranks);

}  // namespace lora::analysis
