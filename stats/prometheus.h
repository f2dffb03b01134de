// Prometheus text exposition of the registry, named as Envoy's /stats/prometheus names things,
// so Istio's dashboards and alerts work unchanged:
//
//   cluster.<name>.upstream_cx_total         -> envoy_cluster_upstream_cx_total{envoy_cluster_name="<name>"}
//   listener.<addr>.downstream_cx_total      -> envoy_listener_downstream_cx_total{envoy_listener_address="<addr>"}
//   listener.<addr>.tls_inspector.sni_found  -> envoy_listener_tls_inspector_sni_found{envoy_listener_address="<addr>"}
//   tcp.<prefix>.downstream_cx_total         -> envoy_tcp_downstream_cx_total{envoy_tcp_prefix="<prefix>"}
//   server.live                              -> envoy_server_live
//
// Like Envoy, counter names are kept as they are (no "_total" appended), so a few of them lint
// with a warning in promtool; names ewgw coins itself follow Prometheus conventions.
#pragma once

#include <string>

#include "stats/stats.h"

namespace ewgw::stats {

std::string render_prometheus(const registry& r);

// The Prometheus label name for a scope family's tagged value (Envoy's tag extractors), or ""
// for untagged families.
std::string_view prometheus_label_for(std::string_view family);

}  // namespace ewgw::stats
