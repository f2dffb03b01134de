// The immutable routing state the data path reads: listeners with their chain matchers, and
// clusters with their load balancers. Built off the data path from plain config, published to
// every worker as a whole; a connection takes what it needs (its listener and cluster, by
// shared_ptr) when it starts and never observes a later update.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "accesslog/writer.h"
#include "lb/load_balancer.h"
#include "proxy/filter_chain_matcher.h"
#include "proxy/proxy_stats.h"
#include "xds/config.h"

namespace ewgw::proxy {

struct cluster_runtime {
  std::string name;
  std::uint64_t revision = 0;  // xds::cluster_config::revision it was built from (0: unknown)
  std::chrono::milliseconds connect_timeout{5000};
  std::uint32_t max_connections = 1024;
  // Non-empty for a cluster received over xDS with settings ewgw does not implement: connections
  // routed to it are closed (upstream_cx_unsupported_config). The text says which settings.
  std::string unsupported;
  bool added_via_api = false;    // from CDS, not the bootstrap
  std::string eds_service_name;  // empty for a STATIC cluster
  std::shared_ptr<lb::load_balancer> balancer;
  explicit cluster_runtime(stats::registry& registry, const std::string& cluster_name)
      : name(cluster_name), stats(registry, "cluster", cluster_name) {}
  stats::lazy_scope<cluster_stats> stats;
  // The first of the cluster's Istio services (filter_metadata istio.services), which labels its
  // Istio TCP metrics (destination_service*); unset for clusters istiod did not describe.
  std::optional<xds::istio_service> istio_service;
  // Open or opening upstream connections across workers (circuit breaker input). Carried over
  // to later versions of the same cluster (by name) so the limit holds across updates.
  std::shared_ptr<std::atomic<std::uint32_t>> active_connections;
};

struct weighted_target {
  std::shared_ptr<cluster_runtime> cluster;  // null when the cluster does not exist
  std::uint32_t cumulative_weight = 0;       // upper bound (exclusive) of its slot in [0, total)
};

struct filter_chain_runtime {
  std::string name;
  xds::tcp_proxy_config tcp_proxy;
  std::shared_ptr<cluster_runtime> cluster;  // tcp_proxy.cluster resolved; null if absent/unknown
  std::vector<weighted_target> weighted;
  std::uint32_t total_weight = 0;
  // "tcp.<stat_prefix>.", created when the chain first carries a connection: an east-west
  // gateway has a chain per service, most of which may never see traffic at one gateway.
  // Shared by the versions of the listener that keep this chain.
  std::shared_ptr<stats::lazy_scope<tcp_stats>> stats;
  // tcp_proxy access_log, compiled; null when the chain has none.
  std::shared_ptr<const accesslog::log_set> access_logs;
};

struct listener_runtime {
  std::string name;
  std::uint64_t revision = 0;  // xds::listener_config::revision it was built from (0: unknown)
  xds::socket_address address;
  bool tls_inspector = false;
  std::chrono::milliseconds listener_filters_timeout{15000};
  bool continue_on_listener_filters_timeout = false;
  // Shared by the versions of a listener whose chains did not change.
  std::shared_ptr<const filter_chain_matcher> matcher;
  std::vector<filter_chain_runtime> chains;
  std::optional<filter_chain_runtime> default_chain;
  std::shared_ptr<stats::block_scope<listener_stats>> stats;
  std::shared_ptr<stats::block_scope<tls_inspector_stats>> tls_stats;
  // Listener.access_log, compiled; null when it has none.
  std::shared_ptr<const accesslog::log_set> access_logs;
  // Set when the listener or any of its chains logs: sessions then keep an access log record.
  accesslog::writer* log_writer = nullptr;
  std::uint32_t log_needs = 0;  // accesslog::needs of every log on the listener and its chains
};

struct routing_snapshot {
  std::uint64_t version = 0;
  // The gateway's own Istio identity (node metadata): the source_* labels of its Istio metrics.
  xds::node_config::istio_identity istio_node;
  std::vector<std::shared_ptr<const listener_runtime>> listeners;
  // By name, for sni_cluster (the SNI names the cluster) and for chains resolving clusters. The
  // key views the name held by the cluster it maps to.
  std::unordered_map<std::string_view, std::shared_ptr<cluster_runtime>, string_hash, std::equal_to<>> clusters;

  const listener_runtime* find_listener(std::string_view name) const;
};

// Builds a snapshot from plain config. `previous` (may be null) is the snapshot it replaces:
// state that must survive updates is carried over from it. Errors (e.g. overlapping chain
// matchers) are appended to `errors`, each naming the listener; on error the result must not be
// published.
//
// Reuse: a listener or cluster whose revision (xds/config.h, set by the ADS client) equals the
// one its previous version was built from is kept as is, with its balancer state. A listener
// whose content is the same but one of whose clusters was rebuilt gets a new version sharing the
// previous chain matcher. So a single-cluster EDS update at 10,000 clusters rebuilds one cluster
// and re-resolves one listener's chains instead of building everything. Revision 0 (static
// configuration) is always rebuilt.
//
// A rebuilt cluster's balancer is built from the previous one of the same name: hosts with the
// same address are kept, with their connection counts and outlier state, and so are the
// balancer's statistics.
//
// Access logs are compiled and their files opened through `access_logs`; a listener whose
// format is invalid or whose file cannot be opened is an error. With no writer (tests of
// routing alone) access logs are left out.
std::shared_ptr<const routing_snapshot> build_snapshot(const xds::bootstrap_config& config, stats::registry& registry,
                                                       std::uint64_t version, const routing_snapshot* previous,
                                                       std::vector<std::string>& errors,
                                                       accesslog::writer* access_logs = nullptr);

// Envoy's stat name for a listener: "<address>_<port>" (e.g. "0.0.0.0_15443").
std::string listener_stat_name(const xds::socket_address& address);

}  // namespace ewgw::proxy
