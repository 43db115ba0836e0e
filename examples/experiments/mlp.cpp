#include "mlp.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <deque>
#include <numeric>
#include <optional>

#include <fmt/format.h>

#include "lora/error.hpp"
#include "lora/init/init.hpp"
#include "lora/layer.hpp"
#include "lora/random.hpp"
#include "lora/rank/article_gradient.hpp"
#include "lora/rank/gradient_signal.hpp"
#include "lora/train/train.hpp"

namespace lora::experiments {
namespace {

using analysis::RunRecord;
using analysis::Strategy;

// Mean softmax cross-entropy of logits Z (N x C) against y; writes dL/dZ when dZ is given and
// counts the correct argmax predictions.
double softmaxCrossEntropy(const Mat& Z, std::span<const int> y, Mat* dZ, Index* correct) {
  const Index n = Z.rows();
  double loss = 0;
  Index right = 0;
  if (dZ != nullptr) dZ->resize(Z.rows(), Z.cols());
  for (Index i = 0; i < n; ++i) {
    Index arg = 0;
    const float m = Z.row(i).maxCoeff(&arg);
    const Eigen::RowVectorXf e = (Z.row(i).array() - m).exp().matrix();
    const double sum = e.sum();
    const int yi = y[static_cast<std::size_t>(i)];
    loss -= static_cast<double>(Z(i, yi) - m) - std::log(sum);
    right += arg == yi ? 1 : 0;
    if (dZ != nullptr) {
      dZ->row(i) = e / static_cast<float>(sum);
      (*dZ)(i, yi) -= 1.0f;
    }
  }
  if (dZ != nullptr) *dZ /= static_cast<float>(n);
  if (correct != nullptr) *correct = right;
  return loss / static_cast<double>(n);
}

// Mini-batches drawn without replacement, epoch after epoch, in an order fixed by the seed.
class Batches {
 public:
  Batches(Index n, Index batch, std::uint64_t seed)
      : m_order(static_cast<std::size_t>(n)), m_rng(seed), m_batch(std::min(batch, n)) {
    std::iota(m_order.begin(), m_order.end(), Index{0});
    shuffle();
  }
  std::span<const Index> next() {
    if (m_pos + static_cast<std::size_t>(m_batch) > m_order.size()) {
      shuffle();
      m_pos = 0;
    }
    const std::span<const Index> rows(m_order.data() + m_pos, static_cast<std::size_t>(m_batch));
    m_pos += static_cast<std::size_t>(m_batch);
    return rows;
  }

 private:
  void shuffle() {
    for (std::size_t i = m_order.size(); i > 1; --i)
      std::swap(m_order[i - 1], m_order[m_rng() % i]);
  }
  std::vector<Index> m_order;
  Rng m_rng;
  Index m_batch;
  std::size_t m_pos = 0;
};

Mat gatherRows(const Mat& X, std::span<const Index> rows) {
  Mat out(static_cast<Index>(rows.size()), X.cols());
  for (std::size_t i = 0; i < rows.size(); ++i) out.row(static_cast<Index>(i)) = X.row(rows[i]);
  return out;
}
std::vector<int> gatherLabels(const std::vector<int>& y, std::span<const Index> rows) {
  std::vector<int> out(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) out[i] = y[static_cast<std::size_t>(rows[i])];
  return out;
}

// Loss and accuracy over \p data in chunks of 4096 rows; logits(X) returns the logits of X.
template <typename Logits>
Metrics chunkedMetrics(const Dataset& data, Logits&& logits) {
  constexpr Index kChunk = 4096;
  double loss = 0;
  Index correct = 0;
  for (Index start = 0; start < data.size(); start += kChunk) {
    const Index n = std::min(kChunk, data.size() - start);
    Index right = 0;
    const std::span<const int> y =
        std::span(data.y).subspan(static_cast<std::size_t>(start), static_cast<std::size_t>(n));
    loss += softmaxCrossEntropy(logits(data.X.middleRows(start, n)), y, nullptr, &right) *
            static_cast<double>(n);
    correct += right;
  }
  return {loss / static_cast<double>(data.size()),
          static_cast<double>(correct) / static_cast<double>(data.size())};
}

// The dense forward pass; keeps each layer's input (H[l]) and pre-activation (Z[l]).
void denseForward(const Network& net, const Mat& X, std::vector<Mat>& H, std::vector<Mat>& Z) {
  const std::size_t L = net.W.size();
  H.resize(L);
  Z.resize(L);
  H[0] = X;
  for (std::size_t l = 0; l < L; ++l) {
    Z[l].noalias() = H[l] * net.W[l].transpose();
    Z[l].rowwise() += net.b[l].transpose();
    if (l + 1 < L) H[l + 1] = Z[l].cwiseMax(0.0f);
  }
}

// torch.optim.AdamW over every weight and bias of a network (pretraining, full fine-tuning).
class DenseAdamW {
 public:
  DenseAdamW(const Network& net, double lr, double weightDecay) : m_lr(lr), m_wd(weightDecay) {
    for (std::size_t l = 0; l < net.W.size(); ++l) {
      m_mW.push_back(Mat::Zero(net.W[l].rows(), net.W[l].cols()));
      m_vW.push_back(m_mW.back());
      m_mb.push_back(Vec::Zero(net.b[l].size()));
      m_vb.push_back(m_mb.back());
    }
  }
  void step(Network& net, const std::vector<Mat>& gW, const std::vector<Vec>& gb) {
    ++m_t;
    const double c1 = 1 - std::pow(0.9, m_t), c2 = 1 - std::pow(0.999, m_t);
    const auto update = [&](auto& p, const auto& g, auto& m, auto& v, double wd) {
      p *= static_cast<float>(1 - m_lr * wd);
      m = 0.9f * m + 0.1f * g;
      v = 0.999f * v + 0.001f * g.cwiseProduct(g);
      p.array() -= static_cast<float>(m_lr / c1) * m.array() /
                   ((v.array() / static_cast<float>(c2)).sqrt() + 1e-8f);
    };
    for (std::size_t l = 0; l < net.W.size(); ++l) {
      update(net.W[l], gW[l], m_mW[l], m_vW[l], m_wd);
      update(net.b[l], gb[l], m_mb[l], m_vb[l], 0.0);
    }
  }

 private:
  double m_lr, m_wd;
  int m_t = 0;
  std::vector<Mat> m_mW, m_vW;
  std::vector<Vec> m_mb, m_vb;
};

// One full-training step of net on (X, y); returns the batch loss.
double denseStep(Network& net, DenseAdamW& opt, const Mat& X, std::span<const int> y) {
  std::vector<Mat> H, Z;
  denseForward(net, X, H, Z);
  Mat dZ;
  const double loss = softmaxCrossEntropy(Z.back(), y, &dZ, nullptr);
  const std::size_t L = net.W.size();
  std::vector<Mat> gW(L);
  std::vector<Vec> gb(L);
  for (std::size_t l = L; l-- > 0;) {
    gW[l].noalias() = dZ.transpose() * H[l];
    gb[l] = dZ.colwise().sum().transpose();
    if (l > 0) {
      Mat dH = dZ * net.W[l];
      dZ = dH.cwiseProduct((Z[l - 1].array() > 0.0f).cast<float>().matrix());
    }
  }
  opt.step(net, gW, gb);
  return loss;
}

std::string progressLabel(const std::string& label, const Strategy& s, std::uint64_t seed) {
  return fmt::format("{}: {} (seed {})", label, s.name, seed);
}

}  // namespace

Dataset Dataset::subset(std::span<const Index> rows) const {
  return {gatherRows(X, rows), gatherLabels(y, rows)};
}

Network Network::random(std::span<const Index> sizes, std::uint64_t seed) {
  if (sizes.size() < 2)
    detail::fail("Network::random", "expected >= 2 layer sizes, got {}", sizes.size());
  Network net;
  Rng rng(seed);
  for (std::size_t l = 0; l + 1 < sizes.size(); ++l) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(sizes[l]));
    Mat W(sizes[l + 1], sizes[l]);
    Vec b(sizes[l + 1]);
    fillUniform(W, rng, -bound, bound);
    fillUniform(b, rng, -bound, bound);
    net.W.push_back(std::move(W));
    net.b.push_back(std::move(b));
  }
  return net;
}

Index Network::parameterCount() const {
  Index n = 0;
  for (std::size_t l = 0; l < W.size(); ++l) n += W[l].size() + b[l].size();
  return n;
}

Metrics evaluate(const Network& net, const Dataset& data) {
  std::vector<Mat> H, Z;
  return chunkedMetrics(data, [&](const auto& X) -> const Mat& {
    denseForward(net, X, H, Z);
    return Z.back();
  });
}

Network pretrain(std::span<const Index> sizes, const Dataset& train, const PretrainOptions& o) {
  constexpr const char* where = "pretrain";
  if (o.steps < 1 || o.batch < 1)
    detail::fail(where, "expected steps and batch >= 1, got {} and {}", o.steps, o.batch);
  if (train.size() < 1 || static_cast<std::size_t>(train.size()) != train.y.size())
    detail::fail(
        where,
        "expected a non-empty training set with one label per row, got {} rows and {} labels",
        train.size(), train.y.size());
  Network net = Network::random(sizes, o.seed);
  if (train.X.cols() != sizes.front())
    detail::fail(where, "expected inputs of {} features, got {}", sizes.front(), train.X.cols());
  DenseAdamW opt(net, o.lr, o.weightDecay);
  Batches batches(train.size(), o.batch, o.seed + 17);
  io::Progress progress("pretrain", static_cast<std::size_t>(o.steps), o.quiet);
  for (int step = 0; step < o.steps; ++step) {
    const auto rows = batches.next();
    const Mat X = gatherRows(train.X, rows);
    const std::vector<int> y = gatherLabels(train.y, rows);
    const double loss = denseStep(net, opt, X, y);
    if (step % 20 == 0) progress.setDetail(fmt::format("loss {:.3f}", loss));
    progress.tick();
  }
  return net;
}

init::AnyInitializer<float> initializerFor(const std::string& key) {
  using namespace lora::init;
  if (key == "peft_default") return PeftDefault{};
  if (key == "gaussian") return Gaussian{};
  if (key == "xavier") return XavierLora{};
  if (key == "kaiming") return KaimingLora{};
  if (key == "orthogonal") return Orthogonal{};
  if (key == "peft_orthogonal") return PeftOrthogonal{};
  if (key == "pissa") return Pissa{};
  if (key == "milora") return Milora{};
  if (key == "olora") return Olora{};
  detail::fail("initializerFor",
               "expected one of peft_default, gaussian, xavier, kaiming, orthogonal, "
               "peft_orthogonal, pissa, milora, olora, got '{}'",
               key);
}

AdaptationTask::AdaptationTask(Network pretrained, Dataset train, Dataset val, AdaptOptions options)
    : m_pretrained(std::move(pretrained)),
      m_train(std::move(train)),
      m_val(std::move(val)),
      m_options(std::move(options)) {
  constexpr const char* where = "AdaptationTask::AdaptationTask";
  if (m_pretrained.W.empty()) detail::fail(where, "expected a pretrained network, got none");
  if (static_cast<std::size_t>(m_train.size()) != m_train.y.size() ||
      static_cast<std::size_t>(m_val.size()) != m_val.y.size())
    detail::fail(where, "expected one label per sample, got {} and {} labels for {} and {} samples",
                 m_train.y.size(), m_val.y.size(), m_train.size(), m_val.size());
  if (m_train.size() < 1 || m_val.size() < 1)
    detail::fail(where, "expected non-empty train and val sets, got {} and {} samples",
                 m_train.size(), m_val.size());
  if (m_train.X.cols() != m_pretrained.W.front().cols() || m_val.X.cols() != m_train.X.cols())
    detail::fail(where, "expected inputs of {} features, got {} (train) and {} (val)",
                 m_pretrained.W.front().cols(), m_train.X.cols(), m_val.X.cols());
  if (m_options.steps < 1 || m_options.batch < 1 || m_options.evalEvery < 1)
    detail::fail(where, "expected steps, batch and evalEvery >= 1, got {}, {}, {}", m_options.steps,
                 m_options.batch, m_options.evalEvery);
}

RunRecord AdaptationTask::run(const Strategy& s, std::uint64_t seed) {
  return s.fullFineTune ? runFull(s, seed) : runLora(s, seed);
}

RunRecord AdaptationTask::runFull(const Strategy& s, std::uint64_t seed) {
  if (s.optimizer.rule != "adamw")
    detail::fail("AdaptationTask::run", "expected optimizer 'adamw' for full fine-tuning, got '{}'",
                 s.optimizer.rule);
  const auto start = std::chrono::steady_clock::now();
  Network net = m_pretrained;
  DenseAdamW opt(net, s.optimizer.lr, s.optimizer.weightDecay);
  Batches batches(m_train.size(), m_options.batch, seed);
  RunRecord r;
  r.trainableParameters = net.parameterCount();
  const auto evalAt = [&](int step) {
    const Metrics m = evaluate(net, m_val);
    r.evalSteps.push_back(step);
    r.evalLoss.push_back(m.loss);
    r.evalAccuracy.push_back(m.accuracy);
  };
  evalAt(0);
  io::Progress progress(progressLabel(m_options.label, s, seed),
                        static_cast<std::size_t>(m_options.steps), m_options.quiet);
  for (int step = 1; step <= m_options.steps; ++step) {
    const auto rows = batches.next();
    r.trainLoss.push_back(
        denseStep(net, opt, gatherRows(m_train.X, rows), gatherLabels(m_train.y, rows)));
    if (step % m_options.evalEvery == 0 || step == m_options.steps) evalAt(step);
    if (step % 20 == 0) progress.setDetail(fmt::format("loss {:.3f}", r.trainLoss.back()));
    progress.tick();
  }
  r.wallSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

namespace {

template <typename Rule>
RunRecord trainLora(std::deque<Layer<float>>& layers, Rule rule, const Strategy& s,
                    std::uint64_t seed, const Dataset& train, const Dataset& val,
                    const AdaptOptions& o) {
  const auto start = std::chrono::steady_clock::now();
  const std::size_t L = layers.size();
  train::Optimizer<float, Rule> opt(
      rule, {.maxGradNorm = s.optimizer.maxGradNorm, .loraPlusRatio = s.optimizer.loraPlusRatio});
  for (std::size_t l = 0; l < L; ++l) opt.add(layers[l], fmt::format("layer {}", l));

  std::vector<std::optional<rank::ArticleGradientBased>> selectors(L);
  if (s.selector == "article_gradient") {
    for (std::size_t l = 0; l < L; ++l) {
      const Index cap = std::min({s.maxRank, layers[l].outFeatures(), layers[l].inFeatures()});
      selectors[l].emplace(
          rank::ArticleGradientBasedOptions{.initialRank = s.rank, .maxRank = cap});
    }
  } else if (s.selector != "none") {
    detail::fail("AdaptationTask::run", "expected selector 'none' or 'article_gradient', got '{}'",
                 s.selector);
  }

  RunRecord r;
  const auto ranksNow = [&] {
    std::vector<Index> ranks;
    for (const auto& layer : layers) ranks.push_back(layer.rank());
    return ranks;
  };
  r.ranks.push_back({0, ranksNow()});
  std::vector<Mat> H(L), Z(L);
  const auto forward = [&](const auto& X) {
    for (std::size_t l = 0; l < L; ++l) {
      if (l == 0)
        layers[l].forward(X, Z[l]);
      else
        layers[l].forward(H[l], Z[l]);
      if (l + 1 < L) H[l + 1] = Z[l].cwiseMax(0.0f);
    }
  };
  const auto evalAt = [&](int step) {
    const Metrics m = chunkedMetrics(val, [&](const auto& X) -> const Mat& {
      forward(X);
      return Z.back();
    });
    r.evalSteps.push_back(step);
    r.evalLoss.push_back(m.loss);
    r.evalAccuracy.push_back(m.accuracy);
  };
  evalAt(0);

  Batches batches(train.size(), o.batch, seed);
  io::Progress progress(progressLabel(o.label, s, seed), static_cast<std::size_t>(o.steps),
                        o.quiet);
  Mat dZ, dH;
  std::vector<Mat> dZs(L);
  for (int step = 1; step <= o.steps; ++step) {
    const auto rows = batches.next();
    const Mat X = gatherRows(train.X, rows);
    const std::vector<int> y = gatherLabels(train.y, rows);
    H[0] = X;
    forward(X);
    const double loss = softmaxCrossEntropy(Z.back(), y, &dZ, nullptr);
    const bool observe = s.selector != "none";
    for (std::size_t l = L; l-- > 0;) {
      if (observe) dZs[l] = dZ;  // the selectors read each layer's dL/dY after the step
      if (l > 0) {
        layers[l].backward(H[l], dZ, dH, GradMode::Overwrite);
        dZ = dH.cwiseProduct((Z[l - 1].array() > 0.0f).cast<float>().matrix());
      } else {
        layers[l].backward(H[l], dZ, GradMode::Overwrite);
      }
    }
    opt.step(loss);
    r.trainLoss.push_back(loss);
    bool resized = false;
    for (std::size_t l = 0; l < L; ++l) {
      if (!selectors[l]) continue;
      const rank::Decision d = selectors[l]->observe(rank::gradientSpectrum(H[l], dZs[l]));
      if (d.adjust && d.newRank != layers[l].rank()) {
        opt.resize(layers[l], d.newRank);
        selectors[l]->setRank(d.newRank);
        resized = true;
      }
    }
    if (resized) r.ranks.push_back({step, ranksNow()});
    if (step % o.evalEvery == 0 || step == o.steps) evalAt(step);
    if (step % 20 == 0) progress.setDetail(fmt::format("loss {:.3f}", loss));
    progress.tick();
  }
  for (const auto& layer : layers) r.trainableParameters += layer.parameterCount();
  r.wallSeconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace

RunRecord AdaptationTask::runLora(const Strategy& s, std::uint64_t seed) {
  Network net = m_pretrained;  // the layers' base: PiSSA, OLoRA and MiLoRA rewrite it
  std::deque<Layer<float>> layers;
  for (std::size_t l = 0; l < net.W.size(); ++l)
    layers.emplace_back(BaseWeight<float>(net.W[l]),
                        LayerOptions{.rank = std::min({s.rank, net.W[l].rows(), net.W[l].cols()}),
                                     .alpha = s.alpha,
                                     .scaling = s.scaling,
                                     .seed = seed * 1000003 + l},
                        initializerFor(s.init), BaseBias<float>(net.b[l]));
  RunRecord r;
  const auto& o = s.optimizer;
  if (o.rule == "adamw")
    r = trainLora(layers, train::AdamW{.lr = o.lr, .weightDecay = o.weightDecay}, s, seed, m_train,
                  m_val, m_options);
  else if (o.rule == "sgd")
    r = trainLora(layers,
                  train::Sgd{.lr = o.lr, .momentum = o.momentum, .weightDecay = o.weightDecay}, s,
                  seed, m_train, m_val, m_options);
  else
    detail::fail("AdaptationTask::run", "expected optimizer 'adamw' or 'sgd', got '{}'", o.rule);
  if (!m_spectra.contains(s.name)) {
    std::vector<Eigen::VectorXd> spectra;
    for (const auto& layer : layers) spectra.push_back(layer.spectrum().cast<double>());
    m_spectra.emplace(s.name, std::move(spectra));
  }
  return r;
}

}  // namespace lora::experiments
