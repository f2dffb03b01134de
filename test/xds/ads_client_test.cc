// The ADS client end to end: a real in-process gateway follows the test control plane (a real
// gRPC server on the official protos, behaving like istiod) while real TCP connections go
// through it. Every test runs with state of the world and with Delta.
//
// Waits are bounded polls (config propagation is asynchronous); no test asserts on durations.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>

#include "proxy/gateway.h"
#include "proxy/xds_controller.h"
#include "xds/ads_client.h"
#include "test/support/certs.h"
#include "test/support/client_hello_bytes.h"
#include "test/support/tcp_util.h"
#include "test/xds/istio_fixtures.h"
#include "test/xds/test_control_plane.h"

namespace ewgw {
namespace {

namespace istio = test::istio;
using namespace std::chrono_literals;

const std::string svc_a = istio::sni_name("a.sample.svc.cluster.local", 5000);
const std::string svc_b = istio::sni_name("b.sample.svc.cluster.local", 5000);
const std::string svc_c = istio::sni_name("c.sample.svc.cluster.local", 5000);

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout = 10s) {
  return test::test_control_plane::wait_until(pred, timeout);
}

class AdsClientTest : public ::testing::TestWithParam<xds::xds_api> {
 protected:
  static void SetUpTestSuite() { test::ignore_sigpipe(); }

  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ewgw-ads-" + std::to_string(::getpid()) + "-" + std::to_string(reinterpret_cast<std::uintptr_t>(this)));
    std::filesystem::create_directories(dir_);
    listener_port_ = test::unused_port();
  }

  void TearDown() override {
    if (xds_) xds_->stop();
    if (gw_) gw_->stop();
    if (cp_) cp_->stop();
    std::filesystem::remove_all(dir_);
  }

  void start_control_plane(test::control_plane_options o = {}) {
    cp_ = std::make_unique<test::test_control_plane>(o);
    cp_->start();
  }

  xds::bootstrap_config bootstrap(const std::string& target) const {
    xds::bootstrap_config b;
    b.node.id = "router~127.0.0.1~istio-eastwestgateway-test.istio-system~istio-system.svc.cluster.local";
    b.node.cluster = "istio-eastwestgateway.istio-system";
    b.node.metadata_json = R"({"CLUSTER_ID":"cluster2","NETWORK":"network2"})";
    xds::ads_config a;
    a.api = GetParam();
    a.target = target;
    a.node_on_first_message_only = true;
    a.initial_metadata.push_back({"clusterid", "cluster2"});
    b.ads = a;
    return b;
  }

  void start_gateway(const xds::bootstrap_config& b) {
    gw_ = std::make_unique<proxy::gateway>(proxy::gateway_options{2});
    ASSERT_TRUE(gw_->apply(b).empty());
    ASSERT_FALSE(gw_->start());
    xds::ads_client_options o;
    o.initial_backoff = 50ms;
    o.max_backoff = 400ms;
    o.listener_wait = listener_wait_;
    xds_ = std::make_unique<proxy::xds_controller>(*gw_, b, o);
    xds_->start();
  }

  // Services (SNI -> backend ports) published as istiod would: an SNI-DNAT cluster, its
  // assignment and a chain on the 15443 listener each.
  void publish(const std::vector<std::pair<std::string, std::vector<std::uint16_t>>>& services,
               std::vector<envoy::config::cluster::v3::Cluster> extra_clusters = {},
               std::vector<istio::chain_spec> extra_chains = {}) {
    std::vector<envoy::config::cluster::v3::Cluster> clusters;
    std::vector<envoy::config::endpoint::v3::ClusterLoadAssignment> cla;
    std::vector<istio::chain_spec> chains;
    for (const auto& [sni, ports] : services) {
      clusters.push_back(istio::sni_dnat_cluster(sni));
      cla.push_back(istio::local_assignment(sni, ports));
      chains.push_back({sni, sni});
    }
    for (auto& c : extra_clusters) clusters.push_back(std::move(c));
    for (auto& c : extra_chains) chains.push_back(std::move(c));
    cp_->set_clusters(clusters);
    cp_->set_endpoints(cla);
    cp_->set_listeners({istio::gateway_listener(listener_port_, chains)});
    cp_->push();
  }

  ::testing::AssertionResult becomes_ready() {
    if (eventually([&] { return xds_->ready(); })) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "not ready: " << xds_->client().status().last_error;
  }

  // One connection for `sni` reaches `backend` (it receives the whole ClientHello). The
  // connection is returned open in `keep` when given.
  bool reaches(const std::string& sni, test::tcp_sink_server& backend, test::unique_fd* keep = nullptr,
               std::chrono::milliseconds timeout = 2s) {
    const auto hello = test::make_client_hello(sni, {"istio"});
    const std::size_t index = backend.connections_accepted();
    test::unique_fd fd(test::connect_tcp(listener_port_, 2s));
    if (!fd) return false;
    if (!test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()})) return false;
    // Until the backend has the ClientHello, or the gateway closes the connection.
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!backend.wait_for_bytes(index, hello.size(), 10ms)) {
      if (closed_by_peer(fd.get()) || std::chrono::steady_clock::now() >= deadline) return false;
    }
    if (keep != nullptr) *keep = std::move(fd);
    return true;
  }

  static bool closed_by_peer(int fd) {
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK);
  }

  // A connection for `sni` is closed by the gateway without reaching any backend.
  bool refused(const std::string& sni, std::chrono::milliseconds timeout = 2s) {
    const auto hello = test::make_client_hello(sni, {"istio"});
    test::unique_fd fd(test::connect_tcp(listener_port_, 2s));
    if (!fd) return true;  // no listener at all
    test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()});
    return test::wait_closed(fd.get(), timeout);
  }

  bool eventually_reaches(const std::string& sni, test::tcp_sink_server& backend) {
    return eventually([&] { return reaches(sni, backend, nullptr, 300ms); });
  }

  bool eventually_refused(const std::string& sni) {
    return eventually([&] { return refused(sni, 300ms); });
  }

  ::testing::AssertionResult still_relays(int fd, test::tcp_sink_server& backend, std::size_t index,
                                          const std::string& tag) {
    const std::size_t before = backend.received(index).size();
    if (!test::send_all(fd, "up:" + tag)) return ::testing::AssertionFailure() << "send failed";
    if (!backend.wait_for_bytes(index, before + 3 + tag.size())) return ::testing::AssertionFailure() << "upstream missed data";
    if (!backend.send(index, "down:" + tag)) return ::testing::AssertionFailure() << "backend send failed";
    std::string got;
    if (!test::read_exact(fd, 5 + tag.size(), got)) return ::testing::AssertionFailure() << "client missed data";
    if (got != "down:" + tag) return ::testing::AssertionFailure() << "got " << got;
    return ::testing::AssertionSuccess();
  }

  std::int64_t stat(const std::string& name) const { return gw_->stats().value(name); }

  std::string write_file(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path, std::ios::trunc) << text;
    return path.string();
  }

  std::filesystem::path dir_;
  std::uint16_t listener_port_ = 0;
  std::chrono::milliseconds listener_wait_ = 1s;
  std::unique_ptr<test::test_control_plane> cp_;
  std::unique_ptr<proxy::gateway> gw_;
  std::unique_ptr<proxy::xds_controller> xds_;
};

// gRPC 1.51's tcp_read_chunks experiment keeps a read buffer as large as istiod's largest push
// for the stream's life; the client turns it off and keeps what the operator set.
TEST(GrpcEnvironment, TurnsOffReadChunksAndKeepsTheOperatorsExperiments) {
  EXPECT_EQ(xds::grpc_experiments_for_xds(nullptr), "-tcp_read_chunks");
  EXPECT_EQ(xds::grpc_experiments_for_xds(""), "-tcp_read_chunks");
  EXPECT_EQ(xds::grpc_experiments_for_xds("event_engine_client"), "event_engine_client,-tcp_read_chunks");
  EXPECT_EQ(xds::grpc_experiments_for_xds("tcp_read_chunks"), std::nullopt);
  EXPECT_EQ(xds::grpc_experiments_for_xds("x,-tcp_read_chunks"), std::nullopt);
}

TEST_P(AdsClientTest, FollowsServicesAddedAndRemoved) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  start_control_plane();
  publish({{svc_a, {a.port()}}});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  EXPECT_TRUE(eventually_reaches(svc_a, a));
  EXPECT_EQ(stat("control_plane.connected_state"), 1);
  EXPECT_GE(stat("cluster_manager.cds.update_success"), 1);
  EXPECT_GE(stat("listener_manager.lds.update_success"), 1);
  EXPECT_GE(stat("cluster." + svc_a + ".update_success"), 1);
  EXPECT_EQ(stat("cluster_manager.cds.update_rejected"), 0);
  EXPECT_EQ(stat("cluster." + svc_a + ".update_rejected"), 0);
  EXPECT_EQ(stat("cluster_manager.active_clusters"), 1);
  EXPECT_EQ(stat("cluster_manager.warming_clusters"), 0);

  publish({{svc_a, {a.port()}}, {svc_b, {b.port()}}});
  EXPECT_TRUE(eventually_reaches(svc_b, b));
  EXPECT_TRUE(reaches(svc_a, a));
  // Set after the apply that the traffic above already sees.
  EXPECT_TRUE(eventually([&] { return stat("cluster_manager.active_clusters") == 2; }));
  // Each EDS cluster has its own update counters (a table keyed by cluster name).
  EXPECT_GE(stat("cluster." + svc_b + ".update_success"), 1);
  EXPECT_GE(stat("cluster." + svc_b + ".update_attempt"), stat("cluster." + svc_b + ".update_success"));
  EXPECT_GE(stat("cluster." + svc_a + ".update_success"), 1);

  publish({{svc_b, {b.port()}}});
  EXPECT_TRUE(eventually_refused(svc_a));
  EXPECT_TRUE(reaches(svc_b, b));
  EXPECT_TRUE(cp_->wait_synced());
  EXPECT_TRUE(cp_->nacks().empty());

  // What istiod learned about the gateway on the stream.
  const auto streams = cp_->streams();
  ASSERT_FALSE(streams.empty());
  EXPECT_EQ(streams[0].node_id, "router~127.0.0.1~istio-eastwestgateway-test.istio-system~istio-system.svc.cluster.local");
  EXPECT_NE(streams[0].node_metadata_json.find("cluster2"), std::string::npos);
  EXPECT_EQ(streams[0].cluster_id, "cluster2");
  EXPECT_FALSE(streams[0].node_on_later_requests);
  EXPECT_EQ(streams[0].delta, GetParam() == xds::xds_api::delta);
}

TEST_P(AdsClientTest, FollowsEndpointChanges) {
  test::tcp_sink_server first;
  test::tcp_sink_server second;
  start_control_plane();
  publish({{svc_a, {first.port()}}});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  EXPECT_TRUE(eventually_reaches(svc_a, first));
  test::unique_fd open;
  ASSERT_TRUE(reaches(svc_a, first, &open));
  const std::size_t open_index = first.connections_accepted() - 1;

  // Only EDS changes (istiod's incremental EDS push).
  cp_->set_endpoints({istio::local_assignment(svc_a, {second.port()})});
  cp_->push();
  EXPECT_TRUE(eventually_reaches(svc_a, second));
  const std::size_t first_count = first.connections_accepted();
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(reaches(svc_a, second));
  EXPECT_EQ(first.connections_accepted(), first_count);
  // The connection to the removed endpoint is kept until its peers end it.
  EXPECT_TRUE(still_relays(open.get(), first, open_index, "kept"));
}

TEST_P(AdsClientTest, ConnectionOnAnUnchangedChainSurvivesListenerChanges) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  test::tcp_sink_server c;
  start_control_plane();
  publish({{svc_a, {a.port()}}});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  test::unique_fd long_lived;
  ASSERT_TRUE(eventually([&] { return reaches(svc_a, a, &long_lived); }));
  const std::size_t index = a.connections_accepted() - 1;
  ASSERT_TRUE(still_relays(long_lived.get(), a, index, "before"));

  // Adding a service changes the 15443 listener (istio#51655: Envoy drains such connections).
  publish({{svc_a, {a.port()}}, {svc_b, {b.port()}}});
  ASSERT_TRUE(eventually_reaches(svc_b, b));
  ASSERT_TRUE(still_relays(long_lived.get(), a, index, "after-add"));
  publish({{svc_a, {a.port()}}, {svc_c, {c.port()}}});
  ASSERT_TRUE(eventually_reaches(svc_c, c));
  ASSERT_TRUE(still_relays(long_lived.get(), a, index, "after-swap"));
  // A new listener next to it (istiod exposing 15012 through the gateway).
  const std::uint16_t passthrough_port = test::unused_port();
  auto clusters = std::vector{istio::sni_dnat_cluster(svc_a), istio::sni_dnat_cluster(svc_c)};
  cp_->set_clusters(clusters);
  cp_->set_listeners({istio::gateway_listener(listener_port_, {{svc_a, svc_a}, {svc_c, svc_c}}),
                      istio::passthrough_listener("0.0.0.0_15012", passthrough_port, svc_c)});
  cp_->push();
  ASSERT_TRUE(eventually([&] { return gw_->listener_port("0.0.0.0_15012") == passthrough_port; }));
  ASSERT_TRUE(still_relays(long_lived.get(), a, index, "after-new-listener"));
  EXPECT_EQ(gw_->listener_port("0.0.0.0_15443"), listener_port_);
  EXPECT_TRUE(cp_->nacks().empty());
}

TEST_P(AdsClientTest, InvalidResourceIsNackedAndTheLastGoodConfigStays) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  start_control_plane();
  publish({{svc_a, {a.port()}}});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  test::unique_fd open;
  ASSERT_TRUE(eventually([&] { return reaches(svc_a, a, &open); }));
  const std::size_t index = a.connections_accepted() - 1;

  // A cluster with a negative connect timeout, next to a valid new one.
  auto bad = istio::sni_dnat_cluster(svc_b);
  bad.mutable_connect_timeout()->set_seconds(-5);
  cp_->set_clusters({istio::sni_dnat_cluster(svc_a), bad});
  cp_->push();
  ASSERT_TRUE(eventually([&] { return !cp_->nacks().empty(); }));
  auto nack = cp_->nacks().back();
  EXPECT_EQ(nack.type_url, test::cluster_type);
  EXPECT_NE(nack.message.find("cluster '" + svc_b + "': connect_timeout: must not be negative"), std::string::npos)
      << nack.message;
  EXPECT_EQ(nack.code, 13);
  if (GetParam() == xds::xds_api::sotw) {
    EXPECT_EQ(nack.version, "v1");  // the last accepted version
  }
  EXPECT_TRUE(still_relays(open.get(), a, index, "after-nack"));
  EXPECT_TRUE(reaches(svc_a, a));
  EXPECT_GE(stat("cluster_manager.cds.update_rejected"), 1);

  // An invalid listener (a negative listener_filters_timeout): NACKed too, 15443 keeps its
  // chains. (One with a filter ewgw does not implement is not invalid: see
  // ListenerWithUnimplementedFilterIsAcceptedButNotBound.)
  auto listener = istio::gateway_listener(listener_port_, {{svc_a, svc_a}});
  listener.mutable_listener_filters_timeout()->set_seconds(-1);
  cp_->set_clusters({istio::sni_dnat_cluster(svc_a)});
  cp_->set_listeners({listener});
  cp_->push();
  ASSERT_TRUE(eventually([&] {
    const auto n = cp_->nacks();
    return !n.empty() && n.back().type_url == test::listener_type;
  }));
  EXPECT_NE(cp_->nacks().back().message.find("listener '0.0.0.0_15443'"), std::string::npos);
  EXPECT_TRUE(reaches(svc_a, a));
  EXPECT_TRUE(still_relays(open.get(), a, index, "after-lds-nack"));

  // Fixed: accepted again.
  publish({{svc_a, {a.port()}}, {svc_b, {b.port()}}});
  EXPECT_TRUE(eventually_reaches(svc_b, b));
  EXPECT_TRUE(cp_->wait_synced());
}

TEST_P(AdsClientTest, ClustersWithUnimplementedSettingsDoNotBlockUpdates) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  start_control_plane();
  const auto outbound = istio::dns_cluster("api.example.com", 443);
  publish({{svc_a, {a.port()}}}, {outbound});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  EXPECT_TRUE(eventually_reaches(svc_a, a));
  // Still accepted with it present, and a chain routed to it closes its connections.
  const std::string via_outbound = "outbound.example";
  publish({{svc_a, {a.port()}}, {svc_b, {b.port()}}}, {istio::dns_cluster("api.example.com", 443)},
          {{via_outbound, outbound.name()}});
  EXPECT_TRUE(eventually_reaches(svc_b, b));
  EXPECT_TRUE(refused(via_outbound));
  EXPECT_TRUE(eventually([&] { return stat("cluster." + outbound.name() + ".upstream_cx_unsupported_config") == 1; }));
  EXPECT_TRUE(cp_->nacks().empty());
}

// An HTTP Gateway server bound to the east-west gateway's pods makes istiod send a listener
// with an http_connection_manager (and an AuthorizationPolicy on the gateway an rbac network
// filter). ewgw accepts it as unusable and does not bind it; the rest of the LDS update applies,
// nothing is NACKed, and the gauge and the log say so.
TEST_P(AdsClientTest, ListenerWithUnimplementedFilterIsAcceptedButNotBound) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  start_control_plane();
  publish({{svc_a, {a.port()}}});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  EXPECT_TRUE(eventually_reaches(svc_a, a));

  const std::uint16_t http_port = test::unused_port();
  auto http = istio::passthrough_listener("0.0.0.0_" + std::to_string(http_port), http_port, svc_a);
  auto* hcm = http.mutable_filter_chains(0)->mutable_filters(1);
  hcm->set_name("envoy.filters.network.http_connection_manager");
  hcm->mutable_typed_config()->set_type_url(
      "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager");
  hcm->mutable_typed_config()->clear_value();
  cp_->set_clusters({istio::sni_dnat_cluster(svc_a), istio::sni_dnat_cluster(svc_b)});
  cp_->set_endpoints({istio::local_assignment(svc_a, {a.port()}), istio::local_assignment(svc_b, {b.port()})});
  cp_->set_listeners({istio::gateway_listener(listener_port_, {{svc_a, svc_a}, {svc_b, svc_b}}), http});
  cp_->push();
  EXPECT_TRUE(eventually_reaches(svc_b, b));  // the rest of the update applied
  EXPECT_TRUE(cp_->wait_synced());
  EXPECT_TRUE(cp_->nacks().empty()) << cp_->nacks().back().message;
  EXPECT_TRUE(eventually([&] { return stat("listener_manager.total_listeners_unusable") == 1; }));
  EXPECT_EQ(xds_->client().status().unusable_listeners, 1u);
  EXPECT_EQ(gw_->listener_port(http.name()), 0) << "an unusable listener is not bound";
  EXPECT_FALSE(test::unique_fd(test::connect_tcp(http_port, 1s))) << "nothing listens on its port";
  EXPECT_TRUE(xds_->ready());

  // Made usable (tcp_proxy again): bound and served; the gauge returns to 0.
  cp_->set_listeners({istio::gateway_listener(listener_port_, {{svc_a, svc_a}, {svc_b, svc_b}}),
                      istio::passthrough_listener(http.name(), http_port, svc_a)});
  cp_->push();
  EXPECT_TRUE(eventually([&] { return gw_->listener_port(http.name()) == http_port; }));
  EXPECT_TRUE(eventually([&] { return stat("listener_manager.total_listeners_unusable") == 0; }));
  EXPECT_TRUE(cp_->nacks().empty());
}

// istiod exposed through the east-west gateway (Istio's expose-istiod): a 15012 listener with
// one catch-all chain to outbound|15012||istiod..., an auto-mTLS cluster whose endpoints (istiod
// has no sidecar) are plaintext; the client's TLS passes through untouched.
TEST_P(AdsClientTest, ExposesIstiodThroughItsOutboundCluster) {
  test::tcp_sink_server istiod;
  test::tcp_sink_server sidecar;  // an endpoint needing Istio mTLS origination: never used
  start_control_plane();
  const auto cluster = istio::outbound_cluster("istiod.istio-system.svc.cluster.local", 15012);
  const std::uint16_t port = test::unused_port();
  istio::locality_spec l;
  l.endpoints = {{"127.0.0.1", istiod.port(), 1, true, ""}, {"127.0.0.1", sidecar.port(), 1, true, "istio"}};
  cp_->set_clusters({cluster});
  cp_->set_endpoints({istio::assignment(cluster.name(), {l})});
  cp_->set_listeners({istio::passthrough_listener("0.0.0.0_15012", port, cluster.name())});
  cp_->push();
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  listener_port_ = port;
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(eventually_reaches("istiod.istio-system.svc", istiod));
  EXPECT_EQ(sidecar.connections_accepted(), 0u);
  EXPECT_TRUE(cp_->nacks().empty());
}

TEST_P(AdsClientTest, ControlPlaneRestartResyncsWithoutLosingOrDuplicatingResources) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  test::tcp_sink_server c;
  start_control_plane();
  publish({{svc_a, {a.port()}}, {svc_b, {b.port()}}});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  test::unique_fd open;
  ASSERT_TRUE(eventually([&] { return reaches(svc_a, a, &open); }));
  const std::size_t index = a.connections_accepted() - 1;

  cp_->stop();
  ASSERT_TRUE(eventually([&] { return !xds_->client().connected(); }));
  EXPECT_EQ(stat("control_plane.connected_state"), 0);
  // The gateway keeps serving what it has.
  EXPECT_TRUE(reaches(svc_b, b));
  EXPECT_TRUE(still_relays(open.get(), a, index, "cp-down"));

  // It comes back on the same port with a different world: b removed, c added.
  const std::size_t streams_before = cp_->streams_opened();
  publish({{svc_a, {a.port()}}, {svc_c, {c.port()}}});
  cp_->start();
  ASSERT_TRUE(eventually([&] { return cp_->streams_opened() > streams_before && xds_->client().connected(); }));
  EXPECT_TRUE(eventually_reaches(svc_c, c));
  EXPECT_TRUE(eventually_refused(svc_b));
  EXPECT_TRUE(reaches(svc_a, a));
  EXPECT_TRUE(still_relays(open.get(), a, index, "cp-back"));
  EXPECT_TRUE(cp_->wait_synced());
  EXPECT_TRUE(cp_->nacks().empty());
  if (GetParam() == xds::xds_api::delta) {
    // The new stream told the server what the gateway holds.
    const auto streams = cp_->streams();
    const auto& versions = streams.back().initial_versions;
    ASSERT_TRUE(versions.contains(test::cluster_type));
    EXPECT_TRUE(versions.at(test::cluster_type).contains(svc_a));
    EXPECT_TRUE(versions.at(test::cluster_type).contains(svc_b));
    EXPECT_TRUE(versions.at(test::listener_type).contains("0.0.0.0_15443"));
    // EDS: the versions of the subscribed assignments (the client's subscription and the
    // state's versions are walked together).
    ASSERT_TRUE(versions.contains(test::endpoint_type));
    EXPECT_TRUE(versions.at(test::endpoint_type).contains(svc_a));
    EXPECT_TRUE(versions.at(test::endpoint_type).contains(svc_b));
  }
  // Exactly the published resources are held: clusters a and c, one listener.
  const auto status = xds_->client().status();
  EXPECT_TRUE(status.ready);
  EXPECT_GE(status.streams_opened, 2u);
  EXPECT_EQ(status.clusters, 2u);
  EXPECT_EQ(status.listeners, 1u);
  EXPECT_EQ(status.warming_clusters, 0u);
}

TEST_P(AdsClientTest, KeepsServingWhenTheControlPlaneDies) {
  test::tcp_sink_server a;
  start_control_plane();
  publish({{svc_a, {a.port()}}});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  ASSERT_TRUE(eventually_reaches(svc_a, a));
  cp_.reset();  // gone for good
  ASSERT_TRUE(eventually([&] { return !xds_->client().connected(); }));
  // Several reconnect attempts later, still serving and still ready (the config in force stays).
  const auto opened = xds_->client().status().streams_opened;
  ASSERT_TRUE(eventually([&] { return xds_->client().status().streams_opened >= opened + 3; }));
  EXPECT_TRUE(reaches(svc_a, a));
  EXPECT_TRUE(xds_->ready());
}

TEST_P(AdsClientTest, ResumesAfterPeriodicServerSideStreamClose) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  test::control_plane_options o;
  o.max_stream_age = 300ms;  // istiod: keepaliveMaxServerConnectionAge, ~30 min
  start_control_plane(o);
  publish({{svc_a, {a.port()}}});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  test::unique_fd open;
  ASSERT_TRUE(eventually([&] { return reaches(svc_a, a, &open); }));
  const std::size_t index = a.connections_accepted() - 1;
  const auto applies = xds_->client().status().applies;
  // Several streams come and go; traffic is unaffected and nothing is re-applied.
  ASSERT_TRUE(eventually([&] { return cp_->streams_opened() >= 4; }));
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(reaches(svc_a, a));
  EXPECT_TRUE(still_relays(open.get(), a, index, "after-reconnects"));
  EXPECT_EQ(xds_->client().status().applies, applies);
  // And updates still arrive.
  publish({{svc_a, {a.port()}}, {svc_b, {b.port()}}});
  EXPECT_TRUE(eventually_reaches(svc_b, b));
  EXPECT_TRUE(cp_->nacks().empty());
}

TEST_P(AdsClientTest, TokenIsRequiredAndReReadWhenRotated) {
  test::tcp_sink_server a;
  test::control_plane_options o;
  o.required_token = "token-1";
  start_control_plane(o);
  publish({{svc_a, {a.port()}}});
  auto b = bootstrap(cp_->address());
  b.ads->token_file = write_file("istio-token", "wrong-token\n");
  start_gateway(b);
  // Refused (UNAUTHENTICATED), retried, never ready.
  ASSERT_TRUE(eventually([&] { return cp_->rejected_streams() >= 2; }));
  EXPECT_FALSE(xds_->ready());
  EXPECT_NE(xds_->client().status().last_error.find("UNAUTHENTICATED"), std::string::npos)
      << xds_->client().status().last_error;

  // The kubelet rotates the projected token: the next stream presents it.
  write_file("istio-token", "token-1\n");
  ASSERT_TRUE(becomes_ready());
  EXPECT_TRUE(eventually_reaches(svc_a, a));
  EXPECT_EQ(cp_->streams().back().authorization, "Bearer token-1");

  // Rotated again while connected; the control plane restarts expecting the new one.
  write_file("istio-token", "token-2");
  const auto port = cp_->port();
  cp_->stop();
  o.required_token = "token-2";
  o.port = port;
  cp_ = std::make_unique<test::test_control_plane>(o);
  publish({{svc_a, {a.port()}}});
  cp_->start();
  ASSERT_TRUE(eventually([&] { return cp_->streams_opened() >= 1 && xds_->client().connected(); }));
  EXPECT_EQ(cp_->streams().back().authorization, "Bearer token-2");
  EXPECT_EQ(cp_->rejected_streams(), 0u);
}

TEST_P(AdsClientTest, TlsVerifiesTheServerAgainstTheRootFile) {
  test::tcp_sink_server a;
  test::test_pki mesh("mesh");
  test::test_pki other("other");
  const auto istiod = mesh.make_leaf("istiod", {"istiod.istio-system.svc"}, test::cert_usage::server);
  test::control_plane_options o;
  o.tls = true;
  o.cert_chain = istiod.chain;
  o.key = istiod.key;
  start_control_plane(o);
  publish({{svc_a, {a.port()}}});

  // The wrong root: refused, retried, not ready.
  auto b = bootstrap(cp_->address());
  b.ads->tls = true;
  b.ads->server_name = "istiod.istio-system.svc";
  b.ads->root_cert_file = write_file("wrong-root.pem", other.root_pem());
  start_gateway(b);
  ASSERT_TRUE(eventually([&] { return xds_->client().status().streams_opened >= 2; }));
  EXPECT_FALSE(xds_->ready());
  EXPECT_EQ(cp_->streams_opened(), 0u);
  xds_->stop();
  gw_->stop();

  // The mesh root and istiod's name: connected and serving.
  b.ads->root_cert_file = write_file("root-cert.pem", mesh.root_pem());
  start_gateway(b);
  ASSERT_TRUE(becomes_ready());
  EXPECT_TRUE(eventually_reaches(svc_a, a));

  // The right root but a name the certificate does not carry: refused.
  xds_->stop();
  gw_->stop();
  b.ads->server_name = "not-istiod.example";
  const auto opened = cp_->streams_opened();
  start_gateway(b);
  ASSERT_TRUE(eventually([&] { return xds_->client().status().streams_opened >= 2; }));
  EXPECT_FALSE(xds_->ready());
  EXPECT_EQ(cp_->streams_opened(), opened);
}

// istiod on 15012 with mutual TLS: the control plane requires a client certificate from the
// mesh's CA. The right one is accepted; none, or one from another CA, is refused and the
// gateway keeps retrying, not ready.
TEST_P(AdsClientTest, ClientCertificateTowardsTheControlPlane) {
  test::tcp_sink_server a;
  test::test_pki mesh("mesh");
  test::test_pki other("other");
  const auto istiod = mesh.make_leaf("istiod", {"istiod.istio-system.svc"}, test::cert_usage::server);
  const auto gateway = mesh.make_leaf("eastwestgateway", {"spiffe://cluster.local/ns/istio-system/sa/ew"},
                                      test::cert_usage::client);
  const auto stranger = other.make_leaf("stranger", {"stranger.example"}, test::cert_usage::client);
  test::control_plane_options o;
  o.tls = true;
  o.cert_chain = istiod.chain;
  o.key = istiod.key;
  o.client_ca = mesh.root_pem();
  start_control_plane(o);
  publish({{svc_a, {a.port()}}});

  auto b = bootstrap(cp_->address());
  b.ads->tls = true;
  b.ads->server_name = "istiod.istio-system.svc";
  b.ads->root_cert_file = write_file("root-cert.pem", mesh.root_pem());

  // No client certificate: the handshake is refused; retried, not ready, and the reason logged.
  start_gateway(b);
  ASSERT_TRUE(eventually([&] { return xds_->client().status().streams_opened >= 2; }));
  EXPECT_FALSE(xds_->ready());
  EXPECT_EQ(cp_->streams_opened(), 0u);
  EXPECT_NE(xds_->client().status().last_error.find("no client certificate is configured"), std::string::npos)
      << xds_->client().status().last_error;
  xds_->stop();
  gw_->stop();

  // A certificate from another CA: refused too.
  b.ads->client_cert_chain_file = write_file("stranger.pem", stranger.chain);
  b.ads->client_private_key_file = write_file("stranger.key", stranger.key);
  start_gateway(b);
  ASSERT_TRUE(eventually([&] { return xds_->client().status().streams_opened >= 2; }));
  EXPECT_FALSE(xds_->ready());
  EXPECT_EQ(cp_->streams_opened(), 0u);
  xds_->stop();
  gw_->stop();

  // The mesh's certificate: connected and serving.
  b.ads->client_cert_chain_file = write_file("cert-chain.pem", gateway.chain);
  b.ads->client_private_key_file = write_file("key.pem", gateway.key);
  start_gateway(b);
  ASSERT_TRUE(becomes_ready());
  EXPECT_TRUE(eventually_reaches(svc_a, a));
  EXPECT_GE(cp_->streams_opened(), 1u);
}

// A client certificate file that cannot be read: a clear error naming the file, retried.
TEST_P(AdsClientTest, UnreadableClientCertificateIsReported) {
  start_control_plane();
  auto b = bootstrap(cp_->address());
  b.ads->tls = true;
  b.ads->client_cert_chain_file = (dir_ / "missing-cert.pem").string();
  b.ads->client_private_key_file = (dir_ / "missing-key.pem").string();
  start_gateway(b);
  ASSERT_TRUE(eventually([&] {
    return xds_->client().status().last_error.find("cannot read " + b.ads->client_cert_chain_file) != std::string::npos;
  })) << xds_->client().status().last_error;
  EXPECT_FALSE(xds_->ready());
}

TEST_P(AdsClientTest, StartsWithTheControlPlaneUnreachableAndKeepsRetrying) {
  test::tcp_sink_server a;
  const std::uint16_t port = test::unused_port();
  start_gateway(bootstrap("127.0.0.1:" + std::to_string(port)));
  ASSERT_TRUE(eventually([&] { return xds_->client().status().streams_opened >= 3; }));
  EXPECT_FALSE(xds_->ready());
  EXPECT_FALSE(xds_->client().connected());
  EXPECT_FALSE(xds_->client().status().last_error.empty());
  EXPECT_TRUE(gw_->ready());  // serving (its static part), but the gateway as a whole is not ready

  test::control_plane_options o;
  o.port = port;
  start_control_plane(o);
  publish({{svc_a, {a.port()}}});
  ASSERT_TRUE(becomes_ready());
  EXPECT_TRUE(eventually_reaches(svc_a, a));
}

TEST_P(AdsClientTest, ListenerWaitsForItsClusterToWarm) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  listener_wait_ = 60s;  // longer than the test: the listener must take effect when b warms
  start_control_plane();
  publish({{svc_a, {a.port()}}});
  start_gateway(bootstrap(cp_->address()));
  ASSERT_TRUE(becomes_ready());
  ASSERT_TRUE(eventually_reaches(svc_a, a));
  // b's cluster and chain arrive, its endpoints do not (yet): the listener keeps its old version.
  cp_->set_clusters({istio::sni_dnat_cluster(svc_a), istio::sni_dnat_cluster(svc_b)});
  cp_->set_listeners({istio::gateway_listener(listener_port_, {{svc_a, svc_a}, {svc_b, svc_b}})});
  cp_->push();
  ASSERT_TRUE(cp_->wait_synced());
  EXPECT_TRUE(reaches(svc_a, a));
  // b has no chain yet (the listener waits), rather than a chain with no cluster.
  const std::string no_match = "listener.127.0.0.1_" + std::to_string(listener_port_) + ".no_filter_chain_match";
  const auto before = stat(no_match);
  EXPECT_TRUE(refused(svc_b));
  EXPECT_TRUE(eventually([&] { return stat(no_match) == before + 1; }));
  EXPECT_EQ(stat("tcp." + svc_b + ".downstream_cx_no_route"), -1);
  EXPECT_TRUE(eventually([&] { return stat("cluster_manager.warming_clusters") == 1; }));
  EXPECT_EQ(stat("cluster_manager.active_clusters"), 1);
  // Then the endpoints: the waiting listener takes effect.
  cp_->set_endpoints({istio::local_assignment(svc_a, {a.port()}), istio::local_assignment(svc_b, {b.port()})});
  cp_->push();
  EXPECT_TRUE(eventually_reaches(svc_b, b));
  EXPECT_TRUE(cp_->nacks().empty());
  EXPECT_TRUE(eventually([&] { return stat("cluster_manager.active_clusters") == 2; }));
  EXPECT_EQ(stat("cluster_manager.warming_clusters"), 0);
}

INSTANTIATE_TEST_SUITE_P(Variants, AdsClientTest, ::testing::Values(xds::xds_api::sotw, xds::xds_api::delta),
                         [](const auto& p) { return p.param == xds::xds_api::delta ? "Delta" : "Sotw"; });

}  // namespace
}  // namespace ewgw
