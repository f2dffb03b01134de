// The balancer end to end: priorities, localities, policies, avoid-host, rebuilds, statistics,
// and the data-path guarantees (no allocation, safe view publication).
#include "lb/load_balancer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <set>
#include <span>
#include <thread>

#include "test/lb/allocation_counter.h"
#include "test/lb/lb_test_util.h"

namespace ewgw::lb {
namespace {

using namespace std::chrono_literals;
using testing::address;
using testing::counting_random;
using testing::find;
using testing::h;
using testing::locality;
using testing::make;
using testing::priority;
using testing::priority_of;
using testing::scripted_random;
using testing::spread;
using spread_t = std::map<std::uint16_t, int>;

const time_point t0 = time_point{} + 1000s;

std::vector<std::uint32_t> healthy_loads(const load_balancer& lb) {
  std::vector<std::uint32_t> out;
  for (const priority_state& p : lb.explain().priorities) out.push_back(p.healthy_load);
  return out;
}

std::vector<bool> panics(const load_balancer& lb) {
  std::vector<bool> out;
  for (const priority_state& p : lb.explain().priorities) out.push_back(p.panic);
  return out;
}

// Fails `host` five times in a row (consecutive_5xx) and lets the cold half act on it.
void eject(load_balancer& lb, host& x, time_point now) {
  for (int i = 0; i < 5; ++i) x.report(outcome::request_failed);
  lb.process_detections(now);
}

cluster_config with_outlier(cluster_config c, std::uint32_t max_percent = 100) {
  c.outlier_detection.enabled = true;
  c.outlier_detection.max_ejection_percent = max_percent;
  return c;
}

// Scenario 1 through picks: h = 1..100 in order sends exactly 70 picks to P0 and 30 to P1, each
// priority rotating over its healthy hosts.
TEST(LoadBalancer, Scenario1PriorityLoadsDrivePicks) {
  cluster_config c;
  c.priorities = {priority_of(100, 2, 4), priority_of(200, 2, 4)};
  auto lb = make(c);
  EXPECT_EQ(healthy_loads(*lb), (std::vector<std::uint32_t>{70, 30}));
  counting_random r;
  EXPECT_EQ(spread(*lb, r, 100), (spread_t{{100, 35}, {101, 35}, {200, 15}, {201, 15}}));

  c.overprovisioning_factor = 100;
  auto even = make(c);
  EXPECT_EQ(healthy_loads(*even), (std::vector<std::uint32_t>{50, 50}));
  counting_random r2;
  EXPECT_EQ(spread(*even, r2, 100), (spread_t{{100, 25}, {101, 25}, {200, 25}, {201, 25}}));
}

TEST(LoadBalancer, Scenario2PriorityLoadsAndPanic) {
  const auto loads_of = [](priority_config p0, priority_config p1) {
    cluster_config c;
    c.priorities = {std::move(p0), std::move(p1)};
    auto lb = make(c);
    return std::make_pair(healthy_loads(*lb), panics(*lb));
  };
  using loads = std::vector<std::uint32_t>;
  using flags = std::vector<bool>;
  EXPECT_EQ(loads_of(priority_of(100, 1, 1), priority_of(200, 1, 1)), std::make_pair(loads{100, 0}, flags{false, false}));
  EXPECT_EQ(loads_of(priority_of(100, 1, 2), priority_of(200, 1, 2)), std::make_pair(loads{70, 30}, flags{false, false}));
  EXPECT_EQ(loads_of(priority_of(100, 1, 4), priority_of(200, 2, 2)), std::make_pair(loads{35, 65}, flags{false, false}));
  EXPECT_EQ(loads_of(priority_of(100, 1, 4), priority_of(200, 1, 4)), std::make_pair(loads{50, 50}, flags{true, true}));

  // In panic every host of the priority is picked, healthy or not, and each such pick counts.
  cluster_config c;
  c.priorities = {priority_of(100, 1, 4), priority_of(200, 1, 4)};
  auto lb = make(c);
  counting_random r;
  EXPECT_EQ(spread(*lb, r, 200), (spread_t{{100, 25}, {101, 25}, {102, 25}, {103, 25},  //
                                           {200, 25}, {201, 25}, {202, 25}, {203, 25}}));
  EXPECT_EQ(lb->stats().lb_healthy_panic, 200u);
  EXPECT_TRUE(lb->explain().total_panic);
}

// Scenario 3: localities X (5 hosts, weight 1) and Y (1 healthy host, weight 2). As X's healthy
// count goes 5, 4, 3, 2, 1, 0, X's share of 100 picks goes 33, 33, 29, 22, 12, 0. (Panic is
// disabled so that the 0 and 1 cases, below 50% healthy, stay on the locality path.)
TEST(LoadBalancer, Scenario3LocalityAvailabilityScaling) {
  const int expected[] = {33, 33, 29, 22, 12, 0};
  const double expected_weight[] = {1.0, 1.0, 1.4 * 0.6, 1.4 * 0.4, 1.4 * 0.2, 0.0};
  for (std::uint32_t healthy = 5, step = 0; step < 6; --healthy, ++step) {
    std::vector<host_config> x;
    for (std::uint16_t i = 0; i < 5; ++i) x.push_back(h(100 + i, i < healthy ? host_health::healthy : host_health::unhealthy));
    cluster_config c;
    c.locality_weighted = true;
    c.healthy_panic_threshold = 0;
    c.priorities = {{{locality("X", 1, x), locality("Y", 2, {h(200)})}}};
    auto lb = make(c);
    const balancer_state s = lb->explain();
    ASSERT_EQ(s.priorities.size(), 1u);
    ASSERT_EQ(s.priorities[0].localities.size(), 2u);
    EXPECT_DOUBLE_EQ(s.priorities[0].localities[0].effective_weight, expected_weight[step]) << healthy;
    EXPECT_DOUBLE_EQ(s.priorities[0].localities[1].effective_weight, 2.0);
    counting_random r;
    int to_x = 0;
    for (int i = 0; i < 100; ++i) to_x += lb->pick(0, r)->address().port < 200 ? 1 : 0;
    EXPECT_EQ(to_x, expected[step]) << "X healthy: " << healthy;
  }
}

TEST(LoadBalancer, LocalityWithoutWeightIsNeverPicked) {
  cluster_config c;
  c.locality_weighted = true;
  c.priorities = {{{locality("a", 0, {h(1)}), locality("b", 3, {h(2), h(3)})}}};
  auto lb = make(c);
  counting_random r;
  EXPECT_EQ(spread(*lb, r, 10), (spread_t{{2, 5}, {3, 5}}));
  // No locality has a weight: the whole priority is used, as Envoy does without a schedule.
  c.priorities = {{{locality("a", 0, {h(1)}), locality("b", 0, {h(2)})}}};
  auto unweighted = make(c);
  counting_random r2;
  EXPECT_EQ(spread(*unweighted, r2, 10), (spread_t{{1, 5}, {2, 5}}));
}

TEST(LoadBalancer, LocalityScheduleFollowsEffectiveWeightsOverManyPicks) {
  // Weights 1, 2, 3 with full availability, then the third locality at half availability
  // (OPF 100: 2 of 4 healthy -> 1.5): shares 1 : 2 : 1.5 over 900 picks are exact.
  cluster_config c;
  c.locality_weighted = true;
  c.overprovisioning_factor = 100;
  c.healthy_panic_threshold = 0;
  c.priorities = {{{locality("a", 1, {h(1)}), locality("b", 2, {h(2)}),
                    locality("c", 3, {h(3), h(4), h(5, host_health::unhealthy), h(6, host_health::unhealthy)})}}};
  auto lb = make(c);
  counting_random r;
  const spread_t s = spread(*lb, r, 900);
  EXPECT_EQ(s.at(1), 200);
  EXPECT_EQ(s.at(2), 400);
  EXPECT_EQ(s.at(3) + s.at(4), 300);
  EXPECT_EQ(s.at(3), 150);  // rotation within the locality
}

// With one locality, locality weighting cannot change which hosts are picked (the balancer
// skips the locality schedule): the same picks as without it, for weighted and unweighted
// hosts, healthy and degraded, and seeded workers.
TEST(LoadBalancer, SingleLocalityPicksAsWithoutLocalityWeighting) {
  for (const lb_policy policy : {lb_policy::round_robin, lb_policy::least_request, lb_policy::random}) {
    for (const bool weighted : {false, true}) {
      cluster_config plain;
      plain.policy = policy;
      plain.priorities = {{{locality("r/z/s", 3,
                                     {h(1), h(2, host_health::healthy, weighted ? 3 : 1),
                                      h(3, host_health::degraded, weighted ? 2 : 1), h(4, host_health::unhealthy),
                                      h(5, host_health::healthy, weighted ? 2 : 1)})}},
                          {{locality("r/z/s", 1, {h(6, host_health::degraded, weighted ? 2 : 1), h(7, host_health::degraded)})}}};
      cluster_config by_locality = plain;
      by_locality.locality_weighted = true;
      auto a = make(plain, 2, nullptr, 7);
      auto b = make(by_locality, 2, nullptr, 7);
      counting_random ra, rb;
      for (int i = 0; i < 300; ++i) {
        const std::size_t worker = static_cast<std::size_t>(i % 2);
        ASSERT_EQ(a->pick(worker, ra)->address().port, b->pick(worker, rb)->address().port)
            << "policy " << static_cast<int>(policy) << " weighted " << weighted << " pick " << i;
      }
      const balancer_state sb = b->explain();
      ASSERT_EQ(sb.priorities.size(), 2u);
      ASSERT_EQ(sb.priorities[0].localities.size(), 1u);
      EXPECT_EQ(sb.priorities[0].localities[0].name, "r/z/s");
      EXPECT_EQ(sb.priorities[0].localities[0].weight, 3u);
    }
  }
}

// Scenario 4: round robin with weights [1, 2] is EDF: host1, host0, host1, host1, host0, host1.
TEST(LoadBalancer, Scenario4WeightedRoundRobin) {
  cluster_config c;
  c.priorities = {priority({h(1, host_health::healthy, 1), h(2, host_health::healthy, 2)})};
  auto lb = make(c);
  counting_random r;
  std::vector<std::uint16_t> order;
  for (int i = 0; i < 6; ++i) order.push_back(lb->pick(0, r)->address().port);
  EXPECT_EQ(order, (std::vector<std::uint16_t>{2, 1, 2, 2, 1, 2}));
}

TEST(LoadBalancer, EqualWeightsRotate) {
  cluster_config c;
  c.priorities = {priority({h(1), h(2), h(3)})};
  auto lb = make(c);
  counting_random r;
  std::vector<std::uint16_t> order;
  for (int i = 0; i < 7; ++i) order.push_back(lb->pick(0, r)->address().port);
  EXPECT_EQ(order, (std::vector<std::uint16_t>{1, 2, 3, 1, 2, 3, 1}));
}

TEST(LoadBalancer, SeededWorkersRotateFromDifferentStarts) {
  cluster_config c;
  std::vector<host_config> hosts;
  for (std::uint16_t i = 0; i < 1000; ++i) hosts.push_back(h(1000 + i));
  c.priorities = {priority(hosts)};
  auto lb = make(c, 2, nullptr, 42);
  counting_random r;
  const std::uint16_t w0 = lb->pick(0, r)->address().port;
  const std::uint16_t w1 = lb->pick(1, r)->address().port;
  EXPECT_NE(w0, w1);
  EXPECT_EQ(lb->pick(0, r)->address().port, w0 == 1999 ? 1000 : w0 + 1);  // still a rotation
  EXPECT_EQ(lb->pick(1, r)->address().port, w1 == 1999 ? 1000 : w1 + 1);
}

TEST(LoadBalancer, DegradedHostsTakeTheLoadHealthyHostsCannot) {
  cluster_config c;
  c.priorities = {priority({h(1), h(2, host_health::degraded), h(3, host_health::unhealthy), h(4, host_health::unhealthy)})};
  auto lb = make(c);
  const balancer_state s = lb->explain();
  EXPECT_EQ(s.priorities[0].healthy_load, 50u);
  EXPECT_EQ(s.priorities[0].degraded_load, 50u);
  EXPECT_FALSE(s.priorities[0].panic);
  counting_random r;
  EXPECT_EQ(spread(*lb, r, 100), (spread_t{{1, 50}, {2, 50}}));
}

TEST(LoadBalancer, ExcludedHostsArePickedOnlyInPanic) {
  cluster_config c;
  c.priorities = {priority({h(1), h(2, host_health::excluded)})};
  auto lb = make(c);
  counting_random r;
  EXPECT_EQ(spread(*lb, r, 10), (spread_t{{1, 10}}));
  EXPECT_EQ(lb->explain().priorities[0].health, 100u);  // 1 of 1 counted

  c.priorities = {priority({h(1, host_health::unhealthy), h(2, host_health::excluded)})};
  auto panic = make(c);
  counting_random r2;
  EXPECT_EQ(spread(*panic, r2, 10), (spread_t{{1, 5}, {2, 5}}));  // Envoy's panic uses hosts(), excluded included
}

TEST(LoadBalancer, ThreePrioritiesWithPanicInTheMiddle) {
  // Health 0, 28, 70 (NTA 98): loads 0 / 29 / 71; P1 is in panic and picks all 5 of its hosts.
  cluster_config c;
  c.priorities = {priority_of(100, 0, 4), priority_of(200, 1, 5), priority_of(300, 3, 6)};
  auto lb = make(c);
  EXPECT_EQ(healthy_loads(*lb), (std::vector<std::uint32_t>{0, 29, 71}));
  EXPECT_EQ(panics(*lb), (std::vector<bool>{true, true, false}));
  counting_random r;
  spread_t s = spread(*lb, r, 100);
  int p1 = 0, p2 = 0;
  for (auto [port, n] : s) (port < 300 ? p1 : p2) += n;
  EXPECT_EQ(p1, 29);
  EXPECT_EQ(p2, 71);
  EXPECT_EQ(s.count(204), 1u);  // an unhealthy P1 host, picked in panic
  EXPECT_EQ(s.count(305), 0u);  // P2 is not in panic: its unhealthy hosts are not picked
  EXPECT_EQ(lb->stats().lb_healthy_panic, 29u);
}

TEST(LoadBalancer, LeastRequestPowerOfTwoChoices) {
  cluster_config c;
  c.policy = lb_policy::least_request;
  c.priorities = {priority({h(1), h(2)})};
  auto lb = make(c);
  host* a = find(*lb, 1);
  host* b = find(*lb, 2);
  for (int i = 0; i < 5; ++i) a->connection_opened();
  // Each pick draws the priority, then two host indexes.
  {
    scripted_random r{0, 0, 1};
    EXPECT_EQ(lb->pick(0, r), b);
  }
  {
    scripted_random r{0, 1, 0};
    EXPECT_EQ(lb->pick(0, r), b);
  }
  {
    scripted_random r{0, 0, 0};  // both samples hit A: A it is
    EXPECT_EQ(lb->pick(0, r), a);
  }
  {
    // Ties keep the first sample.
    for (int i = 0; i < 5; ++i) b->connection_opened();
    scripted_random r{0, 1, 0};
    EXPECT_EQ(lb->pick(0, r), b);
    scripted_random r2{0, 0, 1};
    EXPECT_EQ(lb->pick(0, r2), a);
  }
  // choice_count 3 samples three times.
  c.choice_count = 3;
  auto three = make(c, 1, lb.get());
  scripted_random r{0, 0, 0, 1};
  b->connection_closed();
  EXPECT_EQ(three->pick(0, r), b);
  EXPECT_EQ(r.drawn(), 4u);
}

TEST(LoadBalancer, LeastRequestWeightedUsesWeightOverActivePlusOne) {
  // Weights 2 and 4, with 3 connections on the second: 2 / 1 and 4 / 4 -> EDF weights 2 and 1.
  cluster_config c;
  c.policy = lb_policy::least_request;
  c.priorities = {priority({h(1, host_health::healthy, 2), h(2, host_health::healthy, 4)})};
  auto first = make(c);
  for (int i = 0; i < 3; ++i) find(*first, 2)->connection_opened();
  auto lb = make(c, 1, first.get());  // built with the connection counts in place
  counting_random r;
  std::vector<std::uint16_t> order;
  for (int i = 0; i < 6; ++i) order.push_back(lb->pick(0, r)->address().port);
  EXPECT_EQ(order, (std::vector<std::uint16_t>{1, 2, 1, 1, 2, 1}));
  EXPECT_EQ(spread(*lb, r, 300), (spread_t{{1, 200}, {2, 100}}));

  // active_request_bias 0: plain weights 2 : 4.
  c.active_request_bias = 0;
  auto plain = make(c, 1, lb.get());
  EXPECT_EQ(spread(*plain, r, 300), (spread_t{{1, 100}, {2, 200}}));

  // The weight is re-read each time a host is re-added: weights 1 and 2 at build, then 3
  // connections open on host 2 (2 / 4 = 0.5) and host 1 takes two picks in three.
  cluster_config d;
  d.policy = lb_policy::least_request;
  d.priorities = {priority({h(1, host_health::healthy, 1), h(2, host_health::healthy, 2)})};
  auto dynamic = make(d);
  for (int i = 0; i < 3; ++i) find(*dynamic, 2)->connection_opened();
  order.clear();
  for (int i = 0; i < 9; ++i) order.push_back(dynamic->pick(0, r)->address().port);
  EXPECT_EQ(order, (std::vector<std::uint16_t>{2, 1, 1, 2, 1, 1, 2, 1, 1}));
}

TEST(LoadBalancer, RandomPolicyIndexesWithThePriorityDraw) {
  cluster_config c;
  c.policy = lb_policy::random;
  c.priorities = {priority({h(1), h(2), h(3)})};
  auto lb = make(c);
  scripted_random r{0, 1, 5, 7};
  std::vector<std::uint16_t> order;
  for (int i = 0; i < 4; ++i) order.push_back(lb->pick(0, r)->address().port);
  EXPECT_EQ(order, (std::vector<std::uint16_t>{1, 2, 3, 2}));
  EXPECT_EQ(r.drawn(), 4u);  // one draw per pick
}

TEST(LoadBalancer, RetryAvoidsThePreviousHost) {
  for (lb_policy policy : {lb_policy::round_robin, lb_policy::least_request, lb_policy::random}) {
    cluster_config c;
    c.policy = policy;
    c.priorities = {priority({h(1), h(2)})};
    auto lb = make(c);
    fast_random r(7);
    for (int i = 0; i < 100; ++i) {
      host* first = lb->pick(0, r);
      host* second = lb->pick(0, r, first);
      ASSERT_NE(second, nullptr);
      EXPECT_NE(second, first);
    }
  }
  // Nothing else to try: the same host.
  cluster_config single;
  single.priorities = {priority({h(1)})};
  auto one = make(single);
  host* only = one->pick(0);
  EXPECT_EQ(one->pick(0, only), only);

  // P0's only host failed; P1 has load 0 but a healthy host: the retry goes there.
  cluster_config two;
  two.priorities = {priority({h(1)}), priority({h(2)})};
  auto lb = make(two);
  host* p0 = find(*lb, 1);
  EXPECT_EQ(lb->pick(0, p0), find(*lb, 2));
  // Always the same answer when the first choices all hit the avoided host.
  scripted_random zeros{0};
  EXPECT_EQ(lb->pick(0, zeros, p0), find(*lb, 2));
}

TEST(LoadBalancer, RetriesAvoidEveryHostAlreadyTried) {
  // Priority 0 has two hosts with all the load, priority 1 one host with none. A connection that
  // failed on both priority 0 hosts goes to priority 1 on its third attempt, rather than back to
  // a host it already found refusing (the race before outlier detection ejects them).
  for (lb_policy policy : {lb_policy::round_robin, lb_policy::least_request, lb_policy::random}) {
    cluster_config c;
    c.policy = policy;
    c.priorities = {priority({h(1), h(2)}), priority({h(3)})};
    auto lb = make(c);
    fast_random r(11);
    const host* tried[] = {find(*lb, 1), find(*lb, 2)};
    for (int i = 0; i < 50; ++i) EXPECT_EQ(lb->pick(0, r, std::span<const host* const>(tried)), find(*lb, 3));
    // Everything tried: a retry on a tried host beats no retry.
    const host* all[] = {find(*lb, 1), find(*lb, 2), find(*lb, 3)};
    for (int i = 0; i < 50; ++i) EXPECT_NE(lb->pick(0, r, std::span<const host* const>(all)), nullptr);
  }
}

TEST(LoadBalancer, NoHosts) {
  auto empty = make(cluster_config{});
  EXPECT_EQ(empty->pick(0), nullptr);
  EXPECT_EQ(empty->pick(0, static_cast<const host*>(nullptr)), nullptr);
  EXPECT_TRUE(empty->explain().priorities.empty());

  cluster_config c;
  c.priorities = {priority({})};
  auto hollow = make(c);
  EXPECT_EQ(hollow->pick(0), nullptr);
  EXPECT_EQ(hollow->stats().membership_total, 0u);

  // Panic disabled and nothing healthy: no host, rather than an unhealthy one.
  c.healthy_panic_threshold = 0;
  c.priorities = {priority_of(1, 0, 3)};
  auto none = make(c);
  EXPECT_EQ(none->pick(0), nullptr);
  EXPECT_EQ(none->pick(0, find(*none, 1)), nullptr);
}

TEST(LoadBalancer, EjectedHostsCountAsUnhealthy) {
  cluster_config c = with_outlier({});
  c.priorities = {priority_of(100, 4, 4), priority_of(200, 4, 4)};
  auto lb = make(c);
  EXPECT_EQ(healthy_loads(*lb), (std::vector<std::uint32_t>{100, 0}));
  const std::uint64_t generation = lb->explain().view_generation;
  eject(*lb, *find(*lb, 100), t0);
  eject(*lb, *find(*lb, 101), t0);
  EXPECT_GT(lb->explain().view_generation, generation);
  EXPECT_EQ(healthy_loads(*lb), (std::vector<std::uint32_t>{70, 30}));
  counting_random r;
  const spread_t s = spread(*lb, r, 100);
  EXPECT_EQ(s, (spread_t{{102, 35}, {103, 35}, {200, 8}, {201, 8}, {202, 7}, {203, 7}}));
  EXPECT_EQ(lb->stats().membership_healthy, 6u);
}

TEST(LoadBalancer, AllHostsEjected) {
  cluster_config c = with_outlier({});
  c.priorities = {priority({h(1), h(2)})};
  auto lb = make(c);
  eject(*lb, *find(*lb, 1), t0);
  eject(*lb, *find(*lb, 2), t0);
  EXPECT_EQ(lb->stats().ejections_active, 2u);
  // Panic threshold 50: total panic, and Envoy's panic picks from every host, ejected or not.
  EXPECT_TRUE(lb->explain().total_panic);
  counting_random r;
  EXPECT_EQ(spread(*lb, r, 10), (spread_t{{1, 5}, {2, 5}}));
  EXPECT_EQ(lb->stats().lb_healthy_panic, 10u);

  // Panic disabled: nothing to give.
  c.healthy_panic_threshold = 0;
  auto strict = make(c, 1, lb.get());
  EXPECT_EQ(strict->pick(0), nullptr);
}

TEST(LoadBalancer, HostStateSurvivesRebuild) {
  cluster_config c = with_outlier({});
  c.priorities = {priority({h(1), h(2)})};
  auto first = make(c);
  host* one = find(*first, 1);
  host* two = find(*first, 2);
  one->connection_opened();
  eject(*first, *two, t0);
  ASSERT_TRUE(two->ejected());

  // EDS update: host 3 joins, hosts move to another locality and change weight.
  c.priorities = {{{locality("z", 1, {h(1, host_health::healthy, 3), h(2), h(3)})}}};
  auto second = make(c, 1, first.get());
  EXPECT_EQ(find(*second, 1), one);
  EXPECT_EQ(find(*second, 2), two);
  EXPECT_EQ(one->active_connections(), 1u);
  EXPECT_TRUE(two->ejected());
  EXPECT_EQ(second->explain().hosts[1].num_ejections, 1u);
  EXPECT_EQ(second->stats().ejections_enforced_total, 1u);  // statistics carry over too
  EXPECT_EQ(second->stats().ejections_active, 1u);
  EXPECT_EQ(second->stats().membership_total, 3u);
  counting_random r;
  EXPECT_EQ(spread(*second, r, 8), (spread_t{{1, 6}, {3, 2}}));  // weights 3 : 1, host 2 still out

  // The ejection runs its course on the new generation.
  EXPECT_TRUE(second->tick(t0 + 30s));
  EXPECT_FALSE(two->ejected());

  // A host that leaves and comes back later is a new host.
  c.priorities = {priority({h(1)})};
  auto third = make(c, 1, second.get());
  EXPECT_EQ(third->stats().membership_total, 1u);
  c.priorities = {priority({h(1), h(2)})};
  auto fourth = make(c, 1, third.get());
  EXPECT_NE(find(*fourth, 2), two);

  // A rebuild without outlier detection returns ejected hosts.
  eject(*fourth, *find(*fourth, 2), t0 + 40s);
  ASSERT_TRUE(find(*fourth, 2)->ejected());
  c.outlier_detection.enabled = false;
  auto fifth = make(c, 1, fourth.get());
  EXPECT_FALSE(find(*fifth, 2)->ejected());
  EXPECT_EQ(fifth->stats().ejections_active, 0u);
}

TEST(LoadBalancer, HostListedTwiceIsOneHost) {
  cluster_config c;
  c.priorities = {priority({h(1), h(2)}), priority({h(1)})};
  auto lb = make(c);
  EXPECT_EQ(lb->hosts().size(), 2u);
  EXPECT_EQ(lb->stats().membership_total, 3u);  // membership counts listings, per priority
}

// Clusters above a few hosts find duplicates and previous hosts through hash maps, small ones
// by a linear search: both keep one host per address and take hosts over by address.
TEST(LoadBalancer, HostsAreTakenOverByAddressInLargeAndSmallClusters) {
  for (std::uint16_t n : {3, 40}) {
    cluster_config c;
    c.priorities = {priority_of(1, n, n), priority({h(1), h(2)})};  // 1 and 2 listed twice
    auto first = make(c);
    EXPECT_EQ(first->hosts().size(), n);
    EXPECT_EQ(first->stats().membership_total, n + 2u);
    host* one = find(*first, 1);
    c.priorities = {priority_of(2, n, n), priority({h(1)})};  // 1 moves, n + 1 joins
    auto second = make(c, 1, first.get());
    EXPECT_EQ(second->hosts().size(), n + 1u);
    EXPECT_EQ(find(*second, 1), one);
    EXPECT_EQ(find(*second, 2), find(*first, 2));
    EXPECT_NE(find(*second, static_cast<std::uint16_t>(n + 1)), nullptr);
  }
}

TEST(LoadBalancer, MembershipStats) {
  cluster_config c;
  c.priorities = {priority({h(1), h(2, host_health::degraded), h(3, host_health::unhealthy)}),
                  priority({h(4, host_health::excluded), h(5)})};
  auto lb = make(c);
  const lb_stats s = lb->stats();
  EXPECT_EQ(s.membership_healthy, 2u);
  EXPECT_EQ(s.membership_degraded, 1u);
  EXPECT_EQ(s.membership_excluded, 1u);
  EXPECT_EQ(s.membership_total, 5u);
  std::set<std::string> names;
  s.visit([&names](std::string_view name, stat_kind, std::uint64_t) { names.emplace(name); });
  EXPECT_EQ(names.size(), 22u);
  EXPECT_EQ(names.count("outlier_detection.ejections_enforced_consecutive_local_origin_failure"), 1u);
}

// The data path allocates nothing once a worker has picked from a view, whatever the policy and
// path (rotation, EDF, P2C, random, localities, panic, degraded, retry).
TEST(LoadBalancer, PickDoesNotAllocate) {
  std::vector<cluster_config> configs;
  for (lb_policy policy : {lb_policy::round_robin, lb_policy::least_request, lb_policy::random}) {
    for (bool weighted : {false, true}) {
      for (bool localities : {false, true}) {
        cluster_config c;
        c.policy = policy;
        c.locality_weighted = localities;
        for (std::uint16_t p = 0; p < 3; ++p) {
          priority_config pc;
          for (std::uint16_t l = 0; l < 4; ++l) {
            locality_config lc = locality("l", l + 1, {});
            for (std::uint16_t i = 0; i < 10; ++i) {
              const std::uint16_t port = static_cast<std::uint16_t>(1000 * (p + 1) + 10 * l + i);
              const host_health health = i < 4 ? host_health::healthy : i < 6 ? host_health::degraded : host_health::unhealthy;
              lc.hosts.push_back(h(port, health, weighted ? 1 + i % 3 : 1));
            }
            pc.localities.push_back(std::move(lc));
          }
          c.priorities.push_back(std::move(pc));
        }
        configs.push_back(c);
      }
    }
    // And a cluster in panic (1 healthy host of 10 per priority).
    cluster_config panic;
    panic.policy = policy;
    panic.priorities = {priority_of(100, 1, 10), priority_of(200, 1, 10)};
    configs.push_back(panic);
  }
  for (const cluster_config& c : configs) {
    auto lb = make(c, 2);
    fast_random r(1);
    host* previous = nullptr;
    // A worker's picking state (rotations, EDF schedules) is made on its first pick of a view;
    // every later pick must not allocate.
    ASSERT_NE(lb->pick(0, r), nullptr);
    ASSERT_NE(lb->pick(1, r), nullptr);
    const std::uint64_t before = testing::allocations_on_this_thread();
    for (int i = 0; i < 5000; ++i) {
      host* x = lb->pick(i % 2, r);
      ASSERT_NE(x, nullptr);
      previous = lb->pick(i % 2, r, x);
      previous = lb->pick(i % 2, previous);
    }
    EXPECT_EQ(testing::allocations_on_this_thread() - before, 0u)
        << "policy " << static_cast<int>(c.policy) << ", locality weighted " << c.locality_weighted;
    // A rebuild (an EDS update) prepares the state of the workers that picked before, so their
    // picks from the new version do not allocate either.
    auto rebuilt = make(c, 2, lb.get());
    const std::uint64_t before_rebuilt = testing::allocations_on_this_thread();
    for (int i = 0; i < 100; ++i) ASSERT_NE(rebuilt->pick(i % 2, r), nullptr);
    EXPECT_EQ(testing::allocations_on_this_thread() - before_rebuilt, 0u) << "after a rebuild";
  }
}

// A new health view (an ejection) is published with the picking state of every worker that has
// picked already: no pick allocates after the worker's first.
TEST(LoadBalancer, PickDoesNotAllocateAfterAnEjection) {
  cluster_config c = with_outlier({});
  c.priorities = {priority({h(1), h(2), h(3)})};
  auto lb = make(c, 2);
  fast_random r(3);
  ASSERT_NE(lb->pick(0, r), nullptr);
  ASSERT_NE(lb->pick(1, r), nullptr);
  host* failing = find(*lb, 1);
  eject(*lb, *failing, t0);
  ASSERT_TRUE(failing->ejected());
  const std::uint64_t before = testing::allocations_on_this_thread();
  for (int i = 0; i < 100; ++i) EXPECT_NE(lb->pick(i % 2, r), failing);
  EXPECT_EQ(testing::allocations_on_this_thread() - before, 0u);
}

// A cluster as istiod sends most of them (3 endpoints, one locality, LEAST_REQUEST, no outlier
// detection) is two heap blocks: the balancer with its arrays and its view, and its hosts with
// the cluster's shared state. A gateway holds 10,000 of these, and each block costs a malloc
// header on top of its bytes. Picking adds the array of worker slots (on the first pick of any
// worker) and one slot (and one picking state) per worker that picks, and only then.
TEST(LoadBalancer, CommonClusterIsTwoBlocksUntilAWorkerPicks) {
  cluster_config c;
  c.policy = lb_policy::least_request;
  c.priorities = {{{locality("region/zone/sub_zone", 0, {h(1), h(2), h(3)})}}};
  // Clusters of the same shape (other hosts) already exist, as at any gateway with more than a
  // few clusters: their shared layout and views are not this cluster's cost.
  cluster_config twin = c;
  twin.priorities = {{{locality("region/zone/sub_zone", 0, {h(11), h(12), h(13)})}}};
  auto healthy_twin = make(twin, 2);
  twin.priorities[0].localities[0].hosts[2].health = host_health::degraded;
  auto degraded_twin = make(twin, 2);
  const std::int64_t before = testing::live_allocations();
  const std::int64_t bytes_before = testing::live_bytes();
  auto lb = make(c, 2);
  ASSERT_EQ(testing::live_allocations() - before, 2);
  // The balancer block and the host block: 752 bytes requested before layouts and view bodies
  // were shared by clusters of one shape and the first view's worker states moved to the slots;
  // 360 before the balancer's arrays were found from its address, the slot array made on the
  // first pick, the membership counts read from the view and the view pointer kept only with
  // outlier detection; 256 now (live_bytes() counts usable sizes: the same with glibc here).
  EXPECT_LE(testing::live_bytes() - bytes_before, 256);
  fast_random r(1);
  ASSERT_NE(lb->pick(1, r), nullptr);
  // The slot array, worker 1's slot and its picking state (a rotation index per host list).
  ASSERT_EQ(testing::live_allocations() - before, 6);
  // An EDS update with the same hosts: one more balancer block, sharing the hosts' block; the
  // worker that picked gets its slot and state up front (its picks never allocate).
  c.priorities[0].localities[0].hosts[2].health = host_health::degraded;
  auto next = make(c, 2, lb.get());
  ASSERT_EQ(testing::live_allocations() - before, 11);
  lb.reset();
  ASSERT_EQ(testing::live_allocations() - before, 6);
  next.reset();
  EXPECT_EQ(testing::live_allocations() - before, 0);
}

// A cluster no worker picks from costs the same whatever the number of workers: the per-worker
// slots (a pointer each) are made on the first pick.
TEST(LoadBalancer, UnpickedClusterCostsTheSameForAnyNumberOfWorkers) {
  cluster_config c;
  c.policy = lb_policy::least_request;
  c.priorities = {{{locality("region/zone/sub_zone", 0, {h(1), h(2), h(3)})}}};
  auto twin = make(c, 1);  // the shared layout and view body exist already
  std::int64_t bytes[2] = {};
  const std::size_t workers[2] = {1, 64};
  for (int i = 0; i < 2; ++i) {
    const std::int64_t bytes_before = testing::live_bytes();
    auto lb = make(c, workers[i]);
    bytes[i] = testing::live_bytes() - bytes_before;
    fast_random r(1);
    ASSERT_NE(lb->pick(workers[i] - 1, r), nullptr);  // and the last worker can pick
  }
  EXPECT_EQ(bytes[0], bytes[1]);
}

// What clusters of one shape have in common (layout, settings, locality names, the health
// view's loads and sources) is one shared copy, released with the last balancer using it.
TEST(LoadBalancer, ClustersOfOneShapeShareTheirLayoutAndView) {
  cluster_config c;
  c.policy = lb_policy::least_request;
  c.priorities = {{{locality("region/zone/sub_zone", 0, {h(1), h(2), h(3)})}}};
  const std::size_t before = load_balancer::shared_structure_count();
  auto first = make(c, 2);
  ASSERT_EQ(load_balancer::shared_structure_count(), before + 2);  // layout, view body
  // Same shape, other hosts: nothing new is shared, and the cluster costs its two own blocks.
  cluster_config same = c;
  same.priorities = {{{locality("region/zone/sub_zone", 0, {h(4), h(5), h(6)})}}};
  const std::int64_t allocations = testing::live_allocations();
  auto second = make(same, 2);
  EXPECT_EQ(testing::live_allocations() - allocations, 2);
  EXPECT_EQ(load_balancer::shared_structure_count(), before + 2);
  // Another locality name: its own layout, the same view body.
  cluster_config elsewhere = c;
  elsewhere.priorities = {{{locality("region/zone/other", 0, {h(7), h(8), h(9)})}}};
  auto third = make(elsewhere, 2);
  EXPECT_EQ(load_balancer::shared_structure_count(), before + 3);
  // Each still explains and picks as its own cluster.
  const balancer_state s = third->explain();
  ASSERT_EQ(s.priorities.size(), 1u);
  ASSERT_EQ(s.priorities[0].localities.size(), 1u);
  EXPECT_EQ(s.priorities[0].localities[0].name, "region/zone/other");
  EXPECT_EQ(second->explain().priorities[0].localities[0].name, "region/zone/sub_zone");
  fast_random r(1);
  for (int i = 0; i < 10; ++i) {
    const std::uint16_t port = second->pick(1, r)->address().port;
    EXPECT_TRUE(port >= 4 && port <= 6) << port;
    const std::uint16_t other = third->pick(0, r)->address().port;
    EXPECT_TRUE(other >= 7 && other <= 9) << other;
  }
  first.reset();
  EXPECT_EQ(load_balancer::shared_structure_count(), before + 3);
  second.reset();  // the first layout goes; the view body is third's too
  EXPECT_EQ(load_balancer::shared_structure_count(), before + 2);
  third.reset();
  EXPECT_EQ(load_balancer::shared_structure_count(), before);
}

// Two clusters of one shape share a view body; an ejection in one builds that cluster a new
// view and must leave the other picking over all its hosts, with the shared body intact.
TEST(LoadBalancer, AnEjectionInOneClusterLeavesAnotherOfTheSameShapeAlone) {
  cluster_config c = with_outlier({});
  c.policy = lb_policy::round_robin;
  c.priorities = {priority({h(1), h(2), h(3)})};
  cluster_config same = c;
  same.priorities = {priority({h(4), h(5), h(6)})};
  auto first = make(c, 2);
  const std::size_t shared = load_balancer::shared_structure_count();
  auto second = make(same, 2);
  ASSERT_EQ(load_balancer::shared_structure_count(), shared);  // one layout and body for both
  fast_random r(7);
  for (int i = 0; i < 6; ++i) second->pick(1, r);  // worker 1 has state in second's first view
  for (int i = 0; i < 6; ++i) first->pick(1, r);   // and in first's, which the ejection retires
  eject(*first, *find(*first, 2), t0);
  ASSERT_TRUE(find(*first, 2)->ejected());
  EXPECT_EQ(first->stats().ejections_active, 1u);
  EXPECT_EQ(second->stats().ejections_active, 0u);
  counting_random r1;
  EXPECT_EQ(spread(*first, r1, 10), (spread_t{{1, 5}, {3, 5}}));
  counting_random r2;
  const spread_t others = spread(*second, r2, 30);
  EXPECT_EQ(others, (spread_t{{4, 10}, {5, 10}, {6, 10}}));
  EXPECT_FALSE(second->explain().total_panic);
}

// Hosts live in the block of the generation that added them; later generations hold that block.
// A host must outlive every generation but the last one listing it, its counters and outlier
// state intact (run under ASan: a block freed early is a use after free).
TEST(LoadBalancer, HostsOutliveTheGenerationThatAddedThem) {
  cluster_config c = with_outlier({});
  c.priorities = {priority({h(1), h(2), h(3)})};
  auto first = make(c, 2);
  host* one = find(*first, 1);
  one->connection_opened();
  eject(*first, *find(*first, 2), t0);
  c.priorities = {priority({h(1), h(2), h(4)})};  // 3 leaves, 4 joins: a second host block
  auto second = make(c, 2, first.get());
  first.reset();
  c.priorities = {priority({h(1), h(4), h(5)})};
  auto third = make(c, 2, second.get());
  second.reset();
  ASSERT_EQ(find(*third, 1), one);
  EXPECT_EQ(one->active_connections(), 1u);
  one->connection_closed();
  EXPECT_EQ(third->stats().ejections_enforced_total, 1u);  // the shared state came along
  EXPECT_EQ(third->stats().membership_total, 3u);
  fast_random r(7);
  std::set<std::uint16_t> picked;
  for (int i = 0; i < 200; ++i) picked.insert(third->pick(static_cast<std::size_t>(i % 2), r)->address().port);
  EXPECT_EQ(picked, (std::set<std::uint16_t>{1, 4, 5}));
  eject(*third, *find(*third, 4), t0 + 1s);
  EXPECT_TRUE(find(*third, 4)->ejected());
  const balancer_state st = third->explain();
  ASSERT_EQ(st.hosts.size(), 3u);
  EXPECT_TRUE(st.hosts[1].ejected);
  EXPECT_EQ(st.hosts[1].num_ejections, 1u);
  for (int i = 0; i < 100; ++i) EXPECT_NE(third->pick(0, r)->address().port, 4);
}

// The array of worker slots is made by whichever worker picks first; workers that pick a new
// cluster at the same moment race to make it, and one array wins (the others are freed: run
// under ASan). Every worker then has its own slot and gets a host.
TEST(LoadBalancer, WorkersPickingANewClusterAtOnceShareOneSlotArray) {
  cluster_config c;
  c.policy = lb_policy::least_request;
  c.priorities = {priority({h(1), h(2), h(3)})};
  constexpr std::size_t workers = 4;
  for (int round = 0; round < 200; ++round) {
    auto lb = make(c, workers);
    std::atomic<std::size_t> ready{0};
    std::atomic<std::uint64_t> misses{0};
    std::vector<std::thread> threads;
    for (std::size_t w = 0; w < workers; ++w) {
      threads.emplace_back([&, w] {
        fast_random r(w + 1);
        ready.fetch_add(1);
        while (ready.load() < workers) {
        }
        for (int i = 0; i < 20; ++i) {
          if (lb->pick(w, r) == nullptr) misses.fetch_add(1);
        }
      });
    }
    for (auto& t : threads) t.join();
    ASSERT_EQ(misses.load(), 0u);
  }
}

// Workers pick while the cold half ejects and returns hosts and publishes new views: no pick
// may see a freed view (run under ASan) and every pick finds a host.
TEST(LoadBalancer, ConcurrentPicksWhileViewsChange) {
  cluster_config c = with_outlier({}, 50);
  c.outlier_detection.base_ejection_time = 1s;
  std::vector<host_config> hosts;
  for (std::uint16_t i = 0; i < 10; ++i) hosts.push_back(h(i + 1));
  c.priorities = {priority(hosts)};
  auto lb = make(c, 2);
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> misses{0};
  std::vector<std::thread> workers;
  for (std::size_t w = 0; w < 2; ++w) {
    workers.emplace_back([&, w] {
      fast_random r(w + 1);
      std::uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed) || n < 10000) {
        host* x = lb->pick(w, r);
        if (x == nullptr) misses.fetch_add(1);
        ++n;
      }
    });
  }
  time_point now = t0;
  std::uint64_t changes = 0;
  for (int round = 0; round < 2000; ++round) {
    host& x = *lb->hosts()[static_cast<std::size_t>(round) % lb->hosts().size()];
    for (int i = 0; i < 5; ++i) x.report(outcome::connect_failed);
    changes += lb->process_detections(now) ? 1 : 0;
    now += 500ms;
    changes += lb->tick(now) ? 1 : 0;
  }
  stop = true;
  for (auto& t : workers) t.join();
  EXPECT_EQ(misses.load(), 0u);
  EXPECT_GT(changes, 100u);
}

}  // namespace
}  // namespace ewgw::lb
