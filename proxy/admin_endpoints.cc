#include "proxy/admin_endpoints.h"

#include <regex>

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

}  // namespace

void install_admin_routes(admin_server& server, gateway& gw, std::function<void()> quit) {
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
                   if (filter && !std::regex_search(name, *filter)) continue;
                   body += name + ": " + std::to_string(value) + "\n";
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
