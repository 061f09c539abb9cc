#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rngmux {

// One item of a comma-separated option list: "key=value" or a bare "key".
struct OptionItem {
  std::string text;  // the item as written, after unescaping ",,"
  std::string key;   // up to the first '='
  std::string value;
  bool has_value = false;  // an '=' was written (the value may still be empty)
  bool empty = false;      // nothing between two commas
  bool repeated = false;   // an earlier item has the same key
};

struct OptionListSyntax {
  // QEMU's option syntax: ",," is a literal comma, not a separator.
  bool double_comma_escape = false;
};

// The one tokenizer for option lists in specs: the source spec's options
// ("kind[:arg],key=value,..."), the endpoint spec's ("transport:address,opt[=value],...")
// and QEMU's -chardev ("backend,key=value,..."). It splits, marks empty items and
// repeated keys; each parser keeps its own error texts and order of checks. Text
// with a NUL byte is refused (nullopt): it cannot come from argv, and inet_pton
// would stop at it. Pure, no I/O; tested in option_list_test.cc.
//   ParseOptionList("a=1,b")                 -> {a=1}, {b}
//   ParseOptionList("path=x,,y", {true})     -> {path=x,y}
//   ParseOptionList("a,,b")                  -> {a}, {empty}, {b}
std::optional<std::vector<OptionItem>> ParseOptionList(std::string_view text,
                                                       OptionListSyntax syntax = {});

// True if `text` holds a NUL byte; the parsers refuse such specs with one message.
bool HasNulByte(std::string_view text);

// A switch as QEMU spells it: on/yes/true or off/no/false; nothing for any other word.
std::optional<bool> ParseSwitch(std::string_view value);

// The error text every spec parser gives for a NUL byte.
inline constexpr std::string_view kNulByteProblem = "contains a NUL byte";

}  // namespace rngmux
