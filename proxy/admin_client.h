// A minimal HTTP/1.1 client for the command-line tools that talk to a running gateway's admin
// port (`ewgw explain`). Plain HTTP only: the admin port listens on loopback, and remote use goes
// through `kubectl port-forward`.
#pragma once

#include <chrono>
#include <optional>
#include <string>

namespace ewgw::proxy {

struct admin_target {
  std::string host;    // name or numeric address
  std::string port = "15000";
  std::string prefix;  // path prefix of the admin endpoints behind a proxy ("" or "/x")
};

// "127.0.0.1:15000", "localhost:15000", "[::1]:15000", "http://host[:port][/prefix]".
// Returns an error naming what is wrong, or nullopt.
std::optional<std::string> parse_admin_target(const std::string& text, admin_target& out);

struct admin_reply {
  unsigned status = 0;  // 0: no answer (see error)
  std::string body;
  std::string error;
};

// GET `path_and_query` (already percent-encoded) on the target, bounded by `timeout`.
admin_reply admin_get(const admin_target& target, const std::string& path_and_query,
                      std::chrono::milliseconds timeout = std::chrono::seconds(10));

// Percent-encodes a query value (RFC 3986 unreserved characters pass through).
std::string url_encode(const std::string& value);

}  // namespace ewgw::proxy
