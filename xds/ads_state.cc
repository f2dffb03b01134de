#include "xds/ads_state.h"

#include <algorithm>
#include <string_view>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "xds/decode_internal.h"

namespace ewgw::xds {

namespace {

constexpr std::string_view cluster_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
constexpr std::string_view endpoint_url = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
constexpr std::string_view listener_url = "type.googleapis.com/envoy.config.listener.v3.Listener";

std::size_t digest_of(const std::string& bytes) {
  // Mixed with the size so that a collision also needs equal lengths.
  return std::hash<std::string_view>{}(bytes) ^ (bytes.size() * 0x9e3779b97f4a7c15ull);
}

void add_error(ads_state::result& r, const std::string& where, const diagnostics& diag) {
  for (const std::string& e : diag.errors) r.errors.push_back(where + ": " + e);
}

bool is_eds(const cluster_config& c) { return c.type == discovery_type::eds && c.unsupported.empty(); }

std::string join_names(const std::vector<std::string>& names) {
  std::string s;
  for (const auto& n : names) {
    if (!s.empty()) s += ", ";
    s += "'" + n + "'";
  }
  return s;
}

}  // namespace

std::string_view type_url(resource_kind kind) {
  switch (kind) {
    case resource_kind::cluster: return cluster_url;
    case resource_kind::endpoint: return endpoint_url;
    case resource_kind::listener: return listener_url;
  }
  return {};
}

std::optional<resource_kind> kind_of(std::string_view url) {
  if (url == cluster_url) return resource_kind::cluster;
  if (url == endpoint_url) return resource_kind::endpoint;
  if (url == listener_url) return resource_kind::listener;
  return std::nullopt;
}

std::string_view short_name(resource_kind kind) {
  switch (kind) {
    case resource_kind::cluster: return "CDS";
    case resource_kind::endpoint: return "EDS";
    case resource_kind::listener: return "LDS";
  }
  return {};
}

ads_state::ads_state(const bootstrap_config& bootstrap, std::chrono::milliseconds listener_wait)
    : listener_wait_(listener_wait) {
  base_.node = bootstrap.node;
  base_.admin_address = bootstrap.admin_address;
  base_.ads = bootstrap.ads;
  base_.listeners = bootstrap.listeners;
  for (const auto& l : bootstrap.listeners) static_listener_names_.insert(l.name);
  recording_ = false;
  for (const cluster_config& c : bootstrap.clusters) {
    static_cluster_names_.insert(c.name);
    if (!is_eds(c)) {
      base_.clusters.push_back(c);
      continue;
    }
    // A static EDS cluster warms like a dynamic one.
    cluster_entry e;
    e.is_static = true;
    e.warming = std::make_shared<const cluster_config>(c);
    put_cluster(c.name, std::move(e));
  }
  recording_ = true;
  changed_ = false;
}

void ads_state::begin(result& r) {
  (void)r;
  undo_.clear();
  changed_ = false;
}

void ads_state::commit() { undo_.clear(); }

void ads_state::rollback() {
  recording_ = false;
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) (*it)();
  undo_.clear();
  recording_ = true;
}

void ads_state::put_cluster(const std::string& name, std::optional<cluster_entry> entry) {
  auto it = clusters_.find(name);
  std::optional<cluster_entry> old;
  if (it != clusters_.end()) old = it->second;
  if (recording_) undo_.push_back([this, name, old] { put_cluster(name, old); });
  auto unindex = [&](const cluster_entry& e) {
    for (const auto* c : {e.active.get(), e.warming.get()}) {
      if (c == nullptr || !is_eds(*c)) continue;
      auto u = users_.find(c->eds_service_name);
      if (u == users_.end()) continue;
      u->second.erase(name);
      if (u->second.empty()) users_.erase(u);
    }
  };
  auto reindex = [&](const cluster_entry& e) {
    for (const auto* c : {e.active.get(), e.warming.get()}) {
      if (c != nullptr && is_eds(*c)) users_[c->eds_service_name].insert(name);
    }
  };
  const cluster_config* old_active = old ? old->active.get() : nullptr;
  const cluster_config* new_active = entry ? entry->active.get() : nullptr;
  if (old_active != new_active) changed_ = true;
  if (old) unindex(*old);
  if (entry) {
    reindex(*entry);
    clusters_.insert_or_assign(name, std::move(*entry));
  } else if (it != clusters_.end()) {
    clusters_.erase(it);
  }
}

void ads_state::put_cla(const std::string& name, std::optional<cla_entry> entry) {
  auto it = assignments_.find(name);
  std::optional<cla_entry> old;
  if (it != assignments_.end()) old = it->second;
  if (recording_) undo_.push_back([this, name, old] { put_cla(name, old); });
  // Active clusters using this service route differently now (unless the content is equal).
  const bool same = old && entry && *old->assignment == *entry->assignment;
  if (auto u = users_.find(name); !same && u != users_.end()) {
    for (const std::string& c : u->second) {
      auto ce = clusters_.find(c);
      if (ce != clusters_.end() && ce->second.active && is_eds(*ce->second.active) &&
          ce->second.active->eds_service_name == name) {
        changed_ = true;
        break;
      }
    }
  }
  if (entry) {
    assignments_.insert_or_assign(name, std::move(*entry));
  } else if (it != assignments_.end()) {
    assignments_.erase(it);
  }
}

void ads_state::put_listener(const std::string& name, std::optional<listener_entry> entry) {
  auto it = listeners_.find(name);
  std::optional<listener_entry> old;
  if (it != listeners_.end()) old = it->second;
  if (recording_) undo_.push_back([this, name, old] { put_listener(name, old); });
  const listener_config* old_active = old ? old->active.get() : nullptr;
  const listener_config* new_active = entry ? entry->active.get() : nullptr;
  if (old_active != new_active) changed_ = true;
  if (entry) {
    listeners_.insert_or_assign(name, std::move(*entry));
  } else if (it != listeners_.end()) {
    listeners_.erase(it);
  }
}

bool ads_state::cluster_ready(const std::string& name) const {
  if (static_cluster_names_.contains(name)) {
    auto it = clusters_.find(name);  // a static EDS cluster must have its endpoints
    return it == clusters_.end() || it->second.active != nullptr;
  }
  auto it = clusters_.find(name);
  return it != clusters_.end() && it->second.active != nullptr;
}

std::vector<std::string> ads_state::missing_clusters(const listener_config& l) const {
  std::vector<std::string> missing;
  auto check = [&](const std::string& name) {
    if (!name.empty() && !cluster_ready(name) && std::find(missing.begin(), missing.end(), name) == missing.end()) {
      missing.push_back(name);
    }
  };
  auto chain = [&](const filter_chain_config& c) {
    check(c.tcp_proxy.cluster);
    for (const weighted_cluster& w : c.tcp_proxy.weighted_clusters) check(w.name);
  };
  for (const auto& c : l.filter_chains) chain(c);
  if (l.default_filter_chain) chain(*l.default_filter_chain);
  return missing;
}

// ---- decoding -------------------------------------------------------------------------------

bool ads_state::decode_cluster_any(const google::protobuf::Any& any, const std::string& where,
                                   const std::string& version, std::vector<decoded_cluster>& out,
                                   std::set<std::string>& seen, result& r) {
  envoy::config::cluster::v3::Cluster c;
  if (any.type_url() != cluster_url || !c.ParseFromString(any.value())) {
    r.errors.push_back(where + ": not a decodable " + std::string(cluster_url) + " (type " + any.type_url() + ")");
    return false;
  }
  const std::string& name = c.name();
  const std::string label = "cluster '" + name + "'";
  if (!seen.insert(name).second) {
    r.errors.push_back(label + ": sent twice in one response");
    return false;
  }
  if (static_cluster_names_.contains(name)) {
    r.errors.push_back(label + ": a static cluster of the bootstrap has this name");
    return false;
  }
  const std::size_t digest = digest_of(any.value());
  if (auto it = clusters_.find(name); it != clusters_.end() && it->second.digest == digest) return true;  // unchanged
  diagnostics diag;
  cluster_config config;
  if (!decode_dynamic_cluster(c, "", diag, config)) {
    add_error(r, label, diag);
    return false;
  }
  out.push_back({name, version, digest, std::move(config)});
  return true;
}

bool ads_state::decode_listener_any(const google::protobuf::Any& any, const std::string& where,
                                    const std::string& version, std::vector<decoded_listener>& out,
                                    std::set<std::string>& seen, result& r) {
  envoy::config::listener::v3::Listener l;
  if (any.type_url() != listener_url || !l.ParseFromString(any.value())) {
    r.errors.push_back(where + ": not a decodable " + std::string(listener_url) + " (type " + any.type_url() + ")");
    return false;
  }
  const std::string& name = l.name();
  const std::string label = "listener '" + name + "'";
  if (name.empty()) {
    r.errors.push_back(where + ": listener name must not be empty");
    return false;
  }
  if (!seen.insert(name).second) {
    r.errors.push_back(label + ": sent twice in one response");
    return false;
  }
  if (static_listener_names_.contains(name)) {
    r.errors.push_back(label + ": a static listener of the bootstrap has this name");
    return false;
  }
  const std::size_t digest = digest_of(any.value());
  if (auto it = listeners_.find(name); it != listeners_.end() && it->second.digest == digest) return true;
  diagnostics diag;
  listener_config config;
  decode_listener(l, "", diag, config);
  if (!diag.ok()) {
    add_error(r, label, diag);
    return false;
  }
  out.push_back({name, version, digest, std::move(config)});
  return true;
}

bool ads_state::decode_cla_any(const google::protobuf::Any& any, const std::string& where, const std::string& version,
                               std::vector<decoded_cla>& out, std::set<std::string>& seen, result& r) {
  envoy::config::endpoint::v3::ClusterLoadAssignment cla;
  if (any.type_url() != endpoint_url || !cla.ParseFromString(any.value())) {
    r.errors.push_back(where + ": not a decodable " + std::string(endpoint_url) + " (type " + any.type_url() + ")");
    return false;
  }
  const std::string& name = cla.cluster_name();
  const std::string label = "endpoints '" + name + "'";
  if (!seen.insert(name).second) {
    r.errors.push_back(label + ": sent twice in one response");
    return false;
  }
  // Not subscribed (any more): a response crossing an unsubscribe. Ignored, as Envoy does.
  if (!users_.contains(name)) return true;
  for (const std::string& c : users_.at(name)) r.eds_clusters.push_back(c);
  const std::size_t digest = digest_of(any.value());
  if (auto it = assignments_.find(name); it != assignments_.end() && it->second.digest == digest) return true;
  diagnostics diag;
  load_assignment_config config;
  decode_load_assignment(cla, "", diag, config);
  if (!diag.ok()) {
    add_error(r, label, diag);
    return false;
  }
  out.push_back({name, version, digest, std::move(config)});
  return true;
}

// Two listeners on one address would both bind (SO_REUSEPORT) and split its connections.
void ads_state::check_listener_addresses(const std::vector<decoded_listener>& incoming,
                                         const std::set<std::string>& removed, result& r) const {
  std::map<std::pair<std::string, std::uint16_t>, std::string> used;
  auto claim = [&](const std::string& name, const socket_address& a) {
    if (a.port == 0) return;
    auto [it, fresh] = used.emplace(std::make_pair(a.address, a.port), name);
    if (!fresh && it->second != name) {
      r.errors.push_back("listener '" + name + "': address " + a.address + ":" + std::to_string(a.port) +
                         " is already used by listener '" + it->second + "'");
    }
  };
  for (const auto& l : base_.listeners) claim(l.name, l.address);
  std::set<std::string> replaced;
  for (const auto& d : incoming) {
    claim(d.name, d.config.address);
    replaced.insert(d.name);
  }
  for (const auto& [name, e] : listeners_) {
    if (replaced.contains(name) || removed.contains(name)) continue;
    if (e.active) claim(name, e.active->address);
    if (e.waiting) claim(name, e.waiting->address);
  }
}

// ---- staging --------------------------------------------------------------------------------

void ads_state::stage_cluster(decoded_cluster d, result& r) {
  cluster_entry e;
  if (auto it = clusters_.find(d.name); it != clusters_.end()) e = it->second;
  e.version = std::move(d.version);
  e.digest = d.digest;
  // Equal content (a control plane may serialize the same resource differently, e.g. map order)
  // keeps the object in force, so nothing is re-applied.
  if (e.active && *e.active == d.config) {
    e.warming.reset();
    put_cluster(d.name, std::move(e));
    return;
  }
  auto config = std::make_shared<const cluster_config>(std::move(d.config));
  if (!config->unsupported.empty()) {
    r.notes.push_back("cluster '" + d.name + "' accepted but unusable: " + config->unsupported);
  }
  if (!is_eds(*config) || assignments_.contains(config->eds_service_name)) {
    e.active = std::move(config);
    e.warming.reset();
  } else {
    e.warming = std::move(config);  // the previous version, if any, keeps routing meanwhile
  }
  put_cluster(d.name, std::move(e));
}

void ads_state::remove_cluster(const std::string& name) { put_cluster(name, std::nullopt); }

void ads_state::stage_cla(decoded_cla d) {
  cla_entry e;
  e.version = std::move(d.version);
  e.digest = d.digest;
  e.assignment = std::make_shared<const load_assignment_config>(std::move(d.config));
  const std::string name = d.name;
  put_cla(name, std::move(e));
  // Clusters warming for this service are ready now.
  auto u = users_.find(name);
  if (u == users_.end()) return;
  const std::vector<std::string> users(u->second.begin(), u->second.end());
  for (const std::string& c : users) {
    auto it = clusters_.find(c);
    if (it == clusters_.end() || !it->second.warming || it->second.warming->eds_service_name != name) continue;
    cluster_entry e2 = it->second;
    e2.active = std::move(e2.warming);
    e2.warming.reset();
    put_cluster(c, std::move(e2));
  }
}

void ads_state::drop_unused_assignments() {
  std::vector<std::string> unused;
  for (const auto& [name, e] : assignments_) {
    if (!users_.contains(name)) unused.push_back(name);
  }
  for (const auto& name : unused) put_cla(name, std::nullopt);
}

void ads_state::stage_listener(decoded_listener d, clock::time_point now, result& r) {
  listener_entry e;
  if (auto it = listeners_.find(d.name); it != listeners_.end()) e = it->second;
  e.version = std::move(d.version);
  e.digest = d.digest;
  if (e.active && *e.active == d.config) {
    e.waiting.reset();
    put_listener(d.name, std::move(e));
    return;
  }
  auto config = std::make_shared<const listener_config>(std::move(d.config));
  const auto missing = missing_clusters(*config);
  if (missing.empty()) {
    e.active = std::move(config);
    e.waiting.reset();
  } else {
    if (!e.waiting) e.waiting_since = now;  // a newer version keeps the original deadline
    e.waiting = std::move(config);
    r.notes.push_back("listener '" + d.name + "' waits for cluster(s) " + join_names(missing) +
                      (e.active ? "; its previous version stays in force" : "; it is not bound yet"));
  }
  put_listener(d.name, std::move(e));
}

ads_state::result ads_state::apply_sotw(resource_kind kind, const any_list& resources, clock::time_point now) {
  result r;
  begin(r);
  std::set<std::string> seen;
  switch (kind) {
    case resource_kind::cluster: {
      std::vector<decoded_cluster> decoded;
      for (int i = 0; i < resources.size(); ++i) {
        decode_cluster_any(resources[i], "resources[" + std::to_string(i) + "]", "", decoded, seen, r);
      }
      if (!r.errors.empty()) return r;
      for (auto& d : decoded) stage_cluster(std::move(d), r);
      std::vector<std::string> gone;
      for (const auto& [name, e] : clusters_) {
        if (!e.is_static && !seen.contains(name)) gone.push_back(name);
      }
      for (const auto& name : gone) remove_cluster(name);
      drop_unused_assignments();
      break;
    }
    case resource_kind::endpoint: {
      std::vector<decoded_cla> decoded;
      for (int i = 0; i < resources.size(); ++i) {
        decode_cla_any(resources[i], "resources[" + std::to_string(i) + "]", "", decoded, seen, r);
      }
      if (!r.errors.empty()) return r;
      for (auto& d : decoded) stage_cla(std::move(d));
      break;
    }
    case resource_kind::listener: {
      std::vector<decoded_listener> decoded;
      for (int i = 0; i < resources.size(); ++i) {
        decode_listener_any(resources[i], "resources[" + std::to_string(i) + "]", "", decoded, seen, r);
      }
      std::set<std::string> gone;
      for (const auto& [name, e] : listeners_) {
        if (!seen.contains(name)) gone.insert(name);
      }
      check_listener_addresses(decoded, gone, r);
      if (!r.errors.empty()) return r;
      for (auto& d : decoded) stage_listener(std::move(d), now, r);
      for (const auto& name : gone) put_listener(name, std::nullopt);
      break;
    }
  }
  r.changed = changed_;
  return r;
}

ads_state::result ads_state::apply_delta(resource_kind kind, const resource_list& resources, const name_list& removed,
                                         clock::time_point now) {
  result r;
  begin(r);
  std::set<std::string> seen;
  auto where = [](const envoy::service::discovery::v3::Resource& res, int i) {
    return "resources[" + std::to_string(i) + "] ('" + res.name() + "')";
  };
  // A Delta resource names itself; the decoded resource must carry the same name.
  auto check_name = [&](const envoy::service::discovery::v3::Resource& res, const std::string& decoded_name, int i) {
    if (!res.name().empty() && res.name() != decoded_name) {
      r.errors.push_back(where(res, i) + ": the resource is named '" + decoded_name + "'");
    }
  };
  std::set<std::string> removed_set(removed.begin(), removed.end());
  switch (kind) {
    case resource_kind::cluster: {
      std::vector<decoded_cluster> decoded;
      for (int i = 0; i < resources.size(); ++i) {
        const auto& res = resources[i];
        if (!res.has_resource()) continue;  // a name-only entry (TTL heartbeat): nothing to update
        if (auto it = clusters_.find(res.name());
            !res.version().empty() && it != clusters_.end() && it->second.version == res.version()) {
          seen.insert(res.name());
          continue;  // the version we hold
        }
        const std::size_t before = decoded.size();
        decode_cluster_any(res.resource(), where(res, i), res.version(), decoded, seen, r);
        if (decoded.size() > before) check_name(res, decoded.back().name, i);
      }
      if (!r.errors.empty()) return r;
      for (auto& d : decoded) stage_cluster(std::move(d), r);
      for (const std::string& name : removed_set) {
        auto it = clusters_.find(name);
        if (it != clusters_.end() && !it->second.is_static && !seen.contains(name)) remove_cluster(name);
      }
      drop_unused_assignments();
      break;
    }
    case resource_kind::endpoint: {
      std::vector<decoded_cla> decoded;
      for (int i = 0; i < resources.size(); ++i) {
        const auto& res = resources[i];
        if (!res.has_resource()) continue;
        if (auto it = assignments_.find(res.name());
            !res.version().empty() && it != assignments_.end() && it->second.version == res.version()) {
          if (auto u = users_.find(res.name()); u != users_.end()) {
            for (const auto& c : u->second) r.eds_clusters.push_back(c);
          }
          continue;
        }
        const std::size_t before = decoded.size();
        decode_cla_any(res.resource(), where(res, i), res.version(), decoded, seen, r);
        if (decoded.size() > before) check_name(res, decoded.back().name, i);
      }
      if (!r.errors.empty()) return r;
      for (auto& d : decoded) stage_cla(std::move(d));
      // A removed assignment leaves its clusters without endpoints (they stay ready).
      for (const std::string& name : removed_set) {
        if (!users_.contains(name) || seen.contains(name)) continue;
        decoded_cla empty{name, "", 0, load_assignment_config{}};
        empty.config.cluster_name = name;
        stage_cla(std::move(empty));
      }
      break;
    }
    case resource_kind::listener: {
      std::vector<decoded_listener> decoded;
      for (int i = 0; i < resources.size(); ++i) {
        const auto& res = resources[i];
        if (!res.has_resource()) continue;
        if (auto it = listeners_.find(res.name());
            !res.version().empty() && it != listeners_.end() && it->second.version == res.version()) {
          seen.insert(res.name());
          continue;
        }
        const std::size_t before = decoded.size();
        decode_listener_any(res.resource(), where(res, i), res.version(), decoded, seen, r);
        if (decoded.size() > before) check_name(res, decoded.back().name, i);
      }
      std::set<std::string> gone;
      for (const std::string& name : removed_set) {
        if (listeners_.contains(name) && !seen.contains(name)) gone.insert(name);
      }
      check_listener_addresses(decoded, gone, r);
      if (!r.errors.empty()) return r;
      for (auto& d : decoded) stage_listener(std::move(d), now, r);
      for (const auto& name : gone) put_listener(name, std::nullopt);
      break;
    }
  }
  r.changed = changed_;
  return r;
}

ads_state::result ads_state::promote_listeners(clock::time_point now) {
  result r;
  begin(r);
  std::vector<std::string> ready;
  for (const auto& [name, e] : listeners_) {
    if (!e.waiting) continue;
    const auto missing = missing_clusters(*e.waiting);
    if (missing.empty()) {
      ready.push_back(name);
      r.notes.push_back("listener '" + name + "' takes effect: its clusters are ready");
    } else if (now - e.waiting_since >= listener_wait_) {
      ready.push_back(name);
      r.notes.push_back("listener '" + name + "' takes effect after waiting " +
                        std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(listener_wait_).count()) +
                        " ms; connections to cluster(s) " + join_names(missing) + " are closed until they arrive");
    }
  }
  for (const auto& name : ready) {
    listener_entry e = listeners_.at(name);
    e.active = std::move(e.waiting);
    e.waiting.reset();
    put_listener(name, std::move(e));
  }
  r.changed = changed_;
  return r;
}

bootstrap_config ads_state::assemble() const {
  bootstrap_config out = base_;
  out.clusters.reserve(out.clusters.size() + clusters_.size());
  for (const auto& [name, e] : clusters_) {
    if (!e.active) continue;
    out.clusters.push_back(*e.active);
    if (is_eds(*e.active)) {
      auto it = assignments_.find(e.active->eds_service_name);
      if (it != assignments_.end()) {
        out.clusters.back().load_assignment = *it->second.assignment;
        out.clusters.back().load_assignment.cluster_name = name;
      }
    }
  }
  for (const auto& [name, e] : listeners_) {
    if (e.active) out.listeners.push_back(*e.active);
  }
  return out;
}

std::set<std::string> ads_state::eds_names() const {
  std::set<std::string> names;
  for (const auto& [name, users] : users_) names.insert(name);
  return names;
}

std::map<std::string, std::string> ads_state::versions(resource_kind kind) const {
  std::map<std::string, std::string> out;
  switch (kind) {
    case resource_kind::cluster:
      for (const auto& [name, e] : clusters_) {
        if (!e.is_static && !e.version.empty()) out[name] = e.version;
      }
      break;
    case resource_kind::endpoint:
      for (const auto& [name, e] : assignments_) {
        if (!e.version.empty()) out[name] = e.version;
      }
      break;
    case resource_kind::listener:
      for (const auto& [name, e] : listeners_) {
        if (!e.version.empty()) out[name] = e.version;
      }
      break;
  }
  return out;
}

std::optional<ads_state::clock::time_point> ads_state::next_wait_deadline() const {
  std::optional<clock::time_point> earliest;
  for (const auto& [name, e] : listeners_) {
    if (!e.waiting) continue;
    const auto deadline = e.waiting_since + listener_wait_;
    if (!earliest || deadline < *earliest) earliest = deadline;
  }
  return earliest;
}

std::size_t ads_state::waiting_listeners() const {
  return static_cast<std::size_t>(
      std::count_if(listeners_.begin(), listeners_.end(), [](const auto& kv) { return kv.second.waiting != nullptr; }));
}

std::size_t ads_state::warming_clusters() const {
  return static_cast<std::size_t>(
      std::count_if(clusters_.begin(), clusters_.end(), [](const auto& kv) { return kv.second.warming != nullptr; }));
}

}  // namespace ewgw::xds
