// Per-cluster metrics computed when the registry is read (scrape, /stats), off the data path:
//
//   - the load balancer's statistics under Envoy's names (cluster.<name>.membership_healthy,
//     cluster.<name>.outlier_detection.ejections_active, ...), read from the balancers of the
//     routing snapshot in force. lb/ counts them itself (relaxed atomics shared by every
//     generation of a cluster's balancer, so counters never go back across EDS/CDS updates);
//   - Istio's TCP metrics (istio_tcp_connections_opened_total, ..._closed_total,
//     istio_tcp_sent_bytes_total, istio_tcp_received_bytes_total) with the labels Istio's stats
//     filter gives them on a gateway, derived from the cluster's own counters (cluster_stats).
//
// Cardinality: only clusters that carried a connection (their cluster scope exists) or had an
// outlier detection get series. A gateway knows thousands of clusters; most never carry anything.
#pragma once

#include "proxy/routing_snapshot.h"
#include "stats/stats.h"

namespace ewgw::proxy {

void emit_cluster_metrics(const routing_snapshot& snapshot, const stats::registry::scope_emitter& emit);

}  // namespace ewgw::proxy
