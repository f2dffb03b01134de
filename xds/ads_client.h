// The ADS client: follows an xDS control plane (istiod) over one aggregated gRPC stream, state of
// the world (StreamAggregatedResources) or incremental (DeltaAggregatedResources) as the
// bootstrap says, and hands every accepted update to the gateway as a full configuration.
//
// Threads: the client runs on its own thread (plus one thread blocked reading the current
// stream). `apply` is called on the client thread only, one call at a time; it may take as long
// as it needs (gateway workers are never blocked by it). The public methods are safe from any
// thread.
//
// Protocol (https://www.envoyproxy.io/docs/envoy/latest/api-docs/xds_protocol):
//   - Subscriptions: wildcard CDS and LDS, EDS for the service names of the usable EDS clusters,
//     changed as clusters come and go. Requested in the order CDS, EDS, LDS.
//   - ACK echoes version_info (SotW) and response_nonce; NACK carries the last accepted
//     version, the rejected response's nonce and error_detail (google.rpc.Status, code
//     INTERNAL as Envoy sends, message naming each resource and the reason). A rejected
//     response changes nothing.
//   - The node goes on a stream's first request (SotW: on every request unless
//     node_on_first_message_only). A new Delta stream sends initial_resource_versions.
//   - Transport: plaintext or TLS verified against a root file with an optional server name
//     override; a bearer token file re-read for every new stream (and whenever its mtime
//     changes); initial metadata (Istio's ClusterID); no receive size limit; HTTP/2 keepalive.
//   - A stream that fails or that the server closes is reopened after a jittered exponential
//     backoff (initial_backoff doubling up to max_backoff; reset once a stream got a response).
//     The configuration in force stays while disconnected.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "stats/stats.h"
#include "xds/config_dump.h"
#include "xds/config.h"

namespace ewgw::xds {

// Sets up what gRPC reads from the environment when it starts, for the xDS stream. Call from
// main() before any thread exists (it sets an environment variable) and before gRPC is used.
//
// gRPC 1.51's "tcp_read_chunks" experiment, on by default, sizes a connection's next read
// buffer by the largest read so far and keeps it allocated while the connection lasts: after
// istiod's full state at 10,000 services that is ~4 MB held for good (0.4 KB per cluster, the
// largest single item in the process). With the experiment off, gRPC reads in chunks of at most
// GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, which the client sets to 64 KiB. An operator's own
// GRPC_EXPERIMENTS is kept; the setting is appended unless it already names the experiment.
// Other gRPC versions are left alone (later ones dropped the experiment).
void prepare_grpc_environment();
// The GRPC_EXPERIMENTS value prepare_grpc_environment() sets, given the current one (null when
// unset); nullopt when it leaves the variable as it is.
std::optional<std::string> grpc_experiments_for_xds(const char* current);

struct ads_client_options {
  std::chrono::milliseconds initial_backoff{500};
  std::chrono::milliseconds max_backoff{30000};
  // How long a listener naming clusters that are not ready waits before it is applied anyway
  // (Envoy's initial_fetch_timeout default).
  std::chrono::milliseconds listener_wait{15000};
  // HTTP/2 keepalive pings on the stream (istiod permits one every 15 s or more).
  std::chrono::milliseconds keepalive_time{30000};
  std::chrono::milliseconds keepalive_timeout{10000};
  // When set, every accepted resource is recorded here for the admin /config_dump.
  std::shared_ptr<config_store> config_dump;
};

// Counters and state the client exposes for tests and admin endpoints.
struct ads_client_status {
  bool connected = false;
  bool ready = false;
  std::size_t streams_opened = 0;
  std::size_t acks = 0;
  std::size_t nacks = 0;
  std::size_t applies = 0;  // successful calls of `apply`
  // Resources held (as of the last processed response).
  std::size_t clusters = 0;
  std::size_t warming_clusters = 0;
  std::size_t listeners = 0;
  std::size_t waiting_listeners = 0;
  std::size_t unusable_listeners = 0;  // accepted but not served (listener_config::unsupported)
  std::string last_error;   // the last NACK message or stream failure
};

class ads_client {
 public:
  // Applies a full configuration; returns the reasons it was refused (empty: applied).
  using apply_fn = std::function<std::vector<std::string>(const bootstrap_config&)>;

  // `bootstrap` must have `ads` set. Its static listeners and clusters are part of every
  // configuration passed to `apply`. `registry` receives the client's metrics and must outlive
  // the client.
  ads_client(const bootstrap_config& bootstrap, apply_fn apply, stats::registry& registry,
             ads_client_options options = {});
  ~ads_client();  // stop()
  ads_client(const ads_client&) = delete;
  ads_client& operator=(const ads_client&) = delete;

  void start();
  // Cancels the stream and joins the client's threads; `apply` is not called after it returns.
  void stop();

  // True once the first CDS and LDS responses were accepted and applied and no listener from
  // them is still waiting for clusters. Stays true while the control plane is unreachable.
  bool ready() const;
  bool connected() const;
  ads_client_status status() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace ewgw::xds
