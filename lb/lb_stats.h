// The load balancer's statistics, with Envoy's names (cluster.<name>.<stat>), declared once:
// the list generates the plain struct the proxy exports and visit(), which names each value.
// lb/ keeps its own atomics (no dependency on stats/); the proxy copies the values out at scrape
// time.
#pragma once

#include <cstdint>
#include <string_view>

namespace ewgw::lb {

enum class stat_kind : std::uint8_t { counter, gauge };

// X(member, "envoy.name", kind). Two lists because the balancer keeps the outlier detection
// counters only for clusters that enable it (EWGW_LB_STATS is both, in this order).
#define EWGW_LB_STATS(X) EWGW_LB_MEMBERSHIP_STATS(X) EWGW_LB_OUTLIER_STATS(X)
#define EWGW_LB_MEMBERSHIP_STATS(X)                                                                       \
  X(membership_healthy, "membership_healthy", gauge)                                                      \
  X(membership_degraded, "membership_degraded", gauge)                                                    \
  X(membership_excluded, "membership_excluded", gauge)                                                    \
  X(membership_total, "membership_total", gauge)                                                          \
  X(lb_healthy_panic, "lb_healthy_panic", counter)
#define EWGW_LB_OUTLIER_STATS(X)                                                                          \
  X(ejections_active, "outlier_detection.ejections_active", gauge)                                        \
  X(ejections_overflow, "outlier_detection.ejections_overflow", counter)                                  \
  X(ejections_enforced_total, "outlier_detection.ejections_enforced_total", counter)                      \
  X(ejections_detected_consecutive_5xx, "outlier_detection.ejections_detected_consecutive_5xx", counter)  \
  X(ejections_enforced_consecutive_5xx, "outlier_detection.ejections_enforced_consecutive_5xx", counter)  \
  X(ejections_detected_consecutive_gateway_failure,                                                       \
    "outlier_detection.ejections_detected_consecutive_gateway_failure", counter)                          \
  X(ejections_enforced_consecutive_gateway_failure,                                                       \
    "outlier_detection.ejections_enforced_consecutive_gateway_failure", counter)                          \
  X(ejections_detected_consecutive_local_origin_failure,                                                  \
    "outlier_detection.ejections_detected_consecutive_local_origin_failure", counter)                     \
  X(ejections_enforced_consecutive_local_origin_failure,                                                  \
    "outlier_detection.ejections_enforced_consecutive_local_origin_failure", counter)                     \
  X(ejections_detected_success_rate, "outlier_detection.ejections_detected_success_rate", counter)        \
  X(ejections_enforced_success_rate, "outlier_detection.ejections_enforced_success_rate", counter)        \
  X(ejections_detected_local_origin_success_rate,                                                         \
    "outlier_detection.ejections_detected_local_origin_success_rate", counter)                            \
  X(ejections_enforced_local_origin_success_rate,                                                         \
    "outlier_detection.ejections_enforced_local_origin_success_rate", counter)                            \
  X(ejections_detected_failure_percentage, "outlier_detection.ejections_detected_failure_percentage",     \
    counter)                                                                                              \
  X(ejections_enforced_failure_percentage, "outlier_detection.ejections_enforced_failure_percentage",     \
    counter)                                                                                              \
  X(ejections_detected_local_origin_failure_percentage,                                                   \
    "outlier_detection.ejections_detected_local_origin_failure_percentage", counter)                      \
  X(ejections_enforced_local_origin_failure_percentage,                                                   \
    "outlier_detection.ejections_enforced_local_origin_failure_percentage", counter)

struct lb_stats {
#define EWGW_LB_STAT_MEMBER(member, name, kind) std::uint64_t member = 0;
  EWGW_LB_STATS(EWGW_LB_STAT_MEMBER)
#undef EWGW_LB_STAT_MEMBER

  // f(std::string_view name, stat_kind kind, std::uint64_t value) for every statistic.
  template <class F>
  void visit(F&& f) const {
#define EWGW_LB_STAT_VISIT(member, name, kind) f(std::string_view(name), stat_kind::kind, member);
    EWGW_LB_STATS(EWGW_LB_STAT_VISIT)
#undef EWGW_LB_STAT_VISIT
  }
};

}  // namespace ewgw::lb
