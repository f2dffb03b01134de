#include "xds/ads_state.h"

#include <google/protobuf/arena.h>

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

// Each resource is parsed into a message that lives only while it is decoded. Parsed on the
// heap, its many small blocks interleave with the long-lived decoded configuration and leave the
// heap fragmented after a 10,000-resource response; parsed into an arena whose first block is
// on the stack, a typical resource (a few KB) takes no heap at all and a larger one a few
// arena blocks freed together.
class parse_arena {
 public:
  parse_arena() : arena_(options()) {}
  template <class Message>
  Message* make() {
    return google::protobuf::Arena::CreateMessage<Message>(&arena_);
  }

 private:
  google::protobuf::ArenaOptions options() {
    google::protobuf::ArenaOptions o;
    o.initial_block = first_block_;
    o.initial_block_size = sizeof(first_block_);
    return o;
  }
  alignas(16) char first_block_[8192];
  google::protobuf::Arena arena_;
};

std::size_t digest_of(const std::string& bytes) {
  // Mixed with the size so that a collision also needs equal lengths.
  return std::hash<std::string_view>{}(bytes) ^ (bytes.size() * 0x9e3779b97f4a7c15ull);
}

void add_error(ads_state::result& r, const std::string& where, const diagnostics& diag) {
  for (const std::string& e : diag.errors) r.errors.push_back(where + ": " + e);
}

bool is_eds(const cluster_config& c) { return c.type == discovery_type::eds && c.settings->unsupported.empty(); }

// At most a few names: a listener with 10,000 chains may wait for thousands of clusters.
std::string join_names(const std::vector<std::string>& names) {
  constexpr std::size_t shown = 5;
  std::string s;
  for (std::size_t i = 0; i < names.size() && i < shown; ++i) {
    if (!s.empty()) s += ", ";
    s += "'" + names[i] + "'";
  }
  if (names.size() > shown) s += " and " + std::to_string(names.size() - shown) + " more";
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
  assembled_.node = bootstrap.node;
  assembled_.admin_address = bootstrap.admin_address;
  assembled_.ads = bootstrap.ads;
  for (listener_config l : bootstrap.listeners) {
    static_listener_names_.insert(l.name);
    l.revision.value = ++next_revision_;
    assembled_.listeners.push_back(std::move(l));
  }
  static_listeners_ = assembled_.listeners.size();
  for (const cluster_config& c : bootstrap.clusters) {
    static_cluster_names_.emplace(c.name.view());
    if (is_eds(c)) continue;
    assembled_.clusters.push_back(c);
    assembled_.clusters.back().revision.value = ++next_revision_;
  }
  static_clusters_ = assembled_.clusters.size();
  recording_ = false;
  for (const cluster_config& c : bootstrap.clusters) {
    if (!is_eds(c)) continue;
    // A static EDS cluster warms like a dynamic one.
    cluster_entry e;
    e.is_static = true;
    e.warming = std::make_shared<const cluster_config>(c);
    set_cluster_meta(c.name, std::move(e));
    add_user(c.eds_service_name, c.name);
  }
  recording_ = true;
  changed_ = false;
}

void ads_state::begin() {
  undo_.clear();
  changed_ = false;
}

void ads_state::commit() {
  undo_.clear();
  if (undo_.capacity() > 1024) undo_.shrink_to_fit();  // a full-state update leaves a large log
}

void ads_state::rollback() {
  recording_ = false;
  for (auto it = undo_.rbegin(); it != undo_.rend(); ++it) (*it)();
  undo_.clear();
  recording_ = true;
}

// ---- primitive mutations (each records its inverse) ----------------------------------------

// Inserts, replaces or (nullopt) erases `name` in `index`. The entry's position in assembled_
// is kept: it belongs to set_active(). `tally(entry, +1 or -1)` keeps the counters in step.
template <class Index, class Entry, class Tally>
void ads_state::set_meta(Index& index, const shared_string& name, std::optional<Entry> entry, Tally tally) {
  auto it = index.find(name);
  std::optional<Entry> old;
  if (it != index.end()) old = it->second;
  if (recording_) undo_.push_back([this, &index, name, old, tally] { set_meta(index, name, old, tally); });
  if (old) tally(*old, -1);
  if (entry) tally(*entry, +1);
  if (entry) {
    entry->pos = it != index.end() ? it->second.pos : npos;
    index.insert_or_assign(name, std::move(*entry));
  } else if (it != index.end()) {
    index.erase(it);
  }
}

// Puts `config` in force for `name` in `in_force` (part of assembled_), or (nullopt) takes it
// out: the last element takes its place, so the static resources at the front never move.
template <class Index, class Config>
void ads_state::set_active(Index& index, std::vector<Config>& in_force, const shared_string& name,
                           std::optional<Config> config) {
  auto& e = index.find(name)->second;
  auto old = std::make_shared<std::optional<Config>>();
  if (e.pos != npos) *old = std::move(in_force[e.pos]);
  if (!*old && !config) return;
  if (recording_) {
    undo_.push_back([this, &index, &in_force, name, old] { set_active(index, in_force, name, std::move(*old)); });
  }
  changed_ = true;
  if (config) {
    if (e.pos == npos) {
      e.pos = static_cast<std::uint32_t>(in_force.size());
      // Grown by an eighth rather than doubled: with 10,000 clusters of ~300 bytes each, a
      // doubled vector can keep megabytes unused for as long as the configuration stands.
      // Still geometric, so adding resources one by one stays amortized constant time.
      if (in_force.size() == in_force.capacity()) in_force.reserve(in_force.size() + in_force.size() / 8 + 16);
      in_force.push_back(std::move(*config));
    } else {
      in_force[e.pos] = std::move(*config);
    }
    return;
  }
  const std::size_t last = in_force.size() - 1;
  if (e.pos != last) {
    in_force[e.pos] = std::move(in_force[last]);
    index.find(in_force[e.pos].name)->second.pos = e.pos;
  }
  in_force.pop_back();
  e.pos = npos;
}

void ads_state::set_cluster_meta(const shared_string& name, std::optional<cluster_entry> entry) {
  set_meta(clusters_, name, std::move(entry), [this](const cluster_entry& e, int sign) {
    if (e.warming) warming_ = sign > 0 ? warming_ + 1 : warming_ - 1;
  });
}

void ads_state::set_cluster_active(const shared_string& name, std::optional<cluster_config> config) {
  set_active(clusters_, assembled_.clusters, name, std::move(config));
}

void ads_state::set_service(const shared_string& name, std::optional<service_entry> entry) {
  auto it = services_.find(name);
  std::optional<service_entry> old;
  if (it != services_.end()) old = it->second;
  if (recording_) undo_.push_back([this, name, old] { set_service(name, old); });
  if (entry) {
    services_.insert_or_assign(name, std::move(*entry));
  } else if (it != services_.end()) {
    services_.erase(it);
  }
}

void ads_state::add_user(const shared_string& service, const shared_string& cluster) {
  service_entry s;
  if (auto it = services_.find(service); it != services_.end()) s = it->second;
  if (s.users.contains(cluster)) return;
  s.users.push_back(cluster);
  set_service(service, std::move(s));
}

void ads_state::remove_user(const shared_string& service, const shared_string& cluster) {
  auto it = services_.find(service);
  if (it == services_.end()) return;
  service_entry s = it->second;
  if (!s.users.contains(cluster)) return;
  s.users.remove(cluster);
  set_service(service, std::move(s));
}

void ads_state::set_listener_meta(const shared_string& name, std::optional<listener_entry> entry) {
  set_meta(listeners_, name, std::move(entry), [this](const listener_entry& e, int sign) {
    if (e.waiting) waiting_ = sign > 0 ? waiting_ + 1 : waiting_ - 1;
    if (e.unusable) unusable_ = sign > 0 ? unusable_ + 1 : unusable_ - 1;
  });
}

void ads_state::set_listener_active(const shared_string& name, std::optional<listener_config> config) {
  set_active(listeners_, assembled_.listeners, name, std::move(config));
}

// ---- lookups --------------------------------------------------------------------------------

const cluster_config* ads_state::active_cluster(std::string_view name) const {
  auto it = clusters_.find(name);
  return it == clusters_.end() || it->second.pos == npos ? nullptr : &assembled_.clusters[it->second.pos];
}

const listener_config* ads_state::active_listener(std::string_view name) const {
  auto it = listeners_.find(name);
  return it == listeners_.end() || it->second.pos == npos ? nullptr : &assembled_.listeners[it->second.pos];
}

const load_assignment_config* ads_state::service_endpoints(std::string_view service) const {
  auto it = services_.find(service);
  if (it == services_.end() || !it->second.has_assignment) return nullptr;
  for (const shared_string& user : it->second.users) {
    const cluster_config* c = active_cluster(user);
    if (c != nullptr && is_eds(*c) && c->eds_service_name == service) return &c->load_assignment;
  }
  return nullptr;
}

bool ads_state::cluster_ready(std::string_view name) const {
  auto it = clusters_.find(name);
  if (it == clusters_.end()) return static_cluster_names_.contains(std::string(name));  // a static, non-EDS cluster
  return it->second.pos != npos;
}

std::vector<std::string> ads_state::missing_clusters(const listener_config& l) const {
  std::vector<std::string> missing;
  auto check = [&](std::string_view name) {
    if (!name.empty() && !cluster_ready(name) && std::find(missing.begin(), missing.end(), name) == missing.end()) {
      missing.emplace_back(name);
    }
  };
  auto chain = [&](const filter_chain_config& c) {
    check(c.cluster.view());
    for (const weighted_cluster& w : c.settings->tcp_proxy.weighted_clusters) check(w.name);
  };
  for (const auto& c : l.filter_chains) chain(c);
  if (l.default_filter_chain) chain(*l.default_filter_chain);
  return missing;
}

// ---- decoding -------------------------------------------------------------------------------

std::string ads_state::resource_where::str() const {
  std::string out = "resources[" + std::to_string(index) + "]";
  if (delta_name != nullptr) out += " ('" + *delta_name + "')";
  return out;
}

bool ads_state::decode_cluster_any(const google::protobuf::Any& any, const resource_where& where,
                                   const std::string& version, std::vector<decoded_cluster>& out,
                                   name_set& seen, result& r) {
  parse_arena arena;
  auto& c = *arena.make<envoy::config::cluster::v3::Cluster>();
  if (any.type_url() != cluster_url || !c.ParseFromString(any.value())) {
    r.errors.push_back(where.str() + ": not a decodable " + std::string(cluster_url) + " (type " + any.type_url() + ")");
    return false;
  }
  const std::string& name = c.name();
  auto label = [&] { return "cluster '" + name + "'"; };  // for errors only
  if (!seen.emplace(name).second) {
    r.errors.push_back(label() + ": sent twice in one response");
    return false;
  }
  if (static_cluster_names_.contains(name)) {
    r.errors.push_back(label() + ": a static cluster of the bootstrap has this name");
    return false;
  }
  const std::size_t digest = digest_of(any.value());
  if (auto it = clusters_.find(name); it != clusters_.end() && it->second.digest == digest) return true;  // unchanged
  diagnostics diag;
  diag.keep_notices = false;  // errors are reported; notices would be discarded
  cluster_config config;
  if (!decode_dynamic_cluster(c, "", diag, config)) {
    add_error(r, label(), diag);
    return false;
  }
  intern_shared(config);
  if (auto it = clusters_.find(name); it != clusters_.end()) {
    // A new version of a cluster the index holds takes the index's name block, and so do its EDS
    // service name and Istio services when they are that name: else the in-force version (and
    // the snapshot's cluster built from it) would keep a second copy of the name.
    const shared_string& kept = it->first;
    if (config.eds_service_name == config.name) config.eds_service_name = kept;
    config.name = kept;
    config.istio_services.rebase(kept);
  }
  shared_string key = config.name;  // the index shares the decoded name's block
  out.push_back({std::move(key), version, digest, std::move(config)});
  return true;
}

bool ads_state::decode_listener_any(const google::protobuf::Any& any, const resource_where& where,
                                    const std::string& version, std::vector<decoded_listener>& out,
                                    name_set& seen, result& r) {
  parse_arena arena;
  auto& l = *arena.make<envoy::config::listener::v3::Listener>();
  if (any.type_url() != listener_url || !l.ParseFromString(any.value())) {
    r.errors.push_back(where.str() + ": not a decodable " + std::string(listener_url) + " (type " + any.type_url() + ")");
    return false;
  }
  const std::string& name = l.name();
  auto label = [&] { return "listener '" + name + "'"; };  // for errors only
  if (name.empty()) {
    r.errors.push_back(where.str() + ": listener name must not be empty");
    return false;
  }
  if (!seen.emplace(name).second) {
    r.errors.push_back(label() + ": sent twice in one response");
    return false;
  }
  if (static_listener_names_.contains(name)) {
    r.errors.push_back(label() + ": a static listener of the bootstrap has this name");
    return false;
  }
  const std::size_t digest = digest_of(any.value());
  if (auto it = listeners_.find(name); it != listeners_.end() && it->second.digest == digest) return true;
  diagnostics diag;
  diag.keep_notices = false;  // errors are reported; notices would be discarded
  listener_config config;
  if (!decode_dynamic_listener(l, "", diag, config) || !diag.ok()) {
    add_error(r, label(), diag);
    return false;
  }
  share_cluster_names(config);
  out.push_back({shared_string(name), version, digest, std::move(config)});
  return true;
}

bool ads_state::decode_cla_any(const google::protobuf::Any& any, const resource_where& where, const std::string& version,
                               std::vector<decoded_cla>& out, name_set& seen, result& r) {
  parse_arena arena;
  auto& cla = *arena.make<envoy::config::endpoint::v3::ClusterLoadAssignment>();
  if (any.type_url() != endpoint_url || !cla.ParseFromString(any.value())) {
    r.errors.push_back(where.str() + ": not a decodable " + std::string(endpoint_url) + " (type " + any.type_url() + ")");
    return false;
  }
  const std::string& name = cla.cluster_name();
  auto label = [&] { return "endpoints '" + name + "'"; };  // for errors only
  if (!seen.emplace(name).second) {
    r.errors.push_back(label() + ": sent twice in one response");
    return false;
  }
  // Not subscribed (any more): a response crossing an unsubscribe. Ignored, as Envoy does.
  auto service = services_.find(name);
  if (service == services_.end() || service->second.users.empty()) return true;
  for (const shared_string& c : service->second.users) r.eds_clusters.push_back(c);
  const std::size_t digest = digest_of(any.value());
  if (service->second.has_assignment && service->second.digest == digest) return true;
  // Endpoint transport metadata is kept only for clusters that select transports by it.
  bool keep_match = false;
  for (const shared_string& user : service->second.users) {
    auto it = clusters_.find(user);
    if (it == clusters_.end()) continue;
    const cluster_config* active = active_cluster(user);
    keep_match = keep_match || (active != nullptr && !active->settings->transport_socket_matches.empty()) ||
                 (it->second.warming && !it->second.warming->settings->transport_socket_matches.empty());
  }
  diagnostics diag;
  diag.keep_notices = false;  // errors are reported; notices would be discarded
  load_assignment_config config;
  decode_load_assignment(cla, "", diag, config, keep_match);
  if (!diag.ok()) {
    add_error(r, label(), diag);
    return false;
  }
  intern_localities(config);
  out.push_back({service->first, version, digest, std::move(config)});
  return true;
}

// Two listeners on one address would both bind (SO_REUSEPORT) and split its connections.
void ads_state::check_listener_addresses(const std::vector<decoded_listener>& incoming,
                                         const std::set<std::string, std::less<>>& removed, result& r) const {
  std::map<std::pair<std::string, std::uint16_t>, std::string> used;
  auto claim = [&](const shared_string& name, const socket_address& a) {
    if (a.port == 0) return;
    auto [it, fresh] = used.emplace(std::make_pair(a.address, a.port), name);
    if (!fresh && it->second != name) {
      r.errors.push_back("listener '" + name + "': address " + a.address + ":" + std::to_string(a.port) +
                         " is already used by listener '" + it->second + "'");
    }
  };
  for (std::size_t i = 0; i < static_listeners_; ++i) claim(assembled_.listeners[i].name, assembled_.listeners[i].address);
  std::set<std::string, std::less<>> replaced;
  for (const auto& d : incoming) {
    if (d.config.unsupported.empty()) claim(d.name, d.config.address);  // an unusable one is not bound
    replaced.emplace(d.name.view());
  }
  for (const auto& [name, e] : listeners_) {
    if (replaced.contains(name) || removed.contains(name)) continue;
    if (e.pos != npos) claim(name, assembled_.listeners[e.pos].address);
    if (e.waiting) claim(name, e.waiting->address);
  }
}

// One istiod SNI-DNAT cluster differs from the next only by its name: settings equal to a recent
// cluster's are replaced by that cluster's shared block, so 10,000 clusters hold one. A short list
// of recent values (not a table of every value) suffices because equal clusters arrive together,
// and it never keeps more than a few stale values alive.
void ads_state::intern_shared(cluster_config& config) {
  constexpr std::size_t recent = 8;
  for (const shared_value<cluster_settings>& r : recent_settings_) {
    if (r == config.settings) {
      config.settings = r;
      return;
    }
  }
  // New settings: their metadata may still be a recent cluster's (istiod's clusters of another
  // kind carry the same filter_metadata["istio"]).
  if (!config.settings->istio_metadata.empty()) {
    for (const shared_value<cluster_settings>& r : recent_settings_) {
      if (r->istio_metadata == config.settings->istio_metadata) {
        config.settings.edit().istio_metadata = r->istio_metadata;
        break;
      }
    }
  }
  if (recent_settings_.size() == recent) recent_settings_.erase(recent_settings_.begin());
  recent_settings_.push_back(config.settings);
}

// Every assignment of a mesh names one of a few localities: an equal locality takes a recent
// assignment's copy (as intern_shared() does for cluster settings).
void ads_state::intern_localities(load_assignment_config& config) {
  constexpr std::size_t recent = 8;
  for (locality_endpoints_config& group : config.localities) {
    bool shared = false;
    for (const shared_value<locality>& r : recent_localities_) {
      if (r == group.where) {
        group.where = r;
        shared = true;
        break;
      }
    }
    if (shared) continue;
    if (recent_localities_.size() == recent) recent_localities_.erase(recent_localities_.begin());
    recent_localities_.push_back(group.where);
  }
}

// A chain's tcp_proxy cluster, stat_prefix and server names are (for istiod's SNI-DNAT chains)
// the cluster's name: they take the cluster index's copy instead of holding their own.
void ads_state::share_cluster_names(listener_config& config) const {
  auto share_chain = [&](filter_chain_config& chain) {
    if (chain.cluster.empty()) return;
    auto it = clusters_.find(chain.cluster.view());
    if (it == clusters_.end()) return;
    const shared_string& index_copy = it->first;
    chain.cluster.share_if_equal(index_copy);
    chain.stat_prefix.share_if_equal(index_copy);
    for (shared_string& name : chain.server_names) name.share_if_equal(index_copy);
  };
  for (auto& chain : config.filter_chains) share_chain(chain);
  if (config.default_filter_chain) share_chain(*config.default_filter_chain);
}

// ---- staging --------------------------------------------------------------------------------

namespace {

// EDS service names a cluster's versions (in force and warming) use.
std::vector<shared_string> services_of(const cluster_config* active, const cluster_config* warming) {
  std::vector<shared_string> out;
  if (active != nullptr && is_eds(*active)) out.push_back(active->eds_service_name);
  if (warming != nullptr && (out.empty() || out[0] != warming->eds_service_name)) {
    out.push_back(warming->eds_service_name);
  }
  return out;
}

}  // namespace

void ads_state::stage_cluster(decoded_cluster d, result& r) {
  const shared_string name = d.name;
  cluster_entry e;
  if (auto it = clusters_.find(name); it != clusters_.end()) e = it->second;
  const cluster_config* current = active_cluster(name);
  const auto before = services_of(current, e.warming.get());
  e.version = std::move(d.version);
  e.digest = d.digest;
  cluster_config config = std::move(d.config);
  if (!config.settings->unsupported.empty()) {
    r.notes.push_back("cluster '" + name + "' accepted but unusable: " + config.settings->unsupported);
  }
  bool ready = true;
  if (is_eds(config)) {
    if (const load_assignment_config* known = service_endpoints(config.eds_service_name)) {
      config.load_assignment = *known;
    } else {
      ready = false;  // warming; the version in force, if any, keeps routing meanwhile
    }
  }
  if (!ready) {
    e.warming = std::make_shared<const cluster_config>(std::move(config));
    set_cluster_meta(name, e);
  } else if (current != nullptr && *current == config) {
    // Equal content (a control plane may serialize the same resource differently, e.g. map
    // order) keeps the object in force, so nothing is re-applied.
    e.warming.reset();
    set_cluster_meta(name, e);
  } else {
    e.warming.reset();
    set_cluster_meta(name, e);
    config.revision.value = ++next_revision_;
    set_cluster_active(name, std::move(config));
  }
  const cluster_entry& now = clusters_.find(name)->second;
  const auto after = services_of(active_cluster(name), now.warming.get());
  for (const auto& s : before) {
    if (std::find(after.begin(), after.end(), s) == after.end()) remove_user(s, name);
  }
  for (const auto& s : after) add_user(s, name);
}

// A batch that puts many clusters in force for the first time (istiod's first EDS response: all
// 10,000) makes room for exactly those at once, rather than growing the in-force vector by
// eighths and leaving up to an eighth unused for as long as the configuration stands. Small
// batches leave it to set_active()'s geometric growth (an exact reserve per added cluster would
// copy the vector each time).
void ads_state::reserve_in_force(std::size_t fresh) {
  std::vector<cluster_config>& in_force = assembled_.clusters;
  if (fresh > in_force.size() / 8 && in_force.size() + fresh > in_force.capacity()) {
    in_force.reserve(in_force.size() + fresh);
  }
}

void ads_state::reserve_in_force(const std::vector<decoded_cluster>& decoded) {
  std::size_t fresh = 0;
  for (const decoded_cluster& d : decoded) {
    const bool ready = !is_eds(d.config) || service_endpoints(d.config.eds_service_name) != nullptr;
    if (ready && active_cluster(d.name) == nullptr) ++fresh;
  }
  reserve_in_force(fresh);
}

void ads_state::reserve_in_force(const std::vector<decoded_cla>& decoded) {
  std::size_t fresh = 0;
  for (const decoded_cla& d : decoded) {
    for (const shared_string& user : services_.find(d.name)->second.users) {
      auto it = clusters_.find(user);
      if (it != clusters_.end() && it->second.pos == npos && it->second.warming &&
          it->second.warming->eds_service_name == d.name) {
        ++fresh;
      }
    }
  }
  reserve_in_force(fresh);
}

void ads_state::remove_cluster(const shared_string& name_ref) {
  auto it = clusters_.find(name_ref);
  if (it == clusters_.end()) return;
  const shared_string name = it->first;  // outlives the entry it names
  const auto before = services_of(active_cluster(name), it->second.warming.get());
  set_cluster_active(name, std::nullopt);
  set_cluster_meta(name, std::nullopt);
  for (const auto& s : before) remove_user(s, name);
}

void ads_state::stage_cla(decoded_cla d) {
  const shared_string service = d.name;
  service_entry s = services_.find(service)->second;
  s.has_assignment = true;
  s.version = std::move(d.version);
  s.digest = d.digest;
  const user_list users = s.users;
  set_service(service, std::move(s));
  for (const shared_string& user : users) {
    cluster_entry e = clusters_.find(user)->second;
    // The last user (istiod's clusters have one) takes the decoded assignment itself: no copy
    // made and the original freed right after, on the xDS thread's heap.
    load_assignment_config la = &user == users.end() - 1 ? std::move(d.config) : d.config;
    if (e.warming && e.warming->eds_service_name == service) {
      // Warming until now: this version takes effect.
      const auto before = services_of(active_cluster(user), e.warming.get());
      cluster_config config = *e.warming;
      config.load_assignment = std::move(la);
      config.revision.value = ++next_revision_;
      e.warming.reset();
      set_cluster_meta(user, e);
      set_cluster_active(user, std::move(config));
      const auto after = services_of(active_cluster(user), nullptr);
      for (const auto& old : before) {
        if (std::find(after.begin(), after.end(), old) == after.end()) remove_user(old, user);
      }
      continue;
    }
    const cluster_config* active = active_cluster(user);
    if (active == nullptr || !is_eds(*active) || active->eds_service_name != service) continue;
    if (active->load_assignment == la) continue;
    cluster_config config = *active;
    config.load_assignment = std::move(la);
    config.revision.value = ++next_revision_;
    set_cluster_active(user, std::move(config));
  }
}

void ads_state::drop_unused_services() {
  std::vector<shared_string> unused;
  for (const auto& [name, s] : services_) {
    if (s.users.empty()) unused.push_back(name);
  }
  for (const auto& name : unused) set_service(name, std::nullopt);
}

void ads_state::stage_listener(decoded_listener d, clock::time_point now, result& r) {
  const shared_string name = d.name;
  listener_entry e;
  if (auto it = listeners_.find(name); it != listeners_.end()) e = it->second;
  e.version = std::move(d.version);
  e.digest = d.digest;
  const listener_config* current = active_listener(name);
  if (!d.config.unsupported.empty()) {
    // Accepted but not served: a version in force stops being served (it is replaced), and the
    // listener neither waits for clusters nor blocks readiness.
    r.notes.push_back("listener '" + name + "' accepted but unusable, not bound: " + d.config.unsupported);
    e.waiting.reset();
    e.unusable = true;
    set_listener_meta(name, std::move(e));
    set_listener_active(name, std::nullopt);
    return;
  }
  e.unusable = false;
  if (current != nullptr && *current == d.config) {
    e.waiting.reset();
    set_listener_meta(name, std::move(e));
    return;
  }
  const auto missing = missing_clusters(d.config);
  if (missing.empty()) {
    e.waiting.reset();
    set_listener_meta(name, std::move(e));
    d.config.revision.value = ++next_revision_;
    set_listener_active(name, std::move(d.config));
    return;
  }
  if (!e.waiting) e.waiting_since = now;  // a newer version keeps the original deadline
  e.waiting = std::make_shared<const listener_config>(std::move(d.config));
  r.notes.push_back("listener '" + name + "' waits for cluster(s) " + join_names(missing) +
                    (current != nullptr ? "; its previous version stays in force" : "; it is not bound yet"));
  set_listener_meta(name, std::move(e));
}

void ads_state::remove_listener(const shared_string& name_ref) {
  auto it = listeners_.find(name_ref);
  if (it == listeners_.end()) return;
  const shared_string name = it->first;
  set_listener_active(name, std::nullopt);
  set_listener_meta(name, std::nullopt);
}

ads_state::result ads_state::apply_sotw(resource_kind kind, const any_list& resources, clock::time_point now) {
  result r;
  begin();
  std::pmr::monotonic_buffer_resource seen_memory;
  name_set seen(&seen_memory);
  switch (kind) {
    case resource_kind::cluster: {
      std::vector<decoded_cluster> decoded;
      decoded.reserve(static_cast<std::size_t>(resources.size()));
      for (int i = 0; i < resources.size(); ++i) {
        decode_cluster_any(resources[i], resource_where{i}, "", decoded, seen, r);
      }
      if (!r.errors.empty()) return r;
      reserve_in_force(decoded);
      for (auto& d : decoded) stage_cluster(std::move(d), r);
      std::vector<shared_string> gone;
      for (const auto& [name, e] : clusters_) {
        if (!e.is_static && !seen.contains(name)) gone.push_back(name);
      }
      // In name order, as removals move the last cluster in force into the gap: the order of
      // assembled_.clusters does not depend on the index's hash order.
      std::sort(gone.begin(), gone.end());
      for (const auto& name : gone) remove_cluster(name);
      drop_unused_services();
      break;
    }
    case resource_kind::endpoint: {
      std::vector<decoded_cla> decoded;
      decoded.reserve(static_cast<std::size_t>(resources.size()));
      for (int i = 0; i < resources.size(); ++i) {
        decode_cla_any(resources[i], resource_where{i}, "", decoded, seen, r);
      }
      if (!r.errors.empty()) return r;
      reserve_in_force(decoded);
      for (auto& d : decoded) stage_cla(std::move(d));
      break;
    }
    case resource_kind::listener: {
      std::vector<decoded_listener> decoded;
      decoded.reserve(static_cast<std::size_t>(resources.size()));
      for (int i = 0; i < resources.size(); ++i) {
        decode_listener_any(resources[i], resource_where{i}, "", decoded, seen, r);
      }
      std::set<std::string, std::less<>> gone;
      for (const auto& [name, e] : listeners_) {
        if (!seen.contains(name)) gone.emplace(name.view());
      }
      check_listener_addresses(decoded, gone, r);
      if (!r.errors.empty()) return r;
      for (auto& d : decoded) stage_listener(std::move(d), now, r);
      for (const auto& name : gone) remove_listener(name);
      break;
    }
  }
  r.changed = changed_;
  return r;
}

ads_state::result ads_state::apply_delta(resource_kind kind, const resource_list& resources, const name_list& removed,
                                         clock::time_point now) {
  result r;
  begin();
  std::pmr::monotonic_buffer_resource seen_memory;
  name_set seen(&seen_memory);
  auto where = [](const envoy::service::discovery::v3::Resource& res, int i) { return resource_where{i, &res.name()}; };
  // A Delta resource names itself; the decoded resource must carry the same name.
  auto check_name = [&](const envoy::service::discovery::v3::Resource& res, const shared_string& decoded_name, int i) {
    if (!res.name().empty() && res.name() != decoded_name) {
      r.errors.push_back(where(res, i).str() + ": the resource is named '" + decoded_name + "'");
    }
  };
  std::set<std::string> removed_set(removed.begin(), removed.end());
  switch (kind) {
    case resource_kind::cluster: {
      std::vector<decoded_cluster> decoded;
      decoded.reserve(static_cast<std::size_t>(resources.size()));
      for (int i = 0; i < resources.size(); ++i) {
        const auto& res = resources[i];
        if (!res.has_resource()) continue;  // a name-only entry (TTL heartbeat): nothing to update
        if (auto it = clusters_.find(res.name());
            !res.version().empty() && it != clusters_.end() && it->second.version == res.version()) {
          seen.emplace(res.name());
          continue;  // the version we hold
        }
        const std::size_t before = decoded.size();
        decode_cluster_any(res.resource(), where(res, i), res.version(), decoded, seen, r);
        if (decoded.size() > before) check_name(res, decoded.back().name, i);
      }
      if (!r.errors.empty()) return r;
      reserve_in_force(decoded);
      for (auto& d : decoded) stage_cluster(std::move(d), r);
      for (const std::string& name : removed_set) {
        auto it = clusters_.find(name);
        if (it != clusters_.end() && !it->second.is_static && !seen.contains(name)) remove_cluster(name);
      }
      drop_unused_services();
      break;
    }
    case resource_kind::endpoint: {
      std::vector<decoded_cla> decoded;
      decoded.reserve(static_cast<std::size_t>(resources.size()));
      for (int i = 0; i < resources.size(); ++i) {
        const auto& res = resources[i];
        if (!res.has_resource()) continue;
        if (auto it = services_.find(res.name()); !res.version().empty() && it != services_.end() &&
                                                   it->second.has_assignment && it->second.version == res.version()) {
          for (const auto& c : it->second.users) r.eds_clusters.push_back(c);
          continue;
        }
        const std::size_t before = decoded.size();
        decode_cla_any(res.resource(), where(res, i), res.version(), decoded, seen, r);
        if (decoded.size() > before) check_name(res, decoded.back().name, i);
      }
      if (!r.errors.empty()) return r;
      reserve_in_force(decoded);
      for (auto& d : decoded) stage_cla(std::move(d));
      // A removed assignment leaves its clusters without endpoints (they stay ready).
      for (const std::string& name : removed_set) {
        auto it = services_.find(name);
        if (it == services_.end() || it->second.users.empty() || seen.contains(name)) continue;
        stage_cla(decoded_cla{name, "", 0, load_assignment_config{}});
      }
      break;
    }
    case resource_kind::listener: {
      std::vector<decoded_listener> decoded;
      decoded.reserve(static_cast<std::size_t>(resources.size()));
      for (int i = 0; i < resources.size(); ++i) {
        const auto& res = resources[i];
        if (!res.has_resource()) continue;
        if (auto it = listeners_.find(res.name());
            !res.version().empty() && it != listeners_.end() && it->second.version == res.version()) {
          seen.emplace(res.name());
          continue;
        }
        const std::size_t before = decoded.size();
        decode_listener_any(res.resource(), where(res, i), res.version(), decoded, seen, r);
        if (decoded.size() > before) check_name(res, decoded.back().name, i);
      }
      std::set<std::string, std::less<>> gone;
      for (const std::string& name : removed_set) {
        if (listeners_.contains(name) && !seen.contains(name)) gone.insert(name);
      }
      check_listener_addresses(decoded, gone, r);
      if (!r.errors.empty()) return r;
      for (auto& d : decoded) stage_listener(std::move(d), now, r);
      for (const auto& name : gone) remove_listener(name);
      break;
    }
  }
  r.changed = changed_;
  return r;
}

ads_state::result ads_state::promote_listeners(clock::time_point now) {
  result r;
  begin();
  std::vector<shared_string> ready;
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
    listener_entry e = listeners_.find(name)->second;
    listener_config config = *e.waiting;
    config.revision.value = ++next_revision_;
    e.waiting.reset();
    set_listener_meta(name, std::move(e));
    set_listener_active(name, std::move(config));
  }
  r.changed = changed_;
  return r;
}

sorted_names ads_state::eds_names() const {
  std::vector<shared_string> names;
  names.reserve(services_.size());
  for (const auto& [name, service] : services_) {
    if (!service.users.empty()) names.push_back(name);
  }
  return sorted_names(std::move(names));
}

std::map<std::string, std::string> ads_state::versions(resource_kind kind) const {
  std::map<std::string, std::string> out;
  switch (kind) {
    case resource_kind::cluster:
      for (const auto& [name, e] : clusters_) {
        if (!e.is_static && !e.version.empty()) out[std::string(name.view())] = e.version.str();
      }
      break;
    case resource_kind::endpoint:
      for (const auto& [name, e] : services_) {
        if (e.has_assignment && !e.version.empty()) out[std::string(name.view())] = e.version.str();
      }
      break;
    case resource_kind::listener:
      for (const auto& [name, e] : listeners_) {
        if (!e.version.empty()) out[std::string(name.view())] = e.version.str();
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

shared_string ads_state::shared_name(resource_kind kind, std::string_view name) const {
  switch (kind) {
    case resource_kind::cluster:
      if (auto it = clusters_.find(name); it != clusters_.end()) return it->first;
      break;
    case resource_kind::endpoint:
      if (auto it = services_.find(name); it != services_.end()) return it->first;
      break;
    case resource_kind::listener:
      if (auto it = listeners_.find(name); it != listeners_.end()) return it->first;
      break;
  }
  return {};
}

sorted_names ads_state::warming_cluster_names() const {
  if (warming_ == 0) return {};
  std::vector<shared_string> out;
  out.reserve(warming_);
  for (const auto& [name, e] : clusters_) {
    if (e.warming) out.push_back(name);
  }
  return sorted_names(std::move(out));
}

sorted_names ads_state::waiting_listener_names() const {
  if (waiting_ == 0) return {};
  std::vector<shared_string> out;
  for (const auto& [name, e] : listeners_) {
    if (e.waiting) out.push_back(name);
  }
  return sorted_names(std::move(out));
}

}  // namespace ewgw::xds
