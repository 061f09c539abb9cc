#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

namespace rngmux {

// For the fuzzers of incremental parsers, which feed one input whole, byte by byte and
// in chunks and trap unless the three agree. The first byte of the fuzzer's data says
// how many of the next bytes (0-7) are chunk sizes; the rest is what the parser reads.
struct ChunkedFuzzInput {
  std::span<const std::uint8_t> sizes;
  std::span<const char> input;

  static ChunkedFuzzInput Split(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return {};
    const std::size_t count = data[0] % 8 < size - 1 ? data[0] % 8 : size - 1;
    return {
        std::span<const std::uint8_t>(data + 1, count),
        std::span<const char>(reinterpret_cast<const char*>(data) + 1 + count, size - 1 - count)};
  }
};

// Feeds `input` to `parser` in chunks of 1 + sizes[i] % max_chunk bytes (the sizes
// repeat; none given: byte by byte) and returns the result of the last Feed, or
// `nothing_fed` for an empty input.
template <typename Parser>
typename Parser::Result FeedInChunks(Parser& parser, std::span<const char> input,
                                     std::span<const std::uint8_t> sizes, std::size_t max_chunk,
                                     typename Parser::Result nothing_fed) {
  typename Parser::Result result = nothing_fed;
  std::size_t offset = 0;
  std::size_t i = 0;
  while (offset < input.size()) {
    std::size_t n = sizes.empty() ? 1 : 1 + sizes[i++ % sizes.size()] % max_chunk;
    if (n > input.size() - offset) n = input.size() - offset;
    result = parser.Feed(input.subspan(offset, n));
    offset += n;
  }
  return result;
}

// Traps: libFuzzer reports the input.
inline void FuzzCheck(bool condition) {
  if (!condition) std::abort();
}

}  // namespace rngmux
