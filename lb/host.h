// Upstream hosts as the load balancer sees them: plain data, no Asio, no protobuf.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

namespace ewgw::lb {

// The cold half's notion of time. Nothing in lb/ reads a clock: callers pass `now`, so tests
// drive time explicitly and never sleep.
using time_point = std::chrono::steady_clock::time_point;

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

struct endpoint_address_hash {
  std::size_t operator()(const endpoint_address& a) const noexcept;
};

// EDS health_status folded into what load balancing needs (envoy.config.core.v3.HealthStatus):
// UNKNOWN and HEALTHY are healthy; DEGRADED is used when healthy hosts run short; UNHEALTHY,
// DRAINING and TIMEOUT are unhealthy (picked only in panic). `excluded` is Envoy's
// EXCLUDED_VIA_* state: not counted in any availability denominator, picked only in panic.
enum class host_health : std::uint8_t { healthy, degraded, unhealthy, excluded };

// What the data path observed on one upstream attempt (Envoy's Outlier::Result, as a TCP proxy
// reports it). Without split_external_local_origin_errors the results are folded into HTTP
// codes as Envoy does: connect_success 200, connect_failed 503, connect_timeout 504,
// request_failed 500, request_success 200. With split, the connect results feed the local-origin
// counter and request_failed counts as a 503 on the external counters.
enum class outcome : std::uint8_t {
  connect_success,  // LocalOriginConnectSuccessFinal
  connect_failed,   // LocalOriginConnectFailed: refused, reset, unreachable
  connect_timeout,  // LocalOriginTimeout
  request_failed,   // ExtOriginRequestFailed
  request_success,  // ExtOriginRequestSuccess
};

// The kinds of outlier ejection, in Envoy's stat-name order (envoy.data.cluster.v3.OutlierEjectionType).
enum class ejection_kind : std::uint8_t {
  consecutive_5xx,
  consecutive_gateway_failure,
  consecutive_local_origin_failure,
  success_rate,
  local_origin_success_rate,
  failure_percentage,
  local_origin_failure_percentage,
};
inline constexpr std::size_t ejection_kind_count = 7;

// Outlier bookkeeping that only the cold half reads and writes (under the cluster's cold mutex).
struct outlier_cold_state {
  std::uint32_t backoff = 0;        // Envoy's ejectTimeBackoff
  std::uint32_t num_ejections = 0;  // lifetime count
  time_point last_ejection{};
  std::optional<time_point> last_unejection;
  std::chrono::milliseconds jitter{0};
  // Cumulative success-rate counters as seen at the previous interval: the difference is the
  // interval's bucket (Envoy swaps two buckets; a difference of monotonic counters is the same
  // data without a race between the swap and the writers).
  std::uint64_t seen_external_total = 0, seen_external_success = 0;
  std::uint64_t seen_local_total = 0, seen_local_success = 0;
  double external_success_rate = -1, local_success_rate = -1;  // last interval's, -1 = none
};

// Shared by every worker and every balancer generation that includes it (matched by address on
// rebuild), so its connection count and outlier state survive endpoint updates. Load-balancing
// attributes that come from config (weight, EDS health, locality, priority) live in the balancer
// that lists the host, not here.
//
// Threads: connection counts and report() are called by any worker (atomics only);
// ejected() by anyone; everything else by the cold half.
class host {
 public:
  explicit host(endpoint_address address) : address_(address) {}
  host(const host&) = delete;
  host& operator=(const host&) = delete;

  const endpoint_address& address() const { return address_; }

  // Connections currently open to this host, across workers (least-request input).
  std::uint32_t active_connections() const { return active_.load(std::memory_order_relaxed); }
  void connection_opened() {
    active_.fetch_add(1, std::memory_order_relaxed);
    total_.fetch_add(1, std::memory_order_relaxed);  // same cache line as active_: no extra miss
  }
  void connection_closed() { active_.fetch_sub(1, std::memory_order_relaxed); }
  // A connect attempt to this host failed or timed out (admin /clusters: cx_connect_fail).
  // Counted whether or not outlier detection is configured.
  void connect_failed() { connect_fail_.fetch_add(1, std::memory_order_relaxed); }
  // Lifetime counts for admin /clusters (cx_total, cx_connect_fail).
  std::uint64_t connections_total() const { return total_.load(std::memory_order_relaxed); }
  std::uint64_t connect_failures() const { return connect_fail_.load(std::memory_order_relaxed); }

  // Hot half of outlier detection: counts one outcome. Returns true when a consecutive-failure
  // counter has just reached its threshold (a detection is pending): the caller should then ask
  // the cold half to process detections soon (load_balancer::process_detections() on the control
  // thread) instead of waiting for the next interval tick. A no-op returning false when the
  // cluster has no outlier_detection.
  bool report(outcome o);

  // Ejected by outlier detection: treated as unhealthy by every balancer built or refreshed
  // since.
  bool ejected() const {
    const outlier_state_block* s = outlier_.load(std::memory_order_acquire);
    return s != nullptr && s->ejected.load(std::memory_order_acquire);
  }

  // Diagnostics (approximate while workers report); zero when outlier detection was never
  // enabled for this host's cluster.
  std::uint32_t consecutive_5xx() const { return counter(&outlier_state_block::consecutive_5xx); }
  std::uint32_t consecutive_gateway_failure() const {
    return counter(&outlier_state_block::consecutive_gateway_failure);
  }
  std::uint32_t consecutive_local_origin_failure() const {
    return counter(&outlier_state_block::consecutive_local_origin_failure);
  }
  // Cold half only (under the cluster's cold mutex). All defaults when outlier detection was
  // never enabled for this host's cluster.
  const outlier_cold_state& outlier_state() const;

  ~host();

 private:
  friend class outlier_detector;

  // Everything outlier detection keeps per host. Kept out of line and made only when the
  // host's cluster enables outlier_detection (outlier_detector::configure): most clusters have
  // none, and this is ~3/4 of a host's size. Once made it lives as long as the host (never
  // freed or replaced), so a worker that loaded the pointer can use it without further
  // synchronization.
  struct outlier_state_block {
    // Hot half: written by workers.
    std::atomic<std::uint32_t> consecutive_5xx{0};
    std::atomic<std::uint32_t> consecutive_gateway_failure{0};
    std::atomic<std::uint32_t> consecutive_local_origin_failure{0};
    std::atomic<std::uint32_t> pending{0};  // pending_bit() per consecutive kind detected
    std::atomic<std::uint64_t> external_total{0}, external_success{0};
    std::atomic<std::uint64_t> local_total{0}, local_success{0};

    // Detection settings, written by the cold half when a balancer including this host is built.
    std::atomic<bool> detect{false};
    std::atomic<bool> split{false};
    std::atomic<std::uint32_t> threshold_5xx{5};
    std::atomic<std::uint32_t> threshold_gateway_failure{5};
    std::atomic<std::uint32_t> threshold_local_origin_failure{5};
    // Ejected by outlier detection. Here rather than in the host: only a host whose cluster
    // enabled outlier detection can be ejected (8 bytes less per host without it).
    std::atomic<bool> ejected{false};  // written by the cold half only

    outlier_cold_state cold;  // cold half only
  };

  static constexpr std::uint32_t pending_bit(ejection_kind k) { return 1u << static_cast<unsigned>(k); }
  static bool put_http_code(outlier_state_block& s, unsigned code);
  static bool local_origin_failure(outlier_state_block& s);
  static void local_origin_success(outlier_state_block& s);
  static void reset_consecutive(std::atomic<std::uint32_t>& c) {
    if (c.load(std::memory_order_relaxed) != 0) c.store(0, std::memory_order_relaxed);
  }
  std::uint32_t counter(std::atomic<std::uint32_t> outlier_state_block::*member) const {
    const outlier_state_block* s = outlier_.load(std::memory_order_acquire);
    return s == nullptr ? 0 : (s->*member).load(std::memory_order_relaxed);
  }
  // The block; null when outlier detection was never enabled (cold half: its fields under the
  // cluster's cold mutex).
  outlier_state_block* outlier_block() const { return outlier_.load(std::memory_order_relaxed); }

  endpoint_address address_;
  std::atomic<std::uint32_t> active_{0};
  std::atomic<std::uint64_t> total_{0};
  std::atomic<std::uint64_t> connect_fail_{0};
  // Null until the cluster first enables outlier detection. Published with release after the
  // block's settings are written; workers read it with acquire.
  std::atomic<outlier_state_block*> outlier_{nullptr};
};

}  // namespace ewgw::lb
