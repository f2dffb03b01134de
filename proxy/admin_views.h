// Read-only views of the routing snapshot for the admin port: Envoy's /clusters (text and JSON)
// and `explain` (where would a connection with this SNI go, and why). Cold code: it allocates
// freely and runs on the admin server's thread, reading the snapshot a worker would read.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "lb/host.h"
#include "proxy/routing_snapshot.h"

namespace ewgw::proxy {

// Envoy's /clusters text format: "cluster::host:port::stat::value" per host, plus per-cluster
// lines (default_priority::max_connections, added_via_api, eds_service_name). Clusters sorted
// by name.
std::string render_clusters_text(const routing_snapshot& snapshot);
// The same as envoy.admin.v3.Clusters in protobuf's JSON mapping (/clusters?format=json).
std::string render_clusters_json(const routing_snapshot& snapshot);

// The ALPNs an Istio sidecar offers on its mTLS connections (what the east-west gateway's
// chains match on).
inline const std::vector<std::string> istio_alpns = {"istio-peer-exchange", "istio", "istio-http/1.0",
                                                     "istio-http/1.1", "istio-h2"};

struct explain_request {
  std::string sni;              // lower-cased by the caller, as the ClientHello parser does
  std::string listener;         // empty: every listener, the first that matches explained in full
  std::vector<std::string> alpns = istio_alpns;
  std::optional<std::uint16_t> destination_port;  // default: the listener's (bound) port
};

struct explain_context {
  const routing_snapshot* snapshot = nullptr;
  // The port a listener is bound to (0 when unknown: its configured port is used).
  std::function<std::uint16_t(std::string_view listener)> bound_port;
  // Why a cluster that is not in the snapshot is missing, when something knows (e.g. "warming:
  // waiting for its first EDS assignment"); empty otherwise.
  std::function<std::string(std::string_view cluster)> missing_cluster_note;
  lb::time_point now{};
};

struct explain_result {
  unsigned status = 200;  // 404 when the named listener does not exist
  std::string text;
};

// Human-readable explanation, ending with a "conclusion:" line: where the next connection
// would go and why, or why it would fail.
explain_result explain_sni(const explain_request& request, const explain_context& context);

std::string json_escape(std::string_view s);

}  // namespace ewgw::proxy
