#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <utility>

#include "common/clock.h"
#include "common/rate_limit.h"
#include "pool/fair_share.h"

namespace rngmux {

// One tenant's place in the fair share: every connection of one client identity on
// one endpoint joins the same group, and the FairShare sees only the group. So a
// tenant that opens ten connections, or opens and closes them in a loop, still gets
// one share; what its connections are owed (lead bytes included) is all charged to
// it. Within the group, bytes go round-robin to the members that want them.
//
// Optional per-identity limits: a token bucket on the bytes the group is given
// (blocking and non-blocking reads alike), and a cap on members (the caller decides
// what to do at the cap; Oldest() names the one to replace).
//
// Members are Consumers that register with Join() and leave with Leave() before
// they are destroyed; a member asks for bytes with Activate(). When the rate limit
// holds back a group that still wants bytes, `wake_at` is called with the time
// its bucket will have refilled enough; the owner then calls Wake(). Event-loop
// thread only.
class ShareGroup final : public Consumer {
 public:
  struct Limits {
    std::size_t weight = 1;
    std::optional<std::uint64_t> rate_bytes_per_second;  // none: unlimited
    std::uint64_t burst_bytes = 0;                       // with a rate
  };

  ShareGroup(std::string name, Limits limits, FairShare& fair_share, const Clock& clock,
             std::function<void()> request_pump, std::function<void(Clock::TimePoint)> wake_at);
  ~ShareGroup() override;
  ShareGroup(const ShareGroup&) = delete;
  ShareGroup& operator=(const ShareGroup&) = delete;

  void set_wake_at(std::function<void(Clock::TimePoint)> wake_at) { wake_at_ = std::move(wake_at); }
  // A reload changed the endpoint's weight or rate: applies from the next turn (a
  // changed rate starts with a full burst).
  void SetLimits(Limits limits);
  const std::string& name() const { return name_; }
  std::size_t members() const { return order_.size(); }
  // The member that joined first (nullptr if none).
  Consumer* Oldest() const { return order_.empty() ? nullptr : order_.front(); }

  void Join(Consumer* member);
  void Leave(Consumer* member);
  // `member` wants bytes (idempotent); asks the FairShare to list the group.
  void Activate(Consumer* member);
  // A non-blocking read by `member`: within the group's share and rate limit.
  std::size_t TakeImmediate(std::span<std::uint8_t> out);
  // The rate limit's wake-up came: list the group again if a member still waits.
  void Wake();

  // Bytes the group was given in all: for stats.
  std::uint64_t served_bytes() const { return served_bytes_; }

  // At most kMaxWanted, even when the members together could take more.
  std::size_t Wanted() const override;
  static constexpr std::size_t kMaxWanted = FairShare::kMaxStepBytes;
  void Deliver(std::span<const std::uint8_t> bytes) override;
  std::size_t Weight() const override { return limits_.weight; }

 private:
  std::size_t RateAllowance() const;
  void ChargeRate(std::size_t bytes);

  std::string name_;
  Limits limits_;
  FairShare& fair_share_;
  const Clock& clock_;
  std::function<void()> request_pump_;
  std::function<void(Clock::TimePoint)> wake_at_;
  mutable std::optional<TokenBucket> bucket_;
  std::list<Consumer*> order_;  // members in join order
  std::unordered_map<Consumer*, std::list<Consumer*>::iterator> joined_;
  std::list<Consumer*> waiting_;  // members that asked; front is served next
  std::unordered_map<Consumer*, std::list<Consumer*>::iterator> waiting_index_;
  bool wake_pending_ = false;
  std::uint64_t served_bytes_ = 0;
};

}  // namespace rngmux
