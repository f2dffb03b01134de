// The configuration as loaded and as accepted from the control plane, kept for the admin
// /config_dump endpoint in Envoy's layout (envoy.admin.v3.ConfigDump holding Any-packed
// BootstrapConfigDump, ClustersConfigDump, EndpointsConfigDump and ListenersConfigDump).
//
// What is kept: the serialized bootstrap and, per xDS resource, the serialized bytes the
// control plane sent with their version and acceptance time. Nothing is re-encoded when a
// resource is accepted; a dump parses the bootstrap and wraps the stored bytes as they are.
// The bytes are kept deflated against an earlier resource of the same kind and size renamed to
// the resource's name, one entry per name holds that name's cluster, assignment and listener,
// and a response's version and time are kept once (~130 bytes per istiod cluster in all instead
// of ~1.3 KB; see config_dump.cc); they are inflated when a dump is rendered.
//
// Threads: the ADS client records from its thread, the admin server renders from its own; every
// method takes the store's mutex. Protobuf-free public header (proxy/ includes it).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xds/config.h"
#include "xds/sorted_names.h"

namespace ewgw::xds {

class config_store {
 public:
  enum class kind : std::uint8_t { cluster, endpoint, listener };
  using time = std::chrono::system_clock::time_point;

  config_store();
  ~config_store();
  config_store(const config_store&) = delete;
  config_store& operator=(const config_store&) = delete;

  // The bootstrap in force: a serialized envoy.config.bootstrap.v3.Bootstrap
  // (bootstrap_load_result::bootstrap_proto). Its static listeners and clusters are the dump's
  // static_* entries.
  void set_bootstrap(std::shared_ptr<const std::string> serialized, time loaded = std::chrono::system_clock::now());

  // One accepted resource (serialized, of kind's type). Unchanged bytes keep their version and
  // time, as Envoy reports the version a resource was last updated in. The store keeps a
  // reference to `name`, not a copy of it: pass the shared_string the ADS state holds for the
  // resource (ads_state::shared_name), so that the ~55-character istiod names exist once.
  void put(kind k, const shared_string& name, const std::string& version, const std::string& bytes, time now);
  void remove(kind k, std::string_view name);
  // A state-of-the-world response for k (its whole set): resources not in it are removed.
  // `version` is the response's version_info, also the dump's top-level version_info. Names are
  // referenced as by put().
  void replace_all(kind k, const std::vector<std::pair<shared_string, const std::string*>>& resources,
                   const std::string& version, time now);
  // Keeps only the named resources of kind k (EDS assignments no cluster uses any more).
  void retain(kind k, const sorted_names& names);
  // Clusters waiting for their first assignment and listeners waiting for their clusters:
  // shown as dynamic_warming_clusters / warming_state instead of active.
  void set_pending(sorted_names warming_clusters, sorted_names waiting_listeners);

  // Renders envoy.admin.v3.ConfigDump as JSON (proto field names, as Envoy prints them).
  // Query: include_eds (also the EndpointsConfigDump), resource=FIELD (only the elements of
  // that repeated field, each packed as one config, as Envoy), mask=PATHS (a FieldMask applied
  // to each config, or to each resource with `resource`). Returns {200, json} or
  // {400, message naming the parameter}; {500, why} if a stored resource cannot be printed.
  std::pair<unsigned, std::string> render(const std::map<std::string, std::string>& query) const;

  // For `explain`: why `cluster` is not in the routing configuration, when this store knows
  // (warming, or received but not usable); empty otherwise.
  std::string missing_cluster_note(std::string_view cluster) const;

  // Heap bytes the stored resources of kind k take (slots, index, name references, deflated
  // records, the kind's dictionary; not the names' own blocks, which the ADS state shares): for
  // tests and benchmarks of the store's footprint.
  std::size_t stored_bytes(kind k) const;
  // The largest preset dictionary (a base renamed to a resource's name, then the name) this store
  // has deflated or inflated a record against, in bytes: for tests of its bound.
  std::size_t largest_dictionary() const;

  // The name field (field 1 in Cluster, Listener and ClusterLoadAssignment) of a serialized
  // resource, without parsing the rest of it; empty if absent or malformed.
  static std::string resource_name(const std::string& bytes);

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ewgw::xds
