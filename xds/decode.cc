#include "xds/decode.h"

#include <arpa/inet.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <initializer_list>
#include <map>
#include <set>
#include <sstream>

#include "accesslog/format.h"
#include "envoy/config/accesslog/v3/accesslog.pb.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "envoy/extensions/access_loggers/file/v3/file.pb.h"
#include "envoy/extensions/access_loggers/stream/v3/stream.pb.h"
#include "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.pb.h"
#include "envoy/extensions/filters/network/sni_cluster/v3/sni_cluster.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "udpa/type/v1/typed_struct.pb.h"
#include "xds/decode_internal.h"
#include "xds/type/v3/typed_struct.pb.h"
#include "xds/yaml_to_json.h"

namespace ewgw::xds {

namespace pb = google::protobuf;
namespace bootstrap_v3 = envoy::config::bootstrap::v3;
namespace listener_v3 = envoy::config::listener::v3;
namespace cluster_v3 = envoy::config::cluster::v3;
namespace endpoint_v3 = envoy::config::endpoint::v3;
namespace core_v3 = envoy::config::core::v3;
namespace tcp_proxy_v3 = envoy::extensions::filters::network::tcp_proxy::v3;
namespace accesslog_v3 = envoy::config::accesslog::v3;
namespace file_v3 = envoy::extensions::access_loggers::file::v3;
namespace stream_v3 = envoy::extensions::access_loggers::stream::v3;

std::optional<ip_address> ip_address::parse(const std::string& text) {
  ip_address a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) return a;
  if (inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) {
    a.ipv6 = true;
    return a;
  }
  return std::nullopt;
}

std::string ip_address::str() const {
  char text[INET6_ADDRSTRLEN] = {};
  inet_ntop(ipv6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof text);
  return text;
}

void diagnostics::error(std::string path, std::string_view why) {
  path += ": ";
  path += why;
  errors.push_back(std::move(path));
}

void diagnostics::notice(std::string path, std::string_view why) {
  if (!keep_notices) return;
  path += ": ";
  path += why;
  notices.push_back(std::move(path));
}

void diagnostics::unsupported_setting(std::string path, std::string_view why) {
  path += ": ";
  path += why;
  (collect_unsupported ? unsupported : errors).push_back(std::move(path));
}

namespace internal {

std::string join(const std::string& path, std::string_view field) {
  if (path.empty()) return std::string(field);
  std::string p = path;
  p.push_back('.');
  p += field;
  return p;
}

std::string index(const std::string& path, std::size_t i) { return path + "[" + std::to_string(i) + "]"; }

void check_fields(const pb::Message& msg, std::initializer_list<std::string_view> applied,
                  std::initializer_list<std::string_view> ignored, const std::string& path, diagnostics& diag) {
  // Called for nearly every message of every resource: one list per thread, reused, rather than
  // a vector allocated and freed per message.
  thread_local std::vector<const pb::FieldDescriptor*> set;
  set.clear();
  msg.GetReflection()->ListFields(msg, &set);
  for (const pb::FieldDescriptor* f : set) {
    const std::string& name = f->name();
    if (std::find(applied.begin(), applied.end(), name) != applied.end()) continue;
    if (std::find(ignored.begin(), ignored.end(), name) != ignored.end()) {
      if (diag.keep_notices) diag.notice(join(path, name), "accepted and ignored (does not affect routing)");
      continue;
    }
    diag.unsupported_setting(join(path, name),
                             "not supported: it would change how connections are routed, and ewgw does not implement it");
  }
}

// Durations are clamped to 10 years: a longer timeout is "never" in practice, and deadlines
// computed as now + duration in nanoseconds would overflow past about 292 years.
constexpr std::int64_t max_duration_ms = 10LL * 365 * 24 * 3600 * 1000;

milliseconds to_ms(const pb::Duration& d) {
  const std::int64_t ms = pb::util::TimeUtil::DurationToMilliseconds(d);
  return milliseconds(std::clamp<std::int64_t>(ms, 0, max_duration_ms));
}

// A duration field: negative values are errors; sub-millisecond positive values round up to
// 1 ms rather than truncating to 0, which often means "disabled".
bool decode_duration(const pb::Duration& d, const std::string& path, diagnostics& diag, milliseconds& out) {
  if (d.seconds() < 0 || d.nanos() < 0) {
    diag.error(path, "must not be negative");
    return false;
  }
  out = to_ms(d);
  if (out.count() == 0 && (d.seconds() != 0 || d.nanos() != 0)) out = milliseconds(1);
  return true;
}

bool decode_socket_address(const core_v3::Address& address, const std::string& path, diagnostics& diag,
                           socket_address& out) {
  if (!address.has_socket_address()) {
    diag.error(path, "only socket_address is supported (no pipe or internal addresses)");
    return false;
  }
  const core_v3::SocketAddress& sa = address.socket_address();
  const std::string sa_path = join(path, "socket_address");
  check_fields(sa, {"address", "port_value", "protocol", "ipv4_compat"}, {}, sa_path, diag);
  if (sa.protocol() != core_v3::SocketAddress::TCP) {
    diag.error(join(sa_path, "protocol"), "only TCP is supported");
    return false;
  }
  if (!is_ip_literal(sa.address())) {
    diag.error(join(sa_path, "address"), "'" + sa.address() + "' is not a numeric IPv4 or IPv6 address");
    return false;
  }
  if (sa.port_value() > 65535) {
    diag.error(join(sa_path, "port_value"), std::to_string(sa.port_value()) + " is not a valid port");
    return false;
  }
  out.address = sa.address();
  out.port = static_cast<std::uint16_t>(sa.port_value());
  out.ipv4_compat = sa.ipv4_compat();
  return true;
}

// Telemetry-only network filters that Istio puts on gateway chains. They do not affect routing;
// their metrics are produced natively by the observability module.
bool is_telemetry_filter(std::string_view name, std::string_view type_url) {
  static constexpr std::string_view names[] = {"istio.stats", "istio.metadata_exchange", "istio.stackdriver",
                                               "envoy.filters.network.metadata_exchange"};
  static constexpr std::string_view types[] = {"stats.PluginConfig",
                                               "envoy.tcp.metadataexchange.config.MetadataExchange",
                                               "stackdriver.config.v1alpha1.PluginConfig"};
  for (std::string_view n : names) {
    if (name == n) return true;
  }
  for (std::string_view t : types) {
    if (type_url.ends_with("/" + std::string(t))) return true;
  }
  return false;
}

// The type URL an Any carries, looking through the TypedStruct wrappers (ours from yaml_to_json,
// or udpa/xds TypedStruct as Istio sends them).
std::string effective_type_url(const pb::Any& any) {
  if (any.Is<::xds::type::v3::TypedStruct>()) {
    ::xds::type::v3::TypedStruct ts;
    if (any.UnpackTo(&ts)) return ts.type_url();
  }
  if (any.Is<::udpa::type::v1::TypedStruct>()) {
    ::udpa::type::v1::TypedStruct ts;
    if (any.UnpackTo(&ts)) return ts.type_url();
  }
  return any.type_url();
}

bool is_ip_literal(const std::string& s) { return ip_address::parse(s).has_value(); }

// Envoy's rule (filter_chain_manager_impl.cc): a server name is exact, or a wildcard starting
// with "*." matching any name ending in the rest (at any depth); other uses of '*' are rejected.
bool valid_server_name_pattern(std::string_view name) {
  if (name.empty()) return false;
  const std::size_t star = name.find('*');
  if (star == std::string_view::npos) return true;
  return star == 0 && name.size() > 2 && name[1] == '.' && name.find('*', 1) == std::string_view::npos;
}

void decode_filter_chain_match(const listener_v3::FilterChainMatch& m, const std::string& path, diagnostics& diag,
                               filter_chain_match& out, server_name_list& server_names) {
  check_fields(m, {"destination_port", "server_names", "transport_protocol", "application_protocols", "source_type"}, {},
               path, diag);
  if (m.source_type() != listener_v3::FilterChainMatch::ANY) {
    diag.error(join(path, "source_type"), "not supported: only ANY");
  }
  if (m.has_destination_port()) {
    if (m.destination_port().value() == 0 || m.destination_port().value() > 65535) {
      diag.error(join(path, "destination_port"), "must be 1..65535");
    } else {
      out.destination_port = static_cast<std::uint16_t>(m.destination_port().value());
    }
  }
  for (int i = 0; i < m.server_names_size(); ++i) {
    const std::string& name = m.server_names(i);
    if (!valid_server_name_pattern(name)) {
      diag.error(index(join(path, "server_names"), i),
                 "'" + name + "': partial wildcards are not supported (use an exact name or '*.suffix')");
      continue;
    }
    server_names.push_back(ascii_lower(name));
  }
  if (!m.transport_protocol().empty()) {
    if (m.transport_protocol() != "tls" && m.transport_protocol() != "raw_buffer") {
      diag.error(join(path, "transport_protocol"),
                 "'" + m.transport_protocol() + "' is never detected: tls_inspector sets 'tls' or 'raw_buffer'");
    }
    // One copy of each value for all chains (a 10,000-chain listener sets "tls" on every one).
    static const shared_string tls("tls");
    static const shared_string raw_buffer("raw_buffer");
    out.transport_protocol = m.transport_protocol() == "tls" ? tls
                             : m.transport_protocol() == "raw_buffer" ? raw_buffer
                                                                      : shared_string(m.transport_protocol());
  }
  out.application_protocols = std::vector<std::string>(m.application_protocols().begin(), m.application_protocols().end());
}

// ---------------------------------------------------------------------------------------------
// Access logs (envoy.config.accesslog.v3.AccessLog on tcp_proxy and on the Listener).
//
// An access log cannot change where or whether a connection is routed, so a logger or filter
// ewgw does not implement is dropped with a notice rather than refusing the listener (istiod
// would otherwise see every LDS update NACKed for a telemetry setting). What ewgw does
// implement is validated as Envoy does: an unknown command operator, an unknown response flag
// or a file logger without a path is an error.

// Listeners repeat one access_log list on each of their (thousands of) chains: decoded lists
// are shared by their serialized bytes within one listener.
using access_log_cache = std::map<std::string, accesslog::logger_list, std::less<>>;

bool decode_json_format(const pb::Struct& s, const std::string& path, diagnostics& diag, accesslog::json_value& out);

bool decode_json_value(const pb::Value& v, const std::string& path, diagnostics& diag, accesslog::json_value& out) {
  switch (v.kind_case()) {
    case pb::Value::kStringValue:
      out.type = accesslog::json_value::kind::format_string;
      out.text = v.string_value();
      return true;
    case pb::Value::kStructValue: return decode_json_format(v.struct_value(), path, diag, out);
    case pb::Value::kNumberValue:
    case pb::Value::kBoolValue:
    case pb::Value::kNullValue: {
      out.type = accesslog::json_value::kind::literal;
      std::string json;
      (void)pb::util::MessageToJsonString(v, &json);
      out.text = json;
      return true;
    }
    default:
      diag.notice(path, "lists are not supported in json_format; this access log is ignored");
      return false;
  }
}

bool decode_json_format(const pb::Struct& s, const std::string& path, diagnostics& diag, accesslog::json_value& out) {
  out.type = accesslog::json_value::kind::object;
  // google.protobuf.Struct is a map without order: keys are sorted so equal configurations
  // render identical lines.
  std::vector<std::string> keys;
  for (const auto& [key, value] : s.fields()) keys.push_back(key);
  std::sort(keys.begin(), keys.end());
  for (const std::string& key : keys) {
    accesslog::json_value member;
    if (!decode_json_value(s.fields().at(key), join(path, key), diag, member)) return false;
    out.members.emplace_back(key, std::move(member));
  }
  return true;
}

// Configurations still use the deprecated format fields (SubstitutionFormatString.text_format,
// FileAccessLog.format / json_format / typed_json_format); Envoy accepts them, so does ewgw.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"

// envoy.config.core.v3.SubstitutionFormatString. False: the log cannot be used (noted or an
// error in `diag`).
bool decode_substitution_format(const core_v3::SubstitutionFormatString& f, const std::string& path, diagnostics& diag,
                                accesslog::format_config& out) {
  // formatters only add command operators (%CEL%, %METADATA%, %REQ_WITHOUT_QUERY%); their names
  // are known to the parser and render as unset, so the extensions themselves are not needed.
  check_fields(f, {"text_format", "json_format", "text_format_source", "omit_empty_values", "json_format_options"},
               {"content_type", "formatters"}, path, diag);
  out.omit_empty_values = f.omit_empty_values();
  if (f.has_json_format()) {
    out.type = accesslog::format_config::kind::json;
    return decode_json_format(f.json_format(), join(path, "json_format"), diag, out.json);
  }
  if (f.has_text_format_source()) {
    const core_v3::DataSource& ds = f.text_format_source();
    const std::string dpath = join(path, "text_format_source");
    out.type = accesslog::format_config::kind::text;
    if (ds.has_inline_string()) {
      out.text = ds.inline_string();
    } else if (ds.has_inline_bytes()) {
      out.text = ds.inline_bytes();
    } else if (ds.has_filename()) {
      std::ifstream in(ds.filename(), std::ios::binary);
      if (!in) {
        diag.error(join(dpath, "filename"), "cannot read '" + ds.filename() + "'");
        return false;
      }
      std::ostringstream text;
      text << in.rdbuf();
      out.text = text.str();
    } else if (ds.has_environment_variable()) {
      const char* v = std::getenv(ds.environment_variable().c_str());
      if (v == nullptr) {
        diag.error(join(dpath, "environment_variable"), "'" + ds.environment_variable() + "' is not set");
        return false;
      }
      out.text = v;
    } else {
      diag.error(dpath, "is empty");
      return false;
    }
    return true;
  }
  if (f.format_case() == core_v3::SubstitutionFormatString::kTextFormat) {
    out.type = accesslog::format_config::kind::text;
    out.text = f.text_format();
  }
  return true;
}

bool decode_access_log_filter(const accesslog_v3::AccessLogFilter& f, const std::string& path, diagnostics& diag,
                              accesslog::filter_config& out) {
  switch (f.filter_specifier_case()) {
    case accesslog_v3::AccessLogFilter::kResponseFlagFilter: {
      out.type = accesslog::filter_config::kind::response_flags;
      for (int i = 0; i < f.response_flag_filter().flags_size(); ++i) {
        const std::string& flag = f.response_flag_filter().flags(i);
        accesslog::response_flag parsed;
        if (!accesslog::parse_flag(flag, parsed)) {
          diag.error(index(join(path, "response_flag_filter.flags"), static_cast<std::size_t>(i)),
                     "'" + flag + "' is not a response flag");
          return false;
        }
        out.flags.push_back(flag);
      }
      return true;
    }
    case accesslog_v3::AccessLogFilter::kAndFilter:
    case accesslog_v3::AccessLogFilter::kOrFilter: {
      const bool all = f.has_and_filter();
      out.type = all ? accesslog::filter_config::kind::all_of : accesslog::filter_config::kind::any_of;
      const auto& children = all ? f.and_filter().filters() : f.or_filter().filters();
      const std::string cpath = join(path, all ? "and_filter.filters" : "or_filter.filters");
      for (int i = 0; i < children.size(); ++i) {
        accesslog::filter_config child;
        if (!decode_access_log_filter(children[i], index(cpath, static_cast<std::size_t>(i)), diag, child)) return false;
        out.children.push_back(std::move(child));
      }
      return true;
    }
    default: {
      std::vector<const pb::FieldDescriptor*> set;
      f.GetReflection()->ListFields(f, &set);
      diag.notice(join(path, set.empty() ? "filter" : set[0]->name()),
                  "access log filter not supported (ewgw evaluates response_flag_filter, and_filter and or_filter); "
                  "this access log is ignored");
      return false;
    }
  }
}

// One AccessLog. False: not used (a notice or an error says why).
bool decode_access_log(const accesslog_v3::AccessLog& al, const std::string& path, diagnostics& diag,
                       accesslog::logger_config& out) {
  check_fields(al, {"name", "typed_config", "filter"}, {}, path, diag);
  out.name = al.name();
  const std::string tpath = join(path, "typed_config");
  if (!al.has_typed_config()) {
    diag.error(tpath, "is required");
    return false;
  }
  const pb::Any& any = al.typed_config();
  if (any.Is<file_v3::FileAccessLog>()) {
    file_v3::FileAccessLog fal;
    if (!any.UnpackTo(&fal)) {
      diag.error(tpath, "cannot decode FileAccessLog");
      return false;
    }
    check_fields(fal, {"path", "log_format", "format", "json_format", "typed_json_format"}, {}, tpath, diag);
    if (fal.path().empty()) {
      diag.error(join(tpath, "path"), "must not be empty");
      return false;
    }
    out.where = accesslog::destination::file;
    out.path = fal.path();
    switch (fal.access_log_format_case()) {
      case file_v3::FileAccessLog::kLogFormat:
        if (!decode_substitution_format(fal.log_format(), join(tpath, "log_format"), diag, out.format)) return false;
        break;
      case file_v3::FileAccessLog::kFormat:  // deprecated text form
        out.format.type = accesslog::format_config::kind::text;
        out.format.text = fal.format();
        break;
      case file_v3::FileAccessLog::kJsonFormat:  // deprecated JSON forms
        out.format.type = accesslog::format_config::kind::json;
        if (!decode_json_format(fal.json_format(), join(tpath, "json_format"), diag, out.format.json)) return false;
        break;
      case file_v3::FileAccessLog::kTypedJsonFormat:
        out.format.type = accesslog::format_config::kind::json;
        if (!decode_json_format(fal.typed_json_format(), join(tpath, "typed_json_format"), diag, out.format.json)) {
          return false;
        }
        break;
      case file_v3::FileAccessLog::ACCESS_LOG_FORMAT_NOT_SET: break;
    }
  } else if (any.Is<stream_v3::StdoutAccessLog>() || any.Is<stream_v3::StderrAccessLog>()) {
    const bool out_stream = any.Is<stream_v3::StdoutAccessLog>();
    stream_v3::StdoutAccessLog sout;
    stream_v3::StderrAccessLog serr;
    const bool unpacked = out_stream ? any.UnpackTo(&sout) : any.UnpackTo(&serr);
    if (!unpacked) {
      diag.error(tpath, "cannot decode the stream access log");
      return false;
    }
    const pb::Message& msg = out_stream ? static_cast<const pb::Message&>(sout) : serr;
    check_fields(msg, {"log_format"}, {}, tpath, diag);
    out.where = out_stream ? accesslog::destination::standard_output : accesslog::destination::standard_error;
    const bool has_format = out_stream ? sout.has_log_format() : serr.has_log_format();
    if (has_format &&
        !decode_substitution_format(out_stream ? sout.log_format() : serr.log_format(), join(tpath, "log_format"), diag,
                                    out.format)) {
      return false;
    }
  } else {
    diag.notice(path, "access logger '" + al.name() + "' (" + effective_type_url(any) +
                          ") is not supported; ignored (ewgw writes envoy.access_loggers.file, stdout and stderr)");
    return false;
  }
  if (al.has_filter()) {
    if (!decode_access_log_filter(al.filter(), join(path, "filter"), diag, out.filter)) return false;
    out.has_filter = true;
  }
  // Validate the format as Envoy does when it loads the config: an unknown operator is an error.
  std::string error;
  if (!accesslog::formatter::compile(out.format, error)) {
    diag.error(join(tpath, "log_format"), error);
    return false;
  }
  return true;
}

#pragma GCC diagnostic pop

accesslog::logger_list decode_access_logs(const pb::RepeatedPtrField<accesslog_v3::AccessLog>& logs,
                                          const std::string& path, diagnostics& diag, access_log_cache* cache) {
  if (logs.empty()) return {};
  std::string key;
  if (cache != nullptr) {
    for (const auto& al : logs) key += al.SerializeAsString() + '\0';
    if (auto it = cache->find(key); it != cache->end()) return it->second;
  }
  auto list = std::make_shared<std::vector<accesslog::logger_config>>();
  for (int i = 0; i < logs.size(); ++i) {
    accesslog::logger_config c;
    if (decode_access_log(logs[i], index(path, static_cast<std::size_t>(i)), diag, c)) list->push_back(std::move(c));
  }
  accesslog::logger_list out;
  if (!list->empty()) out.items = std::move(list);
  if (cache != nullptr) cache->emplace(std::move(key), out);
  return out;
}

// The chain's cluster and stat_prefix go to `chain`, the rest of the settings to `out`.
void decode_tcp_proxy(const tcp_proxy_v3::TcpProxy& tp, const std::string& path, diagnostics& diag,
                      filter_chain_config& chain, tcp_proxy_config& out, access_log_cache* logs) {
  // access_log_flush_interval, flush_access_log_on_connected and access_log_options ask for
  // extra lines while a connection is open; ewgw writes the one line at close.
  check_fields(tp,
               {"stat_prefix", "cluster", "weighted_clusters", "idle_timeout", "max_connect_attempts",
                "max_downstream_connection_duration", "access_log"},
               {"access_log_flush_interval", "flush_access_log_on_connected", "access_log_options", "hash_policy"},
               path, diag);
  out.access_logs = decode_access_logs(tp.access_log(), join(path, "access_log"), diag, logs);
  if (tp.stat_prefix().empty()) diag.error(join(path, "stat_prefix"), "must not be empty");
  chain.stat_prefix = tp.stat_prefix();
  if (tp.has_weighted_clusters()) {
    const std::string wpath = join(path, "weighted_clusters.clusters");
    if (tp.weighted_clusters().clusters().empty()) diag.error(wpath, "must list at least one cluster");
    std::uint64_t total = 0;
    for (const auto& c : tp.weighted_clusters().clusters()) total += c.weight();
    // Envoy sums weights in 64 bits; we pick within a 32-bit total, so larger sums are refused.
    if (total > UINT32_MAX) diag.error(wpath, "the weights add up to more than 4294967295");
    for (int i = 0; i < tp.weighted_clusters().clusters_size(); ++i) {
      const auto& c = tp.weighted_clusters().clusters(i);
      check_fields(c, {"name", "weight"}, {}, index(wpath, i), diag);
      if (c.name().empty()) diag.error(join(index(wpath, i), "name"), "must not be empty");
      if (c.weight() == 0) diag.error(join(index(wpath, i), "weight"), "must be at least 1");
      out.weighted_clusters.push_back({c.name(), c.weight()});
    }
  } else if (tp.cluster().empty()) {
    diag.error(path, "needs 'cluster' or 'weighted_clusters'");
  } else {
    chain.cluster = tp.cluster();
    chain.stat_prefix.share_if_equal(chain.cluster);  // istiod names the stats after the cluster
  }
  if (tp.has_idle_timeout()) decode_duration(tp.idle_timeout(), join(path, "idle_timeout"), diag, out.idle_timeout);
  if (tp.has_max_downstream_connection_duration()) {
    decode_duration(tp.max_downstream_connection_duration(), join(path, "max_downstream_connection_duration"), diag,
                    out.max_downstream_connection_duration);
  }
  if (tp.has_max_connect_attempts()) {
    if (tp.max_connect_attempts().value() < 1) {
      diag.error(join(path, "max_connect_attempts"), "must be at least 1");
    } else {
      out.max_connect_attempts = tp.max_connect_attempts().value();
    }
  }
}

// The chain's own fields go to `out`, those it may share with other chains to `settings` (the
// caller hands equal settings one block, see chain_settings_interner).
void decode_filter_chain(const listener_v3::FilterChain& chain, const std::string& path, diagnostics& diag,
                         filter_chain_config& out, filter_chain_settings& settings, access_log_cache* logs) {
  // transport_socket_connect_timeout only applies to a transport socket, which we reject.
  check_fields(chain, {"filter_chain_match", "filters", "name", "transport_socket_connect_timeout"}, {"metadata"}, path,
               diag);
  out.name = chain.name();
  if (chain.has_filter_chain_match()) {
    decode_filter_chain_match(chain.filter_chain_match(), join(path, "filter_chain_match"), diag, settings.match,
                              out.server_names);
  }
  bool have_tcp_proxy = false;
  bool have_unsupported = false;
  const std::string fpath = join(path, "filters");
  for (int i = 0; i < chain.filters_size(); ++i) {
    const listener_v3::Filter& f = chain.filters(i);
    const std::string p = index(fpath, i);
    check_fields(f, {"name", "typed_config"}, {}, p, diag);
    const std::string type_url = f.has_typed_config() ? effective_type_url(f.typed_config()) : std::string();
    if (have_tcp_proxy) {
      diag.error(p, "'" + f.name() + "' follows tcp_proxy, which must be the last (terminal) filter");
      continue;
    }
    if (f.typed_config().Is<tcp_proxy_v3::TcpProxy>()) {
      tcp_proxy_v3::TcpProxy tp;
      if (!f.typed_config().UnpackTo(&tp)) {
        diag.error(join(p, "typed_config"), "cannot decode TcpProxy");
        continue;
      }
      decode_tcp_proxy(tp, join(p, "typed_config"), diag, out, settings.tcp_proxy, logs);
      have_tcp_proxy = true;
    } else if (f.typed_config().Is<envoy::extensions::filters::network::sni_cluster::v3::SniCluster>()) {
      settings.tcp_proxy.cluster_from_sni = true;
    } else if (is_telemetry_filter(f.name(), type_url)) {
      if (diag.keep_notices) diag.notice(p, "telemetry filter '" + f.name() + "' accepted; ewgw emits its TCP metrics natively");
    } else {
      // E.g. http_connection_manager (an HTTP Gateway server bound to the same pods) or
      // envoy.filters.network.rbac (an AuthorizationPolicy on the gateway): a listener from xDS
      // with one is accepted as unusable (decode_dynamic_listener); in a bootstrap it is an error.
      diag.unsupported_setting(p, "network filter '" + f.name() + "' (" +
                                      (type_url.empty() ? "no typed_config" : type_url) +
                                      ") is not supported; ewgw supports tcp_proxy, sni_cluster and telemetry filters");
      have_unsupported = true;
    }
  }
  if (!have_tcp_proxy && !(have_unsupported && diag.collect_unsupported)) {
    diag.error(fpath, "no envoy.filters.network.tcp_proxy filter: nothing would carry the traffic");
  }
  // Istio's SNI-DNAT chain matches the name of the cluster it leads to: one copy for both.
  for (shared_string& name : out.server_names) name.share_if_equal(out.cluster);
}

// Hands the chains of one listener with equal settings one filter_chain_settings block: all of
// istiod's 10,000 SNI-DNAT chains on its 15443 listener hold one. A short list of recent blocks
// (not a table of every value) suffices because chains of one kind come together, and a listener
// whose chains all differ costs at most a few comparisons per chain. Per listener, not across
// listeners: a listener is one resource, decoded and replaced as a whole, and its chains are
// the ones that repeat.
class chain_settings_interner {
 public:
  shared_value<filter_chain_settings> intern(filter_chain_settings settings) {
    for (const shared_value<filter_chain_settings>& r : recent_) {
      if (r.get() == settings) return r;
    }
    // New settings: their ALPN list may still be a recent chain's (Istio puts the same list on
    // chains whose other settings differ).
    if (!settings.match.application_protocols.empty()) {
      for (const shared_value<filter_chain_settings>& r : recent_) {
        if (r->match.application_protocols == settings.match.application_protocols) {
          settings.match.application_protocols = r->match.application_protocols;
          break;
        }
      }
    }
    shared_value<filter_chain_settings> out(std::move(settings));
    if (recent_.size() == recent) recent_.erase(recent_.begin());
    recent_.push_back(out);
    return out;
  }

 private:
  static constexpr std::size_t recent = 8;
  std::vector<shared_value<filter_chain_settings>> recent_;
};

}  // namespace internal

using namespace internal;

void decode_listener(const listener_v3::Listener& l, const std::string& path, diagnostics& diag, listener_config& out) {
  check_fields(l,
               {"name", "address", "filter_chains", "default_filter_chain", "listener_filters",
                "listener_filters_timeout", "continue_on_listener_filters_timeout", "access_log"},
               {"stat_prefix", "metadata", "traffic_direction", "per_connection_buffer_limit_bytes",
                "drain_type", "enable_reuse_port", "reuse_port", "tcp_backlog_size", "connection_balance_config",
                "max_connections_to_accept_per_socket_event", "ignore_global_conn_limit", "bypass_overload_manager"},
               path, diag);
  out.name = l.name();
  if (l.name().empty()) diag.error(join(path, "name"), "must not be empty");
  if (!l.has_address()) {
    diag.error(join(path, "address"), "is required");
  } else {
    decode_socket_address(l.address(), join(path, "address"), diag, out.address);
  }
  const std::string lf = join(path, "listener_filters");
  for (int i = 0; i < l.listener_filters_size(); ++i) {
    const listener_v3::ListenerFilter& f = l.listener_filters(i);
    const std::string p = index(lf, i);
    check_fields(f, {"name", "typed_config"}, {}, p, diag);
    using envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
    if (f.typed_config().Is<TlsInspector>() || (!f.has_typed_config() && f.name() == "envoy.filters.listener.tls_inspector")) {
      TlsInspector ti;
      f.typed_config().UnpackTo(&ti);
      // The buffer grows on demand up to 16 KiB, so the initial size is not needed.
      check_fields(ti, {}, {"enable_ja3_fingerprinting", "initial_read_buffer_size"}, join(p, "typed_config"), diag);
      out.tls_inspector = true;
    } else {
      diag.unsupported_setting(p, "listener filter '" + f.name() + "' is not supported; only envoy.filters.listener.tls_inspector");
    }
  }
  if (l.has_listener_filters_timeout()) {
    decode_duration(l.listener_filters_timeout(), join(path, "listener_filters_timeout"), diag, out.listener_filters_timeout);
  }
  out.continue_on_listener_filters_timeout = l.continue_on_listener_filters_timeout();
  access_log_cache logs;
  out.access_logs = decode_access_logs(l.access_log(), join(path, "access_log"), diag, &logs);
  const std::string fc = join(path, "filter_chains");
  // Exact size: an Istio gateway listener has a chain per service, and push_back's doubling
  // would leave up to half of a 10,000-chain vector unused for the listener's lifetime.
  out.filter_chains.reserve(static_cast<std::size_t>(l.filter_chains_size()));
  chain_settings_interner settings_blocks;
  for (int i = 0; i < l.filter_chains_size(); ++i) {
    filter_chain_config chain;
    filter_chain_settings settings;
    decode_filter_chain(l.filter_chains(i), index(fc, i), diag, chain, settings, &logs);
    chain.settings = settings_blocks.intern(std::move(settings));
    out.filter_chains.push_back(std::move(chain));
  }
  if (l.has_default_filter_chain()) {
    filter_chain_config chain;
    filter_chain_settings settings;
    decode_filter_chain(l.default_filter_chain(), join(path, "default_filter_chain"), diag, chain, settings, &logs);
    // "The filter chain match is ignored in this field." (listener.proto)
    chain.server_names.clear();
    settings.match = {};
    chain.settings = settings_blocks.intern(std::move(settings));
    out.default_filter_chain = std::move(chain);
  }
  if (out.filter_chains.empty() && !out.default_filter_chain) {
    diag.error(path, "has no filter_chains and no default_filter_chain");
  }
  // Envoy rejects two chains whose match criteria are identical (verifyNoDuplicateMatchers).
  // Compared through a canonical key (sorted lists) in a map: istiod sends one chain per
  // service port, tens of thousands on one listener, so a pairwise check would be quadratic.
  std::map<std::string, std::size_t> seen;
  for (std::size_t i = 0; i < out.filter_chains.size(); ++i) {
    const filter_chain_match& m = out.filter_chains[i].settings->match;
    auto sorted = [](const auto& list) {
      std::vector<std::string_view> v(list.begin(), list.end());
      std::sort(v.begin(), v.end());
      return v;
    };
    std::string key = m.destination_port ? std::to_string(*m.destination_port) : "*";
    key += '\0';
    key += m.transport_protocol.view();
    for (const auto& list : {sorted(out.filter_chains[i].server_names), sorted(m.application_protocols)}) {
      key += '\0';
      for (std::string_view n : list) {
        key += n;
        key += '\1';
      }
    }
    auto [it, fresh] = seen.emplace(std::move(key), i);
    if (!fresh) {
      diag.error(index(fc, i), "has the same filter_chain_match as filter_chains[" + std::to_string(it->second) + "]");
    }
  }
}

void decode_load_assignment(const endpoint_v3::ClusterLoadAssignment& cla, const std::string& path, diagnostics& diag,
                            load_assignment_config& out, bool keep_transport_socket_match) {
  check_fields(cla, {"cluster_name", "endpoints", "policy"}, {}, path, diag);
  if (cla.has_policy()) {
    const std::string pp = join(path, "policy");
    check_fields(cla.policy(), {"overprovisioning_factor"}, {"endpoint_stale_after"}, pp, diag);
    if (cla.policy().has_overprovisioning_factor()) {
      if (cla.policy().overprovisioning_factor().value() == 0) {
        diag.error(join(pp, "overprovisioning_factor"), "must be greater than 0");
      } else {
        out.overprovisioning_factor = cla.policy().overprovisioning_factor().value();
      }
    }
  }
  const std::string ep = join(path, "endpoints");
  // Exact room: the decoded vectors are what ads_state keeps for as long as the assignment
  // stands (10,000 of them), not copied to size once more.
  out.localities.reserve(out.localities.size() + static_cast<std::size_t>(cla.endpoints_size()));
  for (int i = 0; i < cla.endpoints_size(); ++i) {
    const endpoint_v3::LocalityLbEndpoints& le = cla.endpoints(i);
    const std::string lp = index(ep, i);
    check_fields(le, {"locality", "lb_endpoints", "load_balancing_weight", "priority"}, {"proximity", "metadata"}, lp, diag);
    locality_endpoints_config loc;
    loc.where = locality{le.locality().region(), le.locality().zone(), le.locality().sub_zone()};
    loc.priority = le.priority();
    if (le.has_load_balancing_weight()) {
      if (le.load_balancing_weight().value() == 0) {
        diag.error(join(lp, "load_balancing_weight"), "must be at least 1");
      }
      loc.weight = le.load_balancing_weight().value();
    }
    const std::string hp = join(lp, "lb_endpoints");
    loc.endpoints.reserve(static_cast<std::size_t>(le.lb_endpoints_size()));
    shared_vector<std::pair<std::string, std::string>> last_match;
    for (int j = 0; j < le.lb_endpoints_size(); ++j) {
      const endpoint_v3::LbEndpoint& lbe = le.lb_endpoints(j);
      const std::string p = index(hp, j);
      check_fields(lbe, {"endpoint", "health_status", "load_balancing_weight"}, {"metadata"}, p, diag);
      if (!lbe.has_endpoint()) {
        diag.error(p, "needs an endpoint (named endpoints are not supported)");
        continue;
      }
      check_fields(lbe.endpoint(), {"address"}, {"hostname", "health_check_config"}, join(p, "endpoint"), diag);
      endpoint_config e;
      socket_address address;
      if (!decode_socket_address(lbe.endpoint().address(), join(p, "endpoint.address"), diag, address)) continue;
      e.ip = *ip_address::parse(address.address);  // decode_socket_address checked it is a literal
      e.port = address.port;
      e.health = static_cast<health_status>(lbe.health_status());
      if (keep_transport_socket_match && lbe.has_metadata()) {
        const auto& fm = lbe.metadata().filter_metadata();
        if (auto it = fm.find("envoy.transport_socket_match"); it != fm.end()) {
          std::vector<std::pair<std::string, std::string>> match;
          for (const auto& [k, v] : it->second.fields()) {
            if (v.has_string_value()) match.emplace_back(k, v.string_value());
          }
          std::sort(match.begin(), match.end());
          // An assignment's endpoints mostly carry the same list (tlsMode: istio): one copy.
          if (match != last_match.get()) last_match = std::move(match);
          e.transport_socket_match = last_match;
        }
      }
      if (lbe.has_load_balancing_weight()) {
        if (lbe.load_balancing_weight().value() == 0) {
          diag.error(join(p, "load_balancing_weight"), "must be at least 1");
        }
        e.weight = lbe.load_balancing_weight().value();
      }
      loc.endpoints.push_back(std::move(e));
    }
    out.localities.push_back(std::move(loc));
  }
}

void decode_outlier_detection(const cluster_v3::OutlierDetection& od, const std::string& path, diagnostics& diag,
                              outlier_detection_config& out) {
  check_fields(od,
               {"consecutive_5xx", "interval", "base_ejection_time", "max_ejection_percent", "enforcing_consecutive_5xx",
                "enforcing_success_rate", "success_rate_minimum_hosts", "success_rate_request_volume",
                "success_rate_stdev_factor", "consecutive_gateway_failure", "enforcing_consecutive_gateway_failure",
                "split_external_local_origin_errors", "consecutive_local_origin_failure",
                "enforcing_consecutive_local_origin_failure", "enforcing_local_origin_success_rate",
                "failure_percentage_threshold", "enforcing_failure_percentage",
                "enforcing_failure_percentage_local_origin", "failure_percentage_minimum_hosts",
                "failure_percentage_request_volume", "max_ejection_time", "max_ejection_time_jitter",
                "successful_active_health_check_uneject_host"},
               {"event_log_path", "monitor", "always_eject_one_host", "detect_degraded_hosts"}, path, diag);
  auto u32 = [&](bool has, const pb::UInt32Value& v, std::string_view field, std::uint32_t& to, bool percent) {
    if (!has) return;
    if (percent && v.value() > 100) {
      diag.error(join(path, field), "must be within 0..100");
      return;
    }
    to = v.value();
  };
  auto dur = [&](bool has, const pb::Duration& d, std::string_view field, milliseconds& to) {
    if (has) decode_duration(d, join(path, field), diag, to);
  };
  u32(od.has_consecutive_5xx(), od.consecutive_5xx(), "consecutive_5xx", out.consecutive_5xx, false);
  dur(od.has_interval(), od.interval(), "interval", out.interval);
  dur(od.has_base_ejection_time(), od.base_ejection_time(), "base_ejection_time", out.base_ejection_time);
  u32(od.has_max_ejection_percent(), od.max_ejection_percent(), "max_ejection_percent", out.max_ejection_percent, true);
  u32(od.has_enforcing_consecutive_5xx(), od.enforcing_consecutive_5xx(), "enforcing_consecutive_5xx",
      out.enforcing_consecutive_5xx, true);
  u32(od.has_enforcing_success_rate(), od.enforcing_success_rate(), "enforcing_success_rate", out.enforcing_success_rate,
      true);
  u32(od.has_success_rate_minimum_hosts(), od.success_rate_minimum_hosts(), "success_rate_minimum_hosts",
      out.success_rate_minimum_hosts, false);
  u32(od.has_success_rate_request_volume(), od.success_rate_request_volume(), "success_rate_request_volume",
      out.success_rate_request_volume, false);
  u32(od.has_success_rate_stdev_factor(), od.success_rate_stdev_factor(), "success_rate_stdev_factor",
      out.success_rate_stdev_factor, false);
  u32(od.has_consecutive_gateway_failure(), od.consecutive_gateway_failure(), "consecutive_gateway_failure",
      out.consecutive_gateway_failure, false);
  u32(od.has_enforcing_consecutive_gateway_failure(), od.enforcing_consecutive_gateway_failure(),
      "enforcing_consecutive_gateway_failure", out.enforcing_consecutive_gateway_failure, true);
  out.split_external_local_origin_errors = od.split_external_local_origin_errors();
  u32(od.has_consecutive_local_origin_failure(), od.consecutive_local_origin_failure(),
      "consecutive_local_origin_failure", out.consecutive_local_origin_failure, false);
  u32(od.has_enforcing_consecutive_local_origin_failure(), od.enforcing_consecutive_local_origin_failure(),
      "enforcing_consecutive_local_origin_failure", out.enforcing_consecutive_local_origin_failure, true);
  u32(od.has_enforcing_local_origin_success_rate(), od.enforcing_local_origin_success_rate(),
      "enforcing_local_origin_success_rate", out.enforcing_local_origin_success_rate, true);
  u32(od.has_failure_percentage_threshold(), od.failure_percentage_threshold(), "failure_percentage_threshold",
      out.failure_percentage_threshold, true);
  u32(od.has_enforcing_failure_percentage(), od.enforcing_failure_percentage(), "enforcing_failure_percentage",
      out.enforcing_failure_percentage, true);
  u32(od.has_enforcing_failure_percentage_local_origin(), od.enforcing_failure_percentage_local_origin(),
      "enforcing_failure_percentage_local_origin", out.enforcing_failure_percentage_local_origin, true);
  u32(od.has_failure_percentage_minimum_hosts(), od.failure_percentage_minimum_hosts(),
      "failure_percentage_minimum_hosts", out.failure_percentage_minimum_hosts, false);
  u32(od.has_failure_percentage_request_volume(), od.failure_percentage_request_volume(),
      "failure_percentage_request_volume", out.failure_percentage_request_volume, false);
  dur(od.has_max_ejection_time(), od.max_ejection_time(), "max_ejection_time", out.max_ejection_time);
  dur(od.has_max_ejection_time_jitter(), od.max_ejection_time_jitter(), "max_ejection_time_jitter",
      out.max_ejection_time_jitter);
  if (od.has_successful_active_health_check_uneject_host()) {
    out.successful_active_health_check_uneject_host = od.successful_active_health_check_uneject_host().value();
  }
}

// Envoy's raw_buffer transport socket (plaintext), by name or type; its proto is not in
// ewgw's generated pool, so the Any is never unpacked.
bool is_raw_buffer(const core_v3::TransportSocket& ts) {
  if (ts.name() == "envoy.transport_sockets.raw_buffer" || ts.name() == "raw_buffer") return true;
  return ts.has_typed_config() &&
         ts.typed_config().type_url().ends_with("/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer");
}

void decode_transport_socket_matches(const cluster_v3::Cluster& c, const std::string& path, diagnostics& diag,
                                     cluster_settings& out) {
  const std::string mp = join(path, "transport_socket_matches");
  for (int i = 0; i < c.transport_socket_matches_size(); ++i) {
    const auto& m = c.transport_socket_matches(i);
    const std::string p = index(mp, i);
    check_fields(m, {"name", "match", "transport_socket"}, {}, p, diag);
    transport_socket_match_config t;
    t.name = m.name();
    for (const auto& [k, v] : m.match().fields()) {
      if (!v.has_string_value()) {
        diag.unsupported_setting(join(p, "match." + k), "only string criteria are supported");
        continue;
      }
      t.match.emplace_back(k, v.string_value());
    }
    std::sort(t.match.begin(), t.match.end());
    t.plaintext = !m.has_transport_socket() || is_raw_buffer(m.transport_socket());
    out.transport_socket_matches.push_back(std::move(t));
  }
  if (std::none_of(out.transport_socket_matches.begin(), out.transport_socket_matches.end(),
                   [](const auto& t) { return !t.plaintext; })) {
    return;
  }
  diag.notice(mp, "endpoints whose transport_socket_match metadata selects TLS origination are not used "
                  "(ewgw relays bytes and originates no TLS); the others are");
}

void decode_cluster(const cluster_v3::Cluster& c, const std::string& path, diagnostics& diag, cluster_config& out) {
  check_fields(c,
               {"name", "type", "eds_cluster_config", "connect_timeout", "lb_policy", "load_assignment",
                "circuit_breakers", "common_lb_config", "least_request_lb_config", "metadata", "outlier_detection",
                "transport_socket_matches", "filters"},
               {"alt_stat_name", "per_connection_buffer_limit_bytes", "max_requests_per_connection",
                "upstream_http_protocol_options", "common_http_protocol_options", "http_protocol_options",
                "http2_protocol_options", "typed_extension_protocol_options", "dns_refresh_rate",
                "dns_failure_refresh_rate", "respect_dns_ttl", "dns_lookup_family", "cleanup_interval",
                "protocol_selection", "upstream_connection_options", "ignore_health_on_host_removal",
                "track_cluster_stats", "track_timeout_budgets", "wait_for_warm_on_init", "preconnect_policy"},
               path, diag);
  // Filled in place: this decoder holds the only reference to the fresh block.
  cluster_settings& settings = out.settings.edit();
  out.name = c.name();
  if (c.name().empty()) diag.error(join(path, "name"), "must not be empty");
  switch (c.type()) {
    case cluster_v3::Cluster::STATIC: out.type = discovery_type::static_; break;
    case cluster_v3::Cluster::EDS: out.type = discovery_type::eds; break;
    default:
      diag.unsupported_setting(join(path, "type"), cluster_v3::Cluster::DiscoveryType_Name(c.type()) +
                                                       " is not supported; use STATIC or EDS");
  }
  if (c.has_eds_cluster_config()) {
    const std::string ep = join(path, "eds_cluster_config");
    check_fields(c.eds_cluster_config(), {"service_name", "eds_config"}, {}, ep, diag);
    out.eds_service_name = c.eds_cluster_config().service_name();
    if (c.eds_cluster_config().has_eds_config()) {
      const auto& src = c.eds_cluster_config().eds_config();
      const std::string sp = join(ep, "eds_config");
      check_fields(src, {"ads", "resource_api_version"}, {"initial_fetch_timeout"}, sp, diag);
      if (!src.has_ads()) diag.unsupported_setting(sp, "endpoints can only come from the ADS stream (eds_config: {ads: {}})");
    }
  }
  if (out.type == discovery_type::eds && out.eds_service_name.empty()) out.eds_service_name = out.name;
  out.eds_service_name.share_if_equal(out.name);  // istiod's clusters subscribe to their own name
  if (c.has_connect_timeout()) {
    decode_duration(c.connect_timeout(), join(path, "connect_timeout"), diag, settings.connect_timeout);
    if (settings.connect_timeout.count() <= 0) diag.error(join(path, "connect_timeout"), "must be greater than 0");
  }
  switch (c.lb_policy()) {
    case cluster_v3::Cluster::ROUND_ROBIN: settings.policy = lb_policy::round_robin; break;
    case cluster_v3::Cluster::LEAST_REQUEST: settings.policy = lb_policy::least_request; break;
    case cluster_v3::Cluster::RANDOM: settings.policy = lb_policy::random; break;
    default:
      diag.unsupported_setting(join(path, "lb_policy"), cluster_v3::Cluster::LbPolicy_Name(c.lb_policy()) +
                                                            " is not supported; use ROUND_ROBIN, LEAST_REQUEST or RANDOM");
  }
  if (c.has_least_request_lb_config()) {
    const auto& lr = c.least_request_lb_config();
    check_fields(lr, {"choice_count", "active_request_bias"}, {}, join(path, "least_request_lb_config"), diag);
    if (lr.has_choice_count()) {
      if (lr.choice_count().value() < 2) {
        diag.error(join(path, "least_request_lb_config.choice_count"), "must be at least 2");
      } else {
        settings.least_request_choice_count = lr.choice_count().value();
      }
    }
    if (lr.has_active_request_bias()) {
      // A RuntimeDouble: ewgw has no runtime, so the default_value applies (runtime_key is
      // ignored). Envoy falls back to 1.0 for a negative bias, with a warning; so does ewgw.
      const std::string bp = join(path, "least_request_lb_config.active_request_bias");
      const double bias = lr.active_request_bias().default_value();
      if (bias < 0 || !std::isfinite(bias)) {
        diag.notice(bp, "default_value " + std::to_string(bias) + " is invalid; using 1.0, as Envoy does");
      } else {
        settings.least_request_active_request_bias = bias;
      }
    }
  }
  if (c.has_common_lb_config()) {
    const auto& cl = c.common_lb_config();
    const std::string cp = join(path, "common_lb_config");
    check_fields(cl, {"healthy_panic_threshold", "locality_weighted_lb_config"}, {"update_merge_window"}, cp, diag);
    if (cl.has_healthy_panic_threshold()) {
      const double v = cl.healthy_panic_threshold().value();
      if (v < 0 || v > 100) {
        diag.error(join(cp, "healthy_panic_threshold"), "must be within 0..100");
      } else {
        settings.healthy_panic_threshold_percent = static_cast<std::uint32_t>(v);
      }
    }
    settings.locality_weighted = cl.has_locality_weighted_lb_config();
  }
  if (c.has_circuit_breakers()) {
    const std::string cb = join(path, "circuit_breakers.thresholds");
    for (int i = 0; i < c.circuit_breakers().thresholds_size(); ++i) {
      const auto& t = c.circuit_breakers().thresholds(i);
      // Only max_connections applies to TCP; the request limits are for HTTP.
      check_fields(t, {"priority", "max_connections"},
                   {"max_pending_requests", "max_requests", "max_retries", "retry_budget", "track_remaining",
                    "max_connection_pools"},
                   index(cb, i), diag);
      if (t.priority() == core_v3::DEFAULT && t.has_max_connections()) {
        settings.max_connections = t.max_connections().value();
      }
    }
  }
  if (c.has_outlier_detection()) {
    outlier_detection_config od;
    decode_outlier_detection(c.outlier_detection(), join(path, "outlier_detection"), diag, od);
    settings.outlier_detection = od;
  }
  if (c.transport_socket_matches_size() > 0) {
    if (diag.collect_unsupported) {
      decode_transport_socket_matches(c, path, diag, settings);
    } else {
      diag.unsupported_setting(join(path, "transport_socket_matches"),
                               "not supported in a static bootstrap (ewgw originates no TLS); clusters received over "
                               "xDS use their plaintext endpoints");
    }
  }
  // Cluster (upstream) network filters: only Istio's telemetry ones are harmless.
  for (int i = 0; i < c.filters_size(); ++i) {
    const auto& f = c.filters(i);
    const std::string fp = index(join(path, "filters"), i);
    const std::string type_url = f.has_typed_config() ? effective_type_url(f.typed_config()) : std::string();
    if (diag.collect_unsupported && is_telemetry_filter(f.name(), type_url)) {
      if (diag.keep_notices) diag.notice(fp, "telemetry filter '" + f.name() + "' accepted; ewgw emits its TCP metrics natively");
    } else {
      diag.unsupported_setting(fp, "upstream network filter '" + f.name() + "' is not supported");
    }
  }
  if (c.has_load_assignment()) {
    decode_load_assignment(c.load_assignment(), join(path, "load_assignment"), diag, out.load_assignment,
                           !settings.transport_socket_matches.empty());
  } else if (out.type == discovery_type::static_) {
    diag.error(join(path, "load_assignment"), "is required for a STATIC cluster");
  }
  if (c.has_metadata()) {
    const auto& fm = c.metadata().filter_metadata();
    if (auto it = fm.find("istio"); it != fm.end()) {
      std::map<std::string, std::string> strings;
      for (const auto& [k, v] : it->second.fields()) {
        if (v.has_string_value()) strings[k] = v.string_value();
      }
      settings.istio_metadata = std::move(strings);
      // services: a list of {host, name, namespace} structs (istiod's cluster_builder). Other
      // shapes are ignored: this metadata only labels telemetry and never affects routing.
      if (auto services = it->second.fields().find("services");
          services != it->second.fields().end() && services->second.has_list_value()) {
        std::vector<istio_service> decoded;
        for (const auto& entry : services->second.list_value().values()) {
          if (!entry.has_struct_value()) continue;
          const auto& f = entry.struct_value().fields();
          const auto text = [&](const char* key) {
            auto field = f.find(key);
            return field != f.end() && field->second.has_string_value() ? field->second.string_value() : std::string();
          };
          istio_service svc{text("host"), text("name"), text("namespace")};
          // As Istio's stats filter: without a name, the host up to its first dot.
          if (svc.name.empty()) svc.name = svc.host.substr(0, svc.host.find('.'));
          if (!svc.host.empty()) decoded.push_back(std::move(svc));
        }
        // Built on the cluster's own name block (which ads_state's index also takes for a new
        // cluster): istiod's texts are parts of it, and the list then references it for free.
        out.istio_services = istio_service_list(decoded, out.name);
      }
    }
  }
}

namespace {

// "a; b; c; ..." from the first three reasons.
std::string summarize_unsupported(const std::vector<std::string>& reasons) {
  std::string out;
  for (std::size_t i = 0; i < reasons.size() && i < 3; ++i) {
    if (i > 0) out += "; ";
    out += reasons[i];
  }
  if (reasons.size() > 3) out += "; ...";
  return out;
}

}  // namespace

bool decode_dynamic_listener(const listener_v3::Listener& l, const std::string& path, diagnostics& diag,
                             listener_config& out) {
  diagnostics local;
  local.collect_unsupported = true;
  local.keep_notices = diag.keep_notices;
  decode_listener(l, path, local, out);
  for (std::string& n : local.notices) diag.notices.push_back(std::move(n));
  if (l.name().empty()) {
    diag.error(join(path, "name"), "must not be empty");
    return false;
  }
  if (!local.unsupported.empty()) {
    // Never bound, so the rest of it does not matter; only the name is kept (and the address,
    // for the log).
    out.unsupported = summarize_unsupported(local.unsupported);
    out.filter_chains.clear();
    out.default_filter_chain.reset();
    out.tls_inspector = false;
    return true;
  }
  for (std::string& e : local.errors) diag.errors.push_back(std::move(e));
  return local.errors.empty();
}

bool decode_dynamic_cluster(const cluster_v3::Cluster& c, const std::string& path, diagnostics& diag,
                            cluster_config& out) {
  diagnostics local;
  local.collect_unsupported = true;
  local.keep_notices = diag.keep_notices;
  decode_cluster(c, path, local, out);
  out.added_via_api = true;
  for (std::string& n : local.notices) diag.notices.push_back(std::move(n));
  if (c.name().empty()) {
    diag.error(join(path, "name"), "must not be empty");
    return false;
  }
  if (!local.unsupported.empty()) {
    // The cluster is never used for routing, so the validity of the rest of it does not matter:
    // hostnames in a STRICT_DNS cluster's endpoints, for example, are not errors here.
    out.settings.edit().unsupported = summarize_unsupported(local.unsupported);
    out.load_assignment = {};
    return true;
  }
  for (std::string& e : local.errors) diag.errors.push_back(std::move(e));
  return local.errors.empty();
}

std::string node_metadata_json(const bootstrap_v3::Bootstrap& b) {
  if (!b.has_node() || !b.node().has_metadata()) return {};
  std::string json;
  pb::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!pb::util::MessageToJsonString(b.node().metadata(), &json, options).ok()) return {};
  return json;
}

namespace {

void decode_bootstrap(const bootstrap_v3::Bootstrap& b, diagnostics& diag, bootstrap_config& out) {
  check_fields(b, {"node", "admin", "static_resources", "dynamic_resources"},
               {"stats_config", "stats_sinks", "stats_flush_interval", "stats_flush_on_admin", "tracing",
                "layered_runtime", "overload_manager", "watchdog", "watchdogs", "enable_dispatcher_stats",
                "header_prefix", "stats_server_version_override", "use_tcp_for_dns_lookups", "fatal_actions",
                "bootstrap_extensions", "default_socket_interface", "inline_headers", "perf_tracing_file_path",
                "application_log_config", "memory_allocator_manager", "flags_path"},
               "", diag);
  if (b.has_node()) {
    check_fields(b.node(), {"id", "cluster", "locality", "metadata"},
                 {"user_agent_name", "user_agent_version", "user_agent_build_version", "extensions",
                  "client_features", "dynamic_parameters"},
                 "node", diag);
    out.node.id = b.node().id();
    out.node.cluster = b.node().cluster();
    out.node.where = {b.node().locality().region(), b.node().locality().zone(), b.node().locality().sub_zone()};
    out.node.metadata_json = node_metadata_json(b);
    const auto& md = b.node().metadata().fields();
    const auto text = [](const auto& fields, const char* key) {
      auto it = fields.find(key);
      return it != fields.end() && it->second.has_string_value() ? it->second.string_value() : std::string();
    };
    node_config::istio_identity& id = out.node.istio;
    id.workload_name = text(md, "WORKLOAD_NAME");
    id.namespace_ = text(md, "NAMESPACE");
    id.cluster_id = text(md, "CLUSTER_ID");
    if (auto labels = md.find("LABELS"); labels != md.end() && labels->second.has_struct_value()) {
      const auto& l = labels->second.struct_value().fields();
      id.app = text(l, "app");
      id.version = text(l, "version");
      id.canonical_name = text(l, "service.istio.io/canonical-name");
      id.canonical_revision = text(l, "service.istio.io/canonical-revision");
    }
  }
  if (b.has_dynamic_resources()) decode_dynamic_resources(b, diag, out);
  if (b.has_admin()) {
    check_fields(b.admin(), {"address"}, {"access_log", "access_log_path", "profile_path", "socket_options",
                                          "ignore_global_conn_limit"},
                 "admin", diag);
    if (b.admin().has_address()) {
      socket_address a;
      if (decode_socket_address(b.admin().address(), "admin.address", diag, a)) out.admin_address = a;
    }
  }
  const auto& sr = b.static_resources();
  check_fields(sr, {"listeners", "clusters"}, {}, "static_resources", diag);
  for (int i = 0; i < sr.listeners_size(); ++i) {
    listener_config l;
    decode_listener(sr.listeners(i), index("static_resources.listeners", i), diag, l);
    out.listeners.push_back(std::move(l));
  }
  for (int i = 0; i < sr.clusters_size(); ++i) {
    cluster_config c;
    const std::string p = index("static_resources.clusters", i);
    // The cluster that only leads to the control plane (envoy_grpc) was decoded with the ADS
    // settings; it is not a routing target.
    if (out.ads && sr.clusters(i).name() == out.ads->control_plane_cluster) continue;
    decode_cluster(sr.clusters(i), p, diag, c);
    if (c.type == discovery_type::eds && !out.ads) {
      diag.error(join(p, "type"), "an EDS cluster needs an xDS control plane (dynamic_resources), which is not configured");
    }
    out.clusters.push_back(std::move(c));
  }
}

}  // namespace

void validate_static_config(const bootstrap_config& config, diagnostics& diag) {
  std::set<std::string, std::less<>> clusters;  // transparent: the chains name clusters by shared_string
  for (std::size_t i = 0; i < config.clusters.size(); ++i) {
    if (!clusters.emplace(config.clusters[i].name.view()).second) {
      diag.error(index("static_resources.clusters", i), "duplicate cluster name '" + config.clusters[i].name + "'");
    }
  }
  std::set<std::string> listener_names;
  std::set<std::pair<std::string, std::uint16_t>> addresses;
  for (std::size_t i = 0; i < config.listeners.size(); ++i) {
    const listener_config& l = config.listeners[i];
    const std::string lp = index("static_resources.listeners", i);
    if (!listener_names.insert(l.name).second) diag.error(lp, "duplicate listener name '" + l.name + "'");
    if (l.address.port != 0 && !addresses.insert({l.address.address, l.address.port}).second) {
      diag.error(join(lp, "address"), "another listener already uses " + l.address.address + ":" +
                                          std::to_string(l.address.port));
    }
    // With an ADS server, a cluster missing here may arrive over CDS.
    auto missing = [&](const std::string& where, const std::string& what) {
      if (config.ads) {
        diag.notice(where, what + ", which is not defined statically; it is expected over CDS");
      } else {
        diag.error(where, what + ", which is not defined");
      }
    };
    auto check_chain = [&](const filter_chain_config& chain, const std::string& cp) {
      if (!chain.cluster.empty() && !clusters.contains(chain.cluster.view())) {
        missing(cp + ".filters", "tcp_proxy names cluster '" + std::string(chain.cluster.view()) + "'");
      }
      for (const weighted_cluster& w : chain.settings->tcp_proxy.weighted_clusters) {
        if (!clusters.contains(w.name)) missing(cp + ".filters", "tcp_proxy weighted_clusters names '" + w.name + "'");
      }
    };
    for (std::size_t j = 0; j < l.filter_chains.size(); ++j) {
      check_chain(l.filter_chains[j], index(join(lp, "filter_chains"), j));
    }
    if (l.default_filter_chain) check_chain(*l.default_filter_chain, join(lp, "default_filter_chain"));
  }
}

bootstrap_load_result load_bootstrap_text(std::string_view text, std::string_view origin) {
  bootstrap_load_result result;
  const std::string prefix = std::string(origin) + ":";
  yaml_to_json_result converted = yaml_to_json(text, *bootstrap_v3::Bootstrap::descriptor());
  if (!converted.errors.empty()) {
    for (const std::string& e : converted.errors) result.diag.errors.push_back(prefix + e);
    return result;
  }
  bootstrap_v3::Bootstrap bootstrap;
  pb::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const auto status = pb::util::JsonStringToMessage(converted.json, &bootstrap, options);
  if (!status.ok()) {
    result.diag.errors.push_back(prefix + " " + std::string(status.message()));
    return result;
  }
  result.bootstrap_proto = std::make_shared<const std::string>(bootstrap.SerializeAsString());
  decode_bootstrap(bootstrap, result.diag, result.config);
  if (result.diag.ok()) validate_static_config(result.config, result.diag);
  for (std::string& e : result.diag.errors) e = prefix + " " + e;
  for (std::string& n : result.diag.notices) n = prefix + " " + n;
  return result;
}

bootstrap_load_result load_bootstrap_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    bootstrap_load_result result;
    result.diag.errors.push_back(path + ": cannot open the file");
    return result;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return load_bootstrap_text(text.str(), path);
}

}  // namespace ewgw::xds
