#pragma once
/// \file loss_selector.hpp
/// \brief train::AnyLossSelector: any rank selector that observes losses
/// (`rank::Selector<S, double>`: rank::SlopePlateau, rank::ArticleLossPlateau, ...), type-erased,
/// so that the RankManager can delegate its decisions to one.
///
/// \code
/// lora::train::AnyLossSelector s = lora::rank::SlopePlateau({.initialRank = 8});
/// lora::rank::Decision d = s.observe(0.42);
/// \endcode

#include <concepts>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include "lora/detail/eigen.hpp"

#include "lora/rank/decision.hpp"

namespace lora::train {

/// \brief A copyable value holding any loss-observing rank selector.
class AnyLossSelector {
 public:
  // Not-self first: checking Selector<AnyLossSelector> would recurse through copy_constructible.
  template <typename S>
  requires(!std::same_as<std::remove_cvref_t<S>, AnyLossSelector>) &&
      rank::Selector<S, double> AnyLossSelector(
          S selector)  // NOLINT: implicit by design, like std::function
      : m_impl(std::make_unique<Model<S>>(std::move(selector))) {}
  AnyLossSelector(const AnyLossSelector& other)
      : m_impl(other.m_impl ? other.m_impl->clone() : nullptr) {}
  AnyLossSelector(AnyLossSelector&&) noexcept = default;
  AnyLossSelector& operator=(const AnyLossSelector& other) {
    if (this != &other) m_impl = other.m_impl ? other.m_impl->clone() : nullptr;
    return *this;
  }
  AnyLossSelector& operator=(AnyLossSelector&&) noexcept = default;

  rank::Decision observe(double loss) { return m_impl->observe(loss); }
  Eigen::Index currentRank() const { return m_impl->currentRank(); }
  void setRank(Eigen::Index r) { m_impl->setRank(r); }
  std::string name() const { return m_impl->name(); }

 private:
  struct Concept {
    virtual ~Concept() = default;
    virtual std::unique_ptr<Concept> clone() const = 0;
    virtual rank::Decision observe(double loss) = 0;
    virtual Eigen::Index currentRank() const = 0;
    virtual void setRank(Eigen::Index r) = 0;
    virtual std::string name() const = 0;
  };
  template <typename S>
  struct Model final : Concept {
    explicit Model(S s) : selector(std::move(s)) {}
    std::unique_ptr<Concept> clone() const override { return std::make_unique<Model>(selector); }
    rank::Decision observe(double loss) override { return selector.observe(loss); }
    Eigen::Index currentRank() const override { return selector.currentRank(); }
    void setRank(Eigen::Index r) override { selector.setRank(r); }
    std::string name() const override { return S::name(); }
    S selector;
  };
  std::unique_ptr<Concept> m_impl;
};

}  // namespace lora::train
