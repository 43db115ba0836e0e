#pragma once
// The doc tests' registry (what every generated translation unit includes; the ones of documents
// without C++ blocks include nothing else): each document's blocks, registered at start-up.

#include <cstddef>

namespace lora::doctest {

struct BlockEntry {
  int line = 0;                    // the block's first line in the document
  void (*run)() = nullptr;         // nullptr: compiled only (declarations)
  const char* expected = nullptr;  // what the document shows it prints, or nullptr
};

/// Registers the \p count blocks of \p doc (a document path, e.g. "docs/training.md").
struct Registered {
  Registered(const char* doc, const BlockEntry* blocks, std::size_t count);
};

}  // namespace lora::doctest
