#include "lora/analysis/markdown_table.hpp"

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "lora/error.hpp"

namespace lora::detail {

std::size_t displayWidth(std::string_view text) noexcept {
  std::size_t width = 0;
  for (const char c : text)
    if ((static_cast<unsigned char>(c) & 0xC0u) != 0x80u) ++width;
  return width;
}

}  // namespace lora::detail

namespace lora::analysis {

MarkdownTable::MarkdownTable(std::vector<std::string> header) : m_header(std::move(header)) {
  if (m_header.empty())
    detail::fail("MarkdownTable::MarkdownTable", "expected at least one column, got none");
  checkCells("MarkdownTable::MarkdownTable", m_header);
}

MarkdownTable& MarkdownTable::addRow(std::vector<std::string> row) {
  constexpr const char* where = "MarkdownTable::addRow";
  if (row.size() != m_header.size())
    detail::fail(where, "expected a row of {} cells, got {}", m_header.size(), row.size());
  checkCells(where, row);
  m_rows.push_back(std::move(row));
  return *this;
}

std::string MarkdownTable::format() const {
  std::vector<std::size_t> width(m_header.size(), 3);  // "---" at least
  auto measure = [&](const std::vector<std::string>& row) {
    for (std::size_t j = 0; j < row.size(); ++j)
      width[j] = std::max(width[j], detail::displayWidth(row[j]));
  };
  measure(m_header);
  for (const auto& row : m_rows) measure(row);

  std::string out;
  auto line = [&](const std::vector<std::string>& row) {
    out += '|';
    for (std::size_t j = 0; j < row.size(); ++j) {
      const std::string pad(width[j] - detail::displayWidth(row[j]), ' ');
      out += ' ';
      out += j == 0 ? row[j] + pad : pad + row[j];
      out += " |";
    }
    out += '\n';
  };
  line(m_header);
  out += '|';
  for (std::size_t j = 0; j < width.size(); ++j)
    out += j == 0 ? fmt::format(" {} |", std::string(width[j], '-'))
                  : fmt::format(" {}: |", std::string(width[j] - 1, '-'));
  out += '\n';
  for (const auto& row : m_rows) line(row);
  return out;
}

void MarkdownTable::checkCells(const char* where, const std::vector<std::string>& row) {
  for (const auto& cell : row)
    if (cell.find_first_of("|\n") != std::string::npos)
      detail::fail(where, "expected cells without '|' or a newline, got \"{}\"", cell);
}

}  // namespace lora::analysis
