#pragma once

#include <charconv>
#include <cmath>
#include <optional>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace rngmux {

// The one parser for numbers written in specs, options and worker arguments: the
// whole text must be the number (no spaces, no trailing characters, no '+'), within
// [min, max]. Integers are decimal unless `base` says otherwise (8 for file modes)
// and take no sign when unsigned; doubles must be finite. Pure; tested in
// number_text_test.cc.
//   ParseNumber<unsigned long>("1024", 1, 65535)  -> 1024
//   ParseNumber<unsigned>("0660", 0, 07777, 8)    -> 0660
//   ParseNumber<double>("4.5", 0.0, 8.0)          -> 4.5
//   ParseNumber<std::size_t>("12k", 0, 100)       -> nullopt
template <typename T>
std::optional<T> ParseNumber(std::string_view text, T min, T max, int base = 10) {
  if (text.empty() || text.front() == '+') return std::nullopt;
  T value{};
  const char* end = text.data() + text.size();
  std::from_chars_result result;
  if constexpr (std::is_floating_point_v<T>) {
    result = std::from_chars(text.data(), end, value);
    if (result.ec == std::errc() && !std::isfinite(value)) return std::nullopt;
  } else {
    if (std::is_unsigned_v<T> && text.front() == '-') return std::nullopt;
    result = std::from_chars(text.data(), end, value, base);
  }
  if (result.ec != std::errc() || result.ptr != end) return std::nullopt;
  if (value < min || value > max) return std::nullopt;
  return value;
}

}  // namespace rngmux
