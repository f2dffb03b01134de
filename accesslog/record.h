// What one connection leaves behind for the access log: plain values the session fills while it
// runs (no formatting, no I/O). The writer thread formats it later, so nothing here may point
// into memory that a configuration update can free: names are held by shared_ptr (aliasing the
// routing object that owns them) and the SNI is copied.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace ewgw::accesslog {

// Envoy's response flags (envoy/stream_info/stream_info.h CoreResponseFlag). Bit i is entry i
// of Envoy's CORE_RESPONSE_FLAGS table (stream_info/utility.h), so rendering the set bits in
// order gives Envoy's order ("UF,URX").
enum class response_flag : std::uint8_t {
  failed_local_health_check,        // LH
  no_healthy_upstream,              // UH
  upstream_request_timeout,         // UT
  local_reset,                      // LR
  upstream_remote_reset,            // UR
  upstream_connection_failure,      // UF
  upstream_connection_termination,  // UC
  upstream_overflow,                // UO
  no_route_found,                   // NR
  delay_injected,                   // DI
  fault_injected,                   // FI
  rate_limited,                     // RL
  unauthorized_external_service,    // UAEX
  rate_limit_service_error,         // RLSE
  downstream_connection_termination,  // DC
  upstream_retry_limit_exceeded,    // URX
  stream_idle_timeout,              // SI
  invalid_envoy_request_headers,    // IH
  downstream_protocol_error,        // DPE
  upstream_max_stream_duration_reached,  // UMSDR
  response_from_cache_filter,       // RFCF
  no_filter_config_found,           // NFCF
  duration_timeout,                 // DT
  upstream_protocol_error,          // UPE
  no_cluster_found,                 // NC
  overload_manager,                 // OM
  dns_resolution_failed,            // DF
  drop_overload,                    // DO
  downstream_remote_reset,          // DR
  unconditional_drop_overload,      // UDO
  count
};

inline constexpr std::uint32_t flag_bit(response_flag f) { return 1u << static_cast<unsigned>(f); }

// Short ("UF") and long ("UpstreamConnectionFailure") names, indexed by response_flag.
std::string_view short_name(response_flag f);
std::string_view long_name(response_flag f);
// The flag named `name` (short form), or false.
bool parse_flag(std::string_view name, response_flag& out);

// An IPv4 or IPv6 address and port, stored as bytes so the session copies 20 bytes, not text.
struct address {
  std::array<std::uint8_t, 16> ip{};
  std::uint16_t port = 0;
  bool v6 = false;
  bool set = false;

  // "10.0.0.1:80", "[::1]:80" (Envoy's Address::asString).
  void append_to(std::string& out, bool with_port = true) const;
};

struct record {
  std::chrono::system_clock::time_point start_time{};
  std::chrono::steady_clock::time_point started{};  // for the duration
  std::chrono::steady_clock::time_point ended{};
  std::uint64_t bytes_received = 0;  // from downstream, including the ClientHello
  std::uint64_t bytes_sent = 0;      // to downstream
  std::uint64_t connection_id = 0;
  std::uint32_t response_flags = 0;  // flag_bit() set
  std::uint32_t connect_attempts = 0;
  // errno of the last failed upstream connect (0: none or a timeout), rendered as Envoy's
  // transport failure reason.
  int upstream_connect_errno = 0;
  address downstream_remote;
  address downstream_local;
  address upstream_host;
  address upstream_local;
  std::string requested_server_name;
  // The routed cluster's name: a view into the gateway's routing object for the cluster, which
  // `upstream_cluster_owner` keeps alive, so that naming the cluster copies nothing per connection.
  std::string_view upstream_cluster;
  std::shared_ptr<const void> upstream_cluster_owner;  // null: no cluster was routed to
  std::shared_ptr<const std::string> filter_chain_name;
  // Static strings only (string literals), so they outlive any record.
  std::string_view response_code_details;
  std::string_view connection_termination_details;

  void set(response_flag f) { response_flags |= flag_bit(f); }
  bool has(response_flag f) const { return (response_flags & flag_bit(f)) != 0; }
};

}  // namespace ewgw::accesslog
