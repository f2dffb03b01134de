// The gateway end to end over real loopback sockets: real OpenSSL, GnuTLS and curl clients and
// real OpenSSL servers on both sides of an in-process gateway, and raw TCP peers for the byte-
// level cases (dripped, stalled, oversized and malformed ClientHellos, half-close, 1,000
// concurrent connections).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "proxy/gateway.h"
#include "test/support/certs.h"
#include "test/support/client_hello_bytes.h"
#include "test/support/process.h"
#include "test/support/tcp_util.h"
#include "test/support/tls_client.h"
#include "test/support/tls_server.h"
#include "xds/decode.h"

namespace ewgw {
namespace {

using namespace std::chrono_literals;

const std::string istio_sni = "outbound_.5000_._.helloworld.sample.svc.cluster.local";
const std::vector<std::string> istio_alpn = {"istio-peer-exchange", "istio"};

struct chain_spec {
  std::string sni;  // "" = no server_names
  std::string cluster;
  bool istio_alpns = true;
  std::string tcp_proxy_extra;  // extra YAML lines under typed_config (10-space indent)
  bool sni_cluster = false;
};

struct cluster_spec {
  std::string name;
  std::vector<std::uint16_t> ports;
  std::string extra;  // extra YAML lines under the cluster (4-space indent)
};

std::string make_yaml(const std::vector<chain_spec>& chains, const std::vector<cluster_spec>& clusters,
                      const std::string& listener_extra = "", bool tls_inspector = true,
                      const std::string& default_chain_cluster = "") {
  std::string y = "static_resources:\n  listeners:\n  - name: gw\n    address: {socket_address: {address: 127.0.0.1, port_value: 0}}\n";
  if (tls_inspector) {
    y += "    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config: {\"@type\": "
         "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}\n";
  }
  y += listener_extra;
  auto tcp_proxy = [](const std::string& cluster, const std::string& extra, const std::string& prefix) {
    return "      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": "
           "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: " +
           prefix + "\n          cluster: \"" + cluster + "\"\n" + extra;
  };
  if (!chains.empty()) y += "    filter_chains:\n";
  int n = 0;
  for (const chain_spec& c : chains) {
    y += "    - filter_chain_match: {";
    if (!c.sni.empty()) y += "server_names: [\"" + c.sni + "\"]";
    if (!c.sni.empty() && c.istio_alpns) y += ", ";
    if (c.istio_alpns) y += "application_protocols: [istio, istio-peer-exchange, istio-http/1.0, istio-http/1.1, istio-h2]";
    y += "}\n      filters:\n";
    if (c.sni_cluster) {
      y += "      - name: envoy.filters.network.sni_cluster\n        typed_config: {\"@type\": "
           "type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster}\n";
    }
    y += tcp_proxy(c.cluster, c.tcp_proxy_extra, "chain" + std::to_string(n++));
  }
  if (!default_chain_cluster.empty()) {
    y += "    default_filter_chain:\n      filters:\n" + tcp_proxy(default_chain_cluster, "", "default");
  }
  y += "  clusters:\n";
  for (const cluster_spec& c : clusters) {
    y += "  - name: \"" + c.name + "\"\n    type: STATIC\n    connect_timeout: 2s\n" + c.extra +
         "    load_assignment:\n      cluster_name: \"" + c.name + "\"\n      endpoints:\n      - lb_endpoints:\n";
    for (std::uint16_t p : c.ports) {
      y += "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: " + std::to_string(p) + "}}}\n";
    }
  }
  return y;
}

class GatewayTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    // 1,000 concurrent connections need ~4,000 descriptors in this one process (client, both
    // gateway sides, echo server).
    rlimit rl{};
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    test::ignore_sigpipe();
  }

  void start(const std::string& yaml, std::size_t concurrency = 2) {
    auto loaded = xds::load_bootstrap_text(yaml, "test.yaml");
    ASSERT_TRUE(loaded.diag.ok()) << (loaded.diag.errors.empty() ? "" : loaded.diag.errors[0]) << "\n" << yaml;
    gw_ = std::make_unique<proxy::gateway>(proxy::gateway_options{concurrency});
    const auto errors = gw_->apply(loaded.config);
    ASSERT_TRUE(errors.empty()) << errors[0];
    const auto error = gw_->start();
    ASSERT_FALSE(error) << *error;
    port_ = gw_->listener_port("gw");
    ASSERT_NE(port_, 0);
  }

  void TearDown() override {
    if (gw_) gw_->stop();
  }

  std::int64_t stat(const std::string& name) const { return gw_->stats().value(name); }

  // Counters are written by worker threads after the client observes the outcome; wait (bounded)
  // for the expected value instead of sleeping.
  ::testing::AssertionResult stat_reaches(const std::string& name, std::int64_t want) const {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    std::int64_t got = stat(name);
    while (got != want && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
      got = stat(name);
    }
    if (got == want) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << name << " = " << got << ", expected " << want;
  }

  test::tls_client_options client_for(const test::leaf_cert& client, const std::string& sni) const {
    test::tls_client_options o;
    o.port = port_;
    o.sni = sni;
    o.alpn = istio_alpn;
    o.set_identity(client);
    o.expected_server_name = sni;
    return o;
  }

  test::test_pki pki_{"ewgw integration"};
  std::unique_ptr<proxy::gateway> gw_;
  std::uint16_t port_ = 0;
};

std::string listener_stat(const std::string& name) { return "listener.127.0.0.1_0." + name; }
std::string tls_stat(const std::string& name) { return "listener.127.0.0.1_0.tls_inspector." + name; }

// ---------------------------------------------------------------------------------------------
// mTLS through the gateway

TEST_F(GatewayTest, MutualTlsHandshakeAndDataThroughGateway) {
  const auto server_cert = pki_.make_leaf("helloworld-v1", {istio_sni, "spiffe://cluster.local/ns/sample/sa/helloworld"},
                                          test::cert_usage::server_and_client);
  const auto client_cert = pki_.make_leaf("sleep", {"spiffe://cluster.local/ns/sample/sa/sleep"}, test::cert_usage::client);
  test::tls_server_options so;
  so.set_identity(server_cert);
  so.require_client_cert = true;
  test::tls_test_server backend(so);
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));

  for (const auto version : {test::tls_version::tls1_3, test::tls_version::tls1_2}) {
    auto o = client_for(client_cert, istio_sni);
    o.min_version = o.max_version = version;
    std::string payload(256 * 1024, '\0');
    std::mt19937 rng(42);
    for (char& c : payload) c = static_cast<char>(rng());
    o.payload = payload;
    const auto r = test::run_tls_client(o);
    ASSERT_TRUE(r.success) << r.error;
    EXPECT_TRUE(r.echo_matched);
    // The client verified the backend's certificate, not anything of the gateway's.
    EXPECT_EQ(r.server_subject, "helloworld-v1");
    EXPECT_EQ(r.alpn, "istio-peer-exchange");
    EXPECT_EQ(r.tls_version, version == test::tls_version::tls1_3 ? "TLSv1.3" : "TLSv1.2");
  }
  ASSERT_TRUE(backend.wait_for_finished(2));
  // The backend saw the client's SNI, ALPN and verified client certificate: nothing terminated.
  for (const auto& c : backend.connections()) {
    EXPECT_TRUE(c.handshake_ok) << c.handshake_error;
    EXPECT_EQ(c.sni, istio_sni);
    EXPECT_EQ(c.client_subject, "sleep");
    EXPECT_EQ(c.bytes_received, 256u * 1024);
  }
  EXPECT_TRUE(stat_reaches(tls_stat("tls_found"), 2));
  EXPECT_EQ(stat(tls_stat("sni_found")), 2);
  EXPECT_EQ(stat(tls_stat("alpn_found")), 2);
  EXPECT_EQ(stat("tcp.chain0.downstream_cx_total"), 2);
  EXPECT_EQ(stat("cluster.helloworld.upstream_cx_total"), 2);
  EXPECT_TRUE(stat_reaches("cluster.helloworld.upstream_cx_active", 0));
  EXPECT_TRUE(stat_reaches(listener_stat("downstream_cx_active"), 0));
  EXPECT_GT(stat("tcp.chain0.downstream_cx_rx_bytes_total"), 2 * 256 * 1024);
  EXPECT_GT(stat("tcp.chain0.downstream_cx_tx_bytes_total"), 2 * 256 * 1024);
  EXPECT_EQ(stat("tcp.chain0.downstream_cx_rx_bytes_total"), stat("cluster.helloworld.upstream_cx_tx_bytes_total"));
  EXPECT_EQ(stat("tcp.chain0.downstream_cx_tx_bytes_total"), stat("cluster.helloworld.upstream_cx_rx_bytes_total"));
}

TEST_F(GatewayTest, ClientRejectsBackendSignedByAnotherRoot) {
  test::test_pki other("other mesh");
  const auto server_cert = other.make_leaf("imposter", {istio_sni}, test::cert_usage::server);
  const auto client_cert = pki_.make_leaf("sleep", {"spiffe://cluster.local/ns/sample/sa/sleep"}, test::cert_usage::client);
  test::tls_server_options so;
  so.set_identity(server_cert);
  test::tls_test_server backend(so);
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  auto o = client_for(client_cert, istio_sni);
  o.payload = "x";
  const auto r = test::run_tls_client(o);
  EXPECT_FALSE(r.success);
  EXPECT_FALSE(r.handshake_ok);  // end-to-end verification is the client's, as it should be
}

std::filesystem::path temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("ewgw-test-" + name + "-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  return dir;
}

// Output only: the commands redirect their own stderr where they need it.
std::string run_command(const std::string& command) { return test::run_command(command, false).output; }

TEST_F(GatewayTest, GnuTlsClientThroughGateway) {
  const auto server_cert = pki_.make_leaf("helloworld-v2", {istio_sni}, test::cert_usage::server);
  const auto client_cert = pki_.make_leaf("sleep", {"spiffe://cluster.local/ns/sample/sa/sleep"}, test::cert_usage::client);
  test::tls_server_options so;
  so.set_identity(server_cert);
  so.require_client_cert = true;
  so.behaviour = test::server_behaviour::greet;
  so.greet_body = "Hello version: v2, instance: helloworld-v2\n";
  test::tls_test_server backend(so);
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto dir = temp_dir("gnutls");
  test::write_leaf_files(dir, "client", client_cert);
  const std::string out = run_command(
      "printf 'GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n' | timeout 20 gnutls-cli --logfile=/dev/null --port " +
      std::to_string(port_) + " --sni-hostname " + istio_sni + " --verify-hostname " + istio_sni +
      " --alpn istio-http/1.1 --x509cafile " + (dir / "root.crt").string() + " --x509certfile " +
      (dir / "client.crt").string() + " --x509keyfile " + (dir / "client.key").string() + " 127.0.0.1 2>&1");
  std::filesystem::remove_all(dir);
  EXPECT_NE(out.find("Hello version: v2, instance: helloworld-v2"), std::string::npos) << out;
  EXPECT_EQ(backend.last_client_subject(), "sleep");
  EXPECT_EQ(backend.last_alpn(), "istio-http/1.1");
}

TEST_F(GatewayTest, CurlThroughGateway) {
  // curl offers h2 and http/1.1, so this chain matches on the SNI alone.
  const std::string sni = "reviews.bookinfo.svc.cluster.local";
  const auto server_cert = pki_.make_leaf("reviews", {sni}, test::cert_usage::server);
  test::tls_server_options so;
  so.set_identity(server_cert);
  so.behaviour = test::server_behaviour::greet;
  so.greet_body = "Hello from reviews\n";
  so.alpn = {"http/1.1"};
  test::tls_test_server backend(so);
  start(make_yaml({{sni, "reviews", false}}, {{"reviews", {backend.port()}}}));
  const auto dir = temp_dir("curl");
  test::write_pem_file(dir, "root.crt", server_cert.root);
  const std::string out = run_command("timeout 20 curl -sS --http1.1 --cacert " + (dir / "root.crt").string() +
                                      " --connect-to " + sni + ":443:127.0.0.1:" + std::to_string(port_) + " https://" +
                                      sni + "/ 2>&1");
  std::filesystem::remove_all(dir);
  EXPECT_EQ(out, "Hello from reviews\n");
  EXPECT_EQ(backend.last_sni(), sni);
}

// ---------------------------------------------------------------------------------------------
// Routing outcomes

TEST_F(GatewayTest, UnknownSniIsClosedAndCounted) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello("outbound_.9999_._.unknown.sample.svc.cluster.local", istio_alpn);
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_GE(fd.get(), 0);
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  EXPECT_TRUE(test::wait_closed(fd.get()));
  EXPECT_TRUE(stat_reaches(listener_stat("no_filter_chain_match"), 1));
  EXPECT_EQ(backend.connections_accepted(), 0u);
}

TEST_F(GatewayTest, WrongAlpnIsClosed) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, {"h2", "http/1.1"});
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  EXPECT_TRUE(test::wait_closed(fd.get()));
  EXPECT_TRUE(stat_reaches(listener_stat("no_filter_chain_match"), 1));
}

TEST_F(GatewayTest, DrippedClientHelloIsRoutedAndForwardedExactlyOnce) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  const std::string bytes(reinterpret_cast<const char*>(hello.data()), hello.size());
  test::unique_fd fd(test::connect_tcp(port_));
  for (char c : bytes) {
    ASSERT_TRUE(test::send_all(fd.get(), std::string_view(&c, 1)));
    std::this_thread::sleep_for(200us);
  }
  ASSERT_TRUE(backend.wait_for_bytes(0, bytes.size()));
  const std::string after = "data after the hello";
  ASSERT_TRUE(test::send_all(fd.get(), after));
  ASSERT_TRUE(backend.wait_for_bytes(0, bytes.size() + after.size()));
  EXPECT_EQ(backend.received(0), bytes + after);  // byte-identical, nothing repeated
  EXPECT_EQ(stat(tls_stat("sni_found")), 1);
}

TEST_F(GatewayTest, BytesAfterTheHelloInTheSameSegmentAreForwarded) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  // e.g. TLS 1.3 early data right behind the ClientHello: an application_data record.
  const std::string early = std::string("\x17\x03\x03\x00\x05", 5) + "early";
  const std::string all = std::string(reinterpret_cast<const char*>(hello.data()), hello.size()) + early;
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), all));
  ASSERT_TRUE(backend.wait_for_bytes(0, all.size()));
  EXPECT_EQ(backend.received(0), all);
}

TEST_F(GatewayTest, StalledClientHelloIsClosedAtTheTimeout) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}, "    listener_filters_timeout: 0.3s\n"));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size() / 2}));
  EXPECT_TRUE(test::wait_closed(fd.get(), 10s));
  EXPECT_TRUE(stat_reaches(listener_stat("downstream_pre_cx_timeout"), 1));
  EXPECT_EQ(backend.connections_accepted(), 0u);
}

TEST_F(GatewayTest, ContinueOnTimeoutRoutesToTheDefaultChain) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}},
                  "    listener_filters_timeout: 0.2s\n    continue_on_listener_filters_timeout: true\n", true, "helloworld"));
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), std::string("\x16\x03\x01", 3)));  // a hello that never completes
  ASSERT_TRUE(backend.wait_for_bytes(0, 3, 10s));
  EXPECT_EQ(backend.received(0), std::string("\x16\x03\x01", 3));
  EXPECT_TRUE(stat_reaches("tcp.default.downstream_cx_total", 1));
}

TEST_F(GatewayTest, NonTlsGoesToTheDefaultChainAsRawBuffer) {
  test::tcp_echo_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}, "", true, "helloworld"));
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), "PING plain text\n"));
  std::string echoed;
  ASSERT_TRUE(test::read_exact(fd.get(), 16, echoed));
  EXPECT_EQ(echoed, "PING plain text\n");
  EXPECT_EQ(stat(tls_stat("tls_not_found")), 1);
}

TEST_F(GatewayTest, SniClusterRoutesByTheServerName) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  const std::string sni_a = "outbound_.5000_._.a.ns.svc.cluster.local";
  const std::string sni_b = "outbound_.5000_._.b.ns.svc.cluster.local";
  chain_spec chain{"", "fallback", false, "", true};
  start(make_yaml({chain}, {{sni_a, {a.port()}}, {sni_b, {b.port()}}, {"fallback", {a.port()}}}));
  for (const auto& [sni, server] : {std::pair{sni_b, &b}, std::pair{sni_a, &a}}) {
    const auto hello = test::make_client_hello(sni, istio_alpn);
    test::unique_fd fd(test::connect_tcp(port_));
    ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
    ASSERT_TRUE(server->wait_for_bytes(0, hello.size()));
  }
  const auto hello = test::make_client_hello("outbound_.5000_._.nope.ns.svc.cluster.local", istio_alpn);
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  EXPECT_TRUE(test::wait_closed(fd.get()));
  EXPECT_TRUE(stat_reaches("tcp.chain0.downstream_cx_no_route", 1));
}

TEST_F(GatewayTest, RoundRobinSpreadsConnectionsOverEndpoints) {
  test::tcp_echo_server v1;
  test::tcp_echo_server v2;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {v1.port(), v2.port()}}}), 1);
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  for (int i = 0; i < 10; ++i) {
    test::unique_fd fd(test::connect_tcp(port_));
    ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
    std::string echoed;
    ASSERT_TRUE(test::read_exact(fd.get(), hello.size(), echoed));
  }
  EXPECT_EQ(v1.connections_accepted(), 5u);
  EXPECT_EQ(v2.connections_accepted(), 5u);
}

// ---------------------------------------------------------------------------------------------
// Upstream failures

TEST_F(GatewayTest, RefusingBackendClosesTheClientPromptly) {
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {test::unused_port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  const auto r = test::read_until_eof(fd.get());
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.bytes.empty());
  EXPECT_TRUE(stat_reaches("cluster.helloworld.upstream_cx_connect_fail", 1));
  // Envoy counts the spent attempts also with the default single attempt.
  EXPECT_TRUE(stat_reaches("cluster.helloworld.upstream_cx_connect_attempts_exceeded", 1));
  EXPECT_TRUE(stat_reaches("cluster.helloworld.upstream_cx_active", 0));
}

TEST_F(GatewayTest, ConnectRetriesOnAnotherHost) {
  test::tcp_echo_server good;
  start(make_yaml({{istio_sni, "helloworld", true, "          max_connect_attempts: 2\n"}},
                  {{"helloworld", {test::unused_port(), good.port()}}}),
        1);
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  for (int i = 0; i < 4; ++i) {
    test::unique_fd fd(test::connect_tcp(port_));
    ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
    std::string echoed;
    ASSERT_TRUE(test::read_exact(fd.get(), hello.size(), echoed)) << "connection " << i;
  }
  EXPECT_EQ(good.connections_accepted(), 4u);
  EXPECT_GE(stat("cluster.helloworld.upstream_cx_connect_fail"), 1);
  EXPECT_EQ(stat("cluster.helloworld.upstream_cx_connect_attempts_exceeded"), 0);
}

TEST_F(GatewayTest, CircuitBreakerOverflowClosesTheConnection) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}},
                  {{"helloworld", {backend.port()}, "    circuit_breakers: {thresholds: [{max_connections: 1}]}\n"}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  test::unique_fd first(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(first.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  ASSERT_TRUE(backend.wait_for_bytes(0, hello.size()));
  test::unique_fd second(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(second.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  EXPECT_TRUE(test::wait_closed(second.get()));
  EXPECT_TRUE(stat_reaches("cluster.helloworld.upstream_cx_overflow", 1));
  // The first connection is unaffected.
  ASSERT_TRUE(backend.send(0, "still here"));
  std::string got;
  EXPECT_TRUE(test::read_exact(first.get(), 10, got));
  EXPECT_EQ(got, "still here");
}

// ---------------------------------------------------------------------------------------------
// Half-close and timeouts

TEST_F(GatewayTest, HalfCloseFromTheClientReachesTheBackend) {
  test::tcp_echo_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  std::string sent(reinterpret_cast<const char*>(hello.data()), hello.size());
  sent += std::string(100000, 'q');
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), sent));
  ASSERT_EQ(::shutdown(fd.get(), SHUT_WR), 0);
  // The backend sees EOF only after all data; it echoes everything, then half-closes back.
  const auto r = test::read_until_eof(fd.get());
  EXPECT_TRUE(r.closed_cleanly);
  EXPECT_EQ(r.bytes, sent);
  EXPECT_EQ(backend.half_closes(), 1u);
}

TEST_F(GatewayTest, HalfCloseFromTheBackendKeepsTheOtherDirectionOpen) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  ASSERT_TRUE(backend.wait_for_bytes(0, hello.size()));
  ASSERT_TRUE(backend.send(0, "response"));
  backend.shutdown_write(0);
  const auto r = test::read_until_eof(fd.get());
  EXPECT_TRUE(r.closed_cleanly);
  EXPECT_EQ(r.bytes, "response");
  // The client may still send after the backend finished sending.
  ASSERT_TRUE(test::send_all(fd.get(), "late request"));
  ASSERT_TRUE(backend.wait_for_bytes(0, hello.size() + 12));
  EXPECT_EQ(backend.received(0).substr(hello.size()), "late request");
  ::shutdown(fd.get(), SHUT_WR);
  EXPECT_TRUE(backend.wait_peer_closed(0));
  EXPECT_TRUE(stat_reaches(listener_stat("downstream_cx_active"), 0));
}

TEST_F(GatewayTest, BackendResetClosesTheClient) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  ASSERT_TRUE(backend.wait_for_bytes(0, hello.size()));
  backend.reset(0);
  EXPECT_TRUE(test::wait_closed(fd.get()));
  EXPECT_TRUE(stat_reaches(listener_stat("downstream_cx_active"), 0));
}

TEST_F(GatewayTest, ResetAfterHalfCloseClosesTheUpstream) {
  // The client half-closes, then resets. Nothing is being written to it, so only watching the
  // socket for errors notices; otherwise the upstream would stay open until idle_timeout.
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  ASSERT_TRUE(backend.wait_for_bytes(0, hello.size()));
  ASSERT_EQ(::shutdown(fd.get(), SHUT_WR), 0);
  ASSERT_TRUE(backend.wait_peer_closed(0));  // the FIN arrived: a half-close, still open
  EXPECT_TRUE(stat_reaches("cluster.helloworld.upstream_cx_active", 1));
  linger l{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  fd.reset();  // RST
  EXPECT_TRUE(stat_reaches("cluster.helloworld.upstream_cx_active", 0));
  EXPECT_TRUE(stat_reaches(listener_stat("downstream_cx_active"), 0));
}

TEST_F(GatewayTest, Ipv6ListenerIsV6OnlyUnlessIpv4Compat) {
  test::tcp_echo_server backend;
  for (const bool compat : {false, true}) {
    std::string yaml = make_yaml({{"", "helloworld", false}}, {{"helloworld", {backend.port()}}}, "", false);
    yaml.replace(yaml.find("address: 127.0.0.1, port_value: 0"), 33,
                 std::string("address: \"::\", port_value: 0") + (compat ? ", ipv4_compat: true" : ""));
    start(yaml);
    if (HasFatalFailure()) return;
    test::unique_fd fd(test::connect_tcp(port_, 2s));
    if (compat) {
      ASSERT_GE(fd.get(), 0);
      ASSERT_TRUE(test::send_all(fd.get(), "v4 via v6"));
      std::string echoed;
      EXPECT_TRUE(test::read_exact(fd.get(), 9, echoed));
    } else {
      EXPECT_LT(fd.get(), 0) << "an IPv6 listener without ipv4_compat accepted IPv4";
    }
    gw_->stop();
    gw_.reset();
  }
}

TEST_F(GatewayTest, IdleTimeoutClosesBothSides) {
  test::tcp_sink_server backend;
  start(make_yaml({{istio_sni, "helloworld", true, "          idle_timeout: 0.3s\n"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  EXPECT_TRUE(test::wait_closed(fd.get(), 10s));
  EXPECT_TRUE(backend.wait_peer_closed(0, 10s));
  EXPECT_TRUE(stat_reaches("tcp.chain0.idle_timeout", 1));
}

TEST_F(GatewayTest, MaxDurationClosesABusyConnection) {
  test::tcp_echo_server backend;
  start(make_yaml({{istio_sni, "helloworld", true, "          max_downstream_connection_duration: 0.4s\n"}},
                  {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  test::unique_fd fd(test::connect_tcp(port_));
  ASSERT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
  std::string echoed;
  ASSERT_TRUE(test::read_exact(fd.get(), hello.size(), echoed));
  // Keep the connection busy (never idle) until the gateway ends it.
  bool closed = false;
  for (int i = 0; i < 400 && !closed; ++i) {
    if (!test::send_all(fd.get(), "tick", 1s) || !test::read_exact(fd.get(), 4, echoed, 1s)) closed = true;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_TRUE(closed);
  EXPECT_TRUE(stat_reaches("tcp.chain0.max_downstream_connection_duration", 1));
  EXPECT_EQ(stat("tcp.chain0.idle_timeout"), 0);
}

// ---------------------------------------------------------------------------------------------
// Bad input never takes the gateway down

TEST_F(GatewayTest, KeepsServingAfterEveryBadInput) {
  const auto server_cert = pki_.make_leaf("helloworld-v1", {istio_sni}, test::cert_usage::server);
  const auto client_cert = pki_.make_leaf("sleep", {"spiffe://cluster.local/ns/sample/sa/sleep"}, test::cert_usage::client);
  test::tls_server_options so;
  so.set_identity(server_cert);
  so.require_client_cert = true;
  test::tls_test_server backend(so);
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));

  auto good_connection_works = [&] {
    auto o = client_for(client_cert, istio_sni);
    o.payload = "after bad input";
    const auto r = test::run_tls_client(o);
    return r.success && r.echo_matched;
  };
  auto send_and_expect_close = [&](const std::string& bytes) {
    test::unique_fd fd(test::connect_tcp(port_));
    if (fd.get() < 0 || !test::send_all(fd.get(), bytes)) return false;
    return test::wait_closed(fd.get());
  };

  const auto hello = test::make_client_hello(istio_sni, istio_alpn);
  const std::string good_hello(reinterpret_cast<const char*>(hello.data()), hello.size());

  // Not TLS at all (Istio chains need an SNI: closed).
  EXPECT_TRUE(send_and_expect_close("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  EXPECT_TRUE(stat_reaches(tls_stat("tls_not_found"), 1));
  ASSERT_TRUE(good_connection_works());

  // A handshake record announcing a ClientHello larger than 16 KiB.
  EXPECT_TRUE(send_and_expect_close(std::string("\x16\x03\x01\x40\x00\x01\x00\x50\x00", 9) + std::string(100, 'A')));
  EXPECT_TRUE(stat_reaches(tls_stat("client_hello_too_large"), 1));
  ASSERT_TRUE(good_connection_works());

  // 16 KiB+ of handshake records that never finish a ClientHello (many small records).
  {
    std::string records;
    const std::string header = std::string("\x01\x00\x7f\xff", 4);  // ClientHello of 32767 bytes
    records += std::string("\x16\x03\x01\x00\x04", 5) + header;
    while (records.size() < 17000) records += std::string("\x16\x03\x01\x00\x10", 5) + std::string(16, 'B');
    EXPECT_TRUE(send_and_expect_close(records));
    EXPECT_TRUE(stat_reaches(tls_stat("client_hello_too_large"), 2));
  }
  ASSERT_TRUE(good_connection_works());

  // Lying length: the session id claims 200 bytes inside a small hello.
  {
    std::string bad = good_hello;
    bad[5 + 4 + 2 + 32] = static_cast<char>(200);
    EXPECT_TRUE(send_and_expect_close(bad));
    EXPECT_TRUE(stat_reaches(tls_stat("client_hello_malformed_total"), 1));
  }
  ASSERT_TRUE(good_connection_works());

  // A zero-length handshake record.
  EXPECT_TRUE(send_and_expect_close(std::string("\x16\x03\x01\x00\x00", 5)));
  EXPECT_TRUE(stat_reaches(tls_stat("client_hello_malformed_total"), 2));
  ASSERT_TRUE(good_connection_works());

  // The client gives up halfway through its hello, with FIN and with RST.
  {
    test::unique_fd fd(test::connect_tcp(port_));
    ASSERT_TRUE(test::send_all(fd.get(), good_hello.substr(0, 100)));
  }
  EXPECT_TRUE(stat_reaches(tls_stat("connection_closed"), 1));
  {
    test::unique_fd fd(test::connect_tcp(port_));
    ASSERT_TRUE(test::send_all(fd.get(), good_hello.substr(0, 100)));
    linger l{1, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  EXPECT_TRUE(stat_reaches(tls_stat("connection_closed"), 2));
  ASSERT_TRUE(good_connection_works());

  // An unknown SNI, then an empty connection.
  EXPECT_TRUE(send_and_expect_close(
      [] { auto h = test::make_client_hello("nobody.example", {"istio"}); return std::string(h.begin(), h.end()); }()));
  { test::unique_fd fd(test::connect_tcp(port_)); }
  ASSERT_TRUE(good_connection_works());
  EXPECT_TRUE(stat_reaches(listener_stat("downstream_cx_active"), 0));
}

// ---------------------------------------------------------------------------------------------
// Concurrency

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

TEST_F(GatewayTest, ThousandConcurrentConnectionsArriveIntact) {
  constexpr int connections = 1000;
  constexpr std::size_t payload_size = 32 * 1024;
  test::tcp_echo_server backend;
  start(make_yaml({{istio_sni, "helloworld"}}, {{"helloworld", {backend.port()}}}));
  const auto hello = test::make_client_hello(istio_sni, istio_alpn);

  struct conn {
    test::unique_fd fd;
    std::string out;  // hello + payload
    std::size_t written = 0;
    std::string in;
    bool done = false;
  };
  std::vector<conn> conns(connections);
  std::mt19937_64 rng(7);
  // Open every connection first so that all are concurrently open in the gateway.
  for (int i = 0; i < connections; ++i) {
    conns[i].fd = test::unique_fd(test::connect_tcp(port_, 10s));
    ASSERT_GE(conns[i].fd.get(), 0) << "connect " << i;
    conns[i].out.assign(reinterpret_cast<const char*>(hello.data()), hello.size());
    for (std::size_t j = 0; j < payload_size; j += 8) {
      const std::uint64_t v = rng();
      conns[i].out.append(reinterpret_cast<const char*>(&v), 8);
    }
    ::fcntl(conns[i].fd.get(), F_SETFL, ::fcntl(conns[i].fd.get(), F_GETFL) | O_NONBLOCK);
  }
  EXPECT_TRUE(stat_reaches(listener_stat("downstream_cx_active"), connections));

  int remaining = connections;
  const auto deadline = std::chrono::steady_clock::now() + 120s;
  std::vector<pollfd> fds(connections);
  std::array<char, 65536> buf;
  while (remaining > 0 && std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < connections; ++i) {
      fds[i].fd = conns[i].done ? -1 : conns[i].fd.get();
      fds[i].events = POLLIN | (conns[i].written < conns[i].out.size() ? POLLOUT : 0);
      fds[i].revents = 0;
    }
    if (::poll(fds.data(), fds.size(), 1000) <= 0) continue;
    for (int i = 0; i < connections; ++i) {
      conn& c = conns[i];
      if (c.done || fds[i].revents == 0) continue;
      if ((fds[i].revents & POLLOUT) && c.written < c.out.size()) {
        const ssize_t n = ::send(c.fd.get(), c.out.data() + c.written, c.out.size() - c.written, MSG_NOSIGNAL);
        if (n > 0) c.written += static_cast<std::size_t>(n);
      }
      if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) {
        const ssize_t n = ::recv(c.fd.get(), buf.data(), buf.size(), 0);
        if (n > 0) c.in.append(buf.data(), static_cast<std::size_t>(n));
        if (n == 0 || c.in.size() >= c.out.size()) {
          c.done = true;
          --remaining;
        }
      }
    }
  }
  ASSERT_EQ(remaining, 0) << "connections still incomplete at the deadline";
  int intact = 0;
  int reported = 0;
  for (const conn& c : conns) {
    const bool ok = c.in.size() == c.out.size() && fnv1a(c.in) == fnv1a(c.out);
    intact += ok ? 1 : 0;
    if (!ok && reported++ < 3) {
      std::size_t same = 0;
      while (same < c.in.size() && same < c.out.size() && c.in[same] == c.out[same]) ++same;
      ADD_FAILURE() << "connection " << (&c - conns.data()) << ": sent " << c.out.size() << " bytes, received "
                    << c.in.size() << ", identical prefix " << same;
    }
  }
  EXPECT_EQ(intact, connections) << "connect_fail=" << stat("cluster.helloworld.upstream_cx_connect_fail")
                                 << " connect_timeout=" << stat("cluster.helloworld.upstream_cx_connect_timeout")
                                 << " no_route=" << stat("tcp.chain0.downstream_cx_no_route")
                                 << " too_large=" << stat(tls_stat("client_hello_too_large"))
                                 << " timeouts=" << stat(listener_stat("downstream_pre_cx_timeout"));
  conns.clear();
  EXPECT_TRUE(stat_reaches(listener_stat("downstream_cx_active"), 0));
  EXPECT_EQ(stat(listener_stat("downstream_cx_total")), connections);
  EXPECT_EQ(stat("cluster.helloworld.upstream_cx_total"), connections);
}

}  // namespace
}  // namespace ewgw
