#include "proxy/cluster_metrics.h"

#include <map>
#include <string_view>
#include <tuple>

namespace ewgw::proxy {

namespace {

// HELP text for lb/'s statistics (lb_stats.h names them; its list carries no prose).
std::string_view lb_help(std::string_view name) {
  static constexpr std::pair<std::string_view, std::string_view> help[] = {
      {"membership_healthy", "Hosts the load balancer counts as healthy (EDS health and not ejected)"},
      {"membership_degraded", "Hosts the load balancer counts as degraded"},
      {"membership_excluded", "Hosts excluded from load balancing and from the panic calculation"},
      {"membership_total", "Hosts in the cluster"},
      {"lb_healthy_panic", "Hosts picked while a priority was in panic (too few healthy hosts)"},
      {"ejections_active", "Hosts ejected by outlier detection now"},
      {"ejections_overflow", "Ejections not done because of max_ejection_percent"},
      {"ejections_enforced_total", "Ejections enforced, of any kind"},
      {"ejections_detected_consecutive_5xx", "Consecutive-5xx outliers detected (enforced or not)"},
      {"ejections_enforced_consecutive_5xx", "Consecutive-5xx ejections enforced"},
      {"ejections_detected_consecutive_gateway_failure", "Consecutive gateway-failure outliers detected"},
      {"ejections_enforced_consecutive_gateway_failure", "Consecutive gateway-failure ejections enforced"},
      {"ejections_detected_consecutive_local_origin_failure", "Consecutive local-origin-failure outliers detected"},
      {"ejections_enforced_consecutive_local_origin_failure", "Consecutive local-origin-failure ejections enforced"},
      {"ejections_detected_success_rate", "Success-rate outliers detected"},
      {"ejections_enforced_success_rate", "Success-rate ejections enforced"},
      {"ejections_detected_local_origin_success_rate", "Local-origin success-rate outliers detected"},
      {"ejections_enforced_local_origin_success_rate", "Local-origin success-rate ejections enforced"},
      {"ejections_detected_failure_percentage", "Failure-percentage outliers detected"},
      {"ejections_enforced_failure_percentage", "Failure-percentage ejections enforced"},
      {"ejections_detected_local_origin_failure_percentage", "Local-origin failure-percentage outliers detected"},
      {"ejections_enforced_local_origin_failure_percentage", "Local-origin failure-percentage ejections enforced"},
  };
  for (const auto& [n, h] : help) {
    if (n == name) return h;
  }
  return "Load balancer statistic";
}

constexpr std::string_view outlier_prefix = "outlier_detection.";

// Any outlier detection or ejection: the cluster gets its series even if it carried no traffic
// itself (cannot happen today, detections come from connect outcomes; kept for when health
// checks or other sources feed outlier detection).
bool had_outlier_activity(const lb::lb_stats& s) {
  bool any = false;
  s.visit([&](std::string_view name, lb::stat_kind, std::uint64_t value) {
    if (name.starts_with(outlier_prefix) && value != 0) any = true;
  });
  return any;
}

// The outlier_detection.* series only for clusters that have outlier detection configured (or
// had detections under an earlier configuration), as Envoy creates them with the detector.
void emit_lb_stats(const cluster_runtime& c, const lb::lb_stats& s, bool with_outlier,
                   const stats::registry::scope_emitter& emit) {
  stats::computed_scope membership("cluster", std::string(c.name.view()));
  stats::computed_scope outlier("cluster", std::string(c.name.view()), "outlier_detection");
  s.visit([&](std::string_view name, lb::stat_kind kind, std::uint64_t value) {
    const auto k = kind == lb::stat_kind::counter ? stats::metric_kind::counter : stats::metric_kind::gauge;
    const auto v = static_cast<std::int64_t>(value);
    if (name.starts_with(outlier_prefix)) {
      name.remove_prefix(outlier_prefix.size());
      outlier.add(name, lb_help(name), k, v);
    } else {
      membership.add(name, lb_help(name), k, v);
    }
  });
  emit(membership);
  if (with_outlier) emit(outlier);
}

// The counters Istio's TCP metrics are derived from, summed over workers.
struct istio_tcp_totals {
  std::uint64_t established = 0;  // upstream connections that connected (connect_ms samples)
  std::uint64_t closed = 0;       // of those, closed (length_ms samples)
  std::uint64_t rx_bytes = 0;     // from upstream hosts, i.e. sent to the downstream client
  std::uint64_t tx_bytes = 0;     // to upstream hosts, i.e. received from the downstream client
  std::uint64_t overflow = 0;     // UO
  std::uint64_t none_healthy = 0; // UH
  std::uint64_t unreachable = 0;  // UF
};

istio_tcp_totals sum_cluster(const stats::block_scope<cluster_stats>& scope) {
  istio_tcp_totals t;
  const auto count = [](const stats::histogram& h) {
    std::uint64_t n = 0;
    for (std::size_t i = 0; i <= stats::histogram_bucket_count; ++i) n += h.count_at(i);
    return n;
  };
  for (std::size_t w = 0; w < scope.workers(); ++w) {
    const cluster_stats& b = scope.worker(w);
    t.established += count(b.upstream_cx_connect_ms);
    t.closed += count(b.upstream_cx_length_ms);
    t.rx_bytes += b.upstream_cx_rx_bytes_total.value();
    t.tx_bytes += b.upstream_cx_tx_bytes_total.value();
    t.overflow += b.upstream_cx_overflow.value();
    t.none_healthy += b.upstream_cx_none_healthy.value();
    t.unreachable += b.upstream_cx_connect_attempts_exceeded.value();
  }
  return t;
}

// One Istio series: its labels that vary here. Istio's stats filter keys its counters by the
// full label set, so clusters of the same service (ports, subsets) add up in one series.
using istio_key = std::tuple<std::string_view, std::string_view, std::string_view, std::string_view>;  // host, name, namespace, flags

struct istio_values {
  std::uint64_t opened = 0, closed = 0, sent = 0, received = 0;
};

constexpr std::string_view unknown = "unknown";

std::string_view or_unknown(std::string_view s) { return s.empty() ? unknown : std::string_view(s); }

void emit_istio(const routing_snapshot& snapshot, const std::map<istio_key, istio_values>& series,
                const stats::registry::scope_emitter& emit) {
  const xds::node_config::istio_identity& node = snapshot.istio_node;
  for (const auto& [key, v] : series) {
    const auto& [host, name, ns, flags] = key;
    // Envoy's /stats shows the tags inside the name; this keeps each series' key unique there.
    stats::computed_scope s("istiocustom", "reporter.source.destination_service." + std::string(host) +
                                               ".destination_service_name." + std::string(name) +
                                               ".destination_service_namespace." + std::string(ns) +
                                               ".response_flags." + std::string(flags));
    // Istio's labels for a gateway listener: the stats filter runs with reporter "source" (its
    // listeners are outbound; istiod sets SERVER_GATEWAY only for waypoints). source_* then
    // describe the proxy itself from its node metadata, as Istio's filter reads them. What
    // Istio learns from the upstream's TLS or peer metadata (principals, destination workload)
    // is not visible to a passthrough gateway, hence "unknown" (and "latest" for the revision,
    // Istio's default).
    s.set_prometheus_labels({
        {"reporter", "source"},
        {"source_workload", node.workload_name},
        {"source_canonical_service", node.canonical_name},
        {"source_canonical_revision", node.canonical_revision},
        {"source_workload_namespace", node.namespace_},
        {"source_principal", std::string(unknown)},
        {"source_app", node.app},
        {"source_version", node.version},
        {"source_cluster", node.cluster_id},
        {"destination_workload", std::string(unknown)},
        {"destination_workload_namespace", std::string(unknown)},
        {"destination_principal", std::string(unknown)},
        {"destination_app", std::string(unknown)},
        {"destination_version", std::string(unknown)},
        {"destination_service", std::string(host)},
        {"destination_canonical_service", std::string(unknown)},
        {"destination_canonical_revision", "latest"},
        {"destination_service_name", std::string(name)},
        {"destination_service_namespace", std::string(ns)},
        {"destination_cluster", std::string(unknown)},
        {"request_protocol", "tcp"},
        {"response_flags", std::string(flags)},
        {"connection_security_policy", std::string(unknown)},
    });
    s.add("istio_tcp_connections_opened_total", "TCP connections opened through the gateway", stats::metric_kind::counter,
          static_cast<std::int64_t>(v.opened));
    s.add("istio_tcp_connections_closed_total", "TCP connections closed", stats::metric_kind::counter,
          static_cast<std::int64_t>(v.closed));
    if (flags == "-") {
      s.add("istio_tcp_sent_bytes_total", "Bytes sent to the client (the response direction) over TCP connections",
            stats::metric_kind::counter, static_cast<std::int64_t>(v.sent));
      s.add("istio_tcp_received_bytes_total", "Bytes received from the client (the request direction) over TCP connections",
            stats::metric_kind::counter, static_cast<std::int64_t>(v.received));
    }
    emit(s);
  }
}

}  // namespace

void emit_cluster_metrics(const routing_snapshot& snapshot, const stats::registry::scope_emitter& emit) {
  std::map<istio_key, istio_values> istio;
  for (const auto& c : snapshot.clusters) {
    const stats::block_scope<cluster_stats>* traffic = c->created_stats();
    const lb::lb_stats lb = c->balancer->stats();
    const bool outlier_activity = had_outlier_activity(lb);
    if (traffic == nullptr && !outlier_activity) continue;
    emit_lb_stats(*c, lb, outlier_activity || c->balancer->outlier_interval().count() > 0, emit);
    if (traffic == nullptr || !c->has_istio_service()) continue;
    // Istio's TCP metrics from this cluster's counters. Opened counts connections whose upstream
    // connected (Istio's filter reports a passthrough connection, which has no peer metadata
    // exchange, only when it closes; counting it when it connects keeps opened - closed = open).
    // Connections refused before connecting are opened and closed at once, with Envoy's
    // response flag: UO (circuit breaker), UH (no healthy host), UF (connect failed).
    const istio_tcp_totals t = sum_cluster(*traffic);
    const cluster_texts& svc = c->texts;
    const auto add = [&](std::string_view flags, std::uint64_t opened, std::uint64_t closed, std::uint64_t sent,
                         std::uint64_t received) {
      istio_values& v = istio[istio_key{svc.host(), or_unknown(svc.name()), or_unknown(svc.namespace_()), flags}];
      v.opened += opened;
      v.closed += closed;
      v.sent += sent;
      v.received += received;
    };
    // A series appears once something happened with its labels, as with Istio's counters.
    if (t.established != 0 || t.tx_bytes != 0) add("-", t.established, t.closed, t.rx_bytes, t.tx_bytes);
    if (t.overflow != 0) add("UO", t.overflow, t.overflow, 0, 0);
    if (t.none_healthy != 0) add("UH", t.none_healthy, t.none_healthy, 0, 0);
    if (t.unreachable != 0) add("UF", t.unreachable, t.unreachable, 0, 0);
  }
  emit_istio(snapshot, istio, emit);
}

}  // namespace ewgw::proxy
