// The ewgw binary as users run it: exit statuses and messages of --mode validate, bad
// arguments, bad configs and a port that is already taken.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fcntl.h>
#include <signal.h>

#include <array>
#include <thread>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "test/support/client_hello_bytes.h"
#include "test/support/process.h"
#include "test/support/tcp_util.h"
#include "test/xds/istio_fixtures.h"
#include "test/xds/test_control_plane.h"

namespace {

using run_result = ewgw::test::command_result;
using ewgw::test::run_command;

run_result run(const std::string& args) { return run_command("timeout 20 " EWGW_BINARY " " + args); }

run_result run_with_env(const std::string& env, const std::string& args) {
  return run_command("env -i PATH=/usr/bin:/bin " + env + " timeout 20 " EWGW_BINARY " " + args);
}

std::string write_temp(const std::string& name, const std::string& text) {
  const auto path = std::filesystem::temp_directory_path() / ("ewgw-main-test-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(path) << text;
  return path.string();
}

TEST(Main, ValidateAcceptsTheDemoConfig) {
  const auto r = run("--mode validate --config " EWGW_SOURCE_DIR "/demo/bootstrap.yaml");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("configuration is valid (1 listener(s), 2 cluster(s))"), std::string::npos) << r.output;
}

TEST(Main, ValidateRejectsABadConfigNamingFileFieldAndReason) {
  const std::string path = write_temp("bad.yaml", R"(static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, cluster: missing}
)");
  const auto r = run("--mode validate --config " + path);
  std::filesystem::remove(path);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(path + ": static_resources.listeners[0].filter_chains[0].filters: tcp_proxy names cluster 'missing'"),
            std::string::npos)
      << r.output;
}

TEST(Main, ValidateReportsOverlappingChains) {
  const std::string path = write_temp("overlap.yaml", R"(static_resources:
  listeners:
  - name: l
    address: {socket_address: {address: 127.0.0.1, port_value: 1}}
    filter_chains:
    - filter_chain_match: {server_names: [a, b]}
      filters: [{name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, cluster: c}}]
    - filter_chain_match: {server_names: [b]}
      filters: [{name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: s, cluster: c}}]
  clusters:
  - name: c
    load_assignment: {cluster_name: c, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]}]}
)");
  const auto r = run("--mode validate --config " + path);
  std::filesystem::remove(path);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("listener 'l': filter_chains[1] overlaps filter_chains[0]"), std::string::npos) << r.output;
}

TEST(Main, UsageErrors) {
  EXPECT_EQ(run("--config").status, 2);
  EXPECT_EQ(run("--istio --config x").status, 2);
  EXPECT_EQ(run("--print-bootstrap --config x").status, 2);
  EXPECT_EQ(run("--concurrency 0 --config x").status, 2);
  EXPECT_EQ(run("--log-level loud --config x").status, 2);
  const auto unknown = run("--frobnicate");
  EXPECT_EQ(unknown.status, 2);
  EXPECT_NE(unknown.output.find("unknown argument '--frobnicate'"), std::string::npos);
  EXPECT_EQ(run("--help").status, 0);
  const auto missing = run("--config /nonexistent.yaml");
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.output.find("/nonexistent.yaml: cannot open the file"), std::string::npos) << missing.output;
}

TEST(Main, PortInUseIsAStartupError) {
  // Occupy a port without SO_REUSEPORT so the gateway cannot share it.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(fd, 1), 0);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  const int port = ntohs(a.sin_port);
  std::string config;
  {
    std::ifstream in(EWGW_SOURCE_DIR "/demo/bootstrap.yaml");
    config.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  config.replace(config.find("port_value: 15443"), 17, "port_value: " + std::to_string(port));
  const std::string path = write_temp("busy.yaml", config);
  const auto r = run("--config " + path);
  std::filesystem::remove(path);
  ::close(fd);
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("listener '0.0.0.0_15443': cannot listen on 127.0.0.1:" + std::to_string(port)), std::string::npos)
      << r.output;
}

}  // namespace

namespace {

// Istio mode: without --config, the bootstrap comes from the pod's environment.
TEST(Main, IstioModePrintsTheBootstrapBuiltFromTheEnvironment) {
  const auto r = run_with_env(
      "POD_NAME=istio-eastwestgateway-abc POD_NAMESPACE=istio-system INSTANCE_IP=10.1.2.3 "
      "ISTIO_META_CLUSTER_ID=cluster2 ISTIO_META_NETWORK=network2 ISTIO_META_REQUESTED_NETWORK_VIEW=network1",
      "--print-bootstrap");
  EXPECT_EQ(r.status, 0) << r.output;
  for (const char* want : {"router~10.1.2.3~istio-eastwestgateway-abc.istio-system~istio-system.svc.cluster.local",
                           "\"api_type\": \"DELTA_GRPC\"", "istiod.istio-system.svc:15012",
                           "/var/run/secrets/istio/root-cert.pem", "/var/run/secrets/tokens/istio-token",
                           "\"NETWORK\": \"network2\"", "\"key\": \"clusterid\""}) {
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  }
  const auto v = run_with_env("POD_NAME=gw POD_NAMESPACE=istio-system INSTANCE_IP=10.1.2.3", "--istio --mode validate");
  EXPECT_EQ(v.status, 0) << v.output;
  EXPECT_NE(v.output.find("istio-bootstrap: configuration is valid (0 listener(s), 0 cluster(s), more from the ADS "
                          "server at istiod.istio-system.svc:15012)"),
            std::string::npos)
      << v.output;
  const auto bad = run_with_env("PROXY_CONFIG='{oops'", "--print-bootstrap");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("PROXY_CONFIG: not a JSON object"), std::string::npos) << bad.output;
}

// The binary follows a control plane: started from a bootstrap with dynamic_resources, it is
// configured over ADS and routes a real connection to the backend the control plane names.
TEST(Main, ServesWhatTheControlPlaneSends) {
  ewgw::test::ignore_sigpipe();
  ewgw::test::tcp_sink_server backend;
  ewgw::test::test_control_plane cp;
  const std::string sni = ewgw::test::istio::sni_name("helloworld.sample.svc.cluster.local", 5000);
  const std::uint16_t port = ewgw::test::unused_port();
  cp.set_clusters({ewgw::test::istio::sni_dnat_cluster(sni)});
  cp.set_endpoints({ewgw::test::istio::local_assignment(sni, {backend.port()})});
  cp.set_listeners({ewgw::test::istio::gateway_listener(port, {{sni, sni}})});
  cp.start();
  cp.push();
  const std::string config = write_temp("xds.yaml", R"(
node: {id: "router~127.0.0.1~gw.istio-system~istio-system.svc.cluster.local", cluster: gw}
dynamic_resources:
  ads_config:
    api_type: DELTA_GRPC
    transport_api_version: V3
    grpc_services: [{google_grpc: {target_uri: ")" + cp.address() + R"(", stat_prefix: xds-grpc}}]
  cds_config: {ads: {}}
  lds_config: {ads: {}}
)");
  const std::string log = write_temp("xds.log", "");
  // The probe runs on its own thread in the binary; check it answers there.
  const std::string readiness = "127.0.0.1:" + std::to_string(ewgw::test::unused_port());
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_TRUNC);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(EWGW_BINARY, EWGW_BINARY, "--config", config.c_str(), "--concurrency", "2", "--readiness-address",
            readiness.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto hello = ewgw::test::make_client_hello(sni, {"istio"});
  bool reached = false;
  for (int i = 0; i < 200 && !reached; ++i) {
    ewgw::test::unique_fd fd(ewgw::test::connect_tcp(port, std::chrono::seconds(1)));
    if (fd) {
      ewgw::test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()});
      reached = backend.wait_for_bytes(backend.connections_accepted() == 0 ? 0 : backend.connections_accepted() - 1,
                                       hello.size(), std::chrono::milliseconds(500));
    }
    if (!reached) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  run_result probe;
  for (int i = 0; i < 100; ++i) {  // ready once CDS and LDS are applied (bounded)
    probe = run_command("curl -s -w ' %{http_code}' http://" + readiness + "/healthz/ready");
    if (probe.output == "LIVE\n 200") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(probe.output, "LIVE\n 200");
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::string output;
  {
    std::ifstream in(log);
    output.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::filesystem::remove(config);
  std::filesystem::remove(log);
  EXPECT_TRUE(reached) << output;
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output;
  EXPECT_NE(output.find("connected to the control plane"), std::string::npos) << output;
  EXPECT_NE(output.find("ready: first CDS and LDS applied"), std::string::npos) << output;
}

}  // namespace

namespace {

// `ewgw explain` against the binary's own admin port: a cluster whose priority 0 is unhealthy
// (EDS) fails over to priority 1; the command prints the explanation and exits 0, and says
// clearly what is wrong when the SNI is missing, the listener unknown or the port unreachable.
TEST(Main, ExplainAsksTheRunningGatewaysAdminPort) {
  const std::uint16_t admin = ewgw::test::unused_port();
  const std::string config = write_temp("explain.yaml", R"(
admin: {address: {socket_address: {address: 127.0.0.1, port_value: )" + std::to_string(admin) + R"(}}}
static_resources:
  listeners:
  - name: east
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    listener_filters: [{name: envoy.filters.listener.tls_inspector, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}]
    filter_chains:
    - name: svc
      filter_chain_match: {server_names: [svc.example]}
      filters: [{name: t, typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: svc, cluster: svc}}]
  clusters:
  - name: svc
    load_assignment:
      cluster_name: svc
      endpoints:
      - locality: {region: r1, zone: a}
        lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}, health_status: UNHEALTHY}]
      - locality: {region: r1, zone: b}
        priority: 1
        lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 2}}}}]
)");
  const std::string log = write_temp("explain.log", "");
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const int fd = ::open(log.c_str(), O_WRONLY | O_TRUNC);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    ::execl(EWGW_BINARY, EWGW_BINARY, "--config", config.c_str(), "--concurrency", "1", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const std::string where = "--admin-address 127.0.0.1:" + std::to_string(admin);
  run_result r;
  for (int i = 0; i < 100; ++i) {  // until the admin port answers (bounded)
    r = run("explain svc.example " + where);
    if (r.status == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("filter chain 'svc' matches"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("conclusion: the next connection goes to cluster 'svc': priority 0 has 0% load because 1 is "
                          "not healthy per EDS; priority 1 takes 100% (1 healthy of 1 host)"),
            std::string::npos)
      << r.output;
  // The URL form (through a port-forward or a proxy) works the same.
  const auto url = run("explain svc.example --admin-address http://127.0.0.1:" + std::to_string(admin) + "/");
  EXPECT_EQ(url.status, 0) << url.output;
  EXPECT_NE(url.output.find("conclusion:"), std::string::npos) << url.output;

  const auto unknown_listener = run("explain svc.example --listener west " + where);
  EXPECT_EQ(unknown_listener.status, 1);
  EXPECT_NE(unknown_listener.output.find("the gateway answered 404: unknown listener 'west'; listeners in force: 'east'"),
            std::string::npos)
      << unknown_listener.output;
  const auto no_match = run("explain other.example " + where);
  EXPECT_EQ(no_match.status, 0);
  EXPECT_NE(no_match.output.find("conclusion: no filter chain matches"), std::string::npos) << no_match.output;
  const auto no_sni = run("explain " + where);
  EXPECT_EQ(no_sni.status, 2);
  EXPECT_NE(no_sni.output.find("explain needs the SNI"), std::string::npos) << no_sni.output;
  const auto bad_address = run("explain svc.example --admin-address https://127.0.0.1:1");
  EXPECT_EQ(bad_address.status, 2);
  EXPECT_NE(bad_address.output.find("https is not supported"), std::string::npos) << bad_address.output;
  const auto unreachable = run("explain svc.example --admin-address 127.0.0.1:" + std::to_string(ewgw::test::unused_port()));
  EXPECT_EQ(unreachable.status, 1);
  EXPECT_NE(unreachable.output.find("cannot connect to 127.0.0.1:"), std::string::npos) << unreachable.output;

  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::filesystem::remove(config);
  std::filesystem::remove(log);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

}  // namespace
