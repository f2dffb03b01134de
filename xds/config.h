// The gateway's configuration model: plain structs decoded from Envoy v3 resources
// (Bootstrap static_resources now, xDS resources later). This is the edge of the xds module:
// nothing here depends on protobuf, so lb/ and proxy/ never see a generated type.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace ewgw::xds {

using std::chrono::milliseconds;

struct socket_address {
  std::string address;  // numeric IPv4 or IPv6 literal
  std::uint16_t port = 0;
  // For an IPv6 listener address: also accept IPv4 (Envoy binds IPv6-only unless set).
  bool ipv4_compat = false;
};

// envoy.config.listener.v3.FilterChainMatch, the criteria we support. Empty means "any".
struct filter_chain_match {
  std::optional<std::uint16_t> destination_port;
  // Exact names and "*.suffix" wildcards, lower-cased.
  std::vector<std::string> server_names;
  // "tls" or "raw_buffer" as set by tls_inspector; empty matches both.
  std::string transport_protocol;
  std::vector<std::string> application_protocols;
};

struct weighted_cluster {
  std::string name;
  std::uint32_t weight = 0;
};

// envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy (+ sni_cluster in front of it).
struct tcp_proxy_config {
  std::string stat_prefix;
  std::string cluster;                      // set when not weighted
  std::vector<weighted_cluster> weighted_clusters;
  // An envoy.filters.network.sni_cluster filter precedes tcp_proxy: a non-empty SNI names the
  // cluster; an empty SNI falls back to `cluster` / `weighted_clusters`.
  bool cluster_from_sni = false;
  // Envoy default 1h; zero disables the idle timeout.
  milliseconds idle_timeout{std::chrono::hours(1)};
  // Zero: no limit.
  milliseconds max_downstream_connection_duration{0};
  // Envoy default 1, minimum 1.
  std::uint32_t max_connect_attempts = 1;
};

struct filter_chain_config {
  std::string name;
  filter_chain_match match;
  tcp_proxy_config tcp_proxy;
};

struct listener_config {
  std::string name;
  socket_address address;
  bool tls_inspector = false;
  // Envoy default 15s; zero disables the timeout.
  milliseconds listener_filters_timeout{15000};
  // On timeout, route with what is known (no SNI) instead of closing.
  bool continue_on_listener_filters_timeout = false;
  std::vector<filter_chain_config> filter_chains;
  std::optional<filter_chain_config> default_filter_chain;
};

// envoy.config.core.v3.HealthStatus, numbered as in the proto.
enum class health_status : std::uint8_t {
  unknown = 0,
  healthy = 1,
  unhealthy = 2,
  draining = 3,
  timeout = 4,
  degraded = 5,
};

struct locality {
  std::string region;
  std::string zone;
  std::string sub_zone;
  auto operator<=>(const locality&) const = default;
};

struct endpoint_config {
  socket_address address;
  health_status health = health_status::unknown;
  std::uint32_t weight = 1;  // load_balancing_weight, default 1
};

struct locality_endpoints_config {
  locality where;
  std::uint32_t priority = 0;
  std::uint32_t weight = 0;  // locality load_balancing_weight; 0 when unset
  std::vector<endpoint_config> endpoints;
};

// envoy.config.endpoint.v3.ClusterLoadAssignment
struct load_assignment_config {
  std::string cluster_name;
  std::vector<locality_endpoints_config> localities;
  std::uint32_t overprovisioning_factor = 140;
};

enum class lb_policy : std::uint8_t { round_robin, least_request, random };

enum class discovery_type : std::uint8_t { static_, eds };

struct cluster_config {
  std::string name;
  discovery_type type = discovery_type::static_;
  std::string eds_service_name;  // for EDS: the name to subscribe to (defaults to `name`)
  milliseconds connect_timeout{5000};  // Envoy default 5s
  lb_policy policy = lb_policy::round_robin;
  std::uint32_t least_request_choice_count = 2;
  std::uint32_t healthy_panic_threshold_percent = 50;
  bool locality_weighted = false;
  // circuit_breakers.thresholds (default priority) max_connections; Envoy default 1024.
  std::uint32_t max_connections = 1024;
  load_assignment_config load_assignment;
  // filter_metadata["istio"] string fields (e.g. services[0].host), for telemetry labels.
  std::map<std::string, std::string> istio_metadata;
};

struct node_config {
  std::string id;
  std::string cluster;
  locality where;
};

struct bootstrap_config {
  node_config node;
  std::optional<socket_address> admin_address;
  std::vector<listener_config> listeners;
  std::vector<cluster_config> clusters;
};

}  // namespace ewgw::xds
