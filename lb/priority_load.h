// Envoy's priority and locality arithmetic as pure functions (load_balancer_impl.cc:
// recalculatePerPriorityState, recalculatePerPriorityPanic, recalculateLoadInTotalPanic,
// isHostSetInPanic; locality_wrr.cc: effectiveLocalityWeight). Integer maths where Envoy uses
// integers, doubles where it uses doubles, so results match Envoy's to the percent.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace ewgw::lb {

// Host counts of one priority as the load balancer sees them: outlier-ejected hosts are counted
// as unhealthy (neither healthy nor degraded), EDS-excluded hosts as excluded.
struct priority_counts {
  std::uint32_t hosts = 0;  // all hosts, including excluded
  std::uint32_t healthy = 0;
  std::uint32_t degraded = 0;
  std::uint32_t excluded = 0;
};

struct priority_loads {
  // Availability per priority: min(100, OPF * healthy / (hosts - excluded)), same for degraded.
  std::vector<std::uint32_t> health;
  std::vector<std::uint32_t> degraded;
  // Percent of picks per priority; the healthy and degraded loads together sum to 100.
  std::vector<std::uint32_t> healthy_load;
  std::vector<std::uint32_t> degraded_load;
  // A priority in panic picks from all of its hosts, whatever their health.
  std::vector<bool> panic;
  std::uint32_t normalized_total_availability = 0;  // min(100, sum(health) + sum(degraded))
  bool total_panic = false;                         // every priority in panic: loads by host count
};

// `overprovisioning_factor` is a percentage (140 = 1.4); `panic_threshold` a percentage, 0
// disables panic. An empty span yields empty vectors.
priority_loads compute_priority_loads(std::span<const priority_counts> priorities, std::uint32_t overprovisioning_factor,
                                      std::uint32_t panic_threshold);

// weight * min(1, OPF/100 * eligible / (hosts - excluded)); 0 when the locality has no
// non-excluded host. `eligible` is the healthy (or, for the degraded schedule, degraded) count.
double effective_locality_weight(std::uint32_t weight, std::uint32_t eligible, std::uint32_t hosts,
                                 std::uint32_t excluded, std::uint32_t overprovisioning_factor);

}  // namespace ewgw::lb
