// Proto-facing decode helpers shared inside xds/ (the bootstrap loader and the ADS client).
// Not for use outside xds/: it exposes generated protobuf types.
#pragma once

#include <initializer_list>
#include <string>
#include <string_view>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "xds/config.h"
#include "xds/decode.h"

namespace ewgw::xds {

void decode_listener(const envoy::config::listener::v3::Listener& l, const std::string& path, diagnostics& diag,
                     listener_config& out);
void decode_cluster(const envoy::config::cluster::v3::Cluster& c, const std::string& path, diagnostics& diag,
                    cluster_config& out);
// `keep_transport_socket_match`: keep each endpoint's envoy.transport_socket_match metadata
// (for clusters with transport_socket_matches; dropped otherwise to save memory).
void decode_load_assignment(const envoy::config::endpoint::v3::ClusterLoadAssignment& cla, const std::string& path,
                            diagnostics& diag, load_assignment_config& out, bool keep_transport_socket_match = false);
void decode_outlier_detection(const envoy::config::cluster::v3::OutlierDetection& od, const std::string& path,
                              diagnostics& diag, outlier_detection_config& out);

// A cluster received over CDS. Settings ewgw does not implement do not make it invalid: it is
// accepted as unusable (out.unsupported says why) so that one such cluster (Istio sends many,
// e.g. outbound|port||host clusters with transport_socket_matches) cannot freeze every CDS
// update. Returns false, with errors in `diag`, only when the resource is invalid.
bool decode_dynamic_cluster(const envoy::config::cluster::v3::Cluster& c, const std::string& path, diagnostics& diag,
                            cluster_config& out);

// A listener received over LDS, likewise: one using network or listener filters (or chain
// settings) ewgw does not implement is accepted as unusable (out.unsupported says why; its
// chains are dropped) so that the rest of the LDS update applies. It is never bound.
bool decode_dynamic_listener(const envoy::config::listener::v3::Listener& l, const std::string& path,
                             diagnostics& diag, listener_config& out);

// dynamic_resources and, for envoy_grpc, the static cluster leading to the control plane
// (decode_ads.cc). Sets out.ads.
void decode_dynamic_resources(const envoy::config::bootstrap::v3::Bootstrap& b, diagnostics& diag,
                              bootstrap_config& out);

// node.metadata as JSON ("" when unset).
std::string node_metadata_json(const envoy::config::bootstrap::v3::Bootstrap& b);

namespace internal {

std::string join(const std::string& path, std::string_view field);
std::string index(const std::string& path, std::size_t i);
// Reports every field set on `msg` that is in neither list: as an error (unsupported, would
// change routing) or, for `ignored`, as a notice.
void check_fields(const google::protobuf::Message& msg, std::initializer_list<std::string_view> applied,
                  std::initializer_list<std::string_view> ignored, const std::string& path, diagnostics& diag);
bool is_ip_literal(const std::string& s);
bool valid_server_name_pattern(std::string_view name);
bool is_telemetry_filter(std::string_view name, std::string_view type_url);
bool decode_duration(const google::protobuf::Duration& d, const std::string& path, diagnostics& diag, milliseconds& out);

}  // namespace internal
}  // namespace ewgw::xds
