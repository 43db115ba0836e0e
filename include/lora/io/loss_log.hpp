#pragma once
/// \file loss_log.hpp
/// \brief Reading a training-loss log: one loss per line, or `step,loss` CSV.

#include <istream>
#include <string>
#include <vector>

namespace lora {

/// One logged loss: the step it was logged at and its value.
struct LossEntry {
  long long step = 0;
  double loss = 0;
};

/// \brief Reads a loss log from \p in (\p sourceName names it in errors).
///
/// Each line is a loss (`2.31`) or `step,loss` (`120,2.31`); all lines of a file use the same
/// form. Blank lines and lines starting with `#` are skipped, and a first line `step,loss` is a
/// header. Without steps a loss gets its 0-based index among the losses. Anything else, a
/// non-finite loss, or steps that do not increase, throws lora::Error naming the source and line:
/// `readLossLog(): losses.txt:7: expected a number or step,loss, got '1.2.3'`.
std::vector<LossEntry> readLossLog(std::istream& in, const std::string& sourceName);

}  // namespace lora
