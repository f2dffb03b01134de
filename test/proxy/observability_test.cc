// Observability end to end: a real Prometheus server scrapes a real gateway after real traffic
// and the test reads the values back through Prometheus's HTTP API; promtool lints the
// exposition; the admin and readiness endpoints answer as Envoy's and Istio's do.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>

#include "proxy/admin_endpoints.h"
#include "proxy/admin_server.h"
#include "proxy/gateway.h"
#include "test/support/client_hello_bytes.h"
#include "test/support/process.h"
#include "test/support/tcp_util.h"
#include "xds/decode.h"

namespace ewgw {
namespace {

using namespace std::chrono_literals;

using test::command_result;

command_result run(const std::string& command) { return test::run_command(command); }

std::string http_get(std::uint16_t port, const std::string& path, int* code = nullptr) {
  const test::http_reply r = test::http_get(port, path);
  if (code) *code = r.code;
  return r.body;
}

class ObservabilityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    test::ignore_sigpipe();
    refused_port_ = test::unused_port();
    const std::string yaml = R"(node:
  id: router~10.0.0.1~eastwest-1.istio-system~istio-system.svc.cluster.local
  metadata:
    WORKLOAD_NAME: istio-eastwestgateway
    NAMESPACE: istio-system
    CLUSTER_ID: cluster1
    LABELS: {app: istio-eastwestgateway, service.istio.io/canonical-name: istio-eastwestgateway, service.istio.io/canonical-revision: latest}
static_resources:
  listeners:
  - name: east
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    listener_filters: [{name: envoy.filters.listener.tls_inspector, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}]
    filter_chains:
    - filter_chain_match: {server_names: [outbound_.5000_._.helloworld.sample.svc.cluster.local]}
      filters: [{name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: helloworld, cluster: helloworld}}]
    - filter_chain_match: {server_names: [flaky]}
      filters: [{name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: flaky, cluster: flaky, max_connect_attempts: 2}}]
    - filter_chain_match: {server_names: [down]}
      filters: [{name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: down, cluster: down}}]
  clusters:
  - name: helloworld
    metadata: {filter_metadata: {istio: {default_original_port: "5000", services: [{host: helloworld.sample.svc.cluster.local, name: helloworld, namespace: sample}]}}}
    load_assignment: {cluster_name: helloworld, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: )" +
                             std::to_string(backend_.port()) + R"(}}}}]}]}
  - name: flaky
    outlier_detection: {consecutive_5xx: 1, max_ejection_percent: 100, base_ejection_time: 300s}
    load_assignment: {cluster_name: flaky, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: )" +
                             std::to_string(backend_.port()) + R"(}}}}, {endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: )" +
                             std::to_string(refused_port_) + R"(}}}}]}]}
  - name: down
    metadata: {filter_metadata: {istio: {services: [{host: down.sample.svc.cluster.local, namespace: sample}]}}}
    load_assignment: {cluster_name: down, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: )" +
                             std::to_string(refused_port_) + R"(}}}}]}]}
  - name: idle
    load_assignment: {cluster_name: idle, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}
)";
    yaml_ = yaml;
    auto loaded = xds::load_bootstrap_text(yaml, "obs.yaml");
    ASSERT_TRUE(loaded.diag.ok()) << loaded.diag.errors[0];
    gw_ = std::make_unique<proxy::gateway>(proxy::gateway_options{2});
    ASSERT_TRUE(gw_->apply(loaded.config).empty());
    ASSERT_FALSE(gw_->start());
    admin_ = std::make_unique<proxy::admin_server>(control_);
    proxy::install_admin_routes(*admin_, *gw_, [] {});
    ASSERT_FALSE(admin_->listen("127.0.0.1", 0));
    probe_ = std::make_unique<proxy::admin_server>(control_);
    proxy::install_readiness_routes(*probe_, *gw_);
    ASSERT_FALSE(probe_->listen("127.0.0.1", 0));
    control_thread_ = std::thread([this] { control_.run(); });
  }

  void TearDown() override {
    if (prometheus_pid_ > 0) {
      ::kill(prometheus_pid_, SIGTERM);
      ::waitpid(prometheus_pid_, nullptr, 0);
    }
    if (!prometheus_dir_.empty()) std::filesystem::remove_all(prometheus_dir_);
    control_.stop();
    if (control_thread_.joinable()) control_thread_.join();
    if (gw_) gw_->stop();
  }

  // One connection with SNI `sni`; true when the backend echoed the hello (false: closed).
  bool connect_once(const std::string& sni) {
    const auto hello = test::make_client_hello(sni, {"istio"});
    test::unique_fd fd(test::connect_tcp(gw_->listener_port("east")));
    if (!test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()})) return false;
    std::string echoed;
    return test::read_exact(fd.get(), hello.size(), echoed);
  }

  // Connections to "flaky" until its refusing host is ejected (round robin from a random start
  // reaches it within two connections; each connection still succeeds through the retry).
  void eject_flaky_host() {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    while (gw_->stats().value("cluster.flaky.outlier_detection.ejections_active") != 1 &&
           std::chrono::steady_clock::now() < deadline) {
      ASSERT_TRUE(connect_once("flaky"));
      std::this_thread::sleep_for(50ms);  // the ejection is decided on the control thread
    }
    ASSERT_EQ(gw_->stats().value("cluster.flaky.outlier_detection.ejections_active"), 1);
  }

  void connect_through(int count) {
    const auto hello = test::make_client_hello("outbound_.5000_._.helloworld.sample.svc.cluster.local", {"istio"});
    for (int i = 0; i < count; ++i) {
      test::unique_fd fd(test::connect_tcp(gw_->listener_port("east")));
      ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
      std::string echoed;
      ASSERT_TRUE(test::read_exact(fd.get(), hello.size(), echoed));
    }
  }

  // Starts Prometheus scraping the admin port every second.
  void start_prometheus() {
    prometheus_dir_ = std::filesystem::temp_directory_path() / ("ewgw-prom-" + std::to_string(::getpid()));
    std::filesystem::create_directories(prometheus_dir_ / "data");
    std::ofstream(prometheus_dir_ / "prometheus.yml")
        << "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: ewgw\n"
           "  metrics_path: /stats/prometheus\n  static_configs:\n  - targets: ['127.0.0.1:"
        << admin_->port() << "']\n";
    prometheus_port_ = test::unused_port();
    prometheus_pid_ = ::fork();
    if (prometheus_pid_ == 0) {
      const std::string config = "--config.file=" + (prometheus_dir_ / "prometheus.yml").string();
      const std::string storage = "--storage.tsdb.path=" + (prometheus_dir_ / "data").string();
      const std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(prometheus_port_);
      std::freopen((prometheus_dir_ / "prometheus.log").c_str(), "w", stderr);
      ::execlp("prometheus", "prometheus", config.c_str(), storage.c_str(), listen.c_str(), "--log.level=warn",
               static_cast<char*>(nullptr));
      std::_Exit(127);
    }
    ASSERT_GT(prometheus_pid_, 0);
  }

  // Polls Prometheus until `query` returns `want` (bounded); returns the last value seen.
  std::string query_until(const std::string& query, const std::string& want) {
    std::string last;
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (std::chrono::steady_clock::now() < deadline) {
      const auto r = run("curl -s -m 5 -G 'http://127.0.0.1:" + std::to_string(prometheus_port_) +
                         "/api/v1/query' --data-urlencode 'query=" + query + "'");
      static const std::regex value(R"re("value":\[[0-9.]+,"([^"]*)"\])re");
      std::smatch m;
      if (std::regex_search(r.output, m, value)) {
        last = m[1];
        if (last == want) return last;
      }
      std::this_thread::sleep_for(250ms);
    }
    return last;
  }

  test::tcp_echo_server backend_;
  std::uint16_t refused_port_ = 0;
  std::string yaml_;
  std::unique_ptr<proxy::gateway> gw_;
  boost::asio::io_context control_{1};
  std::unique_ptr<proxy::admin_server> admin_;
  std::unique_ptr<proxy::admin_server> probe_;
  std::thread control_thread_;
  std::filesystem::path prometheus_dir_;
  pid_t prometheus_pid_ = -1;
  std::uint16_t prometheus_port_ = 0;
};

TEST_F(ObservabilityTest, PrometheusScrapesEnvoyNamedCountersAndHistograms) {
  connect_through(5);
  start_prometheus();
  EXPECT_EQ(query_until("envoy_cluster_upstream_cx_total{envoy_cluster_name=\"helloworld\"}", "5"), "5");
  EXPECT_EQ(query_until("envoy_tcp_downstream_cx_total{envoy_tcp_prefix=\"helloworld\"}", "5"), "5");
  EXPECT_EQ(query_until("envoy_listener_tls_inspector_sni_found{envoy_listener_address=\"127.0.0.1_0\"}", "5"), "5");
  EXPECT_EQ(query_until("envoy_cluster_upstream_cx_connect_ms_count{envoy_cluster_name=\"helloworld\"}", "5"), "5");
  EXPECT_EQ(query_until("envoy_cluster_upstream_cx_connect_ms_bucket{envoy_cluster_name=\"helloworld\",le=\"+Inf\"}", "5"), "5");
  EXPECT_EQ(query_until("envoy_cluster_upstream_cx_length_ms_count{envoy_cluster_name=\"helloworld\"}", "5"), "5");
  EXPECT_EQ(query_until("envoy_server_live", "1"), "1");
  // A cluster that never carried a connection has no series (cardinality stays bounded).
  EXPECT_EQ(query_until("count(envoy_cluster_upstream_cx_total{envoy_cluster_name=\"idle\"}) or vector(0)", "0"), "0");
}

TEST_F(ObservabilityTest, PrometheusScrapesLoadBalancerAndOutlierSeries) {
  connect_through(1);
  eject_flaky_host();
  start_prometheus();
  const auto q = [](const std::string& metric, const std::string& cluster) {
    return metric + "{envoy_cluster_name=\"" + cluster + "\"}";
  };
  EXPECT_EQ(query_until(q("envoy_cluster_membership_total", "flaky"), "2"), "2");
  EXPECT_EQ(query_until(q("envoy_cluster_membership_healthy", "flaky"), "1"), "1");
  EXPECT_EQ(query_until(q("envoy_cluster_membership_degraded", "flaky"), "0"), "0");
  EXPECT_EQ(query_until(q("envoy_cluster_outlier_detection_ejections_active", "flaky"), "1"), "1");
  EXPECT_EQ(query_until(q("envoy_cluster_outlier_detection_ejections_enforced_total", "flaky"), "1"), "1");
  EXPECT_EQ(query_until(q("envoy_cluster_outlier_detection_ejections_detected_consecutive_5xx", "flaky"), "1"), "1");
  EXPECT_EQ(query_until(q("envoy_cluster_outlier_detection_ejections_enforced_consecutive_5xx", "flaky"), "1"), "1");
  EXPECT_EQ(query_until(q("envoy_cluster_outlier_detection_ejections_overflow", "flaky"), "0"), "0");
  EXPECT_EQ(query_until(q("envoy_cluster_lb_healthy_panic", "flaky"), "0"), "0");
  EXPECT_EQ(query_until(q("envoy_cluster_membership_healthy", "helloworld"), "1"), "1");
  // The types Envoy gives them: gauges for membership and active ejections, counters otherwise.
  const std::string text = http_get(admin_->port(), "/stats/prometheus");
  EXPECT_NE(text.find("# TYPE envoy_cluster_membership_healthy gauge"), std::string::npos);
  EXPECT_NE(text.find("# TYPE envoy_cluster_outlier_detection_ejections_active gauge"), std::string::npos);
  EXPECT_NE(text.find("# TYPE envoy_cluster_outlier_detection_ejections_enforced_total counter"), std::string::npos);
  EXPECT_NE(text.find("# TYPE envoy_cluster_lb_healthy_panic counter"), std::string::npos);
  // Clusters that never carried a connection have no load balancer series either.
  EXPECT_EQ(query_until("count({envoy_cluster_name=\"idle\"}) or vector(0)", "0"), "0");
  EXPECT_EQ(text.find("envoy_cluster_name=\"idle\""), std::string::npos);
}

// Counters survive a configuration update that rebuilds the cluster (Envoy keeps a cluster's
// stats across EDS updates): the ejection counts stay, membership follows the new endpoints.
TEST_F(ObservabilityTest, LoadBalancerCountersSurviveUpdates) {
  connect_through(1);
  eject_flaky_host();
  // outlier_detection.* only where it is configured, as Envoy creates them with the detector.
  EXPECT_EQ(gw_->stats().value("cluster.helloworld.membership_total"), 1);
  EXPECT_EQ(gw_->stats().value("cluster.helloworld.outlier_detection.ejections_active"), -1);
  const std::string extra = "{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: " +
                            std::to_string(refused_port_) + "}}}}]}]}\n  - name: down";
  std::string updated = yaml_;
  // A third endpoint (another loopback address) in "flaky".
  const std::size_t at = updated.find(extra);
  ASSERT_NE(at, std::string::npos);
  updated.insert(at + extra.find("]}]}"),
                 ", {endpoint: {address: {socket_address: {address: 127.0.0.2, port_value: " + std::to_string(backend_.port()) + "}}}}");
  auto loaded = xds::load_bootstrap_text(updated, "obs2.yaml");
  ASSERT_TRUE(loaded.diag.ok()) << loaded.diag.errors[0];
  ASSERT_TRUE(gw_->apply(loaded.config).empty());
  EXPECT_EQ(gw_->stats().value("cluster.flaky.membership_total"), 3);
  EXPECT_EQ(gw_->stats().value("cluster.flaky.membership_healthy"), 2);
  EXPECT_EQ(gw_->stats().value("cluster.flaky.outlier_detection.ejections_active"), 1);
  EXPECT_EQ(gw_->stats().value("cluster.flaky.outlier_detection.ejections_enforced_total"), 1);
  EXPECT_EQ(gw_->stats().value("cluster.flaky.outlier_detection.ejections_detected_consecutive_5xx"), 1);
  // Still exported after the rebuild although the new version has carried nothing yet.
  EXPECT_GE(gw_->stats().value("cluster.flaky.upstream_cx_total"), 1);
  EXPECT_EQ(gw_->stats().value("cluster.idle.membership_total"), -1);
}

TEST_F(ObservabilityTest, PrometheusScrapesIstioTcpMetrics) {
  connect_through(3);
  EXPECT_FALSE(connect_once("down"));  // refused: response flag UF
  start_prometheus();
  const std::string hello = "istio_tcp_connections_opened_total{reporter=\"source\",destination_service=\"helloworld.sample.svc.cluster.local\","
                            "destination_service_name=\"helloworld\",destination_service_namespace=\"sample\",response_flags=\"-\","
                            "source_workload=\"istio-eastwestgateway\",source_workload_namespace=\"istio-system\",source_cluster=\"cluster1\","
                            "source_app=\"istio-eastwestgateway\",source_canonical_service=\"istio-eastwestgateway\",source_principal=\"unknown\","
                            "destination_workload=\"unknown\",destination_principal=\"unknown\",request_protocol=\"tcp\","
                            "connection_security_policy=\"unknown\"}";
  EXPECT_EQ(query_until(hello, "3"), "3");
  const std::string service = "{destination_service=\"helloworld.sample.svc.cluster.local\",response_flags=\"-\"}";
  EXPECT_EQ(query_until("istio_tcp_connections_closed_total" + service, "3"), "3");
  // Each connection relays one ClientHello each way (the backend echoes it).
  const std::size_t hello_size = test::make_client_hello("outbound_.5000_._.helloworld.sample.svc.cluster.local", {"istio"}).size();
  const std::string bytes = std::to_string(3 * hello_size);
  EXPECT_EQ(query_until("istio_tcp_received_bytes_total" + service, bytes), bytes);
  EXPECT_EQ(query_until("istio_tcp_sent_bytes_total" + service, bytes), bytes);
  // A refused upstream: opened and closed with UF; no name in the metadata: the host's first label.
  const std::string down = "{destination_service=\"down.sample.svc.cluster.local\",destination_service_name=\"down\",response_flags=\"UF\"}";
  EXPECT_EQ(query_until("istio_tcp_connections_opened_total" + down, "1"), "1");
  EXPECT_EQ(query_until("istio_tcp_connections_closed_total" + down, "1"), "1");
  // Clusters without Istio metadata, or without traffic, have no Istio series.
  EXPECT_EQ(query_until("count(istio_tcp_connections_opened_total) or vector(0)", "2"), "2");
}

TEST_F(ObservabilityTest, ExpositionPassesPromtool) {
  connect_through(2);
  eject_flaky_host();
  EXPECT_FALSE(connect_once("down"));
  const std::string text = http_get(admin_->port(), "/stats/prometheus");
  const auto path = std::filesystem::temp_directory_path() / ("ewgw-metrics-" + std::to_string(::getpid()) + ".txt");
  std::ofstream(path) << text;
  const auto r = run("promtool check metrics < " + path.string());
  std::filesystem::remove(path);
  // 0: clean; 3: lint warnings only; 1 would be a format error.
  ASSERT_TRUE(r.status == 0 || r.status == 3) << r.output;
  // The only warnings allowed are for Envoy's own names, kept as they are so that existing
  // dashboards work: counters without "_total", and the "_ms" histograms. Names ewgw coins (client_hello_malformed_total) lint clean.
  std::istringstream lines(r.output);
  std::string line;
  int warnings = 0;
  while (std::getline(lines, line)) {
    if (line.empty()) continue;
    ++warnings;
    const bool envoy_counter = line.find("counter metrics should have \"_total\" suffix") != std::string::npos;
    // Envoy's histograms are named upstream_cx_connect_ms / upstream_cx_length_ms.
    const bool envoy_ms_histogram = line.find("metric names should not contain abbreviated units") != std::string::npos &&
                                    (line.starts_with("envoy_cluster_upstream_cx_connect_ms ") ||
                                     line.starts_with("envoy_cluster_upstream_cx_length_ms "));
    // Envoy's gauge cluster.<name>.membership_total.
    const bool envoy_total_gauge = line.starts_with("envoy_cluster_membership_total ") &&
                                   line.find("non-counter metrics should not have \"_total\" suffix") != std::string::npos;
    EXPECT_TRUE(envoy_counter || envoy_ms_histogram || envoy_total_gauge) << line;
    EXPECT_EQ(line.find("client_hello_malformed"), std::string::npos) << line;
    EXPECT_EQ(line.find("istio_"), std::string::npos) << line;
  }
  EXPECT_GT(warnings, 0);  // the check really ran on our counters
  // Every family has HELP text.
  std::size_t helps = 0, types = 0;
  for (std::size_t at = 0; (at = text.find("# HELP ", at)) != std::string::npos; ++at) ++helps;
  for (std::size_t at = 0; (at = text.find("# TYPE ", at)) != std::string::npos; ++at) ++types;
  EXPECT_EQ(helps, types);
  EXPECT_GT(types, 20u);
  EXPECT_NE(text.find("# TYPE istio_tcp_connections_opened_total counter"), std::string::npos);
  EXPECT_NE(text.find("# TYPE envoy_cluster_outlier_detection_ejections_active gauge"), std::string::npos);
}

TEST_F(ObservabilityTest, ReadinessAndAdminEndpoints) {
  int code = 0;
  EXPECT_EQ(http_get(probe_->port(), "/healthz/ready", &code), "LIVE\n");
  EXPECT_EQ(code, 200);
  EXPECT_EQ(http_get(admin_->port(), "/ready", &code), "LIVE\n");
  EXPECT_EQ(code, 200);
  connect_through(1);
  const std::string stats = http_get(admin_->port(), "/stats?filter=%5Ecluster%5C.helloworld%5C.upstream_cx_total", &code);
  EXPECT_EQ(code, 200);
  EXPECT_EQ(stats, "cluster.helloworld.upstream_cx_total: 1\n");
  http_get(admin_->port(), "/stats?filter=(", &code);
  EXPECT_EQ(code, 400);  // a bad regex is the client's error, not a crash
  http_get(admin_->port(), "/quitquitquit", &code);
  EXPECT_EQ(code, 405);  // state changes need POST
  EXPECT_NE(http_get(admin_->port(), "/nope", &code).find("/stats/prometheus"), std::string::npos);
  EXPECT_EQ(code, 404);
  // Garbage instead of HTTP: 400, and the server keeps serving.
  test::unique_fd fd(test::connect_tcp(admin_->port()));
  ASSERT_TRUE(test::send_all(fd.get(), "\x16\x03\x01 not http at all\r\n\r\n"));
  const auto reply = test::read_until_eof(fd.get());
  EXPECT_NE(reply.bytes.find("400"), std::string::npos) << reply.bytes;
  EXPECT_EQ(http_get(admin_->port(), "/ready", &code), "LIVE\n");

  // Draining: readiness fails, listeners stop accepting.
  EXPECT_EQ(run("curl -s -m 5 -X POST http://127.0.0.1:" + std::to_string(admin_->port()) + "/drain_listeners").output, "OK\n");
  EXPECT_EQ(http_get(probe_->port(), "/healthz/ready", &code), "DRAINING\n");
  EXPECT_EQ(code, 503);
}

}  // namespace
}  // namespace ewgw
