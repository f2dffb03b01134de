// ewgw-test-control-plane: the test control plane as a process, serving an istiod-shaped
// east-west gateway configuration for local backends, so ewgw can be run against xDS by hand
// (README: "Running against the bundled test control plane").
//
//   ewgw-test-control-plane [--port 15010] [--listener-port 15443]
//                           --service SNI=PORT[,PORT...] [--service ...]
//                           [--tls-cert chain.pem --tls-key key.pem] [--token TOKEN]
//                           [--synthetic-services N]
//
// Each --service becomes an SNI-DNAT EDS cluster named SNI with its endpoints on 127.0.0.1 and a
// chain on the 15443 listener matching SNI with Istio's ALPNs. --synthetic-services N adds N
// more, shaped like xds_scale_bench's (outbound_.8080_._.svc-I.ns-J.svc.cluster.local, three
// endpoints each on unrouted 10.x addresses), for measuring a gateway at scale
// (bench/xds/gateway_memory.sh). Runs until SIGTERM or SIGINT.
// Prints "control plane listening on 127.0.0.1:<port>" once serving.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "test/xds/istio_fixtures.h"
#include "test/xds/test_control_plane.h"

namespace {

volatile sig_atomic_t g_stop = 0;

void on_signal(int) { g_stop = 1; }

int usage() {
  std::fprintf(stderr,
               "usage: ewgw-test-control-plane [--port N] [--listener-port N] --service SNI=PORT[,PORT...] ...\n"
               "                               [--tls-cert FILE --tls-key FILE] [--token TOKEN]\n"
               "                               [--synthetic-services N]\n");
  return 2;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

int main(int argc, char** argv) {
  ewgw::test::control_plane_options options;
  options.port = 15010;
  std::uint16_t listener_port = 15443;
  struct service {
    std::string sni;
    std::vector<std::uint16_t> ports;
  };
  std::vector<service> services;
  std::size_t synthetic = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    if (arg == "--port" && v) {
      options.port = static_cast<std::uint16_t>(std::atoi(v));
      ++i;
    } else if (arg == "--listener-port" && v) {
      listener_port = static_cast<std::uint16_t>(std::atoi(v));
      ++i;
    } else if (arg == "--service" && v) {
      const std::string spec = v;
      ++i;
      const auto eq = spec.find('=');
      if (eq == std::string::npos) return usage();
      service s{spec.substr(0, eq), {}};
      std::stringstream ports(spec.substr(eq + 1));
      std::string p;
      while (std::getline(ports, p, ',')) s.ports.push_back(static_cast<std::uint16_t>(std::atoi(p.c_str())));
      services.push_back(s);
    } else if (arg == "--tls-cert" && v) {
      options.tls = true;
      options.cert_chain = read_file(v);
      ++i;
    } else if (arg == "--tls-key" && v) {
      options.key = read_file(v);
      ++i;
    } else if (arg == "--synthetic-services" && v) {
      synthetic = std::strtoul(v, nullptr, 10);
      ++i;
    } else if (arg == "--token" && v) {
      options.required_token = v;
      ++i;
    } else {
      return usage();
    }
  }
  if (services.empty() && synthetic == 0) return usage();

  ewgw::test::test_control_plane cp(options);
  std::vector<envoy::config::cluster::v3::Cluster> clusters;
  std::vector<envoy::config::endpoint::v3::ClusterLoadAssignment> assignments;
  std::vector<ewgw::test::istio::chain_spec> chains;
  for (const auto& s : services) {
    clusters.push_back(ewgw::test::istio::sni_dnat_cluster(s.sni));
    assignments.push_back(ewgw::test::istio::local_assignment(s.sni, s.ports));
    chains.push_back({s.sni, s.sni});
  }
  for (std::size_t i = 0; i < synthetic; ++i) {
    const std::string host = "svc-" + std::to_string(i) + ".ns-" + std::to_string(i % 50) + ".svc.cluster.local";
    const std::string sni = ewgw::test::istio::sni_name(host, 8080);
    ewgw::test::istio::locality_spec l;
    for (int e = 1; e <= 3; ++e) {
      l.endpoints.push_back({"10." + std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255) + "." +
                                 std::to_string(e),
                             8080, 1, true});
    }
    clusters.push_back(ewgw::test::istio::sni_dnat_cluster(sni, host));
    assignments.push_back(ewgw::test::istio::assignment(sni, {l}));
    chains.push_back({sni, sni});
  }
  cp.set_clusters(clusters);
  cp.set_endpoints(assignments);
  cp.set_listeners({ewgw::test::istio::gateway_listener(listener_port, chains)});
  try {
    cp.start();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ewgw-test-control-plane: %s\n", e.what());
    return 1;
  }
  cp.push();
  std::printf("control plane listening on %s (%zu service(s), listener port %u)\n", cp.address().c_str(),
              services.size() + synthetic, listener_port);
  std::fflush(stdout);
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  std::size_t last_acks = 0;
  while (!g_stop) {
    timespec ts{0, 100 * 1000 * 1000};
    nanosleep(&ts, nullptr);
    const std::size_t acks = cp.acks(ewgw::test::listener_type);
    if (acks != last_acks) {
      std::printf("LDS acknowledged by %zu stream(s) so far\n", cp.streams_opened());
      std::fflush(stdout);
      last_acks = acks;
    }
  }
  cp.stop();
  return 0;
}
