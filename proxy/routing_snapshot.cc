#include "proxy/routing_snapshot.h"

namespace ewgw::proxy {

const listener_runtime* routing_snapshot::find_listener(std::string_view name) const {
  for (const auto& l : listeners) {
    if (l->name == name) return l.get();
  }
  return nullptr;
}

std::string listener_stat_name(const xds::socket_address& address) {
  return address.address + "_" + std::to_string(address.port);
}

namespace {

lb::host_health to_lb_health(xds::health_status h) {
  switch (h) {
    case xds::health_status::unknown:
    case xds::health_status::healthy: return lb::host_health::healthy;
    case xds::health_status::degraded: return lb::host_health::degraded;
    case xds::health_status::unhealthy:
    case xds::health_status::draining:
    case xds::health_status::timeout: return lb::host_health::unhealthy;
  }
  return lb::host_health::unhealthy;
}

std::shared_ptr<cluster_runtime> build_cluster(const xds::cluster_config& c, stats::registry& registry,
                                               const routing_snapshot* previous) {
  auto out = std::make_shared<cluster_runtime>();
  out->name = c.name;
  out->connect_timeout = c.connect_timeout;
  out->max_connections = c.max_connections;
  out->unsupported = c.unsupported;
  std::vector<lb::host_entry> hosts;
  for (const xds::locality_endpoints_config& loc : c.load_assignment.localities) {
    for (const xds::endpoint_config& e : loc.endpoints) {
      lb::endpoint_address a;
      if (!lb::endpoint_address::parse(e.address.address, e.address.port, a)) continue;  // decode validated it
      hosts.push_back({std::make_shared<lb::host>(a, e.weight, to_lb_health(e.health)), loc.priority});
    }
  }
  out->balancer = std::make_shared<lb::load_balancer>(std::move(hosts), registry.workers());
  out->stats = registry.get<cluster_stats>("cluster", c.name);
  if (previous != nullptr) {
    if (auto it = previous->clusters.find(c.name); it != previous->clusters.end()) {
      out->active_connections = it->second->active_connections;
    }
  }
  if (!out->active_connections) out->active_connections = std::make_shared<std::atomic<std::uint32_t>>(0);
  return out;
}

filter_chain_runtime build_chain(const xds::filter_chain_config& chain, const routing_snapshot& snapshot,
                                 stats::registry& registry) {
  filter_chain_runtime out;
  out.name = chain.name;
  out.tcp_proxy = chain.tcp_proxy;
  if (auto it = snapshot.clusters.find(chain.tcp_proxy.cluster); it != snapshot.clusters.end()) out.cluster = it->second;
  for (const xds::weighted_cluster& w : chain.tcp_proxy.weighted_clusters) {
    out.total_weight += w.weight;
    weighted_target t;
    if (auto it = snapshot.clusters.find(w.name); it != snapshot.clusters.end()) t.cluster = it->second;
    t.cumulative_weight = out.total_weight;
    out.weighted.push_back(std::move(t));
  }
  out.stats = registry.get<tcp_stats>("tcp", chain.tcp_proxy.stat_prefix);
  return out;
}

}  // namespace

std::shared_ptr<const routing_snapshot> build_snapshot(const xds::bootstrap_config& config, stats::registry& registry,
                                                       std::uint64_t version, const routing_snapshot* previous,
                                                       std::vector<std::string>& errors) {
  auto snapshot = std::make_shared<routing_snapshot>();
  snapshot->version = version;
  for (const xds::cluster_config& c : config.clusters) snapshot->clusters[c.name] = build_cluster(c, registry, previous);
  for (const xds::listener_config& l : config.listeners) {
    auto out = std::make_shared<listener_runtime>();
    out->name = l.name;
    out->address = l.address;
    out->tls_inspector = l.tls_inspector;
    out->listener_filters_timeout = l.listener_filters_timeout;
    out->continue_on_listener_filters_timeout = l.continue_on_listener_filters_timeout;
    if (auto e = out->matcher.build(l.filter_chains)) errors.push_back("listener '" + l.name + "': " + *e);
    for (const xds::filter_chain_config& chain : l.filter_chains) {
      out->chains.push_back(build_chain(chain, *snapshot, registry));
    }
    if (l.default_filter_chain) out->default_chain = build_chain(*l.default_filter_chain, *snapshot, registry);
    const std::string stat_name = listener_stat_name(l.address);
    out->stats = registry.get<listener_stats>("listener", stat_name);
    out->tls_stats = registry.get<tls_inspector_stats>("listener", stat_name + ".tls_inspector");
    snapshot->listeners.push_back(std::move(out));
  }
  return snapshot;
}

}  // namespace ewgw::proxy
