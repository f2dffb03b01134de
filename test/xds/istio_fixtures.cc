#include "test/xds/istio_fixtures.h"

#include <google/protobuf/struct.pb.h>

#include "envoy/extensions/filters/listener/tls_inspector/v3/tls_inspector.pb.h"
#include "envoy/extensions/filters/network/tcp_proxy/v3/tcp_proxy.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"

namespace ewgw::test::istio {

namespace cluster_v3 = envoy::config::cluster::v3;
namespace endpoint_v3 = envoy::config::endpoint::v3;
namespace listener_v3 = envoy::config::listener::v3;
namespace core_v3 = envoy::config::core::v3;
namespace pb = google::protobuf;

namespace {

const char* const istio_alpns[] = {"istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"};

void set_string(pb::Struct& s, const std::string& k, const std::string& v) { (*s.mutable_fields())[k].set_string_value(v); }

void ads_source(core_v3::ConfigSource& src) {
  src.mutable_ads();
  src.set_resource_api_version(core_v3::V3);
  src.mutable_initial_fetch_timeout()->set_seconds(0);
}

listener_v3::Filter tcp_proxy_filter(const std::string& stat_prefix, const std::string& cluster) {
  envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy tp;
  tp.set_stat_prefix(stat_prefix);
  tp.set_cluster(cluster);
  tp.mutable_idle_timeout()->set_seconds(3600);
  listener_v3::Filter f;
  f.set_name("envoy.filters.network.tcp_proxy");
  f.mutable_typed_config()->PackFrom(tp);
  return f;
}

// istio.stats as istiod sends it: an Any of a type ewgw's proto pool does not know.
listener_v3::Filter istio_stats_filter() {
  pb::Struct config;
  set_string(config, "disable_host_header_fallback", "true");
  listener_v3::Filter f;
  f.set_name("istio.stats");
  f.mutable_typed_config()->set_type_url("type.googleapis.com/stats.PluginConfig");
  f.mutable_typed_config()->set_value(config.SerializeAsString());
  return f;
}

}  // namespace

std::string sni_name(const std::string& host, std::uint16_t port, const std::string& subset) {
  return "outbound_." + std::to_string(port) + "_." + subset + "_." + host;
}

cluster_v3::Cluster sni_dnat_cluster(const std::string& name, const std::string& host) {
  cluster_v3::Cluster c;
  c.set_name(name);
  c.set_type(cluster_v3::Cluster::EDS);
  auto* eds = c.mutable_eds_cluster_config();
  ads_source(*eds->mutable_eds_config());
  eds->set_service_name(name);
  c.mutable_connect_timeout()->set_seconds(10);
  c.set_lb_policy(cluster_v3::Cluster::LEAST_REQUEST);
  auto* t = c.mutable_circuit_breakers()->add_thresholds();
  t->mutable_max_connections()->set_value(4294967295u);
  t->mutable_max_pending_requests()->set_value(4294967295u);
  t->mutable_max_requests()->set_value(4294967295u);
  t->mutable_max_retries()->set_value(4294967295u);
  t->set_track_remaining(true);
  c.mutable_common_lb_config()->mutable_locality_weighted_lb_config();
  pb::Struct istio;
  pb::Struct service;
  if (host.empty()) {
    set_string(service, "host", name);
    set_string(service, "name", "svc");
    set_string(service, "namespace", "ns");
  } else {
    // As istiod fills it for a Kubernetes service: host NAME.NAMESPACE.svc.<domain>.
    const auto dot = host.find('.');
    const auto next = host.find('.', dot == std::string::npos ? dot : dot + 1);
    set_string(service, "host", host);
    set_string(service, "name", host.substr(0, dot));
    set_string(service, "namespace", dot == std::string::npos ? "" : host.substr(dot + 1, next - dot - 1));
  }
  *(*istio.mutable_fields())["services"].mutable_list_value()->add_values()->mutable_struct_value() = service;
  set_string(istio, "default_original_port", "5000");
  (*c.mutable_metadata()->mutable_filter_metadata())["istio"] = istio;
  return c;
}

cluster_v3::Cluster outbound_cluster(const std::string& host, std::uint16_t port) {
  const std::string name = "outbound|" + std::to_string(port) + "||" + host;
  cluster_v3::Cluster c;
  c.set_name(name);
  c.set_type(cluster_v3::Cluster::EDS);
  auto* eds = c.mutable_eds_cluster_config();
  ads_source(*eds->mutable_eds_config());
  eds->set_service_name(name);
  c.mutable_connect_timeout()->set_seconds(10);
  c.set_lb_policy(cluster_v3::Cluster::LEAST_REQUEST);
  c.mutable_circuit_breakers()->add_thresholds()->mutable_max_connections()->set_value(4294967295u);
  auto* od = c.mutable_outlier_detection();
  od->mutable_consecutive_5xx()->set_value(0);
  od->mutable_consecutive_gateway_failure()->set_value(5);
  od->mutable_enforcing_consecutive_gateway_failure()->set_value(100);
  od->mutable_interval()->set_seconds(10);
  od->mutable_base_ejection_time()->set_seconds(30);
  od->mutable_max_ejection_percent()->set_value(100);
  // tlsMode istio -> Istio mutual TLS; otherwise plaintext (Istio's auto mTLS).
  envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext tls;
  tls.set_sni(name);
  tls.mutable_common_tls_context()->add_alpn_protocols("istio-peer-exchange");
  tls.mutable_common_tls_context()->add_alpn_protocols("istio");
  auto* m = c.add_transport_socket_matches();
  m->set_name("tlsMode-istio");
  set_string(*m->mutable_match(), "tlsMode", "istio");
  m->mutable_transport_socket()->set_name("envoy.transport_sockets.tls");
  m->mutable_transport_socket()->mutable_typed_config()->PackFrom(tls);
  auto* plain = c.add_transport_socket_matches();
  plain->set_name("tlsMode-disabled");
  plain->mutable_transport_socket()->set_name("envoy.transport_sockets.raw_buffer");
  return c;
}

cluster_v3::Cluster dns_cluster(const std::string& host, std::uint16_t port) {
  cluster_v3::Cluster c;
  c.set_name("outbound|" + std::to_string(port) + "||" + host);
  c.set_type(cluster_v3::Cluster::STRICT_DNS);
  c.mutable_connect_timeout()->set_seconds(10);
  c.set_dns_lookup_family(cluster_v3::Cluster::V4_ONLY);
  c.set_respect_dns_ttl(true);
  auto* cla = c.mutable_load_assignment();
  cla->set_cluster_name(c.name());
  auto* sa = cla->add_endpoints()->add_lb_endpoints()->mutable_endpoint()->mutable_address()->mutable_socket_address();
  sa->set_address(host);
  sa->set_port_value(port);
  return c;
}

endpoint_v3::ClusterLoadAssignment assignment(const std::string& name, const std::vector<locality_spec>& localities) {
  endpoint_v3::ClusterLoadAssignment cla;
  cla.set_cluster_name(name);
  for (const auto& l : localities) {
    auto* le = cla.add_endpoints();
    le->mutable_locality()->set_region(l.region);
    le->mutable_locality()->set_zone(l.zone);
    le->mutable_locality()->set_sub_zone(l.sub_zone);
    le->set_priority(l.priority);
    le->mutable_load_balancing_weight()->set_value(l.weight);
    for (const auto& e : l.endpoints) {
      auto* lbe = le->add_lb_endpoints();
      auto* sa = lbe->mutable_endpoint()->mutable_address()->mutable_socket_address();
      sa->set_address(e.ip);
      sa->set_port_value(e.port);
      lbe->set_health_status(e.healthy ? core_v3::HEALTHY : core_v3::UNHEALTHY);
      lbe->mutable_load_balancing_weight()->set_value(e.weight);
      auto& fm = *lbe->mutable_metadata()->mutable_filter_metadata();
      if (!e.tls_mode.empty()) set_string(fm["envoy.transport_socket_match"], "tlsMode", e.tls_mode);
      set_string(fm["istio"], "workload", "helloworld-v1;sample;helloworld;v1;cluster1");
    }
  }
  return cla;
}

endpoint_v3::ClusterLoadAssignment local_assignment(const std::string& name, const std::vector<std::uint16_t>& ports) {
  locality_spec l;
  for (auto p : ports) l.endpoints.push_back({"127.0.0.1", p, 1, true});
  return assignment(name, {l});
}

listener_v3::Listener gateway_listener(std::uint16_t port, const std::vector<chain_spec>& chains, const std::string& name) {
  listener_v3::Listener l;
  l.set_name(name);
  auto* sa = l.mutable_address()->mutable_socket_address();
  sa->set_address("127.0.0.1");
  sa->set_port_value(port);
  auto* lf = l.add_listener_filters();
  lf->set_name("envoy.filters.listener.tls_inspector");
  envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector ti;
  ti.mutable_initial_read_buffer_size()->set_value(512);
  lf->mutable_typed_config()->PackFrom(ti);
  l.set_traffic_direction(core_v3::OUTBOUND);
  for (const auto& c : chains) {
    auto* fc = l.add_filter_chains();
    fc->mutable_filter_chain_match()->add_server_names(c.sni);
    for (const char* a : istio_alpns) fc->mutable_filter_chain_match()->add_application_protocols(a);
    fc->mutable_transport_socket_connect_timeout()->set_seconds(15);
    *fc->add_filters() = istio_stats_filter();
    *fc->add_filters() = tcp_proxy_filter(c.sni, c.cluster.empty() ? c.sni : c.cluster);
  }
  return l;
}

listener_v3::Listener passthrough_listener(const std::string& name, std::uint16_t port, const std::string& cluster) {
  listener_v3::Listener l;
  l.set_name(name);
  auto* sa = l.mutable_address()->mutable_socket_address();
  sa->set_address("127.0.0.1");
  sa->set_port_value(port);
  l.set_traffic_direction(core_v3::OUTBOUND);
  auto* fc = l.add_filter_chains();
  *fc->add_filters() = istio_stats_filter();
  *fc->add_filters() = tcp_proxy_filter(cluster, cluster);
  return l;
}

}  // namespace ewgw::test::istio
