// The resources an ADS stream has delivered, and the full configuration they add up to.
// Transport-free: the ADS client (ads_client.cc) feeds it decoded responses; the benchmark and
// unit tests drive it directly. Internal to xds/ (it takes generated protobuf types).
//
// Semantics (xDS protocol, "Resource types" and "Knowing when a requested resource does not
// exist"; Envoy's cluster warming):
//   - CDS and LDS are wildcard subscriptions. A state-of-the-world response holds every
//     resource: one that is absent is removed. Delta adds/updates what it sends and removes
//     removed_resources.
//   - EDS is subscribed by service name (eds_cluster_config.service_name, defaulting to the
//     cluster name) for every usable EDS cluster. A state-of-the-world EDS response may hold a
//     subset: absent assignments are unchanged. An assignment is dropped when no cluster uses
//     its service name any more. A Delta removal of an assignment empties it (no endpoints).
//   - A new EDS cluster is warming until its first assignment and takes no part in routing
//     until then. An updated cluster whose assignment is already known replaces the old one at
//     once; one whose service name changed to an unknown one warms while the old version keeps
//     routing.
//   - A listener naming a cluster that is not ready (unknown or warming) waits: it is accepted
//     (ACKed) but its previous version, if any, stays in force until every cluster it names is
//     ready, or until `listener_wait` passes; then it is applied anyway and connections on the
//     chains whose cluster is still missing are closed as no_route.
//   - A cluster with settings ewgw does not implement is accepted as unusable
//     (cluster_config::unsupported) and is ready at once: it has no endpoints to wait for.
//   - A listener with filters or settings ewgw does not implement is accepted as unusable
//     (listener_config::unsupported): it is left out of the assembled configuration, so it is
//     not bound (a version in force before is removed) and does not wait for clusters.
//   - A response is applied whole or not at all: one invalid resource rejects the response
//     (NACK) and nothing changes. Changes are staged; commit() keeps them, rollback() restores
//     the state before the last apply_*() or promote_listeners() call (used when the gateway
//     refuses the assembled configuration).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <memory_resource>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "envoy/service/discovery/v3/discovery.pb.h"
#include "xds/config.h"
#include "xds/sorted_names.h"

namespace ewgw::xds {

enum class resource_kind : std::uint8_t { cluster, endpoint, listener };

std::string_view type_url(resource_kind kind);
std::optional<resource_kind> kind_of(std::string_view type_url);
std::string_view short_name(resource_kind kind);  // "CDS", "EDS", "LDS"

// A resource's version as the control plane sent it, held without a heap block when it is
// short: one is kept per resource (10,000 clusters and their assignments), and the usual ones
// fit (the test control plane's 16 hex digits; istiod's "<timestamp>/<push number>").
class resource_version {
 public:
  resource_version() = default;
  resource_version(std::string_view v) { assign(v); }  // NOLINT: built from the text like a string
  resource_version(const std::string& v) { assign(v); }  // NOLINT
  resource_version(const resource_version& other) { assign(other.view()); }
  resource_version& operator=(const resource_version& other) {
    if (this != &other) assign(other.view());
    return *this;
  }
  std::string_view view() const {
    return long_ ? std::string_view(*long_) : std::string_view(inline_, size_);
  }
  std::string str() const { return std::string(view()); }
  bool empty() const { return view().empty(); }
  bool operator==(std::string_view v) const { return view() == v; }

 private:
  void assign(std::string_view v) {
    if (v.size() <= sizeof(inline_)) {
      long_.reset();
      size_ = static_cast<std::uint8_t>(v.size());
      std::copy(v.begin(), v.end(), inline_);
    } else {
      long_ = std::make_unique<const std::string>(v);
      size_ = 0;
    }
  }
  std::unique_ptr<const std::string> long_;
  std::uint8_t size_ = 0;
  char inline_[23] = {};
};

// Resources by name, for the per-cluster indexes (10,000 clusters, 10,000 EDS services). A
// node-based map costs a heap block per entry (a 16-byte chunk header plus 32 bytes of tree or
// bucket links); here the (name, entry) pairs sit in one vector, found through an
// open-addressing table (linear probing) of 32-bit positions in it: about 7 bytes per entry
// besides the pair itself. Iteration order is not the names' order (callers that need an order
// sort). Pointers to entries stay valid until the next insert_or_assign() of a new name or
// erase().
template <class Entry>
class dense_index {
 public:
  using value_type = std::pair<shared_string, Entry>;
  using iterator = value_type*;
  using const_iterator = const value_type*;

  iterator begin() { return entries_.data(); }
  iterator end() { return entries_.data() + entries_.size(); }
  const_iterator begin() const { return entries_.data(); }
  const_iterator end() const { return entries_.data() + entries_.size(); }
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  bool contains(std::string_view name) const { return find(name) != end(); }

  iterator find(std::string_view name) {
    const std::size_t slot = slot_of(name);
    return slot == npos || slots_[slot] == empty_slot ? end() : begin() + slots_[slot];
  }
  const_iterator find(std::string_view name) const { return const_cast<dense_index*>(this)->find(name); }

  void insert_or_assign(const shared_string& name, Entry entry) {
    if (auto it = find(name.view()); it != end()) {
      it->second = std::move(entry);
      return;
    }
    // At most 3/4 full, so that a probe ends soon at an empty slot.
    if ((entries_.size() + 1) * 4 > slots_.size() * 3) rehash(std::max<std::size_t>(16, slots_.size() * 2));
    // Grown by an eighth, not doubled (as ads_state's in-force vectors): a doubled vector can keep
    // hundreds of KB unused for as long as the configuration stands.
    if (entries_.size() == entries_.capacity()) entries_.reserve(entries_.size() + entries_.size() / 8 + 16);
    slots_[slot_of(name.view())] = static_cast<std::uint32_t>(entries_.size());
    entries_.emplace_back(name, std::move(entry));
  }

  // Room for `count` entries, so that adding up to that many neither moves entries nor rehashes
  // (a batch of known size: no growth slack left behind).
  void reserve(std::size_t count) {
    if (count > entries_.capacity()) entries_.reserve(count);
    std::size_t slot_count = std::max<std::size_t>(16, slots_.size());
    while (count * 4 > slot_count * 3) slot_count *= 2;
    if (slot_count > slots_.size()) rehash(slot_count);
  }

  // The last entry takes the erased one's place in the vector.
  void erase(iterator it) {
    const auto pos = static_cast<std::uint32_t>(it - begin());
    std::size_t hole = slot_of(it->first.view());
    slots_[hole] = empty_slot;
    // Backward-shift deletion: a later entry of the probe run whose home slot is not in
    // (hole, j] moves into the hole, so every remaining probe still reaches its entry.
    for (std::size_t j = (hole + 1) & mask(); slots_[j] != empty_slot; j = (j + 1) & mask()) {
      const std::size_t home = home_of(entries_[slots_[j]].first.view());
      const bool stays = hole < j ? (hole < home && home <= j) : (hole < home || home <= j);
      if (stays) continue;
      slots_[hole] = slots_[j];
      slots_[j] = empty_slot;
      hole = j;
    }
    const auto last = static_cast<std::uint32_t>(entries_.size() - 1);
    if (pos != last) {
      std::size_t s = home_of(entries_[last].first.view());
      while (slots_[s] != last) s = (s + 1) & mask();
      slots_[s] = pos;
      entries_[pos] = std::move(entries_[last]);
    }
    entries_.pop_back();
  }

 private:
  static constexpr std::uint32_t empty_slot = static_cast<std::uint32_t>(-1);
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  std::size_t mask() const { return slots_.size() - 1; }
  std::size_t home_of(std::string_view name) const { return shared_string_hash{}(name) & mask(); }
  // The slot holding `name`, or the empty slot where it would go; npos while there are no slots.
  std::size_t slot_of(std::string_view name) const {
    if (slots_.empty()) return npos;
    std::size_t s = home_of(name);
    while (slots_[s] != empty_slot && entries_[slots_[s]].first.view() != name) s = (s + 1) & mask();
    return s;
  }
  void rehash(std::size_t slot_count) {
    slots_.assign(slot_count, empty_slot);
    for (std::uint32_t i = 0; i < entries_.size(); ++i) {
      std::size_t s = home_of(entries_[i].first.view());
      while (slots_[s] != empty_slot) s = (s + 1) & mask();
      slots_[s] = i;
    }
  }

  std::vector<value_type> entries_;
  std::vector<std::uint32_t> slots_;  // a power of two in size, or empty
};

class ads_state {
 public:
  using clock = std::chrono::steady_clock;
  using any_list = google::protobuf::RepeatedPtrField<google::protobuf::Any>;
  using resource_list = google::protobuf::RepeatedPtrField<envoy::service::discovery::v3::Resource>;
  using name_list = google::protobuf::RepeatedPtrField<std::string>;

  // `bootstrap` gives the static listeners and clusters (always part of the result) and the
  // static EDS clusters (which warm like dynamic ones).
  ads_state(const bootstrap_config& bootstrap, std::chrono::milliseconds listener_wait);

  struct result {
    // Why the update is refused ("cluster 'x': path: reason"). Nothing was staged.
    std::vector<std::string> errors;
    // The assembled configuration differs from the one before this call: apply it.
    bool changed = false;
    // EDS: the clusters whose assignment this response carried (per-cluster update stats); the
    // cluster index's name strings, shared.
    std::vector<shared_string> eds_clusters;
    // Informational lines (waiting listeners, unusable clusters, promotions), for the log.
    std::vector<std::string> notes;
  };

  result apply_sotw(resource_kind kind, const any_list& resources, clock::time_point now);
  result apply_delta(resource_kind kind, const resource_list& resources, const name_list& removed,
                     clock::time_point now);
  // Waiting listeners whose clusters are ready, or whose wait has passed, take effect.
  result promote_listeners(clock::time_point now);

  void commit();
  void rollback();

  // The full configuration: static resources, ready clusters (EDS ones with their endpoints)
  // and the listeners in force. Maintained in place as resources change (a 10,000-cluster
  // configuration is not copied per update); valid until the next call that changes the state.
  // Every listener and cluster in it carries a revision that changes whenever its content does.
  const bootstrap_config& assemble() const { return assembled_; }

  // Service names the EDS subscription must hold now.
  sorted_names eds_names() const;
  // Per-resource versions (Delta initial_resource_versions on a new stream).
  std::map<std::string, std::string> versions(resource_kind kind) const;
  // When the earliest listener wait ends, if any listener waits.
  std::optional<clock::time_point> next_wait_deadline() const;
  std::size_t waiting_listeners() const { return waiting_; }
  std::size_t warming_clusters() const { return warming_; }
  // Their names (admin /config_dump). Walks every cluster / listener: call when the count is
  // non-zero.
  sorted_names warming_cluster_names() const;
  sorted_names waiting_listener_names() const;
  std::size_t cluster_count() const { return clusters_.size(); }
  std::size_t listener_count() const { return listeners_.size(); }
  // Accepted listeners that are not served (listener_config::unsupported).
  std::size_t unusable_listeners() const { return unusable_; }
  // The name string this state holds for the resource `name` of `kind` (the cluster's, the EDS
  // service's or the listener's index key), for others to share instead of copying (the admin
  // /config_dump store); empty when the state holds no such resource.
  shared_string shared_name(resource_kind kind, std::string_view name) const;

 private:
  static constexpr std::uint32_t npos = static_cast<std::uint32_t>(-1);

  // The content in force lives in assembled_ (at `pos`); entries keep the protocol metadata
  // and the version waiting for its clusters or its endpoints.
  // Indexes are keyed by the resource's own name string (shared_string): the key, the config in
  // force and the chains naming a cluster hold one copy of it.
  template <class Entry>
  using name_index = std::map<shared_string, Entry, std::less<>>;

  struct cluster_entry {
    resource_version version;
    std::size_t digest = 0;  // of the serialized resource: unchanged resources are not decoded again
    std::shared_ptr<const cluster_config> warming;  // newest version, waiting for its first assignment
    std::uint32_t pos = npos;  // in assembled_.clusters while in force
    bool is_static = false;
  };
  // An EDS service name: who uses it, and the assignment's version. The assignment's content
  // lives in the clusters in force that use it (there is always one once it arrived).
  // The clusters using one EDS service name. istiod gives every cluster its own service name, so
  // there is one user, held inline (no vector block per service); more go to a vector. Order of
  // insertion is kept. Cluster names are never empty.
  using user_list = shared_string_list;
  struct service_entry {
    user_list users;  // clusters whose version in force or warming uses it
    resource_version version;
    std::size_t digest = 0;
    bool has_assignment = false;
  };
  struct listener_entry {
    resource_version version;
    std::size_t digest = 0;
    std::uint32_t pos = npos;  // in assembled_.listeners while in force
    std::shared_ptr<const listener_config> waiting;
    clock::time_point waiting_since{};
    bool unusable = false;  // accepted, never in assembled_ (listener_config::unsupported)
  };
  struct decoded_cluster {
    shared_string name;
    std::string version;
    std::size_t digest;
    cluster_config config;
  };
  struct decoded_listener {
    shared_string name;
    std::string version;
    std::size_t digest;
    listener_config config;
  };
  struct decoded_cla {
    shared_string name;
    std::string version;
    std::size_t digest;
    load_assignment_config config;
  };

  void begin();
  // Mutations of the indexes and of assembled_; each records how to undo itself.
  template <class Index, class Entry, class Tally>
  void set_meta(Index& index, const shared_string& name, std::optional<Entry> entry, Tally tally);
  template <class Index, class Config>
  void set_active(Index& index, std::vector<Config>& in_force, const shared_string& name, std::optional<Config> config);
  void set_cluster_meta(const shared_string& name, std::optional<cluster_entry> entry);
  void set_cluster_active(const shared_string& name, std::optional<cluster_config> config);
  void set_service(const shared_string& name, std::optional<service_entry> entry);
  void set_listener_meta(const shared_string& name, std::optional<listener_entry> entry);
  void set_listener_active(const shared_string& name, std::optional<listener_config> config);
  void add_user(const shared_string& service, const shared_string& cluster);
  void remove_user(const shared_string& service, const shared_string& cluster);
  // Values equal across clusters get one shared copy (see intern_shared()).
  void intern_shared(cluster_config& config);
  void intern_localities(load_assignment_config& config);
  // A listener's chains take their cluster names from the cluster index (one copy per name).
  void share_cluster_names(listener_config& config) const;

  void stage_cluster(decoded_cluster d, result& r);
  void stage_cla(decoded_cla d);
  void stage_listener(decoded_listener d, clock::time_point now, result& r);
  // Room in assembled_.clusters for the clusters a batch puts in force for the first time.
  void reserve_in_force(std::size_t fresh);
  void reserve_in_force(const std::vector<decoded_cluster>& decoded);
  void reserve_in_force(const std::vector<decoded_cla>& decoded);
  void remove_cluster(const shared_string& name);
  void remove_listener(const shared_string& name);
  void drop_unused_services();

  // The names one response carries (duplicates are errors; SotW removes what is absent). Kept in
  // a monotonic buffer: a set node and a name per resource, freed together after the response,
  // not 10,000 small blocks left as holes between the decoded resources that stay.
  struct name_less {
    using is_transparent = void;
    bool operator()(std::string_view a, std::string_view b) const { return a < b; }
  };
  using name_set = std::pmr::set<std::pmr::string, name_less>;
  // Where a resource sits in its response, for error texts only (built when there is one):
  // "resources[3]", or "resources[3] ('name')" for a Delta resource.
  struct resource_where {
    int index;
    const std::string* delta_name = nullptr;
    std::string str() const;
  };

  bool decode_cluster_any(const google::protobuf::Any& any, const resource_where& where, const std::string& version,
                          std::vector<decoded_cluster>& out, name_set& seen, result& r);
  bool decode_listener_any(const google::protobuf::Any& any, const resource_where& where, const std::string& version,
                           std::vector<decoded_listener>& out, name_set& seen, result& r);
  bool decode_cla_any(const google::protobuf::Any& any, const resource_where& where, const std::string& version,
                      std::vector<decoded_cla>& out, name_set& seen, result& r);
  void check_listener_addresses(const std::vector<decoded_listener>& incoming,
                                const std::set<std::string, std::less<>>& removed, result& r) const;

  const cluster_config* active_cluster(std::string_view name) const;
  const listener_config* active_listener(std::string_view name) const;
  // The endpoints of a service, from a cluster in force that uses it; null when none has them.
  const load_assignment_config* service_endpoints(std::string_view service) const;
  bool cluster_ready(std::string_view name) const;
  std::vector<std::string> missing_clusters(const listener_config& l) const;

  std::set<std::string> static_cluster_names_;
  std::set<std::string> static_listener_names_;
  std::size_t static_clusters_ = 0;   // assembled_.clusters[0, static_clusters_) are static
  std::size_t static_listeners_ = 0;  // likewise for listeners
  std::chrono::milliseconds listener_wait_;
  std::uint64_t next_revision_ = 0;

  bootstrap_config assembled_;
  dense_index<cluster_entry> clusters_;
  dense_index<service_entry> services_;
  name_index<listener_entry> listeners_;
  // Recently seen cluster settings: a new cluster's equal ones take the shared block.
  std::vector<shared_value<cluster_settings>> recent_settings_;
  // Recently seen localities, likewise.
  std::vector<shared_value<locality>> recent_localities_;
  std::size_t warming_ = 0;
  std::size_t waiting_ = 0;
  std::size_t unusable_ = 0;

  std::vector<std::function<void()>> undo_;
  bool recording_ = true;
  bool changed_ = false;
};

}  // namespace ewgw::xds
