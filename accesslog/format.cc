#include "accesslog/format.h"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <ctime>
#include <string_view>

namespace ewgw::accesslog {

const std::string_view envoy_default_format =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
    "%RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "
    "\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" "
    "\"%UPSTREAM_HOST%\"\n";

namespace {

constexpr std::array<std::string_view, static_cast<std::size_t>(response_flag::count)> short_names = {
    "LH", "UH",  "UT", "LR",    "UR",   "UF",   "UC",   "UO", "NR",  "DI", "FI", "RL", "UAEX", "RLSE", "DC",
    "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC", "OM", "DF", "DO",   "DR",   "UDO"};
constexpr std::array<std::string_view, static_cast<std::size_t>(response_flag::count)> long_names = {
    "FailedLocalHealthCheck",
    "NoHealthyUpstream",
    "UpstreamRequestTimeout",
    "LocalReset",
    "UpstreamRemoteReset",
    "UpstreamConnectionFailure",
    "UpstreamConnectionTermination",
    "UpstreamOverflow",
    "NoRouteFound",
    "DelayInjected",
    "FaultInjected",
    "RateLimited",
    "UnauthorizedExternalService",
    "RateLimitServiceError",
    "DownstreamConnectionTermination",
    "UpstreamRetryLimitExceeded",
    "StreamIdleTimeout",
    "InvalidEnvoyRequestHeaders",
    "DownstreamProtocolError",
    "UpstreamMaxStreamDurationReached",
    "ResponseFromCacheFilter",
    "NoFilterConfigFound",
    "DurationTimeout",
    "UpstreamProtocolError",
    "NoClusterFound",
    "OverloadManagerTerminated",
    "DnsResolutionFailed",
    "DropOverload",
    "DownstreamRemoteReset",
    "UnconditionalDropOverload"};

}  // namespace

std::string_view short_name(response_flag f) { return short_names[static_cast<std::size_t>(f)]; }
std::string_view long_name(response_flag f) { return long_names[static_cast<std::size_t>(f)]; }

bool parse_flag(std::string_view name, response_flag& out) {
  for (std::size_t i = 0; i < short_names.size(); ++i) {
    if (short_names[i] == name) {
      out = static_cast<response_flag>(i);
      return true;
    }
  }
  return false;
}

void address::append_to(std::string& out, bool with_port) const {
  char buf[64];
  if (v6) {
    // RFC 5952 text, bracketed with a port (Envoy's Ipv6Instance::asString).
    if (with_port) out.push_back('[');
    const char* text = inet_ntop(AF_INET6, ip.data(), buf, sizeof(buf));
    out += text != nullptr ? text : "::";
    if (with_port) out.push_back(']');
  } else {
    auto* end = buf;
    for (int i = 0; i < 4; ++i) {
      if (i > 0) *end++ = '.';
      end = std::to_chars(end, buf + sizeof(buf), ip[static_cast<std::size_t>(i)]).ptr;
    }
    out.append(buf, end);
  }
  if (with_port) {
    out.push_back(':');
    auto* end = std::to_chars(buf, buf + sizeof(buf), port).ptr;
    out.append(buf, end);
  }
}

void append_json_escaped(std::string& out, std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out.push_back(hex[c >> 4]);
          out.push_back(hex[c & 0xf]);
        } else {
          out.push_back(ch);
        }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Operators

namespace {

enum class field : std::uint8_t {
  literal,
  start_time,
  duration,
  bytes_received,
  bytes_sent,
  downstream_remote_address,
  downstream_remote_address_without_port,
  downstream_remote_port,
  downstream_local_address,
  downstream_local_address_without_port,
  downstream_local_port,
  upstream_host,
  upstream_host_without_port,
  upstream_host_port,
  upstream_local_address,
  upstream_local_address_without_port,
  upstream_local_port,
  upstream_cluster,
  upstream_transport_failure_reason,
  requested_server_name,
  response_flags,
  response_flags_long,
  response_code,
  response_code_details,
  connection_termination_details,
  connection_id,
  filter_chain_name,
  attempt_count,
  hostname,
  zero,   // a number Envoy reports as 0 for a TCP connection ewgw relays (header bytes, ...)
  unset,  // defined by Envoy, carries nothing on a relayed TCP connection
};

enum class params : std::uint8_t { none, optional, required };

struct operator_spec {
  std::string_view name;
  field what;
  params p;
};

// Envoy's command operators (substitution_formatter.cc, stream_info_formatter.cc and the
// HTTP-specific and extension formatters). Sorted by name for the lookup.
constexpr operator_spec operators[] = {
    {"ACCESS_LOG_TYPE", field::unset, params::none},
    {"BYTES_RECEIVED", field::bytes_received, params::none},
    {"BYTES_RETRANSMITTED", field::zero, params::none},
    {"BYTES_SENT", field::bytes_sent, params::none},
    {"CEL", field::unset, params::required},
    {"CLUSTER_METADATA", field::unset, params::required},
    {"COMMON_DURATION", field::unset, params::required},
    {"CONNECTION_ID", field::connection_id, params::none},
    {"CONNECTION_TERMINATION_DETAILS", field::connection_termination_details, params::none},
    {"CUSTOM_FLAGS", field::unset, params::none},
    {"DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED", field::zero, params::none},
    {"DOWNSTREAM_DECOMPRESSED_HEADER_BYTES_SENT", field::zero, params::none},
    {"DOWNSTREAM_DETECTED_CLOSE_TYPE", field::unset, params::none},
    {"DOWNSTREAM_DIRECT_LOCAL_ADDRESS", field::downstream_local_address, params::none},
    {"DOWNSTREAM_DIRECT_LOCAL_ADDRESS_WITHOUT_PORT", field::downstream_local_address_without_port, params::none},
    {"DOWNSTREAM_DIRECT_LOCAL_PORT", field::downstream_local_port, params::none},
    {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS", field::downstream_remote_address, params::none},
    {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", field::downstream_remote_address_without_port, params::none},
    {"DOWNSTREAM_DIRECT_REMOTE_PORT", field::downstream_remote_port, params::none},
    {"DOWNSTREAM_HANDSHAKE_DURATION", field::unset, params::none},
    {"DOWNSTREAM_HEADER_BYTES_RECEIVED", field::zero, params::none},
    {"DOWNSTREAM_HEADER_BYTES_SENT", field::zero, params::none},
    {"DOWNSTREAM_LOCAL_ADDRESS", field::downstream_local_address, params::none},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", field::downstream_local_address_without_port, params::none},
    {"DOWNSTREAM_LOCAL_CLOSE_REASON", field::unset, params::none},
    {"DOWNSTREAM_LOCAL_DNS_SAN", field::unset, params::none},
    {"DOWNSTREAM_LOCAL_IP_SAN", field::unset, params::none},
    {"DOWNSTREAM_LOCAL_PORT", field::downstream_local_port, params::none},
    {"DOWNSTREAM_LOCAL_SUBJECT", field::unset, params::none},
    {"DOWNSTREAM_LOCAL_URI_SAN", field::unset, params::none},
    {"DOWNSTREAM_PEER_CERT", field::unset, params::none},
    {"DOWNSTREAM_PEER_CERT_V_END", field::unset, params::optional},
    {"DOWNSTREAM_PEER_CERT_V_START", field::unset, params::optional},
    {"DOWNSTREAM_PEER_DNS_SAN", field::unset, params::none},
    {"DOWNSTREAM_PEER_FINGERPRINT_1", field::unset, params::none},
    {"DOWNSTREAM_PEER_FINGERPRINT_256", field::unset, params::none},
    {"DOWNSTREAM_PEER_IP_SAN", field::unset, params::none},
    {"DOWNSTREAM_PEER_ISSUER", field::unset, params::none},
    {"DOWNSTREAM_PEER_SERIAL", field::unset, params::none},
    {"DOWNSTREAM_PEER_SUBJECT", field::unset, params::none},
    {"DOWNSTREAM_PEER_URI_SAN", field::unset, params::none},
    {"DOWNSTREAM_REMOTE_ADDRESS", field::downstream_remote_address, params::none},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", field::downstream_remote_address_without_port, params::none},
    {"DOWNSTREAM_REMOTE_PORT", field::downstream_remote_port, params::none},
    {"DOWNSTREAM_TLS_CIPHER", field::unset, params::none},
    {"DOWNSTREAM_TLS_SESSION_ID", field::unset, params::none},
    {"DOWNSTREAM_TLS_VERSION", field::unset, params::none},
    {"DOWNSTREAM_TRANSPORT_FAILURE_REASON", field::unset, params::none},
    {"DOWNSTREAM_WIRE_BYTES_RECEIVED", field::bytes_received, params::none},
    {"DOWNSTREAM_WIRE_BYTES_SENT", field::bytes_sent, params::none},
    {"DURATION", field::duration, params::none},
    {"DYNAMIC_METADATA", field::unset, params::required},
    {"ENVIRONMENT", field::unset, params::required},
    {"FILTER_CHAIN_NAME", field::filter_chain_name, params::none},
    {"FILTER_STATE", field::unset, params::required},
    {"GRPC_STATUS", field::unset, params::optional},
    {"GRPC_STATUS_NUMBER", field::unset, params::none},
    {"HOSTNAME", field::hostname, params::none},
    {"LOCAL_REPLY_BODY", field::unset, params::none},
    {"METADATA", field::unset, params::required},
    {"PACKETS_RETRANSMITTED", field::zero, params::none},
    {"PATH", field::unset, params::optional},
    {"PROTOCOL", field::unset, params::none},
    {"QUERY_PARAM", field::unset, params::required},
    {"REQ", field::unset, params::required},
    {"REQUESTED_SERVER_NAME", field::requested_server_name, params::none},
    {"REQUEST_DURATION", field::unset, params::none},
    {"REQUEST_HEADER", field::unset, params::required},
    {"REQUEST_HEADERS_BYTES", field::zero, params::none},
    {"REQUEST_TX_DURATION", field::unset, params::none},
    {"REQ_WITHOUT_QUERY", field::unset, params::required},
    {"RESP", field::unset, params::required},
    {"RESPONSE_CODE", field::response_code, params::none},
    {"RESPONSE_CODE_DETAILS", field::response_code_details, params::optional},
    {"RESPONSE_DURATION", field::unset, params::none},
    {"RESPONSE_FLAGS", field::response_flags, params::none},
    {"RESPONSE_FLAGS_LONG", field::response_flags_long, params::none},
    {"RESPONSE_HEADER", field::unset, params::required},
    {"RESPONSE_HEADERS_BYTES", field::zero, params::none},
    {"RESPONSE_TRAILER", field::unset, params::required},
    {"RESPONSE_TRAILERS_BYTES", field::zero, params::none},
    {"RESPONSE_TX_DURATION", field::unset, params::none},
    {"ROUNDTRIP_DURATION", field::unset, params::none},
    {"ROUTE_NAME", field::unset, params::none},
    {"START_TIME", field::start_time, params::optional},
    {"STREAM_ID", field::unset, params::none},
    {"TLS_JA3_FINGERPRINT", field::unset, params::none},
    {"TLS_JA4_FINGERPRINT", field::unset, params::none},
    {"TRACE_ID", field::unset, params::none},
    {"TRAILER", field::unset, params::required},
    {"UPSTREAM_CLUSTER", field::upstream_cluster, params::none},
    {"UPSTREAM_CLUSTER_RAW", field::upstream_cluster, params::none},
    {"UPSTREAM_CONNECTION_ID", field::zero, params::none},
    {"UPSTREAM_DECOMPRESSED_HEADER_BYTES_RECEIVED", field::zero, params::none},
    {"UPSTREAM_DECOMPRESSED_HEADER_BYTES_SENT", field::zero, params::none},
    {"UPSTREAM_DETECTED_CLOSE_TYPE", field::unset, params::none},
    {"UPSTREAM_FILTER_STATE", field::unset, params::required},
    {"UPSTREAM_HEADER_BYTES_RECEIVED", field::zero, params::none},
    {"UPSTREAM_HEADER_BYTES_SENT", field::zero, params::none},
    {"UPSTREAM_HOST", field::upstream_host, params::none},
    {"UPSTREAM_HOST_NAME", field::upstream_host, params::none},
    {"UPSTREAM_HOST_NAME_WITHOUT_PORT", field::upstream_host_without_port, params::none},
    {"UPSTREAM_LOCAL_ADDRESS", field::upstream_local_address, params::none},
    {"UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", field::upstream_local_address_without_port, params::none},
    {"UPSTREAM_LOCAL_CLOSE_REASON", field::unset, params::none},
    {"UPSTREAM_LOCAL_PORT", field::upstream_local_port, params::none},
    {"UPSTREAM_METADATA", field::unset, params::required},
    {"UPSTREAM_PEER_CERT", field::unset, params::none},
    {"UPSTREAM_PEER_CERT_V_END", field::unset, params::optional},
    {"UPSTREAM_PEER_CERT_V_START", field::unset, params::optional},
    {"UPSTREAM_PEER_DNS_SAN", field::unset, params::none},
    {"UPSTREAM_PEER_IP_SAN", field::unset, params::none},
    {"UPSTREAM_PEER_ISSUER", field::unset, params::none},
    {"UPSTREAM_PEER_SUBJECT", field::unset, params::none},
    {"UPSTREAM_PEER_URI_SAN", field::unset, params::none},
    {"UPSTREAM_PROTOCOL", field::unset, params::none},
    {"UPSTREAM_REMOTE_ADDRESS", field::upstream_host, params::none},
    {"UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", field::upstream_host_without_port, params::none},
    {"UPSTREAM_REMOTE_PORT", field::upstream_host_port, params::none},
    {"UPSTREAM_REQUEST_ATTEMPT_COUNT", field::attempt_count, params::none},
    {"UPSTREAM_TLS_CIPHER", field::unset, params::none},
    {"UPSTREAM_TLS_SESSION_ID", field::unset, params::none},
    {"UPSTREAM_TLS_VERSION", field::unset, params::none},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", field::upstream_transport_failure_reason, params::none},
    {"UPSTREAM_WIRE_BYTES_RECEIVED", field::bytes_sent, params::none},
    {"UPSTREAM_WIRE_BYTES_SENT", field::bytes_received, params::none},
    {"VIRTUAL_CLUSTER_NAME", field::unset, params::none},
};

const operator_spec* find_operator(std::string_view name) {
  const auto it = std::lower_bound(std::begin(operators), std::end(operators), name,
                                   [](const operator_spec& s, std::string_view n) { return s.name < n; });
  return it != std::end(operators) && it->name == name ? &*it : nullptr;
}

}  // namespace

// START_TIME's format: strftime text with Envoy's additions, split at compile time. Envoy
// (common/common/utility.cc DateFormatter) adds %[1-9]f / %f (fractional seconds, 9 digits by
// default) and %s (seconds since the epoch); its default "%Y-%m-%dT%H:%M:%E3SZ" uses absl's
// %E<n>S (seconds with n fractional digits). Times are UTC, as Envoy renders them.
struct formatter::time_format {
  enum class kind : std::uint8_t { strftime, fraction, seconds_with_fraction, epoch_seconds };
  struct segment {
    kind k;
    std::string text;  // strftime
    int digits = 0;    // fraction, seconds_with_fraction
  };
  std::vector<segment> segments;

  static time_format parse(std::string_view f) {
    time_format out;
    std::string chunk;
    auto flush = [&] {
      if (!chunk.empty()) out.segments.push_back({kind::strftime, std::move(chunk), 0});
      chunk.clear();
    };
    for (std::size_t i = 0; i < f.size(); ++i) {
      if (f[i] != '%' || i + 1 >= f.size()) {
        chunk.push_back(f[i]);
        continue;
      }
      const char n = f[i + 1];
      if (n == 'f') {
        flush();
        out.segments.push_back({kind::fraction, {}, 9});
        ++i;
      } else if (n >= '1' && n <= '9' && i + 2 < f.size() && f[i + 2] == 'f') {
        flush();
        out.segments.push_back({kind::fraction, {}, n - '0'});
        i += 2;
      } else if (n == 's') {
        flush();
        out.segments.push_back({kind::epoch_seconds, {}, 0});
        ++i;
      } else if (n == 'E' && i + 3 < f.size() && f[i + 2] >= '1' && f[i + 2] <= '9' && f[i + 3] == 'S') {
        flush();
        out.segments.push_back({kind::seconds_with_fraction, {}, f[i + 2] - '0'});
        i += 3;
      } else {
        chunk.push_back('%');
        chunk.push_back(n);
        ++i;
      }
    }
    flush();
    return out;
  }

  void render(std::chrono::system_clock::time_point t, std::string& out) const {
    using namespace std::chrono;
    const auto since = t.time_since_epoch();
    const auto secs = floor<seconds>(since);
    const auto nanos = duration_cast<nanoseconds>(since - secs).count();
    const std::time_t tt = static_cast<std::time_t>(secs.count());
    std::tm tm{};
    gmtime_r(&tt, &tm);
    char buf[128];
    for (const segment& s : segments) {
      switch (s.k) {
        case kind::strftime: {
          const std::size_t n = std::strftime(buf, sizeof(buf), s.text.c_str(), &tm);
          out.append(buf, n);
          break;
        }
        case kind::seconds_with_fraction:
          out.push_back(static_cast<char>('0' + tm.tm_sec / 10));
          out.push_back(static_cast<char>('0' + tm.tm_sec % 10));
          out.push_back('.');
          [[fallthrough]];
        case kind::fraction: {
          // The first `digits` digits of the nanoseconds, zero-padded (truncated, not rounded).
          char digits[9];
          long long v = nanos;
          for (int i = 8; i >= 0; --i) {
            digits[i] = static_cast<char>('0' + v % 10);
            v /= 10;
          }
          out.append(digits, static_cast<std::size_t>(s.digits));
          break;
        }
        case kind::epoch_seconds: {
          auto* end = std::to_chars(buf, buf + sizeof(buf), secs.count()).ptr;
          out.append(buf, end);
          break;
        }
      }
    }
  }
};

struct formatter::piece {
  field what = field::literal;
  std::string text;  // the literal, or the operator's text (for messages)
  std::optional<std::size_t> max_length;
  std::shared_ptr<const time_format> time;
};

struct formatter::json_node {
  enum class kind : std::uint8_t { object, format, literal };
  kind k = kind::object;
  std::vector<std::pair<std::string, json_node>> members;  // keys already escaped
  std::vector<piece> pieces;
  bool single_operator = false;  // the value is exactly one operator: typed output
  std::string literal;
};

formatter::formatter() = default;
formatter::~formatter() = default;

namespace {

// Splits `text` into pieces. Grammar as Envoy's parser: '%' NAME ['(' PARAMS ')'] [':' LENGTH] '%'
// with NAME in [A-Z0-9_]+ and PARAMS free of ')'.
bool parse_pieces(std::string_view text, std::vector<formatter::piece>& out, std::uint32_t& needs, std::string& error,
                  const std::string& hostname) {
  std::string literal;
  auto flush = [&] {
    if (!literal.empty()) {
      formatter::piece p;
      p.text = std::move(literal);
      out.push_back(std::move(p));
      literal.clear();
    }
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '%') {
      literal.push_back(text[i]);
      continue;
    }
    if (i + 1 < text.size() && text[i + 1] == '%') {
      literal.push_back('%');
      ++i;
      continue;
    }
    const std::size_t start = i;
    std::size_t j = i + 1;
    while (j < text.size() && ((text[j] >= 'A' && text[j] <= 'Z') || (text[j] >= '0' && text[j] <= '9') || text[j] == '_')) {
      ++j;
    }
    const std::string_view name = text.substr(i + 1, j - i - 1);
    std::string_view params_text;
    bool has_params = false;
    if (j < text.size() && text[j] == '(') {
      const std::size_t close = text.find(')', j);
      if (close == std::string_view::npos) {
        error = "unterminated '(' in command operator at position " + std::to_string(start);
        return false;
      }
      params_text = text.substr(j + 1, close - j - 1);
      has_params = true;
      j = close + 1;
    }
    std::optional<std::size_t> max_length;
    if (j < text.size() && text[j] == ':') {
      std::size_t k = j + 1;
      std::size_t n = 0;
      while (k < text.size() && text[k] >= '0' && text[k] <= '9') n = n * 10 + static_cast<std::size_t>(text[k++] - '0');
      if (k == j + 1) {
        error = "expected a length after ':' in command operator at position " + std::to_string(start);
        return false;
      }
      max_length = n;
      j = k;
    }
    if (name.empty() || j >= text.size() || text[j] != '%') {
      error = "no valid command operator at position " + std::to_string(start) + " ('" +
              std::string(text.substr(start, std::min<std::size_t>(32, text.size() - start))) +
              "'); a literal '%' is written '%%'";
      return false;
    }
    const operator_spec* spec = find_operator(name);
    if (spec == nullptr) {
      error = "unknown command operator '" + std::string(name) + "' at position " + std::to_string(start);
      return false;
    }
    if (spec->p == params::none && has_params) {
      error = "command operator '" + std::string(name) + "' takes no parameters";
      return false;
    }
    if (spec->p == params::required && (!has_params || params_text.empty())) {
      error = "command operator '" + std::string(name) + "' needs parameters, e.g. " + std::string(name) + "(...)";
      return false;
    }
    flush();
    formatter::piece p;
    p.what = spec->what;
    p.text = std::string(text.substr(start, j + 1 - start));
    p.max_length = max_length;
    if (spec->what == field::start_time) {
      p.time = std::make_shared<const formatter::time_format>(
          formatter::time_format::parse(has_params && !params_text.empty() ? params_text : "%Y-%m-%dT%H:%M:%E3SZ"));
    } else if (spec->what == field::hostname) {
      p.what = field::literal;
      p.text = hostname.empty() ? "-" : hostname;
    }
    switch (spec->what) {
      case field::downstream_local_address:
      case field::downstream_local_address_without_port:
      case field::downstream_local_port: needs |= needs_downstream_local; break;
      case field::downstream_remote_address:
      case field::downstream_remote_address_without_port:
      case field::downstream_remote_port: needs |= needs_downstream_remote; break;
      case field::upstream_local_address:
      case field::upstream_local_address_without_port:
      case field::upstream_local_port: needs |= needs_upstream_local; break;
      default: break;
    }
    out.push_back(std::move(p));
    i = j;
  }
  flush();
  return true;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return {};
  return buf;
}

// One operator's value for a record.
struct value {
  enum class kind : std::uint8_t { unset, number, text } k = kind::unset;
  std::uint64_t number = 0;
  std::string_view text;  // into the record or `scratch`
};

value get(const record& r, const formatter::piece& p, std::string& scratch) {
  value v;
  auto number = [&](std::uint64_t n) {
    v.k = value::kind::number;
    v.number = n;
    return v;
  };
  auto text = [&](std::string_view s) {
    if (!s.empty()) {
      v.k = value::kind::text;
      v.text = s;
    }
    return v;
  };
  auto addr = [&](const address& a, int form) {  // 0 with port, 1 without, 2 port only
    if (!a.set) return v;
    if (form == 2) return number(a.port);
    scratch.clear();
    a.append_to(scratch, form == 0);
    return text(scratch);
  };
  switch (p.what) {
    case field::literal: return text(p.text);
    case field::start_time:
      scratch.clear();
      p.time->render(r.start_time, scratch);
      return text(scratch);
    case field::duration:
      return number(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::milliseconds>(r.ended - r.started).count()));
    case field::bytes_received: return number(r.bytes_received);
    case field::bytes_sent: return number(r.bytes_sent);
    case field::downstream_remote_address: return addr(r.downstream_remote, 0);
    case field::downstream_remote_address_without_port: return addr(r.downstream_remote, 1);
    case field::downstream_remote_port: return addr(r.downstream_remote, 2);
    case field::downstream_local_address: return addr(r.downstream_local, 0);
    case field::downstream_local_address_without_port: return addr(r.downstream_local, 1);
    case field::downstream_local_port: return addr(r.downstream_local, 2);
    case field::upstream_host: return addr(r.upstream_host, 0);
    case field::upstream_host_without_port: return addr(r.upstream_host, 1);
    case field::upstream_host_port: return addr(r.upstream_host, 2);
    case field::upstream_local_address: return addr(r.upstream_local, 0);
    case field::upstream_local_address_without_port: return addr(r.upstream_local, 1);
    case field::upstream_local_port: return addr(r.upstream_local, 2);
    case field::upstream_cluster: return r.upstream_cluster_owner ? text(r.upstream_cluster) : v;
    case field::upstream_transport_failure_reason: {
      if (r.upstream_connect_errno == 0) return v;
      // Envoy's connection reports "delayed connect error: <errno>"; the formatter replaces
      // spaces with '_' (as seen in Istio logs: "delayed_connect_error:_111").
      scratch = "delayed_connect_error:_" + std::to_string(r.upstream_connect_errno);
      return text(scratch);
    }
    case field::requested_server_name: return text(r.requested_server_name);
    case field::response_flags:
    case field::response_flags_long: {
      if (r.response_flags == 0) return v;
      scratch.clear();
      for (std::size_t i = 0; i < static_cast<std::size_t>(response_flag::count); ++i) {
        if ((r.response_flags & (1u << i)) == 0) continue;
        if (!scratch.empty()) scratch.push_back(',');
        const auto f = static_cast<response_flag>(i);
        scratch += p.what == field::response_flags ? short_name(f) : long_name(f);
      }
      return text(scratch);
    }
    case field::response_code: return number(0);
    case field::response_code_details: return text(r.response_code_details);
    case field::connection_termination_details: return text(r.connection_termination_details);
    case field::connection_id: return number(r.connection_id);
    case field::filter_chain_name: return r.filter_chain_name ? text(*r.filter_chain_name) : v;
    case field::attempt_count: return number(r.connect_attempts);
    case field::hostname: return v;  // replaced by a literal at compile time
    case field::zero: return number(0);
    case field::unset: return v;
  }
  return v;
}

void append_number(std::string& out, std::uint64_t n) {
  char buf[24];
  auto* end = std::to_chars(buf, buf + sizeof(buf), n).ptr;
  out.append(buf, end);
}

// Appends the pieces as text; unset values as "-" (or nothing with omit_empty). `json` escapes
// what is appended.
void render_pieces(const std::vector<formatter::piece>& pieces, const record& r, bool omit_empty, bool json,
                   std::string& out, std::string& scratch) {
  for (const formatter::piece& p : pieces) {
    const value v = get(r, p, scratch);
    switch (v.k) {
      case value::kind::unset:
        if (!omit_empty) out.push_back('-');
        break;
      case value::kind::number: append_number(out, v.number); break;
      case value::kind::text: {
        std::string_view s = v.text;
        if (p.max_length && s.size() > *p.max_length) s = s.substr(0, *p.max_length);
        if (json) {
          append_json_escaped(out, s);
        } else {
          out.append(s);
        }
        break;
      }
    }
  }
}

}  // namespace

std::shared_ptr<const formatter> formatter::compile(const format_config& config, std::string& error) {
  auto f = std::make_shared<formatter>();
  f->omit_empty_ = config.omit_empty_values;
  const std::string hostname = host_name();
  switch (config.type) {
    case format_config::kind::envoy_default:
      if (!parse_pieces(envoy_default_format, f->text_, f->needs_, error, hostname)) return nullptr;
      return f;
    case format_config::kind::text:
      if (!parse_pieces(config.text, f->text_, f->needs_, error, hostname)) return nullptr;
      return f;
    case format_config::kind::json: break;
  }
  if (config.json.type != json_value::kind::object) {
    error = "json_format must be an object";
    return nullptr;
  }
  // Recursive: nested objects become nested JSON objects, as in Envoy.
  auto build = [&](auto& self, const json_value& in, json_node& out, const std::string& path) -> bool {
    switch (in.type) {
      case json_value::kind::object:
        out.k = json_node::kind::object;
        for (const auto& [key, member] : in.members) {
          std::string escaped;
          append_json_escaped(escaped, key);
          json_node child;
          if (!self(self, member, child, path.empty() ? key : path + "." + key)) return false;
          out.members.emplace_back(std::move(escaped), std::move(child));
        }
        return true;
      case json_value::kind::literal:
        out.k = json_node::kind::literal;
        out.literal = in.text;
        return true;
      case json_value::kind::format_string: {
        out.k = json_node::kind::format;
        std::string e;
        if (!parse_pieces(in.text, out.pieces, f->needs_, e, hostname)) {
          error = "json_format." + path + ": " + e;
          return false;
        }
        out.single_operator = out.pieces.size() == 1 && out.pieces[0].what != field::literal;
        return true;
      }
    }
    return false;
  };
  f->json_ = std::make_unique<json_node>();
  if (!build(build, config.json, *f->json_, "")) return nullptr;
  return f;
}

void formatter::render(const record& r, std::string& out) const {
  std::string scratch;
  if (!json_) {
    render_pieces(text_, r, omit_empty_, false, out, scratch);
    return;
  }
  // JSON: a value that is exactly one operator keeps its type (number, string, null when unset,
  // as Envoy's json_format); anything else is a string.
  auto emit = [&](auto& self, const json_node& n) -> void {
    switch (n.k) {
      case json_node::kind::literal: out += n.literal; return;
      case json_node::kind::format:
        if (n.single_operator) {
          const value v = get(r, n.pieces[0], scratch);
          if (v.k == value::kind::number) {
            append_number(out, v.number);
          } else if (v.k == value::kind::text) {
            std::string_view s = v.text;
            const auto& max = n.pieces[0].max_length;
            if (max && s.size() > *max) s = s.substr(0, *max);
            out.push_back('"');
            append_json_escaped(out, s);
            out.push_back('"');
          } else {
            out += "null";
          }
          return;
        }
        out.push_back('"');
        render_pieces(n.pieces, r, omit_empty_, true, out, scratch);
        out.push_back('"');
        return;
      case json_node::kind::object: {
        out.push_back('{');
        bool first = true;
        for (const auto& [key, child] : n.members) {
          // omit_empty_values: members whose single operator is unset are left out.
          if (omit_empty_ && child.k == json_node::kind::format && child.single_operator &&
              get(r, child.pieces[0], scratch).k == value::kind::unset) {
            continue;
          }
          if (!first) out.push_back(',');
          first = false;
          out.push_back('"');
          out += key;
          out += "\":";
          self(self, child);
        }
        out.push_back('}');
        return;
      }
    }
  };
  emit(emit, *json_);
  out.push_back('\n');
}

}  // namespace ewgw::accesslog
