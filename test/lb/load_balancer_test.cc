// The interim balancer: round robin over the healthy hosts of the best priority, with the
// documented fallbacks. The Envoy-faithful balancer replaces it and these cases.
#include "lb/load_balancer.h"

#include <gtest/gtest.h>

#include <map>

namespace ewgw::lb {
namespace {

host_entry make(std::uint16_t port, host_health health, std::uint32_t priority = 0) {
  endpoint_address a;
  EXPECT_TRUE(endpoint_address::parse("127.0.0.1", port, a));
  return {std::make_shared<host>(a, 1, health), priority};
}

std::map<std::uint16_t, int> spread(load_balancer& lb, int picks, std::size_t worker = 0) {
  std::map<std::uint16_t, int> m;
  for (int i = 0; i < picks; ++i) m[lb.pick(worker)->address().port]++;
  return m;
}

TEST(LoadBalancer, RoundRobinOverHealthyHostsOfTheBestPriority) {
  load_balancer lb({make(1, host_health::healthy), make(2, host_health::unhealthy), make(3, host_health::healthy),
                    make(4, host_health::healthy, 1)},
                   2);
  EXPECT_EQ(spread(lb, 100), (std::map<std::uint16_t, int>{{1, 50}, {3, 50}}));
}

TEST(LoadBalancer, FailsOverToTheNextPriorityThenDegradedThenPanic) {
  load_balancer p1({make(1, host_health::unhealthy), make(2, host_health::healthy, 1)}, 1);
  EXPECT_EQ(spread(p1, 10), (std::map<std::uint16_t, int>{{2, 10}}));
  load_balancer degraded({make(1, host_health::unhealthy), make(2, host_health::degraded, 1)}, 1);
  EXPECT_EQ(spread(degraded, 10), (std::map<std::uint16_t, int>{{2, 10}}));
  load_balancer panic({make(1, host_health::unhealthy), make(2, host_health::unhealthy, 1)}, 1);
  EXPECT_EQ(spread(panic, 10), (std::map<std::uint16_t, int>{{1, 5}, {2, 5}}));
  load_balancer empty({}, 1);
  EXPECT_EQ(empty.pick(0), nullptr);
}

TEST(LoadBalancer, RetryAvoidsThePreviousHost) {
  load_balancer lb({make(1, host_health::healthy), make(2, host_health::healthy)}, 1);
  for (int i = 0; i < 10; ++i) {
    host* first = lb.pick(0);
    EXPECT_NE(lb.pick(0, first), first);
  }
  load_balancer single({make(1, host_health::healthy)}, 1);
  host* only = single.pick(0);
  EXPECT_EQ(single.pick(0, only), only);  // nothing else to try
}

TEST(LoadBalancer, EndpointAddressParsing) {
  endpoint_address a;
  EXPECT_TRUE(endpoint_address::parse("::1", 80, a));
  EXPECT_TRUE(a.ipv6);
  EXPECT_EQ(a.to_string(), "[::1]:80");
  EXPECT_TRUE(endpoint_address::parse("10.1.2.3", 15443, a));
  EXPECT_EQ(a.to_string(), "10.1.2.3:15443");
  EXPECT_FALSE(endpoint_address::parse("backend.local", 80, a));
}

}  // namespace
}  // namespace ewgw::lb
