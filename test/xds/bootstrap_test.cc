// Bootstrap loading: real Envoy v3 YAML/JSON through the official protos into plain structs,
// and every class of bad input producing an error that names the field and the reason.
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <string>

#include "xds/decode.h"

namespace ewgw::xds {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// A minimal valid config that tests modify.
std::string config_with(const std::string& listener_extra, const std::string& chain_extra = "",
                        const std::string& cluster_extra = "", const std::string& filters = "") {
  return R"(
static_resources:
  listeners:
  - name: l1
    address: {socket_address: {address: 127.0.0.1, port_value: 15443}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}
)" + listener_extra + R"(
    filter_chains:
    - filter_chain_match: {server_names: [a.example.com]}
)" + chain_extra + R"(
      filters:
)" + filters + R"(
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: a
          cluster: c1
  clusters:
  - name: c1
    type: STATIC
)" + cluster_extra + R"(
    load_assignment:
      cluster_name: c1
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 8080}}}
)";
}

bool has_error(const diagnostics& d, const std::string& needle) {
  return std::any_of(d.errors.begin(), d.errors.end(), [&](const std::string& e) { return e.find(needle) != std::string::npos; });
}

std::string all_errors(const diagnostics& d) {
  std::string s;
  for (const auto& e : d.errors) s += e + "\n";
  return s;
}

TEST(Bootstrap, DemoConfigLoadsIntoPlainStructs) {
  const auto r = load_bootstrap_file(EWGW_SOURCE_DIR "/demo/bootstrap.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  const bootstrap_config& c = r.config;
  EXPECT_EQ(c.node.cluster, "istio-eastwestgateway");
  ASSERT_TRUE(c.admin_address);
  EXPECT_EQ(c.admin_address->port, 15000);
  ASSERT_EQ(c.listeners.size(), 1u);
  const listener_config& l = c.listeners[0];
  EXPECT_EQ(l.name, "0.0.0.0_15443");
  EXPECT_EQ(l.address.port, 15443);
  EXPECT_TRUE(l.tls_inspector);
  EXPECT_EQ(l.listener_filters_timeout.count(), 15000);
  ASSERT_EQ(l.filter_chains.size(), 2u);
  const filter_chain_config& chain = l.filter_chains[0];
  ASSERT_EQ(chain.server_names.size(), 1u);
  EXPECT_EQ(chain.server_names[0], "outbound_.5000_._.helloworld.sample.svc.cluster.local");
  EXPECT_EQ(chain.settings->match.application_protocols.size(), 5u);
  EXPECT_EQ(chain.cluster, "outbound_.5000_._.helloworld.sample.svc.cluster.local");
  EXPECT_EQ(chain.settings->tcp_proxy.idle_timeout.count(), 3600000);
  EXPECT_EQ(chain.settings->tcp_proxy.max_connect_attempts, 1u);
  ASSERT_EQ(c.clusters.size(), 2u);
  EXPECT_EQ(c.clusters[0].settings->connect_timeout.count(), 10000);
  ASSERT_EQ(c.clusters[0].load_assignment.localities.size(), 1u);
  EXPECT_EQ(c.clusters[0].load_assignment.localities[0].where->zone, "us-east1-b");
  ASSERT_EQ(c.clusters[0].load_assignment.localities[0].endpoints.size(), 2u);
  EXPECT_EQ(c.clusters[0].load_assignment.localities[0].endpoints[1].port, 15102);
  EXPECT_EQ(c.clusters[0].load_assignment.localities[0].endpoints[1].health, health_status::healthy);
  // istio.stats is telemetry: accepted with a notice, not an error.
  EXPECT_TRUE(std::any_of(r.diag.notices.begin(), r.diag.notices.end(),
                          [](const std::string& n) { return n.find("istio.stats") != std::string::npos; }));
}

TEST(Bootstrap, JsonFormIsAccepted) {
  const std::string json = R"({"static_resources":{"listeners":[{"name":"l","address":{"socketAddress":{"address":"127.0.0.1","portValue":1234}},
    "filterChains":[{"filters":[{"name":"tcp","typedConfig":{"@type":"type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
    "statPrefix":"s","cluster":"c","maxConnectAttempts":3,"maxDownstreamConnectionDuration":"2.5s"}}]}]}],
    "clusters":[{"name":"c","type":"STATIC","connectTimeout":"0.25s","loadAssignment":{"clusterName":"c","endpoints":[{"priority":1,
    "lbEndpoints":[{"endpoint":{"address":{"socketAddress":{"address":"::1","portValue":80}}},"loadBalancingWeight":7,"healthStatus":"DEGRADED"}]}]}}]}})";
  const auto r = load_bootstrap_text(json, "inline.json");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.listeners[0].address.port, 1234);
  EXPECT_EQ(r.config.listeners[0].filter_chains[0].settings->tcp_proxy.max_connect_attempts, 3u);
  EXPECT_EQ(r.config.listeners[0].filter_chains[0].settings->tcp_proxy.max_downstream_connection_duration.count(), 2500);
  EXPECT_FALSE(r.config.listeners[0].tls_inspector);
  const auto& loc = r.config.clusters[0].load_assignment.localities[0];
  EXPECT_EQ(r.config.clusters[0].settings->connect_timeout.count(), 250);
  EXPECT_EQ(loc.priority, 1u);
  EXPECT_EQ(loc.endpoints[0].weight, 7u);
  EXPECT_EQ(loc.endpoints[0].health, health_status::degraded);
  EXPECT_EQ(loc.endpoints[0].ip.str(), "::1");
  EXPECT_TRUE(loc.endpoints[0].ip.ipv6);
}

TEST(Bootstrap, UnquotedNumericNameIsAString) {
  // YAML reads 123 as a number; a string field must still accept it.
  std::string text = config_with("");
  text.replace(text.find("cluster: c1"), 11, "cluster: 123");
  text.replace(text.find("- name: c1"), 10, "- name: 123");
  const auto r = load_bootstrap_text(text, "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.clusters[0].name, "123");
}

TEST(Bootstrap, NodeMetadataKeepsYamlTypes) {
  const auto r = load_bootstrap_text(std::string("node:\n  id: x\n  metadata: {NAME: \"007\", COUNT: 3, FLAG: true, LIST: [a, 1]}\n") +
                                         config_with("").substr(1),
                                     "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.node.id, "x");
}

// Istio's telemetry inputs: the cluster's istio.services list (structs; the first names the
// destination service) and the node's workload identity (the gateway's source_* labels).
TEST(Bootstrap, IstioServicesAndNodeIdentityAreDecoded) {
  const std::string node =
      "node:\n  id: x\n  metadata: {WORKLOAD_NAME: gw, NAMESPACE: istio-system, CLUSTER_ID: c1, "
      "LABELS: {app: gw-app, version: v9, service.istio.io/canonical-name: gw-canon, "
      "service.istio.io/canonical-revision: r1}}\n";
  const auto r = load_bootstrap_text(
      node + config_with("", "", "    metadata: {filter_metadata: {istio: {default_original_port: \"5000\", services: "
                                 "[{host: a.ns.svc.cluster.local, name: a, namespace: ns}, {host: b.other.svc.cluster.local}, "
                                 "7, {name: no-host}]}}}\n")
                 .substr(1),
      "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  const cluster_config& c = r.config.clusters[0];
  ASSERT_EQ(c.istio_services.size(), 2u);  // the number and the entry without a host are skipped
  EXPECT_EQ(c.istio_services[0], (istio_service{"a.ns.svc.cluster.local", "a", "ns"}));
  EXPECT_EQ(c.istio_services[1], (istio_service{"b.other.svc.cluster.local", "b", ""}));  // name from the host
  EXPECT_EQ(c.settings->istio_metadata.at("default_original_port"), "5000");
  const auto& id = r.config.node.istio;
  EXPECT_EQ(id.workload_name, "gw");
  EXPECT_EQ(id.namespace_, "istio-system");
  EXPECT_EQ(id.cluster_id, "c1");
  EXPECT_EQ(id.app, "gw-app");
  EXPECT_EQ(id.version, "v9");
  EXPECT_EQ(id.canonical_name, "gw-canon");
  EXPECT_EQ(id.canonical_revision, "r1");
}

TEST(Bootstrap, LeastRequestActiveRequestBiasIsDecoded) {
  const auto lb = [](const std::string& bias) {
    return "    lb_policy: LEAST_REQUEST\n    least_request_lb_config: {choice_count: 3, active_request_bias: " + bias + "}\n";
  };
  auto r = load_bootstrap_text(config_with("", "", lb("{default_value: 0.5, runtime_key: lr.bias}")), "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.clusters[0].settings->least_request_active_request_bias, 0.5);
  EXPECT_EQ(r.config.clusters[0].settings->least_request_choice_count, 3u);
  r = load_bootstrap_text(config_with("", "", "    lb_policy: LEAST_REQUEST\n"), "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.clusters[0].settings->least_request_active_request_bias, 1.0);  // Envoy's default
  // Negative: Envoy warns and uses 1.0; so does ewgw, with a notice naming the field.
  r = load_bootstrap_text(config_with("", "", lb("{default_value: -2, runtime_key: lr.bias}")), "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.clusters[0].settings->least_request_active_request_bias, 1.0);
  EXPECT_TRUE(std::any_of(r.diag.notices.begin(), r.diag.notices.end(), [](const std::string& n) {
    return n.find("least_request_lb_config.active_request_bias") != std::string::npos;
  }));
}

TEST(Bootstrap, UnknownFieldIsReportedWithItsPosition) {
  const auto r = load_bootstrap_text("static_resources:\n  listners: []\n", "t.yaml");
  ASSERT_FALSE(r.diag.ok());
  EXPECT_TRUE(has_error(r.diag, "t.yaml:2:3: unknown field 'listners' in envoy.config.bootstrap.v3.Bootstrap.StaticResources"))
      << all_errors(r.diag);
}

TEST(Bootstrap, YamlSyntaxErrorNamesTheLine) {
  const auto r = load_bootstrap_text("static_resources:\n  listeners: [\n", "t.yaml");
  ASSERT_FALSE(r.diag.ok());
  EXPECT_TRUE(has_error(r.diag, "t.yaml:")) << all_errors(r.diag);
}

TEST(Bootstrap, EmptyAndMissingFiles) {
  EXPECT_TRUE(has_error(load_bootstrap_text("", "e.yaml").diag, "e.yaml:the document is empty"));
  EXPECT_TRUE(has_error(load_bootstrap_file("/nonexistent/ewgw.yaml").diag, "cannot open the file"));
}

TEST(Bootstrap, InvalidEnumValueIsRejected) {
  const auto r = load_bootstrap_text(config_with("", "", "    lb_policy: FASTEST\n"), "t.yaml");
  ASSERT_FALSE(r.diag.ok());
  EXPECT_TRUE(has_error(r.diag, "FASTEST")) << all_errors(r.diag);
}

TEST(Bootstrap, UnsupportedNetworkFilterIsAnError) {
  const auto r = load_bootstrap_text(
      config_with("", "", "",
                  "      - name: envoy.filters.network.rbac\n        typed_config: {\"@type\": "
                  "type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC, stat_prefix: x}\n"),
      "t.yaml");
  ASSERT_FALSE(r.diag.ok());
  EXPECT_TRUE(has_error(r.diag, "static_resources.listeners[0].filter_chains[0].filters[0]: network filter "
                                "'envoy.filters.network.rbac' (type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC) "
                                "is not supported"))
      << all_errors(r.diag);
}

TEST(Bootstrap, TelemetryFiltersAreAccepted) {
  const auto r = load_bootstrap_text(
      config_with("", "", "",
                  "      - name: istio.metadata_exchange\n        typed_config:\n          \"@type\": type.googleapis.com/udpa.type.v1.TypedStruct\n"
                  "          type_url: type.googleapis.com/envoy.tcp.metadataexchange.config.MetadataExchange\n"
                  "          value: {protocol: istio-peer-exchange}\n"),
      "t.yaml");
  EXPECT_TRUE(r.diag.ok()) << all_errors(r.diag);
}

TEST(Bootstrap, UnsupportedListenerFilterIsAnError) {
  const auto r = load_bootstrap_text(
      config_with("    - name: envoy.filters.listener.proxy_protocol\n      typed_config: {\"@type\": "
                  "type.googleapis.com/envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol}\n"),
      "t.yaml");
  ASSERT_FALSE(r.diag.ok());
  EXPECT_TRUE(has_error(r.diag, "listener_filters[1]: listener filter 'envoy.filters.listener.proxy_protocol' is not supported"))
      << all_errors(r.diag);
}

TEST(Bootstrap, RoutingFieldsWeDoNotImplementAreErrors) {
  const auto tls = load_bootstrap_text(
      config_with("", "", "    transport_socket: {name: tls, typed_config: {\"@type\": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext}}\n"),
      "t.yaml");
  EXPECT_TRUE(has_error(tls.diag, "static_resources.clusters[0].transport_socket: not supported")) << all_errors(tls.diag);

  const auto prefix = load_bootstrap_text(
      config_with("", "      # source filter\n"), "t.yaml");
  EXPECT_TRUE(prefix.diag.ok()) << all_errors(prefix.diag);
  std::string with_source = config_with("");
  with_source.replace(with_source.find("{server_names: [a.example.com]}"), 31,
                      "{server_names: [a.example.com], source_prefix_ranges: [{address_prefix: 10.0.0.0, prefix_len: 8}]}");
  EXPECT_TRUE(has_error(load_bootstrap_text(with_source, "t.yaml").diag, "filter_chain_match.source_prefix_ranges: not supported"));

  EXPECT_TRUE(has_error(load_bootstrap_text(config_with("    use_original_dst: true\n"), "t.yaml").diag, "use_original_dst: not supported"));
  EXPECT_TRUE(has_error(load_bootstrap_text(config_with("", "", "    health_checks: [{timeout: 1s, interval: 1s, tcp_health_check: {}}]\n"), "t.yaml").diag,
                        "clusters[0].health_checks: not supported"));
}

TEST(Bootstrap, UnsupportedClusterTypeAndPolicy) {
  const auto dns = load_bootstrap_text(config_with("", "", "    lb_policy: MAGLEV\n").replace(
                                           config_with("", "", "    lb_policy: MAGLEV\n").find("type: STATIC"), 12, "type: STRICT_DNS"),
                                       "t.yaml");
  EXPECT_TRUE(has_error(dns.diag, "clusters[0].type: STRICT_DNS is not supported")) << all_errors(dns.diag);
  EXPECT_TRUE(has_error(dns.diag, "clusters[0].lb_policy: MAGLEV is not supported")) << all_errors(dns.diag);
}

TEST(Bootstrap, MissingClusterIsAnError) {
  std::string text = config_with("");
  text.replace(text.find("cluster: c1"), 11, "cluster: nope");
  const auto r = load_bootstrap_text(text, "t.yaml");
  EXPECT_TRUE(has_error(r.diag, "tcp_proxy names cluster 'nope', which is not defined")) << all_errors(r.diag);
}

TEST(Bootstrap, ServerNamePatterns) {
  for (const char* bad : {"*", "*w.example.com", "a.*.example.com", "*."}) {
    std::string text = config_with("");
    text.replace(text.find("a.example.com"), 13, std::string("\"") + bad + "\"");
    const auto r = load_bootstrap_text(text, "t.yaml");
    EXPECT_TRUE(has_error(r.diag, "partial wildcards are not supported")) << bad << ": " << all_errors(r.diag);
  }
  std::string ok = config_with("");
  ok.replace(ok.find("a.example.com"), 13, "\"*.Example.COM\"");
  const auto r = load_bootstrap_text(ok, "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.listeners[0].filter_chains[0].server_names[0], "*.example.com");
}

TEST(Bootstrap, DuplicateMatchersAreRejected) {
  std::string text = config_with("");
  const std::string chain = text.substr(text.find("    - filter_chain_match"), text.find("  clusters:") - text.find("    - filter_chain_match"));
  text.insert(text.find("  clusters:"), chain);
  const auto r = load_bootstrap_text(text, "t.yaml");
  EXPECT_TRUE(has_error(r.diag, "filter_chains[1]: has the same filter_chain_match as filter_chains[0]")) << all_errors(r.diag);
}

TEST(Bootstrap, TcpProxyMustBeLastAndPresent) {
  const auto r = load_bootstrap_text(
      config_with("", "", "",
                  "      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": "
                  "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: x\n"
                  "          cluster: c1\n"),
      "t.yaml");
  EXPECT_TRUE(has_error(r.diag, "follows tcp_proxy, which must be the last (terminal) filter")) << all_errors(r.diag);
}

TEST(Bootstrap, StaticEndpointsMustBeIpLiterals) {
  std::string text = config_with("");
  text.replace(text.find("address: 127.0.0.1, port_value: 8080"), 18, "address: backend.local");
  const auto r = load_bootstrap_text(text, "t.yaml");
  EXPECT_TRUE(has_error(r.diag, "'backend.local' is not a numeric IPv4 or IPv6 address")) << all_errors(r.diag);
}

TEST(Bootstrap, WeightedClustersAndSniCluster) {
  std::string text = config_with("", "", "",
                                 "      - name: envoy.filters.network.sni_cluster\n        typed_config: {\"@type\": "
                                 "type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster}\n");
  text.replace(text.find("cluster: c1"), 11, "weighted_clusters: {clusters: [{name: c1, weight: 80}, {name: c1, weight: 20}]}");
  const auto r = load_bootstrap_text(text, "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  const tcp_proxy_config& tp = r.config.listeners[0].filter_chains[0].settings->tcp_proxy;
  EXPECT_TRUE(tp.cluster_from_sni);
  ASSERT_EQ(tp.weighted_clusters.size(), 2u);
  EXPECT_EQ(tp.weighted_clusters[0].weight, 80u);

  std::string zero = text;
  zero.replace(zero.find("weight: 20"), 10, "weight: 0");
  EXPECT_FALSE(load_bootstrap_text(zero, "t.yaml").diag.ok());
}

TEST(Bootstrap, WeightsMustFitIn32Bits) {
  std::string text = config_with("");
  text.replace(text.find("cluster: c1"), 11,
               "weighted_clusters: {clusters: [{name: c1, weight: 4294967295}, {name: c1, weight: 1}]}");
  EXPECT_TRUE(has_error(load_bootstrap_text(text, "t.yaml").diag, "the weights add up to more than 4294967295"));
}

TEST(Bootstrap, DurationsAreCheckedAndClamped) {
  std::string negative = config_with("    listener_filters_timeout: -1s\n");
  EXPECT_TRUE(has_error(load_bootstrap_text(negative, "t.yaml").diag, "listener_filters_timeout: must not be negative"));
  std::string tiny = config_with("");
  tiny.replace(tiny.find("cluster: c1"), 11, "cluster: c1\n          idle_timeout: 0.0001s");
  auto r = load_bootstrap_text(tiny, "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.listeners[0].filter_chains[0].settings->tcp_proxy.idle_timeout.count(), 1);  // not "disabled"
  std::string huge = config_with("");
  huge.replace(huge.find("cluster: c1"), 11, "cluster: c1\n          idle_timeout: 315576000000s");
  r = load_bootstrap_text(huge, "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.listeners[0].filter_chains[0].settings->tcp_proxy.idle_timeout.count(), 10LL * 365 * 24 * 3600 * 1000);
}

TEST(Bootstrap, AddressesAreValidatedStrictly) {
  for (const char* bad : {"1:2", "::::", "010.0.0.1", "256.1.1.1", "1.2.3"}) {
    std::string text = config_with("");
    text.replace(text.find("address: 127.0.0.1, port_value: 8080"), 18, std::string("address: \"") + bad + "\"");
    EXPECT_TRUE(has_error(load_bootstrap_text(text, "t.yaml").diag, "is not a numeric IPv4 or IPv6 address")) << bad;
  }
}

TEST(Bootstrap, StructNumbersWithLeadingZeros) {
  const auto r = load_bootstrap_text(std::string("node:\n  id: x\n  metadata: {A: 007, B: -00.5, C: 0}\n") + config_with("").substr(1),
                                     "t.yaml");
  EXPECT_TRUE(r.diag.ok()) << all_errors(r.diag);
}

TEST(Bootstrap, EdsClusterWithoutControlPlaneIsAnError) {
  std::string text = config_with("");
  text.replace(text.find("type: STATIC"), 12, "type: EDS\n    eds_cluster_config: {service_name: svc, eds_config: {ads: {}}}");
  const auto r = load_bootstrap_text(text, "t.yaml");
  EXPECT_TRUE(has_error(r.diag, "an EDS cluster needs an xDS control plane")) << all_errors(r.diag);
}

TEST(Bootstrap, ZeroIdleTimeoutDisables) {
  std::string text = config_with("");
  text.replace(text.find("cluster: c1"), 11, "cluster: c1\n          idle_timeout: 0s");
  const auto r = load_bootstrap_text(text, "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.listeners[0].filter_chains[0].settings->tcp_proxy.idle_timeout.count(), 0);
}

TEST(Bootstrap, DuplicateNamesAndAddresses) {
  std::string text = config_with("");
  const auto start = text.find("  - name: l1");
  const std::string listener = text.substr(start, text.find("  clusters:") - start);
  text.insert(text.find("  clusters:"), listener);
  const auto r = load_bootstrap_text(text, "t.yaml");
  EXPECT_TRUE(has_error(r.diag, "duplicate listener name 'l1'")) << all_errors(r.diag);
  EXPECT_TRUE(has_error(r.diag, "another listener already uses 127.0.0.1:15443")) << all_errors(r.diag);
}


// Endpoint addresses are kept parsed (16 bytes, no string); rendering them gives back the text
// istiod sends (dotted-quad IPv4, canonical IPv6), and other IPv6 spellings come out canonical.
TEST(IpAddress, ParsesNumericLiteralsAndRendersThemCanonically) {
  for (const char* text : {"10.1.2.3", "0.0.0.0", "255.255.255.255", "::1", "2001:db8::7", "::ffff:10.0.0.1", "fe80::1:2"}) {
    const auto a = ip_address::parse(text);
    ASSERT_TRUE(a.has_value()) << text;
    EXPECT_EQ(a->str(), text);
  }
  EXPECT_FALSE(ip_address::parse("10.1.2.3")->ipv6);
  EXPECT_TRUE(ip_address::parse("::1")->ipv6);
  EXPECT_EQ(ip_address::parse("10.1.2.3")->bytes[3], 3);
  EXPECT_EQ(ip_address::parse("2001:DB8:0:0::1")->str(), "2001:db8::1");
  for (const char* text : {"", "istiod.istio-system", "10.1.2", "010.1.2.3", "1.2.3.4:80", "[::1]"}) {
    EXPECT_FALSE(ip_address::parse(text).has_value()) << text;
  }
}

// The decoded endpoints stay in ads_state for as long as their assignment stands (30,000 in a
// 10,000-cluster mesh): no string per address, no padding, the locality one shared reference.
TEST(EndpointConfig, IsCompact) {
  static_assert(sizeof(ip_address) == 17);
  EXPECT_EQ(sizeof(endpoint_config), 32u);
  EXPECT_EQ(sizeof(locality_endpoints_config), 40u);
}

// 10,000 clusters sit in ads_state's in-force vector: the settings istiod sends alike for all of
// them are one shared block (see AdsState.EqualClusterSettingsAreOneBlock), not part of each.
// Three references to the cluster's name block (the name, the EDS service name, the Istio
// services' texts) and 64 bytes of the rest.
TEST(ClusterConfig, IsCompact) { EXPECT_LE(sizeof(cluster_config), 64u + 3 * sizeof(shared_string)); }

// An istiod east-west listener keeps a chain per service (10,000) in ads_state: only the server
// name, the tcp_proxy cluster and stat_prefix (and the chain's name) are the chain's own, the
// rest is one shared block (see FilterChainConfig.EqualSettingsAreOneBlockPerListener).
TEST(FilterChainConfig, IsCompact) {
  EXPECT_LE(sizeof(filter_chain_config), 48u);
  EXPECT_LE(sizeof(server_name_list), sizeof(shared_string) + sizeof(void*));
}

// One server name sits inline (no vector block); more keep their order; copies are deep and
// compare by content; an empty list is empty.
TEST(FilterChainConfig, ServerNameList) {
  server_name_list names;
  EXPECT_TRUE(names.empty());
  EXPECT_EQ(names.begin(), names.end());
  const shared_string a("a.example.com");
  names.push_back(a);
  ASSERT_EQ(names.size(), 1u);
  EXPECT_TRUE(names[0].shares_with(a));
  EXPECT_EQ(names.begin(), names.begin() + 0);  // inline: the list's own storage
  names.push_back("b.example.com");
  names.push_back("*.c.example.com");
  ASSERT_EQ(names.size(), 3u);
  EXPECT_EQ(names[0], "a.example.com");
  EXPECT_TRUE(names[0].shares_with(a));
  EXPECT_EQ(names[1], "b.example.com");
  EXPECT_EQ(names[2], "*.c.example.com");
  server_name_list copy = names;
  EXPECT_TRUE(copy == names);
  EXPECT_NE(copy.begin(), names.begin());
  copy.push_back("d.example.com");
  EXPECT_FALSE(copy == names);
  EXPECT_EQ(names.size(), 3u);
  EXPECT_TRUE((server_name_list{"a.example.com"} == server_name_list{shared_string("a.example.com")}));
  EXPECT_FALSE((server_name_list{"a.example.com"} == server_name_list{"a.example.com", "b.example.com"}));
  names.clear();
  EXPECT_TRUE(names.empty());
  EXPECT_TRUE(names == server_name_list{});
  // A builder's empty name is kept like any other, first or not.
  names.push_back(shared_string());
  EXPECT_EQ(names.size(), 1u);
  names.push_back("a.example.com");
  EXPECT_EQ(names.size(), 2u);
  EXPECT_TRUE(names[0].empty());
  EXPECT_EQ(names[1], "a.example.com");
}

// The same list holds the clusters using an EDS service (ads_state): removal keeps the order, and
// a list back to one name holds it inline again.
TEST(SharedStringList, RemoveKeepsTheOrder) {
  shared_string_list users{"a", "b", "c"};
  EXPECT_TRUE(users.contains("b"));
  users.remove("b");
  EXPECT_FALSE(users.contains("b"));
  EXPECT_TRUE((users == shared_string_list{"a", "c"}));
  users.remove("absent");
  EXPECT_EQ(users.size(), 2u);
  users.remove("a");
  EXPECT_TRUE((users == shared_string_list{"c"}));
  users.push_back("d");
  EXPECT_TRUE((users == shared_string_list{"c", "d"}));
  users.remove("c");
  users.remove("d");
  EXPECT_TRUE(users.empty());
}

// The decoder hands the chains of a listener with equal settings one block, and a chain whose
// settings differ its own (which still shares the equal ALPN list); each chain keeps its server
// names, cluster and stat_prefix. The default chain's match is ignored (listener.proto).
TEST(FilterChainConfig, EqualSettingsAreOneBlockPerListener) {
  auto chain = [](const std::string& name, const std::string& match_extra, const std::string& tcp_proxy_extra) {
    return "    - filter_chain_match: {server_names: [" + name + "]" + match_extra +
           "}\n"
           "      filters: [{name: t, typed_config: {\"@type\": "
           "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: " +
           name + ", cluster: " + name + tcp_proxy_extra + "}}]\n";
  };
  auto cluster = [](const std::string& name) {
    return "  - {name: " + name + ", type: STATIC, load_assignment: {cluster_name: " + name +
           ", endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: "
           "1}}}}]}]}}\n";
  };
  const std::string alpns = ", application_protocols: [istio, istio-peer-exchange]";
  std::string default_chain = chain("c1", alpns, "");
  default_chain.replace(0, 6, "      ");  // a mapping, not a list item
  const std::string text = "static_resources:\n  listeners:\n  - name: l1\n"
                           "    address: {socket_address: {address: 127.0.0.1, port_value: 15443}}\n"
                           "    filter_chains:\n" +
                           chain("a.example.com", "", "") + chain("c1", alpns, "") + chain("c2", alpns, "") +
                           chain("c3", alpns, ", max_connect_attempts: 3") + "    default_filter_chain:\n" +
                           default_chain + "  clusters:\n" + cluster("a.example.com") + cluster("c1") +
                           cluster("c2") + cluster("c3");
  const auto r = load_bootstrap_text(text, "t.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag) << text;
  const listener_config& l = r.config.listeners[0];
  ASSERT_EQ(l.filter_chains.size(), 4u);  // a.example.com, c1, c2, c3
  const filter_chain_config& c1 = l.filter_chains[1];
  const filter_chain_config& c2 = l.filter_chains[2];
  const filter_chain_config& c3 = l.filter_chains[3];
  EXPECT_TRUE(c1.settings.shares_with(c2.settings));
  EXPECT_FALSE(c1.settings.shares_with(c3.settings));
  EXPECT_EQ(c3.settings->tcp_proxy.max_connect_attempts, 3u);
  EXPECT_EQ(c1.settings->tcp_proxy.max_connect_attempts, 1u);
  EXPECT_TRUE(c1.settings->match.application_protocols.shares_with(c3.settings->match.application_protocols));
  EXPECT_FALSE(l.filter_chains[0].settings.shares_with(c1.settings));  // no ALPNs there
  for (const auto* c : {&c1, &c2, &c3}) {
    ASSERT_EQ(c->server_names.size(), 1u);
    EXPECT_EQ(c->server_names[0], c->cluster);
    EXPECT_TRUE(c->server_names[0].shares_with(c->cluster));  // one copy of the name
    EXPECT_TRUE(c->stat_prefix.shares_with(c->cluster));
  }
  EXPECT_EQ(c1.cluster, "c1");
  EXPECT_EQ(c2.cluster, "c2");
  ASSERT_TRUE(l.default_filter_chain);
  EXPECT_TRUE(l.default_filter_chain->server_names.empty());
  EXPECT_TRUE(l.default_filter_chain->settings->match.application_protocols.empty());
  EXPECT_EQ(l.default_filter_chain->cluster, "c1");
}

}  // namespace
}  // namespace ewgw::xds
