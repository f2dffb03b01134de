// The Envoy-faithful balancer through the real gateway (black box): istiod computes priorities
// and locality weights assuming Envoy's arithmetic, so the split and the failover seen by real
// connections must match it.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "proxy/gateway.h"
#include "test/support/client_hello_bytes.h"
#include "test/support/tcp_util.h"
#include "xds/decode.h"

namespace ewgw {
namespace {

struct endpoint_spec {
  std::uint16_t port;
  std::string health = "HEALTHY";
};
struct locality_spec {
  std::string zone;
  std::uint32_t priority = 0;
  std::uint32_t weight = 0;  // 0: unset
  std::vector<endpoint_spec> endpoints;
};

std::string yaml(const std::vector<locality_spec>& localities, bool locality_weighted, const std::string& policy = "ROUND_ROBIN") {
  std::string y = R"(static_resources:
  listeners:
  - name: east
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    listener_filters: [{name: envoy.filters.listener.tls_inspector, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}]
    filter_chains:
    - filter_chain_match: {server_names: [svc]}
      filters: [{name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: svc, cluster: svc}}]
  clusters:
  - name: svc
    lb_policy: )" + policy + "\n";
  if (locality_weighted) y += "    common_lb_config: {locality_weighted_lb_config: {}}\n";
  y += "    load_assignment:\n      cluster_name: svc\n      endpoints:\n";
  for (const auto& l : localities) {
    y += "      - locality: {region: r, zone: " + l.zone + "}\n        priority: " + std::to_string(l.priority) + "\n";
    if (l.weight) y += "        load_balancing_weight: " + std::to_string(l.weight) + "\n";
    y += "        lb_endpoints:\n";
    for (const auto& e : l.endpoints) {
      y += "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: " + std::to_string(e.port) +
           "}}}\n          health_status: " + e.health + "\n";
    }
  }
  return y;
}

class LoadBalancingTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { test::ignore_sigpipe(); }
  void start(const std::string& text) {
    auto r = xds::load_bootstrap_text(text, "lb.yaml");
    ASSERT_TRUE(r.diag.ok()) << (r.diag.errors.empty() ? "" : r.diag.errors[0]) << "\n" << text;
    gw_ = std::make_unique<proxy::gateway>(proxy::gateway_options{2});
    ASSERT_TRUE(gw_->apply(r.config).empty());
    ASSERT_FALSE(gw_->start());
  }
  void apply(const std::string& text) {
    auto r = xds::load_bootstrap_text(text, "lb.yaml");
    ASSERT_TRUE(r.diag.ok()) << r.diag.errors[0];
    ASSERT_TRUE(gw_->apply(r.config).empty());
  }
  void TearDown() override {
    if (gw_) gw_->stop();
  }
  // Opens `n` connections, one after another, each completing an echo.
  void connect(int n) {
    const auto hello = test::make_client_hello("svc", {"istio"});
    const std::string bytes(reinterpret_cast<const char*>(hello.data()), hello.size());
    for (int i = 0; i < n; ++i) {
      test::unique_fd fd(test::connect_tcp(gw_->listener_port("east")));
      ASSERT_TRUE(test::send_all(fd.get(), bytes));
      std::string echoed;
      ASSERT_TRUE(test::read_exact(fd.get(), bytes.size(), echoed)) << "connection " << i;
    }
  }
  std::unique_ptr<proxy::gateway> gw_;
};

TEST_F(LoadBalancingTest, LocalityWeightsSplitConnections8020) {
  test::tcp_echo_server a, b;
  start(yaml({{"a", 0, 80, {{a.port()}}}, {"b", 0, 20, {{b.port()}}}}, true));
  connect(2000);
  const double share = static_cast<double>(a.connections_accepted()) / 2000.0;
  // EDF over 80/20 is deterministic per worker; two workers each split 80/20.
  EXPECT_NEAR(share, 0.80, 0.02) << a.connections_accepted() << " / " << b.connections_accepted();
  EXPECT_EQ(a.connections_accepted() + b.connections_accepted(), 2000u);
}

TEST_F(LoadBalancingTest, UnhealthyPriorityZeroFailsOverToPriorityOneAndBack) {
  test::tcp_echo_server p0a, p0b, p1;
  const auto config = [&](const std::string& health) {
    return yaml({{"local", 0, 0, {{p0a.port(), health}, {p0b.port(), health}}}, {"remote", 1, 0, {{p1.port()}}}}, false);
  };
  start(config("HEALTHY"));
  connect(100);
  EXPECT_EQ(p0a.connections_accepted() + p0b.connections_accepted(), 100u);
  EXPECT_EQ(p1.connections_accepted(), 0u);

  // Priority 0 turns UNHEALTHY (as EDS would say): all load moves to priority 1.
  apply(config("UNHEALTHY"));
  connect(100);
  EXPECT_EQ(p1.connections_accepted(), 100u);
  EXPECT_EQ(p0a.connections_accepted() + p0b.connections_accepted(), 100u);

  // Half of priority 0 back: Envoy's arithmetic with overprovisioning 140 gives priority 0
  // min(100, 140 * 1/2) = 70% of the load and priority 1 the remaining 30%.
  apply(yaml({{"local", 0, 0, {{p0a.port()}, {p0b.port(), "UNHEALTHY"}}}, {"remote", 1, 0, {{p1.port()}}}}, false));
  const std::size_t before_p0 = p0a.connections_accepted();
  const std::size_t before_p1 = p1.connections_accepted();
  connect(1000);
  const double p0_share = static_cast<double>(p0a.connections_accepted() - before_p0) / 1000.0;
  EXPECT_NEAR(p0_share, 0.70, 0.06);
  EXPECT_EQ((p0a.connections_accepted() - before_p0) + (p1.connections_accepted() - before_p1), 1000u);

  // Fully healthy again: everything returns to priority 0.
  apply(config("HEALTHY"));
  const std::size_t back_p1 = p1.connections_accepted();
  connect(100);
  EXPECT_EQ(p1.connections_accepted(), back_p1);
}

TEST_F(LoadBalancingTest, DegradedHostsServeOnlyWhenHealthyOnesRunShort) {
  test::tcp_echo_server healthy, degraded;
  start(yaml({{"z", 0, 0, {{healthy.port()}, {degraded.port(), "DEGRADED"}}}}, false));
  // The priority draw is random: over 1,000 connections the degraded share has a standard
  // deviation of 1.4 points, so +-5 points is 3.4 sigma (200 connections at +-8 points failed
  // about once in 200 runs).
  constexpr int n = 1000;
  connect(n);
  // One healthy of two hosts: health = 140 * 1/2 = 70%, degraded = 70% -> loads 70 healthy,
  // 30 degraded.
  const double degraded_share = static_cast<double>(degraded.connections_accepted()) / n;
  EXPECT_NEAR(degraded_share, 0.30, 0.05);
}

TEST_F(LoadBalancingTest, LeastRequestPrefersTheLessLoadedHost) {
  // "busy" holds its connections open; "idle" echoes and closes after the client's FIN, so its
  // connections end (a sink would keep them half-open, correctly, and count them as active).
  test::tcp_sink_server busy;
  test::tcp_echo_server idle;
  start(yaml({{"z", 0, 0, {{busy.port()}, {idle.port()}}}}, false, "LEAST_REQUEST"));
  auto settle = [&](std::int64_t active) {
    for (int i = 0; i < 2000 && gw_->stats().value("cluster.svc.upstream_cx_active") != active; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  };
  const auto hello = test::make_client_hello("svc", {"istio"});
  const std::string bytes(reinterpret_cast<const char*>(hello.data()), hello.size());
  auto arrivals = [&] { return busy.connections_accepted() + idle.connections_accepted(); };
  // Hold 20 connections open on "busy"; those that land on "idle" are closed again.
  std::vector<test::unique_fd> held;
  for (int i = 0; i < 200 && busy.connections_accepted() < 20; ++i) {
    const std::size_t before_busy = busy.connections_accepted();
    const std::size_t before = arrivals();
    test::unique_fd fd(test::connect_tcp(gw_->listener_port("east")));
    ASSERT_TRUE(test::send_all(fd.get(), bytes));
    while (arrivals() == before) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (busy.connections_accepted() > before_busy) {
      held.push_back(std::move(fd));
    } else {
      fd.reset();
      settle(static_cast<std::int64_t>(held.size()));
    }
  }
  ASSERT_EQ(busy.connections_accepted(), 20u);
  // Envoy's least request draws choice_count (2) hosts at random, with replacement, and takes
  // the one with fewer active requests: with 20 open on "busy" and ~0 on "idle", a new
  // connection goes to "idle" unless both draws hit "busy" (1 in 4). Round robin would give 1/2.
  const std::size_t idle_before = idle.connections_accepted();
  const std::size_t busy_before = busy.connections_accepted();
  constexpr int n = 200;
  for (int i = 0; i < n; ++i) {
    const std::size_t before = arrivals();
    test::unique_fd fd(test::connect_tcp(gw_->listener_port("east")));
    ASSERT_TRUE(test::send_all(fd.get(), bytes));
    while (arrivals() == before) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (busy.connections_accepted() > busy_before + held.size() - 20) held.push_back(std::move(fd));
    fd.reset();
    settle(static_cast<std::int64_t>(held.size()));
  }
  const double idle_share = static_cast<double>(idle.connections_accepted() - idle_before) / n;
  EXPECT_NEAR(idle_share, 0.75, 0.1) << "busy got " << (busy.connections_accepted() - busy_before);
}

TEST_F(LoadBalancingTest, RefusingHostIsEjectedAndNotPickedWhileHealthyHostsRemain) {
  test::tcp_echo_server good;
  const std::uint16_t refusing = test::unused_port();
  std::string config = yaml({{"z", 0, 0, {{refusing}, {good.port()}}}}, false);
  // Eject after 3 consecutive connect failures; 100% may be ejected; the interval is long so
  // no tick un-ejects it during the test.
  config.replace(config.find("    load_assignment:"), 0,
                 "    outlier_detection: {consecutive_5xx: 3, max_ejection_percent: 100, interval: 600s, "
                 "base_ejection_time: 600s}\n");
  // max_connect_attempts 2: a connection that hits the refusing host is retried on the other.
  config.replace(config.find("cluster: svc}}]"), 14, "cluster: svc, max_connect_attempts: 2}}");
  start(config);
  connect(20);  // every connection succeeds (retries), and the refusing host collects failures
  // The ejection is decided on the control thread after the third consecutive failure; picks
  // racing that decision (more on a loaded machine) may still reach the host. Wait until the
  // balancer shows it ejected (bounded), then nothing more may go there.
  const auto ejected_hosts = [&] {
    const auto snapshot = gw_->current_snapshot();
    std::size_t n = 0;
    for (const auto& h : snapshot->clusters.at("svc")->balancer->explain().hosts) n += h.ejected ? 1 : 0;
    return n;
  };
  for (int i = 0; i < 500 && ejected_hosts() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(ejected_hosts(), 1u);
  const auto fails = gw_->stats().value("cluster.svc.upstream_cx_connect_fail");
  EXPECT_GE(fails, 3);
  connect(50);
  EXPECT_EQ(gw_->stats().value("cluster.svc.upstream_cx_connect_fail"), fails);
  EXPECT_EQ(good.connections_accepted(), 70u);
}

TEST_F(LoadBalancingTest, PriorityZeroThatStopsAcceptingIsEjectedFailsOverAndReturnsAfterEjectionTime) {
  // Priority 0 (two local hosts) and priority 1 (one remote host), as istiod's locality
  // failover lays them out. When both local hosts stop accepting, outlier detection ejects them
  // and Envoy's priority arithmetic moves all load to priority 1; once they accept again, the
  // base ejection time elapses, the periodic tick un-ejects them and traffic returns.
  auto p0a = std::make_unique<test::tcp_echo_server>();
  auto p0b = std::make_unique<test::tcp_echo_server>();
  test::tcp_echo_server p1;
  const std::uint16_t port_a = p0a->port(), port_b = p0b->port();
  // Two consecutive connect failures eject a host; two of three hosts may be ejected. Hosts are
  // un-ejected only by the periodic tick (as in Envoy), so with a 600s interval nothing returns
  // until the test shortens it: no race between the assertions and the ejection time.
  const auto config = [&](const std::string& interval) {
    std::string c = yaml({{"local", 0, 0, {{port_a}, {port_b}}}, {"remote", 1, 0, {{p1.port()}}}}, false);
    c.replace(c.find("    load_assignment:"), 0,
              "    outlier_detection: {consecutive_5xx: 2, max_ejection_percent: 100, interval: " + interval +
                  ", base_ejection_time: 1s}\n");
    // A connect that fails is retried on another host, so no client sees the failover.
    c.replace(c.find("cluster: svc}}]"), 14, "cluster: svc, max_connect_attempts: 5}}");
    return c;
  };
  start(config("600s"));
  connect(50);
  EXPECT_EQ(p0a->connections_accepted() + p0b->connections_accepted(), 50u);
  EXPECT_EQ(p1.connections_accepted(), 0u);

  // Priority 0 stops accepting (connects are refused). Every client connection still succeeds
  // through retries while the failures eject both hosts.
  p0a.reset();
  p0b.reset();
  connect(30);
  const auto fails = gw_->stats().value("cluster.svc.upstream_cx_connect_fail");
  EXPECT_GE(fails, 4);  // two consecutive failures on each host
  // Ejected: nothing more is sent to priority 0 while priority 1 is healthy.
  const std::size_t p1_before = p1.connections_accepted();
  connect(100);
  EXPECT_EQ(gw_->stats().value("cluster.svc.upstream_cx_connect_fail"), fails);
  EXPECT_EQ(p1.connections_accepted() - p1_before, 100u);

  // Priority 0 accepts again on the same ports, and an update shortens the interval (the hosts
  // keep their ejection state across it, and the new interval applies at once). Once
  // base_ejection_time (1s, first ejection) has passed, a tick un-ejects both hosts; wait for
  // traffic to come back (bounded), then all of it goes to priority 0 again.
  p0a = std::make_unique<test::tcp_echo_server>(port_a);
  p0b = std::make_unique<test::tcp_echo_server>(port_b);
  apply(config("0.2s"));
  for (int i = 0; i < 300 && p0a->connections_accepted() + p0b->connections_accepted() < 2; ++i) {
    connect(1);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_EQ(p0a->connections_accepted() + p0b->connections_accepted() >= 2, true)
      << "priority 0 hosts were never un-ejected";
  const std::size_t p1_back = p1.connections_accepted();
  const std::size_t p0_back = p0a->connections_accepted() + p0b->connections_accepted();
  connect(100);
  EXPECT_EQ(p1.connections_accepted(), p1_back);
  EXPECT_EQ(p0a->connections_accepted() + p0b->connections_accepted() - p0_back, 100u);
  EXPECT_GT(p0a->connections_accepted(), 0u);
  EXPECT_GT(p0b->connections_accepted(), 0u);
}

}  // namespace
}  // namespace ewgw
