#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace rngmux {

// Columns of text, each as wide as its widest cell, two spaces apart; numbers
// (cells given as right-aligned) line up on the right, like `chronyc sources`.
class TextTable {
 public:
  explicit TextTable(std::vector<std::string> headings, std::vector<bool> right_aligned = {});
  void Row(std::vector<std::string> cells);
  std::string Render() const;

 private:
  std::vector<std::vector<std::string>> rows_;
  std::vector<bool> right_;
};

// "3d 04:05:06" / "04:05:06".
std::string FormatDuration(double seconds);

// `rngmux status` for a person: the daemon line, the last reload, then tables of the
// sources, the pool, the endpoints and the busiest clients. `status` is the
// "status" object of the control socket's reply (StatusToJson); missing or mistyped
// fields print as "?" rather than failing.
std::string FormatStatusText(const nlohmann::ordered_json& status);

}  // namespace rngmux
