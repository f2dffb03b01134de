// Live configuration updates through gateway::apply(), as the xDS client drives them: listeners
// come, go and move; routing changes; bad updates are refused whole. Connections already open
// never notice (istio#51655, envoy#35109: users lose long-lived connections on LDS updates).
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <chrono>
#include <string>
#include <thread>

#include "proxy/gateway.h"
#include "test/support/client_hello_bytes.h"
#include "test/support/tcp_util.h"
#include "xds/decode.h"

namespace ewgw {
namespace {

using namespace std::chrono_literals;

struct listener_spec {
  std::string name;
  std::uint16_t port = 0;
  std::vector<std::pair<std::string, std::string>> chains;  // SNI -> cluster
};

std::string yaml(const std::vector<listener_spec>& listeners, const std::vector<std::pair<std::string, std::uint16_t>>& clusters) {
  std::string y = "static_resources:\n  listeners:\n";
  for (const auto& l : listeners) {
    y += "  - name: " + l.name + "\n    address: {socket_address: {address: 127.0.0.1, port_value: " + std::to_string(l.port) +
         "}}\n    listener_filters: [{name: envoy.filters.listener.tls_inspector, typed_config: {\"@type\": "
         "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}]\n    filter_chains:\n";
    for (const auto& [sni, cluster] : l.chains) {
      y += "    - filter_chain_match: {server_names: [\"" + sni + "\"]}\n      filters:\n      - name: t\n        typed_config: "
           "{\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: \"" +
           sni + "\", cluster: \"" + cluster + "\"}\n";
    }
  }
  y += "  clusters:\n";
  for (const auto& [name, port] : clusters) {
    y += "  - name: " + name + "\n    load_assignment: {cluster_name: " + name +
         ", endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: " +
         std::to_string(port) + "}}}}]}]}\n";
  }
  return y;
}

class ConfigUpdateTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { test::ignore_sigpipe(); }

  xds::bootstrap_config load(const std::string& text) {
    auto r = xds::load_bootstrap_text(text, "update.yaml");
    EXPECT_TRUE(r.diag.ok()) << (r.diag.errors.empty() ? "" : r.diag.errors[0]);
    return r.config;
  }

  void start(const std::string& text) {
    gw_ = std::make_unique<proxy::gateway>(proxy::gateway_options{2});
    ASSERT_TRUE(gw_->apply(load(text)).empty());
    ASSERT_FALSE(gw_->start());
  }

  void TearDown() override {
    if (gw_) gw_->stop();
  }

  // Opens a connection through `port` for `sni` and waits until `backend` has its ClientHello.
  test::unique_fd open_through(std::uint16_t port, const std::string& sni, test::tcp_sink_server& backend,
                               std::size_t backend_index) {
    const auto hello = test::make_client_hello(sni, {"istio"});
    test::unique_fd fd(test::connect_tcp(port));
    EXPECT_GE(fd.get(), 0);
    EXPECT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
    EXPECT_TRUE(backend.wait_for_bytes(backend_index, hello.size())) << sni;
    hello_size_ = hello.size();
    return fd;
  }

  // Data still flows both ways on an open connection.
  ::testing::AssertionResult still_relays(int fd, test::tcp_sink_server& backend, std::size_t index, const std::string& tag) {
    const std::size_t before = backend.received(index).size();
    if (!test::send_all(fd, "up:" + tag)) return ::testing::AssertionFailure() << "send failed";
    if (!backend.wait_for_bytes(index, before + 3 + tag.size())) return ::testing::AssertionFailure() << "upstream missed data";
    if (!backend.send(index, "down:" + tag)) return ::testing::AssertionFailure() << "backend send failed";
    std::string got;
    if (!test::read_exact(fd, 5 + tag.size(), got)) return ::testing::AssertionFailure() << "client missed data";
    if (got != "down:" + tag) return ::testing::AssertionFailure() << "got " << got;
    return ::testing::AssertionSuccess();
  }

  std::unique_ptr<proxy::gateway> gw_;
  std::size_t hello_size_ = 0;
};

TEST_F(ConfigUpdateTest, ConnectionOnUnchangedChainSurvivesListenerChanges) {
  test::tcp_sink_server a;
  test::tcp_sink_server b;
  start(yaml({{"east", 0, {{"a.svc", "ca"}}}}, {{"ca", a.port()}}));
  const std::uint16_t port = gw_->listener_port("east");
  auto long_lived = open_through(port, "a.svc", a, 0);
  ASSERT_TRUE(still_relays(long_lived.get(), a, 0, "before"));

  // Add a chain to the same listener (what adding a service does to Istio's 15443 listener),
  // and add a second listener.
  ASSERT_TRUE(gw_->apply(load(yaml({{"east", 0, {{"a.svc", "ca"}, {"b.svc", "cb"}}}, {"other", 0, {{"b.svc", "cb"}}}},
                                   {{"ca", a.port()}, {"cb", b.port()}})))
                  .empty());
  EXPECT_EQ(gw_->listener_port("east"), port);  // not rebound
  ASSERT_TRUE(still_relays(long_lived.get(), a, 0, "after-add"));
  auto via_new_chain = open_through(port, "b.svc", b, 0);
  ASSERT_NE(gw_->listener_port("other"), 0);
  auto via_new_listener = open_through(gw_->listener_port("other"), "b.svc", b, 1);

  // Remove the other chain again, then the second listener.
  ASSERT_TRUE(gw_->apply(load(yaml({{"east", 0, {{"a.svc", "ca"}}}}, {{"ca", a.port()}}))).empty());
  ASSERT_TRUE(still_relays(long_lived.get(), a, 0, "after-remove"));
  // Connections to a removed chain, cluster and listener also carry on until their peers end them.
  ASSERT_TRUE(still_relays(via_new_chain.get(), b, 0, "orphaned-chain"));
  ASSERT_TRUE(still_relays(via_new_listener.get(), b, 1, "orphaned-listener"));
  EXPECT_EQ(gw_->listener_port("other"), 0);
}

TEST_F(ConfigUpdateTest, RoutingChangesApplyToNewConnectionsOnly) {
  test::tcp_sink_server old_backend;
  test::tcp_sink_server new_backend;
  start(yaml({{"east", 0, {{"a.svc", "c"}}}}, {{"c", old_backend.port()}}));
  const std::uint16_t port = gw_->listener_port("east");
  auto before = open_through(port, "a.svc", old_backend, 0);
  ASSERT_TRUE(gw_->apply(load(yaml({{"east", 0, {{"a.svc", "c"}}}}, {{"c", new_backend.port()}}))).empty());
  auto after = open_through(port, "a.svc", new_backend, 0);
  EXPECT_TRUE(still_relays(before.get(), old_backend, 0, "old"));
  EXPECT_TRUE(still_relays(after.get(), new_backend, 0, "new"));
  EXPECT_EQ(old_backend.connections_accepted(), 1u);
}

TEST_F(ConfigUpdateTest, RemovedListenerStopsAcceptingMovedListenerRebinds) {
  test::tcp_sink_server backend;
  start(yaml({{"east", 0, {{"a.svc", "c"}}}, {"west", 0, {{"a.svc", "c"}}}}, {{"c", backend.port()}}));
  const std::uint16_t west = gw_->listener_port("west");
  auto open = open_through(west, "a.svc", backend, 0);
  ASSERT_TRUE(gw_->apply(load(yaml({{"east", 0, {{"a.svc", "c"}}}}, {{"c", backend.port()}}))).empty());
  // Closing the listening sockets happens on each worker; wait (bounded) until refused.
  bool refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    test::unique_fd probe(test::connect_tcp(west, 1s));
    refused = probe.get() < 0;
    if (!refused) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(refused);
  EXPECT_TRUE(still_relays(open.get(), backend, 0, "listener gone"));

  // Move "east" to a fixed port: the old port stops accepting, the new one serves.
  const std::uint16_t old_east = gw_->listener_port("east");
  const std::uint16_t new_east = test::unused_port();
  ASSERT_TRUE(gw_->apply(load(yaml({{"east", new_east, {{"a.svc", "c"}}}}, {{"c", backend.port()}}))).empty());
  EXPECT_EQ(gw_->listener_port("east"), new_east);
  auto moved = open_through(new_east, "a.svc", backend, 1);
  refused = false;
  for (int i = 0; i < 200 && !refused; ++i) {
    test::unique_fd probe(test::connect_tcp(old_east, 1s));
    refused = probe.get() < 0;
    if (!refused) std::this_thread::sleep_for(10ms);
  }
  EXPECT_TRUE(refused);
}

TEST_F(ConfigUpdateTest, InvalidUpdateKeepsTheLastGoodConfiguration) {
  test::tcp_sink_server backend;
  start(yaml({{"east", 0, {{"a.svc", "c"}}}}, {{"c", backend.port()}}));
  const std::uint16_t port = gw_->listener_port("east");
  auto open = open_through(port, "a.svc", backend, 0);
  const auto version = gw_->snapshot_version();
  // Two chains that overlap on one SNI without being identical: only the snapshot builder
  // sees it (as Envoy's "overlapping matching rules").
  auto bad = load(yaml({{"east", 0, {{"a.svc", "c"}}}}, {{"c", backend.port()}}));
  auto overlapping = bad.listeners[0].filter_chains[0];
  overlapping.server_names = {"a.svc", "b.svc"};
  bad.listeners[0].filter_chains.push_back(overlapping);
  auto errors = gw_->apply(bad);
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].find("overlaps"), std::string::npos) << errors[0];
  EXPECT_EQ(gw_->snapshot_version(), version);
  EXPECT_TRUE(still_relays(open.get(), backend, 0, "kept"));
  auto fresh = open_through(port, "a.svc", backend, 1);
}

TEST_F(ConfigUpdateTest, BindFailureRejectsTheUpdateWhole) {
  test::tcp_sink_server backend;
  test::tcp_sink_server squatter;  // holds a port without SO_REUSEPORT
  start(yaml({{"east", 0, {{"a.svc", "c"}}}}, {{"c", backend.port()}}));
  const std::uint16_t port = gw_->listener_port("east");
  auto errors = gw_->apply(load(yaml({{"east", 0, {{"a.svc", "c"}}}, {"busy", squatter.port(), {{"a.svc", "c"}}}},
                                     {{"c", backend.port()}})));
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("listener 'busy': cannot listen on 127.0.0.1:" + std::to_string(squatter.port())), std::string::npos)
      << errors[0];
  EXPECT_EQ(gw_->listener_port("busy"), 0);
  auto open = open_through(port, "a.svc", backend, 0);
  EXPECT_TRUE(still_relays(open.get(), backend, 0, "unaffected"));
}

}  // namespace
}  // namespace ewgw
