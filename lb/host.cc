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
  if (!detect_.load(std::memory_order_relaxed)) return false;
  const bool split = split_.load(std::memory_order_relaxed);
  switch (o) {
    case outcome::connect_success:
      if (split) {
        local_origin_success();
        return false;
      }
      return put_http_code(200);
    case outcome::connect_failed:
      return split ? local_origin_failure() : put_http_code(503);
    case outcome::connect_timeout:
      return split ? local_origin_failure() : put_http_code(504);
    case outcome::request_failed:
      return put_http_code(split ? 503 : 500);
    case outcome::request_success: {
      const bool fired = put_http_code(200);
      if (split) local_origin_success();
      return fired;
    }
  }
  return false;
}

bool host::put_http_code(unsigned code) {
  external_total_.fetch_add(1, std::memory_order_relaxed);
  if (code < 500 || code > 599) {
    external_success_.fetch_add(1, std::memory_order_relaxed);
    reset_consecutive(consecutive_5xx_);
    reset_consecutive(consecutive_gateway_failure_);
    return false;
  }
  std::uint32_t fired = 0;
  // Gateway errors (502, 503, 504) count on both counters; other 5xx reset the gateway counter.
  if (code >= 502 && code <= 504) {
    if (consecutive_gateway_failure_.fetch_add(1, std::memory_order_relaxed) + 1 ==
        threshold_gateway_failure_.load(std::memory_order_relaxed)) {
      fired |= pending_bit(ejection_kind::consecutive_gateway_failure);
    }
  } else {
    reset_consecutive(consecutive_gateway_failure_);
  }
  if (consecutive_5xx_.fetch_add(1, std::memory_order_relaxed) + 1 == threshold_5xx_.load(std::memory_order_relaxed)) {
    fired |= pending_bit(ejection_kind::consecutive_5xx);
  }
  if (fired == 0) return false;
  pending_.fetch_or(fired, std::memory_order_release);
  return true;
}

bool host::local_origin_failure() {
  local_total_.fetch_add(1, std::memory_order_relaxed);
  if (consecutive_local_origin_failure_.fetch_add(1, std::memory_order_relaxed) + 1 !=
      threshold_local_origin_failure_.load(std::memory_order_relaxed)) {
    return false;
  }
  pending_.fetch_or(pending_bit(ejection_kind::consecutive_local_origin_failure), std::memory_order_release);
  return true;
}

void host::local_origin_success() {
  local_total_.fetch_add(1, std::memory_order_relaxed);
  local_success_.fetch_add(1, std::memory_order_relaxed);
  reset_consecutive(consecutive_local_origin_failure_);
}

}  // namespace ewgw::lb
