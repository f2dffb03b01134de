// config_store without a network: what the ADS client records comes back in /config_dump's
// layout, parsed by Envoy's own admin protos.
#include <gtest/gtest.h>
#include <google/protobuf/util/json_util.h>

#include <google/protobuf/util/message_differencer.h>
#include <google/protobuf/util/time_util.h>
#include <google/protobuf/wrappers.pb.h>

#include <random>
#include <sstream>

#include "envoy/admin/v3/config_dump.pb.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "test/xds/istio_fixtures.h"
#include "xds/ads_state.h"
#include "xds/config_dump.h"
#include "xds/type/v3/typed_struct.pb.h"

namespace ewgw::xds {
namespace {

envoy::admin::v3::ConfigDump parse(const std::pair<unsigned, std::string>& r) {
  EXPECT_EQ(r.first, 200u) << r.second;
  envoy::admin::v3::ConfigDump dump;
  const auto status = google::protobuf::util::JsonStringToMessage(r.second, &dump);
  EXPECT_TRUE(status.ok()) << status.message() << "\n" << r.second;
  return dump;
}

std::string cluster_bytes(const std::string& name, int timeout_s = 1) {
  envoy::config::cluster::v3::Cluster c;
  c.set_name(name);
  c.mutable_connect_timeout()->set_seconds(timeout_s);
  return c.SerializeAsString();
}

TEST(ConfigStore, ResourceNameReadsFieldOneWithoutParsingTheRest) {
  EXPECT_EQ(config_store::resource_name(cluster_bytes("outbound_.80_._.a.svc")), "outbound_.80_._.a.svc");
  envoy::config::listener::v3::Listener l;
  l.mutable_address()->mutable_socket_address()->set_port_value(15443);  // field 2 first on the wire
  l.set_name("0.0.0.0_15443");
  std::string bytes;
  // Serialize the address before the name to check the scan skips other fields.
  envoy::config::listener::v3::Listener only_address;
  *only_address.mutable_address() = l.address();
  envoy::config::listener::v3::Listener only_name;
  only_name.set_name(l.name());
  bytes = only_address.SerializeAsString() + only_name.SerializeAsString();
  EXPECT_EQ(config_store::resource_name(bytes), "0.0.0.0_15443");
  EXPECT_EQ(config_store::resource_name("\xff\xff\xff"), "");
  EXPECT_EQ(config_store::resource_name(""), "");
}

TEST(ConfigStore, KeepsVersionsRemovalsAndWarmingAsEnvoyShowsThem) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  const std::string a = cluster_bytes("a"), b = cluster_bytes("b");
  store.replace_all(config_store::kind::cluster, {{"a", &a}, {"b", &b}}, "v1", t0);
  // v2 changes b only: a keeps the version it was last changed in.
  const std::string b2 = cluster_bytes("b", 2);
  store.replace_all(config_store::kind::cluster, {{"a", &a}, {"b", &b2}}, "v2", t0 + std::chrono::seconds(1));
  store.set_pending({"b"}, {});
  auto dump = parse(store.render({}));
  envoy::admin::v3::ClustersConfigDump clusters;
  ASSERT_TRUE(dump.configs(1).UnpackTo(&clusters));
  EXPECT_EQ(clusters.version_info(), "v2");
  ASSERT_EQ(clusters.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(clusters.dynamic_active_clusters(0).version_info(), "v1");
  ASSERT_EQ(clusters.dynamic_warming_clusters_size(), 1);
  EXPECT_EQ(clusters.dynamic_warming_clusters(0).version_info(), "v2");
  EXPECT_NE(store.missing_cluster_note("b").find("warming"), std::string::npos);

  // v3 drops a (state of the world); Delta-style removal drops b.
  store.replace_all(config_store::kind::cluster, {{"b", &b2}}, "v3", t0);
  store.remove(config_store::kind::cluster, "b");
  store.set_pending({}, {});
  dump = parse(store.render({}));
  ASSERT_TRUE(dump.configs(1).UnpackTo(&clusters));
  EXPECT_EQ(clusters.dynamic_active_clusters_size() + clusters.dynamic_warming_clusters_size(), 0);
}

TEST(ConfigStore, UnknownEmbeddedTypesAreNamedNotFatal) {
  config_store store;
  envoy::config::listener::v3::Listener l;
  l.set_name("gw");
  auto* f = l.add_filter_chains()->add_filters();
  f->set_name("istio.stats");
  f->mutable_typed_config()->set_type_url("type.googleapis.com/stats.PluginConfig");
  f->mutable_typed_config()->set_value("\x0a\x03" "abc");
  store.put(config_store::kind::listener, "gw", "7", l.SerializeAsString(), std::chrono::system_clock::now());
  store.set_pending({}, {"gw"});
  const auto dump = parse(store.render({}));
  envoy::admin::v3::ListenersConfigDump listeners;
  ASSERT_TRUE(dump.configs(dump.configs_size() - 1).UnpackTo(&listeners));
  ASSERT_EQ(listeners.dynamic_listeners_size(), 1);
  const auto& d = listeners.dynamic_listeners(0);
  ASSERT_TRUE(d.has_warming_state());  // waiting for its clusters
  EXPECT_FALSE(d.has_active_state());
  envoy::config::listener::v3::Listener back;
  ASSERT_TRUE(d.warming_state().listener().UnpackTo(&back));
  ::xds::type::v3::TypedStruct named;
  ASSERT_TRUE(back.filter_chains(0).filters(0).typed_config().UnpackTo(&named));
  EXPECT_EQ(named.type_url(), "type.googleapis.com/stats.PluginConfig");
}

TEST(ConfigStore, QueryParametersAreCheckedByName) {
  config_store store;
  EXPECT_EQ(store.render({{"include_eds", ""}}).first, 200u);
  auto r = store.render({{"verbose", "1"}});
  EXPECT_EQ(r.first, 400u);
  EXPECT_NE(r.second.find("'verbose'"), std::string::npos);
  r = store.render({{"resource", ""}});
  EXPECT_EQ(r.first, 400u);
  EXPECT_NE(r.second.find("'resource'"), std::string::npos);
  r = store.render({{"mask", "a..b"}});
  EXPECT_EQ(r.first, 400u);
  EXPECT_NE(r.second.find("'mask'"), std::string::npos);
}

// ---- compact storage: what goes in comes back out exactly --------------------------------

using kind = config_store::kind;

envoy::admin::v3::ClustersConfigDump clusters_of(const envoy::admin::v3::ConfigDump& dump) {
  envoy::admin::v3::ClustersConfigDump c;
  EXPECT_TRUE(dump.configs(1).UnpackTo(&c));
  return c;
}

std::string service_host(int i) { return "svc-" + std::to_string(i) + ".ns-" + std::to_string(i % 7) + ".svc.cluster.local"; }

TEST(ConfigStore, ManyIstioResourcesRoundTripExactlyAndCompactly) {
  constexpr int n = 1500;
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  // Messages, not bytes: Struct fields are maps, serialized in no fixed order.
  std::map<std::string, envoy::config::cluster::v3::Cluster> cluster_by_name;
  std::map<std::string, envoy::config::endpoint::v3::ClusterLoadAssignment> cla_by_name;
  std::size_t raw_cluster_bytes = 0;
  std::vector<test::istio::chain_spec> chains;
  for (int i = 0; i < n; ++i) {
    const std::string name = test::istio::sni_name(service_host(i), 8080);
    const auto cluster = test::istio::sni_dnat_cluster(name, service_host(i));
    const std::string c = cluster.SerializeAsString();
    const auto cla = test::istio::assignment(name, {{.endpoints = {{.ip = "10.1." + std::to_string(i / 250) + "." +
                                                                                std::to_string(i % 250),
                                                                          .port = 8080},
                                                                         {.ip = "10.2.0." + std::to_string(i % 250), .port = 8080},
                                                                         {.ip = "10.3.0." + std::to_string(i % 200), .port = 8080}}}});
    const std::string e = cla.SerializeAsString();
    // Delta: a version per resource.
    store.put(kind::cluster, name, "c" + std::to_string(i), c, t0);
    store.put(kind::endpoint, name, "e" + std::to_string(i), e, t0 + std::chrono::nanoseconds(i));
    cluster_by_name[name] = cluster;
    cla_by_name[name] = cla;
    raw_cluster_bytes += c.size() + name.size();
    chains.push_back({name, ""});
  }
  const std::string listener = test::istio::gateway_listener(15443, chains).SerializeAsString();
  store.put(kind::listener, "0.0.0.0_15443", "l1", listener, t0);

  // Compact: istiod clusters differ mostly by name; a map of strings took ~1.4 KB per cluster
  // for the three kinds, the compressed store must stay far below the raw bytes.
  EXPECT_LT(store.stored_bytes(kind::cluster), raw_cluster_bytes / 2);
  EXPECT_LT(store.stored_bytes(kind::listener), listener.size() / 5);

  const auto dump = parse(store.render({{"include_eds", ""}}));
  const auto clusters = clusters_of(dump);
  ASSERT_EQ(clusters.dynamic_active_clusters_size(), n);
  std::string previous;
  for (const auto& d : clusters.dynamic_active_clusters()) {
    envoy::config::cluster::v3::Cluster c;
    ASSERT_TRUE(d.cluster().UnpackTo(&c));
    EXPECT_LT(previous, c.name());  // in name order, as the map kept them
    previous = c.name();
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(c, cluster_by_name.at(c.name())));
    EXPECT_EQ(d.version_info(), "c" + std::to_string(std::stoi(c.name().substr(c.name().find("svc-") + 4))));
    EXPECT_EQ(google::protobuf::util::TimeUtil::TimestampToNanoseconds(d.last_updated()),
              std::chrono::duration_cast<std::chrono::nanoseconds>(t0.time_since_epoch()).count());
  }
  envoy::admin::v3::EndpointsConfigDump endpoints;
  ASSERT_TRUE(dump.configs(2).UnpackTo(&endpoints));
  ASSERT_EQ(endpoints.dynamic_endpoint_configs_size(), n);
  for (const auto& d : endpoints.dynamic_endpoint_configs()) {
    envoy::config::endpoint::v3::ClusterLoadAssignment e;
    ASSERT_TRUE(d.endpoint_config().UnpackTo(&e));
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(e, cla_by_name.at(e.cluster_name())));
  }
  envoy::admin::v3::ListenersConfigDump listeners;
  ASSERT_TRUE(dump.configs(3).UnpackTo(&listeners));
  ASSERT_EQ(listeners.dynamic_listeners_size(), 1);
  envoy::config::listener::v3::Listener l;
  ASSERT_TRUE(listeners.dynamic_listeners(0).active_state().listener().UnpackTo(&l));
  EXPECT_EQ(l.filter_chains_size(), n);
  EXPECT_EQ(listeners.dynamic_listeners(0).active_state().version_info(), "l1");
}

// Istio-shaped Delta state: per-resource hash versions, a cluster and its assignment under one
// name, names of every length. The store keeps it compactly (one entry per name, bases of the
// resource's own size renamed to its name, versions as packed hex): the old layout took ~255
// bytes per cluster here.
TEST(ConfigStore, IstioDeltaStateTakesFewBytesPerCluster) {
  constexpr int n = 2000;
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  const auto hex_version = [](const std::string& bytes) {
    std::ostringstream out;
    out << std::hex << std::hash<std::string>{}(bytes);
    return out.str();
  };
  std::vector<shared_string> names;
  for (int i = 0; i < n; ++i) {
    const std::string name = test::istio::sni_name(service_host(i), 8080);
    names.emplace_back(name);
    const std::string c = test::istio::sni_dnat_cluster(name, service_host(i)).SerializeAsString();
    const std::string e =
        test::istio::assignment(name, {{.endpoints = {{.ip = "10.1." + std::to_string(i / 250) + "." +
                                                                       std::to_string(i % 250),
                                                                 .port = 8080}}}})
            .SerializeAsString();
    store.put(kind::cluster, names.back(), hex_version(c), c, t0);
    store.put(kind::endpoint, names.back(), hex_version(e), e, t0);
  }
  const double per_cluster =
      static_cast<double>(store.stored_bytes(kind::cluster) + store.stored_bytes(kind::endpoint)) / n;
  EXPECT_LT(per_cluster, 130) << "bytes per cluster (its Cluster and ClusterLoadAssignment)";
  // One reference per name for both kinds.
  EXPECT_EQ(names[7].use_count(), 2);
}

// Versions and times come back exactly however they are kept: the response's (shared by a
// state-of-the-world response), a per-resource one packed as hex or kept as is, times of
// responses whose epochs were released and reused.
TEST(ConfigStore, VersionsAndTimesRoundTripHoweverTheyAreKept) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  const std::vector<std::string> versions = {"", "0", "0f", "abc", "ABC", "v-1", "deadbeefdeadbeef1", "0f", "ffff"};
  struct expected {
    std::string version;
    config_store::time time;
  };
  std::map<std::string, expected> want;
  // Delta responses at three times, the versions cycling through the list.
  for (int i = 0; i < 30; ++i) {
    const std::string name = "c" + std::to_string(i);
    const auto t = t0 + std::chrono::nanoseconds(1 + i / 10);
    const std::string& v = versions[static_cast<std::size_t>(i) % versions.size()];
    store.put(kind::cluster, name, v, cluster_bytes(name, i), t);
    want[name] = {v, t};
  }
  // The second response's resources change (their epoch is released and reused by the next
  // time), and the assignments of the same names come in a state-of-the-world response.
  for (int i = 10; i < 20; ++i) {
    const std::string name = "c" + std::to_string(i);
    const auto t = t0 + std::chrono::seconds(7);
    store.put(kind::cluster, name, "x" + std::to_string(i), cluster_bytes(name, 100 + i), t);
    want[name] = {"x" + std::to_string(i), t};
  }
  std::vector<std::string> assignment_bytes;
  for (int i = 0; i < 30; ++i) assignment_bytes.push_back(test::istio::local_assignment("c" + std::to_string(i), {1001}).SerializeAsString());
  std::vector<std::pair<shared_string, const std::string*>> all;
  for (int i = 0; i < 30; i += 2) all.emplace_back("c" + std::to_string(i), &assignment_bytes[static_cast<std::size_t>(i)]);
  store.replace_all(kind::endpoint, all, "sotw-1", t0 + std::chrono::seconds(9));

  const auto dump = parse(store.render({{"include_eds", ""}}));
  const auto clusters = clusters_of(dump);
  ASSERT_EQ(clusters.dynamic_active_clusters_size(), 30);
  for (const auto& d : clusters.dynamic_active_clusters()) {
    envoy::config::cluster::v3::Cluster c;
    ASSERT_TRUE(d.cluster().UnpackTo(&c));
    const auto& w = want.at(c.name());
    EXPECT_EQ(d.version_info(), w.version) << c.name();
    EXPECT_EQ(google::protobuf::util::TimeUtil::TimestampToNanoseconds(d.last_updated()),
              std::chrono::duration_cast<std::chrono::nanoseconds>(w.time.time_since_epoch()).count())
        << c.name();
    EXPECT_EQ(c.SerializeAsString(), cluster_bytes(c.name(), std::stoi(c.name().substr(1)) + (want.at(c.name()).version[0] == 'x' ? 100 : 0)));
  }
  envoy::admin::v3::EndpointsConfigDump endpoints;
  ASSERT_TRUE(dump.configs(2).UnpackTo(&endpoints));
  ASSERT_EQ(endpoints.dynamic_endpoint_configs_size(), 15);
  for (const auto& d : endpoints.dynamic_endpoint_configs()) {
    EXPECT_EQ(d.version_info(), "sotw-1");
    EXPECT_EQ(d.last_updated().seconds(), std::chrono::duration_cast<std::chrono::seconds>(t0.time_since_epoch()).count() + 9);
  }

  // A name's cluster and assignment are separate resources: dropping one keeps the other.
  store.remove(kind::cluster, "c0");
  store.retain(kind::endpoint, {"c0"});
  const auto after = parse(store.render({{"include_eds", ""}}));
  EXPECT_EQ(clusters_of(after).dynamic_active_clusters_size(), 29);
  ASSERT_TRUE(after.configs(2).UnpackTo(&endpoints));
  ASSERT_EQ(endpoints.dynamic_endpoint_configs_size(), 1);
  envoy::config::endpoint::v3::ClusterLoadAssignment cla;
  ASSERT_TRUE(endpoints.dynamic_endpoint_configs(0).endpoint_config().UnpackTo(&cla));
  EXPECT_EQ(cla.cluster_name(), "c0");
  EXPECT_NE(store.missing_cluster_note("c1").find("not in force"), std::string::npos);
  EXPECT_EQ(store.missing_cluster_note("c0"), store.missing_cluster_note("nothing"));
}

TEST(ConfigStore, UnchangedBytesKeepVersionAndTimeChangedOfSameLengthDoNot) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  const std::string a1 = cluster_bytes("a", 1), a2 = cluster_bytes("a", 2);
  ASSERT_EQ(a1.size(), a2.size());  // same length: only the content tells them apart
  store.put(kind::cluster, "a", "v1", a1, t0);
  store.put(kind::cluster, "a", "v2", a1, t0 + std::chrono::seconds(5));
  auto c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), "v1");
  EXPECT_EQ(c.dynamic_active_clusters(0).last_updated().seconds(),
            std::chrono::duration_cast<std::chrono::seconds>(t0.time_since_epoch()).count());

  store.put(kind::cluster, "a", "v3", a2, t0 + std::chrono::seconds(9));
  c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), "v3");
  EXPECT_EQ(c.dynamic_active_clusters(0).last_updated().seconds(),
            std::chrono::duration_cast<std::chrono::seconds>(t0.time_since_epoch()).count() + 9);
  envoy::config::cluster::v3::Cluster back;
  ASSERT_TRUE(c.dynamic_active_clusters(0).cluster().UnpackTo(&back));
  EXPECT_EQ(back.connect_timeout().seconds(), 2);

  // SotW: unchanged resources keep theirs, the changed one takes the response's.
  const std::string b = cluster_bytes("b");
  store.replace_all(kind::cluster, {{"a", &a2}, {"b", &b}}, "s1", t0);
  c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 2);
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), "v3");
  EXPECT_EQ(c.dynamic_active_clusters(1).version_info(), "s1");
}

TEST(ConfigStore, LargeUnchangedResourceIsComparedExactlyInPieces) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  std::vector<test::istio::chain_spec> chains;
  for (int i = 0; i < 3000; ++i) chains.push_back({test::istio::sni_name(service_host(i), 8080), ""});
  const std::string big = test::istio::gateway_listener(15443, chains, "gw").SerializeAsString();
  ASSERT_GT(big.size(), 256u * 1024);  // several 64 KiB pieces
  store.put(kind::listener, "gw", "1", big, t0);
  store.put(kind::listener, "gw", "22", big, t0 + std::chrono::seconds(1));  // unchanged: keeps "1"
  const auto version = [&] {
    envoy::admin::v3::ListenersConfigDump l;
    const auto dump = parse(store.render({}));
    EXPECT_TRUE(dump.configs(dump.configs_size() - 1).UnpackTo(&l));
    return l.dynamic_listeners_size() == 1 ? l.dynamic_listeners(0).active_state().version_info() : "?";
  };
  EXPECT_EQ(version(), "1");
  // One byte changed near the end (same length): a change.
  std::string changed = big;
  const auto at = changed.rfind("svc-2999");
  ASSERT_NE(at, std::string::npos);
  changed[at + 4] = '7';
  store.put(kind::listener, "gw", "3", changed, t0);
  EXPECT_EQ(version(), "3");
  store.put(kind::listener, "gw", "4", big, t0);
  EXPECT_EQ(version(), "4");

  // Bytes that equal the stored record's tail but not its bytes: the stored version "a" then
  // B, against bytes "a" + B with an empty version. Not unchanged.
  const std::string b = cluster_bytes("t");
  store.put(kind::cluster, "t", "a", b, t0);
  store.put(kind::cluster, "t", "", "a" + b, t0);
  const auto c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), "");
}

// A version longer than the 64 KiB pieces the stored record is inflated in: the first pieces
// hold only the version. Resending the resource unchanged must not read before `bytes`.
TEST(ConfigStore, VersionLongerThanAnInflatePieceIsComparedCorrectly) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  const std::string long_version(200 * 1024, 'v');
  const std::string a1 = cluster_bytes("a", 1), a2 = cluster_bytes("a", 2);
  ASSERT_EQ(a1.size(), a2.size());
  store.put(kind::cluster, "a", long_version, a1, t0);
  store.put(kind::cluster, "a", "short", a1, t0 + std::chrono::seconds(1));  // unchanged
  auto c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), long_version);
  store.put(kind::cluster, "a", "changed", a2, t0);  // same length, other bytes
  c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), "changed");
}

TEST(ConfigStore, RemovalRetainAndReplaceAllKeepTheRestIntact) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  constexpr int n = 300;
  std::vector<std::string> names, bytes;
  for (int i = 0; i < n; ++i) {
    names.push_back("c" + std::to_string(i));
    bytes.push_back(cluster_bytes(names.back(), i));
  }
  std::vector<std::pair<shared_string, const std::string*>> all;
  for (int i = 0; i < n; ++i) all.emplace_back(names[i], &bytes[i]);
  store.replace_all(kind::cluster, all, "v1", t0);
  // Delta removals of every third, then SotW keeps only the even ones of what is left.
  for (int i = 0; i < n; i += 3) store.remove(kind::cluster, names[i]);
  store.remove(kind::cluster, "never-there");
  std::vector<std::pair<shared_string, const std::string*>> even;
  for (int i = 0; i < n; i += 2) even.emplace_back(names[i], &bytes[i]);
  store.replace_all(kind::cluster, even, "v2", t0);
  auto c = clusters_of(parse(store.render({})));
  std::map<std::string, std::string> seen;
  for (const auto& d : c.dynamic_active_clusters()) {
    envoy::config::cluster::v3::Cluster back;
    ASSERT_TRUE(d.cluster().UnpackTo(&back));
    seen[back.name()] = d.version_info();
    EXPECT_EQ(back.SerializeAsString(), bytes[std::stoi(back.name().substr(1))]);
  }
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(n / 2));
  for (int i = 0; i < n; i += 2) EXPECT_EQ(seen.at(names[i]), i % 3 == 0 ? "v2" : "v1") << names[i];
  EXPECT_EQ(store.missing_cluster_note("c1"), store.missing_cluster_note("nothing"));
  EXPECT_NE(store.missing_cluster_note("c2").find("not in force"), std::string::npos);

  // retain (EDS assignments no cluster uses) drops the rest; an empty set empties the kind.
  for (int i = 0; i < n; ++i) store.put(kind::endpoint, names[i], "e", bytes[i], t0);
  store.retain(kind::endpoint, {"c5", "c7", "absent"});
  envoy::admin::v3::EndpointsConfigDump endpoints;
  ASSERT_TRUE(parse(store.render({{"include_eds", ""}})).configs(2).UnpackTo(&endpoints));
  ASSERT_EQ(endpoints.dynamic_endpoint_configs_size(), 2);
  store.retain(kind::endpoint, {});
  EXPECT_EQ(store.stored_bytes(kind::endpoint) > 0, true);  // the dictionary stays
  ASSERT_TRUE(parse(store.render({{"include_eds", ""}})).configs(2).UnpackTo(&endpoints));
  EXPECT_EQ(endpoints.dynamic_endpoint_configs_size(), 0);
  store.put(kind::endpoint, "c9", "e2", bytes[9], t0);
  ASSERT_TRUE(parse(store.render({{"include_eds", ""}})).configs(2).UnpackTo(&endpoints));
  ASSERT_EQ(endpoints.dynamic_endpoint_configs_size(), 1);
  EXPECT_EQ(endpoints.dynamic_endpoint_configs(0).version_info(), "e2");
}

TEST(ConfigStore, ResourcesLargerThanTheDictionaryAndIncompressibleOnesRoundTrip) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  // The first resource (the dictionary) is tiny; the next is a listener of ~100 KB and then
  // one of several MB (larger than deflate's window).
  envoy::config::listener::v3::Listener tiny;
  tiny.set_name("tiny");
  store.put(kind::listener, "tiny", "1", tiny.SerializeAsString(), t0);
  std::vector<test::istio::chain_spec> chains;
  for (int i = 0; i < 20000; ++i) chains.push_back({test::istio::sni_name(service_host(i), 8080), ""});
  const std::string big = test::istio::gateway_listener(15443, chains, "big").SerializeAsString();
  ASSERT_GT(big.size(), 1u << 20);
  store.put(kind::listener, "big", "2", big, t0);

  // Random payload (incompressible) in a BytesValue the dump can print.
  std::mt19937 rng(7);
  std::string noise(50000, '\0');
  for (auto& ch : noise) ch = static_cast<char>(rng());
  google::protobuf::BytesValue value;
  value.set_value(noise);
  envoy::config::cluster::v3::Cluster noisy;
  noisy.set_name("noisy");
  auto& md = (*noisy.mutable_metadata()->mutable_typed_filter_metadata())["test"];
  md.PackFrom(value);
  store.put(kind::cluster, "noisy", "n1", noisy.SerializeAsString(), t0);
  store.put(kind::cluster, "noisy", "n2", noisy.SerializeAsString(), t0);  // unchanged, stored raw

  const auto dump = parse(store.render({}));
  const auto clusters = clusters_of(dump);
  ASSERT_EQ(clusters.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(clusters.dynamic_active_clusters(0).version_info(), "n1");
  envoy::config::cluster::v3::Cluster back;
  ASSERT_TRUE(clusters.dynamic_active_clusters(0).cluster().UnpackTo(&back));
  EXPECT_EQ(back.SerializeAsString(), noisy.SerializeAsString());
  envoy::admin::v3::ListenersConfigDump listeners;
  ASSERT_TRUE(dump.configs(dump.configs_size() - 1).UnpackTo(&listeners));
  ASSERT_EQ(listeners.dynamic_listeners_size(), 2);
  EXPECT_EQ(listeners.dynamic_listeners(0).name(), "big");
  envoy::config::listener::v3::Listener big_back;
  ASSERT_TRUE(listeners.dynamic_listeners(0).active_state().listener().UnpackTo(&big_back));
  EXPECT_EQ(big_back.filter_chains_size(), 20000);
  EXPECT_EQ(big_back.filter_chains(19999).filter_chain_match().server_names(0), chains.back().sni);
}

// A small record that does not compress is kept as is (its size then is not relative to a
// base): resent unchanged, it keeps its version.
TEST(ConfigStore, SmallIncompressibleResourceResentUnchangedKeepsItsVersion) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  std::mt19937 rng(11);
  const auto noise = [&](std::size_t size) {
    std::string out(size, '\0');
    for (auto& ch : out) ch = static_cast<char>(rng());
    return out;
  };
  // Records of 16 sizes become the kind's bases; one of a 17th size is deflated against the
  // nearest, does not compress and is kept raw. (Random bytes: the store keeps what the decoder
  // accepted without parsing it; the dump prints them as an empty Cluster.)
  for (std::size_t i = 0; i < 16; ++i) store.put(kind::cluster, "fill", "f", noise(100 + 10 * i), t0);
  const std::string noisy = noise(900);
  store.put(kind::cluster, "noisy", "n1", noisy, t0);
  store.put(kind::cluster, "noisy", "n2", noisy, t0);  // unchanged
  store.remove(kind::cluster, "fill");
  auto c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), "n1");
  std::string changed = noisy;
  changed[450] = static_cast<char>(changed[450] ^ 1);
  store.put(kind::cluster, "noisy", "n3", changed, t0);
  c = clusters_of(parse(store.render({})));
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), "n3");
}

// Unchanged-resend check of a record deflated against another resource's base, renamed to
// this record's name: "b" has the size of "a", so "a" is its base.
TEST(ConfigStore, UnchangedResendDeflatedAgainstAnotherResourcesBaseKeepsItsVersion) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  const std::string a = cluster_bytes("a"), b = cluster_bytes("b");
  ASSERT_EQ(a.size(), b.size());
  store.put(kind::cluster, "a", "a1", a, t0);
  store.put(kind::cluster, "b", "b1", b, t0 + std::chrono::seconds(1));
  store.put(kind::cluster, "b", "b2", b, t0 + std::chrono::seconds(2));  // unchanged
  auto c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 2);
  EXPECT_EQ(c.dynamic_active_clusters(1).version_info(), "b1");
  EXPECT_EQ(c.dynamic_active_clusters(1).last_updated().seconds(),
            std::chrono::duration_cast<std::chrono::seconds>(t0.time_since_epoch()).count() + 1);
  envoy::config::cluster::v3::Cluster back;
  ASSERT_TRUE(c.dynamic_active_clusters(1).cluster().UnpackTo(&back));
  EXPECT_EQ(back.SerializeAsString(), b);
  // Changed, same size: takes the new version.
  const std::string b3 = cluster_bytes("b", 3);
  ASSERT_EQ(b3.size(), b.size());
  store.put(kind::cluster, "b", "b3", b3, t0 + std::chrono::seconds(3));
  c = clusters_of(parse(store.render({})));
  EXPECT_EQ(c.dynamic_active_clusters(1).version_info(), "b3");
}

// A Cluster named `name` whose alt_stat_name is `text` padded with 'z' (no name separator) to
// `size` bytes serialized.
std::string cluster_of_size(const std::string& name, const std::string& text, std::size_t size) {
  envoy::config::cluster::v3::Cluster c;
  c.set_name(name);
  c.set_alt_stat_name(text);
  while (c.ByteSizeLong() < size) c.mutable_alt_stat_name()->push_back('z');
  return c.SerializeAsString();
}

// Puts `first` and then `second` (of the same size, so `first` is its base) and checks both
// come back exactly, and that `second` resent unchanged keeps its version and changed does not.
void expect_round_trip_against_base(config_store& store, const std::string& first_name, const std::string& first,
                                    const std::string& second_name, const std::string& second) {
  const auto t0 = std::chrono::system_clock::now();
  ASSERT_EQ(first.size(), second.size());
  store.put(kind::cluster, first_name, "f1", first, t0);
  store.put(kind::cluster, second_name, "s1", second, t0);
  store.put(kind::cluster, second_name, "s2", second, t0);  // unchanged
  auto c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 2);
  std::map<std::string, std::pair<std::string, std::string>> back;  // name: version, bytes
  for (const auto& d : c.dynamic_active_clusters()) {
    envoy::config::cluster::v3::Cluster cluster;
    ASSERT_TRUE(d.cluster().UnpackTo(&cluster));
    back[cluster.name()] = {d.version_info(), cluster.SerializeAsString()};
  }
  EXPECT_EQ(back[first_name].second, first);
  EXPECT_EQ(back[second_name].first, "s1");
  EXPECT_EQ(back[second_name].second, second);
  std::string changed = second;
  changed.back() = 'y';  // the last byte of the padding
  store.put(kind::cluster, second_name, "s3", changed, t0);
  c = clusters_of(parse(store.render({})));
  for (const auto& d : c.dynamic_active_clusters()) {
    envoy::config::cluster::v3::Cluster cluster;
    ASSERT_TRUE(d.cluster().UnpackTo(&cluster));
    if (cluster.name() != second_name) continue;
    EXPECT_EQ(d.version_info(), "s3");
    EXPECT_EQ(cluster.SerializeAsString(), changed);
  }
}

// A base renamed to a name whose tokens are longer grows; past 8 KiB (deflate's window here)
// deflate uses only its end, and the records still come back exactly.
TEST(ConfigStore, RenamedBaseLongerThanTheDeflateWindowRoundTrips) {
  config_store store;
  std::string repeated;
  for (int i = 0; i < 1000; ++i) repeated += "abc";
  const std::string base = cluster_of_size("abc", repeated, 3100);
  const std::string other = cluster_of_size("klmnopqrst", "", base.size());
  expect_round_trip_against_base(store, "abc", base, "klmnopqrst", other);
  // "abc" 1001 times in the base, renamed to a 10-character token: ~10 KB.
  EXPECT_GT(store.largest_dictionary(), std::size_t{8} << 10);
}

// A base whose name's token occurs thousands of times, renamed to a name with a token of
// thousands of characters, would be a dictionary of ~7.8 MB rebuilt for every put, resend
// check and rendered record; the store uses the base as it is instead.
TEST(ConfigStore, RenamedBaseIsBoundedHoweverLongTheNewNamesTokens) {
  config_store store;
  std::string repeated;
  for (int i = 0; i < 2600; ++i) repeated += "abc";
  const std::string base = cluster_of_size("abc", repeated, 7808);
  const std::string long_name(3000, 'q');
  const std::string other = cluster_of_size(long_name, "", base.size());
  expect_round_trip_against_base(store, "abc", base, long_name, other);
  // At most twice the largest base (8 KiB) renamed, then the name.
  EXPECT_LE(store.largest_dictionary(), (std::size_t{16} << 10) + long_name.size());
}

// Periodic pushes (Delta updates of changed clusters, state-of-the-world assignments), each at
// its own time: once every epoch number, version and base in use has been seen, the store stops
// growing (epochs are released and reused, bases are not added per push).
TEST(ConfigStore, PeriodicPushesKeepTheStoreFromGrowing) {
  constexpr int names = 20;
  config_store store;
  const auto t0 = config_store::time(std::chrono::seconds(1700000000));
  const auto total = [&] {
    return store.stored_bytes(kind::cluster) + store.stored_bytes(kind::endpoint) + store.stored_bytes(kind::listener);
  };
  const auto version = [](int round, int i) {
    char text[16];
    std::snprintf(text, sizeof text, "%04x%04x", round % 10, i);  // fixed length, repeating
    return std::string(text);
  };
  // Rounds 201-300 and 401-500 hold the same resources (200 is a multiple of every cycle
  // above). Their sizes vary by a few percent from round to round (which records carry their
  // version inline, how many epochs are free), so the largest of each span is compared: a leak
  // (an epoch or version per push, a base per push) adds kilobytes over 200 rounds.
  std::size_t early = 0, late = 0;
  for (int round = 1; round <= 500; ++round) {
    const auto t = t0 + std::chrono::seconds(2 * round);
    // Delta: a quarter of the clusters change, each in a response of its own.
    for (int i = round % 4; i < names; i += 4) {
      const std::string name = "outbound|80||svc-" + std::to_string(i) + ".ns.svc.cluster.local";
      store.put(kind::cluster, name, version(round, i), cluster_bytes(name, 1 + round % 10),
                t + std::chrono::milliseconds(i));
    }
    // SotW: every assignment in one response, one of them changed.
    std::vector<std::string> bytes;
    for (int i = 0; i < names; ++i) {
      const std::string name = "outbound|80||svc-" + std::to_string(i) + ".ns.svc.cluster.local";
      bytes.push_back(test::istio::local_assignment(name, {static_cast<std::uint16_t>(1000 + (i == round % names ? round % 10 : 0))})
                          .SerializeAsString());
    }
    std::vector<std::pair<shared_string, const std::string*>> all;
    for (int i = 0; i < names; ++i) {
      all.emplace_back("outbound|80||svc-" + std::to_string(i) + ".ns.svc.cluster.local", &bytes[static_cast<std::size_t>(i)]);
    }
    store.replace_all(kind::endpoint, all, "sotw-" + version(round, 0), t + std::chrono::seconds(1));
    if (round > 200 && round <= 300) early = std::max(early, total());
    if (round > 400) late = std::max(late, total());
  }
  EXPECT_GT(early, 0u);
  EXPECT_LE(late, early + early / 10);
  const auto c = clusters_of(parse(store.render({})));
  EXPECT_EQ(c.dynamic_active_clusters_size(), names);
}

TEST(ConfigStore, BytesThatAreNotTheResourceTypeAreKeptWithoutHarm) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  store.put(kind::cluster, "bad", "1", std::string("\xff\xff\xff\xff", 4), t0);
  store.put(kind::cluster, "empty", "1", "", t0);  // an empty record is a valid (empty) Cluster
  // The store keeps bytes as received (they were validated by the decoder before); protobuf's
  // printer shows bytes that do not parse as an empty message. What matters here: both come
  // back from the compressed store and nothing fails.
  EXPECT_EQ(clusters_of(parse(store.render({}))).dynamic_active_clusters_size(), 2);
  store.remove(kind::cluster, "bad");
  const auto c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), "1");
}

// ---- names: referenced, not copied ------------------------------------------------------

TEST(ConfigStore, ReferencesTheNameItIsGivenInsteadOfCopyingIt) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  const std::string name_text = test::istio::sni_name(service_host(1), 8080);
  const shared_string name(name_text);
  const std::string cluster = cluster_bytes(name_text);
  const std::string cla = test::istio::local_assignment(name_text, {1001}).SerializeAsString();
  ASSERT_EQ(name.use_count(), 1);
  store.put(kind::cluster, name, "v1", cluster, t0);
  EXPECT_EQ(name.use_count(), 2);  // one reference in the store, no copy of the text
  store.put(kind::cluster, name, "v2", cluster, t0);  // unchanged
  store.put(kind::cluster, name, "v3", cluster_bytes(name_text, 2), t0);  // changed: a new block, one reference
  EXPECT_EQ(name.use_count(), 2);
  store.replace_all(kind::endpoint, {{name, &cla}}, "e1", t0);
  EXPECT_EQ(name.use_count(), 2);  // the cluster and its assignment: one entry, one reference
  store.remove(kind::cluster, name);
  EXPECT_EQ(name.use_count(), 2);  // the assignment still holds it
  store.retain(kind::endpoint, {});
  EXPECT_EQ(name.use_count(), 1);

  // A resource stored under a copy of its name (the state had none) takes the shared string
  // when it is sent again unchanged, and keeps its version.
  const shared_string copy{std::string(name)};
  store.put(kind::cluster, copy, "c1", cluster, t0);
  EXPECT_EQ(copy.use_count(), 2);
  const shared_string shared{std::string(name)};
  ASSERT_FALSE(shared.shares_with(copy));
  store.put(kind::cluster, shared, "c2", cluster, t0);
  EXPECT_EQ(copy.use_count(), 1);
  EXPECT_EQ(shared.use_count(), 2);
  const auto c = clusters_of(parse(store.render({})));
  ASSERT_EQ(c.dynamic_active_clusters_size(), 1);
  EXPECT_EQ(c.dynamic_active_clusters(0).version_info(), "c1");
}

// The store references the ADS state's name strings; when the state drops a resource (or is
// gone), the stored resource keeps its name alive and the dump still shows it. Under asan, a
// name the store did not own would be a use after free here.
TEST(ConfigStore, AStoredResourceKeepsItsNameWhenTheAdsStateDropsIt) {
  config_store store;
  const auto t0 = std::chrono::system_clock::now();
  const std::string svc = test::istio::sni_name(service_host(3), 8080);
  const std::string cluster = test::istio::sni_dnat_cluster(svc).SerializeAsString();
  const std::string cla = test::istio::local_assignment(svc, {1001}).SerializeAsString();
  const auto listener_message = test::istio::gateway_listener(15443, {{svc, svc}}, "gw-" + svc);
  const std::string listener = listener_message.SerializeAsString();
  const auto any_list = [](const auto& message) {
    ads_state::any_list out;
    out.Add()->PackFrom(message);
    return out;
  };
  {
    bootstrap_config bootstrap;
    bootstrap.ads = ads_config{};
    ads_state state(bootstrap, std::chrono::seconds(15));
    const auto now = ads_state::clock::now();
    ASSERT_TRUE(state.apply_sotw(resource_kind::cluster, any_list(test::istio::sni_dnat_cluster(svc)), now).errors.empty());
    ASSERT_TRUE(
        state.apply_sotw(resource_kind::endpoint, any_list(test::istio::local_assignment(svc, {1001})), now).errors.empty());
    ASSERT_TRUE(state.apply_sotw(resource_kind::listener, any_list(listener_message), now).errors.empty());
    state.commit();
    const shared_string cluster_name = state.shared_name(resource_kind::cluster, svc);
    const shared_string service_name = state.shared_name(resource_kind::endpoint, svc);
    const shared_string listener_name = state.shared_name(resource_kind::listener, "gw-" + svc);
    ASSERT_EQ(cluster_name, svc);
    ASSERT_TRUE(cluster_name.shares_with(service_name));  // istiod's cluster and its service: one string
    ASSERT_EQ(listener_name, "gw-" + svc);
    const long state_refs = cluster_name.use_count();
    store.put(kind::cluster, cluster_name, "1", cluster, t0);
    store.put(kind::endpoint, service_name, "1", cla, t0);
    store.put(kind::listener, listener_name, "1", listener, t0);
    EXPECT_EQ(cluster_name.use_count(), state_refs + 1);  // one entry for the cluster and its assignment

    // The state drops the cluster and the listener (SotW responses without them).
    ASSERT_TRUE(state.apply_sotw(resource_kind::listener, {}, now).errors.empty());
    ASSERT_TRUE(state.apply_sotw(resource_kind::cluster, {}, now).errors.empty());
    state.commit();
    EXPECT_TRUE(state.shared_name(resource_kind::cluster, svc).empty());
    EXPECT_TRUE(state.shared_name(resource_kind::listener, "gw-" + svc).empty());
  }  // the state and the references above are gone: only the store holds the names

  const auto dump = parse(store.render({{"include_eds", ""}}));
  const auto clusters = clusters_of(dump);
  ASSERT_EQ(clusters.dynamic_active_clusters_size(), 1);
  envoy::config::cluster::v3::Cluster cluster_back;
  ASSERT_TRUE(clusters.dynamic_active_clusters(0).cluster().UnpackTo(&cluster_back));
  // (compared as messages: the dump prints the istio metadata map through JSON, in key order)
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(cluster_back, test::istio::sni_dnat_cluster(svc)));
  envoy::admin::v3::EndpointsConfigDump endpoints;
  ASSERT_TRUE(dump.configs(2).UnpackTo(&endpoints));
  ASSERT_EQ(endpoints.dynamic_endpoint_configs_size(), 1);
  envoy::admin::v3::ListenersConfigDump listeners;
  ASSERT_TRUE(dump.configs(3).UnpackTo(&listeners));
  ASSERT_EQ(listeners.dynamic_listeners_size(), 1);
  EXPECT_EQ(listeners.dynamic_listeners(0).name(), "gw-" + svc);  // printed from the stored name
  // Lookups by name still find it.
  EXPECT_NE(store.missing_cluster_note(svc).find("not in force"), std::string::npos);
  store.remove(kind::listener, "gw-" + svc);
  ASSERT_TRUE(parse(store.render({})).configs(2).UnpackTo(&listeners));
  EXPECT_EQ(listeners.dynamic_listeners_size(), 0);
}

}  // namespace
}  // namespace ewgw::xds
