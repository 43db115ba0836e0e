#pragma once
// Test support for the bad-input tests of the `lora` subcommands: small synthetic adapters and
// base models, hand-made safetensors files, and the check that a command failed as promised.

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "lora/io/adapter_config.hpp"
#include "lora/io/peft_writer.hpp"
#include "lora/io/safetensors.hpp"
#include "support/cli.hpp"
#include "support/matrices.hpp"

namespace lora::test::cli_synthetic {

namespace fs = std::filesystem;

inline std::string q(const fs::path& p) {
  return shellQuote(p.string());
}

inline void writeText(const fs::path& p, const std::string& text) {
  std::ofstream(p, std::ios::binary) << text;
}

inline const char* kConfig =
    R"({"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q", "v"]})";

/// A valid adapter: layers.0.q (A 4x6, B 8x4) and layers.0.v (A 4x6, B 5x4).
inline void writeGoodAdapter(const fs::path& dir) {
  lora::PeftAdapterWriter w(lora::AdapterConfig::parse(kConfig, "test"), lora::DType::F32);
  w.add("layers.0.q", lora::test::gaussian<float>(4, 6, 1), lora::test::gaussian<float>(8, 4, 2),
        8);
  w.add("layers.0.v", lora::test::gaussian<float>(4, 6, 3), lora::test::gaussian<float>(5, 4, 4),
        8);
  w.write(dir);
}

/// The matching base model (plus a bias), with q's weight of \p qCols columns.
inline void writeBase(const fs::path& file, Eigen::Index qCols = 6, bool withV = true) {
  lora::SafeTensorsWriter w;
  w.add("layers.0.q.weight", lora::test::gaussian<float>(8, qCols, 5));
  w.addVector("layers.0.q.bias", lora::test::gaussian<float>(8, 1, 6));
  if (withV) w.add("layers.0.v.weight", lora::test::gaussian<float>(5, 6, 7));
  w.write(file);
}

/// A safetensors file from its header text and a data buffer of \p dataBytes zero bytes; the
/// header length field is \p lengthOverride when given.
inline void writeSafetensors(const fs::path& file, const std::string& header, std::size_t dataBytes,
                             std::optional<std::uint64_t> lengthOverride = std::nullopt) {
  std::string bytes(8, '\0');
  const std::uint64_t n = lengthOverride.value_or(header.size());
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<char>((n >> (8 * i)) & 0xff);
  bytes += header;
  bytes += std::string(dataBytes, '\0');
  writeText(file, bytes);
}

/// An adapter folder with a good config and the given tensors file.
inline fs::path adapterWithTensors(const ScratchDir& tmp, const std::string& name,
                                   const std::string& header, std::size_t dataBytes,
                                   std::optional<std::uint64_t> lengthOverride = std::nullopt) {
  const fs::path dir = tmp / name;
  fs::create_directories(dir);
  writeText(dir / "adapter_config.json", kConfig);
  writeSafetensors(dir / "adapter_model.safetensors", header, dataBytes, lengthOverride);
  return dir;
}

inline std::string entry(const std::string& name, const std::string& dtype,
                         const std::string& shape, std::uint64_t begin, std::uint64_t end) {
  return "\"base_model.model." + name + "\": {\"dtype\": \"" + dtype + "\", \"shape\": " + shape +
         ", \"data_offsets\": [" + std::to_string(begin) + ", " + std::to_string(end) + "]}";
}

/// The command fails as promised: exit \p code, one "lora: error: " line naming \p word, an
/// empty stdout, and \p mustNotExist absent.
inline void expectError(const std::string& args, const std::string& word,
                        const std::optional<fs::path>& mustNotExist = std::nullopt, int code = 1) {
  SCOPED_TRACE(args);
  const CliResult r = runCli(args);
  EXPECT_EQ(r.status, code) << r.err;
  const auto lines = r.errLines();
  ASSERT_EQ(lines.size(), 1u) << r.err;
  EXPECT_TRUE(lines[0].starts_with("lora: error: ")) << lines[0];
  EXPECT_NE(lines[0].find(word), std::string::npos) << lines[0];
  EXPECT_TRUE(r.out.empty()) << r.out;
  if (mustNotExist) {
    EXPECT_FALSE(fs::exists(*mustNotExist)) << *mustNotExist;
  }
}

/// Every adapter-reading subcommand (inspect, resize, recommend, merge) refuses \p dir with an
/// error line naming \p word; resize and merge leave no output. All four run in every case, so
/// what a test checks does not depend on which tests ran before it.
inline void expectAllRefuse(const ScratchDir& tmp, const fs::path& dir, const std::string& word) {
  expectError("inspect " + q(dir), word);
  expectError("resize --rank 2 " + q(dir) + " " + q(tmp / "out_adapter"), word,
              tmp / "out_adapter");
  expectError("recommend --budget 4 " + q(dir), word);
  if (!fs::exists(tmp / "base_for_refuse.safetensors"))
    writeBase(tmp / "base_for_refuse.safetensors");
  expectError("merge --base " + q(tmp / "base_for_refuse.safetensors") + " --adapter " + q(dir) +
                  " --out " + q(tmp / "merged.safetensors"),
              word, tmp / "merged.safetensors");
}

}  // namespace lora::test::cli_synthetic
