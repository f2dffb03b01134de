// The ewgw binary as users run it: exit statuses and messages of --mode validate, bad
// arguments, bad configs and a port that is already taken.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include "test/support/tcp_util.h"

namespace {

struct run_result {
  int status = -1;
  std::string output;  // stdout and stderr
};

run_result run(const std::string& args) {
  run_result r;
  FILE* p = ::popen(("timeout 20 " EWGW_BINARY " " + args + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  std::size_t n;
  while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
  const int status = ::pclose(p);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
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
  EXPECT_EQ(run("").status, 2);
  EXPECT_EQ(run("--config").status, 2);
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
