// lora/io/kohya.hpp and kohya_resize.hpp: the layout of kohya-format Stable Diffusion LoRA files,
// kohya's resize_lora.py rules worked by hand, the conv reshape and the resized factors against a
// dense SVD, the metadata and hashes kohya's tools write, and malformed files.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <Eigen/SVD>

#include "lora/error.hpp"
#include "lora/io/kohya.hpp"
#include "lora/io/kohya_resize.hpp"
#include "lora/io/peft_file.hpp"
#include "lora/io/safetensors.hpp"
#include "support/cli.hpp"
#include "support/errors.hpp"
#include "support/kohya.hpp"

namespace {

namespace fs = std::filesystem;
using Eigen::Index;
using lora::DType;
using lora::kohyaNewRank;
using lora::KohyaRule;
using lora::test::KohyaSpec;
using lora::test::ScratchDir;

Eigen::VectorXd values(std::initializer_list<double> v) {
  Eigen::VectorXd s(static_cast<Index>(v.size()));
  Index i = 0;
  for (double x : v) s(i++) = x;
  return s;
}

lora::SafeTensorsReader readerOf(const lora::SafeTensorsWriter& w, const ScratchDir& tmp,
                                 const std::string& name = "f.safetensors") {
  w.write(tmp / name);
  return lora::SafeTensorsReader::open(tmp / name);
}

TEST(KohyaLayout, FindsModulesKindsShapesAndAlphas) {
  ScratchDir tmp("kohya_layout");
  lora::SafeTensorsWriter w;
  std::vector<KohyaSpec> specs = lora::test::sdxlSpecs();
  specs[2].alpha.reset();  // no alpha: scale 1
  for (std::size_t i = 0; i < specs.size(); ++i) lora::test::addKohyaModule(w, specs[i], 7 + i);
  // A tensor of no module (DoRA's dora_scale) is kept aside.
  w.addFlat("lora_unet_input_blocks_4_1_proj_in.dora_scale", {1, 40}, Eigen::VectorXf::Ones(40));
  const auto st = readerOf(w, tmp);
  const lora::KohyaLayout layout = lora::readKohyaLayout(st);
  ASSERT_EQ(layout.modules.size(), specs.size());
  // Modules in the byte order of their down keys.
  for (std::size_t i = 1; i < layout.modules.size(); ++i)
    EXPECT_LT(layout.modules[i - 1].keyDown, layout.modules[i].keyDown);
  for (const KohyaSpec& s : specs) {
    SCOPED_TRACE(s.name);
    const auto it = std::find_if(layout.modules.begin(), layout.modules.end(),
                                 [&](const lora::KohyaModule& m) { return m.name == s.name; });
    ASSERT_NE(it, layout.modules.end());
    EXPECT_EQ(it->keyDown, s.downKey());
    EXPECT_EQ(it->keyUp, s.upKey());
    EXPECT_EQ(it->rank, s.rank);
    EXPECT_EQ(it->out, s.out);
    EXPECT_EQ(it->in, s.in);
    EXPECT_EQ(it->kernelH, s.kh);
    EXPECT_EQ(it->kernelW, s.kw);
    EXPECT_EQ(it->columns(), s.columns());
    EXPECT_EQ(it->isConv(), s.kh > 0);
    EXPECT_EQ(it->alpha.has_value(), s.alpha.has_value());
    if (s.alpha) {
      EXPECT_EQ(*it->alpha, *s.alpha);
      EXPECT_EQ(it->keyAlpha, s.name + ".alpha");
      EXPECT_DOUBLE_EQ(it->scale(), *s.alpha / static_cast<double>(s.rank));
    } else {
      EXPECT_TRUE(it->keyAlpha.empty());
      EXPECT_EQ(it->scale(), 1.0);
    }
  }
  EXPECT_EQ(layout.others,
            std::vector<std::string>{"lora_unet_input_blocks_4_1_proj_in.dora_scale"});
}

TEST(KohyaLayout, AcceptsTheOtherKeyFormatsOfResizeLora) {
  ScratchDir tmp("kohya_formats");
  lora::SafeTensorsWriter w;
  KohyaSpec peftNames{"lora_unet_a", 12, 10, 3};
  peftNames.down = "lora_A";
  peftNames.up = "lora_B";
  KohyaSpec control{"input_blocks.1.0.in_layers.2", 12, 6, 2, 3, 3};
  control.down = "down";
  control.up = "up";
  control.suffix = "";  // ControlLoRA: no .weight
  lora::test::addKohyaModule(w, peftNames, 1);
  lora::test::addKohyaModule(w, control, 2);
  const auto layout = lora::readKohyaLayout(readerOf(w, tmp));
  ASSERT_EQ(layout.modules.size(), 2u);
  EXPECT_EQ(layout.modules[0].name, "input_blocks.1.0.in_layers.2");
  EXPECT_EQ(layout.modules[0].keyDown, "input_blocks.1.0.in_layers.2.down");
  EXPECT_EQ(layout.modules[0].keyUp, "input_blocks.1.0.in_layers.2.up");
  EXPECT_EQ(layout.modules[0].columns(), 54);
  EXPECT_EQ(layout.modules[1].keyUp, "lora_unet_a.lora_B.weight");
}

TEST(KohyaLayout, RejectsMalformedFilesNamingTheModule) {
  ScratchDir tmp("kohya_bad");
  const auto expectBad = [&](const std::function<void(lora::SafeTensorsWriter&)>& build,
                             const std::string& needle) {
    lora::SafeTensorsWriter w;
    build(w);
    const auto st = readerOf(w, tmp);
    const std::string message = lora::test::errorOf([&] { (void)lora::readKohyaLayout(st); });
    EXPECT_CONTAINS(message, needle);
    EXPECT_CONTAINS(message, "readKohyaLayout");
  };
  const Eigen::VectorXf v = Eigen::VectorXf::Ones(64);
  expectBad(
      [&](auto& w) {
        w.addFlat("m.lora_up.weight", {8, 4}, v.head(32));
      },
      "'m.lora_down.weight' beside 'm.lora_up.weight' for module 'm'");
  expectBad(
      [&](auto& w) {
        w.addFlat("m.lora_down.weight", {4, 8}, v.head(32));
      },
      "'m.lora_up.weight' beside 'm.lora_down.weight' for module 'm'");
  expectBad(
      [&](auto& w) {
        w.addFlat("m.lora_down.weight", {4, 8}, v.head(32));
        w.addFlat("m.lora_up.weight", {8, 3}, v.head(24));
      },
      "same rank r >= 1 for module 'm'");
  expectBad(
      [&](auto& w) {
        w.addFlat("m.lora_down.weight", {4, 2, 4}, v.head(32));
        w.addFlat("m.lora_up.weight", {8, 4}, v.head(32));
      },
      "2-D factors (linear) or 4-D factors (conv) for module 'm'");
  expectBad(
      [&](auto& w) {
        w.addFlat("m.lora_down.weight", {2, 2, 2, 2}, v.head(16));
        w.addFlat("m.lora_up.weight", {2, 2, 2, 2}, v.head(16));
      },
      "[out, r, 1, 1] for module 'm'");
  expectBad(
      [&](auto& w) {
        w.addFlat("m.lora_down.weight", {4, 8}, v.head(32));
        w.addFlat("m.lora_up.weight", {8, 4}, v.head(32));
        w.addFlat("m.alpha", {2}, v.head(2));
      },
      "alpha of module 'm'");
  expectBad(
      [&](auto& w) {
        w.addFlat("m.lora_down.weight", {4, 8}, v.head(32));
        w.addFlat("m.lora_up.weight", {8, 4}, v.head(32));
        Eigen::VectorXf nan(1);
        nan(0) = std::numeric_limits<float>::quiet_NaN();
        w.addFlat("m.alpha", {}, nan);
      },
      "finite alpha for module 'm'");
  expectBad(
      [&](auto& w) {
        const std::vector<std::byte> bytes(32);
        w.addRaw("m.lora_down.weight", DType::U8, {4, 8}, bytes);
        w.addFlat("m.lora_up.weight", {8, 4}, v.head(32));
      },
      "got U8 for 'm.lora_down.weight'");
  expectBad(
      [&](auto& w) {
        w.addFlat("lora_unet_x.hada_w1_a", {4, 8}, v.head(32));
      },
      "at least one LoRA module");
}

TEST(KohyaRules, FixedRankIsTheGivenRankAlsoAboveTheOldOne) {
  const Eigen::VectorXd s = values({3, 2, 1});
  EXPECT_EQ(kohyaNewRank(s, 64, KohyaRule::Fixed, 0, 2), 2);
  EXPECT_EQ(kohyaNewRank(s, 64, KohyaRule::Fixed, 0, 8), 8);  // above the old rank 3
  EXPECT_EQ(kohyaNewRank(s, 5, KohyaRule::Fixed, 0, 8), 8);   // above n: resize refuses it
}

TEST(KohyaRules, SvRatioCountsStrictlyAboveTheCutThenAddsOne) {
  const Eigen::VectorXd s = values({8, 4, 2, 1});
  // T = 4: the cut is 2; #{σ > 2} = 2 (the tie at 2 is not counted), + 1 = 3.
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvRatio, 4, 8), 3);
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvRatio, 4, 2), 2);  // capped
  // T = 1: nothing above σ1, clamped to 1, + 1 = 2.
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvRatio, 1, 8), 2);
  // T = 100: all four, + 1 = 5: one more than the factors' rank (a direction with σ = 0).
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvRatio, 100, 8), 5);
  // ... unless n = 4: clamped to n − 1 = 3, + 1 = 4.
  EXPECT_EQ(kohyaNewRank(s, 4, KohyaRule::SvRatio, 100, 8), 4);
}

TEST(KohyaRules, SvCumulativeIsSearchsortedLeftPlusTwo) {
  // Σσ = 8; cumulative shares 0.5, 0.75, 0.875, 1.
  const Eigen::VectorXd s = values({4, 2, 1, 1});
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvCumulative, 0.5, 8), 2);   // tie at index 0
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvCumulative, 0.75, 8), 3);  // tie at index 1
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvCumulative, 0.76, 8), 4);
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvCumulative, 0.3, 8), 2);
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvCumulative, 1.0, 8), 5);
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvCumulative, 1.0, 4), 4);  // capped
  // n = 3 (three singular values exist): clamped to n − 1 = 2, + 1 = 3.
  EXPECT_EQ(kohyaNewRank(values({1, 1, 1}), 3, KohyaRule::SvCumulative, 1.0, 8), 3);
}

TEST(KohyaRules, SvFroComparesSquaredSharesWithTSquared) {
  // σ² = 9, 4, 1, 1, 1 (Σ 16): shares 0.5625, 0.8125, 0.875, 0.9375, 1.
  const Eigen::VectorXd s = values({3, 2, 1, 1, 1});
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvFro, 0.75, 8), 2);  // T² = 0.5625: tie at 0
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvFro, 0.9, 8), 3);   // T² = 0.81: index 1
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvFro, 0.5, 8), 2);
  EXPECT_EQ(kohyaNewRank(s, 320, KohyaRule::SvFro, 1.0, 16), 6);  // index 4, + 1, + 1
}

TEST(KohyaRules, ZeroModulesGetRankOneWhateverTheRule) {
  const Eigen::VectorXd tiny = values({1e-6, 1e-7});
  for (KohyaRule rule :
       {KohyaRule::Fixed, KohyaRule::SvRatio, KohyaRule::SvCumulative, KohyaRule::SvFro}) {
    EXPECT_EQ(kohyaNewRank(tiny, 64, rule, 1, 8), 1);
    EXPECT_EQ(kohyaNewRank(Eigen::VectorXd::Zero(4), 64, rule, 1, 8), 1);
  }
  // Just above kohya's MIN_SV it is an ordinary module.
  EXPECT_EQ(kohyaNewRank(values({2e-6, 1e-7}), 64, KohyaRule::Fixed, 0, 8), 8);
}

TEST(KohyaRules, NewAlphaIsComputedInFloat32) {
  EXPECT_EQ(lora::kohyaNewAlpha(16.0, 32, 8), 4.0);
  const float third = 1.0f / 3.0f;
  EXPECT_EQ(lora::kohyaNewAlpha(1.0, 3, 2), static_cast<double>(third * 2.0f));
  EXPECT_EQ(lora::kohyaNewAlpha(1.0, 3, 2), 0.6666666865348816);
  EXPECT_EQ(lora::kohyaNewAlpha(std::nullopt, 32, 5), 5.0);  // no alpha: scale 1
}

TEST(KohyaRules, OptionsAreChecked) {
  lora::KohyaResizeOptions o;
  o.rank = 0;
  EXPECT_THROW(lora::checkKohyaResizeOptions(o, "t"), lora::Error);
  o = {};
  o.rule = KohyaRule::SvRatio;
  o.parameter = 0.5;
  EXPECT_THROW(lora::checkKohyaResizeOptions(o, "t"), lora::Error);
  o.rule = KohyaRule::SvFro;
  o.parameter = 1.5;
  EXPECT_THROW(lora::checkKohyaResizeOptions(o, "t"), lora::Error);
  o.parameter = 0.9;
  o.dtype = DType::F64;
  EXPECT_THROW(lora::checkKohyaResizeOptions(o, "t"), lora::Error);
  o.dtype = DType::BF16;
  EXPECT_NO_THROW(lora::checkKohyaResizeOptions(o, "t"));
}

// The dense reference: the SVD of the out x (in·kh·kw) delta up·down, formed.
struct Dense {
  Eigen::VectorXd sigma;
  Eigen::MatrixXd truncated(const Eigen::MatrixXd& delta, Index k) const {
    const Eigen::JacobiSVD<Eigen::MatrixXd> svd(delta, Eigen::ComputeThinU | Eigen::ComputeThinV);
    return svd.matrixU().leftCols(k) * svd.singularValues().head(k).asDiagonal() *
           svd.matrixV().leftCols(k).transpose();
  }
};

TEST(KohyaResize, ConvModulesAreTheReshapedMatrixAsADenseSvdGivesThem) {
  ScratchDir tmp("kohya_conv");
  const KohyaSpec spec{"lora_unet_down_blocks_0_resnets_0_conv1", 24, 5, 6, 3, 3, 3.0f};
  lora::SafeTensorsWriter w;
  lora::test::addKohyaModule(w, spec, 11);
  const auto st = readerOf(w, tmp);
  const lora::KohyaModule m = lora::readKohyaLayout(st).modules.at(0);
  const Eigen::MatrixXd down = st.flattenedMatrix<double>(m.keyDown);
  const Eigen::MatrixXd up = st.flattenedMatrix<double>(m.keyUp);
  ASSERT_EQ(down.rows(), 6);
  ASSERT_EQ(down.cols(), 45);
  // The reshape is PyTorch's: row j of down is its [j, :, :, :] in C order.
  const Eigen::VectorXd flat = st.flat<double>(m.keyDown);
  for (Index c = 0; c < 5; ++c)
    for (Index y = 0; y < 3; ++y)
      for (Index x = 0; x < 3; ++x)
        EXPECT_EQ(down(2, c * 9 + y * 3 + x), flat(2 * 45 + c * 9 + y * 3 + x));
  const Eigen::MatrixXd delta = up * down;
  const Eigen::JacobiSVD<Eigen::MatrixXd> dense(delta);
  lora::KohyaResizeOptions o;
  o.rule = KohyaRule::SvFro;
  o.parameter = 0.9;
  o.rank = 16;
  const lora::KohyaResizedModule r = lora::kohyaResizeModule(m, up, down, o);
  EXPECT_LT((r.sigma - dense.singularValues().head(6)).norm(), 1e-12 * dense.singularValues()(0));
  const Index k = r.newRank;
  EXPECT_EQ(k, kohyaNewRank(dense.singularValues(), 24, KohyaRule::SvFro, 0.9, 16));
  EXPECT_EQ(r.up.rows(), 24);
  EXPECT_EQ(r.down.cols(), 45);
  EXPECT_LT((r.up * r.down - Dense{}.truncated(delta, k)).norm(), 1e-12 * delta.norm());
  EXPECT_LT((r.down * r.down.transpose() - Eigen::MatrixXd::Identity(k, k)).norm(), 1e-12);
  EXPECT_EQ(r.newAlpha, lora::kohyaNewAlpha(3.0, 6, k));
}

TEST(KohyaResize, AFixedRankAboveTheOldRankKeepsTheDeltaAndAboveNIsRefused) {
  const KohyaSpec spec{"lora_te_text_model_encoder_layers_0_mlp_fc2", 20, 12, 3};
  // Not a structured binding: Clang 14 cannot capture one in the lambda below.
  const auto factors = lora::test::kohyaFactors(spec, 3);
  const Eigen::MatrixXd& up = factors.first;
  const Eigen::MatrixXd& down = factors.second;
  lora::KohyaModule m;
  m.name = spec.name;
  m.rank = 3;
  m.out = 20;
  m.in = 12;
  m.alpha = 3.0;
  lora::KohyaResizeOptions o;
  o.rank = 7;
  const auto r = lora::kohyaResizeModule(m, up, down, o);
  EXPECT_EQ(r.newRank, 7);
  EXPECT_LT((r.up * r.down - up * down).norm(), 1e-12 * (up * down).norm());
  EXPECT_TRUE(r.up.rightCols(4).isZero(0));
  EXPECT_LT((r.down * r.down.transpose() - Eigen::MatrixXd::Identity(7, 7)).norm(), 1e-12);
  EXPECT_EQ(r.newAlpha, 7.0);
  o.rank = 13;  // n = min(20, 12) = 12
  const std::string message =
      lora::test::errorOf([&] { (void)lora::kohyaResizeModule(m, up, down, o); });
  for (const char* part : {"kohyaResizeModule", "at most 12",
                           "'lora_te_text_model_encoder_layers_0_mlp_fc2'", "got 13"})
    EXPECT_CONTAINS(message, part);
}

TEST(KohyaResize, AnAllZeroModuleGetsRankOneWithAUnitDownRow) {
  KohyaSpec spec{"lora_unet_mid_block_attentions_0_proj_out", 16, 16, 4};
  auto [up, down] = lora::test::kohyaFactors(spec, 5);
  up.setZero();
  lora::KohyaModule m;
  m.name = spec.name;
  m.rank = 4;
  m.out = 16;
  m.in = 16;
  m.alpha = 8.0;
  lora::KohyaResizeOptions o;
  o.rule = KohyaRule::SvRatio;
  o.parameter = 10;
  const auto r = lora::kohyaResizeModule(m, up, down, o);
  EXPECT_EQ(r.newRank, 1);
  EXPECT_EQ(r.newAlpha, 2.0);  // float32(8 / 4) · 1
  EXPECT_TRUE(r.up.isZero(0));
  EXPECT_NEAR(r.down.norm(), 1.0, 1e-12);
  EXPECT_EQ(r.froRetained, 1.0);
}

TEST(KohyaMetadata, PythonFloatReprAsKohyaWritesNumbers) {
  using lora::detail::pythonFloatRepr;
  EXPECT_EQ(pythonFloatRepr(16.0), "16.0");
  EXPECT_EQ(pythonFloatRepr(0.0), "0.0");
  EXPECT_EQ(pythonFloatRepr(0.9), "0.9");
  EXPECT_EQ(pythonFloatRepr(-2.5), "-2.5");
  EXPECT_EQ(pythonFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(pythonFloatRepr(1e-5), "1e-05");
  EXPECT_EQ(pythonFloatRepr(1.5e-7), "1.5e-07");
  EXPECT_EQ(pythonFloatRepr(1e15), "1000000000000000.0");
  EXPECT_EQ(pythonFloatRepr(1e16), "1e+16");
  EXPECT_EQ(pythonFloatRepr(123456789.0), "123456789.0");
  EXPECT_EQ(pythonFloatRepr(0.6666666865348816), "0.6666666865348816");
  EXPECT_EQ(pythonFloatRepr(1.2345678901234568e+17), "1.2345678901234568e+17");
}

TEST(KohyaMetadata, TheCommentDimAndAlphaAsResizeLoraSetsThem) {
  std::map<std::string, std::string> in = {
      {"ss_training_comment", "my style"}, {"ss_network_dim", "32"}, {"modelspec.title", "t"}};
  lora::KohyaResizeOptions o;
  o.rank = 8;
  auto out = lora::kohyaResizeMetadata(in, o, 32, 4.0);
  EXPECT_EQ(out["ss_training_comment"], "dimension is resized from 32 to 8; my style");
  EXPECT_EQ(out["ss_network_dim"], "8");
  EXPECT_EQ(out["ss_network_alpha"], "4.0");
  EXPECT_EQ(out["modelspec.title"], "t");
  o.convRank = 4;
  out = lora::kohyaResizeMetadata({}, o, 16, 0.5);
  EXPECT_EQ(out["ss_training_comment"], "dimension is resized from 16 to 8 (conv: 4); ");
  o.rule = KohyaRule::SvFro;
  o.parameter = 0.9;
  out = lora::kohyaResizeMetadata(in, o, 32, 4.0);
  EXPECT_EQ(out["ss_training_comment"], "Dynamic resize with sv_fro: 0.9 from 32; my style");
  EXPECT_EQ(out["ss_network_dim"], "Dynamic");
  EXPECT_EQ(out["ss_network_alpha"], "Dynamic");
  o.rule = KohyaRule::SvRatio;
  o.parameter = 2;
  out = lora::kohyaResizeMetadata({}, o, 4, 1.0);
  EXPECT_EQ(out["ss_training_comment"], "Dynamic resize with sv_ratio: 2.0 from 4; ");
}

TEST(KohyaMetadata, HashesAsPrecalculateSafetensorsHashes) {
  // The data "abc": the model hash is SHA-256("abc") (FIPS 180-4's example); the file is
  // shorter than 1 MiB, so the legacy hash is of no bytes.
  lora::SafeTensorsWriter w;
  const std::string abc = "abc";
  w.addRaw("t", DType::U8, {3}, std::as_bytes(std::span(abc.data(), abc.size())));
  auto h = lora::kohyaHashes(w, {{"ss_network_dim", "4"}});
  EXPECT_EQ(h.model, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(h.legacy, "e3b0c442");
  // Over 1 MiB, tensors of two dtypes: F32 before U8 as the reference writer sorts them, only
  // the ss_ keys in the hashed header. Expected values from Python's hashlib over the file that
  // layout gives (header {"__metadata__":{"ss_network_dim":"4"},"b":…,"a":…}, 168 bytes).
  lora::SafeTensorsWriter big;
  const std::vector<std::byte> five = {std::byte{1}, std::byte{2}, std::byte{3}, std::byte{4},
                                       std::byte{5}};
  big.addRaw("a", DType::U8, {5}, five);
  big.addFlat("b", {300000}, Eigen::VectorXf::LinSpaced(300000, 0.0f, 149999.5f));
  big.sortAsReference();
  std::vector<std::string> order;
  big.forEach([&](const std::string& n, DType, const std::vector<std::int64_t>&,
                  std::span<const std::byte>) { order.push_back(n); });
  EXPECT_EQ(order, (std::vector<std::string>{"b", "a"}));
  h = lora::kohyaHashes(big, {{"ss_network_dim", "4"}, {"modelspec.title", "not hashed"}});
  EXPECT_EQ(h.model, "8935b483893f97a4079654b2d41b320e1fabf8fa4fb23eb04fc14b4c7e925c27");
  EXPECT_EQ(h.legacy, "8a4d40b4");
}

TEST(KohyaMetadata, WrittenFilesCarryTheirOwnModelHash) {
  ScratchDir tmp("kohya_hash");
  lora::SafeTensorsWriter w;
  for (const KohyaSpec& s : lora::test::sdxlSpecs()) lora::test::addKohyaModule(w, s, 3);
  lora::writeKohyaLora(std::move(w), {{"ss_network_dim", "8"}}, tmp / "k.safetensors");
  const auto st = lora::SafeTensorsReader::open(tmp / "k.safetensors");
  auto names = st.names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  // The model hash is that of the file's own data section, read back independently.
  lora::SafeTensorsWriter again;
  for (const std::string& n : names) {
    const auto& t = st.info(n);
    again.addRaw(n, t.dtype, t.shape, st.rawBytes(n));
  }
  const auto h = lora::kohyaHashes(again, {{"ss_network_dim", "8"}});
  EXPECT_EQ(st.metadata().at("sshs_model_hash"), h.model);
  EXPECT_EQ(st.metadata().at("sshs_legacy_hash"), h.legacy);
  EXPECT_EQ(st.metadata().at("ss_network_dim"), "8");
}

TEST(KohyaFile, OpensAsAnAdapterFileForInspection) {
  ScratchDir tmp("kohya_open");
  const auto specs = lora::test::sdxlSpecs();
  lora::test::writeKohyaFile(tmp / "k.safetensors", specs, 9, DType::BF16);
  const auto file = lora::PeftAdapterFile::openKohya(tmp / "k.safetensors");
  ASSERT_TRUE(file.isKohya());
  EXPECT_EQ(file.dtypeLabel(), "BF16");
  ASSERT_EQ(file.modules().size(), specs.size());
  const auto st = lora::SafeTensorsReader::open(tmp / "k.safetensors");
  for (const auto& m : file.modules()) {
    SCOPED_TRACE(m.name);
    const Eigen::MatrixXd A = file.A<double>(m), B = file.B<double>(m);
    EXPECT_EQ(A, st.flattenedMatrix<double>(m.keyA));
    EXPECT_EQ(A.cols(), m.in);
    EXPECT_EQ(B.cols(), m.rank);
    const auto& k = *std::find_if(specs.begin(), specs.end(),
                                  [&](const KohyaSpec& s) { return s.name == m.name; });
    EXPECT_EQ(m.kernelH, k.kh);
    EXPECT_DOUBLE_EQ(file.scaling(m), *k.alpha / static_cast<double>(k.rank));
  }
  // The tensors of a PEFT folder are not a kohya file.
  lora::SafeTensorsWriter peft;
  KohyaSpec p{"base_model.model.layers.0.q_proj", 8, 8, 2};
  p.down = "lora_A";
  p.up = "lora_B";
  p.alpha.reset();
  lora::test::addKohyaModule(peft, p, 1);
  peft.write(tmp / "adapter_model.safetensors");
  const std::string message = lora::test::errorOf(
      [&] { (void)lora::PeftAdapterFile::openKohya(tmp / "adapter_model.safetensors"); });
  for (const char* part : {"PeftAdapterFile::openKohya", "PEFT adapter", "folder"})
    EXPECT_CONTAINS(message, part);
}

}  // namespace
