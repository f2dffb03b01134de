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
// client_hello_malformed_total and connection_closed for the outcomes Envoy folds elsewhere).
#define EWGW_TLS_INSPECTOR_STATS(COUNTER, GAUGE)                                                   \
  COUNTER(tls_found, "ClientHellos parsed")                                                         \
  COUNTER(tls_not_found, "Connections whose first bytes are not a TLS ClientHello")                 \
  COUNTER(sni_found, "ClientHellos with a server name")                                             \
  COUNTER(sni_not_found, "ClientHellos without a server name")                                      \
  COUNTER(alpn_found, "ClientHellos with an ALPN offer")                                            \
  COUNTER(alpn_not_found, "ClientHellos without an ALPN offer")                                     \
  COUNTER(client_hello_too_large, "Connections closed because the ClientHello exceeded 16 KiB")     \
  COUNTER(client_hello_malformed_total, "Connections closed because the ClientHello had inconsistent lengths or fields") \
  COUNTER(connection_closed, "Connections the client closed before its ClientHello was complete")
#define EWGW_TLS_INSPECTOR_HISTOGRAMS(HISTOGRAM) \
  HISTOGRAM(bytes_processed, "Bytes read while looking for the ClientHello")
EWGW_STATS_BLOCK_WITH_HISTOGRAMS(tls_inspector_stats, EWGW_TLS_INSPECTOR_STATS, EWGW_TLS_INSPECTOR_HISTOGRAMS)

// Scope "tcp.<stat_prefix>." (Envoy's tcp_proxy stats).
#define EWGW_TCP_STATS(COUNTER, GAUGE)                                                             \
  COUNTER(downstream_cx_total, "Connections routed through this tcp_proxy")                         \
  COUNTER(downstream_cx_no_route, "Connections closed because the cluster does not exist")          \
  COUNTER(downstream_cx_rx_bytes_total, "Bytes received from downstream")                           \
  COUNTER(downstream_cx_tx_bytes_total, "Bytes sent to downstream")                                 \
  COUNTER(idle_timeout, "Connections closed by idle_timeout")                                       \
  COUNTER(max_downstream_connection_duration, "Connections closed by max_downstream_connection_duration")
EWGW_STATS_BLOCK(tcp_stats, EWGW_TCP_STATS)

// Scope "cluster.<name>." (Envoy's cluster upstream stats), created when the cluster first
// carries a connection (stats::lazy_scope).
#define EWGW_CLUSTER_STATS(COUNTER, GAUGE)                                                         \
  COUNTER(upstream_cx_total, "Upstream connections attempted")                                      \
  GAUGE(upstream_cx_active, "Upstream connections open or opening")                                 \
  COUNTER(upstream_cx_connect_fail, "Upstream connects refused or reset")                           \
  COUNTER(upstream_cx_connect_timeout, "Upstream connects that exceeded connect_timeout")           \
  COUNTER(upstream_cx_connect_attempts_exceeded, "Connections closed because their last connect attempt failed (all max_connect_attempts spent; response flag UF)") \
  COUNTER(upstream_cx_overflow, "Connections refused by the max_connections circuit breaker")       \
  COUNTER(upstream_cx_none_healthy, "Connections closed because the cluster had no host")           \
  COUNTER(upstream_cx_unsupported_config, "Connections closed because the cluster (from xDS) uses settings ewgw does not implement") \
  COUNTER(upstream_cx_destroy, "Upstream connections closed")                                       \
  COUNTER(upstream_cx_rx_bytes_total, "Bytes received from upstream hosts")                         \
  COUNTER(upstream_cx_tx_bytes_total, "Bytes sent to upstream hosts")
#define EWGW_CLUSTER_HISTOGRAMS(HISTOGRAM)                                                         \
  HISTOGRAM(upstream_cx_connect_ms, "Upstream connect time in milliseconds")                        \
  HISTOGRAM(upstream_cx_length_ms, "Upstream connection length in milliseconds")
EWGW_STATS_BLOCK_WITH_HISTOGRAMS(cluster_stats, EWGW_CLUSTER_STATS, EWGW_CLUSTER_HISTOGRAMS)

// Scope "server." (Envoy's server stats), refreshed when read.
#define EWGW_SERVER_STATS(COUNTER, GAUGE)                                                          \
  GAUGE(live, "1 while the gateway is serving (not draining)")                                      \
  GAUGE(state, "Server state: 0 live, 1 draining, 2 pre-initializing, 3 initializing (Envoy's values)") \
  GAUGE(uptime, "Seconds since start")                                                              \
  GAUGE(concurrency, "Worker threads")                                                              \
  GAUGE(total_connections, "Downstream connections open on all listeners")                          \
  GAUGE(memory_allocated, "Bytes allocated by the process heap (mallinfo2 uordblks)")               \
  GAUGE(memory_heap_size, "Bytes the heap holds from the system (mallinfo2 arena + hblkhd)")        \
  GAUGE(memory_physical_size, "Resident set size in bytes")
EWGW_STATS_BLOCK(server_stats, EWGW_SERVER_STATS)

}  // namespace ewgw::proxy
