// Envoy's access log format strings, parsed once at configuration time into literal and command
// operator pieces, then rendered per record on the writer thread.
//
// Syntax (Envoy's substitution formatter): %OPERATOR%, %OPERATOR(params)%, and a maximum
// length %OPERATOR(params):N%. "%%" is a literal '%'. Anything else starting with '%' is an
// error that names the position. Unset values render as "-" (text) or null (JSON), as in Envoy.
//
// Operators a TCP gateway can fill are filled (START_TIME[(strftime)], DURATION,
// BYTES_RECEIVED, BYTES_SENT, DOWNSTREAM_* and UPSTREAM_* addresses, UPSTREAM_CLUSTER[_RAW],
// UPSTREAM_TRANSPORT_FAILURE_REASON, REQUESTED_SERVER_NAME, RESPONSE_FLAGS[_LONG],
// RESPONSE_CODE_DETAILS, CONNECTION_TERMINATION_DETAILS, CONNECTION_ID, FILTER_CHAIN_NAME,
// UPSTREAM_REQUEST_ATTEMPT_COUNT, HOSTNAME, ...). Envoy operators that carry nothing on a TCP
// connection (REQ(...), RESP(...), PROTOCOL, ROUTE_NAME, TLS details of a connection that is not
// terminated, metadata and filter state) render as unset; RESPONSE_CODE renders 0 as Envoy's
// does for TCP (StreamInfo::responseCode().value_or(0)). An operator Envoy does not define is a
// configuration error naming it.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "accesslog/config.h"
#include "accesslog/record.h"

namespace ewgw::accesslog {

// Record fields that cost a system call to capture; the session captures only those some
// configured format uses.
enum needs : std::uint32_t {
  needs_downstream_local = 1u << 0,   // getsockname on the downstream socket
  needs_downstream_remote = 1u << 1,  // getpeername
  needs_upstream_local = 1u << 2,     // getsockname on the upstream socket
};

class formatter {
 public:
  // Parses `config`. On error returns nullptr and sets `error` (e.g. "unknown command operator
  // 'UPSTREAM_HOSTT' at position 12").
  static std::shared_ptr<const formatter> compile(const format_config& config, std::string& error);

  // Appends one access log line (text as configured; JSON: one object and a newline).
  void render(const record& r, std::string& out) const;

  std::uint32_t needs() const { return needs_; }

  struct piece;
  struct json_node;
  struct time_format;
  ~formatter();
  formatter();

 private:
  std::vector<piece> text_;
  std::unique_ptr<json_node> json_;
  bool omit_empty_ = false;
  std::uint32_t needs_ = 0;
};

// Envoy's default format (access_log/usage: "Default Format String").
extern const std::string_view envoy_default_format;

// JSON string escaping (RFC 8259 section 7), appended without the surrounding quotes. The one
// escaper of the project: xds (YAML to JSON) and the admin views use it too.
void append_json_escaped(std::string& out, std::string_view s);

}  // namespace ewgw::accesslog
