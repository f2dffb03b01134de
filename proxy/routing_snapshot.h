// The immutable routing state the data path reads: listeners with their chain matchers, and
// clusters with their load balancers. Built off the data path from plain config, published to
// every worker as a whole; a connection takes what it needs (its listener and cluster, by
// shared_ptr) when it starts and never observes a later update.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include <boost/smart_ptr/intrusive_ptr.hpp>
#include <boost/smart_ptr/intrusive_ref_counter.hpp>

#include "accesslog/writer.h"
#include "lb/load_balancer.h"
#include "proxy/filter_chain_matcher.h"
#include "proxy/flat_name_table.h"
#include "proxy/proxy_stats.h"
#include "xds/config.h"

namespace ewgw::proxy {

// What later versions of a cluster (EDS and CDS updates, by name) share with earlier ones that
// connections may still hold. One small block per cluster name instead of a separately
// allocated counter plus a lazy stats scope holding its own copy of the name. Counted in place
// (an atomic count: versions are released on any thread), without a shared_ptr control block.
struct cluster_shared_state : boost::intrusive_ref_counter<cluster_shared_state, boost::thread_safe_counter> {
  // Open or opening upstream connections across workers (circuit breaker input): the limit
  // holds across updates.
  std::atomic<std::uint32_t> active_connections{0};
  // "cluster.<name>.", created when a version first carries a connection: a gateway knows
  // thousands of clusters and most never do (stats::lazy_scope_slot). The registry keeps it alive.
  stats::lazy_scope_slot<cluster_stats> stats_scope;
};

// A cluster's texts that connections rarely or never read: its Istio services (filter_metadata
// istio.services; the first one's host, name and namespace label its Istio TCP metrics), shared
// with the decoded cluster, and, back to back in one block after their end offsets, why it
// cannot be used (empty when it can) and its EDS service name when that differs from its name
// (both empty for istiod's clusters: no block, and no offsets inline). As separate std::string
// members they would cost 32 bytes each inline (160 bytes per cluster at 10,000 clusters) and a
// heap block per long one.
class cluster_texts {
 public:
  cluster_texts() = default;
  cluster_texts(xds::istio_service_list services, std::string_view unsupported,
                std::string_view other_eds_service_name);

  // The first Istio service's labels, from the decoded cluster's shared list (not copied).
  std::string_view host() const { return services_.empty() ? std::string_view() : services_[0].host; }
  std::string_view name() const { return services_.empty() ? std::string_view() : services_[0].name; }
  std::string_view namespace_() const { return services_.empty() ? std::string_view() : services_[0].namespace_; }
  bool has_services() const { return !services_.empty(); }
  std::string_view unsupported() const { return part(0); }
  std::string_view other_eds_service_name() const { return part(1); }

 private:
  static constexpr std::size_t parts = 2;
  static constexpr std::size_t header = parts * sizeof(std::uint32_t);  // the end offsets
  std::uint32_t end_of(std::size_t i) const {
    std::uint32_t v;
    std::memcpy(&v, text_.get() + i * sizeof v, sizeof v);
    return v;
  }
  std::string_view part(std::size_t i) const {
    if (text_ == nullptr) return {};
    const std::uint32_t begin = i == 0 ? 0 : end_of(i - 1);
    return std::string_view(text_.get() + header + begin, end_of(i) - begin);
  }

  xds::istio_service_list services_;
  // The rare texts, after their end offsets; null when both are empty (istiod's clusters).
  std::unique_ptr<char[]> text_;
};

// A chain's "tcp.<stat_prefix>." counters, created when the chain first carries a connection:
// an east-west gateway has a chain per service, most of which may never see traffic at one
// gateway. Shared by the versions of the listener that keep the chain. The prefix (Istio: the
// ~60-character cluster name) is the decoded chain's shared name: one heap block per chain.
// Reference-counted in place (boost::intrusive_ptr, an atomic count: listener versions are
// released on any thread) rather than by std::shared_ptr: no separate control block, and an
// 8-byte pointer in each chain. The registry comes from the caller (listener_runtime::registry)
// instead of a pointer per chain.
class chain_tcp_stats : public boost::intrusive_ref_counter<chain_tcp_stats, boost::thread_safe_counter> {
 public:
  // `stat_prefix` is kept by reference: istiod's stat prefix is the cluster's name, one shared
  // copy (xds::shared_string) for the cluster, the chain and these stats.
  static boost::intrusive_ptr<chain_tcp_stats> make(xds::shared_string stat_prefix);
  chain_tcp_stats(const chain_tcp_stats&) = delete;
  chain_tcp_stats& operator=(const chain_tcp_stats&) = delete;

  // `registry` is the one the snapshot was built with.
  tcp_stats& worker(stats::registry& registry, std::size_t w) {
    return scope_.worker(registry, "tcp", stat_prefix(), w);
  }
  // The scope once created, else null (readers: scrape).
  const stats::block_scope<tcp_stats>* get() const { return scope_.get(); }
  std::string_view stat_prefix() const { return prefix_.view(); }

 private:
  explicit chain_tcp_stats(xds::shared_string stat_prefix) : prefix_(std::move(stat_prefix)) {}

  xds::shared_string prefix_;
  stats::lazy_scope_slot<tcp_stats> scope_;
};

// Fields read per connection first (tcp_session route/connect), admin-only ones last.
struct cluster_runtime {
  explicit cluster_runtime(xds::shared_string cluster_name) : name(std::move(cluster_name)) {}
  cluster_runtime(const cluster_runtime&) = delete;
  cluster_runtime& operator=(const cluster_runtime&) = delete;

  // The decoded cluster's name, shared (not a copy: ~90 bytes per cluster at 10,000 clusters).
  xds::shared_string name;
  std::shared_ptr<lb::load_balancer> balancer;
  boost::intrusive_ptr<cluster_shared_state> shared;  // never null once built
  std::chrono::milliseconds connect_timeout{5000};
  std::uint64_t revision = 0;  // xds::cluster_config::revision it was built from (0: unknown)
  // Istio service labels (meaningful when has_istio_service()), unsupported(), EDS service name.
  cluster_texts texts;
  std::uint32_t max_connections = 1024;
  bool added_via_api = false;  // from CDS, not the bootstrap
  // Set when an EDS cluster's service name is its own name (as istiod sends them): no copy.
  bool eds_service_is_name = false;

  // Set when the cluster has Istio services (labels its Istio TCP metrics, destination_service*).
  bool has_istio_service() const { return texts.has_services(); }

  // Non-empty for a cluster received over xDS with settings ewgw does not implement: connections
  // routed to it are closed (upstream_cx_unsupported_config). The text says which settings.
  std::string_view unsupported() const { return texts.unsupported(); }
  // The EDS service name; empty for a STATIC cluster.
  std::string_view eds_service_name() const {
    return eds_service_is_name ? std::string_view(name) : texts.other_eds_service_name();
  }
  // This cluster's "cluster.<name>." counters for worker `w`; the scope is created on first use
  // (one registry lookup per cluster, then one atomic load) in `registry`, the one the snapshot
  // was built with (listener_runtime::registry; not a pointer in every cluster).
  cluster_stats& worker_stats(stats::registry& registry, std::size_t w) {
    return shared->stats_scope.worker(registry, "cluster", name, w);
  }
  // The scope once created, else null (readers: scrape).
  const stats::block_scope<cluster_stats>* created_stats() const { return shared ? shared->stats_scope.get() : nullptr; }
};

struct weighted_target {
  std::shared_ptr<cluster_runtime> cluster;  // null when the cluster does not exist
  std::uint32_t cumulative_weight = 0;       // upper bound (exclusive) of its slot in [0, total)
  std::uint32_t weight = 0;                  // tcp_proxy weighted_clusters[i].weight (admin)
  std::string name;                          // tcp_proxy weighted_clusters[i].name
};

// A chain's tcp_proxy settings other than its cluster and its stats: what a connection reads
// after choosing its route (weights, sni_cluster, timeouts, attempts, logs) and what only the
// admin views read (names). istiod gives its thousands of SNI chains identical settings, so one
// immutable block serves every chain with equal settings (the listener owns the blocks) instead
// of ~100 bytes of them inline in each chain. Not the decoded xds::filter_chain_settings block,
// although istiod's chains share that one too: this one holds what the snapshot resolved and
// compiled (cluster objects of weighted targets, the access log set, an unresolved cluster's
// name), which the configuration model does not carry, and which changes when a cluster does.
struct chain_settings {
  // tcp_proxy access_log, compiled; null when the chain has none.
  std::shared_ptr<const accesslog::log_set> access_logs;
  std::vector<weighted_target> weighted;  // empty unless tcp_proxy has weighted_clusters
  std::uint32_t total_weight = 0;
  std::uint32_t max_connect_attempts = 1;  // tcp_proxy max_connect_attempts
  std::chrono::milliseconds idle_timeout{std::chrono::hours(1)};    // zero: none
  std::chrono::milliseconds max_downstream_connection_duration{0};  // zero: no limit
  // FilterChain.name; null when the chain has none (istiod's SNI chains). Shared, not a
  // std::string member: access log records hold it.
  std::shared_ptr<const std::string> name;
  // tcp_proxy.cluster while no cluster of that name exists (null otherwise). Once resolved,
  // the chain's `cluster` holds the name, so the common case keeps no second copy of it (and
  // chains naming different clusters still share one block).
  std::shared_ptr<const std::string> unresolved_cluster;
  // An sni_cluster filter precedes tcp_proxy: a non-empty SNI names the cluster.
  bool cluster_from_sni = false;

  // Same settings (weighted targets: same names, weights and resolved clusters; names and logs
  // by content/identity), so one block can serve both chains.
  bool same_as(const chain_settings& other) const;
};

// What the data path and the admin views need of a chain's tcp_proxy, not a copy of
// xds::tcp_proxy_config: an east-west gateway has a chain per service (tens of thousands), so
// every byte here counts that many times. Inline only what every connection reads first (its
// cluster, its stats); the rest is one pointer away in a block shared between chains.
struct filter_chain_runtime {
  std::shared_ptr<cluster_runtime> cluster;  // tcp_proxy.cluster resolved; null if absent/unknown
  // "tcp.<stat_prefix>." (see chain_tcp_stats). The only copy of the prefix.
  boost::intrusive_ptr<chain_tcp_stats> stats;
  // Never null once built; owned by the listener_runtime holding this chain
  // (listener_runtime::settings_blocks), shared with its other chains of equal settings.
  const chain_settings* settings = nullptr;

  // tcp_proxy.cluster (empty when weighted or when only the SNI names the cluster).
  std::string_view cluster_name() const {
    if (cluster) return cluster->name;
    return settings->unresolved_cluster ? std::string_view(*settings->unresolved_cluster) : std::string_view();
  }
};

struct listener_runtime {
  std::string name;
  // The registry the snapshot was built with: its chains' and clusters' stats scopes are created
  // there on first use (one pointer here rather than one in every chain and cluster).
  stats::registry* registry = nullptr;
  std::uint64_t revision = 0;  // xds::listener_config::revision it was built from (0: unknown)
  xds::socket_address address;
  bool tls_inspector = false;
  std::chrono::milliseconds listener_filters_timeout{15000};
  bool continue_on_listener_filters_timeout = false;
  // Shared by the versions of a listener whose chains did not change.
  std::shared_ptr<const filter_chain_matcher> matcher;
  std::vector<filter_chain_runtime> chains;
  std::optional<filter_chain_runtime> default_chain;
  // The distinct chain_settings its chains (and default chain) point at: usually one.
  std::vector<std::shared_ptr<const chain_settings>> settings_blocks;
  std::shared_ptr<stats::block_scope<listener_stats>> stats;
  std::shared_ptr<stats::block_scope<tls_inspector_stats>> tls_stats;
  // Listener.access_log, compiled; null when it has none.
  std::shared_ptr<const accesslog::log_set> access_logs;
  // Set when the listener or any of its chains logs: sessions then keep an access log record.
  accesslog::writer* log_writer = nullptr;
  std::uint32_t log_needs = 0;  // accesslog::needs of every log on the listener and its chains
};

// A snapshot's clusters by name: a flat_name_table whose key is the name each cluster holds (no
// copy, no node per cluster: ~25 bytes per cluster instead of a 48-byte node plus a bucket).
class cluster_table {
 public:
  // Room for `count` clusters.
  void reserve(std::size_t count) { table_.reserve(count); }
  // Adds `c`; a later cluster of the same name replaces the earlier one (as the bootstrap's
  // last definition wins).
  void put(std::shared_ptr<cluster_runtime> c) {
    auto [position, added] = table_.add(c);
    if (!added) table_.at(position) = std::move(c);
  }
  // Drops the room reserved for names that turned out to be repeated.
  void shrink() { table_.shrink(); }

  // The cluster named `name`, or null. Allocation-free (sni_cluster looks up per connection).
  const std::shared_ptr<cluster_runtime>* find(std::string_view name) const { return table_.find(name); }
  bool contains(std::string_view name) const { return find(name) != nullptr; }
  // The cluster named `name`, or a null pointer.
  const std::shared_ptr<cluster_runtime>& at(std::string_view name) const {
    static const std::shared_ptr<cluster_runtime> none;
    const auto* found = find(name);
    return found != nullptr ? *found : none;
  }
  std::size_t size() const { return table_.size(); }
  bool empty() const { return table_.empty(); }
  // In the order of the assembled configuration's cluster list (ads_state's in-force order,
  // which a removal changes by moving the last cluster into the gap): deterministic, not sorted.
  const std::shared_ptr<cluster_runtime>* begin() const { return table_.begin(); }
  const std::shared_ptr<cluster_runtime>* end() const { return table_.end(); }

 private:
  struct name_of {
    std::string_view operator()(const std::shared_ptr<cluster_runtime>& c) const { return c->name; }
  };
  flat_name_table<std::shared_ptr<cluster_runtime>, name_of> table_;
};

struct routing_snapshot {
  std::uint64_t version = 0;
  // The gateway's own Istio identity (node metadata): the source_* labels of its Istio metrics.
  xds::node_config::istio_identity istio_node;
  std::vector<std::shared_ptr<const listener_runtime>> listeners;
  // By name, for sni_cluster (the SNI names the cluster) and for chains resolving clusters.
  cluster_table clusters;

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
