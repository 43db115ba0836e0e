#pragma once
/// \file markdown_table.hpp
/// \brief A small aligned markdown (pipe) table, for the analysis reports and the examples.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace lora::detail {

/// Display width of UTF-8 text, counted in code points (the reports use ‖, ±, σ, Δ: one column
/// each on a terminal).
std::size_t displayWidth(std::string_view text) noexcept;

}  // namespace lora::detail

namespace lora::analysis {

/// \brief Rows of text cells printed as a markdown table whose columns line up in a terminal.
///
/// The first column is left-aligned, the others right-aligned (they hold numbers). Cells must not
/// contain '|' or a newline (they would break the table); rows must have the header's length.
///
/// \code
/// lora::analysis::MarkdownTable table({"init", "loss"});
/// table.addRow({"peft_default", "0.125"});
/// fmt::print("{}", table.format());
/// \endcode
class MarkdownTable {
 public:
  explicit MarkdownTable(std::vector<std::string> header);

  /// Appends a row of header().size() cells.
  MarkdownTable& addRow(std::vector<std::string> row);

  const std::vector<std::string>& header() const noexcept { return m_header; }
  const std::vector<std::vector<std::string>>& rows() const noexcept { return m_rows; }

  /// The table, one line per row, each ending in '\n'.
  std::string format() const;

 private:
  static void checkCells(const char* where, const std::vector<std::string>& row);

  std::vector<std::string> m_header;
  std::vector<std::vector<std::string>> m_rows;
};

}  // namespace lora::analysis
