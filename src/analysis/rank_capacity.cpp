#include "lora/analysis/rank_capacity.hpp"

#include <algorithm>
#include <limits>
#include <span>
#include <vector>

#include "lora/error.hpp"

namespace lora::analysis {

RankCapacity rankCapacity(Eigen::Index out, Eigen::Index in, std::span<const Eigen::Index> ranks) {
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
