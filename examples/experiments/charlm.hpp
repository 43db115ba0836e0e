#pragma once
// The character-level language model task: predict the next character of a word from the
// previous `context` characters (one-hot, the MLP of mlp.hpp). Pretrained on the English word
// list of Debian's wamerican package, adapted to French (wfrench); scored in bits per character.

#include <cstdint>
#include <filesystem>
#include <string>
#include <unordered_map>
#include <vector>

#include "mlp.hpp"

namespace lora::experiments {

/// The words of a word list (UTF-8, one per line), A-Z lowercased; empty lines skipped.
/// lora::Error for a missing file or invalid UTF-8.
std::vector<std::u32string> loadWordList(const std::filesystem::path& file);

/// The symbols the model sees: 0 is the word boundary, the last is "any other character".
struct CharVocab {
  std::vector<char32_t> symbols;  ///< symbols[0] = U'\0' (boundary), back() = U'\uFFFD' (other)
  std::unordered_map<char32_t, int> index;
  Index size() const { return static_cast<Index>(symbols.size()); }
  int indexOf(char32_t c) const;
  /// The symbol as UTF-8 ("⟂" for the boundary, "�" for other).
  std::string text(int symbol) const;
};
/// Every character that appears at least \p minCount times in \p a and \p b together.
CharVocab buildVocab(const std::vector<std::u32string>& a, const std::vector<std::u32string>& b,
                     std::size_t minCount);

/// Next-character samples from the words \p words: every position of a word and its end, with
/// the previous \p context symbols (boundary-padded) one-hot encoded (N x context·|V|). Words are
/// taken in an order fixed by \p seed until \p maxSamples samples (all when 0).
Dataset charSamples(const std::vector<std::u32string>& words, const CharVocab& vocab, int context,
                    Index maxSamples, std::uint64_t seed);

/// Settings of the character task.
struct CharTaskOptions {
  std::filesystem::path english = "/usr/share/dict/american-english";  ///< wamerican
  std::filesystem::path french = "/usr/share/dict/french";             ///< wfrench
  int context = 6;
  Index pretrainSamples = 300000, adaptSamples = 40000, valSamples = 8000;
  std::size_t minCount = 50;  ///< rarer characters become "other"
  std::uint64_t seed = 7;
};

/// Both languages' data; words are split 90/10 into train and held-out before sampling.
struct CharTask {
  CharVocab vocab;
  int context = 0;
  std::size_t englishWords = 0, frenchWords = 0;
  Dataset englishTrain, englishVal, frenchTrain, frenchVal;
};
CharTask makeCharTask(const CharTaskOptions& options);

}  // namespace lora::experiments
