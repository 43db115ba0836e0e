#pragma once
// The handwritten digits task: UCI optdigits (data/digits/), 8 x 8 images. A network pretrained
// on the original images is adapted to a shifted domain (mirrored or rotated images) where it
// fails.

#include <cstdint>
#include <filesystem>
#include <string>

#include "mlp.hpp"

namespace lora::experiments {

/// Images (N x 64, pixels scaled to [0, 1], row by row) and labels 0..9.
Dataset loadDigits(const std::filesystem::path& csv);

/// How the adaptation domain differs from the pretraining one.
enum class DigitShift { None, Mirror, Rotate90, Rotate180 };
/// "none", "mirror", "rotate90", "rotate180"; lora::Error otherwise.
DigitShift parseDigitShift(const std::string& name);
std::string digitShiftName(DigitShift shift);
/// The images of \p data transformed by \p shift (labels kept).
Dataset shiftDigits(const Dataset& data, DigitShift shift);

/// The experiment's data: a fixed split of the 1797 images into train and held-out parts,
/// original (pretraining) and shifted (adaptation).
struct DigitsSplit {
  Dataset train, val;                ///< original images
  Dataset shiftedTrain, shiftedVal;  ///< the same images, shifted
};
/// Splits \p data (a third held out, chosen by \p seed) and shifts both parts.
DigitsSplit splitDigits(const Dataset& data, DigitShift shift, std::uint64_t seed);

}  // namespace lora::experiments
