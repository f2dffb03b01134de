#include "lb/host.h"

#include <arpa/inet.h>

#include <cstring>

#include "lb/random.h"

namespace ewgw::lb {

bool endpoint_address::parse(const std::string& text, std::uint16_t port, endpoint_address& out) {
  endpoint_address a;
  a.port = port;
  if (inet_pton(AF_INET, text.c_str(), a.ip.data()) == 1) {
    a.ipv6 = false;
  } else if (inet_pton(AF_INET6, text.c_str(), a.ip.data()) == 1) {
    a.ipv6 = true;
  } else {
    return false;
  }
  out = a;
  return true;
}

std::string endpoint_address::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(ipv6 ? AF_INET6 : AF_INET, ip.data(), buf, sizeof buf);
  return ipv6 ? "[" + std::string(buf) + "]:" + std::to_string(port) : std::string(buf) + ":" + std::to_string(port);
}

std::size_t endpoint_address_hash::operator()(const endpoint_address& a) const noexcept {
  // Two words of address and one of port/family through the splitmix64 finalizer: a few
  // multiplies instead of a loop over bytes (rebuilds hash every host twice).
  std::uint64_t hi = 0, lo = 0;
  std::memcpy(&hi, a.ip.data(), 8);
  std::memcpy(&lo, a.ip.data() + 8, 8);
  const std::uint64_t tail = (std::uint64_t{a.port} << 1) | (a.ipv6 ? 1 : 0);
  return static_cast<std::size_t>(fast_random::mix(hi ^ fast_random::mix(lo ^ fast_random::mix(tail))));
}

// The counting below follows Envoy's DetectorHostMonitorImpl (outlier_detection_impl.cc):
// putHttpResponseCode for the folded results, localOriginFailure / localOriginNoFailure with
// split. A counter fires when it reaches its threshold exactly; the cold half resets it when it
// processes the detection (or on un-ejection), as Envoy's main thread does.
bool host::report(outcome o) {
  outlier_state_block* s = outlier_.load(std::memory_order_acquire);
  if (s == nullptr || !s->detect.load(std::memory_order_relaxed)) return false;
  const bool split = s->split.load(std::memory_order_relaxed);
  switch (o) {
    case outcome::connect_success:
      if (split) {
        local_origin_success(*s);
        return false;
      }
      return put_http_code(*s, 200);
    case outcome::connect_failed:
      return split ? local_origin_failure(*s) : put_http_code(*s, 503);
    case outcome::connect_timeout:
      return split ? local_origin_failure(*s) : put_http_code(*s, 504);
    case outcome::request_failed:
      return put_http_code(*s, split ? 503 : 500);
    case outcome::request_success: {
      const bool fired = put_http_code(*s, 200);
      if (split) local_origin_success(*s);
      return fired;
    }
  }
  return false;
}

bool host::put_http_code(outlier_state_block& s, unsigned code) {
  s.external_total.fetch_add(1, std::memory_order_relaxed);
  if (code < 500 || code > 599) {
    s.external_success.fetch_add(1, std::memory_order_relaxed);
    reset_consecutive(s.consecutive_5xx);
    reset_consecutive(s.consecutive_gateway_failure);
    return false;
  }
  std::uint32_t fired = 0;
  // Gateway errors (502, 503, 504) count on both counters; other 5xx reset the gateway counter.
  if (code >= 502 && code <= 504) {
    if (s.consecutive_gateway_failure.fetch_add(1, std::memory_order_relaxed) + 1 ==
        s.threshold_gateway_failure.load(std::memory_order_relaxed)) {
      fired |= pending_bit(ejection_kind::consecutive_gateway_failure);
    }
  } else {
    reset_consecutive(s.consecutive_gateway_failure);
  }
  if (s.consecutive_5xx.fetch_add(1, std::memory_order_relaxed) + 1 == s.threshold_5xx.load(std::memory_order_relaxed)) {
    fired |= pending_bit(ejection_kind::consecutive_5xx);
  }
  if (fired == 0) return false;
  s.pending.fetch_or(fired, std::memory_order_release);
  return true;
}

bool host::local_origin_failure(outlier_state_block& s) {
  s.local_total.fetch_add(1, std::memory_order_relaxed);
  if (s.consecutive_local_origin_failure.fetch_add(1, std::memory_order_relaxed) + 1 !=
      s.threshold_local_origin_failure.load(std::memory_order_relaxed)) {
    return false;
  }
  s.pending.fetch_or(pending_bit(ejection_kind::consecutive_local_origin_failure), std::memory_order_release);
  return true;
}

void host::local_origin_success(outlier_state_block& s) {
  s.local_total.fetch_add(1, std::memory_order_relaxed);
  s.local_success.fetch_add(1, std::memory_order_relaxed);
  reset_consecutive(s.consecutive_local_origin_failure);
}

// One per endpoint of every cluster: keep it to a cache line (56 bytes today; 200 with the
// outlier state inline).
static_assert(sizeof(host) <= 64, "outlier detection state belongs in host::outlier_state_block");

host::~host() { delete outlier_.load(std::memory_order_relaxed); }

const outlier_cold_state& host::outlier_state() const {
  static const outlier_cold_state none{};
  const outlier_state_block* s = outlier_.load(std::memory_order_acquire);
  return s == nullptr ? none : s->cold;
}

}  // namespace ewgw::lb
