// Access log configuration as plain data: what xds/ decodes from Envoy's AccessLog messages
// (envoy.config.accesslog.v3.AccessLog with the file, stdout or stderr logger) and what
// accesslog::compile() turns into a formatter. No protobuf here; xds/config.h embeds these.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace ewgw::accesslog {

// One value of SubstitutionFormatString.json_format (a google.protobuf.Struct): a format string
// (command operators allowed), a nested object, or a literal (number, bool, null) copied as is.
struct json_value {
  enum class kind : std::uint8_t { format_string, object, literal };
  kind type = kind::format_string;
  std::string text;  // the format string, or the literal's JSON text
  std::vector<std::pair<std::string, json_value>> members;  // objects only, in key order
  bool operator==(const json_value&) const = default;
};

// envoy.config.core.v3.SubstitutionFormatString (text_format, text_format_source inline, or
// json_format), or Envoy's default format when none was given.
struct format_config {
  enum class kind : std::uint8_t { envoy_default, text, json };
  kind type = kind::envoy_default;
  std::string text;
  json_value json;  // kind::json: an object
  // omit_empty_values: unset values render as "" (text) or are left out (JSON) instead of "-" /
  // null.
  bool omit_empty_values = false;
  bool operator==(const format_config&) const = default;
};

// envoy.config.accesslog.v3.AccessLogFilter, the kinds ewgw evaluates.
struct filter_config {
  enum class kind : std::uint8_t { response_flags, all_of, any_of };
  kind type = kind::response_flags;
  // response_flag_filter.flags (short names, e.g. "NR"); empty matches any flag set.
  std::vector<std::string> flags;
  std::vector<filter_config> children;  // and_filter / or_filter
  bool operator==(const filter_config&) const = default;
};

enum class destination : std::uint8_t { file, standard_output, standard_error };

// One AccessLog entry.
struct logger_config {
  std::string name;  // AccessLog.name, for messages
  destination where = destination::file;
  std::string path;  // destination::file; "/dev/stdout" and "/dev/stderr" write to fd 1 and 2
  format_config format;
  bool has_filter = false;
  filter_config filter;
  bool operator==(const logger_config&) const = default;
};

// The access logs of one tcp_proxy or listener. istiod repeats the same list on every filter
// chain (thousands on one listener), so decoding shares one copy between equal lists; equality
// compares content.
struct logger_list {
  std::shared_ptr<const std::vector<logger_config>> items;

  bool empty() const { return !items || items->empty(); }
  bool operator==(const logger_list& o) const {
    if (empty() || o.empty()) return empty() == o.empty();
    return items == o.items || *items == *o.items;
  }
};

}  // namespace ewgw::accesslog
