// Snapshot reuse across updates: what did not change (by revision) is kept, with its balancer
// state; listeners whose clusters changed are re-pointed without rebuilding their matcher.
#include "proxy/routing_snapshot.h"

#include <gtest/gtest.h>

#include <algorithm>

namespace ewgw::proxy {
namespace {

xds::cluster_config cluster(const std::string& name, std::uint64_t revision, std::uint16_t port) {
  xds::cluster_config c;
  c.name = name;
  c.revision.value = revision;
  xds::locality_endpoints_config loc;
  xds::endpoint_config e = xds::endpoint_config::at("127.0.0.1", port);
  e.health = xds::health_status::healthy;
  loc.endpoints.push_back(e);
  c.load_assignment.localities.push_back(loc);
  return c;
}

xds::listener_config listener(std::uint64_t revision, const std::vector<std::string>& clusters) {
  xds::listener_config l;
  l.name = "gw";
  l.revision.value = revision;
  l.address = {"127.0.0.1", 15443, false};
  for (const auto& c : clusters) {
    xds::filter_chain_config chain;
    chain.server_names = {c};
    chain.settings.edit().match.application_protocols = {"istio", "istio-peer-exchange"};
    chain.stat_prefix = c;
    chain.cluster = c;
    l.filter_chains.push_back(chain);
  }
  return l;
}

struct fixture {
  stats::registry registry{2};
  std::shared_ptr<const routing_snapshot> build(const xds::bootstrap_config& c, const routing_snapshot* previous) {
    std::vector<std::string> errors;
    auto s = build_snapshot(c, registry, 1, previous, errors);
    EXPECT_TRUE(errors.empty());
    return s;
  }
};

TEST(RoutingSnapshot, UnchangedRevisionsAreReused) {
  fixture f;
  xds::bootstrap_config c;
  c.clusters = {cluster("a", 1, 1), cluster("b", 2, 2)};
  c.listeners = {listener(3, {"a", "b"})};
  auto first = f.build(c, nullptr);
  auto second = f.build(c, first.get());
  EXPECT_EQ(second->clusters.at("a"), first->clusters.at("a"));
  EXPECT_EQ(second->clusters.at("b"), first->clusters.at("b"));
  EXPECT_EQ(second->listeners[0], first->listeners[0]);
}

TEST(RoutingSnapshot, AChangedClusterIsRebuiltAndItsChainRepointed) {
  fixture f;
  xds::bootstrap_config c;
  c.clusters = {cluster("a", 1, 1), cluster("b", 2, 2)};
  c.listeners = {listener(3, {"a", "b"})};
  auto first = f.build(c, nullptr);
  c.clusters[0] = cluster("a", 4, 9);  // EDS update of "a"
  auto second = f.build(c, first.get());
  EXPECT_NE(second->clusters.at("a"), first->clusters.at("a"));
  EXPECT_EQ(second->clusters.at("a")->balancer->hosts()[0]->address().port, 9);
  EXPECT_EQ(second->clusters.at("a")->shared, first->clusters.at("a")->shared);
  EXPECT_EQ(second->clusters.at("b"), first->clusters.at("b"));
  ASSERT_NE(second->listeners[0], first->listeners[0]);
  EXPECT_EQ(second->listeners[0]->matcher, first->listeners[0]->matcher);  // shared, not rebuilt
  EXPECT_EQ(second->listeners[0]->chains[0].cluster, second->clusters.at("a"));
  EXPECT_EQ(second->listeners[0]->chains[1].cluster, first->clusters.at("b"));
  EXPECT_EQ(second->listeners[0]->chains[1].stats, first->listeners[0]->chains[1].stats);

  // "b" removed: its chain no longer resolves; "a" kept.
  c.clusters.pop_back();
  auto third = f.build(c, second.get());
  EXPECT_EQ(third->clusters.at("a"), second->clusters.at("a"));
  EXPECT_FALSE(third->clusters.contains("b"));
  EXPECT_EQ(third->listeners[0]->chains[1].cluster, nullptr);
  EXPECT_EQ(third->listeners[0]->chains[0].cluster, second->clusters.at("a"));
}

TEST(RoutingSnapshot, RevisionZeroAndChangedListenersAreRebuilt) {
  fixture f;
  xds::bootstrap_config c;
  c.clusters = {cluster("a", 0, 1)};
  c.listeners = {listener(0, {"a"})};
  auto first = f.build(c, nullptr);
  auto second = f.build(c, first.get());
  EXPECT_NE(second->clusters.at("a"), first->clusters.at("a"));
  EXPECT_NE(second->listeners[0], first->listeners[0]);
  EXPECT_NE(second->listeners[0]->matcher, first->listeners[0]->matcher);

  c.clusters = {cluster("a", 1, 1), cluster("b", 2, 2)};
  c.listeners = {listener(5, {"a"})};
  auto third = f.build(c, second.get());
  c.listeners = {listener(6, {"a", "b"})};
  auto fourth = f.build(c, third.get());
  EXPECT_NE(fourth->listeners[0]->matcher, third->listeners[0]->matcher);
  EXPECT_EQ(fourth->listeners[0]->chains.size(), 2u);
  EXPECT_EQ(fourth->clusters.at("a"), third->clusters.at("a"));
}

TEST(RoutingSnapshot, TransportSocketMatchesKeepOnlyPlaintextEndpoints) {
  fixture f;
  xds::bootstrap_config c;
  auto istiod = cluster("outbound|15012||istiod.istio-system.svc.cluster.local", 1, 1);
  auto& eps = istiod.load_assignment.localities[0].endpoints;
  eps[0].transport_socket_match = {{"tlsMode", "istio"}};  // has a sidecar: Istio mTLS
  eps.push_back(xds::endpoint_config::at("127.0.0.1", 2));
  eps.push_back(xds::endpoint_config::at("127.0.0.1", 3));
  eps.back().transport_socket_match = {{"tlsMode", "disabled"}};
  istiod.settings.edit().transport_socket_matches = {{"tlsMode-istio", {{"tlsMode", "istio"}}, false},
                                                     {"tlsMode-disabled", {}, true}};
  c.clusters = {istiod};
  auto s = f.build(c, nullptr);
  const auto& hosts = s->clusters.at(istiod.name)->balancer->hosts();
  ASSERT_EQ(hosts.size(), 2u);
  EXPECT_EQ(hosts[0]->address().port, 2);
  EXPECT_EQ(hosts[1]->address().port, 3);
}

}  // namespace
}  // namespace ewgw::proxy

namespace ewgw::proxy {
namespace {

// A cluster's cold texts (why it is unusable, a differing EDS service name) share one block and
// its Istio service labels are the decoded cluster's list: each part reads back exactly,
// whichever of them are empty.
TEST(RoutingSnapshot, ClusterTextsReadBackEachPart) {
  xds::istio_service svc;
  svc.host = "helloworld.sample.svc.cluster.local";
  svc.name = "helloworld";
  svc.namespace_ = "sample";
  const xds::istio_service_list services{svc};
  const cluster_texts all(services, "lb_policy MAGLEV", "other-eds");
  EXPECT_EQ(all.host(), svc.host);
  EXPECT_EQ(all.name(), svc.name);
  EXPECT_EQ(all.namespace_(), svc.namespace_);
  EXPECT_EQ(all.unsupported(), "lb_policy MAGLEV");
  EXPECT_EQ(all.other_eds_service_name(), "other-eds");
  const cluster_texts some({}, "", "eds-only");
  EXPECT_EQ(some.host(), "");
  EXPECT_EQ(some.namespace_(), "");
  EXPECT_EQ(some.unsupported(), "");
  EXPECT_EQ(some.other_eds_service_name(), "eds-only");
  const cluster_texts none({}, "", "");
  EXPECT_EQ(none.name(), "");
  EXPECT_EQ(none.other_eds_service_name(), "");
  // istiod's clusters: the labels are parts of the cluster's own name, read in place.
  const xds::shared_string istiod_name("outbound_.80_._.helloworld.sample.svc.cluster.local");
  const cluster_texts derived(xds::istio_service_list({svc}, istiod_name), "", "");
  EXPECT_EQ(derived.host(), svc.host);
  EXPECT_EQ(derived.name(), svc.name);
  EXPECT_EQ(derived.namespace_(), svc.namespace_);
  EXPECT_EQ(derived.host().data(), istiod_name.data() + istiod_name.view().find(svc.host));

  fixture f;
  xds::bootstrap_config c;
  c.clusters = {cluster("a", 1, 1)};
  c.clusters[0].type = xds::discovery_type::eds;
  c.clusters[0].eds_service_name = "a-eds";
  c.clusters[0].istio_services = {svc};
  c.clusters[0].settings.edit().unsupported = "upstream TLS";
  auto s = f.build(c, nullptr);
  const cluster_runtime& a = *s->clusters.at("a");
  EXPECT_TRUE(a.has_istio_service());
  EXPECT_EQ(a.texts.name(), "helloworld");
  EXPECT_EQ(a.texts.host().data(), c.clusters[0].istio_services[0].host.data());  // shared, not copied
  EXPECT_EQ(a.unsupported(), "upstream TLS");
  EXPECT_EQ(a.eds_service_name(), "a-eds");
}

// The snapshot keeps the decoded names by reference: istiod names a cluster, its chain's
// tcp_proxy cluster and stat_prefix alike, and ads_state gives them one shared copy; a copy per
// runtime object would cost ~90 bytes per cluster at 10,000 clusters.
TEST(RoutingSnapshot, ClusterAndChainStatsShareTheDecodedName) {
  fixture f;
  xds::bootstrap_config c;
  c.clusters = {cluster("outbound_.8080_._.svc-1.ns-1.svc.cluster.local", 1, 1)};
  c.listeners = {listener(2, {})};
  xds::filter_chain_config chain;
  chain.server_names = {"outbound_.8080_._.svc-1.ns-1.svc.cluster.local"};
  chain.stat_prefix = c.clusters[0].name;
  chain.cluster = c.clusters[0].name;
  c.listeners[0].filter_chains.push_back(chain);
  auto s = f.build(c, nullptr);
  const auto& runtime = *s->clusters.at(c.clusters[0].name.view());
  EXPECT_TRUE(runtime.name.shares_with(c.clusters[0].name));
  const auto& built = s->listeners[0]->chains[0];
  EXPECT_EQ(built.cluster.get(), &runtime);
  EXPECT_EQ(built.stats->stat_prefix().data(), c.clusters[0].name.data());
}

// A chain's tcp stats keep their prefix by reference and create the scope on first use,
// the same scope the registry hands out for that name; listener versions keeping the chain
// share it.
TEST(RoutingSnapshot, ChainTcpStatsCreateTheirScopeOnFirstUse) {
  fixture f;
  const std::string prefix = "outbound_.8080_._.svc-1.ns-1.svc.cluster.local";
  auto st = chain_tcp_stats::make(prefix);
  EXPECT_EQ(st->stat_prefix(), prefix);
  EXPECT_EQ(st->get(), nullptr);
  st->worker(f.registry, 1);
  ASSERT_NE(st->get(), nullptr);
  EXPECT_EQ(st->get(), f.registry.get<tcp_stats>("tcp", prefix).get());

  xds::bootstrap_config c;
  c.clusters = {cluster("a", 1, 1), cluster("b", 2, 2)};
  c.listeners = {listener(3, {"a", "b"})};
  auto first = f.build(c, nullptr);
  c.clusters[1].revision.value = 4;  // b changes: a new listener version, same chains
  auto second = f.build(c, first.get());
  ASSERT_NE(second->listeners[0], first->listeners[0]);
  EXPECT_EQ(second->listeners[0]->chains[0].stats, first->listeners[0]->chains[0].stats);
  EXPECT_EQ(second->listeners[0]->chains[1].stats->stat_prefix(), "b");
}

// The snapshot's cluster table: a later cluster of the same name replaces the earlier one (the
// key views the replacing cluster's name), names not configured are not found, and every
// cluster is visited once.
TEST(RoutingSnapshot, ClusterTableFindsByNameAndLaterDuplicatesWin) {
  fixture f;
  xds::bootstrap_config c;
  for (int i = 0; i < 100; ++i) c.clusters.push_back(cluster("outbound_.8080_._.svc-" + std::to_string(i) + ".ns.svc.cluster.local", 0, 1));
  c.clusters.push_back(cluster("outbound_.8080_._.svc-7.ns.svc.cluster.local", 0, 9));
  auto s = f.build(c, nullptr);
  EXPECT_EQ(s->clusters.size(), 100u);
  std::size_t visited = 0;
  for (const auto& cl : s->clusters) {
    ASSERT_NE(cl, nullptr);
    EXPECT_EQ(s->clusters.at(cl->name), cl);
    ++visited;
  }
  EXPECT_EQ(visited, 100u);
  const auto& replaced = s->clusters.at("outbound_.8080_._.svc-7.ns.svc.cluster.local");
  ASSERT_NE(replaced, nullptr);
  EXPECT_EQ(replaced->balancer->hosts()[0]->address().port, 9);
  EXPECT_EQ(s->clusters.find("outbound_.8080_._.svc-100.ns.svc.cluster.local"), nullptr);
  EXPECT_EQ(s->clusters.find(""), nullptr);
  EXPECT_FALSE(s->clusters.contains("outbound_.8080_._.svc-7.ns.svc.cluster.loca"));
}

// Chains with equal tcp_proxy settings (istiod's SNI chains: one per service) share one settings
// block; a chain whose settings hold cluster state (a removed cluster's name, weighted targets)
// gets its own when that state changes, and blocks no chain uses are dropped.
TEST(RoutingSnapshot, ChainsWithEqualSettingsShareOneBlock) {
  fixture f;
  xds::bootstrap_config c;
  c.clusters = {cluster("a", 1, 1), cluster("b", 2, 2), cluster("c", 3, 3)};
  c.listeners = {listener(4, {"a", "b", "c"})};
  xds::filter_chain_config weighted;
  weighted.server_names = {"w"};
  weighted.stat_prefix = "w";
  weighted.settings.edit().tcp_proxy.weighted_clusters = {{"a", 1}, {"c", 3}};
  c.listeners[0].filter_chains.push_back(weighted);
  auto first = f.build(c, nullptr);
  const listener_runtime& l1 = *first->listeners[0];
  ASSERT_EQ(l1.chains.size(), 4u);
  EXPECT_EQ(l1.settings_blocks.size(), 2u);
  EXPECT_EQ(l1.chains[0].settings, l1.chains[1].settings);
  EXPECT_EQ(l1.chains[0].settings, l1.chains[2].settings);
  EXPECT_NE(l1.chains[3].settings, l1.chains[0].settings);
  EXPECT_EQ(l1.chains[0].settings->unresolved_cluster, nullptr);
  ASSERT_EQ(l1.chains[3].settings->weighted.size(), 2u);
  EXPECT_EQ(l1.chains[3].settings->weighted[1].cluster, first->clusters.at("c"));
  EXPECT_EQ(l1.chains[3].settings->total_weight, 4u);

  // "c" removed: its chain keeps the name in a block of its own; the weighted chain's target
  // is gone; "a" and "b" still share the first block.
  c.clusters.pop_back();
  auto second = f.build(c, first.get());
  const listener_runtime& l2 = *second->listeners[0];
  EXPECT_EQ(l2.chains[0].settings, l1.chains[0].settings);
  EXPECT_EQ(l2.chains[1].settings, l1.chains[0].settings);
  ASSERT_NE(l2.chains[2].settings, l1.chains[0].settings);
  EXPECT_EQ(l2.chains[2].cluster, nullptr);
  EXPECT_EQ(l2.chains[2].cluster_name(), "c");
  EXPECT_EQ(l2.chains[3].settings->weighted[1].cluster, nullptr);
  EXPECT_EQ(l2.chains[3].settings->weighted[0].cluster, second->clusters.at("a"));
  EXPECT_EQ(l2.settings_blocks.size(), 3u);  // shared, "c" unresolved, weighted (the old weighted one dropped)
  for (const auto& chain : l2.chains) {
    EXPECT_TRUE(std::any_of(l2.settings_blocks.begin(), l2.settings_blocks.end(),
                            [&](const auto& b) { return b.get() == chain.settings; }));
  }
  // The earlier version still holds its own blocks (connections may be using them).
  EXPECT_EQ(l1.chains[3].settings->weighted[1].cluster, first->clusters.at("c"));

  // "c" back: its chain shares the first block again.
  c.clusters.push_back(cluster("c", 5, 3));
  auto third = f.build(c, second.get());
  const listener_runtime& l3 = *third->listeners[0];
  EXPECT_EQ(l3.chains[2].settings, l3.chains[0].settings);
  EXPECT_EQ(l3.chains[2].cluster, third->clusters.at("c"));
  EXPECT_EQ(l3.settings_blocks.size(), 2u);
}

// A chain that moves back to a block the listener already has leaves its own block unused; the
// new listener version must not keep it (blocks would pile up as clusters come and go).
TEST(RoutingSnapshot, ABlockNoChainUsesIsDroppedWhenAChainMovesToAnExistingOne) {
  fixture f;
  xds::bootstrap_config c;
  c.clusters = {cluster("a", 1, 1), cluster("b", 2, 2)};
  c.listeners = {listener(4, {"a", "b"})};
  auto first = f.build(c, nullptr);
  EXPECT_EQ(first->listeners[0]->settings_blocks.size(), 1u);

  c.clusters.pop_back();  // "b" gone: its chain keeps the name in a block of its own
  auto second = f.build(c, first.get());
  EXPECT_EQ(second->listeners[0]->settings_blocks.size(), 2u);

  c.clusters.push_back(cluster("b", 3, 2));  // back: its chain shares the first block again
  auto third = f.build(c, second.get());
  const listener_runtime& l3 = *third->listeners[0];
  EXPECT_EQ(l3.chains[1].settings, l3.chains[0].settings);
  EXPECT_EQ(l3.settings_blocks.size(), 1u);
}

}  // namespace
}  // namespace ewgw::proxy
