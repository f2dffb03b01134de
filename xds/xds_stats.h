// Metrics of the xDS client, named as Envoy names them so existing dashboards and Istio's
// readiness checks keep working. Written by the xDS thread only (worker block 0).
#pragma once

#include "stats/stats.h"

namespace ewgw::xds {

// Scopes "cluster_manager.cds.", "listener_manager.lds." and, per EDS cluster,
// "cluster.<name>." (Envoy's subscription stats).
#define EWGW_XDS_UPDATE_STATS(COUNTER, GAUGE)                                                      \
  COUNTER(update_attempt, "Responses received for this subscription")                               \
  COUNTER(update_success, "Responses accepted (ACK)")                                               \
  COUNTER(update_rejected, "Responses rejected (NACK); the last good configuration stays")
EWGW_STATS_BLOCK(xds_update_stats, EWGW_XDS_UPDATE_STATS)

// Scope "listener_manager." (next to Envoy's total_listeners_active / _warming).
#define EWGW_LISTENER_MANAGER_STATS(COUNTER, GAUGE)                                                \
  GAUGE(total_listeners_unusable, "Listeners accepted from LDS but not served: they use filters or settings ewgw does not implement")
EWGW_STATS_BLOCK(listener_manager_stats, EWGW_LISTENER_MANAGER_STATS)

// Scope "cluster_manager." (Envoy's gauges of the same names).
#define EWGW_CLUSTER_MANAGER_STATS(COUNTER, GAUGE)                                                 \
  GAUGE(active_clusters, "Clusters in force (static, and dynamic ones past warming)")              \
  GAUGE(warming_clusters, "Clusters from CDS waiting for their first EDS assignment")
EWGW_STATS_BLOCK(cluster_manager_stats, EWGW_CLUSTER_MANAGER_STATS)

// Scope "control_plane." (Envoy's GrpcMux stats).
#define EWGW_CONTROL_PLANE_STATS(COUNTER, GAUGE)                                                   \
  GAUGE(connected_state, "1 while a stream to the control plane is established, else 0")            \
  COUNTER(stream_opened, "Streams opened to the control plane")                                     \
  COUNTER(stream_closed, "Streams that ended (closed by the server, failed or cancelled)")
EWGW_STATS_BLOCK(control_plane_stats, EWGW_CONTROL_PLANE_STATS)

}  // namespace ewgw::xds
