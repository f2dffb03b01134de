// Structured logs: one line per event, "time level component: message key=value ...".
// Lines are formatted into a local buffer and written with one write(2), so lines from
// different threads never interleave.
#pragma once

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace ewgw::log {

enum class level : std::uint8_t { trace, debug, info, warn, error, off };

bool parse_level(std::string_view text, level& out);
std::string_view to_string(level l);

void set_level(level l);
level current_level();
extern std::atomic<level> g_level;
inline bool enabled(level l) {
  return l >= g_level.load(std::memory_order_relaxed);
}

using field = std::pair<std::string_view, std::string_view>;

void write(level l, std::string_view component, std::string_view message, std::initializer_list<field> fields = {});

// Values that are not already strings.
inline std::string num(std::uint64_t v) { return std::to_string(v); }

#define EWGW_LOG(lvl, component, ...)                              \
  do {                                                             \
    if (::ewgw::log::enabled(::ewgw::log::level::lvl)) {           \
      ::ewgw::log::write(::ewgw::log::level::lvl, component, __VA_ARGS__); \
    }                                                              \
  } while (0)

}  // namespace ewgw::log
