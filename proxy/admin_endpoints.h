// The admin endpoints over a gateway: Envoy's paths and formats where the thing is the same,
// so scripts, probes and `istioctl`-style habits carry over.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <utility>

#include "proxy/admin_server.h"
#include "proxy/gateway.h"

namespace ewgw::proxy {

// What the admin endpoints can tell beyond the gateway's routing snapshot. Every member may be
// empty.
struct admin_extras {
  // Why a cluster named by a chain is not in the snapshot (e.g. still warming), for explain.
  std::function<std::string(std::string_view cluster)> missing_cluster_note;
  // /config_dump: renders envoy.admin.v3.ConfigDump JSON for the query, or returns an error
  // (status 400 with the message).
  std::function<std::pair<unsigned, std::string>(const std::map<std::string, std::string>& query)> config_dump;
};

// /ready, /stats, /stats/prometheus, /clusters, /explain, /config_dump (when `extras` has it),
// /logging, /drain_listeners, /quitquitquit on the admin port (127.0.0.1:15000 by default: it
// can change the gateway's state).
void install_admin_routes(admin_server& server, gateway& gw, std::function<void()> quit, admin_extras extras = {});
// /stats/prometheus only (the scrape port, 15090).
void install_prometheus_routes(admin_server& server, gateway& gw);
// /healthz/ready (the Kubernetes readiness probe port, 15021).
void install_readiness_routes(admin_server& server, gateway& gw);

}  // namespace ewgw::proxy
