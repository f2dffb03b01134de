// Istio mode: the bootstrap an Istio gateway pod's environment implies, built the way Istio's
// pilot-agent builds Envoy's (pkg/bootstrap: node id, node metadata from ISTIO_META_*, the xDS
// server, its root certificate and the service account token), so that istiod recognises the
// gateway exactly as it recognises Envoy.
//
// The result is an Envoy v3 Bootstrap in JSON: `ewgw --print-bootstrap` prints it, and ewgw
// loads it through the same decoder as a --config file. Every variable is listed in README.md.
#pragma once

#include <map>
#include <string>
#include <vector>

namespace ewgw::xds {

struct istio_environment {
  std::map<std::string, std::string> env;
  // Pod labels from the downward API (lines of key="value"); read if present.
  std::string labels_file = "/etc/istio/pod/labels";
  // The pod's namespace from its service account mount; read when POD_NAMESPACE is unset.
  std::string namespace_file = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";
  std::string hostname;                  // POD_NAME when unset
  std::vector<std::string> interface_ips;  // INSTANCE_IP when unset (first one)
};

struct istio_bootstrap_result {
  std::string json;                  // envoy.config.bootstrap.v3.Bootstrap
  std::vector<std::string> errors;   // the environment cannot work (bad PROXY_CONFIG, ...)
  std::vector<std::string> notices;  // defaults taken, for the log
};

istio_bootstrap_result build_istio_bootstrap(const istio_environment& environment);

// The environment of this process, with hostname and interface addresses filled in.
istio_environment current_istio_environment();

}  // namespace ewgw::xds
