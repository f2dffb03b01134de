// Builders and fakes shared by the lb tests.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <initializer_list>
#include <map>
#include <string>
#include <vector>

#include "lb/config.h"
#include "lb/load_balancer.h"
#include "lb/random.h"

namespace ewgw::lb::testing {

// 10.0.0.1:<port>: tests name hosts by port.
inline endpoint_address address(std::uint16_t port) {
  endpoint_address a;
  EXPECT_TRUE(endpoint_address::parse("10.0.0.1", port, a));
  return a;
}

inline host_config h(std::uint16_t port, host_health health = host_health::healthy, std::uint32_t weight = 1) {
  return {address(port), weight, health};
}

inline locality_config locality(std::string name, std::uint32_t weight, std::vector<host_config> hosts) {
  return {std::move(name), weight, std::move(hosts)};
}

// One priority with one unnamed locality holding `hosts`.
inline priority_config priority(std::vector<host_config> hosts) { return {{locality("", 0, std::move(hosts))}}; }

// A priority of `total` hosts with the first `healthy` healthy and the rest unhealthy; ports
// start at `first_port`.
inline priority_config priority_of(std::uint16_t first_port, std::uint32_t healthy, std::uint32_t total) {
  std::vector<host_config> hosts;
  for (std::uint32_t i = 0; i < total; ++i) {
    hosts.push_back(h(static_cast<std::uint16_t>(first_port + i), i < healthy ? host_health::healthy : host_health::unhealthy));
  }
  return priority(std::move(hosts));
}

inline std::shared_ptr<load_balancer> make(const cluster_config& config, std::size_t workers = 1,
                                           const load_balancer* previous = nullptr, std::uint64_t seed = 0) {
  load_balancer::build_options options;
  options.workers = workers;
  options.seed = seed;
  return load_balancer::build(config, options, previous);
}

// Returns the given values in order, then repeats them.
class scripted_random final : public random_source {
 public:
  scripted_random(std::initializer_list<std::uint64_t> values) : values_(values) {}
  explicit scripted_random(std::vector<std::uint64_t> values) : values_(std::move(values)) {}
  std::uint64_t next() override { return values_[i_++ % values_.size()]; }
  std::size_t drawn() const { return i_; }

 private:
  std::vector<std::uint64_t> values_;
  std::size_t i_ = 0;
};

// Counts between 0 and 99 in order: one full pass of Envoy's priority draw (h = r % 100 + 1).
class counting_random final : public random_source {
 public:
  std::uint64_t next() override { return n_++; }

 private:
  std::uint64_t n_ = 0;
};

inline host* find(load_balancer& lb, std::uint16_t port) {
  for (host* x : lb.hosts()) {
    if (x->address().port == port) return x;
  }
  return nullptr;
}

// Picks `n` times and counts picks per port (0 for "no host").
inline std::map<std::uint16_t, int> spread(load_balancer& lb, random_source& random, int n, std::size_t worker = 0) {
  std::map<std::uint16_t, int> out;
  for (int i = 0; i < n; ++i) {
    host* x = lb.pick(worker, random);
    out[x == nullptr ? 0 : x->address().port]++;
  }
  return out;
}

}  // namespace ewgw::lb::testing
