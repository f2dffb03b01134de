// Exposition names and labels must be Envoy's, so Istio's dashboards work unchanged.
#include "stats/prometheus.h"

#include <gtest/gtest.h>

namespace ewgw::stats {
namespace {

#define TEST_CLUSTER_STATS(COUNTER, GAUGE) \
  COUNTER(upstream_cx_total, "Upstream connections") \
  GAUGE(upstream_cx_active, "Open upstream connections")
#define TEST_CLUSTER_HISTOGRAMS(HISTOGRAM) HISTOGRAM(upstream_cx_connect_ms, "Connect time")
EWGW_STATS_BLOCK_WITH_HISTOGRAMS(test_cluster_stats, TEST_CLUSTER_STATS, TEST_CLUSTER_HISTOGRAMS)

#define TEST_TLS_STATS(COUNTER, GAUGE) COUNTER(sni_found, "With SNI")
EWGW_STATS_BLOCK(test_tls_stats, TEST_TLS_STATS)

#define TEST_SERVER_STATS(COUNTER, GAUGE) GAUGE(live, "Serving")
EWGW_STATS_BLOCK(test_server_stats, TEST_SERVER_STATS)

TEST(Prometheus, EnvoyNamesAndTagLabels) {
  registry r(2);
  auto c = r.get<test_cluster_stats>("cluster", "outbound_.5000_._.helloworld.sample.svc.cluster.local");
  c->worker(0).upstream_cx_total.inc(3);
  c->worker(1).upstream_cx_total.inc(2);
  c->worker(1).upstream_cx_active.add(1);
  r.get<test_tls_stats>("listener", "0.0.0.0_15443", "tls_inspector")->worker(0).sni_found.inc(7);
  r.get<test_server_stats>("server", "")->worker(0).live.add(1);
  const std::string text = render_prometheus(r);
  EXPECT_NE(text.find("# TYPE envoy_cluster_upstream_cx_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# HELP envoy_cluster_upstream_cx_total Upstream connections\n"), std::string::npos) << text;
  EXPECT_NE(text.find("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"outbound_.5000_._.helloworld.sample.svc.cluster.local\"} 5\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("# TYPE envoy_cluster_upstream_cx_active gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("envoy_listener_tls_inspector_sni_found{envoy_listener_address=\"0.0.0.0_15443\"} 7\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("envoy_server_live 1\n"), std::string::npos) << text;
}

TEST(Prometheus, HistogramBucketsAreCumulativeWithEnvoyBounds) {
  registry r(2);
  auto c = r.get<test_cluster_stats>("cluster", "c");
  c->worker(0).upstream_cx_connect_ms.record(0.3);   // <= 0.5
  c->worker(1).upstream_cx_connect_ms.record(7);     // <= 10
  c->worker(1).upstream_cx_connect_ms.record(4000000);  // above every bound
  const std::string text = render_prometheus(r);
  EXPECT_NE(text.find("# TYPE envoy_cluster_upstream_cx_connect_ms histogram\n"), std::string::npos) << text;
  EXPECT_NE(text.find("envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name=\"c\",le=\"0.5\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name=\"c\",le=\"5\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name=\"c\",le=\"10\"} 2\n"), std::string::npos) << text;
  EXPECT_NE(text.find("envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name=\"c\",le=\"3600000\"} 2\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name=\"c\",le=\"+Inf\"} 3\n"), std::string::npos)
      << text;
  EXPECT_NE(text.find("envoy_cluster_upstream_cx_connect_ms_count{envoy_cluster_name=\"c\"} 3\n"), std::string::npos) << text;
  EXPECT_NE(text.find("envoy_cluster_upstream_cx_connect_ms_sum{envoy_cluster_name=\"c\"} 4000007.3\n"), std::string::npos) << text;
}

TEST(Prometheus, LazyScopesAppearOnlyOnceUsed) {
  registry r(1);
  lazy_scope<test_cluster_stats> idle(r, "cluster", "idle");
  lazy_scope<test_cluster_stats> busy(r, "cluster", "busy");
  busy.worker(0).upstream_cx_total.inc();
  const std::string text = render_prometheus(r);
  EXPECT_EQ(text.find("envoy_cluster_name=\"idle\""), std::string::npos) << text;
  EXPECT_NE(text.find("envoy_cluster_name=\"busy\""), std::string::npos) << text;
  EXPECT_FALSE(idle.created());
}

TEST(Prometheus, ComputedScopesFromSourcesAreReadEachTime) {
  registry r(1);
  std::int64_t ejected = 1;
  r.add_source([&](const registry::scope_emitter& emit) {
    computed_scope envoy_named("cluster", "c1", "outlier_detection");
    envoy_named.add("ejections_active", "Ejected now", metric_kind::gauge, ejected);
    emit(envoy_named);
    computed_scope own_labels("istiocustom", "reporter.source.destination_service.a");
    own_labels.set_prometheus_labels({{"reporter", "source"}, {"destination_service", "a"}});
    own_labels.add("istio_tcp_connections_opened_total", "Opened", metric_kind::counter, 4);
    emit(own_labels);
  });
  std::string text = render_prometheus(r);
  EXPECT_NE(text.find("envoy_cluster_outlier_detection_ejections_active{envoy_cluster_name=\"c1\"} 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# TYPE istio_tcp_connections_opened_total counter\n"), std::string::npos) << text;
  EXPECT_NE(text.find("istio_tcp_connections_opened_total{reporter=\"source\",destination_service=\"a\"} 4\n"), std::string::npos)
      << text;
  // The /stats form names them by their dotted path.
  EXPECT_EQ(r.value("cluster.c1.outlier_detection.ejections_active"), 1);
  EXPECT_EQ(r.value("istiocustom.reporter.source.destination_service.a.istio_tcp_connections_opened_total"), 4);
  ejected = 0;  // computed afresh on every read
  text = render_prometheus(r);
  EXPECT_NE(text.find("envoy_cluster_outlier_detection_ejections_active{envoy_cluster_name=\"c1\"} 0\n"), std::string::npos) << text;
}

}  // namespace
}  // namespace ewgw::stats
