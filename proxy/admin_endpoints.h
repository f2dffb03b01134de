// The admin endpoints over a gateway: Envoy's paths and formats where the thing is the same,
// so scripts, probes and `istioctl`-style habits carry over.
#pragma once

#include <functional>

#include "proxy/admin_server.h"
#include "proxy/gateway.h"

namespace ewgw::proxy {

// /ready, /stats, /stats/prometheus, /logging, /drain_listeners, /quitquitquit on the admin
// port (127.0.0.1:15000 by default: it can change the gateway's state).
void install_admin_routes(admin_server& server, gateway& gw, std::function<void()> quit);
// /stats/prometheus only (the scrape port, 15090).
void install_prometheus_routes(admin_server& server, gateway& gw);
// /healthz/ready (the Kubernetes readiness probe port, 15021).
void install_readiness_routes(admin_server& server, gateway& gw);

}  // namespace ewgw::proxy
