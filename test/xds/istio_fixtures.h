// xDS resources shaped like what istiod sends an east-west gateway (AUTO_PASSTHROUGH on 15443,
// plus istiod's own 15012/15017 exposed through it): see ../shared/docs/ISTIO-FACTS.md and
// istio's pilot/pkg/networking/core (cluster_builder.go, gateway listeners, endpoint_builder).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"

namespace ewgw::test::istio {

// "outbound_.<port>_.<subset>_.<host>" (DNS-SRV form used as SNI and cluster name).
std::string sni_name(const std::string& host, std::uint16_t port, const std::string& subset = "");

// An SNI-DNAT cluster: EDS over ADS (service_name = name), connect_timeout 10s, LEAST_REQUEST,
// circuit breakers at 2^32-1 with track_remaining, istio filter metadata.
envoy::config::cluster::v3::Cluster sni_dnat_cluster(const std::string& name, const std::string& host = "");

// An ordinary outbound|port||host cluster as istiod sends it to every proxy: EDS with
// transport_socket_matches (auto mTLS: tlsMode istio -> Istio mTLS, else plaintext) and
// outlier_detection. AUTO_PASSTHROUGH never routes to it, but the listeners exposing istiod
// (15012, 15017) do: istiod's endpoints have no sidecar, so they are plaintext.
envoy::config::cluster::v3::Cluster outbound_cluster(const std::string& host, std::uint16_t port);

// A ServiceEntry with DNS resolution: a STRICT_DNS cluster with host names, which ewgw does not
// implement (accepted over xDS as unusable).
envoy::config::cluster::v3::Cluster dns_cluster(const std::string& host, std::uint16_t port);

struct endpoint_spec {
  std::string ip = "127.0.0.1";
  std::uint16_t port = 0;
  std::uint32_t weight = 1;
  bool healthy = true;
  // envoy.transport_socket_match metadata tlsMode: "istio" for a workload with a sidecar, ""
  // for none (e.g. istiod).
  std::string tls_mode = "istio";
};

struct locality_spec {
  std::string region = "us-east1";
  std::string zone = "us-east1-b";
  std::string sub_zone;
  std::uint32_t priority = 0;
  std::uint32_t weight = 1;
  std::vector<endpoint_spec> endpoints;
};

// A ClusterLoadAssignment grouped by locality with priorities, weights, health and Istio's
// endpoint metadata (envoy.transport_socket_match tlsMode, istio workload).
envoy::config::endpoint::v3::ClusterLoadAssignment assignment(const std::string& name,
                                                              const std::vector<locality_spec>& localities);
// One locality, one priority, endpoints on 127.0.0.1 at `ports`.
envoy::config::endpoint::v3::ClusterLoadAssignment local_assignment(const std::string& name,
                                                                    const std::vector<std::uint16_t>& ports);

struct chain_spec {
  std::string sni;      // server_names entry (the DNS-SRV name)
  std::string cluster;  // tcp_proxy cluster; empty: same as sni
};

// The 15443 listener: tls_inspector, one chain per service port with server_names and the five
// Istio ALPNs, istio.stats (type.googleapis.com/stats.PluginConfig, unknown to ewgw's protos)
// then tcp_proxy. Bound to 127.0.0.1:`port`.
envoy::config::listener::v3::Listener gateway_listener(std::uint16_t port, const std::vector<chain_spec>& chains,
                                                       const std::string& name = "0.0.0.0_15443");

// istiod exposed through the gateway (15012 xDS/CA, 15017 webhook): one chain with no
// filter_chain_match, tcp_proxy to a fixed cluster.
envoy::config::listener::v3::Listener passthrough_listener(const std::string& name, std::uint16_t port,
                                                           const std::string& cluster);

}  // namespace ewgw::test::istio
