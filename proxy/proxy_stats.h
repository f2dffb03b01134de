// Metrics of the connection path, named as Envoy names them so existing dashboards work.
// Each list generates its struct and its exposition (stats/stats.h).
#pragma once

#include "stats/stats.h"

namespace ewgw::proxy {

// Scope "listener.<address>_<port>." (Envoy's listener stats).
#define EWGW_LISTENER_STATS(COUNTER, GAUGE)                                                        \
  COUNTER(downstream_cx_total, "Connections accepted by the listener")                              \
  GAUGE(downstream_cx_active, "Connections open on the listener")                                   \
  COUNTER(downstream_cx_destroy, "Connections closed")                                              \
  COUNTER(downstream_pre_cx_timeout, "Connections closed because the ClientHello did not arrive in time") \
  COUNTER(no_filter_chain_match, "Connections closed because no filter chain matched")
EWGW_STATS_BLOCK(listener_stats, EWGW_LISTENER_STATS)

// Scope "listener.<address>_<port>.tls_inspector." (Envoy's tls_inspector stats, plus
// client_hello_malformed and connection_closed for the outcomes Envoy folds elsewhere).
#define EWGW_TLS_INSPECTOR_STATS(COUNTER, GAUGE)                                                   \
  COUNTER(tls_found, "ClientHellos parsed")                                                         \
  COUNTER(tls_not_found, "Connections whose first bytes are not a TLS ClientHello")                 \
  COUNTER(sni_found, "ClientHellos with a server name")                                             \
  COUNTER(sni_not_found, "ClientHellos without a server name")                                      \
  COUNTER(alpn_found, "ClientHellos with an ALPN offer")                                            \
  COUNTER(alpn_not_found, "ClientHellos without an ALPN offer")                                     \
  COUNTER(client_hello_too_large, "Connections closed because the ClientHello exceeded 16 KiB")     \
  COUNTER(client_hello_malformed, "Connections closed because the ClientHello had inconsistent lengths or fields") \
  COUNTER(connection_closed, "Connections the client closed before its ClientHello was complete")
EWGW_STATS_BLOCK(tls_inspector_stats, EWGW_TLS_INSPECTOR_STATS)

// Scope "tcp.<stat_prefix>." (Envoy's tcp_proxy stats).
#define EWGW_TCP_STATS(COUNTER, GAUGE)                                                             \
  COUNTER(downstream_cx_total, "Connections routed through this tcp_proxy")                         \
  COUNTER(downstream_cx_no_route, "Connections closed because the cluster does not exist")          \
  COUNTER(downstream_cx_rx_bytes_total, "Bytes received from downstream")                           \
  COUNTER(downstream_cx_tx_bytes_total, "Bytes sent to downstream")                                 \
  COUNTER(idle_timeout, "Connections closed by idle_timeout")                                       \
  COUNTER(max_downstream_connection_duration, "Connections closed by max_downstream_connection_duration")
EWGW_STATS_BLOCK(tcp_stats, EWGW_TCP_STATS)

// Scope "cluster.<name>." (Envoy's cluster upstream stats).
#define EWGW_CLUSTER_STATS(COUNTER, GAUGE)                                                         \
  COUNTER(upstream_cx_total, "Upstream connections attempted")                                      \
  GAUGE(upstream_cx_active, "Upstream connections open or opening")                                 \
  COUNTER(upstream_cx_connect_fail, "Upstream connects refused or reset")                           \
  COUNTER(upstream_cx_connect_timeout, "Upstream connects that exceeded connect_timeout")           \
  COUNTER(upstream_cx_connect_attempts_exceeded, "Connections closed after max_connect_attempts failed connects") \
  COUNTER(upstream_cx_overflow, "Connections refused by the max_connections circuit breaker")       \
  COUNTER(upstream_cx_none_healthy, "Connections closed because the cluster had no host")           \
  COUNTER(upstream_cx_unsupported_config, "Connections closed because the cluster (from xDS) uses settings ewgw does not implement") \
  COUNTER(upstream_cx_destroy, "Upstream connections closed")                                       \
  COUNTER(upstream_cx_rx_bytes_total, "Bytes received from upstream hosts")                         \
  COUNTER(upstream_cx_tx_bytes_total, "Bytes sent to upstream hosts")
EWGW_STATS_BLOCK(cluster_stats, EWGW_CLUSTER_STATS)

}  // namespace ewgw::proxy
