#include "digits.hpp"

#include <fstream>
#include <numeric>
#include <sstream>
#include <vector>

#include "lora/error.hpp"
#include "lora/random.hpp"

namespace lora::experiments {

Dataset loadDigits(const std::filesystem::path& csv) {
  constexpr const char* where = "loadDigits";
  std::ifstream in(csv);
  if (!in)
    detail::fail(where, "expected a readable digits CSV, got '{}' (cannot open it)", csv.string());
  std::vector<float> pixels;
  std::vector<int> labels;
  std::string line;
  std::size_t lineNo = 0;
  while (std::getline(in, line)) {
    ++lineNo;
    if (line.empty()) continue;
    std::istringstream fields(line);
    std::string field;
    std::vector<int> values;
    while (std::getline(fields, field, ',')) {
      try {
        std::size_t used = 0;
        values.push_back(std::stoi(field, &used));
        if (used != field.size()) throw std::invalid_argument(field);
      } catch (const std::exception&) {
        detail::fail(where, "expected integers in {} line {}, got '{}'", csv.string(), lineNo,
                     field);
      }
    }
    if (values.size() != 65)
      detail::fail(where, "expected 65 values (64 pixels and a label) in {} line {}, got {}",
                   csv.string(), lineNo, values.size());
    for (int i = 0; i < 64; ++i) {
      if (values[i] < 0 || values[i] > 16)
        detail::fail(where, "expected pixels in 0..16 in {} line {}, got {}", csv.string(), lineNo,
                     values[i]);
      pixels.push_back(static_cast<float>(values[i]) / 16.0f);
    }
    if (values[64] < 0 || values[64] > 9)
      detail::fail(where, "expected a label in 0..9 in {} line {}, got {}", csv.string(), lineNo,
                   values[64]);
    labels.push_back(values[64]);
  }
  if (labels.empty()) detail::fail(where, "expected images in {}, got none", csv.string());
  Dataset d;
  d.X = Eigen::Map<const Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(
      pixels.data(), static_cast<Index>(labels.size()), 64);
  d.y = std::move(labels);
  return d;
}

DigitShift parseDigitShift(const std::string& name) {
  if (name == "none") return DigitShift::None;
  if (name == "mirror") return DigitShift::Mirror;
  if (name == "rotate90") return DigitShift::Rotate90;
  if (name == "rotate180") return DigitShift::Rotate180;
  detail::fail("parseDigitShift", "expected none, mirror, rotate90 or rotate180, got '{}'", name);
}

std::string digitShiftName(DigitShift shift) {
  switch (shift) {
    case DigitShift::None:
      return "none";
    case DigitShift::Mirror:
      return "mirror";
    case DigitShift::Rotate90:
      return "rotate90";
    case DigitShift::Rotate180:
      return "rotate180";
  }
  return "?";
}

Dataset shiftDigits(const Dataset& data, DigitShift shift) {
  Dataset out = data;
  for (Index n = 0; n < data.size(); ++n)
    for (int r = 0; r < 8; ++r)
      for (int c = 0; c < 8; ++c) {
        int sr = r, sc = c;  // the source pixel of (r, c)
        switch (shift) {
          case DigitShift::None:
            break;
          case DigitShift::Mirror:
            sc = 7 - c;
            break;
          case DigitShift::Rotate90:
            sr = 7 - c;
            sc = r;
            break;  // clockwise
          case DigitShift::Rotate180:
            sr = 7 - r;
            sc = 7 - c;
            break;
        }
        out.X(n, r * 8 + c) = data.X(n, sr * 8 + sc);
      }
  return out;
}

DigitsSplit splitDigits(const Dataset& data, DigitShift shift, std::uint64_t seed) {
  std::vector<Index> order(static_cast<std::size_t>(data.size()));
  std::iota(order.begin(), order.end(), Index{0});
  Rng rng(seed);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  const std::size_t nVal = order.size() / 3;
  const std::span<const Index> val(order.data(), nVal),
      train(order.data() + nVal, order.size() - nVal);
  DigitsSplit s;
  s.train = data.subset(train);
  s.val = data.subset(val);
  s.shiftedTrain = shiftDigits(s.train, shift);
  s.shiftedVal = shiftDigits(s.val, shift);
  return s;
}

}  // namespace lora::experiments
