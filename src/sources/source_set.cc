#include "sources/source_set.h"

#include <algorithm>

#include "common/log.h"

namespace rngmux {

SourceSet::SourceSet(std::vector<std::unique_ptr<Source>> sources,
                     std::vector<SourceRunner::Options> options, EntropyPool& pool,
                     SourceSetOptions set_options, const Clock& clock)
    : pool_(pool), options_(set_options), clock_(clock) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < sources.size(); ++i) {
    names.push_back(sources[i]->name());
    runners_.push_back(
        std::make_unique<SourceRunner>(std::move(sources[i]), *this, i, options.at(i)));
    if (options_.mode == SourceMode::kMix) {
      mix_out_.push_back(std::make_unique<SecureBuffer>(SourceSelector::kMaxOfferBytes));
    }
  }
  selector_ = std::make_unique<SourceSelector>(
      std::move(names),
      MakeSelectionPolicy(options_.mode, runners_.size(), options_.min_mix_sources),
      options_.timing, clock_.Now());
}

SourceSet::~SourceSet() { Stop(); }

void SourceSet::Start() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    selector_->Begin(clock_.Now());  // the start-up grace counts from here
  }
  for (auto& runner : runners_) runner->Start();
}

void SourceSet::Stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  changed_.notify_all();
  for (auto& runner : runners_) runner->Stop();
}

void SourceSet::WaitLocked(std::unique_lock<std::mutex>& lock) {
  const Clock::TimePoint now = clock_.Now();
  const Clock::TimePoint deadline = selector_->NextDeadline(now);
  if (deadline == Clock::TimePoint::max()) {
    changed_.wait(lock);
  } else {
    changed_.wait_for(lock, deadline - now);
  }
}

std::string SourceSet::Describe() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return selector_->policy().Describe();
}

std::string SourceSet::Serving() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return selector_->Serving(clock_.Now());
}

bool SourceSet::Degraded() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return selector_->Degraded(clock_.Now());
}

std::uint64_t SourceSet::switches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return selector_->switches();
}

std::string SourceSet::State(std::size_t i) const {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (selector_->IsServing(i, clock_.Now())) return "serving";
    const SourceStatus& s = selector_->status(i);
    if (s.standby || s.healthy) return "standby";
  }
  const SourceCounters& c = runners_[i]->counters();
  return c.blocks_failed > 0 || c.read_errors > 0 ? "retrying" : "starting";
}

bool SourceSet::WaitUntilWanted(std::size_t index, const Interrupt& stop, bool* waited) {
  *waited = false;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!selector_->Wanted(index, clock_.Now()) && !stop.triggered() && !stopping_) {
    if (!*waited) {
      *waited = true;
      selector_->OnStandby(index, true, clock_.Now());
      const std::string serving = selector_->Serving(clock_.Now());
      LOG_INFO(
          "source ", runners_[index]->name(), ": on standby while ",
          serving == "none" ? std::string("more preferred sources start") : serving + " serves");
    }
    WaitLocked(lock);
    selector_->NoteServing(clock_.Now());
  }
  if (*waited) selector_->OnStandby(index, false, clock_.Now());
  return !stop.triggered() && !stopping_;
}

std::size_t SourceSet::Put(std::size_t index, std::span<const std::uint8_t> bytes,
                           const Interrupt& stop) {
  std::size_t taken = 0;
  std::unique_lock<std::mutex> lock(mutex_);
  auto stopped = [&] { return stop.triggered() || stopping_; };
  while (taken < bytes.size() && !stopped()) {
    const auto piece =
        bytes.subspan(taken, std::min(bytes.size() - taken, SourceSelector::kMaxOfferBytes));
    const SourceSelector::Offer offer = selector_->OnBlock(index, piece, clock_.Now());
    if (offer == SourceSelector::Offer::kRefused) break;  // a preferred source serves now
    if (offer == SourceSelector::Offer::kPassThrough) {
      selector_->OnWaitingForRoom(index, true, clock_.Now());
      lock.unlock();
      const std::size_t put = pool_.Put(piece, stop);
      lock.lock();
      selector_->OnWaitingForRoom(index, false, clock_.Now());
      // A standby source waiting with no deadline (nobody could turn silent while this
      // one waited for room) must now wait with one again.
      changed_.notify_all();
      taken += put;
      if (put < piece.size()) break;  // stopped
      continue;
    }
    if (offer == SourceSelector::Offer::kStaged) {
      taken += piece.size();
      changed_.notify_all();
    }
    // Mixed bytes go to the pool from one producer at a time, so they enter it in
    // the order they were mixed; the others stage meanwhile.
    bool flushed = false;
    if (!flushing_) {
      flushing_ = true;
      SecureBuffer& mixed = *mix_out_[index];
      while (!stopped()) {
        const std::size_t n = selector_->TakeOutput(mixed.span(), clock_.Now());
        if (n == 0) break;
        flushed = true;
        selector_->OnWaitingForRoom(index, true, clock_.Now());
        lock.unlock();
        changed_.notify_all();  // room in the stages
        const std::size_t put = pool_.Put(mixed.span().first(n), stop);
        SecureWipe(mixed.data(), n);
        lock.lock();
        selector_->OnWaitingForRoom(index, false, clock_.Now());
        if (put < n) break;  // stopped
      }
      flushing_ = false;
      changed_.notify_all();
    }
    if (offer == SourceSelector::Offer::kNoRoom && !flushed && !stopped()) {
      // Its stage is full: wait for the others to catch up (or drop out).
      selector_->OnWaitingForRoom(index, true, clock_.Now());
      WaitLocked(lock);
      selector_->OnWaitingForRoom(index, false, clock_.Now());
      selector_->NoteServing(clock_.Now());
    }
  }
  return taken;
}

void SourceSet::HealthChanged(std::size_t index, bool healthy) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    selector_->OnHealth(index, healthy, clock_.Now());
  }
  changed_.notify_all();
}

void SourceSet::WakeProducers() {
  {
    // Taking the lock orders this after a waiter's last look at its stop flag.
    std::lock_guard<std::mutex> lock(mutex_);
  }
  changed_.notify_all();
  pool_.WakeProducers();
}

}  // namespace rngmux
