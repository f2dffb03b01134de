#include "proxy/routing_snapshot.h"

#include <algorithm>
#include <map>
#include <random>
#include <unordered_map>


namespace ewgw::proxy {

const listener_runtime* routing_snapshot::find_listener(std::string_view name) const {
  for (const auto& l : listeners) {
    if (l->name == name) return l.get();
  }
  return nullptr;
}

cluster_texts::cluster_texts(xds::istio_service_list services, std::string_view unsupported,
                             std::string_view other_eds_service_name)
    : services_(std::move(services)) {
  const std::array<std::string_view, parts> texts{unsupported, other_eds_service_name};
  std::size_t total = 0;
  for (std::string_view t : texts) total += t.size();
  if (total == 0) return;
  text_ = std::make_unique_for_overwrite<char[]>(header + total);
  std::uint32_t end = 0;
  for (std::size_t i = 0; i < parts; ++i) {
    std::copy(texts[i].begin(), texts[i].end(), text_.get() + header + end);
    end += static_cast<std::uint32_t>(texts[i].size());
    std::memcpy(text_.get() + i * sizeof end, &end, sizeof end);
  }
}

bool chain_settings::same_as(const chain_settings& o) const {
  auto same_text = [](const std::shared_ptr<const std::string>& a, const std::shared_ptr<const std::string>& b) {
    return a == b || (a && b && *a == *b);
  };
  auto same_target = [](const weighted_target& a, const weighted_target& b) {
    return a.cluster == b.cluster && a.cumulative_weight == b.cumulative_weight && a.weight == b.weight && a.name == b.name;
  };
  return access_logs == o.access_logs && total_weight == o.total_weight && max_connect_attempts == o.max_connect_attempts &&
         idle_timeout == o.idle_timeout && max_downstream_connection_duration == o.max_downstream_connection_duration &&
         cluster_from_sni == o.cluster_from_sni && same_text(name, o.name) && same_text(unresolved_cluster, o.unresolved_cluster) &&
         std::equal(weighted.begin(), weighted.end(), o.weighted.begin(), o.weighted.end(), same_target);
}

boost::intrusive_ptr<chain_tcp_stats> chain_tcp_stats::make(xds::shared_string stat_prefix) {
  return boost::intrusive_ptr<chain_tcp_stats>(new chain_tcp_stats(std::move(stat_prefix)));
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

// Envoy's transport_socket_matches: the first match whose criteria all appear in the endpoint's
// envoy.transport_socket_match metadata selects its transport; no match, the cluster's own
// (plaintext). ewgw originates no TLS, so only endpoints whose transport is plaintext are used.
bool plaintext_endpoint(const xds::cluster_config& c, const xds::endpoint_config& e) {
  for (const xds::transport_socket_match_config& m : c.settings->transport_socket_matches) {
    const bool matches = std::all_of(m.match.begin(), m.match.end(), [&](const auto& criterion) {
      return std::find(e.transport_socket_match.begin(), e.transport_socket_match.end(), criterion) !=
             e.transport_socket_match.end();
    });
    if (matches) return m.plaintext;
  }
  return true;
}

lb::lb_policy to_lb_policy(xds::lb_policy p) {
  switch (p) {
    case xds::lb_policy::round_robin: return lb::lb_policy::round_robin;
    case xds::lb_policy::least_request: return lb::lb_policy::least_request;
    case xds::lb_policy::random: return lb::lb_policy::random;
  }
  return lb::lb_policy::round_robin;
}

// The cluster's load-balancing config in lb/ terms. Priorities keep their order; numbers that
// skip a value are compacted (an empty priority gets no load in Envoy's arithmetic, so the
// loads are the same, and a stray large number cannot allocate empty levels).
lb::cluster_config to_lb_config(const xds::cluster_config& c) {
  lb::cluster_config out;
  out.policy = to_lb_policy(c.settings->policy);
  out.choice_count = c.settings->least_request_choice_count;
  out.active_request_bias = c.settings->least_request_active_request_bias;
  out.healthy_panic_threshold = c.settings->healthy_panic_threshold_percent;
  out.locality_weighted = c.settings->locality_weighted;
  out.overprovisioning_factor = c.load_assignment.overprovisioning_factor;
  if (c.settings->outlier_detection) {
    const xds::outlier_detection_config& x = *c.settings->outlier_detection;
    lb::outlier_detection_config& o = out.outlier_detection;
    o.enabled = true;
    o.interval = x.interval;
    o.base_ejection_time = x.base_ejection_time;
    o.max_ejection_time = x.max_ejection_time;
    o.max_ejection_time_jitter = x.max_ejection_time_jitter;
    o.max_ejection_percent = x.max_ejection_percent;
    o.consecutive_5xx = x.consecutive_5xx;
    o.enforcing_consecutive_5xx = x.enforcing_consecutive_5xx;
    o.consecutive_gateway_failure = x.consecutive_gateway_failure;
    o.enforcing_consecutive_gateway_failure = x.enforcing_consecutive_gateway_failure;
    o.split_external_local_origin_errors = x.split_external_local_origin_errors;
    o.consecutive_local_origin_failure = x.consecutive_local_origin_failure;
    o.enforcing_consecutive_local_origin_failure = x.enforcing_consecutive_local_origin_failure;
    o.success_rate_minimum_hosts = x.success_rate_minimum_hosts;
    o.success_rate_request_volume = x.success_rate_request_volume;
    o.success_rate_stdev_factor = x.success_rate_stdev_factor;
    o.enforcing_success_rate = x.enforcing_success_rate;
    o.enforcing_local_origin_success_rate = x.enforcing_local_origin_success_rate;
    o.failure_percentage_threshold = x.failure_percentage_threshold;
    o.failure_percentage_minimum_hosts = x.failure_percentage_minimum_hosts;
    o.failure_percentage_request_volume = x.failure_percentage_request_volume;
    o.enforcing_failure_percentage = x.enforcing_failure_percentage;
    o.enforcing_failure_percentage_local_origin = x.enforcing_failure_percentage_local_origin;
  }
  std::vector<std::uint32_t> numbers;
  for (const xds::locality_endpoints_config& loc : c.load_assignment.localities) numbers.push_back(loc.priority);
  std::sort(numbers.begin(), numbers.end());
  numbers.erase(std::unique(numbers.begin(), numbers.end()), numbers.end());
  out.priorities.resize(numbers.size());
  for (const xds::locality_endpoints_config& loc : c.load_assignment.localities) {
    const auto index = std::lower_bound(numbers.begin(), numbers.end(), loc.priority) - numbers.begin();
    lb::locality_config l;
    l.name = loc.where->region + "/" + loc.where->zone + "/" + loc.where->sub_zone;
    l.weight = loc.weight;
    for (const xds::endpoint_config& e : loc.endpoints) {
      lb::host_config h;
      h.address.ip = e.ip.bytes;  // parsed by the decoder
      h.address.ipv6 = e.ip.ipv6;
      h.address.port = e.port;
      // Endpoints reached only over TLS (Istio auto-mTLS) are not used: ewgw originates no TLS.
      if (!c.settings->transport_socket_matches.empty() && !plaintext_endpoint(c, e)) continue;
      h.weight = e.weight;
      h.health = to_lb_health(e.health);
      l.hosts.push_back(h);
    }
    out.priorities[index].localities.push_back(std::move(l));
  }
  return out;
}

std::shared_ptr<cluster_runtime> build_cluster(const xds::cluster_config& c, stats::registry& registry,
                                               const routing_snapshot* previous) {
  auto out = std::make_shared<cluster_runtime>(c.name);
  out->revision = c.revision.value;
  out->connect_timeout = c.settings->connect_timeout;
  out->max_connections = c.settings->max_connections;
  out->added_via_api = c.added_via_api;
  std::string_view other_eds_service_name;
  if (c.type == xds::discovery_type::eds) {
    out->eds_service_is_name = c.eds_service_name == c.name;
    if (!out->eds_service_is_name) other_eds_service_name = c.eds_service_name;
  }
  out->texts = cluster_texts(c.istio_services, c.settings->unsupported, other_eds_service_name);
  const cluster_runtime* before = nullptr;
  if (previous != nullptr) {
    if (const auto* found = previous->clusters.find(c.name)) before = found->get();
  }
  lb::load_balancer::build_options options;
  options.workers = registry.workers();
  options.seed = std::random_device{}();
  out->balancer = lb::load_balancer::build(to_lb_config(c), options, before ? before->balancer.get() : nullptr);
  // The connection count and the stats scope (still "carried traffic": its series stay
  // exported) go on with the new version.
  out->shared = before != nullptr ? before->shared : boost::intrusive_ptr<cluster_shared_state>(new cluster_shared_state);
  return out;
}

std::shared_ptr<cluster_runtime> find_cluster(const routing_snapshot& snapshot, std::string_view name) {
  const auto* found = snapshot.clusters.find(name);
  return found == nullptr ? nullptr : *found;
}

// The chain_settings blocks of one listener, each distinct one once: chains with equal settings
// (all of istiod's SNI chains) point at one block. Looked up by a hash of the settings, so a
// listener whose chains all differ (each named, say) is still built in linear time.
class settings_interner {
 public:
  explicit settings_interner(std::vector<std::shared_ptr<const chain_settings>>& blocks) : blocks_(blocks) {
    for (const auto& b : blocks_) by_hash_.emplace(hash(*b), b.get());
  }
  const chain_settings* intern(chain_settings&& candidate) {
    const std::size_t h = hash(candidate);
    for (auto [it, end] = by_hash_.equal_range(h); it != end; ++it) {
      if (it->second->same_as(candidate)) return it->second;
    }
    const chain_settings* added = blocks_.emplace_back(std::make_shared<const chain_settings>(std::move(candidate))).get();
    by_hash_.emplace(h, added);
    return added;
  }

 private:
  static std::size_t hash(const chain_settings& s) {
    std::size_t h = std::hash<const void*>{}(s.access_logs.get());
    auto mix = [&h](std::size_t v) { h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2); };
    mix(s.max_connect_attempts);
    mix(static_cast<std::size_t>(s.idle_timeout.count()));
    mix(static_cast<std::size_t>(s.max_downstream_connection_duration.count()));
    mix(s.cluster_from_sni ? 1 : 0);
    if (s.name) mix(std::hash<std::string_view>{}(*s.name));
    if (s.unresolved_cluster) mix(std::hash<std::string_view>{}(*s.unresolved_cluster));
    for (const weighted_target& w : s.weighted) mix(std::hash<std::string_view>{}(w.name) + w.weight);
    return h;
  }

  std::vector<std::shared_ptr<const chain_settings>>& blocks_;
  std::unordered_multimap<std::size_t, const chain_settings*> by_hash_;
};

// Points a chain at the clusters of `snapshot`, by name. Its settings block changes only when
// they hold cluster state (weighted targets, or the name of a cluster that is gone); returns
// whether it did.
bool resolve(filter_chain_runtime& chain, const routing_snapshot& snapshot, settings_interner& settings) {
  std::shared_ptr<cluster_runtime> found = find_cluster(snapshot, chain.cluster_name());
  const chain_settings& before = *chain.settings;
  std::shared_ptr<const std::string> unresolved = before.unresolved_cluster;
  if (found) {
    unresolved.reset();  // `found` holds the name now
  } else if (chain.cluster) {
    unresolved = std::make_shared<const std::string>(chain.cluster->name);  // removed: keep the name
  }
  chain.cluster = std::move(found);
  if (unresolved == before.unresolved_cluster && before.weighted.empty()) return false;
  chain_settings after = before;
  after.unresolved_cluster = std::move(unresolved);
  for (weighted_target& w : after.weighted) w.cluster = find_cluster(snapshot, w.name);
  if (after.same_as(before)) return false;
  chain.settings = settings.intern(std::move(after));
  return true;
}

// Drops the blocks no chain of `l` points at any more (after resolve() gave some chains new ones).
void drop_unused_settings(listener_runtime& l) {
  std::vector<const chain_settings*> used;
  for (const auto& c : l.chains) used.push_back(c.settings);
  if (l.default_chain) used.push_back(l.default_chain->settings);
  std::sort(used.begin(), used.end());
  std::erase_if(l.settings_blocks, [&](const std::shared_ptr<const chain_settings>& b) {
    return !std::binary_search(used.begin(), used.end(), b.get());
  });
}

// Compiles access log lists once per build: istiod's chains share one decoded list.
class log_sets {
 public:
  explicit log_sets(accesslog::writer* w) : writer_(w) {}
  // Null when there is nothing to log (or no writer); sets `error` when the list is invalid.
  std::shared_ptr<const accesslog::log_set> get(const accesslog::logger_list& list, std::string& error) {
    if (writer_ == nullptr || list.empty()) return nullptr;
    auto [it, fresh] = built_.try_emplace(list.items.get());
    if (fresh) it->second = writer_->build(list, error);
    return it->second;
  }
  accesslog::writer* writer() const { return writer_; }

 private:
  accesslog::writer* writer_;
  std::map<const void*, std::shared_ptr<const accesslog::log_set>> built_;
};

filter_chain_runtime build_chain(const xds::filter_chain_config& chain, const routing_snapshot& snapshot,
                                 log_sets& logs, settings_interner& settings,
                                 std::string& log_error) {
  const xds::tcp_proxy_config& tp = chain.settings->tcp_proxy;
  chain_settings s;
  if (!chain.name.empty()) s.name = std::make_shared<const std::string>(chain.name);
  s.max_connect_attempts = tp.max_connect_attempts;
  s.cluster_from_sni = tp.cluster_from_sni;
  s.idle_timeout = tp.idle_timeout;
  s.max_downstream_connection_duration = tp.max_downstream_connection_duration;
  s.weighted.reserve(tp.weighted_clusters.size());
  for (const xds::weighted_cluster& w : tp.weighted_clusters) {
    s.total_weight += w.weight;
    weighted_target t;
    t.cumulative_weight = s.total_weight;
    t.weight = w.weight;
    t.name = w.name;
    t.cluster = find_cluster(snapshot, w.name);
    s.weighted.push_back(std::move(t));
  }
  filter_chain_runtime out;
  out.cluster = find_cluster(snapshot, chain.cluster);
  if (!out.cluster && !chain.cluster.empty()) {
    s.unresolved_cluster = std::make_shared<const std::string>(chain.cluster.view());
  }
  out.stats = chain_tcp_stats::make(chain.stat_prefix);
  std::string error;
  s.access_logs = logs.get(tp.access_logs, error);
  if (!error.empty() && log_error.empty()) log_error = "filter chain '" + chain.name + "': " + error;
  out.settings = settings.intern(std::move(s));
  return out;
}

// Names of clusters whose object differs between `previous` and `snapshot` (built, added or
// removed): usually a handful, so checked linearly.
class changed_clusters {
 public:
  void add(std::string_view name) { names_.push_back(name); }
  bool contains(std::string_view name) const {
    return std::find(names_.begin(), names_.end(), name) != names_.end();
  }
  bool touches(const filter_chain_runtime& chain) const {
    if (contains(chain.cluster_name())) return true;
    for (const weighted_target& w : chain.settings->weighted) {
      if (contains(w.name)) return true;
    }
    return false;
  }
  bool empty() const { return names_.empty(); }

 private:
  std::vector<std::string_view> names_;
};

// The previous version of listener `l`, when it was built from the same content.
std::shared_ptr<const listener_runtime> same_listener(const xds::listener_config& l, const routing_snapshot* previous) {
  if (previous == nullptr || l.revision.value == 0) return nullptr;
  for (const auto& old : previous->listeners) {
    if (old->name == l.name) return old->revision == l.revision.value ? old : nullptr;
  }
  return nullptr;
}

}  // namespace

std::shared_ptr<const routing_snapshot> build_snapshot(const xds::bootstrap_config& config, stats::registry& registry,
                                                       std::uint64_t version, const routing_snapshot* previous,
                                                       std::vector<std::string>& errors,
                                                       accesslog::writer* access_logs) {
  auto snapshot = std::make_shared<routing_snapshot>();
  log_sets logs(access_logs);
  snapshot->version = version;
  snapshot->istio_node = config.node.istio;
  snapshot->clusters.reserve(config.clusters.size());
  changed_clusters changed;
  std::size_t kept = 0;
  for (const xds::cluster_config& c : config.clusters) {
    if (previous != nullptr && c.revision.value != 0) {
      if (const auto* found = previous->clusters.find(c.name); found != nullptr && (*found)->revision == c.revision.value) {
        snapshot->clusters.put(*found);  // unchanged: same object, same balancer state
        ++kept;
        continue;
      }
    }
    auto built = build_cluster(c, registry, previous);
    changed.add(built->name);
    snapshot->clusters.put(std::move(built));
  }
  if (previous != nullptr && kept != previous->clusters.size()) {
    for (const auto& cluster : previous->clusters) {
      if (!snapshot->clusters.contains(cluster->name)) changed.add(cluster->name);  // removed (kept alive by `previous`)
    }
  }
  snapshot->clusters.shrink();
  for (const xds::listener_config& l : config.listeners) {
    if (auto old = same_listener(l, previous)) {
      auto touched = [&](const filter_chain_runtime& c) { return !changed.empty() && changed.touches(c); };
      if (std::none_of(old->chains.begin(), old->chains.end(), touched) &&
          (!old->default_chain || !touched(*old->default_chain))) {
        snapshot->listeners.push_back(std::move(old));
        continue;
      }
      // Same chains, some of their clusters changed: a new version sharing the matcher and the
      // stats, with those chains pointed at the new cluster objects.
      auto out = std::make_shared<listener_runtime>(*old);
      settings_interner settings(out->settings_blocks);
      // A chain moved to another block (even one the listener already had) may leave its old
      // block unused: drop those, so that blocks do not pile up across updates.
      bool moved = false;
      for (auto& chain : out->chains) {
        if (changed.touches(chain)) moved |= resolve(chain, *snapshot, settings);
      }
      if (out->default_chain && changed.touches(*out->default_chain)) {
        moved |= resolve(*out->default_chain, *snapshot, settings);
      }
      if (moved) drop_unused_settings(*out);
      snapshot->listeners.push_back(std::move(out));
      continue;
    }
    auto out = std::make_shared<listener_runtime>();
    out->name = l.name;
    out->registry = &registry;
    out->revision = l.revision.value;
    out->address = l.address;
    out->tls_inspector = l.tls_inspector;
    out->listener_filters_timeout = l.listener_filters_timeout;
    out->continue_on_listener_filters_timeout = l.continue_on_listener_filters_timeout;
    auto matcher = std::make_shared<filter_chain_matcher>();
    if (auto e = matcher->build(l.filter_chains)) errors.push_back("listener '" + l.name + "': " + *e);
    out->matcher = std::move(matcher);
    out->chains.reserve(l.filter_chains.size());
    std::string log_error;
    settings_interner settings(out->settings_blocks);
    for (const xds::filter_chain_config& chain : l.filter_chains) {
      out->chains.push_back(build_chain(chain, *snapshot, logs, settings, log_error));
    }
    if (l.default_filter_chain) {
      out->default_chain = build_chain(*l.default_filter_chain, *snapshot, logs, settings, log_error);
    }
    std::string error;
    out->access_logs = logs.get(l.access_logs, error);
    if (!error.empty() && log_error.empty()) log_error = error;
    if (!log_error.empty()) errors.push_back("listener '" + l.name + "': " + log_error);
    auto add_needs = [&](const std::shared_ptr<const accesslog::log_set>& set) {
      if (set) {
        out->log_writer = logs.writer();
        out->log_needs |= set->needs;
      }
    };
    add_needs(out->access_logs);
    for (const auto& block : out->settings_blocks) add_needs(block->access_logs);
    const std::string stat_name = listener_stat_name(l.address);
    out->stats = registry.get<listener_stats>("listener", stat_name);
    out->tls_stats = registry.get<tls_inspector_stats>("listener", stat_name, "tls_inspector");
    snapshot->listeners.push_back(std::move(out));
  }
  return snapshot;
}

}  // namespace ewgw::proxy
