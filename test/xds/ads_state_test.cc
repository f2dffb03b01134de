// The xDS resource state machine without a transport: warming clusters, waiting listeners,
// removals in both variants, whole-response rejection and rollback, unusable clusters.
#include "xds/ads_state.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <memory>
#include <string>

#include "test/xds/istio_fixtures.h"
#include "xds/decode_internal.h"

namespace ewgw::xds {
namespace {

namespace istio = test::istio;
using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

template <class M>
google::protobuf::Any pack(const M& m) {
  google::protobuf::Any a;
  a.PackFrom(m);
  return a;
}

template <class... M>
ads_state::any_list list(const M&... m) {
  ads_state::any_list out;
  (out.Add(pack(m)), ...);
  return out;
}

template <class M>
envoy::service::discovery::v3::Resource resource(const M& m, const std::string& name, const std::string& version) {
  envoy::service::discovery::v3::Resource r;
  r.set_name(name);
  r.set_version(version);
  *r.mutable_resource() = pack(m);
  return r;
}

const cluster_config* find_cluster(const bootstrap_config& c, const std::string& name) {
  for (const auto& cl : c.clusters) {
    if (cl.name == name) return &cl;
  }
  return nullptr;
}

const listener_config* find_listener(const bootstrap_config& c, const std::string& name) {
  for (const auto& l : c.listeners) {
    if (l.name == name) return &l;
  }
  return nullptr;
}

bootstrap_config ads_bootstrap() {
  bootstrap_config b;
  b.ads = ads_config{};
  return b;
}

const std::string a = istio::sni_name("a.ns.svc.cluster.local", 5000);
const std::string b = istio::sni_name("b.ns.svc.cluster.local", 5000);

// Services a and b as istiod sends them (cluster, assignment, a 15443 chain each), committed.
void apply_two_istio_services(ads_state& s, clock::time_point t0) {
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a), istio::sni_dnat_cluster(b)), t0);
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1001}), istio::local_assignment(b, {1002})), t0);
  s.apply_sotw(resource_kind::listener, list(istio::gateway_listener(15443, {{a, a}, {b, b}})), t0);
  s.commit();
}

// The index's own name strings, for the config dump store to share: istiod's cluster and its
// EDS service are one string, and the per-cluster EDS results hand out the same.
TEST(AdsState, SharedNameHandsOutTheIndexStrings) {
  ads_state s(ads_bootstrap(), 15s);
  apply_two_istio_services(s, clock::now());
  const shared_string cluster = s.shared_name(resource_kind::cluster, a);
  EXPECT_EQ(cluster, a);
  EXPECT_TRUE(cluster.shares_with(s.shared_name(resource_kind::endpoint, a)));
  EXPECT_EQ(s.shared_name(resource_kind::listener, "0.0.0.0_15443"), "0.0.0.0_15443");
  EXPECT_TRUE(s.shared_name(resource_kind::cluster, "unknown").empty());
  EXPECT_TRUE(s.shared_name(resource_kind::endpoint, "unknown").empty());
  EXPECT_TRUE(s.shared_name(resource_kind::listener, a).empty());
  const auto r = s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1003})), clock::now());
  ASSERT_TRUE(r.errors.empty());
  ASSERT_EQ(r.eds_clusters.size(), 1u);
  EXPECT_TRUE(r.eds_clusters[0].shares_with(cluster));
  s.commit();
}

TEST(AdsState, EdsClusterWarmsUntilItsFirstAssignment) {
  ads_state s(ads_bootstrap(), 15s);
  auto r = s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a)), clock::now());
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  EXPECT_FALSE(r.changed);  // warming: nothing routes differently
  s.commit();
  EXPECT_EQ(s.warming_clusters(), 1u);
  EXPECT_EQ(s.eds_names(), sorted_names({a}));
  EXPECT_EQ(find_cluster(s.assemble(), a), nullptr);

  r = s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1001, 1002})), clock::now());
  ASSERT_TRUE(r.errors.empty());
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(r.eds_clusters, std::vector<shared_string>{a});
  s.commit();
  const auto cfg = s.assemble();
  const cluster_config* c = find_cluster(cfg, a);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->settings->policy, lb_policy::least_request);
  EXPECT_EQ(c->settings->max_connections, 4294967295u);
  EXPECT_TRUE(c->settings->locality_weighted);
  ASSERT_EQ(c->load_assignment.localities.size(), 1u);
  EXPECT_EQ(c->load_assignment.localities[0].endpoints.size(), 2u);
  EXPECT_EQ(c->load_assignment.localities[0].where->region, "us-east1");
  EXPECT_EQ(s.warming_clusters(), 0u);

  // The same response again changes nothing (resources are compared, not re-applied).
  r = s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a)), clock::now());
  EXPECT_FALSE(r.changed);
  r = s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1001, 1002})), clock::now());
  EXPECT_FALSE(r.changed);
}

TEST(AdsState, LocalityPrioritiesWeightsAndHealthFollowEds) {
  ads_state s(ads_bootstrap(), 15s);
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a)), clock::now());
  s.commit();
  istio::locality_spec near{"us-east1", "us-east1-b", "", 0, 3, {{"10.0.0.1", 80, 2, true}, {"10.0.0.2", 80, 1, false}}};
  istio::locality_spec far{"eu-west1", "eu-west1-a", "", 3, 1, {{"10.1.0.1", 80, 1, true}}};
  s.apply_sotw(resource_kind::endpoint, list(istio::assignment(a, {near, far})), clock::now());
  s.commit();
  const cluster_config* c = find_cluster(s.assemble(), a);
  ASSERT_NE(c, nullptr);
  ASSERT_EQ(c->load_assignment.localities.size(), 2u);
  EXPECT_EQ(c->load_assignment.localities[0].weight, 3u);
  EXPECT_EQ(c->load_assignment.localities[0].endpoints[0].weight, 2u);
  EXPECT_EQ(c->load_assignment.localities[0].endpoints[1].health, health_status::unhealthy);
  EXPECT_EQ(c->load_assignment.localities[1].priority, 3u);
  EXPECT_EQ(c->load_assignment.localities[1].where->region, "eu-west1");
}

TEST(AdsState, ListenerWaitsForWarmingClusterThenTakesEffect) {
  ads_state s(ads_bootstrap(), 15s);
  const auto t0 = clock::now();
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a)), t0);
  s.commit();
  auto r = s.apply_sotw(resource_kind::listener, list(istio::gateway_listener(15443, {{a, a}})), t0);
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  EXPECT_FALSE(r.changed);
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes[0].find("waits for cluster(s) '" + a + "'"), std::string::npos) << r.notes[0];
  s.commit();
  EXPECT_EQ(s.waiting_listeners(), 1u);
  EXPECT_EQ(s.assemble().listeners.size(), 0u);
  ASSERT_TRUE(s.next_wait_deadline());

  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1001})), t0);
  s.commit();
  r = s.promote_listeners(t0);
  EXPECT_TRUE(r.changed);
  s.commit();
  EXPECT_EQ(s.waiting_listeners(), 0u);
  const auto cfg = s.assemble();
  const listener_config* l = find_listener(cfg, "0.0.0.0_15443");
  ASSERT_NE(l, nullptr);
  ASSERT_EQ(l->filter_chains.size(), 1u);
  EXPECT_EQ(l->filter_chains[0].settings->match.application_protocols.size(), 5u);
  EXPECT_TRUE(l->tls_inspector);
}

TEST(AdsState, ListenerNamingAnUnknownClusterIsAppliedAfterTheWait) {
  ads_state s(ads_bootstrap(), 15s);
  const auto t0 = clock::now();
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a)), t0);
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1001})), t0);
  s.commit();
  // Version 1 is in force; version 2 adds a chain to a cluster nobody sent.
  s.apply_sotw(resource_kind::listener, list(istio::gateway_listener(15443, {{a, a}})), t0);
  s.commit();
  s.apply_sotw(resource_kind::listener, list(istio::gateway_listener(15443, {{a, a}, {b, b}})), t0);
  s.commit();
  EXPECT_EQ(find_listener(s.assemble(), "0.0.0.0_15443")->filter_chains.size(), 1u);
  EXPECT_FALSE(s.promote_listeners(t0 + 14s).changed);
  s.commit();
  auto r = s.promote_listeners(t0 + 15s);
  EXPECT_TRUE(r.changed);
  s.commit();
  EXPECT_NE(r.notes[0].find("connections to cluster(s) '" + b + "' are closed"), std::string::npos) << r.notes[0];
  EXPECT_EQ(find_listener(s.assemble(), "0.0.0.0_15443")->filter_chains.size(), 2u);
}

// A new assignment makes a new version of the cluster in force; its Istio services (the
// telemetry labels) stay one shared list rather than a copy per version.
TEST(AdsState, AnAssignmentUpdateKeepsTheClustersIstioServicesShared) {
  ads_state s(ads_bootstrap(), 15s);
  const auto t0 = clock::now();
  apply_two_istio_services(s, t0);
  const auto before = s.assemble();
  const cluster_config* old_a = find_cluster(before, a);
  ASSERT_NE(old_a, nullptr);
  ASSERT_EQ(old_a->istio_services.size(), 1u);
  auto r = s.apply_sotw(resource_kind::endpoint,
                        list(istio::local_assignment(a, {1001, 1003}), istio::local_assignment(b, {1002})), t0);
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  s.commit();
  const cluster_config* new_a = find_cluster(s.assemble(), a);
  ASSERT_NE(new_a, nullptr);
  ASSERT_EQ(new_a->load_assignment.localities[0].endpoints.size(), 2u);
  EXPECT_NE(new_a->revision.value, old_a->revision.value);
  EXPECT_TRUE(new_a->istio_services.shares_with(old_a->istio_services));
}

// ads_state discards notices (it reports errors), so it asks the decoders not to build them:
// istiod's clusters and chains carry fields ewgw accepts and ignores, and their notices were
// ~100,000 strings per full state at 10,000 clusters. Errors and unsupported settings still come.
TEST(AdsState, XdsDecodersBuildNoNoticesWhenAskedNotTo) {
  const auto cluster = istio::sni_dnat_cluster(a);
  const auto listener = istio::gateway_listener(15443, {{a, a}});
  diagnostics with;
  cluster_config c1;
  listener_config l1;
  ASSERT_TRUE(decode_dynamic_cluster(cluster, "", with, c1));
  ASSERT_TRUE(decode_dynamic_listener(listener, "", with, l1));
  EXPECT_FALSE(with.notices.empty());  // the fixture has ignored fields: the test can fail

  diagnostics without;
  without.keep_notices = false;
  cluster_config c2;
  listener_config l2;
  ASSERT_TRUE(decode_dynamic_cluster(cluster, "", without, c2));
  ASSERT_TRUE(decode_dynamic_listener(listener, "", without, l2));
  EXPECT_TRUE(without.notices.empty()) << without.notices.front();
  EXPECT_EQ(c1, c2);
  EXPECT_EQ(l1, l2);

  cluster_config bad;
  auto unnamed = cluster;
  unnamed.clear_name();
  EXPECT_FALSE(decode_dynamic_cluster(unnamed, "", without, bad));
  EXPECT_FALSE(without.errors.empty());
}

// A cluster's Istio services in one block: each text reads back, including empty ones and
// several services; copies share the block; equality compares contents.
TEST(AdsState, IstioServiceListReadsBackEveryService) {
  const std::vector<istio_service> services{{"helloworld.sample.svc.cluster.local", "helloworld", "sample"},
                                            {"db.other.svc.cluster.local", "", "other"},
                                            {"", "", ""}};
  const istio_service_list list(services);
  ASSERT_EQ(list.size(), 3u);
  for (std::size_t i = 0; i < services.size(); ++i) EXPECT_TRUE(list[i] == services[i]) << i;
  EXPECT_EQ(list[0].name, "helloworld");
  EXPECT_EQ(list[1].name, "");
  EXPECT_EQ(list[1].namespace_, "other");
  const istio_service_list copy = list;
  EXPECT_TRUE(copy.shares_with(list));
  const istio_service_list rebuilt(services);
  EXPECT_FALSE(rebuilt.shares_with(list));
  EXPECT_TRUE(rebuilt == list);
  const istio_service_list other{{"helloworld.sample.svc.cluster.local", "helloworld", "samplf"}};
  EXPECT_FALSE(other == list);
  EXPECT_FALSE(istio_service_list{services[0]} == list);
  const istio_service_list none;
  EXPECT_TRUE(none.empty());
  EXPECT_TRUE(none == istio_service_list(std::vector<istio_service>{}));
}

// istiod's cluster names contain their one service's texts: the list then references the
// cluster's name (no block of its own), and still reads, copies and compares like a block.
TEST(AdsState, IstioServiceListTakesIstiodsTextsFromTheClusterName) {
  auto name = std::make_unique<shared_string>("outbound_.8080_._.svc-42.ns-7.svc.cluster.local");
  const std::vector<istio_service> services{{"svc-42.ns-7.svc.cluster.local", "svc-42", "ns-7"}};
  auto list = std::make_unique<istio_service_list>(services, *name);
  EXPECT_TRUE(list->derived_from(*name));
  EXPECT_EQ(name->use_count(), 2);  // the name and the list: a reference, not a copy
  ASSERT_EQ(list->size(), 1u);
  EXPECT_FALSE(list->empty());
  EXPECT_TRUE((*list)[0] == services[0]) << (*list)[0];
  // The texts are the name's own characters.
  const std::string_view whole = name->view();
  for (std::string_view text : {(*list)[0].host, (*list)[0].name, (*list)[0].namespace_}) {
    EXPECT_GE(text.data(), whole.data());
    EXPECT_LE(text.data() + text.size(), whole.data() + whole.size());
  }

  // Equal to the block form of the same texts, either way round; not to other texts.
  const istio_service_list block(services);
  EXPECT_FALSE(block.derived_from(*name));
  EXPECT_FALSE(block.shares_with(*list));
  EXPECT_TRUE(block == *list);
  EXPECT_TRUE(*list == block);
  EXPECT_FALSE(*list == istio_service_list({{"svc-42.ns-7.svc.cluster.local", "svc-42", "ns-8"}}));
  EXPECT_FALSE(*list == istio_service_list());
  EXPECT_FALSE(istio_service_list() == *list);

  // A copy is another reference; the views outlive the name's other holders.
  istio_service_list copy = *list;
  EXPECT_TRUE(copy.shares_with(*list));
  EXPECT_EQ(name->use_count(), 3);
  const shared_string kept = *name;
  name.reset();
  list.reset();
  EXPECT_EQ(kept.use_count(), 2);  // `kept` and the copy
  EXPECT_EQ(copy[0].host, "svc-42.ns-7.svc.cluster.local");
  EXPECT_EQ(copy[0].name, "svc-42");
  EXPECT_EQ(copy[0].namespace_, "ns-7");

  // Moving hands the reference over and leaves the source empty; assignment releases the old one.
  istio_service_list moved = std::move(copy);
  EXPECT_TRUE(moved.derived_from(kept));
  EXPECT_TRUE(copy.empty());  // NOLINT(bugprone-use-after-move): a moved-from list is empty
  EXPECT_EQ(kept.use_count(), 2);
  moved = block;
  EXPECT_EQ(kept.use_count(), 1);
  EXPECT_TRUE(moved.shares_with(block));
  moved = istio_service_list(services, kept);
  EXPECT_EQ(kept.use_count(), 2);
  moved = istio_service_list();
  EXPECT_EQ(kept.use_count(), 1);
}

// Lists whose texts the name does not hold, or that have other than one service, keep a block of
// their own and leave the name's reference count alone.
TEST(AdsState, IstioServiceListKeepsABlockWhenTheNameDoesNotHoldTheTexts) {
  const shared_string name("outbound_.443_._.api.example.com");
  const auto block_form = [&](const std::vector<istio_service>& services) {
    const istio_service_list list(services, name);
    EXPECT_FALSE(list.derived_from(name));
    EXPECT_EQ(name.use_count(), 1);
    EXPECT_TRUE(list == istio_service_list(services));
    EXPECT_EQ(list.size(), services.size());
    for (std::size_t i = 0; i < services.size(); ++i) EXPECT_TRUE(list[i] == services[i]) << i;
    return list;
  };
  // A ServiceEntry: the host is the name's, but its namespace is not in the name.
  block_form({{"api.example.com", "api.example.com", "external"}});
  // A cluster named otherwise than after its service (a subset of another host).
  block_form({{"reviews.bookinfo.svc.cluster.local", "reviews", "bookinfo"}});
  // Several services, even when each is part of the name.
  block_form({{"api.example.com", "api", "example"}, {"api.example.com", "api", "com"}});
  // No services.
  EXPECT_TRUE(block_form({}).empty());
  // Empty texts are parts of any name (istiod leaves the namespace empty for some hosts).
  const istio_service_list no_namespace({{"api.example.com", "api", ""}}, name);
  EXPECT_TRUE(no_namespace.derived_from(name));
  EXPECT_EQ(no_namespace[0].namespace_, "");
  EXPECT_EQ(no_namespace[0].name, "api");
  // A name beyond what the one-byte offsets address.
  const std::string host(300, 'h');
  const shared_string long_name("outbound_.80_._." + host);
  const istio_service_list long_list({{host, "h", ""}}, long_name);
  EXPECT_FALSE(long_list.derived_from(long_name));
  EXPECT_EQ(long_list[0].host, host);
  EXPECT_EQ(long_list, istio_service_list({{host, "h", ""}}));
}

// The in-force clusters' lists reference the very name block ads_state keeps for the cluster
// (the index key and the cluster's name): a list with its own copy of the name would cost more
// than the block it replaces.
TEST(AdsState, IstiodClustersIstioServicesReferenceTheKeptName) {
  ads_state s(ads_bootstrap(), 15s);
  apply_two_istio_services(s, clock::now());
  const bootstrap_config config = s.assemble();
  for (const std::string& name : {a, b}) {
    const cluster_config* c = find_cluster(config, name);
    ASSERT_NE(c, nullptr);
    ASSERT_EQ(c->istio_services.size(), 1u);
    EXPECT_EQ(c->istio_services[0].host, name);
    EXPECT_TRUE(c->istio_services.derived_from(c->name)) << name;
    EXPECT_TRUE(c->istio_services.derived_from(s.shared_name(resource_kind::cluster, name))) << name;
  }
  // A changed cluster (new settings) is a new decoded version: it takes the name the index keeps,
  // and its list and EDS service name follow, so that no second copy of the name stays.
  auto changed = istio::sni_dnat_cluster(a);
  changed.mutable_connect_timeout()->set_seconds(3);
  auto r = s.apply_sotw(resource_kind::cluster, list(changed, istio::sni_dnat_cluster(b)), clock::now());
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  s.commit();
  const bootstrap_config after = s.assemble();
  const cluster_config* c = find_cluster(after, a);
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->settings->connect_timeout, std::chrono::seconds(3));
  EXPECT_TRUE(c->istio_services.derived_from(c->name));
  const shared_string kept = s.shared_name(resource_kind::cluster, a);
  EXPECT_TRUE(c->name.shares_with(kept));
  EXPECT_TRUE(c->eds_service_name.shares_with(kept));
  EXPECT_TRUE(c->istio_services.derived_from(kept));
}

// istiod's SNI-DNAT clusters differ only by name: all their other settings are one shared block
// (each cluster in force holds a reference, not ~100 bytes of equal values). A cluster with other
// settings gets its own block, which still shares the equal istio metadata, and all of it
// compares by content.
TEST(AdsState, EqualClusterSettingsAreOneBlock) {
  ads_state s(ads_bootstrap(), 15s);
  const auto t0 = clock::now();
  apply_two_istio_services(s, t0);
  const cluster_config* ca = find_cluster(s.assemble(), a);
  const cluster_config* cb = find_cluster(s.assemble(), b);
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  EXPECT_TRUE(ca->settings.shares_with(cb->settings));
  EXPECT_EQ(ca->settings->policy, lb_policy::least_request);

  auto slower = istio::sni_dnat_cluster(b);
  slower.mutable_connect_timeout()->set_seconds(42);
  ASSERT_TRUE(s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a), slower), t0).errors.empty());
  s.commit();
  ca = find_cluster(s.assemble(), a);
  cb = find_cluster(s.assemble(), b);
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  EXPECT_FALSE(ca->settings.shares_with(cb->settings));
  EXPECT_EQ(cb->settings->connect_timeout, std::chrono::seconds(42));
  EXPECT_NE(ca->settings->connect_timeout, std::chrono::seconds(42));
  EXPECT_TRUE(ca->settings->istio_metadata.shares_with(cb->settings->istio_metadata));

  // A builder's edit of a copy never changes the block other clusters hold.
  cluster_config copy = *ca;
  copy.settings.edit().max_connections = 7;
  EXPECT_EQ(copy.settings->max_connections, 7u);
  EXPECT_EQ(ca->settings->max_connections, 4294967295u);  // istiod sets no limit
  EXPECT_FALSE(copy == *ca);
  copy.settings.edit().max_connections = 4294967295u;
  EXPECT_FALSE(copy.settings.shares_with(ca->settings));
  EXPECT_TRUE(copy == *ca);
}

// Istio puts the same five ALPNs (and tcp_proxy settings) on every chain of the 15443 listener:
// the decoder keeps one settings block for all of them (tens of thousands of chains), which
// still compares by content.
TEST(AdsState, ChainsWithTheSameAlpnsShareOneList) {
  ads_state s(ads_bootstrap(), 15s);
  const auto t0 = clock::now();
  apply_two_istio_services(s, t0);
  const auto* l = find_listener(s.assemble(), "0.0.0.0_15443");
  ASSERT_NE(l, nullptr);
  ASSERT_EQ(l->filter_chains.size(), 2u);
  const auto& first = l->filter_chains[0].settings->match.application_protocols;
  const auto& second = l->filter_chains[1].settings->match.application_protocols;
  EXPECT_EQ(first.size(), 5u);
  EXPECT_TRUE(first.shares_with(second));
  EXPECT_TRUE(l->filter_chains[0].settings.shares_with(l->filter_chains[1].settings));
  const shared_vector<std::string> copy(std::vector<std::string>(first.begin(), first.end()));
  EXPECT_FALSE(copy.shares_with(first));
  EXPECT_TRUE(copy == first);
}

// istiod gives a cluster, its EDS service, the chain's server name and the chain's tcp_proxy
// cluster and stat_prefix the same name: they hold one shared copy of it, the equal
// istio_metadata of every cluster is one copy, and all of it still compares by content.
TEST(AdsState, AClusterNameIsOneCopyAcrossClusterChainAndIndexes) {
  ads_state s(ads_bootstrap(), 15s);
  const auto t0 = clock::now();
  // Istio's server names are lower-case already; the decoded (lower-cased) one is shared too.
  apply_two_istio_services(s, t0);
  const cluster_config* ca = find_cluster(s.assemble(), a);
  const cluster_config* cb = find_cluster(s.assemble(), b);
  ASSERT_NE(ca, nullptr);
  ASSERT_NE(cb, nullptr);
  EXPECT_TRUE(ca->eds_service_name.shares_with(ca->name));
  const auto* l = find_listener(s.assemble(), "0.0.0.0_15443");
  ASSERT_NE(l, nullptr);
  ASSERT_EQ(l->filter_chains.size(), 2u);
  for (const auto& chain : l->filter_chains) {
    const cluster_config* c = chain.cluster == a ? ca : cb;
    EXPECT_TRUE(chain.cluster.shares_with(c->name)) << chain.cluster;
    EXPECT_TRUE(chain.stat_prefix.shares_with(c->name));
    ASSERT_EQ(chain.server_names.size(), 1u);
    EXPECT_TRUE(chain.server_names[0].shares_with(c->name));
  }
  EXPECT_FALSE(ca->name.shares_with(cb->name));
  EXPECT_EQ(ca->settings->istio_metadata.at("default_original_port"), "5000");
  EXPECT_TRUE(ca->settings->istio_metadata.shares_with(cb->settings->istio_metadata));
  // An update keeps the sharing (the index keeps its key; the new chain takes it).
  s.apply_sotw(resource_kind::listener, list(istio::gateway_listener(15443, {{a, a}})), t0);
  s.commit();
  l = find_listener(s.assemble(), "0.0.0.0_15443");
  ASSERT_EQ(l->filter_chains.size(), 1u);
  EXPECT_TRUE(l->filter_chains[0].cluster.shares_with(find_cluster(s.assemble(), a)->name));
}

// Values every cluster or chain of a mesh repeats are one copy: the locality names of all
// assignments, the transport protocol of all chains.
TEST(AdsState, LocalityNamesAndTransportProtocolsAreOneCopy) {
  ads_state s(ads_bootstrap(), 15s);
  const auto t0 = clock::now();
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a), istio::sni_dnat_cluster(b)), t0);
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1001}), istio::local_assignment(b, {1002})), t0);
  auto listener = istio::gateway_listener(15443, {{a, a}, {b, b}});
  for (auto& chain : *listener.mutable_filter_chains()) chain.mutable_filter_chain_match()->set_transport_protocol("tls");
  ASSERT_TRUE(s.apply_sotw(resource_kind::listener, list(listener), t0).errors.empty());
  s.commit();
  const shared_value<locality>& wa = find_cluster(s.assemble(), a)->load_assignment.localities.at(0).where;
  const shared_value<locality>& wb = find_cluster(s.assemble(), b)->load_assignment.localities.at(0).where;
  EXPECT_EQ(wa->region, "us-east1");
  EXPECT_EQ(wa->zone, "us-east1-b");
  EXPECT_TRUE(wa->sub_zone.empty());
  EXPECT_TRUE(wa.shares_with(wb));  // one locality object for both assignments
  const auto* l = find_listener(s.assemble(), "0.0.0.0_15443");
  ASSERT_NE(l, nullptr);
  ASSERT_EQ(l->filter_chains.size(), 2u);
  EXPECT_EQ(l->filter_chains[0].settings->match.transport_protocol, "tls");
  EXPECT_TRUE(l->filter_chains[0].settings->match.transport_protocol.shares_with(l->filter_chains[1].settings->match.transport_protocol));
}

// Two clusters on one EDS service name (the user list beyond its inline first entry): both get
// the endpoints, and the service stays subscribed until its last user goes.
TEST(AdsState, AServiceWithSeveralUsersKeepsThemInOrder) {
  ads_state s(ads_bootstrap(), 15s);
  const auto t0 = clock::now();
  auto ca = istio::sni_dnat_cluster(a);
  auto cb = istio::sni_dnat_cluster(b);
  ca.mutable_eds_cluster_config()->set_service_name("shared");
  cb.mutable_eds_cluster_config()->set_service_name("shared");
  ASSERT_TRUE(s.apply_sotw(resource_kind::cluster, list(ca, cb), t0).errors.empty());
  s.commit();
  EXPECT_EQ(s.eds_names(), sorted_names({"shared"}));
  auto r = s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment("shared", {1001})), t0);
  ASSERT_TRUE(r.errors.empty());
  s.commit();
  EXPECT_EQ(r.eds_clusters, (std::vector<shared_string>{a, b}));
  ASSERT_NE(find_cluster(s.assemble(), a), nullptr);
  ASSERT_NE(find_cluster(s.assemble(), b), nullptr);
  EXPECT_EQ(find_cluster(s.assemble(), b)->load_assignment.localities.at(0).endpoints.size(), 1u);
  // The first user goes: the second keeps the service and its endpoints.
  ASSERT_TRUE(s.apply_sotw(resource_kind::cluster, list(cb), t0).errors.empty());
  s.commit();
  EXPECT_EQ(s.eds_names(), sorted_names({"shared"}));
  r = s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment("shared", {1002})), t0);
  s.commit();
  EXPECT_EQ(r.eds_clusters, std::vector<shared_string>{b});
  // A user comes back (appended after b), then both go: nothing is subscribed.
  ASSERT_TRUE(s.apply_sotw(resource_kind::cluster, list(cb, ca), t0).errors.empty());
  s.commit();
  r = s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment("shared", {1003})), t0);
  s.commit();
  EXPECT_EQ(r.eds_clusters, (std::vector<shared_string>{b, a}));
  ASSERT_TRUE(s.apply_sotw(resource_kind::cluster, list(), t0).errors.empty());
  s.commit();
  EXPECT_TRUE(s.eds_names().empty());
}

// The per-cluster indexes: every insert, replace and erase (backward-shift deletion across
// probe runs that wrap around the table) keeps each name findable, like a std::map would.
TEST(DenseIndex, FindsWhatAStdMapFindsThroughInsertsAndErases) {
  dense_index<int> index;
  std::map<std::string, int> expected;
  std::uint64_t rng = 0x9e3779b97f4a7c15ull;
  auto next = [&] {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
  };
  auto check = [&] {
    ASSERT_EQ(index.size(), expected.size());
    for (int k = 0; k < 300; ++k) {
      const std::string name = "outbound_.80_._.svc-" + std::to_string(k);
      auto it = index.find(name);
      auto want = expected.find(name);
      ASSERT_EQ(it != index.end(), want != expected.end()) << name;
      if (it != index.end()) {
        EXPECT_EQ(it->first, name);
        EXPECT_EQ(it->second, want->second) << name;
      }
    }
    std::map<std::string, int> walked;
    for (const auto& [name, value] : index) walked.emplace(std::string(name.view()), value);
    EXPECT_EQ(walked, expected);
  };
  for (int op = 0; op < 20000; ++op) {
    const std::string name = "outbound_.80_._.svc-" + std::to_string(next() % 300);
    if (next() % 3 == 0) {
      if (auto it = index.find(name); it != index.end()) index.erase(it);
      expected.erase(name);
    } else {
      index.insert_or_assign(shared_string(name), op);
      expected[name] = op;
    }
    if (op % 997 == 0) check();
  }
  check();
  while (index.begin() != index.end()) index.erase(index.begin());
  expected.clear();
  check();
}

TEST(DenseIndex, KeepsTheNameItWasGiven) {
  dense_index<int> index;
  const shared_string name("outbound_.443_._.a.ns.svc.cluster.local");
  index.insert_or_assign(name, 1);
  index.insert_or_assign(shared_string(name.view()), 2);  // an equal name replaces the value only
  ASSERT_EQ(index.size(), 1u);
  EXPECT_TRUE(index.begin()->first.shares_with(name));
  EXPECT_EQ(index.begin()->second, 2);
  EXPECT_FALSE(index.contains("outbound_.443_._.b.ns.svc.cluster.local"));
}

// reserve(n) makes room for n entries: adding them moves no entry (pointers stay valid), and
// everything added before and after stays findable.
TEST(DenseIndex, ReserveKeepsEntriesInPlaceWhileAddingThatMany) {
  dense_index<int> index;
  auto name = [](int i) { return shared_string("outbound_.80_._.svc-" + std::to_string(i) + ".ns.svc.cluster.local"); };
  for (int i = 0; i < 10; ++i) index.insert_or_assign(name(i), i);
  index.reserve(1000);
  const auto* first = &*index.find(name(0).view());
  for (int i = 10; i < 1000; ++i) index.insert_or_assign(name(i), i);
  EXPECT_EQ(&*index.find(name(0).view()), first);
  ASSERT_EQ(index.size(), 1000u);
  for (int i = 0; i < 1000; ++i) {
    auto it = index.find(name(i).view());
    ASSERT_NE(it, index.end()) << i;
    EXPECT_EQ(it->second, i);
  }
  EXPECT_FALSE(index.contains(name(1000).view()));
}

TEST(SharedString, ReadsAndComparesLikeAString) {
  const shared_string x("outbound_.5000_._.a.ns.svc.cluster.local");
  shared_string y(std::string("outbound_.5000_._.a.ns.svc.cluster.local"));
  EXPECT_EQ(x, y);
  EXPECT_FALSE(x.shares_with(y));
  y.share_if_equal(x);
  EXPECT_TRUE(x.shares_with(y));
  shared_string z("other");
  z.share_if_equal(x);  // different contents: untouched
  EXPECT_EQ(z, "other");
  EXPECT_FALSE(z.shares_with(x));
  EXPECT_EQ("cluster '" + x + "'", "cluster 'outbound_.5000_._.a.ns.svc.cluster.local'");
  EXPECT_LT(shared_string("a"), shared_string("b"));
  EXPECT_EQ(shared_string(), "");
  EXPECT_TRUE(shared_string().empty());
  EXPECT_EQ(std::string_view(x).size(), x.size());
  EXPECT_STREQ(x.c_str(), "outbound_.5000_._.a.ns.svc.cluster.local");
}

// Delta versions are held inline up to 23 characters and on the heap beyond; both read back.
TEST(AdsState, DeltaVersionsOfAnyLengthRoundTrip) {
  ads_state s(ads_bootstrap(), 15s);
  const std::string long_version(100, 'v');
  const std::string istiod_like = "2024-05-12T10:11:12Z/15";  // 23 characters
  ads_state::resource_list res;
  *res.Add() = resource(istio::sni_dnat_cluster(a), a, long_version);
  *res.Add() = resource(istio::sni_dnat_cluster(b), b, istiod_like);
  ASSERT_TRUE(s.apply_delta(resource_kind::cluster, res, {}, clock::now()).errors.empty());
  s.commit();
  EXPECT_EQ(s.versions(resource_kind::cluster),
            (std::map<std::string, std::string>{{a, long_version}, {b, istiod_like}}));
  // The version held is recognised (not decoded again, nothing changes).
  EXPECT_FALSE(s.apply_delta(resource_kind::cluster, res, {}, clock::now()).changed);
}

TEST(AdsState, SotwRemovalsAndUnusedAssignments) {
  ads_state s(ads_bootstrap(), 15s);
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a), istio::sni_dnat_cluster(b)), clock::now());
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1}), istio::local_assignment(b, {2})),
               clock::now());
  s.commit();
  EXPECT_EQ(s.assemble().clusters.size(), 2u);
  // An EDS response carrying only `a` leaves `b` as it was.
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {3})), clock::now());
  s.commit();
  EXPECT_EQ(find_cluster(s.assemble(), b)->load_assignment.localities[0].endpoints[0].port, 2);
  // A CDS response without `b` removes it and its assignment.
  auto r = s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a)), clock::now());
  EXPECT_TRUE(r.changed);
  s.commit();
  EXPECT_EQ(find_cluster(s.assemble(), b), nullptr);
  EXPECT_EQ(s.eds_names(), sorted_names({a}));
  // `b` comes back: it warms again (its old assignment was dropped).
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a), istio::sni_dnat_cluster(b)), clock::now());
  s.commit();
  EXPECT_EQ(find_cluster(s.assemble(), b), nullptr);
  EXPECT_EQ(s.warming_clusters(), 1u);
}

TEST(AdsState, DeltaAddsUpdatesAndRemoves) {
  ads_state s(ads_bootstrap(), 15s);
  ads_state::resource_list res;
  *res.Add() = resource(istio::sni_dnat_cluster(a), a, "1");
  *res.Add() = resource(istio::sni_dnat_cluster(b), b, "1");
  ads_state::name_list none;
  auto r = s.apply_delta(resource_kind::cluster, res, none, clock::now());
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  s.commit();
  ads_state::resource_list eds;
  *eds.Add() = resource(istio::local_assignment(a, {1}), a, "e1");
  *eds.Add() = resource(istio::local_assignment(b, {2}), b, "e1");
  s.apply_delta(resource_kind::endpoint, eds, none, clock::now());
  s.commit();
  EXPECT_EQ(s.assemble().clusters.size(), 2u);
  EXPECT_EQ(s.versions(resource_kind::cluster), (std::map<std::string, std::string>{{a, "1"}, {b, "1"}}));
  EXPECT_EQ(s.versions(resource_kind::endpoint), (std::map<std::string, std::string>{{a, "e1"}, {b, "e1"}}));

  // Removing an assignment empties the cluster; removing a cluster drops it.
  ads_state::name_list removed;
  *removed.Add() = a;
  r = s.apply_delta(resource_kind::endpoint, {}, removed, clock::now());
  EXPECT_TRUE(r.changed);
  s.commit();
  EXPECT_TRUE(find_cluster(s.assemble(), a)->load_assignment.localities.empty());
  *removed.Mutable(0) = b;
  r = s.apply_delta(resource_kind::cluster, {}, removed, clock::now());
  EXPECT_TRUE(r.changed);
  s.commit();
  EXPECT_EQ(find_cluster(s.assemble(), b), nullptr);
  EXPECT_EQ(s.versions(resource_kind::cluster), (std::map<std::string, std::string>{{a, "1"}}));
  // A resource at the version already held is not decoded again.
  ads_state::resource_list same;
  *same.Add() = resource(istio::sni_dnat_cluster(a), a, "1");
  EXPECT_FALSE(s.apply_delta(resource_kind::cluster, same, {}, clock::now()).changed);
}

TEST(AdsState, InvalidResourceRejectsTheWholeResponseNamingIt) {
  ads_state s(ads_bootstrap(), 15s);
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a)), clock::now());
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1})), clock::now());
  s.commit();
  auto bad = istio::sni_dnat_cluster(b);
  bad.mutable_connect_timeout()->set_seconds(-1);
  auto r = s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a), bad), clock::now());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("cluster '" + b + "': connect_timeout: must not be negative"), std::string::npos)
      << r.errors[0];
  EXPECT_FALSE(r.changed);
  EXPECT_EQ(s.eds_names(), sorted_names({a}));

  auto listener = istio::gateway_listener(15443, {{a, a}});
  listener.mutable_listener_filters_timeout()->set_seconds(-1);
  r = s.apply_sotw(resource_kind::listener, list(listener), clock::now());
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(r.errors[0].find("listener '0.0.0.0_15443': listener_filters_timeout"), std::string::npos) << r.errors[0];

  // Undecodable bytes.
  ads_state::any_list junk;
  auto* any = junk.Add();
  any->set_type_url("type.googleapis.com/envoy.config.cluster.v3.Cluster");
  any->set_value("\xff\xff\xff");
  r = s.apply_sotw(resource_kind::cluster, junk, clock::now());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("resources[0]: not a decodable"), std::string::npos) << r.errors[0];
}

// A listener with a network filter ewgw does not implement (an AuthorizationPolicy's rbac
// filter) is accepted, not NACKed, but left out of the configuration: never bound. A version in
// force before is removed; a usable version later is applied again. Both variants.
void check_unusable_listener(bool delta) {
  ads_state s(ads_bootstrap(), 15s);
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a)), clock::now());
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1})), clock::now());
  s.commit();
  const auto good = istio::gateway_listener(15443, {{a, a}});
  auto rbac = good;
  rbac.mutable_filter_chains(0)->mutable_filters(1)->set_name("envoy.filters.network.rbac");
  rbac.mutable_filter_chains(0)->mutable_filters(1)->mutable_typed_config()->set_type_url(
      "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC");
  auto other = istio::passthrough_listener("0.0.0.0_15012", 15012, a);
  ads_state::name_list none;
  auto apply = [&](const std::vector<std::pair<envoy::config::listener::v3::Listener, std::string>>& ls) {
    if (!delta) {
      ads_state::any_list l;
      for (const auto& [x, v] : ls) l.Add()->PackFrom(x);
      return s.apply_sotw(resource_kind::listener, l, clock::now());
    }
    ads_state::resource_list l;
    for (const auto& [x, v] : ls) *l.Add() = resource(x, x.name(), v);
    return s.apply_delta(resource_kind::listener, l, none, clock::now());
  };
  auto r = apply({{good, "1"}, {other, "1"}});
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  s.commit();
  ASSERT_NE(find_listener(s.assemble(), good.name()), nullptr);

  r = apply({{rbac, "2"}, {other, "1"}});
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  s.commit();
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(find_listener(s.assemble(), good.name()), nullptr) << "an unusable listener is not in force";
  EXPECT_NE(find_listener(s.assemble(), other.name()), nullptr) << "the rest of the update applies";
  EXPECT_EQ(s.unusable_listeners(), 1u);
  EXPECT_EQ(s.waiting_listeners(), 0u);
  EXPECT_EQ(s.listener_count(), 2u);
  ASSERT_EQ(r.notes.size(), 1u);
  EXPECT_NE(r.notes[0].find("listener '0.0.0.0_15443' accepted but unusable, not bound: filter_chains[0].filters[1]: "
                            "network filter 'envoy.filters.network.rbac'"),
            std::string::npos)
      << r.notes[0];
  if (delta) EXPECT_EQ(s.versions(resource_kind::listener).at(good.name()), "2");

  r = apply({{good, "3"}, {other, "1"}});
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  s.commit();
  EXPECT_NE(find_listener(s.assemble(), good.name()), nullptr);
  EXPECT_EQ(s.unusable_listeners(), 0u);
}

TEST(AdsState, UnusableListenerIsAcceptedButNotInForceSotw) { check_unusable_listener(false); }
TEST(AdsState, UnusableListenerIsAcceptedButNotInForceDelta) { check_unusable_listener(true); }

TEST(AdsState, RollbackRestoresThePreviousState) {
  ads_state s(ads_bootstrap(), 15s);
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a)), clock::now());
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1})), clock::now());
  s.commit();
  const auto before = s.assemble();
  auto r = s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(b)), clock::now());
  EXPECT_TRUE(r.changed);
  s.rollback();
  const auto after = s.assemble();
  ASSERT_EQ(after.clusters.size(), before.clusters.size());
  EXPECT_EQ(after.clusters[0], before.clusters[0]);
  EXPECT_EQ(s.eds_names(), sorted_names({a}));

  r = s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {7})), clock::now());
  EXPECT_TRUE(r.changed);
  s.rollback();
  EXPECT_EQ(find_cluster(s.assemble(), a)->load_assignment.localities[0].endpoints[0].port, 1);
}

TEST(AdsState, ClustersWithUnimplementedSettingsAreAcceptedAsUnusable) {
  ads_state s(ads_bootstrap(), 15s);
  const auto outbound = istio::dns_cluster("api.example.com", 443);
  auto r = s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a), outbound), clock::now());
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  ASSERT_FALSE(r.notes.empty());
  EXPECT_NE(r.notes[0].find("accepted but unusable: type: STRICT_DNS is not supported"), std::string::npos)
      << r.notes[0];
  s.commit();
  // Not subscribed for EDS, ready at once, and routing to it fails (proxy side).
  EXPECT_EQ(s.eds_names(), sorted_names({a}));
  const cluster_config* c = find_cluster(s.assemble(), outbound.name());
  ASSERT_NE(c, nullptr);
  EXPECT_FALSE(c->settings->unsupported.empty());
  // A listener naming it does not wait for it.
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1})), clock::now());
  r = s.apply_sotw(resource_kind::listener,
                   list(istio::gateway_listener(15443, {{a, a}, {"x.example", outbound.name()}})), clock::now());
  EXPECT_TRUE(r.changed);
  EXPECT_EQ(s.waiting_listeners(), 0u);
}

TEST(AdsState, OutlierDetectionIsDecodedOverXds) {
  ads_state s(ads_bootstrap(), 15s);
  auto c = istio::sni_dnat_cluster(a);
  c.mutable_outlier_detection()->mutable_consecutive_gateway_failure()->set_value(7);
  c.mutable_outlier_detection()->mutable_base_ejection_time()->set_seconds(60);
  s.apply_sotw(resource_kind::cluster, list(c), clock::now());
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1})), clock::now());
  s.commit();
  const cluster_config* out = find_cluster(s.assemble(), a);
  ASSERT_NE(out, nullptr);
  EXPECT_TRUE(out->settings->unsupported.empty());
  ASSERT_TRUE(out->settings->outlier_detection);
  EXPECT_EQ(out->settings->outlier_detection->consecutive_gateway_failure, 7u);
  EXPECT_EQ(out->settings->outlier_detection->base_ejection_time, std::chrono::seconds(60));
  EXPECT_EQ(out->settings->outlier_detection->consecutive_5xx, 5u);  // Envoy's default
  EXPECT_EQ(out->settings->outlier_detection->max_ejection_percent, 10u);
}

TEST(AdsState, ListenersMayNotShareAnAddress) {
  ads_state s(ads_bootstrap(), 15s);
  auto r = s.apply_sotw(resource_kind::listener,
                        list(istio::passthrough_listener("one", 15012, "x"), istio::passthrough_listener("two", 15012, "y")),
                        clock::now());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("address 127.0.0.1:15012 is already used by listener 'one'"), std::string::npos)
      << r.errors[0];
}

TEST(AdsState, StaticResourcesStayAndStaticEdsClustersWarm) {
  bootstrap_config boot = ads_bootstrap();
  cluster_config st;
  st.name = "static-eds";
  st.type = discovery_type::eds;
  st.eds_service_name = "static-eds";
  boot.clusters.push_back(st);
  cluster_config fixed;
  fixed.name = "fixed";
  boot.clusters.push_back(fixed);
  ads_state s(boot, 15s);
  EXPECT_EQ(s.eds_names(), sorted_names({"static-eds"}));
  EXPECT_EQ(s.assemble().clusters.size(), 1u);  // "fixed" only
  auto r = s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster("fixed")), clock::now());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("a static cluster of the bootstrap has this name"), std::string::npos);
  // An empty CDS does not remove static clusters.
  s.apply_sotw(resource_kind::cluster, {}, clock::now());
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment("static-eds", {9})), clock::now());
  s.commit();
  EXPECT_EQ(s.assemble().clusters.size(), 2u);
}

}  // namespace
}  // namespace ewgw::xds

namespace ewgw::xds {
namespace {

// Revisions let the gateway keep what did not change; they must change exactly when content does.
TEST(AdsStateRevisions, FollowContentAndSurviveRollback) {
  ads_state s(ads_bootstrap(), 15s);
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a), istio::sni_dnat_cluster(b)), clock::now());
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {1}), istio::local_assignment(b, {2})),
               clock::now());
  s.apply_sotw(resource_kind::listener, list(istio::gateway_listener(15443, {{a, a}, {b, b}})), clock::now());
  s.commit();
  auto revision = [&](const std::string& name) { return find_cluster(s.assemble(), name)->revision.value; };
  auto listener_revision = [&] { return find_listener(s.assemble(), "0.0.0.0_15443")->revision.value; };
  const auto ra = revision(a);
  const auto rb = revision(b);
  const auto rl = listener_revision();
  EXPECT_NE(ra, 0u);
  EXPECT_NE(ra, rb);

  // An endpoint change of `a` gives `a` a new revision and leaves `b` and the listener alone.
  s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {3})), clock::now());
  s.commit();
  EXPECT_NE(revision(a), ra);
  EXPECT_EQ(revision(b), rb);
  EXPECT_EQ(listener_revision(), rl);
  const auto ra2 = revision(a);

  // The same content again (re-serialized): nothing changes.
  EXPECT_FALSE(s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {3})), clock::now()).changed);
  EXPECT_FALSE(
      s.apply_sotw(resource_kind::listener, list(istio::gateway_listener(15443, {{a, a}, {b, b}})), clock::now()).changed);
  s.commit();
  EXPECT_EQ(revision(a), ra2);
  EXPECT_EQ(listener_revision(), rl);

  // A refused update is undone with the old revisions, matching what the gateway still runs.
  EXPECT_TRUE(s.apply_sotw(resource_kind::endpoint, list(istio::local_assignment(a, {4})), clock::now()).changed);
  s.rollback();
  EXPECT_EQ(revision(a), ra2);
  EXPECT_EQ(find_cluster(s.assemble(), a)->load_assignment.localities[0].endpoints[0].port, 3);
  // A removal refused, then undone: the cluster is back in place with its revision.
  s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(b)), clock::now());
  EXPECT_EQ(find_cluster(s.assemble(), a), nullptr);
  s.rollback();
  ASSERT_NE(find_cluster(s.assemble(), a), nullptr);
  EXPECT_EQ(revision(a), ra2);
  EXPECT_EQ(revision(b), rb);
  EXPECT_EQ(s.assemble().clusters.size(), 2u);
}

}  // namespace
}  // namespace ewgw::xds

namespace ewgw::xds {
namespace {

// Istio's auto-mTLS clusters (outbound|port||host) are usable: their endpoints carry the
// transport match metadata the gateway needs to pick the plaintext ones.
TEST(AdsStateTransportMatches, OutboundClustersKeepEndpointTransportMetadata) {
  ads_state s(ads_bootstrap(), 15s);
  const auto istiod = istio::outbound_cluster("istiod.istio-system.svc.cluster.local", 15012);
  auto r = s.apply_sotw(resource_kind::cluster, list(istio::sni_dnat_cluster(a), istiod), clock::now());
  ASSERT_TRUE(r.errors.empty()) << r.errors[0];
  EXPECT_EQ(s.eds_names(), sorted_names({a, istiod.name()}));
  istio::locality_spec l;
  l.endpoints = {{"10.0.0.1", 15012, 1, true, ""}, {"10.0.0.2", 15012, 1, true, "istio"}};
  s.apply_sotw(resource_kind::endpoint, list(istio::assignment(istiod.name(), {l}), istio::assignment(a, {l})),
               clock::now());
  s.commit();
  const cluster_config* c = find_cluster(s.assemble(), istiod.name());
  ASSERT_NE(c, nullptr);
  EXPECT_TRUE(c->settings->unsupported.empty()) << c->settings->unsupported;
  ASSERT_EQ(c->settings->transport_socket_matches.size(), 2u);
  EXPECT_FALSE(c->settings->transport_socket_matches[0].plaintext);
  EXPECT_EQ(c->settings->transport_socket_matches[0].match,
            (std::vector<std::pair<std::string, std::string>>{{"tlsMode", "istio"}}));
  EXPECT_TRUE(c->settings->transport_socket_matches[1].plaintext);
  const auto& eps = c->load_assignment.localities[0].endpoints;
  EXPECT_TRUE(eps[0].transport_socket_match.empty());
  EXPECT_EQ(eps[1].transport_socket_match, (std::vector<std::pair<std::string, std::string>>{{"tlsMode", "istio"}}));
  ASSERT_TRUE(c->settings->outlier_detection);
  // Clusters without transport matches do not keep the metadata (memory).
  EXPECT_TRUE(find_cluster(s.assemble(), a)->load_assignment.localities[0].endpoints[1].transport_socket_match.empty());
}

}  // namespace
}  // namespace ewgw::xds
