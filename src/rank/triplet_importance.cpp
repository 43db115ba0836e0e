#include "lora/rank/triplet_importance.hpp"

#include <algorithm>
#include <cstddef>
#include <numeric>
#include <utility>

#include <fmt/format.h>

#include "lora/error.hpp"
#include "lora/linalg/factored_svd.hpp"

namespace lora::detail {

Eigen::VectorXd tripletSensitivityDouble(const Eigen::MatrixXd& B, const Eigen::MatrixXd& A,
                                         double scaling, Eigen::Index in, Eigen::Index out,
                                         const Eigen::Ref<const Eigen::MatrixXd>& X,
                                         const Eigen::Ref<const Eigen::MatrixXd>& dY) {
  constexpr const char* where = "TripletImportance::sensitivity";
  if (X.cols() != in || dY.cols() != out || X.rows() != dY.rows())
    detail::fail(where, "expected X (N x {}) and dY (N x {}) with the same N, got {}x{} and {}x{}",
                 in, out, X.rows(), X.cols(), dY.rows(), dY.cols());
  if (!X.allFinite() || !dY.allFinite())
    detail::fail(where, "expected finite X and dY, got NaN or Inf");
  const linalg::FactoredSVD<double> svd(B, A, scaling);
  const Eigen::MatrixXd XV = X * svd.matrixV();   // N x k
  const Eigen::MatrixXd YU = dY * svd.matrixU();  // N x k
  const Eigen::VectorXd dSigma = (YU.array() * XV.array()).colwise().sum().transpose();
  return (svd.singularValues().array() * dSigma.array()).abs().matrix();
}

}  // namespace lora::detail

namespace lora::rank {

TripletImportance::TripletImportance(const Options& options) : m_opt(options) {
  constexpr const char* where = "TripletImportance::TripletImportance";
  if (!(options.beta1 >= 0 && options.beta1 < 1) || !(options.beta2 >= 0 && options.beta2 < 1))
    detail::fail(where, "expected beta1 and beta2 in [0, 1), got {} and {}", options.beta1,
                 options.beta2);
}

void TripletImportance::observe(const Eigen::VectorXd& I) {
  if (!(I.allFinite() && (I.array() >= 0).all()))
    detail::fail("TripletImportance::observe", "expected finite sensitivities >= 0, got {}",
                 I.size() ? fmt::format("min {} max {}", I.minCoeff(), I.maxCoeff()) : "none");
  const Eigen::Index old = m_importance.size();
  m_importance.conservativeResize(I.size());
  m_uncertainty.conservativeResize(I.size());
  if (I.size() > old) {
    m_importance.tail(I.size() - old).setZero();
    m_uncertainty.tail(I.size() - old).setZero();
  }
  m_importance = m_opt.beta1 * m_importance + (1 - m_opt.beta1) * I;
  m_uncertainty = m_opt.beta2 * m_uncertainty + (1 - m_opt.beta2) * (I - m_importance).cwiseAbs();
}

Eigen::VectorXd TripletImportance::scores() const {
  return m_importance.cwiseProduct(m_uncertainty);
}

void TripletImportance::keep(const std::vector<Eigen::Index>& kept) {
  Eigen::VectorXd importance(static_cast<Eigen::Index>(kept.size())),
      uncertainty(importance.size());
  for (std::size_t j = 0; j < kept.size(); ++j) {
    const Eigen::Index i = kept[j];
    if (i < 0 || i >= m_importance.size() || (j > 0 && i <= kept[j - 1]))
      detail::fail("TripletImportance::keep",
                   "expected increasing indices below {}, got {} at position {}",
                   m_importance.size(), i, j);
    importance(static_cast<Eigen::Index>(j)) = m_importance(i);
    uncertainty(static_cast<Eigen::Index>(j)) = m_uncertainty(i);
  }
  m_importance = std::move(importance);
  m_uncertainty = std::move(uncertainty);
}

std::vector<std::vector<Eigen::Index>> keepToBudget(const std::vector<Eigen::VectorXd>& scores,
                                                    Eigen::Index budget, Eigen::Index minPerLayer) {
  constexpr const char* where = "keepToBudget";
  if (minPerLayer < 1) detail::fail(where, "expected minPerLayer >= 1, got {}", minPerLayer);
  Eigen::Index total = 0;
  for (std::size_t l = 0; l < scores.size(); ++l) {
    if (scores[l].size() < minPerLayer)
      detail::fail(where, "expected at least {} scores for layer {}, got {}", minPerLayer, l,
                   scores[l].size());
    if (!(scores[l].allFinite() && (scores[l].array() >= 0).all()))
      detail::fail(where, "expected finite scores >= 0 for layer {}, got NaN, Inf or negative", l);
    total += scores[l].size();
  }
  const Eigen::Index floor = minPerLayer * static_cast<Eigen::Index>(scores.size());
  if (budget < floor || budget > total)
    detail::fail(where, "expected a budget in [{}, {}] ({} per layer, {} triplets), got {}", floor,
                 total, minPerLayer, total, budget);
  struct Entry {
    double score;
    std::size_t layer;
    Eigen::Index index;
  };
  std::vector<std::vector<bool>> chosen(scores.size());
  std::vector<Entry> rest;
  for (std::size_t l = 0; l < scores.size(); ++l) {
    chosen[l].assign(static_cast<std::size_t>(scores[l].size()), false);
    // the minimum: each layer's own best scores
    std::vector<Eigen::Index> order(static_cast<std::size_t>(scores[l].size()));
    std::iota(order.begin(), order.end(), Eigen::Index{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](Eigen::Index a, Eigen::Index b) { return scores[l](a) > scores[l](b); });
    for (std::size_t j = 0; j < order.size(); ++j) {
      if (static_cast<Eigen::Index>(j) < minPerLayer)
        chosen[l][static_cast<std::size_t>(order[j])] = true;
      else
        rest.push_back({scores[l](order[j]), l, order[j]});
    }
  }
  std::stable_sort(rest.begin(), rest.end(), [](const Entry& a, const Entry& b) {
    if (a.score != b.score) return a.score > b.score;
    if (a.layer != b.layer) return a.layer < b.layer;
    return a.index < b.index;
  });
  for (Eigen::Index k = 0; k < budget - floor; ++k) {
    const Entry& e = rest[static_cast<std::size_t>(k)];
    chosen[e.layer][static_cast<std::size_t>(e.index)] = true;
  }
  std::vector<std::vector<Eigen::Index>> keep(scores.size());
  for (std::size_t l = 0; l < scores.size(); ++l)
    for (std::size_t i = 0; i < chosen[l].size(); ++i)
      if (chosen[l][i]) keep[l].push_back(static_cast<Eigen::Index>(i));
  return keep;
}

}  // namespace lora::rank
