// config_store without a network: what the ADS client records comes back in /config_dump's
// layout, parsed by Envoy's own admin protos.
#include <gtest/gtest.h>
#include <google/protobuf/util/json_util.h>

#include "envoy/admin/v3/config_dump.pb.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
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

}  // namespace
}  // namespace ewgw::xds
