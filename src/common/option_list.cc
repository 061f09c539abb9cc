#include "common/option_list.h"

#include <set>

namespace rngmux {

bool HasNulByte(std::string_view text) { return text.find('\0') != std::string_view::npos; }

std::optional<std::vector<OptionItem>> ParseOptionList(std::string_view text,
                                                       OptionListSyntax syntax) {
  if (HasNulByte(text)) return std::nullopt;
  std::vector<OptionItem> items(1);
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != ',') {
      items.back().text += text[i];
    } else if (syntax.double_comma_escape && i + 1 < text.size() && text[i + 1] == ',') {
      items.back().text += ',';
      ++i;
    } else {
      items.emplace_back();
    }
  }
  std::set<std::string> seen;
  for (OptionItem& item : items) {
    const std::size_t equals = item.text.find('=');
    item.key = item.text.substr(0, equals);
    item.has_value = equals != std::string::npos;
    if (item.has_value) item.value = item.text.substr(equals + 1);
    item.empty = item.text.empty();
    item.repeated = !seen.insert(item.key).second;
  }
  return items;
}

std::optional<bool> ParseSwitch(std::string_view value) {
  if (value == "on" || value == "yes" || value == "true") return true;
  if (value == "off" || value == "no" || value == "false") return false;
  return std::nullopt;
}

}  // namespace rngmux
