// What the stats cost.
//
// Per connection: the counter, gauge and histogram updates a proxied connection makes (the same
// sequence as proxy/tcp_session.cc for one successful connection relaying one read each way),
// with the per-cluster series (cluster.<name>.*, reached through its lazy scope) and without
// them (listener, tls_inspector and tcp_proxy series only). The updates are replayed on one
// thread into real registry blocks; the socket work around them is not part of the measure.
//
// Per scrape: collecting every series (per-worker blocks summed, the balancers' statistics and
// Istio's TCP metrics computed from the routing snapshot) and serializing them as Prometheus
// text, with 10 and 10,000 clusters that carried traffic (3 endpoints each, Istio metadata).
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "proxy/cluster_metrics.h"
#include "proxy/proxy_stats.h"
#include "proxy/routing_snapshot.h"
#include "stats/prometheus.h"
#include "stats/stats.h"

namespace {

using namespace ewgw;

constexpr std::size_t workers = 2;

struct connection_scopes {
  stats::registry registry{workers};
  std::shared_ptr<stats::block_scope<proxy::listener_stats>> listener =
      registry.get<proxy::listener_stats>("listener", "0.0.0.0_15443");
  std::shared_ptr<stats::block_scope<proxy::tls_inspector_stats>> tls =
      registry.get<proxy::tls_inspector_stats>("listener", "0.0.0.0_15443", "tls_inspector");
  std::shared_ptr<stats::block_scope<proxy::tcp_stats>> tcp =
      registry.get<proxy::tcp_stats>("tcp", "outbound_.5000_._.helloworld.sample.svc.cluster.local");
  stats::lazy_scope<proxy::cluster_stats> cluster{registry, "cluster", "outbound_.5000_._.helloworld.sample.svc.cluster.local"};
};

// One connection's updates. `with_cluster`: also the cluster series (a real connection always
// makes them; the variant without shows what the per-cluster series add).
void one_connection(connection_scopes& s, std::size_t worker, bool with_cluster, std::uint64_t bytes) {
  auto& l = s.listener->worker(worker);
  l.downstream_cx_total.inc();
  l.downstream_cx_active.add();
  auto& t = s.tls->worker(worker);
  t.tls_found.inc();
  t.bytes_processed.record(517);
  t.sni_found.inc();
  t.alpn_found.inc();
  auto& p = s.tcp->worker(worker);
  p.downstream_cx_total.inc();
  p.downstream_cx_rx_bytes_total.inc(517);
  if (with_cluster) {
    auto& c = s.cluster.worker(worker);
    c.upstream_cx_total.inc();
    c.upstream_cx_active.add();
    c.upstream_cx_connect_ms.record(0.3);
    c.upstream_cx_tx_bytes_total.inc(517);
    c.upstream_cx_tx_bytes_total.inc(bytes);
    c.upstream_cx_rx_bytes_total.inc(bytes);
    c.upstream_cx_length_ms.record(12);
    c.upstream_cx_active.sub();
    c.upstream_cx_destroy.inc();
  }
  p.downstream_cx_rx_bytes_total.inc(bytes);
  p.downstream_cx_tx_bytes_total.inc(bytes);
  l.downstream_cx_active.sub();
  l.downstream_cx_destroy.inc();
}

void BM_ConnectionStats(benchmark::State& state) {
  const bool with_cluster = state.range(0) != 0;
  connection_scopes s;
  std::uint64_t bytes = 1000;
  for (auto _ : state) {
    one_connection(s, 0, with_cluster, bytes);
    benchmark::ClobberMemory();
    ++bytes;
  }
  state.SetLabel(with_cluster ? "with per-cluster series" : "listener/tls/tcp only");
}
BENCHMARK(BM_ConnectionStats)->Arg(0)->Arg(1);

std::string cluster_name(int i) {
  return "outbound_.5000_._.svc-" + std::to_string(i) + ".ns-" + std::to_string(i % 50) + ".svc.cluster.local";
}

// A routing snapshot of `clusters` Istio-shaped clusters that all carried one connection.
struct scrape_fixture {
  stats::registry registry{workers};
  std::shared_ptr<const proxy::routing_snapshot> snapshot;

  explicit scrape_fixture(int clusters) {
    xds::bootstrap_config config;
    config.node.istio = {"istio-eastwestgateway", "istio-system", "cluster1", "istio-eastwestgateway", "", "istio-eastwestgateway", "latest"};
    for (int i = 0; i < clusters; ++i) {
      xds::cluster_config c;
      c.name = cluster_name(i);
      c.settings.edit().policy = xds::lb_policy::least_request;
      c.istio_services = xds::istio_service_list{{"svc-" + std::to_string(i) + ".ns-" + std::to_string(i % 50) + ".svc.cluster.local",
                                  "svc-" + std::to_string(i), "ns-" + std::to_string(i % 50)}};
      xds::locality_endpoints_config loc;
      for (int e = 0; e < 3; ++e) {
        xds::endpoint_config ep = xds::endpoint_config::at(
            "10." + std::to_string(i / 250) + "." + std::to_string(i % 250) + "." + std::to_string(e + 1), 5000);
        loc.endpoints.push_back(ep);
      }
      c.load_assignment.localities.push_back(loc);
      config.clusters.push_back(std::move(c));
    }
    std::vector<std::string> errors;
    snapshot = proxy::build_snapshot(config, registry, 1, nullptr, errors);
    for (const auto& c : snapshot->clusters) {
      auto& b = c->worker_stats(registry, 0);
      b.upstream_cx_total.inc();
      b.upstream_cx_connect_ms.record(0.4);
      b.upstream_cx_tx_bytes_total.inc(700);
      b.upstream_cx_rx_bytes_total.inc(4000);
      b.upstream_cx_length_ms.record(30);
      b.upstream_cx_destroy.inc();
    }
    registry.add_source([this](const stats::registry::scope_emitter& emit) { proxy::emit_cluster_metrics(*snapshot, emit); });
  }
};

void BM_ScrapeCollect(benchmark::State& state) {
  scrape_fixture f(static_cast<int>(state.range(0)));
  std::size_t series = 0;
  for (auto _ : state) {
    series = 0;
    f.registry.for_each_scope([&](const stats::scope& s) {
      s.for_each_total([&](const stats::sample&) { ++series; });
      s.for_each_histogram([&](const stats::histogram_sample&) { ++series; });
    });
    benchmark::DoNotOptimize(series);
  }
  state.counters["series"] = static_cast<double>(series);
}
BENCHMARK(BM_ScrapeCollect)->Arg(10)->Arg(10000)->Unit(benchmark::kMicrosecond);

void BM_ScrapePrometheus(benchmark::State& state) {
  scrape_fixture f(static_cast<int>(state.range(0)));
  std::size_t size = 0;
  for (auto _ : state) {
    const std::string text = stats::render_prometheus(f.registry);
    size = text.size();
    benchmark::DoNotOptimize(size);
  }
  state.counters["bytes"] = static_cast<double>(size);
}
BENCHMARK(BM_ScrapePrometheus)->Arg(10)->Arg(10000)->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
