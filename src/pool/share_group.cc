#include "pool/share_group.h"

#include <algorithm>
#include <utility>

namespace rngmux {

ShareGroup::ShareGroup(std::string name, Limits limits, FairShare& fair_share, const Clock& clock,
                       std::function<void()> request_pump,
                       std::function<void(Clock::TimePoint)> wake_at)
    : name_(std::move(name)),
      limits_(limits),
      fair_share_(fair_share),
      clock_(clock),
      request_pump_(std::move(request_pump)),
      wake_at_(std::move(wake_at)) {
  limits_.weight = std::max<std::size_t>(1, limits_.weight);
  if (limits_.rate_bytes_per_second) {
    bucket_.emplace(*limits_.rate_bytes_per_second, std::max<std::uint64_t>(1, limits_.burst_bytes),
                    clock_.Now());
  }
}

void ShareGroup::SetLimits(Limits limits) {
  limits.weight = std::max<std::size_t>(1, limits.weight);
  const bool rate_changed = limits.rate_bytes_per_second != limits_.rate_bytes_per_second ||
                            limits.burst_bytes != limits_.burst_bytes;
  limits_ = limits;
  if (rate_changed) {
    bucket_.reset();
    if (limits_.rate_bytes_per_second) {
      bucket_.emplace(*limits_.rate_bytes_per_second,
                      std::max<std::uint64_t>(1, limits_.burst_bytes), clock_.Now());
    }
    // A member held back by the old rate may go now.
    Wake();
  }
}

ShareGroup::~ShareGroup() { fair_share_.Remove(this); }

void ShareGroup::Join(Consumer* member) {
  if (member == nullptr || joined_.count(member) != 0) return;
  order_.push_back(member);
  joined_.emplace(member, std::prev(order_.end()));
}

void ShareGroup::Leave(Consumer* member) {
  if (const auto found = waiting_index_.find(member); found != waiting_index_.end()) {
    waiting_.erase(found->second);
    waiting_index_.erase(found);
  }
  if (const auto found = joined_.find(member); found != joined_.end()) {
    order_.erase(found->second);
    joined_.erase(found);
  }
}

void ShareGroup::Activate(Consumer* member) {
  if (member == nullptr || joined_.count(member) == 0) return;
  if (waiting_index_.count(member) == 0) {
    waiting_.push_back(member);
    waiting_index_.emplace(member, std::prev(waiting_.end()));
  }
  // The member just listed wants bytes in the common case, and then so does the
  // group: no walk over every waiting member on each request.
  if (RateAllowance() > 0 && (member->Wanted() > 0 || Wanted() > 0)) {
    fair_share_.Activate(this);
    request_pump_();
  } else if (bucket_ && !wake_pending_ && wake_at_) {
    // Held back by the rate limit alone: come back once a chunk's worth has refilled.
    wake_pending_ = true;
    const std::uint64_t want = std::min<std::uint64_t>(limits_.burst_bytes, 4096);
    const std::uint64_t have = bucket_->Available(clock_.Now());
    const std::uint64_t missing = want > have ? want - have : 1;
    const auto wait =
        std::chrono::nanoseconds((missing * 1'000'000'000ull + *limits_.rate_bytes_per_second - 1) /
                                 *limits_.rate_bytes_per_second);
    wake_at_(clock_.Now() + wait);
  }
}

void ShareGroup::Wake() {
  wake_pending_ = false;
  if (waiting_.empty()) return;
  // Re-evaluates every waiting member's demand through the usual path.
  Consumer* any = waiting_.front();
  Activate(any);
}

std::size_t ShareGroup::RateAllowance() const {
  if (!bucket_) return SIZE_MAX;
  return static_cast<std::size_t>(bucket_->Available(clock_.Now()));
}

void ShareGroup::ChargeRate(std::size_t bytes) {
  if (bucket_ && bytes > 0) bucket_->TryTake(bytes, clock_.Now());
}

std::size_t ShareGroup::Wanted() const {
  // What the members want, counted up to kMaxWanted: as much as the fair share moves
  // in one step, and it saves a walk over every waiting guest on every step.
  // Less than the members could take is always a correct answer (the pump comes back).
  std::size_t total = 0;
  for (Consumer* member : waiting_) {
    total += member->Wanted();
    if (total >= kMaxWanted) break;
  }
  return std::min({total, kMaxWanted, RateAllowance()});
}

void ShareGroup::Deliver(std::span<const std::uint8_t> bytes) {
  ChargeRate(bytes.size());
  served_bytes_ += bytes.size();
  // Round-robin over the members that want bytes: each chunk starts with the next
  // member, so within a tenant no connection starves another.
  // No member takes more than an equal part of the chunk per visit (the loop comes
  // round again for what is left), so a slow source's small chunks are split, not
  // handed whole to whoever is at the front.
  const std::size_t part = std::max<std::size_t>(
      64, (bytes.size() + waiting_.size() - 1) / std::max<std::size_t>(1, waiting_.size()));
  while (!bytes.empty() && !waiting_.empty()) {
    Consumer* member = waiting_.front();
    const std::size_t give = std::min({bytes.size(), member->Wanted(), part});
    if (give == 0) {
      waiting_.pop_front();
      waiting_index_.erase(member);
      continue;
    }
    // Deliver() may make the member leave the group (it closed): move on first.
    waiting_.splice(waiting_.end(), waiting_, waiting_.begin());
    member->Deliver(bytes.first(give));
    bytes = bytes.subspan(give);
  }
  // Members whose demand is met leave the waiting list on the next pass.
  if (bucket_ && !waiting_.empty() && Wanted() == 0) Activate(waiting_.front());
}

std::size_t ShareGroup::TakeImmediate(std::span<std::uint8_t> out) {
  const std::size_t allowed = std::min(out.size(), RateAllowance());
  const std::size_t taken = fair_share_.TakeImmediate(this, out.first(allowed));
  ChargeRate(taken);
  served_bytes_ += taken;
  return taken;
}

}  // namespace rngmux
