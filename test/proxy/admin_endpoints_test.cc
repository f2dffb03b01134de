// The admin endpoints that read the routing state, against a real gateway with real backends
// and a real HTTP client (curl): /clusters in Envoy's text and JSON formats, /explain, and
// their answers to bad requests.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <boost/asio/io_context.hpp>
#include <google/protobuf/util/json_util.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "envoy/admin/v3/clusters.pb.h"
#include "envoy/admin/v3/config_dump.pb.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "test/xds/istio_fixtures.h"
#include "test/xds/test_control_plane.h"
#include "proxy/admin_endpoints.h"
#include "proxy/admin_server.h"
#include "proxy/gateway.h"
#include "proxy/xds_controller.h"
#include "test/support/client_hello_bytes.h"
#include "test/support/process.h"
#include "test/support/tcp_util.h"
#include "xds/config_dump.h"
#include "xds/decode.h"

namespace ewgw {
namespace {

using namespace std::chrono_literals;

using test::http_get;
using test::http_reply;

struct endpoint_spec {
  std::uint16_t port;
  std::string health = "HEALTHY";
};
struct locality_spec {
  std::string zone;
  std::uint32_t priority = 0;
  std::vector<endpoint_spec> endpoints;
};

// One listener with one chain for SNI "svc" to cluster "svc"; `cluster_extra` goes into the
// cluster (outlier_detection, common_lb_config, ...).
std::string config(const std::vector<locality_spec>& localities, const std::string& cluster_extra = "",
                   const std::string& tcp_proxy_extra = "") {
  std::string y = R"(static_resources:
  listeners:
  - name: east
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    listener_filters: [{name: envoy.filters.listener.tls_inspector, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}]
    filter_chains:
    - name: svc-chain
      filter_chain_match: {server_names: [svc], application_protocols: [istio, istio-peer-exchange]}
      filters: [{name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: svc, cluster: svc)" +
                  tcp_proxy_extra + R"(}}]
    - name: by-sni
      filter_chain_match: {server_names: ["*.sni.example"]}
      filters:
      - {name: envoy.filters.network.sni_cluster, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster}}
      - {name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: sni, cluster: svc}}
  clusters:
  - name: svc
)";
  y += cluster_extra;
  y += "    load_assignment:\n      cluster_name: svc\n      endpoints:\n";
  for (const auto& l : localities) {
    y += "      - locality: {region: us-east, zone: " + l.zone + "}\n        priority: " + std::to_string(l.priority) +
         "\n        lb_endpoints:\n";
    for (const auto& e : l.endpoints) {
      y += "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: " + std::to_string(e.port) +
           "}}}\n          health_status: " + e.health + "\n";
    }
  }
  return y;
}

class AdminEndpointsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { test::ignore_sigpipe(); }

  void start(const std::string& text) {
    auto loaded = xds::load_bootstrap_text(text, "admin.yaml");
    ASSERT_TRUE(loaded.diag.ok()) << (loaded.diag.errors.empty() ? "" : loaded.diag.errors[0]) << "\n" << text;
    gw_ = std::make_unique<proxy::gateway>(proxy::gateway_options{2});
    ASSERT_TRUE(gw_->apply(loaded.config).empty());
    ASSERT_FALSE(gw_->start());
    store_->set_bootstrap(loaded.bootstrap_proto);
    serve_admin();
  }

  // The admin routes as main() installs them, with /config_dump from `store_`.
  void serve_admin() {
    admin_ = std::make_unique<proxy::admin_server>(control_);
    proxy::admin_extras extras;
    extras.config_dump = [store = store_](const std::map<std::string, std::string>& q) { return store->render(q); };
    extras.missing_cluster_note = [store = store_](std::string_view c) { return store->missing_cluster_note(c); };
    proxy::install_admin_routes(*admin_, *gw_, [] {}, extras);
    ASSERT_FALSE(admin_->listen("127.0.0.1", 0));
    probe_ = std::make_unique<proxy::admin_server>(control_);
    proxy::install_readiness_routes(*probe_, *gw_);
    ASSERT_FALSE(probe_->listen("127.0.0.1", 0));
    control_thread_ = std::thread([this] { control_.run(); });
  }

  void TearDown() override {
    if (xds_) xds_->stop();
    control_.stop();
    if (control_thread_.joinable()) control_thread_.join();
    if (gw_) gw_->stop();
  }

  // Opens `n` connections one after another; each must be echoed.
  void connect(int n, const std::string& sni = "svc") {
    const auto hello = test::make_client_hello(sni, {"istio"});
    const std::string bytes(reinterpret_cast<const char*>(hello.data()), hello.size());
    for (int i = 0; i < n; ++i) {
      test::unique_fd fd(test::connect_tcp(gw_->listener_port("east")));
      ASSERT_TRUE(test::send_all(fd.get(), bytes));
      std::string echoed;
      ASSERT_TRUE(test::read_exact(fd.get(), bytes.size(), echoed)) << "connection " << i;
    }
  }

  // One connection whose outcome does not matter (it may be closed).
  void try_connect(const std::string& sni = "svc") {
    const auto hello = test::make_client_hello(sni, {"istio"});
    test::unique_fd fd(test::connect_tcp(gw_->listener_port("east")));
    (void)test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()});
    std::string echoed;
    (void)test::read_exact(fd.get(), hello.size(), echoed, 2s);
  }

  http_reply get(const std::string& path) { return http_get(admin_->port(), path); }

  // Polls `path` until its body contains `needle` (bounded); returns the last body.
  std::string get_until(const std::string& path, const std::string& needle) {
    std::string body;
    for (int i = 0; i < 100; ++i) {
      body = get(path).body;
      if (body.find(needle) != std::string::npos) break;
      std::this_thread::sleep_for(100ms);
    }
    return body;
  }

  std::unique_ptr<proxy::gateway> gw_;
  boost::asio::io_context control_{1};
  std::unique_ptr<proxy::admin_server> admin_;
  std::unique_ptr<proxy::admin_server> probe_;
  std::thread control_thread_;
  std::shared_ptr<xds::config_store> store_ = std::make_shared<xds::config_store>();
  std::unique_ptr<proxy::xds_controller> xds_;
};

TEST_F(AdminEndpointsTest, ClustersShowsTheEjectedHostAsFailedOutlierCheck) {
  test::tcp_echo_server good;
  const std::uint16_t refusing = test::unused_port();
  // Three consecutive connect failures eject a host; the interval is long, so nothing
  // un-ejects it during the test. A connection that hits the refusing host is retried.
  start(config({{"zone-a", 0, {{refusing}, {good.port()}}}},
               "    outlier_detection: {consecutive_5xx: 3, max_ejection_percent: 100, interval: 600s, base_ejection_time: 600s}\n",
               ", max_connect_attempts: 2"));
  connect(20);
  const std::string bad = "svc::127.0.0.1:" + std::to_string(refusing) + "::";
  const std::string ok = "svc::127.0.0.1:" + std::to_string(good.port()) + "::";
  // The ejection is decided on the control thread, just after the third failure.
  const std::string text = get_until("/clusters", bad + "health_flags::/failed_outlier_check\n");
  EXPECT_NE(text.find(bad + "health_flags::/failed_outlier_check\n"), std::string::npos) << text;
  EXPECT_NE(text.find(ok + "health_flags::healthy\n"), std::string::npos) << text;
  EXPECT_NE(text.find("svc::default_priority::max_connections::1024\n"), std::string::npos) << text;
  EXPECT_NE(text.find("svc::added_via_api::false\n"), std::string::npos) << text;
  EXPECT_NE(text.find(ok + "region::us-east\n"), std::string::npos) << text;
  EXPECT_NE(text.find(ok + "zone::zone-a\n"), std::string::npos) << text;
  EXPECT_NE(text.find(ok + "priority::0\n"), std::string::npos) << text;
  EXPECT_NE(text.find(ok + "weight::1\n"), std::string::npos) << text;
  EXPECT_NE(text.find(ok + "cx_connect_fail::0\n"), std::string::npos) << text;
  EXPECT_NE(text.find(ok + "cx_active::0\n"), std::string::npos) << text;
  // Every connection was echoed and closed; the refusing host failed each time it was tried.
  const auto fails = gw_->stats().value("cluster.svc.upstream_cx_connect_fail");
  EXPECT_NE(text.find(bad + "cx_connect_fail::" + std::to_string(fails) + "\n"), std::string::npos) << text;
  EXPECT_NE(text.find(ok + "cx_total::" + std::to_string(good.connections_accepted()) + "\n"), std::string::npos) << text;

  // The JSON form parses into Envoy's own admin.v3.Clusters.
  const auto json = get("/clusters?format=json");
  ASSERT_EQ(json.code, 200);
  envoy::admin::v3::Clusters parsed;
  const auto status = google::protobuf::util::JsonStringToMessage(json.body, &parsed);
  ASSERT_TRUE(status.ok()) << status.message() << "\n" << json.body;
  ASSERT_EQ(parsed.cluster_statuses_size(), 1);
  const auto& cs = parsed.cluster_statuses(0);
  EXPECT_EQ(cs.name(), "svc");
  EXPECT_FALSE(cs.added_via_api());
  ASSERT_EQ(cs.host_statuses_size(), 2);
  for (const auto& h : cs.host_statuses()) {
    const bool is_bad = h.address().socket_address().port_value() == refusing;
    EXPECT_EQ(h.health_status().failed_outlier_check(), is_bad);
    EXPECT_EQ(h.health_status().eds_health_status(), envoy::config::core::v3::HEALTHY);
    EXPECT_EQ(h.locality().zone(), "zone-a");
  }

  // Bad queries name the parameter.
  auto r = get("/clusters?format=xml");
  EXPECT_EQ(r.code, 400);
  EXPECT_NE(r.body.find("'format'"), std::string::npos) << r.body;
  r = get("/clusters?fromat=json");
  EXPECT_EQ(r.code, 400);
  EXPECT_NE(r.body.find("'fromat'"), std::string::npos) << r.body;
}

TEST_F(AdminEndpointsTest, ExplainHealthyCluster) {
  test::tcp_echo_server a, b;
  start(config({{"zone-a", 0, {{a.port()}, {b.port()}}}}));
  connect(2);
  const auto r = get("/explain?sni=svc");
  ASSERT_EQ(r.code, 200) << r.body;
  EXPECT_NE(r.body.find("listener 'east' (127.0.0.1:" + std::to_string(gw_->listener_port("east")) +
                        "): filter chain 'svc-chain' matches"),
            std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("tcp_proxy: cluster 'svc'"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("priority 0: 2 hosts, 2 healthy, 0 degraded; availability 100% healthy"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("locality us-east/zone-a/: weight 0"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("127.0.0.1:" + std::to_string(a.port()) + "  EDS HEALTHY, weight 1, not ejected"), std::string::npos)
      << r.body;
  EXPECT_NE(r.body.find("conclusion: the next connection goes to cluster 'svc': priority 0 takes 100% (2 healthy of 2 hosts)"),
            std::string::npos)
      << r.body;
}

TEST_F(AdminEndpointsTest, ExplainFailoverToPriorityOne) {
  // Priority 0's two hosts are ejected by outlier detection (they refuse connections);
  // priority 1 takes the load, as Envoy's priority arithmetic says.
  test::tcp_echo_server remote;
  const std::uint16_t p0a = test::unused_port(), p0b = test::unused_port();
  start(config({{"zone-a", 0, {{p0a}, {p0b}}}, {"zone-b", 1, {{remote.port()}}}},
               "    outlier_detection: {consecutive_5xx: 2, max_ejection_percent: 100, interval: 600s, base_ejection_time: 300s}\n",
               ", max_connect_attempts: 5"));
  // Connections fail (or succeed through retries once a host is out) while priority 0 collects
  // failures; stop once explain reports both hosts ejected (bounded).
  const std::string marker = "priority 0 has 0% load because both hosts are ejected";
  std::string body;
  for (int i = 0; i < 100 && body.find(marker) == std::string::npos; ++i) {
    try_connect();
    body = get("/explain?sni=svc").body;
  }
  EXPECT_NE(body.find("priority 0: 2 hosts, 0 healthy, 0 degraded; availability 0% healthy, 0% degraded; load 0% healthy"),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("127.0.0.1:" + std::to_string(p0a) + "  EDS HEALTHY, weight 1, EJECTED (failed_outlier_check, ejection 1), returns in "),
            std::string::npos)
      << body;
  EXPECT_NE(body.find("conclusion: the next connection goes to cluster 'svc': priority 0 has 0% load because both hosts "
                      "are ejected; priority 1 takes 100% (1 healthy of 1 host)"),
            std::string::npos)
      << body;
  // And that is where traffic goes.
  const std::size_t before = remote.connections_accepted();
  connect(10);
  EXPECT_EQ(remote.connections_accepted() - before, 10u);
}

TEST_F(AdminEndpointsTest, ExplainFailoverWhenPriorityZeroIsUnhealthyPerEds) {
  test::tcp_echo_server remote;
  start(config({{"zone-a", 0, {{test::unused_port(), "UNHEALTHY"}, {test::unused_port(), "UNHEALTHY"}}},
                {"zone-b", 1, {{remote.port()}}}}));
  const auto r = get("/explain?sni=svc");
  ASSERT_EQ(r.code, 200);
  EXPECT_NE(r.body.find("priority 0 has 0% load because 2 are not healthy per EDS; priority 1 takes 100%"), std::string::npos)
      << r.body;
}

TEST_F(AdminEndpointsTest, ExplainNoHealthyHost) {
  // Panic disabled: with every host unhealthy there is nothing to pick.
  start(config({{"zone-a", 0, {{test::unused_port(), "UNHEALTHY"}, {test::unused_port(), "UNHEALTHY"}, {test::unused_port(), "UNHEALTHY"}}}},
               "    common_lb_config: {healthy_panic_threshold: {value: 0}}\n"));
  const auto r = get("/explain?sni=svc");
  ASSERT_EQ(r.code, 200);
  EXPECT_NE(r.body.find("conclusion: no healthy upstream: in cluster 'svc' 0 of 3 hosts are ejected and 3 unhealthy per "
                        "EDS, and panic mode is disabled (healthy_panic_threshold 0)"),
            std::string::npos)
      << r.body;
  // The gateway agrees: a real connection is closed with upstream_cx_none_healthy.
  const auto hello = test::make_client_hello("svc", {"istio"});
  test::unique_fd fd(test::connect_tcp(gw_->listener_port("east")));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  EXPECT_TRUE(test::wait_closed(fd.get()));
  EXPECT_EQ(gw_->stats().value("cluster.svc.upstream_cx_none_healthy"), 1);
}

TEST_F(AdminEndpointsTest, ExplainPanicWithEveryHostUnhealthy) {
  start(config({{"zone-a", 0, {{test::unused_port(), "UNHEALTHY"}, {test::unused_port(), "UNHEALTHY"}}}}));
  const auto r = get("/explain?sni=svc");
  ASSERT_EQ(r.code, 200);
  EXPECT_NE(r.body.find("priority 0 takes 100% in panic mode (healthy availability 0% is below the panic threshold 50% "
                        "because 2 are not healthy per EDS), so it picks among all its 2 hosts whatever their health"),
            std::string::npos)
      << r.body;
}

TEST_F(AdminEndpointsTest, ExplainNoChainAndUnknownClusters) {
  test::tcp_echo_server a;
  start(config({{"zone-a", 0, {{a.port()}}}}));
  // No chain for this name, and no default chain.
  auto r = get("/explain?sni=other.example");
  ASSERT_EQ(r.code, 200);
  EXPECT_NE(r.body.find("conclusion: no filter chain matches, so the connection is closed (no_filter_chain_match): "
                        "listener 'east': no filter chain names server name 'other.example'"),
            std::string::npos)
      << r.body;
  // The chain exists, but not for the offered ALPN.
  r = get("/explain?sni=svc&alpn=h2");
  EXPECT_NE(r.body.find("the chain(s) for server name 'svc' accept(s) ALPN istio, istio-peer-exchange; the client offers h2"),
            std::string::npos)
      << r.body;
  // sni_cluster names a cluster that does not exist.
  r = get("/explain?sni=a.sni.example");
  EXPECT_NE(r.body.find("filter chain 'by-sni' matches"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("conclusion: no route: cluster 'a.sni.example' is unknown"), std::string::npos) << r.body;
}

TEST_F(AdminEndpointsTest, ExplainRejectsBadRequestsAndKeepsServing) {
  test::tcp_echo_server a;
  start(config({{"zone-a", 0, {{a.port()}}}}));
  auto r = get("/explain");
  EXPECT_EQ(r.code, 400);
  EXPECT_NE(r.body.find("parameter 'sni' is required"), std::string::npos) << r.body;
  r = get("/explain?sni=");
  EXPECT_EQ(r.code, 400);
  r = get("/explain?sni=svc&listener=nope");
  EXPECT_EQ(r.code, 404);
  EXPECT_NE(r.body.find("unknown listener 'nope'; listeners in force: 'east'"), std::string::npos) << r.body;
  r = get("/explain?sni=svc&port=99999");
  EXPECT_EQ(r.code, 400);
  EXPECT_NE(r.body.find("'port'"), std::string::npos) << r.body;
  r = get("/explain?sni=svc&colour=blue");
  EXPECT_EQ(r.code, 400);
  EXPECT_NE(r.body.find("'colour'"), std::string::npos) << r.body;
  r = get("/explain?sni=a%00b");
  EXPECT_EQ(r.code, 400);
  r = get("/explain?sni=" + std::string(300, 'a'));
  EXPECT_EQ(r.code, 400);
  // Still serving, and still routing.
  r = get("/explain?sni=SVC&listener=east");
  EXPECT_EQ(r.code, 200);
  EXPECT_NE(r.body.find("filter chain 'svc-chain' matches"), std::string::npos) << r.body;
  connect(1);
}

// ---- /config_dump ---------------------------------------------------------------------------

// Parses a /config_dump answer into Envoy's own admin.v3.ConfigDump (every Any resolved
// through the generated descriptor pool).
envoy::admin::v3::ConfigDump parse_dump(const std::string& json) {
  envoy::admin::v3::ConfigDump dump;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &dump);
  EXPECT_TRUE(status.ok()) << status.message() << "\n" << json.substr(0, 2000);
  return dump;
}

template <class T>
bool unpack(const envoy::admin::v3::ConfigDump& dump, T& out) {
  for (const auto& c : dump.configs()) {
    if (c.Is<T>()) return c.UnpackTo(&out);
  }
  return false;
}

TEST_F(AdminEndpointsTest, ConfigDumpOfAStaticBootstrapParsesIntoTheAdminProtos) {
  test::tcp_echo_server a;
  start(config({{"zone-a", 0, {{a.port()}}}}));
  const auto r = get("/config_dump?include_eds");
  ASSERT_EQ(r.code, 200) << r.body;
  const auto dump = parse_dump(r.body);
  ASSERT_EQ(dump.configs_size(), 4);
  EXPECT_TRUE(dump.configs(0).Is<envoy::admin::v3::BootstrapConfigDump>());
  EXPECT_TRUE(dump.configs(1).Is<envoy::admin::v3::ClustersConfigDump>());
  EXPECT_TRUE(dump.configs(2).Is<envoy::admin::v3::EndpointsConfigDump>());
  EXPECT_TRUE(dump.configs(3).Is<envoy::admin::v3::ListenersConfigDump>());
  envoy::admin::v3::BootstrapConfigDump bootstrap;
  ASSERT_TRUE(unpack(dump, bootstrap));
  EXPECT_EQ(bootstrap.bootstrap().static_resources().listeners(0).name(), "east");
  EXPECT_TRUE(bootstrap.has_last_updated());
  envoy::admin::v3::ClustersConfigDump clusters;
  ASSERT_TRUE(unpack(dump, clusters));
  ASSERT_EQ(clusters.static_clusters_size(), 1);
  envoy::config::cluster::v3::Cluster cluster;
  ASSERT_TRUE(clusters.static_clusters(0).cluster().UnpackTo(&cluster));
  EXPECT_EQ(cluster.name(), "svc");
  EXPECT_EQ(clusters.dynamic_active_clusters_size(), 0);
  envoy::admin::v3::EndpointsConfigDump endpoints;
  ASSERT_TRUE(unpack(dump, endpoints));
  ASSERT_EQ(endpoints.static_endpoint_configs_size(), 1);
  envoy::config::endpoint::v3::ClusterLoadAssignment cla;
  ASSERT_TRUE(endpoints.static_endpoint_configs(0).endpoint_config().UnpackTo(&cla));
  EXPECT_EQ(cla.endpoints(0).lb_endpoints(0).endpoint().address().socket_address().port_value(), a.port());
  envoy::admin::v3::ListenersConfigDump listeners;
  ASSERT_TRUE(unpack(dump, listeners));
  ASSERT_EQ(listeners.static_listeners_size(), 1);
  envoy::config::listener::v3::Listener listener;
  ASSERT_TRUE(listeners.static_listeners(0).listener().UnpackTo(&listener));
  EXPECT_EQ(listener.filter_chains(0).name(), "svc-chain");

  // Without include_eds there is no endpoints dump, as in Envoy.
  EXPECT_EQ(parse_dump(get("/config_dump").body).configs_size(), 3);
  // resource=: each element of that field is one config.
  const auto only = parse_dump(get("/config_dump?resource=static_clusters").body);
  ASSERT_EQ(only.configs_size(), 1);
  EXPECT_TRUE(only.configs(0).Is<envoy::admin::v3::ClustersConfigDump::StaticCluster>());
  // mask=: fields kept in the configs it fits.
  const auto masked = parse_dump(get("/config_dump?mask=static_listeners").body);
  ASSERT_EQ(masked.configs_size(), 1);
  ASSERT_TRUE(masked.configs(0).UnpackTo(&listeners));
  EXPECT_EQ(listeners.static_listeners_size(), 1);
  // Bad parameters are named.
  auto bad = get("/config_dump?resource=nonsense");
  EXPECT_EQ(bad.code, 400);
  EXPECT_NE(bad.body.find("'resource'"), std::string::npos) << bad.body;
  bad = get("/config_dump?mask=no.such.field");
  EXPECT_EQ(bad.code, 400);
  EXPECT_NE(bad.body.find("'mask'"), std::string::npos) << bad.body;
  bad = get("/config_dump?include_edz");
  EXPECT_EQ(bad.code, 400);
  EXPECT_NE(bad.body.find("'include_edz'"), std::string::npos) << bad.body;
}

// An Istio-shaped gateway over xDS: the bootstrap has only dynamic_resources.
class AdminOverXdsTest : public AdminEndpointsTest {
 protected:
  void start_xds(const std::string& api, std::uint16_t control_plane_port) {
    const std::string text = R"(node: {id: router~127.0.0.1~ewgw-test.istio-system~istio-system.svc.cluster.local, cluster: ewgw-test}
dynamic_resources:
  ads_config:
    api_type: )" + api + R"(
    transport_api_version: V3
    grpc_services: [{google_grpc: {target_uri: "127.0.0.1:)" +
                             std::to_string(control_plane_port) + R"(", stat_prefix: xds-grpc}}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
)";
    auto loaded = xds::load_bootstrap_text(text, "xds.yaml");
    ASSERT_TRUE(loaded.diag.ok()) << (loaded.diag.errors.empty() ? "" : loaded.diag.errors[0]);
    store_->set_bootstrap(loaded.bootstrap_proto);
    gw_ = std::make_unique<proxy::gateway>(proxy::gateway_options{2});
    ASSERT_TRUE(gw_->apply(loaded.config).empty());
    ASSERT_FALSE(gw_->start());
    xds::ads_client_options o;
    o.initial_backoff = 50ms;
    o.max_backoff = 200ms;
    o.config_dump = store_;
    xds_ = std::make_unique<proxy::xds_controller>(*gw_, loaded.config, o);
    gw_->set_readiness_gate([client = &xds_->client()] { return client->ready(); });
    serve_admin();
    xds_->start();
  }

  void publish(test::test_control_plane& cp, const std::string& sni, std::uint16_t backend) {
    cp.set_clusters({test::istio::sni_dnat_cluster(sni)});
    cp.set_endpoints({test::istio::local_assignment(sni, {backend})});
    cp.set_listeners({test::istio::gateway_listener(listener_port_, {{sni, sni}})});
    cp.push();
  }

  void check_dump(const std::string& sni, std::uint16_t backend) {
    const auto r = get("/config_dump?include_eds");
    ASSERT_EQ(r.code, 200) << r.body;
    const auto dump = parse_dump(r.body);
    envoy::admin::v3::ClustersConfigDump clusters;
    ASSERT_TRUE(unpack(dump, clusters));
    EXPECT_EQ(clusters.static_clusters_size(), 0);
    ASSERT_EQ(clusters.dynamic_active_clusters_size(), 1);
    const auto& dc = clusters.dynamic_active_clusters(0);
    EXPECT_FALSE(dc.version_info().empty());
    EXPECT_TRUE(dc.has_last_updated());
    envoy::config::cluster::v3::Cluster cluster;
    ASSERT_TRUE(dc.cluster().UnpackTo(&cluster));
    EXPECT_EQ(cluster.name(), sni);
    envoy::admin::v3::EndpointsConfigDump endpoints;
    ASSERT_TRUE(unpack(dump, endpoints));
    ASSERT_EQ(endpoints.dynamic_endpoint_configs_size(), 1);
    envoy::config::endpoint::v3::ClusterLoadAssignment cla;
    ASSERT_TRUE(endpoints.dynamic_endpoint_configs(0).endpoint_config().UnpackTo(&cla));
    EXPECT_EQ(cla.cluster_name(), sni);
    EXPECT_EQ(cla.endpoints(0).lb_endpoints(0).endpoint().address().socket_address().port_value(), backend);
    envoy::admin::v3::ListenersConfigDump listeners;
    ASSERT_TRUE(unpack(dump, listeners));
    ASSERT_EQ(listeners.dynamic_listeners_size(), 1);
    const auto& dl = listeners.dynamic_listeners(0);
    EXPECT_EQ(dl.name(), "0.0.0.0_15443");
    ASSERT_TRUE(dl.has_active_state());
    EXPECT_FALSE(dl.active_state().version_info().empty());
    envoy::config::listener::v3::Listener listener;
    ASSERT_TRUE(dl.active_state().listener().UnpackTo(&listener));
    ASSERT_GE(listener.filter_chains_size(), 1);
    EXPECT_EQ(listener.filter_chains(0).filter_chain_match().server_names(0), sni);
    // istio.stats' config type is unknown here: it is named, not dropped or fatal.
    EXPECT_NE(r.body.find("type.googleapis.com/stats.PluginConfig"), std::string::npos);
  }

  std::uint16_t listener_port_ = test::unused_port();
};

TEST_F(AdminOverXdsTest, ConfigDumpShowsResourcesFromTheControlPlaneDelta) {
  test::tcp_echo_server backend;
  test::test_control_plane cp;
  cp.start();
  const std::string sni = test::istio::sni_name("helloworld.sample.svc.cluster.local", 5000);
  publish(cp, sni, backend.port());
  start_xds("DELTA_GRPC", cp.port());
  ASSERT_TRUE(test::test_control_plane::wait_until([&] { return http_get(probe_->port(), "/healthz/ready").code == 200; }));
  check_dump(sni, backend.port());
}

TEST_F(AdminOverXdsTest, ConfigDumpShowsResourcesFromTheControlPlaneStateOfTheWorld) {
  test::tcp_echo_server backend;
  test::test_control_plane cp;
  cp.start();
  const std::string sni = test::istio::sni_name("helloworld.sample.svc.cluster.local", 5000);
  publish(cp, sni, backend.port());
  start_xds("GRPC", cp.port());
  ASSERT_TRUE(test::test_control_plane::wait_until([&] { return http_get(probe_->port(), "/healthz/ready").code == 200; }));
  check_dump(sni, backend.port());
  const auto dump = parse_dump(get("/config_dump").body);
  envoy::admin::v3::ClustersConfigDump clusters;
  ASSERT_TRUE(unpack(dump, clusters));
  EXPECT_EQ(clusters.version_info(), clusters.dynamic_active_clusters(0).version_info());  // SotW: "v<generation>"
  EXPECT_EQ(clusters.version_info().substr(0, 1), "v");
  // explain sees the same cluster, from CDS.
  const auto r = get("/explain?sni=" + sni);
  EXPECT_NE(r.body.find("cluster '" + sni + "' (from CDS, EDS service '" + sni + "')"), std::string::npos) << r.body;
}

// ---- readiness ------------------------------------------------------------------------------

TEST_F(AdminOverXdsTest, ReadinessIsStartingUntilTheControlPlaneAnswersThenReadyThenDraining) {
  test::tcp_echo_server backend;
  test::control_plane_options o;
  o.port = test::unused_port();
  test::test_control_plane cp(o);
  const std::string sni = test::istio::sni_name("helloworld.sample.svc.cluster.local", 5000);
  // The control plane is not serving yet: the gateway runs, retries, and is not ready.
  start_xds("DELTA_GRPC", o.port);
  EXPECT_EQ(http_get(probe_->port(), "/healthz/ready").code, 503);
  auto ready = get("/ready");
  EXPECT_EQ(ready.code, 503);
  EXPECT_EQ(ready.body, "PRE_INITIALIZING\n");
  std::this_thread::sleep_for(300ms);  // several reconnect attempts later, still not ready
  EXPECT_EQ(http_get(probe_->port(), "/healthz/ready").code, 503);

  cp.start();
  publish(cp, sni, backend.port());
  ASSERT_TRUE(test::test_control_plane::wait_until([&] { return http_get(probe_->port(), "/healthz/ready").code == 200; }));
  ready = get("/ready");
  EXPECT_EQ(ready.code, 200);
  EXPECT_EQ(ready.body, "LIVE\n");

  ASSERT_EQ(std::system(("curl -s -m 5 -X POST -o /dev/null http://127.0.0.1:" + std::to_string(admin_->port()) +
                         "/drain_listeners")
                            .c_str()),
            0);
  const auto probe = http_get(probe_->port(), "/healthz/ready");
  EXPECT_EQ(probe.code, 503);
  EXPECT_EQ(probe.body, "DRAINING\n");
}

}  // namespace
}  // namespace ewgw
