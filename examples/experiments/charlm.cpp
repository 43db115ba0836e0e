#include "charlm.hpp"

#include <algorithm>
#include <fstream>
#include <map>
#include <numeric>

#include "lora/error.hpp"
#include "lora/random.hpp"

namespace lora::experiments {
namespace {

std::u32string decodeUtf8(const std::string& s, const std::filesystem::path& file,
                          std::size_t lineNo) {
  std::u32string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    int extra = 0;
    char32_t c = 0;
    if (b < 0x80) {
      c = b;
    } else if ((b & 0xE0) == 0xC0) {
      c = b & 0x1F;
      extra = 1;
    } else if ((b & 0xF0) == 0xE0) {
      c = b & 0x0F;
      extra = 2;
    } else if ((b & 0xF8) == 0xF0) {
      c = b & 0x07;
      extra = 3;
    } else {
      detail::fail("loadWordList", "expected UTF-8 text in {}, got byte 0x{:02x} at line {}",
                   file.string(), b, lineNo);
    }
    if (i + static_cast<std::size_t>(extra) >= s.size())
      detail::fail("loadWordList", "expected UTF-8 text in {}, got a truncated sequence at line {}",
                   file.string(), lineNo);
    for (int k = 1; k <= extra; ++k) {
      const auto cont = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((cont & 0xC0) != 0x80)
        detail::fail("loadWordList",
                     "expected UTF-8 text in {}, got a bad continuation byte at line {}",
                     file.string(), lineNo);
      c = (c << 6) | (cont & 0x3F);
    }
    if (c >= U'A' && c <= U'Z') c += U'a' - U'A';
    out.push_back(c);
    i += static_cast<std::size_t>(extra) + 1;
  }
  return out;
}

void appendUtf8(std::string& out, char32_t c) {
  if (c < 0x80) {
    out.push_back(static_cast<char>(c));
  } else if (c < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (c >> 6)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else if (c < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (c >> 12)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (c >> 18)));
    out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
  }
}

std::vector<Index> shuffled(std::size_t n, std::uint64_t seed) {
  std::vector<Index> order(n);
  std::iota(order.begin(), order.end(), Index{0});
  Rng rng(seed);
  for (std::size_t i = n; i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
  return order;
}

}  // namespace

std::vector<std::u32string> loadWordList(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in)
    detail::fail("loadWordList",
                 "expected a readable word list, got '{}' (install it: apt-get install wamerican "
                 "wfrench)",
                 file.string());
  std::vector<std::u32string> words;
  std::string line;
  std::size_t lineNo = 0;
  while (std::getline(in, line)) {
    ++lineNo;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    words.push_back(decodeUtf8(line, file, lineNo));
  }
  if (words.empty()) detail::fail("loadWordList", "expected words in {}, got none", file.string());
  return words;
}

int CharVocab::indexOf(char32_t c) const {
  const auto it = index.find(c);
  return it == index.end() ? static_cast<int>(symbols.size()) - 1 : it->second;
}

std::string CharVocab::text(int symbol) const {
  if (symbol == 0) return "⟂";
  std::string out;
  appendUtf8(out, symbols.at(static_cast<std::size_t>(symbol)));
  return out;
}

CharVocab buildVocab(const std::vector<std::u32string>& a, const std::vector<std::u32string>& b,
                     std::size_t minCount) {
  std::map<char32_t, std::size_t> counts;
  for (const auto* list : {&a, &b})
    for (const auto& w : *list)
      for (char32_t c : w) ++counts[c];
  CharVocab v;
  v.symbols.push_back(U'\0');
  for (const auto& [c, n] : counts)
    if (n >= minCount && c != U'\0' && c != U'\uFFFD') v.symbols.push_back(c);
  v.symbols.push_back(U'\uFFFD');
  for (std::size_t i = 0; i + 1 < v.symbols.size(); ++i)
    v.index.emplace(v.symbols[i], static_cast<int>(i));
  return v;
}

Dataset charSamples(const std::vector<std::u32string>& words, const CharVocab& vocab, int context,
                    Index maxSamples, std::uint64_t seed) {
  if (context < 1) detail::fail("charSamples", "expected a context >= 1, got {}", context);
  const std::vector<Index> order = shuffled(words.size(), seed);
  std::vector<std::pair<std::vector<int>, int>> samples;
  for (Index w : order) {
    const std::u32string& word = words[static_cast<std::size_t>(w)];
    std::vector<int> seq(static_cast<std::size_t>(context), 0);
    for (char32_t c : word) seq.push_back(vocab.indexOf(c));
    seq.push_back(0);
    for (std::size_t p = static_cast<std::size_t>(context); p < seq.size(); ++p)
      samples.emplace_back(std::vector<int>(seq.begin() + static_cast<std::ptrdiff_t>(p) - context,
                                            seq.begin() + static_cast<std::ptrdiff_t>(p)),
                           seq[p]);
    if (maxSamples > 0 && static_cast<Index>(samples.size()) >= maxSamples) break;
  }
  if (maxSamples > 0 && static_cast<Index>(samples.size()) > maxSamples)
    samples.resize(static_cast<std::size_t>(maxSamples));
  const Index V = vocab.size();
  Dataset d;
  d.X = Mat::Zero(static_cast<Index>(samples.size()), context * V);
  d.y.reserve(samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) {
    for (int k = 0; k < context; ++k)
      d.X(static_cast<Index>(i), k * V + samples[i].first[static_cast<std::size_t>(k)]) = 1.0f;
    d.y.push_back(samples[i].second);
  }
  return d;
}

CharTask makeCharTask(const CharTaskOptions& o) {
  const std::vector<std::u32string> en = loadWordList(o.english), fr = loadWordList(o.french);
  CharTask t;
  t.vocab = buildVocab(en, fr, o.minCount);
  t.context = o.context;
  t.englishWords = en.size();
  t.frenchWords = fr.size();
  const auto split = [&](const std::vector<std::u32string>& words, std::uint64_t seed) {
    std::pair<std::vector<std::u32string>, std::vector<std::u32string>> parts;
    const std::vector<Index> order = shuffled(words.size(), seed);
    for (std::size_t i = 0; i < order.size(); ++i)
      (i % 10 == 0 ? parts.second : parts.first)
          .push_back(words[static_cast<std::size_t>(order[i])]);
    return parts;
  };
  const auto [enTrain, enVal] = split(en, o.seed);
  const auto [frTrain, frVal] = split(fr, o.seed + 1);
  t.englishTrain = charSamples(enTrain, t.vocab, o.context, o.pretrainSamples, o.seed + 2);
  t.englishVal = charSamples(enVal, t.vocab, o.context, o.valSamples, o.seed + 3);
  t.frenchTrain = charSamples(frTrain, t.vocab, o.context, o.adaptSamples, o.seed + 4);
  t.frenchVal = charSamples(frVal, t.vocab, o.context, o.valSamples, o.seed + 5);
  return t;
}

}  // namespace lora::experiments
