#include "sources/source_selector.h"

#include <algorithm>

#include "common/log.h"
#include "sources/failover_policy.h"
#include "sources/mix_policy.h"

namespace rngmux {

std::unique_ptr<SelectionPolicy> MakeSelectionPolicy(SourceMode mode, std::size_t sources,
                                                     std::size_t min_mix_sources) {
  if (mode == SourceMode::kFailover) return std::make_unique<FailoverPolicy>();
  return std::make_unique<MixPolicy>(sources, min_mix_sources == 0 ? sources : min_mix_sources);
}

SourceSelector::SourceSelector(std::vector<std::string> names,
                               std::unique_ptr<SelectionPolicy> policy, SelectorTiming timing,
                               TimePoint now)
    : policy_(std::move(policy)) {
  state_.started = now;
  state_.timing = timing;
  for (std::string& name : names) {
    SourceStatus s;
    s.name = std::move(name);
    s.last_activity = now;
    state_.sources.push_back(std::move(s));
  }
}

void SourceSelector::Begin(TimePoint now) {
  state_.started = now;
  for (SourceStatus& s : state_.sources) s.last_activity = now;
}

void SourceSelector::OnHealth(std::size_t i, bool healthy, TimePoint now) {
  SourceStatus& s = state_.sources[i];
  s.healthy = healthy;
  s.tried = true;
  if (healthy) s.last_activity = now;
  if (!healthy) policy_->Dropped(i);
  NoteServing(now);
}

bool SourceSelector::Wanted(std::size_t i, TimePoint now) const {
  return policy_->Wanted(state_, i, now);
}

void SourceSelector::OnStandby(std::size_t i, bool standby, TimePoint now) {
  SourceStatus& s = state_.sources[i];
  s.standby = standby;
  if (standby && s.healthy) {
    s.healthy = false;
    policy_->Dropped(i);
  }
  NoteServing(now);
}

SourceSelector::Offer SourceSelector::OnBlock(std::size_t i, std::span<const std::uint8_t> bytes,
                                              TimePoint now) {
  state_.sources[i].last_activity = now;
  NoteServing(now);
  return policy_->OfferBlock(state_, i, bytes, now);
}

void SourceSelector::OnWaitingForRoom(std::size_t i, bool waiting, TimePoint now) {
  // Several threads of one source may wait at once: it waits while any does.
  SourceStatus& s = state_.sources[i];
  if (waiting) {
    ++s.producers_waiting;
  } else if (s.producers_waiting > 0) {
    --s.producers_waiting;
  }
  s.waiting_for_room = s.producers_waiting > 0;
  state_.sources[i].last_activity = now;
}

std::size_t SourceSelector::TakeOutput(std::span<std::uint8_t> out, TimePoint now) {
  return policy_->TakeOutput(state_, out, now);
}

SourceSelector::TimePoint SourceSelector::NextDeadline(TimePoint now) const {
  TimePoint next = TimePoint::max();
  auto consider = [&](TimePoint t) {
    if (t > now) next = std::min(next, t);
  };
  consider(state_.started + state_.timing.startup_grace);
  for (const SourceStatus& s : state_.sources) {
    // A healthy source that is not waiting for room turns silent then.
    if (s.healthy && !s.waiting_for_room) {
      consider(s.last_activity + state_.timing.silence_timeout + Clock::Duration(1));
    }
  }
  return next;
}

std::string SourceSelector::Serving(TimePoint now) const {
  std::string out;
  for (const std::size_t i : policy_->Serving(state_, now)) {
    if (!out.empty()) out += '+';
    out += state_.sources[i].name;
  }
  return out.empty() ? "none" : out;
}

bool SourceSelector::IsServing(std::size_t i, TimePoint now) const {
  const std::vector<std::size_t> serving = policy_->Serving(state_, now);
  return std::find(serving.begin(), serving.end(), i) != serving.end();
}

void SourceSelector::NoteServing(TimePoint now) {
  const std::string serving = Serving(now);
  const bool degraded = Degraded(now);
  if (serving == serving_ && degraded == degraded_) return;
  if (serving_.empty() && serving == "none") return;  // nothing served yet: no change
  if (degraded) {
    // Loud on purpose: fewer sources than configured are mixed, by the operator's leave.
    LOG_WARNING("sources: ", policy_->Describe(), " DEGRADED: mixing only ", serving, " of ",
                size(), " configured sources");
  }
  if (serving_.empty()) {
    LOG_INFO("sources: serving from ", serving);
  } else if (serving == "none") {
    ++switches_;
    LOG_WARNING("sources: no source serving (was ", serving_, "); clients wait");
  } else if (serving != serving_) {
    ++switches_;
    LOG_WARNING("sources: now serving from ", serving, " (was ", serving_, ")");
  }
  serving_ = serving;
  degraded_ = degraded;
}

}  // namespace rngmux
