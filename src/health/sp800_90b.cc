#include "health/sp800_90b.h"

#include <math.h>
#if defined(__SSE2__)
#include <emmintrin.h>  // SSE2 is part of x86-64 itself: no CPU check needed
#endif

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>

namespace rngmux {
namespace {

// lgamma() writes the global signgam: a data race when several source threads
// compute cutoffs at once. lgamma_r() is the reentrant form (glibc, POSIX 2024).
double LogGamma(double x) {
  int sign = 0;
  return lgamma_r(x, &sign);
}

// Window for non-binary samples (SP 800-90B 4.4.2); bytes are never 1-bit samples.
constexpr unsigned kByteAptWindow = 512;
constexpr double kMaxBitsPerByte = 8.0;

// log(exp(a) + exp(b)) without overflow or underflow.
double LogAddExp(double a, double b) {
  if (a == -std::numeric_limits<double>::infinity()) return b;
  if (b == -std::numeric_limits<double>::infinity()) return a;
  const double hi = std::max(a, b);
  const double lo = std::min(a, b);
  return hi + std::log1p(std::exp(lo - hi));
}

// Smallest k with P[X > k] <= exp(log_limit) for X ~ Binomial(n, q), 0 < q < 1.
// For tiny alpha the CDF is indistinguishable from 1 in double precision but the
// upper tail is not, so the tail is summed in log space from k = n downwards.
unsigned CritBinomByUpperTail(unsigned n, double q, double log_limit) {
  const double log_q = std::log(q);
  const double log_1mq = std::log1p(-q);
  const double log_n_fact = LogGamma(static_cast<double>(n) + 1.0);
  auto log_pmf = [&](unsigned j) {
    const double jd = static_cast<double>(j);
    const double rest = static_cast<double>(n - j);
    return log_n_fact - LogGamma(jd + 1.0) - LogGamma(rest + 1.0) + jd * log_q + rest * log_1mq;
  };

  // Invariant: log_tail = log P[X > k]. It grows as k falls; the answer is the
  // smallest k whose tail is still within the limit.
  double log_tail = -std::numeric_limits<double>::infinity();
  unsigned k = n;
  while (k > 0) {
    const double next_tail = LogAddExp(log_tail, log_pmf(k));  // log P[X > k - 1]
    if (next_tail > log_limit) break;
    log_tail = next_tail;
    --k;
  }
  return k;
}

}  // namespace

unsigned CritBinom(unsigned n, double q, double p) {
  // Degenerate distributions first: all of the mass sits on 0 or on n.
  if (p <= 0.0 || q <= 0.0) return 0;
  if (q >= 1.0 || p >= 1.0) return n;
  // P[X <= k] >= p  <=>  P[X > k] <= 1 - p; 1 - p is exact for p = 1 - 2^-m.
  return CritBinomByUpperTail(n, q, std::log1p(-p));
}

HealthCutoffs ComputeCutoffs(double entropy_bits_per_sample, double alpha_log2) {
  assert(entropy_bits_per_sample > 0.0 && entropy_bits_per_sample <= kMaxBitsPerByte);
  assert(alpha_log2 > 0.0);
  // Out-of-contract claims are clamped to the conservative side in release builds.
  const double h = std::clamp(entropy_bits_per_sample, 1e-3, kMaxBitsPerByte);

  // The ratio is often an exact integer (30 / 2); a relative nudge keeps rounding
  // noise such as 30 / 0.1 = 300.00000000000006 from adding a spurious sample.
  const double ratio = alpha_log2 / h;
  const double rct_excess = std::ceil(ratio * (1.0 - 1e-12));

  HealthCutoffs cutoffs{};
  cutoffs.rct_cutoff = 1 + static_cast<unsigned>(rct_excess);
  cutoffs.apt_window = kByteAptWindow;
  // alpha goes in as a logarithm: 1 - alpha would round to 1 beyond 2^-53.
  const double q = std::exp2(-h);
  cutoffs.apt_cutoff =
      1 + (q >= 1.0 ? kByteAptWindow
                    : CritBinomByUpperTail(kByteAptWindow, q, -alpha_log2 * std::log(2.0)));
  // A cutoff above the window could never trip; W itself still catches a window
  // that is entirely one value (only possible for claims far below one bit).
  cutoffs.apt_cutoff = std::min(cutoffs.apt_cutoff, kByteAptWindow);
  return cutoffs;
}

bool RepetitionCountTest::Feed(std::uint8_t sample) {
  if (count_ != 0 && sample == last_) {
    ++count_;
  } else {
    last_ = sample;
    count_ = 1;
  }
  return count_ < cutoff_;
}

bool AdaptiveProportionTest::Feed(std::uint8_t sample) {
  if (seen_ == 0 || seen_ >= window_) {
    // The first sample of a window is the reference value and counts once.
    first_ = sample;
    seen_ = 1;
    count_ = 1;
  } else {
    ++seen_;
    if (sample == first_) ++count_;
  }
  return count_ < cutoff_;
}

namespace {

constexpr std::uint64_t kOnes = 0x0101010101010101ULL;
constexpr std::uint64_t kHighBits = 0x8080808080808080ULL;

std::uint64_t Load64(const std::uint8_t* p) {
  std::uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Whether any byte of v is zero (exact).
bool HasZeroByte(std::uint64_t v) { return ((v - kOnes) & ~v & kHighBits) != 0; }

// How many bytes of v are zero.
unsigned ZeroBytes(std::uint64_t v) {
  const std::uint64_t nonzero = (((v & ~kHighBits) + ~kHighBits) | v) & kHighBits;
  // One bit per non-zero byte, summed by a multiply (no popcnt instruction needed).
  return 8 - static_cast<unsigned>(((nonzero >> 7) * kOnes) >> 56);
}

}  // namespace

// Both block tests look at sixteen samples per step with SSE2 (every x86-64 CPU has
// it) and eight per step elsewhere: random data rarely has two equal neighbours (1 in
// 256), so RCT mostly just confirms "no repeat here" a vector at a time, and APT counts
// a window's matches a vector at a time. Health tests otherwise cost more CPU than
// everything else the daemon does.
bool RepetitionCountTest::FeedBlock(std::span<const std::uint8_t> samples) {
  std::uint8_t last = last_;
  unsigned count = count_;
  std::size_t i = 0;
  const std::size_t n = samples.size();
  while (i < n) {
#if defined(__SSE2__)
    // Sixteen samples beside their predecessors (samples[i - 1] is `last`). Bit j of
    // the mask says sample i + j repeats the one before it. One sample in 256 repeats
    // its predecessor in a random stream, so about one step in 16 has a bit set: those
    // are judged from the mask too, rather than a sample at a time.
    if (count != 0 && i >= 1 && i + 16 <= n && cutoff_ >= 2 && cutoff_ <= 33) {
      const __m128i current = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&samples[i]));
      const __m128i previous = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&samples[i - 1]));
      const auto repeats =
          static_cast<std::uint16_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(current, previous)));
      if (repeats == 0) {
        count = 1;
        last = samples[i + 15];
        i += 16;
        continue;
      }
      // The run so far (count - 1 repeats, fewer than cutoff - 1 <= 32) sits just below
      // bit 32, the step's repeats from bit 32 up. A run of cutoff samples is
      // cutoff - 1 repeats in a row; bit p of `ends` is set where such a row ends.
      const unsigned carried = count - 1;
      const std::uint64_t carry =
          carried == 0 ? 0 : ((std::uint64_t{1} << carried) - 1) << (32 - carried);
      const std::uint64_t bits = (std::uint64_t{repeats} << 32) | carry;
      std::uint64_t ends = bits;
      for (unsigned shift = 1; shift + 1 < cutoff_; ++shift) ends &= bits << shift;
      if ((ends >> 32) == 0) {
        const auto trailing = static_cast<unsigned>(std::countl_one(repeats));
        count = trailing == 16 ? count + 16 : trailing + 1;
        last = samples[i + 15];
        i += 16;
        continue;
      }
      // A failure within these sixteen: the steps below find its sample.
    }
#endif
    if constexpr (std::endian::native == std::endian::little) {
      if (count != 0 && i + 8 <= n) {
        const std::uint64_t word = Load64(samples.data() + i);
        // Each sample beside its predecessor: [last, s0..s6] against [s0..s7].
        if (!HasZeroByte(word ^ ((word << 8) | last))) {
          count = 1;
          last = samples[i + 7];
          i += 8;
          continue;
        }
      }
    }
    const std::uint8_t sample = samples[i++];
    count = (count != 0 && sample == last) ? count + 1 : 1;
    last = sample;
    if (count >= cutoff_) return false;
  }
  last_ = last;
  count_ = count;
  return true;
}

bool AdaptiveProportionTest::FeedBlock(std::span<const std::uint8_t> samples) {
  while (!samples.empty()) {
    if (seen_ == 0 || seen_ >= window_) {
      first_ = samples.front();
      seen_ = 1;
      count_ = 1;
      samples = samples.subspan(1);
      if (count_ >= cutoff_) return false;
      continue;
    }
    // Within a window the count only grows, so checking it at the end of the
    // stretch is the same as checking after every sample.
    const std::size_t n = std::min<std::size_t>(samples.size(), window_ - seen_);
    const std::uint8_t first = first_;
    unsigned matches = 0;
    std::size_t i = 0;
#if defined(__SSE2__)
    {
      // Per-byte-lane match counters, summed once at the end; at most 255 steps, so
      // no lane overflows (a byte window is 512 samples: 32 steps).
      const __m128i pattern = _mm_set1_epi8(static_cast<char>(first));
      __m128i lanes = _mm_setzero_si128();
      for (; i + 16 <= n && i < 255 * 16; i += 16) {
        const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&samples[i]));
        lanes = _mm_sub_epi8(lanes, _mm_cmpeq_epi8(v, pattern));  // a match is -1
      }
      const __m128i sums = _mm_sad_epu8(lanes, _mm_setzero_si128());
      matches += static_cast<unsigned>(_mm_cvtsi128_si32(sums)) +
                 static_cast<unsigned>(_mm_cvtsi128_si32(_mm_srli_si128(sums, 8)));
    }
#endif
    const std::uint64_t pattern = kOnes * first;
    for (; i + 8 <= n; i += 8) matches += ZeroBytes(Load64(samples.data() + i) ^ pattern);
    for (; i < n; ++i) matches += samples[i] == first ? 1u : 0u;
    count_ += matches;
    seen_ += static_cast<unsigned>(n);
    samples = samples.subspan(n);
    if (count_ >= cutoff_) return false;
  }
  return true;
}

}  // namespace rngmux
