// Upstream hosts as the load balancer sees them: plain data, no Asio, no protobuf.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace ewgw::lb {

// A numeric endpoint address, pre-parsed so connecting needs no string handling.
struct endpoint_address {
  std::array<std::uint8_t, 16> ip{};  // network order; IPv4 uses the first 4 bytes
  bool ipv6 = false;
  std::uint16_t port = 0;

  // Parses a numeric IPv4/IPv6 literal; false if `text` is not one.
  static bool parse(const std::string& text, std::uint16_t port, endpoint_address& out);
  std::string to_string() const;  // "1.2.3.4:80" or "[::1]:80"
  bool operator==(const endpoint_address&) const = default;
};

// EDS health_status folded into what load balancing needs (envoy.config.core.v3.HealthStatus:
// UNKNOWN and HEALTHY are healthy; UNHEALTHY, DRAINING and TIMEOUT are not picked; DEGRADED is
// used only when healthy hosts run short).
enum class host_health : std::uint8_t { healthy, degraded, unhealthy };

// Shared by every worker and every configuration snapshot that includes it, so its counters
// survive endpoint updates. Mutable state is atomic: workers update it without locks.
class host {
 public:
  host(endpoint_address address, std::uint32_t weight, host_health health)
      : address_(address), weight_(weight == 0 ? 1 : weight), health_(health) {}

  const endpoint_address& address() const { return address_; }
  std::uint32_t weight() const { return weight_; }
  host_health health() const { return health_; }

  // Connections currently open to this host, across workers (least-request input).
  std::uint32_t active_connections() const { return active_.load(std::memory_order_relaxed); }
  void connection_opened() { active_.fetch_add(1, std::memory_order_relaxed); }
  void connection_closed() { active_.fetch_sub(1, std::memory_order_relaxed); }

 private:
  endpoint_address address_;
  std::uint32_t weight_;
  host_health health_;
  std::atomic<std::uint32_t> active_{0};
};

}  // namespace ewgw::lb
