#include "sources/source_set.h"

#include <algorithm>
#include <cstring>

#include "common/log.h"

namespace rngmux {
namespace {

// Mix mode: how much each source may stage ahead of the others.
constexpr std::size_t kMixStageBytes = 256 * 1024;

}  // namespace

SourceSet::SourceSet(std::vector<std::unique_ptr<Source>> sources,
                     std::vector<SourceRunner::Options> options, EntropyPool& pool, SourceMode mode,
                     SourceSetTiming timing)
    : pool_(pool),
      mode_(mode),
      timing_(timing),
      healthy_(sources.size(), false),
      waiting_(sources.size(), false),
      tried_(sources.size(), false),
      in_put_(sources.size(), false),
      last_activity_(sources.size()) {
  for (std::size_t i = 0; i < sources.size(); ++i) {
    runners_.push_back(
        std::make_unique<SourceRunner>(std::move(sources[i]), *this, i, options.at(i)));
    if (mode_ == SourceMode::kMix) {
      staged_.push_back(std::make_unique<SecureBuffer>(kMixStageBytes));
      staged_size_.push_back(0);
      mix_out_.push_back(std::make_unique<SecureBuffer>(kMixStageBytes / 2));
    }
  }
}

SourceSet::~SourceSet() { Stop(); }

void SourceSet::Start() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    started_ = Clock::now();
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

bool SourceSet::SilentLocked(std::size_t i, Clock::time_point now) const {
  // A source blocked handing over its bytes (the pool is full, or the mix waits for
  // the others) is not silent: nobody wants its bytes yet.
  return !in_put_[i] && now - last_activity_[i] > timing_.silence_timeout;
}

bool SourceSet::ContributesLocked(std::size_t i, Clock::time_point now) const {
  return healthy_[i] && !SilentLocked(i, now);
}

std::size_t SourceSet::ActiveLocked() const {
  const Clock::time_point now = Clock::now();
  for (std::size_t i = 0; i < healthy_.size(); ++i) {
    if (healthy_[i] && !SilentLocked(i, now)) return i;
  }
  return kNone;
}

bool SourceSet::WantedLocked(std::size_t index) const {
  const std::size_t active = ActiveLocked();
  if (active != kNone) return index <= active;
  // Nobody serves: read, unless a more preferred source is still on its first try
  // within the start-up grace.
  if (Clock::now() - started_ >= timing_.startup_grace) return true;
  for (std::size_t j = 0; j < index; ++j) {
    if (!tried_[j]) return false;
  }
  return true;
}

std::string SourceSet::ServingLocked() const {
  std::string out;
  if (mode_ == SourceMode::kFailover) {
    const std::size_t active = ActiveLocked();
    if (active != kNone) out = runners_[active]->name();
  } else {
    const Clock::time_point now = Clock::now();
    for (std::size_t i = 0; i < healthy_.size(); ++i) {
      if (!ContributesLocked(i, now)) continue;
      if (!out.empty()) out += '+';
      out += runners_[i]->name();
    }
  }
  return out.empty() ? "none" : out;
}

void SourceSet::NoteServingLocked() {
  const std::string now = ServingLocked();
  if (now == serving_) return;
  if (serving_.empty()) {
    LOG_INFO("sources: serving from ", now);
  } else if (now == "none") {
    ++switches_;
    LOG_WARNING("sources: no healthy source (was ", serving_, "); clients wait");
  } else {
    ++switches_;
    LOG_WARNING("sources: now serving from ", now, " (was ", serving_, ")");
  }
  serving_ = now;
}

std::string SourceSet::Serving() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return ServingLocked();
}

std::uint64_t SourceSet::switches() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return switches_;
}

std::string SourceSet::State(std::size_t i) const {
  std::lock_guard<std::mutex> lock(mutex_);
  const bool serving =
      mode_ == SourceMode::kMix ? ContributesLocked(i, Clock::now()) : i == ActiveLocked();
  if (serving) return "serving";
  if (waiting_[i] || healthy_[i]) return "standby";
  const SourceCounters& c = runners_[i]->counters();
  return c.blocks_failed > 0 || c.read_errors > 0 ? "retrying" : "starting";
}

bool SourceSet::WaitUntilWanted(std::size_t index, const Interrupt& stop, bool* waited) {
  *waited = false;
  std::unique_lock<std::mutex> lock(mutex_);
  if (mode_ == SourceMode::kMix) return !stop.triggered() && !stopping_;
  while (!WantedLocked(index) && !stop.triggered() && !stopping_) {
    if (!*waited) {
      *waited = true;
      waiting_[index] = true;
      // Its health was proven for a stream it stops reading now.
      healthy_[index] = false;
      const std::size_t active = ActiveLocked();
      LOG_INFO("source ", runners_[index]->name(), ": on standby while ",
               active == kNone ? std::string("more preferred sources start")
                               : runners_[active]->name() + " serves");
    }
    // Silence and the start-up grace are judged by time: look again now and then.
    changed_.wait_for(lock, std::chrono::milliseconds(250));
    NoteServingLocked();
  }
  waiting_[index] = false;
  return !stop.triggered() && !stopping_;
}

std::size_t SourceSet::Put(std::size_t index, std::span<const std::uint8_t> bytes,
                           const Interrupt& stop) {
  if (mode_ == SourceMode::kFailover) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      last_activity_[index] = Clock::now();
      NoteServingLocked();
      if (index != ActiveLocked()) return 0;  // a preferred source serves now
      in_put_[index] = true;
    }
    const std::size_t put = pool_.Put(bytes, stop);
    std::lock_guard<std::mutex> lock(mutex_);
    in_put_[index] = false;
    last_activity_[index] = Clock::now();
    return put;
  }

  SecureBuffer& mixed = *mix_out_[index];
  std::size_t taken = 0;
  while (taken < bytes.size()) {
    const auto piece = bytes.subspan(taken, std::min(bytes.size() - taken, mixed.size()));
    std::size_t mixed_size = 0;
    bool staged = false;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      last_activity_[index] = Clock::now();
      in_put_[index] = true;
      SecureBuffer& stage = *staged_[index];
      // Wait for room in this source's stage; meanwhile mix whatever the others allow,
      // so a source that drops out (or goes silent) never leaves this one stuck.
      auto ready = [&] {
        if (stop.triggered() || stopping_ || !healthy_[index]) return true;
        if (staged_size_[index] + piece.size() <= stage.size()) return true;
        mixed_size = TakeMixLocked(mixed.span());
        return mixed_size > 0;
      };
      while (!ready()) changed_.wait_for(lock, std::chrono::milliseconds(250));
      in_put_[index] = false;
      if (stop.triggered() || stopping_ || !healthy_[index]) {
        SecureWipe(mixed.data(), mixed_size);
        return taken;
      }
      if (mixed_size == 0) {
        std::memcpy(stage.data() + staged_size_[index], piece.data(), piece.size());
        staged_size_[index] += piece.size();
        staged = true;
        mixed_size = TakeMixLocked(mixed.span());
      }
    }
    changed_.notify_all();
    if (staged) taken += piece.size();
    if (mixed_size > 0 && pool_.Put(mixed.span().first(mixed_size), stop) < mixed_size) {
      SecureWipe(mixed.data(), mixed_size);
      return taken;  // stopped
    }
    SecureWipe(mixed.data(), mixed_size);
  }
  return taken;
}

std::size_t SourceSet::TakeMixLocked(std::span<std::uint8_t> out) {
  const Clock::time_point now = Clock::now();
  std::size_t n = out.size();
  bool any = false;
  for (std::size_t i = 0; i < healthy_.size(); ++i) {
    if (!ContributesLocked(i, now)) continue;
    n = std::min(n, staged_size_[i]);
    any = true;
  }
  if (!any || n == 0) return 0;
  std::fill_n(out.begin(), n, std::uint8_t{0});
  for (std::size_t i = 0; i < healthy_.size(); ++i) {
    if (!ContributesLocked(i, now)) continue;
    std::uint8_t* stage = staged_[i]->data();
    for (std::size_t k = 0; k < n; ++k) out[k] ^= stage[k];
    // Each staged byte is used once: shift the rest down and wipe the vacated tail.
    std::memmove(stage, stage + n, staged_size_[i] - n);
    SecureWipe(stage + staged_size_[i] - n, n);
    staged_size_[i] -= n;
  }
  return n;
}

void SourceSet::HealthChanged(std::size_t index, bool healthy) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    healthy_[index] = healthy;
    tried_[index] = true;
    if (healthy) last_activity_[index] = Clock::now();
    if (!healthy && mode_ == SourceMode::kMix) {
      // What it staged came from a stream that has just failed: never mix it in.
      SecureWipe(staged_[index]->data(), staged_size_[index]);
      staged_size_[index] = 0;
    }
    NoteServingLocked();
  }
  changed_.notify_all();
}

void SourceSet::WakeProducers() {
  changed_.notify_all();
  pool_.WakeProducers();
}

}  // namespace rngmux
