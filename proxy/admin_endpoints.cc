#include "proxy/admin_endpoints.h"

#include <algorithm>
#include <initializer_list>
#include <regex>

#include "proxy/admin_views.h"
#include "stats/log.h"
#include "stats/prometheus.h"

namespace ewgw::proxy {

namespace {

constexpr const char* prometheus_content_type = "text/plain; version=0.0.4; charset=UTF-8";

admin_response prometheus(gateway& gw) {
  gw.refresh_server_stats();
  return {200, prometheus_content_type, stats::render_prometheus(gw.stats())};
}

// Envoy's /ready answers with the server state.
admin_response ready(const gateway& gw) {
  if (gw.draining()) return {503, "text/plain; charset=UTF-8", "DRAINING\n"};
  if (!gw.ready()) return {503, "text/plain; charset=UTF-8", "PRE_INITIALIZING\n"};
  return {200, "text/plain; charset=UTF-8", "LIVE\n"};
}

constexpr const char* text_type = "text/plain; charset=UTF-8";
constexpr const char* json_type = "application/json";

// A query parameter the endpoint does not know is the caller's mistake: say which one.
std::optional<admin_response> unknown_parameter(const admin_request& r, std::initializer_list<std::string_view> known) {
  for (const auto& [name, value] : r.query) {
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      std::string list;
      for (std::string_view k : known) list += (list.empty() ? "" : ", ") + std::string(k);
      return admin_response{400, text_type,
                            "unknown query parameter '" + name + "' for " + r.path + "; accepted: " +
                                (list.empty() ? std::string("none") : list) + "\n"};
    }
  }
  return std::nullopt;
}

admin_response clusters(const gateway& gw, const admin_request& r) {
  if (auto bad = unknown_parameter(r, {"format"})) return *bad;
  std::string format = "text";
  if (auto it = r.query.find("format"); it != r.query.end()) format = it->second;
  if (format != "text" && format != "json") {
    return {400, text_type, "parameter 'format' must be 'text' or 'json', not '" + format + "'\n"};
  }
  const auto snapshot = gw.current_snapshot();
  if (!snapshot) return {503, text_type, "no configuration applied yet\n"};
  if (format == "json") return {200, json_type, render_clusters_json(*snapshot)};
  return {200, text_type, render_clusters_text(*snapshot)};
}

admin_response explain(const gateway& gw, const admin_request& r, const admin_extras& extras) {
  if (auto bad = unknown_parameter(r, {"sni", "listener", "alpn", "port"})) return *bad;
  explain_request request;
  auto sni = r.query.find("sni");
  if (sni == r.query.end() || sni->second.empty()) {
    return {400, text_type, "parameter 'sni' is required: the server name to explain, e.g. ?sni=outbound_.5000_._.helloworld.sample.svc.cluster.local\n"};
  }
  if (sni->second.size() > 255) return {400, text_type, "parameter 'sni' is longer than a DNS name can be (255)\n"};
  for (const char c : sni->second) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      return {400, text_type, "parameter 'sni' holds a character a server name cannot have\n"};
    }
  }
  // The ClientHello parser lower-cases the SNI (RFC 6066 host names compare case-insensitively).
  request.sni = xds::ascii_lower(sni->second);
  if (auto it = r.query.find("listener"); it != r.query.end()) request.listener = it->second;
  if (auto it = r.query.find("alpn"); it != r.query.end()) {
    request.alpns.clear();
    std::string_view rest = it->second;
    while (!rest.empty()) {
      const std::size_t comma = rest.find(',');
      if (comma != 0) request.alpns.emplace_back(rest.substr(0, comma));
      if (comma == std::string_view::npos) break;
      rest.remove_prefix(comma + 1);
    }
  }
  if (auto it = r.query.find("port"); it != r.query.end()) {
    char* end = nullptr;
    const long port = std::strtol(it->second.c_str(), &end, 10);
    if (it->second.empty() || *end != '\0' || port < 1 || port > 65535) {
      return {400, text_type, "parameter 'port' must be a port number 1..65535, not '" + it->second + "'\n"};
    }
    request.destination_port = static_cast<std::uint16_t>(port);
  }
  const auto snapshot = gw.current_snapshot();
  if (!snapshot) return {503, text_type, "no configuration applied yet\n"};
  explain_context context;
  context.snapshot = snapshot.get();
  context.bound_port = [&gw](std::string_view listener) { return gw.listener_port(listener); };
  context.missing_cluster_note = extras.missing_cluster_note;
  context.now = std::chrono::steady_clock::now();
  explain_result result = explain_sni(request, context);
  return {result.status, text_type, std::move(result.text)};
}

}  // namespace

void install_admin_routes(admin_server& server, gateway& gw, std::function<void()> quit, admin_extras extras) {
  server.route("/clusters", "GET", "upstream hosts and their state, Envoy's text format; ?format=json",
               [&gw](const admin_request& r) { return clusters(gw, r); });
  server.route("/explain", "GET", "where a connection with this SNI would go and why: ?sni=NAME[&listener=L][&alpn=a,b][&port=P]",
               [&gw, extras](const admin_request& r) { return explain(gw, r, extras); });
  if (extras.config_dump) {
    server.route("/config_dump", "GET",
                 "configuration as envoy.admin.v3.ConfigDump JSON; ?include_eds, ?resource=FIELD, ?name_regex=REGEX",
                 [dump = extras.config_dump](const admin_request& r) -> admin_response {
                   auto [status, body] = dump(r.query);
                   return {status, status == 200 ? json_type : text_type, std::move(body)};
                 });
  }
  server.route("/ready", "GET,HEAD", "server state: 200 LIVE when serving", [&gw](const admin_request&) { return ready(gw); });
  server.route("/stats", "GET", "all stats as 'name: value'; ?filter=REGEX, ?usedonly",
               [&gw](const admin_request& r) -> admin_response {
                 gw.refresh_server_stats();
                 std::optional<std::regex> filter;
                 if (auto it = r.query.find("filter"); it != r.query.end()) {
                   try {
                     filter.emplace(it->second);
                   } catch (const std::regex_error& e) {
                     return {400, "text/plain; charset=UTF-8", "invalid filter regex: " + std::string(e.what()) + "\n"};
                   }
                 }
                 const bool used_only = r.query.contains("usedonly");
                 std::string body;
                 for (const auto& [name, value] : gw.stats().totals()) {
                   if (used_only && value == 0) continue;
                   if (filter && !std::regex_search(name.begin(), name.end(), *filter)) continue;
                   body.append(name).append(": ").append(std::to_string(value)).push_back('\n');
                 }
                 return {200, "text/plain; charset=UTF-8", body};
               });
  server.route("/stats/prometheus", "GET", "Prometheus text exposition", [&gw](const admin_request&) { return prometheus(gw); });
  server.route("/logging", "GET,POST", "log level; POST ?level=trace|debug|info|warn|error|off",
               [](const admin_request& r) -> admin_response {
                 if (auto it = r.query.find("level"); it != r.query.end()) {
                   if (r.method != "POST") return {405, "text/plain; charset=UTF-8", "changing the level needs POST\n"};
                   log::level l;
                   if (!log::parse_level(it->second, l)) {
                     return {400, "text/plain; charset=UTF-8", "unknown level '" + it->second + "'\n"};
                   }
                   log::set_level(l);
                   EWGW_LOG(info, "admin", "log level changed", {{"level", log::to_string(l)}});
                 }
                 return {200, "text/plain; charset=UTF-8", "active level: " + std::string(log::to_string(log::current_level())) + "\n"};
               });
  server.route("/drain_listeners", "POST", "stop accepting; open connections continue", [&gw](const admin_request&) {
    gw.drain_listeners();
    return admin_response{200, "text/plain; charset=UTF-8", "OK\n"};
  });
  server.route("/quitquitquit", "POST", "exit", [quit](const admin_request&) {
    quit();
    return admin_response{200, "text/plain; charset=UTF-8", "OK\n"};
  });
}

void install_prometheus_routes(admin_server& server, gateway& gw) {
  server.route("/stats/prometheus", "GET", "Prometheus text exposition", [&gw](const admin_request&) { return prometheus(gw); });
}

void install_readiness_routes(admin_server& server, gateway& gw) {
  server.route("/healthz/ready", "GET,HEAD", "200 when ready to take traffic, 503 while starting or draining",
               [&gw](const admin_request&) { return ready(gw); });
}

}  // namespace ewgw::proxy
