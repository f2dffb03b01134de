// Properties every client_hello_parser run must have, whatever the input. Shared by the libFuzzer
// entry (client_hello_fuzz.cc) and the seeded mutation test, so CI without clang still exercises
// them under g++/ASan. Test code: allocation is fine here.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tls/client_hello.h"

namespace ewgw::tls::testing {

// Everything observable about a parser after a call, for comparing runs.
struct parse_outcome {
  hello_status status = hello_status::need_more;
  std::string error;
  // The fields below are filled only when status is complete.
  std::string server_name;
  std::vector<std::string> alpn;
  bool alpn_truncated = false;
  bool offers_tls13 = false;
  std::uint16_t legacy_version = 0;
  std::size_t wire_bytes = 0;

  bool operator==(const parse_outcome&) const = default;
};

inline parse_outcome outcome_of(const client_hello_parser& parser, hello_status status) {
  parse_outcome out;
  out.status = status;
  out.error = std::string(parser.error());
  if (status == hello_status::complete) {
    const client_hello& hello = parser.hello();
    out.server_name = std::string(hello.server_name());
    hello.for_each_alpn([&](std::string_view name) { out.alpn.emplace_back(name); });
    out.alpn_truncated = hello.alpn_truncated();
    out.offers_tls13 = hello.offers_tls13();
    out.legacy_version = hello.legacy_version();
    out.wire_bytes = hello.wire_bytes();
  }
  return out;
}

inline std::string describe(const parse_outcome& o) {
  std::string s(to_string(o.status));
  if (!o.error.empty()) s += " (" + o.error + ")";
  if (o.status == hello_status::complete) {
    s += " sni='" + o.server_name + "' alpn=[";
    for (const auto& a : o.alpn) s += a + ",";
    s += "] wire_bytes=" + std::to_string(o.wire_bytes);
    s += o.offers_tls13 ? " tls13" : "";
    s += o.alpn_truncated ? " alpn_truncated" : "";
  }
  return s;
}

inline parse_outcome parse_once(std::span<const std::uint8_t> input, std::size_t max_bytes) {
  client_hello_parser parser(max_bytes);
  const hello_status status = parser.parse(input);
  return outcome_of(parser, status);
}

// Returns "" when every invariant holds for `input`, else a description of the first violation.
// With every_split, also feeds the input in two parts at every split point (quadratic).
inline std::string check_invariants(std::span<const std::uint8_t> input, std::size_t max_bytes,
                                    bool every_split = true) {
  const auto fail = [](const std::string& what, std::size_t at = SIZE_MAX) {
    return what + (at == SIZE_MAX ? std::string() : " (at " + std::to_string(at) + ")");
  };

  // 1. One-shot result, and it is final: calling again (even with the same bytes) repeats it.
  client_hello_parser one_shot(max_bytes);
  const parse_outcome whole = outcome_of(one_shot, one_shot.parse(input));
  if (outcome_of(one_shot, one_shot.parse(input)) != whole) return fail("second call differs");

  // 2. Per-status properties.
  switch (whole.status) {
    case hello_status::need_more:
      if (!whole.error.empty()) return fail("need_more with an error string");
      // A prefix that already reached the limit can never complete.
      if (input.size() >= max_bytes) return fail("need_more at or past the limit");
      break;
    case hello_status::complete: {
      if (!whole.error.empty()) return fail("complete with an error string");
      if (whole.wire_bytes == 0 || whole.wire_bytes > input.size() ||
          whole.wire_bytes > max_bytes) {
        return fail("wire_bytes out of range: " + std::to_string(whole.wire_bytes));
      }
      if (whole.server_name.size() > max_server_name_bytes) return fail("server_name too long");
      for (const char c : whole.server_name) {
        if (c < 0x21 || c > 0x7e || (c >= 'A' && c <= 'Z')) return fail("server_name byte");
      }
      std::size_t alpn_bytes = 0;
      for (const auto& a : whole.alpn) {
        if (a.empty()) return fail("empty ALPN name reported");
        alpn_bytes += 1 + a.size();
      }
      if (alpn_bytes > max_alpn_list_bytes) return fail("ALPN list exceeds its storage");
      // The hello depends on its own bytes only: cut exactly after it, the result is the same,
      // and one byte less is still a valid prefix.
      if (parse_once(input.first(whole.wire_bytes), max_bytes) != whole) {
        return fail("hello cut at wire_bytes parses differently");
      }
      if (parse_once(input.first(whole.wire_bytes - 1), max_bytes).status !=
          hello_status::need_more) {
        return fail("hello minus its last byte is not need_more");
      }
      break;
    }
    case hello_status::not_tls:
    case hello_status::too_large:
    case hello_status::malformed:
      if (whole.error.empty()) return fail("failure without an error string");
      break;
  }

  // 3. Fed one byte at a time: need_more until the same final outcome, which then sticks.
  {
    client_hello_parser parser(max_bytes);
    parse_outcome last;
    for (std::size_t k = 0; k <= input.size(); ++k) {
      const hello_status status = parser.parse(input.first(k));
      last = outcome_of(parser, status);
      if (status != hello_status::need_more && last != whole) {
        return fail("byte-by-byte final " + describe(last) + " != one-shot " + describe(whole), k);
      }
      if (status == hello_status::need_more && !last.error.empty()) {
        return fail("need_more with an error string", k);
      }
    }
    if (last != whole) return fail("byte-by-byte " + describe(last) + " != " + describe(whole));
  }

  // 4. Two parts at every split: the prefix alone is need_more or already the final outcome, and
  //    the whole after it gives the one-shot outcome.
  if (every_split) {
    for (std::size_t k = 0; k < input.size(); ++k) {
      client_hello_parser parser(max_bytes);
      const parse_outcome first = outcome_of(parser, parser.parse(input.first(k)));
      if (first.status != hello_status::need_more && first != whole) {
        return fail("prefix gave " + describe(first) + " but whole gives " + describe(whole), k);
      }
      const parse_outcome second = outcome_of(parser, parser.parse(input));
      if (second != whole) {
        return fail("split gave " + describe(second) + " != one-shot " + describe(whole), k);
      }
    }
  }
  return {};
}

}  // namespace ewgw::tls::testing
