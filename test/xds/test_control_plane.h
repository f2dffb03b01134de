// A real xDS control plane for tests and the demo: a gRPC server on 127.0.0.1 serving
// envoy.service.discovery.v3.AggregatedDiscoveryService (both StreamAggregatedResources and
// DeltaAggregatedResources) from the official protos, behaving the way istiod does
// (pilot/pkg/xds/ads.go, delta.go):
//
//   - every response has a fresh nonce; SotW responses carry version_info "v<generation>",
//     Delta resources carry a version that is a hash of their bytes;
//   - a request carrying error_detail is a NACK: recorded, never answered;
//   - a request whose response_nonce is not the last one sent for its type is stale: ignored;
//   - a SotW request repeating the subscribed names is an ACK; one with new names is answered;
//     a Delta request is answered when its subscriptions change (or on the first request of a
//     type, where initial_resource_versions tell what the client holds: resources it holds
//     that no longer exist are sent as removed_resources);
//   - a push (after the resources change) goes to every stream in the order CDS, EDS, LDS;
//     SotW sends every cluster and listener and the subscribed assignments, Delta sends what
//     changed and what was removed;
//   - after a Delta CDS request, EDS is pushed too (istiod's forceEDSPush).
//
// Test controls: optional TLS (server certificate), an optional required bearer token (wrong
// or missing: UNAUTHENTICATED, as istiod), closing streams on demand or after a maximum age
// (istiod: ~30 min), stop and restart on the same port, and a record of ACKs, NACKs, stream
// metadata and the node.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"

namespace ewgw::test {

inline constexpr const char* cluster_type = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
inline constexpr const char* endpoint_type = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
inline constexpr const char* listener_type = "type.googleapis.com/envoy.config.listener.v3.Listener";

struct control_plane_options {
  std::uint16_t port = 0;  // 0: an ephemeral port, kept across stop()/start()
  bool tls = false;
  std::string cert_chain;  // PEM, leaf first (tls)
  std::string key;         // PEM (tls)
  // Non-empty (tls): clients must present a certificate that verifies against this PEM root
  // (istiod's mTLS on 15012); a client without one fails the handshake.
  std::string client_ca;
  // Non-empty: streams must carry "authorization: Bearer <required_token>".
  std::string required_token;
  // Non-zero: each stream is closed by the server (status OK) once this old.
  std::chrono::milliseconds max_stream_age{0};
};

struct nack_record {
  std::string type_url;
  std::string nonce;
  std::string version;  // SotW version_info of the NACK (the last accepted one)
  std::string message;  // error_detail.message
  int code = 0;
};

struct stream_record {
  bool delta = false;
  std::string node_id;
  std::string node_metadata_json;
  std::string authorization;  // metadata value, "" if absent
  std::string cluster_id;     // "clusterid" metadata
  // Delta: initial_resource_versions of the first request of each type.
  std::map<std::string, std::map<std::string, std::string>> initial_versions;
  bool node_on_later_requests = false;  // a request after the first carried the node
};

class test_control_plane {
 public:
  explicit test_control_plane(control_plane_options options = {});
  ~test_control_plane();
  test_control_plane(const test_control_plane&) = delete;
  test_control_plane& operator=(const test_control_plane&) = delete;

  // Starts serving (again, on the same port after stop()). Throws std::runtime_error when it
  // cannot bind.
  void start();
  // Stops serving: open streams end with UNAVAILABLE, new ones are refused.
  void stop();
  std::uint16_t port() const;
  std::string address() const { return "127.0.0.1:" + std::to_string(port()); }

  // Replace a whole resource type. Nothing is sent until push().
  void set_clusters(std::vector<envoy::config::cluster::v3::Cluster> clusters);
  void set_endpoints(std::vector<envoy::config::endpoint::v3::ClusterLoadAssignment> assignments);
  void set_listeners(std::vector<envoy::config::listener::v3::Listener> listeners);
  // Raw resources of a type (e.g. undecodable bytes), named for Delta.
  void set_raw(const std::string& type_url, std::vector<std::pair<std::string, google::protobuf::Any>> resources);
  // Sends the current resources to every stream (a new generation).
  void push();
  std::uint64_t generation() const;

  void close_streams();
  // Stop pushing to streams (a stuck control plane) / resume.
  void pause_pushes(bool paused);

  std::size_t streams_opened() const;
  std::size_t active_streams() const;
  std::size_t rejected_streams() const;  // refused for a bad token
  std::vector<nack_record> nacks() const;
  std::size_t acks(const std::string& type_url) const;
  std::size_t stale_requests() const;
  std::vector<stream_record> streams() const;
  // Responses sent for a type, over all streams.
  std::size_t responses(const std::string& type_url) const;

  // True when every open stream has answered (ACK or NACK) every response sent to it and has
  // received the current generation; false on timeout.
  bool wait_synced(std::chrono::milliseconds timeout = std::chrono::seconds(10)) const;
  // Polls `pred` (under no lock) until true or timeout.
  static bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout = std::chrono::seconds(10));

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ewgw::test
