// dynamic_resources in a bootstrap (google_grpc and envoy_grpc forms, TLS, call credentials,
// initial metadata) and Istio mode's bootstrap built from a gateway pod's environment.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <unistd.h>
#include <string>

#include "xds/decode.h"
#include "xds/istio_bootstrap.h"

namespace ewgw::xds {
namespace {

std::string all_errors(const diagnostics& d) {
  std::string s;
  for (const auto& e : d.errors) s += e + "\n";
  return s;
}

bool has(const std::vector<std::string>& v, const std::string& needle) {
  return std::any_of(v.begin(), v.end(), [&](const std::string& e) { return e.find(needle) != std::string::npos; });
}

const char* google_grpc_bootstrap = R"(
node: {id: "router~10.0.0.1~gw.istio-system~istio-system.svc.cluster.local", cluster: gw, metadata: {CLUSTER_ID: c1}}
dynamic_resources:
  ads_config:
    api_type: DELTA_GRPC
    transport_api_version: V3
    set_node_on_first_message_only: true
    grpc_services:
    - google_grpc:
        target_uri: istiod.istio-system.svc:15012
        stat_prefix: xds-grpc
        channel_credentials: {ssl_credentials: {root_certs: {filename: /var/run/secrets/istio/root-cert.pem}}}
        channel_args: {args: {grpc.ssl_target_name_override: {string_value: istiod.istio-system.svc}}}
        call_credentials:
        - from_plugin:
            name: envoy.grpc_credentials.file_based_metadata
            typed_config:
              "@type": type.googleapis.com/envoy.config.grpc_credential.v3.FileBasedMetadataConfig
              secret_data: {filename: /var/run/secrets/tokens/istio-token}
              header_key: authorization
              header_prefix: "Bearer "
      initial_metadata: [{key: ClusterID, value: c1}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
)";

TEST(AdsBootstrap, GoogleGrpcWithTlsTokenAndMetadata) {
  const auto r = load_bootstrap_text(google_grpc_bootstrap, "b.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  ASSERT_TRUE(r.config.ads);
  const ads_config& a = *r.config.ads;
  EXPECT_EQ(a.api, xds_api::delta);
  EXPECT_EQ(a.target, "istiod.istio-system.svc:15012");
  EXPECT_TRUE(a.tls);
  EXPECT_EQ(a.root_cert_file, "/var/run/secrets/istio/root-cert.pem");
  EXPECT_EQ(a.server_name, "istiod.istio-system.svc");
  EXPECT_EQ(a.token_file, "/var/run/secrets/tokens/istio-token");
  EXPECT_EQ(a.token_header, "authorization");
  EXPECT_EQ(a.token_prefix, "Bearer ");
  ASSERT_EQ(a.initial_metadata.size(), 1u);
  EXPECT_EQ(a.initial_metadata[0].key, "clusterid");  // HTTP/2 names are lower-case
  EXPECT_EQ(a.initial_metadata[0].value, "c1");
  EXPECT_TRUE(a.node_on_first_message_only);
  EXPECT_TRUE(a.cds);
  EXPECT_TRUE(a.lds);
  EXPECT_NE(r.config.node.metadata_json.find("\"CLUSTER_ID\":\"c1\""), std::string::npos) << r.config.node.metadata_json;
}

TEST(AdsBootstrap, EnvoyGrpcClusterLeadsToTheControlPlaneAndIsNotRouted) {
  const auto r = load_bootstrap_text(R"(
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]
  cds_config: {ads: {}}
  lds_config: {ads: {}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STRICT_DNS
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/xds.type.v3.TypedStruct
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: istiod.istio-system.svc, port_value: 15012}}}}]}]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: istiod.istio-system.svc
        common_tls_context:
          validation_context: {trusted_ca: {filename: /etc/root.pem}}
  - name: eds-backed
    type: EDS
    eds_cluster_config: {eds_config: {ads: {}}, service_name: svc}
)",
                                     "b.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  const ads_config& a = *r.config.ads;
  EXPECT_EQ(a.api, xds_api::sotw);
  EXPECT_EQ(a.target, "istiod.istio-system.svc:15012");
  EXPECT_TRUE(a.tls);
  EXPECT_EQ(a.root_cert_file, "/etc/root.pem");
  EXPECT_EQ(a.server_name, "istiod.istio-system.svc");
  EXPECT_EQ(a.control_plane_cluster, "xds-grpc");
  // Only the EDS cluster is a routing target; it is allowed because an ADS server is configured.
  ASSERT_EQ(r.config.clusters.size(), 1u);
  EXPECT_EQ(r.config.clusters[0].name, "eds-backed");
  EXPECT_EQ(r.config.clusters[0].eds_service_name, "svc");
}

// mTLS to istiod: a client certificate in either form of the ADS transport.
TEST(AdsBootstrap, ClientCertificateTowardsTheControlPlane) {
  const auto google = load_bootstrap_text(R"(
dynamic_resources:
  ads_config:
    api_type: GRPC
    grpc_services:
    - google_grpc:
        target_uri: istiod.istio-system.svc:15012
        stat_prefix: x
        channel_credentials:
          ssl_credentials:
            root_certs: {filename: /etc/certs/root-cert.pem}
            cert_chain: {filename: /etc/certs/cert-chain.pem}
            private_key: {filename: /etc/certs/key.pem}
  cds_config: {ads: {}}
)",
                                          "b.yaml");
  ASSERT_TRUE(google.diag.ok()) << all_errors(google.diag);
  EXPECT_EQ(google.config.ads->client_cert_chain_file, "/etc/certs/cert-chain.pem");
  EXPECT_EQ(google.config.ads->client_private_key_file, "/etc/certs/key.pem");

  const auto envoy = load_bootstrap_text(R"(
dynamic_resources:
  ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]}
  cds_config: {ads: {}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    load_assignment:
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.2, port_value: 15012}}}}]}]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: istiod.istio-system.svc
        common_tls_context:
          tls_certificates:
          - certificate_chain: {filename: /etc/certs/cert-chain.pem}
            private_key: {filename: /etc/certs/key.pem}
          validation_context: {trusted_ca: {filename: /etc/certs/root-cert.pem}}
)",
                                         "b.yaml");
  ASSERT_TRUE(envoy.diag.ok()) << all_errors(envoy.diag);
  EXPECT_EQ(envoy.config.ads->client_cert_chain_file, "/etc/certs/cert-chain.pem");
  EXPECT_EQ(envoy.config.ads->client_private_key_file, "/etc/certs/key.pem");
  EXPECT_EQ(envoy.config.ads->root_cert_file, "/etc/certs/root-cert.pem");

  // A certificate without its key is an error naming the field.
  const auto half = load_bootstrap_text(R"(
dynamic_resources:
  ads_config:
    api_type: GRPC
    grpc_services:
    - google_grpc:
        target_uri: istiod.istio-system.svc:15012
        stat_prefix: x
        channel_credentials: {ssl_credentials: {cert_chain: {filename: /etc/certs/cert-chain.pem}}}
  cds_config: {ads: {}}
)",
                                        "b.yaml");
  EXPECT_TRUE(has(half.diag.errors, "ssl_credentials: cert_chain and private_key go together")) << all_errors(half.diag);
}

TEST(AdsBootstrap, StaticListenerMayNameAClusterExpectedOverCds) {
  const auto r = load_bootstrap_text(R"(
dynamic_resources:
  ads_config: {api_type: GRPC, grpc_services: [{google_grpc: {target_uri: "127.0.0.1:15010", stat_prefix: x}}]}
  cds_config: {ads: {}}
static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters: [{name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, cluster: from-cds}}]
)",
                                     "b.yaml");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_TRUE(has(r.diag.notices, "names cluster 'from-cds', which is not defined statically; it is expected over CDS"));
  EXPECT_FALSE(r.config.ads->tls);
  EXPECT_FALSE(r.config.ads->lds);
}

TEST(AdsBootstrap, Errors) {
  auto errors = [](const std::string& dynamic) {
    return load_bootstrap_text("dynamic_resources:\n" + dynamic, "b.yaml").diag.errors;
  };
  EXPECT_TRUE(has(errors("  ads_config: {api_type: REST, grpc_services: [{google_grpc: {target_uri: x, stat_prefix: x}}]}\n"
                         "  cds_config: {ads: {}}\n"),
                  "dynamic_resources.ads_config.api_type: REST is not supported; use GRPC or DELTA_GRPC"));
  EXPECT_TRUE(has(errors("  ads_config: {api_type: GRPC}\n  cds_config: {ads: {}}\n"),
                  "dynamic_resources.ads_config.grpc_services: exactly one gRPC service is supported (0 given)"));
  EXPECT_TRUE(has(errors("  ads_config: {api_type: GRPC, grpc_services: [{google_grpc: {target_uri: x, stat_prefix: x}}]}\n"
                         "  cds_config: {path: /etc/cds.yaml}\n"),
                  "dynamic_resources.cds_config: only 'ads: {}' is supported"));
  EXPECT_TRUE(has(errors("  cds_config: {ads: {}}\n"), "dynamic_resources: needs ads_config"));
  EXPECT_TRUE(has(errors("  ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: nope}}]}\n"
                         "  cds_config: {ads: {}}\n"),
                  "envoy_grpc.cluster_name: names cluster 'nope', which is not a static cluster"));
  EXPECT_TRUE(has(errors("  ads_config: {api_type: GRPC, grpc_services: [{google_grpc: {target_uri: x, stat_prefix: x, "
                         "channel_credentials: {ssl_credentials: {root_certs: {inline_string: abc}}}}}]}\n"
                         "  cds_config: {ads: {}}\n"),
                  "root_certs: only 'filename' is supported"));
  // Without an ADS server an EDS cluster still cannot work; the static bootstrap's rules stand.
  const auto r = load_bootstrap_text(R"(
static_resources:
  clusters:
  - name: e
    type: EDS
    eds_cluster_config: {eds_config: {ads: {}}}
  - name: o
    outlier_detection: {consecutive_5xx: 3}
    load_assignment: {cluster_name: o}
)",
                                     "b.yaml");
  EXPECT_TRUE(has(r.diag.errors, "an EDS cluster needs an xDS control plane"));
  // outlier_detection is applied (lb/ outlier detection), in a static bootstrap too.
  EXPECT_FALSE(has(r.diag.errors, "outlier_detection"));
}

// ---- Istio mode ---------------------------------------------------------------------------

istio_environment gateway_pod_env() {
  istio_environment e;
  e.env = {
      {"POD_NAME", "istio-eastwestgateway-7d4f9c-abcde"},
      {"POD_NAMESPACE", "istio-system"},
      {"INSTANCE_IP", "10.244.1.7"},
      {"SERVICE_ACCOUNT", "istio-eastwestgateway-service-account"},
      {"ISTIO_META_CLUSTER_ID", "cluster2"},
      {"ISTIO_META_NETWORK", "network2"},
      {"ISTIO_META_REQUESTED_NETWORK_VIEW", "network1,network2"},
      {"ISTIO_META_ROUTER_MODE", "sni-dnat"},
      {"ISTIO_META_WORKLOAD_NAME", "istio-eastwestgateway"},
      {"ISTIO_META_MESH_ID", "mesh1"},
      {"ISTIO_METAJSON_LABELS", R"({"istio":"eastwestgateway","app":"istio-eastwestgateway","topology.istio.io/network":"network2"})"},
      {"PROXY_CONFIG", R"({"discoveryAddress":"istiod.istio-system.svc:15012","proxyMetadata":{"ISTIO_META_DNS_CAPTURE":"true"}})"},
      {"UNRELATED", "x"},
  };
  e.labels_file = "/nonexistent/labels";
  e.namespace_file = "/nonexistent/namespace";
  e.hostname = "host";
  return e;
}

TEST(IstioBootstrap, NodeIdentityMetadataAndServerFromTheEnvironment) {
  const auto built = build_istio_bootstrap(gateway_pod_env());
  ASSERT_TRUE(built.errors.empty()) << built.errors[0];
  const auto r = load_bootstrap_text(built.json, "istio-bootstrap");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag) << built.json;
  const bootstrap_config& c = r.config;
  EXPECT_EQ(c.node.id, "router~10.244.1.7~istio-eastwestgateway-7d4f9c-abcde.istio-system~istio-system.svc.cluster.local");
  EXPECT_EQ(c.node.cluster, "istio-eastwestgateway.istio-system");
  const std::string& md = c.node.metadata_json;
  for (const char* want :
       {R"("CLUSTER_ID":"cluster2")", R"("NETWORK":"network2")", R"("REQUESTED_NETWORK_VIEW":"network1,network2")",
        R"("ROUTER_MODE":"sni-dnat")", R"("MESH_ID":"mesh1")", R"("NAMESPACE":"istio-system")",
        R"("NAME":"istio-eastwestgateway-7d4f9c-abcde")", R"("INSTANCE_IPS":"10.244.1.7")",
        R"("SERVICE_ACCOUNT":"istio-eastwestgateway-service-account")", R"("istio":"eastwestgateway")",
        R"("DNS_CAPTURE":"true")", R"("WORKLOAD_NAME":"istio-eastwestgateway")"}) {
    EXPECT_NE(md.find(want), std::string::npos) << want << " in " << md;
  }
  EXPECT_EQ(md.find("UNRELATED"), std::string::npos);
  ASSERT_TRUE(c.ads);
  EXPECT_EQ(c.ads->api, xds_api::delta);
  EXPECT_EQ(c.ads->target, "istiod.istio-system.svc:15012");
  EXPECT_TRUE(c.ads->tls);
  EXPECT_EQ(c.ads->root_cert_file, "/var/run/secrets/istio/root-cert.pem");
  EXPECT_EQ(c.ads->token_file, "/var/run/secrets/tokens/istio-token");
  EXPECT_EQ(c.ads->token_prefix, "Bearer ");
  EXPECT_TRUE(c.ads->node_on_first_message_only);
  ASSERT_EQ(c.ads->initial_metadata.size(), 1u);
  EXPECT_EQ(c.ads->initial_metadata[0].key, "clusterid");
  EXPECT_EQ(c.ads->initial_metadata[0].value, "cluster2");
  EXPECT_TRUE(c.listeners.empty());
  EXPECT_TRUE(c.clusters.empty());
  ASSERT_TRUE(c.admin_address);
  EXPECT_EQ(c.admin_address->port, 15000);
}

TEST(IstioBootstrap, OverridesAndDefaults) {
  auto e = gateway_pod_env();
  e.env["PILOT_ADDRESS"] = "10.96.0.10:15012";
  e.env["ISTIO_DELTA_XDS"] = "false";
  e.env["XDS_ROOT_CA"] = "/etc/certs/root.pem";
  e.env["EWGW_XDS_TOKEN_PATH"] = "/tmp/token";
  auto r = load_bootstrap_text(build_istio_bootstrap(e).json, "istio-bootstrap");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.ads->api, xds_api::sotw);
  EXPECT_EQ(r.config.ads->target, "10.96.0.10:15012");
  EXPECT_EQ(r.config.ads->server_name, "istiod.istio-system.svc");  // an IP has no name to verify
  EXPECT_EQ(r.config.ads->root_cert_file, "/etc/certs/root.pem");
  EXPECT_EQ(r.config.ads->token_file, "/tmp/token");

  // 15010 is plaintext: no TLS and no token.
  e.env["PILOT_ADDRESS"] = "istiod.istio-system.svc:15010";
  r = load_bootstrap_text(build_istio_bootstrap(e).json, "istio-bootstrap");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_FALSE(r.config.ads->tls);
  EXPECT_TRUE(r.config.ads->token_file.empty());

  // Nothing set: defaults, reported as notices.
  istio_environment bare;
  bare.hostname = "gw-pod";
  bare.interface_ips = {"192.168.1.5"};
  bare.labels_file = "/nonexistent";
  bare.namespace_file = "/nonexistent";
  const auto built = build_istio_bootstrap(bare);
  ASSERT_TRUE(built.errors.empty());
  EXPECT_TRUE(has(built.notices, "POD_NAME unset; using the host name 'gw-pod'"));
  r = load_bootstrap_text(built.json, "istio-bootstrap");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.node.id, "router~192.168.1.5~gw-pod.istio-system~istio-system.svc.cluster.local");
  EXPECT_EQ(r.config.ads->target, "istiod.istio-system.svc:15012");
  EXPECT_EQ(r.config.ads->initial_metadata[0].value, "Kubernetes");

  e.env["PROXY_CONFIG"] = "{not json";
  EXPECT_TRUE(has(build_istio_bootstrap(e).errors, "PROXY_CONFIG: not a JSON object"));
}

// PROV_CERT names a directory of provisioned certificates (pilot-agent's variable): its
// cert-chain.pem and key.pem become the client certificate towards istiod. The handshake itself
// with such a pair is tested against the real control plane in ads_client_test.
TEST(IstioBootstrap, ProvisionedClientCertificate) {
  const auto dir = std::filesystem::temp_directory_path() / ("ewgw-prov-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "cert-chain.pem") << "chain";
  auto e = gateway_pod_env();
  e.env["PROV_CERT"] = dir.string() + "/";

  // key.pem missing: refused, naming the file.
  auto built = build_istio_bootstrap(e);
  EXPECT_TRUE(has(built.errors, "PROV_CERT: cannot read " + (dir / "key.pem").string() + ": No such file or directory"))
      << (built.errors.empty() ? "no error" : built.errors[0]);

  std::ofstream(dir / "key.pem") << "key";
  built = build_istio_bootstrap(e);
  ASSERT_TRUE(built.errors.empty()) << built.errors[0];
  auto r = load_bootstrap_text(built.json, "istio-bootstrap");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.ads->client_cert_chain_file, (dir / "cert-chain.pem").string());
  EXPECT_EQ(r.config.ads->client_private_key_file, (dir / "key.pem").string());
  EXPECT_EQ(r.config.ads->root_cert_file, "/var/run/secrets/istio/root-cert.pem");

  // Over plaintext there is nothing to present it in: ignored, and said so.
  e.env["PILOT_ADDRESS"] = "istiod.istio-system.svc:15010";
  built = build_istio_bootstrap(e);
  EXPECT_TRUE(has(built.notices, "PROV_CERT ignored: xDS is plaintext, there is no TLS to present it in"));
  r = load_bootstrap_text(built.json, "istio-bootstrap");
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_TRUE(r.config.ads->client_cert_chain_file.empty());
  std::filesystem::remove_all(dir);
}

TEST(IstioBootstrap, LabelsFileAndLocality) {
  const auto dir = std::filesystem::temp_directory_path() / ("ewgw-labels-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::ofstream(dir / "labels") << "app=\"istio-eastwestgateway\"\nistio=\"eastwestgateway\"\npod-template-hash=\"abc\"\n"
                                   "topology.kubernetes.io/region=\"us-east1\"\ntopology.kubernetes.io/zone=\"us-east1-b\"\n";
  auto e = gateway_pod_env();
  e.env.erase("ISTIO_METAJSON_LABELS");
  e.labels_file = (dir / "labels").string();
  const auto r = load_bootstrap_text(build_istio_bootstrap(e).json, "istio-bootstrap");
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(r.diag.ok()) << all_errors(r.diag);
  EXPECT_EQ(r.config.node.where.region, "us-east1");
  EXPECT_EQ(r.config.node.where.zone, "us-east1-b");
  EXPECT_NE(r.config.node.metadata_json.find(R"("istio":"eastwestgateway")"), std::string::npos);
  EXPECT_EQ(r.config.node.metadata_json.find("pod-template-hash"), std::string::npos);
}

}  // namespace
}  // namespace ewgw::xds
