// Generates one C++ translation unit from the fenced C++ blocks of a Markdown document, for the
// doc tests (label `docs`): every ```cpp block is compiled and run, and its printed output is
// compared with the document's where the document shows it.
//
//   doc_extract FILE.md DOC NAME OUT.cpp     (DOC: the path to show, e.g. docs/training.md;
//                                            NAME: a C identifier for the document)
//
// Conventions in the document (HTML comments, invisible when rendered):
// - `<!-- doc-test preamble ... -->` anywhere: code at the top of the unit, after the blocks'
//   includes (the includes that the prose names instead of the block).
// - `<!-- doc-test setup ... -->` right before a block: C++ statements that run before the
//   block, in the same scope (the variables the block uses but does not declare).
// - `<!-- doc-test scope -->` before a block: the block is declarations (a struct, a function),
//   compiled at namespace scope and not run.
// - `<!-- doc-test fragment: WHY -->` before a block: not compiled (say why).
// - `<!-- doc-test output -->` before a fenced block that follows a C++ block: what the C++ block
//   prints, compared token by token (numbers to a relative 1e-6: the last digits may differ
//   between machines).
// `shell`, `vary` and `status-only` markers belong to the shell sessions
// (tests/docs/doc_runner.cpp). A block that defines `int main(` is a program: it runs as one, and a
// non-zero return fails.
// `#include` lines of every block go to the top of the unit. `#line` directives point compiler
// errors at the document's lines.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct Block {
  int line = 0;                           // of the first line of code
  std::string code, setup, output, mode;  // mode: run, program, scope, fragment
};

bool startsWith(const std::string& s, const std::string& p) {
  return s.rfind(p, 0) == 0;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return {};
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// A C++ string literal of \p s.
std::string literal(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n\"\n    \"";
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::cerr << "usage: doc_extract FILE.md DOC NAME OUT.cpp\n";
    return 2;
  }
  const std::string file = argv[1], doc = argv[2], name = argv[3], outPath = argv[4];
  std::ifstream in(file);
  if (!in) {
    std::cerr << "doc_extract: cannot read " << file << "\n";
    return 1;
  }
  std::vector<std::string> lines;
  for (std::string l; std::getline(in, l);) lines.push_back(l);

  std::vector<Block> blocks;
  std::string preamble, pendingSetup, pendingMode = "run";
  bool pendingOutput = false;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const std::string t = trim(lines[i]);
    if (startsWith(t, "<!-- doc-test")) {
      std::string body = t.substr(13);
      std::size_t j = i;
      while (body.find("-->") == std::string::npos && ++j < lines.size()) body += "\n" + lines[j];
      body = body.substr(0, body.find("-->"));
      i = j;
      const std::string head = trim(body);
      const std::string kind = head.substr(0, head.find_first_of(" \n:"));
      if (kind == "preamble") {
        preamble += body.substr(body.find("preamble") + 8) + "\n";
      } else if (kind == "setup") {
        pendingSetup = body.substr(body.find("setup") + 5);
      } else if (kind == "scope" || kind == "fragment") {
        pendingMode = kind;
      } else if (kind == "output") {
        pendingOutput = true;
      } else if (kind == "shell" || kind == "vary" || kind == "status-only") {
        // markers of the shell sessions (lora_doc_tests --commands)
      } else {
        std::cerr << doc << ":" << i + 1 << ": unknown doc-test marker '" << kind << "'\n";
        return 1;
      }
      continue;
    }
    if (!startsWith(t, "```")) continue;
    const std::string info = trim(t.substr(3));
    std::string body;
    const std::size_t first = i + 2;
    for (++i; i < lines.size() && !startsWith(trim(lines[i]), "```"); ++i) body += lines[i] + "\n";
    if (pendingOutput) {
      if (blocks.empty()) {
        std::cerr << doc << ":" << first - 1 << ": a doc-test output block without a C++ block\n";
        return 1;
      }
      blocks.back().output = body;
      pendingOutput = false;
    } else if (info == "cpp" || info == "c++") {
      Block b;
      b.line = static_cast<int>(first);
      b.code = body;
      b.setup = pendingSetup;
      b.mode = pendingMode;
      if (b.mode == "run" && body.find("int main(") != std::string::npos) b.mode = "program";
      blocks.push_back(b);
    }
    pendingSetup.clear();
    pendingMode = "run";
  }

  std::ostringstream out;
  bool any = false;
  for (const Block& b : blocks) any = any || b.mode != "fragment";
  out << "// Generated by tests/docs/extract.cpp from " << doc << ": do not edit.\n";
  // The blocks' includes first, once each; then the preamble and the blocks that are
  // declarations or whole programs, so that these compile with what they include and nothing
  // else; then the runner's header and the blocks that run as statements.
  std::vector<std::string> includes;
  for (Block& b : blocks) {
    if (b.mode == "fragment") continue;
    std::istringstream code(b.code);
    std::string kept;
    for (std::string l; std::getline(code, l);) {
      if (startsWith(trim(l), "#include")) {
        bool seen = false;
        for (const auto& x : includes) seen = seen || x == trim(l);
        if (!seen) includes.push_back(trim(l));
        kept += "\n";  // keeps the line numbers
      } else {
        kept += l + "\n";
      }
    }
    b.code = kept;
  }
  for (const auto& x : includes) out << x << "\n";
  out << preamble;
  for (const Block& b : blocks) {
    if (b.mode != "scope" && b.mode != "program") continue;
    std::string code = b.code;
    // `auto`: a main without a return statement (which returns 0) deduces void.
    if (b.mode == "program") code.replace(code.find("int main("), 9, "auto docMain(");
    out << "\nnamespace doc_" << name << "_" << b.line << " {\n#line " << b.line << " \"" << doc
        << "\"\n"
        << code << "}  // namespace\n";
  }
  out << (any ? "#include \"docs/doc_runner.hpp\"\n" : "#include \"docs/doc_registry.hpp\"\n");
  std::ostringstream table;
  for (const Block& b : blocks) {
    if (b.mode == "fragment") continue;
    const std::string ns = "doc_" + name + "_" + std::to_string(b.line);
    out << "\nnamespace " << ns << " {\nvoid run() {\n";
    if (!b.setup.empty()) out << b.setup << "\n";
    if (b.mode == "run") {
      out << "#line " << b.line << " \"" << doc << "\"\n" << b.code;
    } else if (b.mode == "program") {
      out << "  lora::doctest::runProgram(&docMain);\n";
    }
    out << "}\n}  // namespace " << ns << "\n";
    table << "    {" << b.line << ", " << (b.mode == "scope" ? "nullptr" : "&" + ns + "::run")
          << ", " << (b.output.empty() ? "nullptr" : literal(b.output)) << "},\n";
  }
  // Named after the document: the units compile together in a unity batch (tests/CMakeLists.txt).
  out << "\nnamespace {\n";
  if (any) {
    out << "const lora::doctest::BlockEntry blocks_" << name << "[] = {\n"
        << table.str() << "};\n"
        << "const lora::doctest::Registered registered_" << name << "(" << literal(doc)
        << ", blocks_" << name << ", sizeof blocks_" << name << " / sizeof blocks_" << name
        << "[0]);\n";
  } else {
    out << "const lora::doctest::Registered registered_" << name << "(" << literal(doc)
        << ", nullptr, 0);\n";
  }
  out << "}  // namespace\n";
  std::ofstream result(outPath);
  result << out.str();
  if (!result) {
    std::cerr << "doc_extract: cannot write " << outPath << "\n";
    return 1;
  }
  return 0;
}
