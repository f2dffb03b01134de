// Envoy's priority arithmetic (ENVOY-SEMANTICS.md "Priorities") on host counts alone.
#include "lb/priority_load.h"

#include <gtest/gtest.h>

#include <vector>

namespace ewgw::lb {
namespace {

using loads = std::vector<std::uint32_t>;
using flags = std::vector<bool>;

priority_counts counts(std::uint32_t hosts, std::uint32_t healthy, std::uint32_t degraded = 0, std::uint32_t excluded = 0) {
  return {hosts, healthy, degraded, excluded};
}

priority_loads compute(std::vector<priority_counts> p, std::uint32_t opf = 140, std::uint32_t panic = 50) {
  return compute_priority_loads(p, opf, panic);
}

// Scenario 1: P0 2 of 4 healthy, P1 2 of 4 healthy: (70, 30); with OPF 100: (50, 50).
TEST(PriorityLoad, Scenario1OverprovisioningFactor) {
  const priority_loads a = compute({counts(4, 2), counts(4, 2)});
  EXPECT_EQ(a.health, (loads{70, 70}));
  EXPECT_EQ(a.normalized_total_availability, 100u);
  EXPECT_EQ(a.healthy_load, (loads{70, 30}));
  EXPECT_EQ(a.degraded_load, (loads{0, 0}));
  EXPECT_EQ(a.panic, (flags{false, false}));

  const priority_loads b = compute({counts(4, 2), counts(4, 2)}, 100);
  EXPECT_EQ(b.health, (loads{50, 50}));
  EXPECT_EQ(b.healthy_load, (loads{50, 50}));
  EXPECT_FALSE(b.total_panic);
}

// Scenario 2: 1/1 and 1/1 -> (100, 0); 1/2 and 1/2 -> (70, 30); 1/4 and 2/2 -> (35, 65), no
// panic; 1/4 and 1/4 -> (50, 50), both in panic.
TEST(PriorityLoad, Scenario2TwoPriorities) {
  EXPECT_EQ(compute({counts(1, 1), counts(1, 1)}).healthy_load, (loads{100, 0}));
  EXPECT_EQ(compute({counts(2, 1), counts(2, 1)}).healthy_load, (loads{70, 30}));

  const priority_loads c = compute({counts(4, 1), counts(2, 2)});
  EXPECT_EQ(c.health, (loads{35, 100}));
  EXPECT_EQ(c.healthy_load, (loads{35, 65}));
  EXPECT_EQ(c.panic, (flags{false, false}));  // NTA is 100: never panic, however low P0 is
  EXPECT_FALSE(c.total_panic);

  const priority_loads d = compute({counts(4, 1), counts(4, 1)});
  EXPECT_EQ(d.normalized_total_availability, 70u);
  EXPECT_EQ(d.panic, (flags{true, true}));
  EXPECT_TRUE(d.total_panic);
  EXPECT_EQ(d.healthy_load, (loads{50, 50}));  // by host counts, 4 and 4
}

// Envoy's own worked example (load_balancer_impl.cc): health 10/20/10 and degraded 20/10/0 give
// healthy loads 16/28/14 and degraded loads 28/14/0; the 2 points of rounding go to the first
// healthy priority.
TEST(PriorityLoad, RoundingLeftoversGoToTheFirstHealthyPriority) {
  const priority_loads a = compute({counts(10, 1, 2), counts(10, 2, 1), counts(10, 1, 0)}, 100, 0);
  EXPECT_EQ(a.health, (loads{10, 20, 10}));
  EXPECT_EQ(a.degraded, (loads{20, 10, 0}));
  EXPECT_EQ(a.normalized_total_availability, 70u);
  EXPECT_EQ(a.healthy_load, (loads{16, 28, 14}));
  EXPECT_EQ(a.degraded_load, (loads{28, 14, 0}));
}

TEST(PriorityLoad, RoundingLeftoversGoToTheFirstDegradedPriorityWithoutHealth) {
  // Degraded availability 14 and 16: 46 + 53 = 99, the last point to P0.
  const priority_loads a = compute({counts(7, 0, 1), counts(6, 0, 1)}, 100, 0);
  EXPECT_EQ(a.degraded, (loads{14, 16}));
  EXPECT_EQ(a.healthy_load, (loads{0, 0}));
  EXPECT_EQ(a.degraded_load, (loads{47, 53}));
}

TEST(PriorityLoad, DegradedHostsTakeWhatHealthyHostsCannot) {
  // 1 healthy + 1 degraded of 4: health 35, degraded 35, NTA 70: half and half. 25% + 25% is
  // not below the 50% threshold: no panic.
  const priority_loads a = compute({counts(4, 1, 1)});
  EXPECT_EQ(a.health, (loads{35}));
  EXPECT_EQ(a.degraded, (loads{35}));
  EXPECT_EQ(a.healthy_load, (loads{50}));
  EXPECT_EQ(a.degraded_load, (loads{50}));
  EXPECT_EQ(a.panic, (flags{false}));

  // The healthy pass runs over every priority before the degraded pass: P1's healthy hosts
  // take what P0's healthy hosts cannot, and P0's degraded hosts get nothing.
  const priority_loads b = compute({counts(4, 1, 1), counts(2, 1)});
  EXPECT_EQ(b.healthy_load, (loads{35, 65}));
  EXPECT_EQ(b.degraded_load, (loads{0, 0}));
}

TEST(PriorityLoad, ThreePrioritiesWithSomeInPanic) {
  // Health 0, 28, 70: NTA 98. P0 (0%) and P1 (20%) are in panic, P2 (50%) is not.
  const priority_loads a = compute({counts(4, 0), counts(5, 1), counts(6, 3)});
  EXPECT_EQ(a.health, (loads{0, 28, 70}));
  EXPECT_EQ(a.normalized_total_availability, 98u);
  EXPECT_EQ(a.healthy_load, (loads{0, 29, 71}));  // 28 + 70 = 98 of 100, leftovers to P1
  EXPECT_EQ(a.panic, (flags{true, true, false}));
  EXPECT_FALSE(a.total_panic);
}

TEST(PriorityLoad, ThreePrioritiesInTotalPanicSplitByHostCount) {
  // 25%, 0%, 16%: all below 50. Loads by host counts 4, 2, 6 of 12: 33, 16, 50, +1 to P0.
  const priority_loads a = compute({counts(4, 1), counts(2, 0), counts(6, 1)});
  EXPECT_EQ(a.panic, (flags{true, true, true}));
  EXPECT_TRUE(a.total_panic);
  EXPECT_EQ(a.healthy_load, (loads{34, 16, 50}));
  EXPECT_EQ(a.degraded_load, (loads{0, 0, 0}));
}

TEST(PriorityLoad, ExcludedHostsLeaveTheDenominatorButCountInTotalPanic) {
  // 2 healthy + 2 excluded of 4: 140 * 2 / 2, capped: P0 takes everything.
  EXPECT_EQ(compute({counts(4, 2, 0, 2), counts(4, 4)}).healthy_load, (loads{100, 0}));
  // Without the exclusion it would be 70 / 30.
  EXPECT_EQ(compute({counts(4, 2), counts(4, 4)}).healthy_load, (loads{70, 30}));

  // 1 healthy of 5 counted (3 of 8 excluded): 20% -> panic; P1 0% -> panic. Total panic splits
  // by all hosts, excluded included: 8 and 2 of 10.
  const priority_loads c = compute({counts(8, 1, 0, 3), counts(2, 0)});
  EXPECT_EQ(c.health, (loads{28, 0}));
  EXPECT_TRUE(c.total_panic);
  EXPECT_EQ(c.healthy_load, (loads{80, 20}));

  // Only excluded hosts: no availability, in panic (0%).
  const priority_loads d = compute({counts(2, 0, 0, 2)});
  EXPECT_EQ(d.health, (loads{0}));
  EXPECT_TRUE(d.total_panic);
  EXPECT_EQ(d.healthy_load, (loads{100}));
}

TEST(PriorityLoad, PanicThresholdZeroNeverPanics) {
  const priority_loads a = compute({counts(4, 0), counts(4, 0)}, 140, 0);
  EXPECT_EQ(a.panic, (flags{false, false}));
  EXPECT_EQ(a.healthy_load, (loads{100, 0}));  // all to P0, which has nothing healthy to give
  const priority_loads b = compute({counts(4, 1), counts(4, 1)}, 140, 0);
  EXPECT_EQ(b.panic, (flags{false, false}));
  EXPECT_EQ(b.healthy_load, (loads{50, 50}));
}

TEST(PriorityLoad, PanicOnlyBelowTheThresholdAndOnlyWhenShortOfCapacity) {
  // Exactly at the threshold is not panic: 2 of 4 with OPF 100 is 50% < 50 -> false.
  const priority_loads a = compute({counts(4, 2)}, 100, 50);
  EXPECT_EQ(a.normalized_total_availability, 50u);
  EXPECT_EQ(a.panic, (flags{false}));
  // Healthy plus degraded percentages are added for the panic test: 1 + 1 of 4 = 50%.
  EXPECT_EQ(compute({counts(4, 1, 1)}, 100, 50).panic, (flags{false}));
  EXPECT_EQ(compute({counts(4, 1, 0)}, 100, 50).panic, (flags{true}));
  // A threshold above 100 is capped at 100.
  EXPECT_EQ(compute({counts(4, 3)}, 100, 500).panic, (flags{true}));
}

TEST(PriorityLoad, NoHosts) {
  EXPECT_TRUE(compute({}).healthy_load.empty());
  const priority_loads a = compute({counts(0, 0)});
  EXPECT_TRUE(a.total_panic);
  EXPECT_EQ(a.healthy_load, (loads{100}));
  // An empty priority between two others takes no load.
  EXPECT_EQ(compute({counts(2, 1), counts(0, 0), counts(2, 1)}).healthy_load, (loads{70, 0, 30}));
}

// Scenario 3's weights: X (5 hosts, weight 1) as its healthy count drops; OPF 140.
TEST(LocalityWeight, AvailabilityScaling) {
  EXPECT_DOUBLE_EQ(effective_locality_weight(1, 5, 5, 0, 140), 1.0);
  EXPECT_DOUBLE_EQ(effective_locality_weight(1, 4, 5, 0, 140), 1.0);  // 1.12, capped
  EXPECT_DOUBLE_EQ(effective_locality_weight(1, 3, 5, 0, 140), 1.4 * 0.6);
  EXPECT_DOUBLE_EQ(effective_locality_weight(1, 1, 5, 0, 140), 1.4 * 0.2);
  EXPECT_DOUBLE_EQ(effective_locality_weight(1, 0, 5, 0, 140), 0.0);
  EXPECT_DOUBLE_EQ(effective_locality_weight(2, 1, 1, 0, 140), 2.0);
  // Excluded hosts leave the denominator: 1 of (3 - 2).
  EXPECT_DOUBLE_EQ(effective_locality_weight(4, 1, 3, 2, 100), 4.0);
  EXPECT_DOUBLE_EQ(effective_locality_weight(4, 0, 3, 3, 100), 0.0);
  // Unset weight: never picked.
  EXPECT_DOUBLE_EQ(effective_locality_weight(0, 5, 5, 0, 140), 0.0);
}

}  // namespace
}  // namespace ewgw::lb
