// Chain selection per connection (ns and allocations per match) on an istiod east-west gateway
// listener: one chain per service, each naming its cluster's ~55-character SNI-DNAT name and
// Istio's five ALPNs (istiod's AUTO_PASSTHROUGH shape), for 100 and 10,000 services. Hits are
// looked up in a shuffled order so that the table is not walked in insertion order; misses name
// services that do not exist (a client of another mesh, a stale DNS entry); the wildcard case
// puts a few "*.suffix" chains next to the exact ones, as a hand-written Gateway would.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>
#include <string>
#include <vector>

#include "proxy/filter_chain_matcher.h"
#include "test/lb/allocation_counter.h"

namespace {

using ewgw::lb::testing::allocations_on_this_thread;
using ewgw::proxy::connection_facts;
using ewgw::proxy::filter_chain_matcher;

const std::vector<std::string> istio_alpns = {"istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1",
                                              "istio-h2"};

std::string service_name(int i) {
  return "outbound_.8080_._.svc-" + std::to_string(i) + ".ns-" + std::to_string(i % 97) + ".svc.cluster.local";
}

struct fixture {
  filter_chain_matcher matcher;
  std::vector<std::string> snis;
};

fixture make(int services, bool wildcards, bool absent) {
  std::vector<ewgw::xds::filter_chain_config> chains;
  for (int i = 0; i < services; ++i) {
    ewgw::xds::filter_chain_config c;
    c.server_names.push_back(service_name(i));
    c.settings.edit().match.application_protocols = istio_alpns;
    chains.push_back(std::move(c));
  }
  if (wildcards) {
    for (int ns = 0; ns < 8; ++ns) {
      ewgw::xds::filter_chain_config c;
      c.server_names.push_back("*.ns-" + std::to_string(ns) + ".svc.cluster.local");
      chains.push_back(std::move(c));
    }
  }
  fixture f;
  if (f.matcher.build(chains)) std::abort();
  for (int i = 0; i < services; ++i) f.snis.push_back(absent ? service_name(i + services) : service_name(i));
  std::shuffle(f.snis.begin(), f.snis.end(), std::mt19937(42));
  return f;
}

void run(benchmark::State& state, bool wildcards, bool absent) {
  const fixture f = make(static_cast<int>(state.range(0)), wildcards, absent);
  const std::string_view offer[] = {"istio-peer-exchange", "istio"};
  std::size_t next = 0;
  int found = 0;
  const std::uint64_t before = allocations_on_this_thread();
  for (auto _ : state) {
    const connection_facts facts{15443, f.snis[next], "tls", offer};
    const int chain = f.matcher.match(facts);
    benchmark::DoNotOptimize(chain);
    found += chain != filter_chain_matcher::no_match;
    if (++next == f.snis.size()) next = 0;
  }
  const auto per_match = [&](double n) { return benchmark::Counter(n / static_cast<double>(state.iterations())); };
  state.counters["allocs/match"] = per_match(static_cast<double>(allocations_on_this_thread() - before));
  state.counters["found"] = per_match(found);
}

void BM_MatchExact(benchmark::State& state) { run(state, false, false); }
void BM_MatchAbsent(benchmark::State& state) { run(state, false, true); }
void BM_MatchAbsentWithWildcards(benchmark::State& state) { run(state, true, true); }

BENCHMARK(BM_MatchExact)->Arg(100)->Arg(10000);
BENCHMARK(BM_MatchAbsent)->Arg(100)->Arg(10000);
BENCHMARK(BM_MatchAbsentWithWildcards)->Arg(10000);

}  // namespace

BENCHMARK_MAIN();
