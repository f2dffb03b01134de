// Host selection cost per connection (ns per pick, allocations per pick) for each policy with 1,
// 100 and 10,000 hosts spread over 3 priorities and 10 localities per priority, and the cost of
// the cold-half rebuilds: a new balancer on an EDS update, and a new health view when an
// outlier ejection changes the healthy set.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "lb/load_balancer.h"
#include "test/lb/allocation_counter.h"

namespace {

using namespace ewgw::lb;
using ewgw::lb::testing::allocations_on_this_thread;

enum mode : int {
  plain = 0,     // equal host weights, no locality weighting: rotation / P2C / random
  weighted = 1,  // host weights 1..4 (EDF per host source) and locality weighting (EDF per priority)
};

// Host i goes to priority i % 3 and to locality (i / 3) % 10 of it. 95% healthy, 3% degraded,
// 2% unhealthy: P0 carries all the load, as in a healthy mesh; every source has several hosts.
cluster_config make_config(int hosts, lb_policy policy, int m) {
  cluster_config c;
  c.policy = policy;
  c.locality_weighted = m == weighted;
  c.priorities.resize(3);
  for (auto& p : c.priorities) {
    p.localities.resize(10);
    for (std::uint32_t l = 0; l < 10; ++l) {
      p.localities[l].name = "region/zone-" + std::to_string(l) + "/";
      p.localities[l].weight = m == weighted ? 1 + l : 1;
    }
  }
  for (int i = 0; i < hosts; ++i) {
    host_config h;
    h.address.ip = {10, static_cast<std::uint8_t>(i >> 16), static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)};
    h.address.port = 15443;
    h.weight = m == weighted ? 1 + static_cast<std::uint32_t>(i % 4) : 1;
    const int bucket = i % 100;
    h.health = bucket < 95 ? host_health::healthy : bucket < 98 ? host_health::degraded : host_health::unhealthy;
    c.priorities[static_cast<std::size_t>(i % 3)].localities[static_cast<std::size_t>((i / 3) % 10)].hosts.push_back(h);
  }
  return c;
}

std::shared_ptr<load_balancer> build(const cluster_config& c, const load_balancer* previous = nullptr) {
  load_balancer::build_options options;
  options.workers = 8;
  options.seed = 1;
  return load_balancer::build(c, options, previous);
}

const char* policy_name(lb_policy p) {
  switch (p) {
    case lb_policy::round_robin: return "round_robin";
    case lb_policy::least_request: return "least_request";
    case lb_policy::random: return "random";
  }
  return "?";
}

// One worker picking: the data-path cost of a new connection's host selection.
void BM_pick(benchmark::State& state, lb_policy policy) {
  const int hosts = static_cast<int>(state.range(0));
  const int m = static_cast<int>(state.range(1));
  auto lb = build(make_config(hosts, policy, m));
  fast_random random(42);
  for (int i = 0; i < 1000; ++i) benchmark::DoNotOptimize(lb->pick(0, random));  // warm caches
  const std::uint64_t before = allocations_on_this_thread();
  for (auto _ : state) benchmark::DoNotOptimize(lb->pick(0, random));
  const std::uint64_t allocations = allocations_on_this_thread() - before;
  state.counters["allocs_per_pick"] =
      benchmark::Counter(static_cast<double>(allocations), benchmark::Counter::kAvgIterations);
  state.SetLabel(std::string(policy_name(policy)) + (m == weighted ? " weighted+localities" : " plain"));
}
BENCHMARK_CAPTURE(BM_pick, round_robin, lb_policy::round_robin)->ArgsProduct({{1, 100, 10000}, {plain, weighted}});
BENCHMARK_CAPTURE(BM_pick, least_request, lb_policy::least_request)->ArgsProduct({{1, 100, 10000}, {plain, weighted}});
BENCHMARK_CAPTURE(BM_pick, random, lb_policy::random)->ArgsProduct({{1, 100, 10000}, {plain, weighted}});

// A cluster with outlier detection (its view can change, so a pick announces the view it reads
// with a hazard pointer): least request over equal hosts.
void BM_pick_with_outlier_detection(benchmark::State& state) {
  cluster_config c = make_config(static_cast<int>(state.range(0)), lb_policy::least_request, plain);
  c.outlier_detection.enabled = true;
  auto lb = build(c);
  fast_random random(42);
  for (int i = 0; i < 1000; ++i) benchmark::DoNotOptimize(lb->pick(0, random));  // warm caches
  const std::uint64_t before = allocations_on_this_thread();
  for (auto _ : state) benchmark::DoNotOptimize(lb->pick(0, random));
  state.counters["allocs_per_pick"] = benchmark::Counter(
      static_cast<double>(allocations_on_this_thread() - before), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_pick_with_outlier_detection)->Arg(1)->Arg(100)->Arg(10000);

// A connect retry: the pick must avoid the host that just failed.
void BM_pick_avoiding(benchmark::State& state) {
  auto lb = build(make_config(static_cast<int>(state.range(0)), lb_policy::least_request, plain));
  fast_random random(42);
  host* failed = lb->pick(0, random);
  const std::uint64_t before = allocations_on_this_thread();
  for (auto _ : state) benchmark::DoNotOptimize(lb->pick(0, random, failed));
  state.counters["allocs_per_pick"] = benchmark::Counter(
      static_cast<double>(allocations_on_this_thread() - before), benchmark::Counter::kAvgIterations);
}
BENCHMARK(BM_pick_avoiding)->Arg(1)->Arg(100)->Arg(10000);

// An EDS update: a new balancer from new config, taking the hosts over from the previous one
// (8 workers' picking state included), plus freeing the generation before it.
void BM_rebuild(benchmark::State& state) {
  const int m = static_cast<int>(state.range(1));
  const cluster_config c = make_config(static_cast<int>(state.range(0)), lb_policy::least_request, m);
  auto current = build(c);
  for (auto _ : state) {
    auto next = build(c, current.get());
    current.swap(next);
  }
  state.SetLabel(m == weighted ? "weighted+localities" : "plain");
}
BENCHMARK(BM_rebuild)->ArgsProduct({{1, 100, 10000}, {plain, weighted}})->Unit(benchmark::kMicrosecond);

// An outlier ejection and the return of the host: two health views built and published.
void BM_eject_and_return(benchmark::State& state) {
  cluster_config c = make_config(static_cast<int>(state.range(0)), lb_policy::least_request, plain);
  c.outlier_detection.enabled = true;
  c.outlier_detection.max_ejection_percent = 100;
  auto lb = build(c);
  host& target = *lb->hosts()[0];
  auto now = time_point{} + std::chrono::hours(1);
  for (auto _ : state) {
    for (int i = 0; i < 5; ++i) target.report(outcome::request_failed);
    lb->process_detections(now);
    now += std::chrono::hours(1);
    lb->tick(now);  // back after base_ejection_time
  }
  if (target.ejected()) state.SkipWithError("host did not come back");
}
BENCHMARK(BM_eject_and_return)->Arg(1)->Arg(100)->Arg(10000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
