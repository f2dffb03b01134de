#include "lb/priority_load.h"

#include <algorithm>

namespace ewgw::lb {

namespace {

struct distributed {
  int first_available = -1;  // first priority with availability > 0
  std::uint32_t remaining = 0;
};

// Assigns as much of `total` as each priority's availability allows, highest priority first.
distributed distribute(std::vector<std::uint32_t>& load, const std::vector<std::uint32_t>& availability,
                       std::uint32_t total, std::uint32_t normalized_total_availability) {
  distributed out;
  for (std::size_t i = 0; i < availability.size(); ++i) {
    if (out.first_available < 0 && availability[i] > 0) out.first_available = static_cast<int>(i);
    load[i] = std::min<std::uint32_t>(total, availability[i] * 100 / normalized_total_availability);
    total -= load[i];
  }
  out.remaining = total;
  return out;
}

bool in_panic(const priority_counts& c, std::uint32_t threshold) {
  const std::uint32_t host_count = c.hosts - c.excluded;
  const double healthy_percent = host_count == 0 ? 0.0 : 100.0 * c.healthy / host_count;
  const double degraded_percent = host_count == 0 ? 0.0 : 100.0 * c.degraded / host_count;
  return healthy_percent + degraded_percent < threshold;
}

}  // namespace

priority_loads compute_priority_loads(std::span<const priority_counts> priorities, std::uint32_t overprovisioning_factor,
                                      std::uint32_t panic_threshold) {
  const std::size_t n = priorities.size();
  priority_loads out;
  out.health.assign(n, 0);
  out.degraded.assign(n, 0);
  out.healthy_load.assign(n, 0);
  out.degraded_load.assign(n, 0);
  out.panic.assign(n, false);
  if (n == 0) return out;

  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < n; ++i) {
    const priority_counts& c = priorities[i];
    const std::uint64_t host_count = c.hosts - c.excluded;
    if (host_count == 0) continue;
    out.health[i] = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(100, std::uint64_t{overprovisioning_factor} * c.healthy / host_count));
    out.degraded[i] = static_cast<std::uint32_t>(
        std::min<std::uint64_t>(100, std::uint64_t{overprovisioning_factor} * c.degraded / host_count));
    sum += out.health[i] + out.degraded[i];
  }
  out.normalized_total_availability = std::min<std::uint32_t>(100, sum);
  const std::uint32_t nta = out.normalized_total_availability;

  if (nta > 0) {
    const distributed healthy = distribute(out.healthy_load, out.health, 100, nta);
    const distributed degraded = distribute(out.degraded_load, out.degraded, healthy.remaining, nta);
    // Rounding leftovers: to the first priority with health, else with degraded availability.
    if (degraded.remaining != 0) {
      if (healthy.first_available >= 0) {
        out.healthy_load[healthy.first_available] += degraded.remaining;
      } else {
        out.degraded_load[degraded.first_available] += degraded.remaining;
      }
    }
  }

  const std::uint32_t threshold = std::min<std::uint32_t>(100, panic_threshold);
  if (threshold == 0 && nta == 0) {
    // Panic disabled and nothing available: Envoy points all load at P0, which has no healthy
    // host to give, so picks fail.
    out.healthy_load[0] = 100;
    return out;
  }

  // Never panic when the priorities together have enough capacity (NTA 100), however few
  // healthy hosts a single priority has.
  bool total_panic = true;
  for (std::size_t i = 0; i < n; ++i) {
    out.panic[i] = nta == 100 ? false : in_panic(priorities[i], threshold);
    total_panic = total_panic && out.panic[i];
  }

  if (total_panic) {
    out.total_panic = true;
    std::uint64_t total_hosts = 0;
    for (const priority_counts& c : priorities) total_hosts += c.hosts;
    std::fill(out.degraded_load.begin(), out.degraded_load.end(), 0);
    if (total_hosts == 0) {
      std::fill(out.healthy_load.begin(), out.healthy_load.end(), 0);
      out.healthy_load[0] = 100;
      return out;
    }
    std::uint32_t remaining = 100;
    int first_nonempty = -1;
    for (std::size_t i = 0; i < n; ++i) {
      if (first_nonempty < 0 && priorities[i].hosts != 0) first_nonempty = static_cast<int>(i);
      out.healthy_load[i] = static_cast<std::uint32_t>(100 * std::uint64_t{priorities[i].hosts} / total_hosts);
      remaining -= out.healthy_load[i];
    }
    out.healthy_load[first_nonempty] += remaining;
    return out;
  }

  if (nta == 0) {
    // Envoy leaves the previous loads in place here (no availability, some priority not in
    // panic: only possible with a tiny overprovisioning factor). Loads must add up to 100, so
    // point them at P0 as in the panic-disabled case.
    out.healthy_load[0] = 100;
  }
  return out;
}

double effective_locality_weight(std::uint32_t weight, std::uint32_t eligible, std::uint32_t hosts,
                                 std::uint32_t excluded, std::uint32_t overprovisioning_factor) {
  const std::uint32_t host_count = hosts - excluded;
  if (host_count == 0) return 0.0;
  const double availability = 1.0 * eligible / host_count;
  return weight * std::min(1.0, (overprovisioning_factor / 100.0) * availability);
}

}  // namespace ewgw::lb
