// Access logs end to end: a gateway configured from a bootstrap with tcp_proxy and Listener
// access_log, real TLS clients and backends (or raw TCP peers for the failure cases), and the
// lines read back from the files the writer thread produced. Each outcome checks the response
// flags Envoy's tcp_proxy and listener set for it.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "proxy/gateway.h"
#include "test/support/certs.h"
#include "test/support/client_hello_bytes.h"
#include "test/support/tcp_util.h"
#include "test/support/tls_client.h"
#include "test/support/tls_server.h"
#include "xds/decode.h"

namespace ewgw {
namespace {

using namespace std::chrono_literals;

const std::string istio_sni = "outbound_.5000_._.helloworld.sample.svc.cluster.local";
const std::vector<std::string> istio_alpn = {"istio-peer-exchange", "istio"};

// Istio's default TEXT format (pilot/pkg/model/telemetry_logging.go EnvoyTextLogFormat).
const std::string istio_text_format =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% "
    "%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% "
    "%ROUTE_NAME%\n";

// A compact line the tests can split on '|'.
const std::string test_format =
    "%RESPONSE_FLAGS%|%UPSTREAM_CLUSTER%|%REQUESTED_SERVER_NAME%|%UPSTREAM_HOST%|%BYTES_RECEIVED%|%BYTES_SENT%|"
    "%UPSTREAM_TRANSPORT_FAILURE_REASON%|%RESPONSE_CODE_DETAILS%|%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%|"
    "%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%\n";

std::string yaml_quoted(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out + "\"";
}

// One file access_log entry, indented by `indent` spaces. `format` is a text format, or a
// JSON object's members as "key: value" YAML lines when `json` is set.
std::string file_log(int indent, const std::string& path, const std::string& format, bool json = false,
                     const std::string& filter = "") {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  std::string y = pad + "- name: envoy.access_loggers.file\n" + pad +
                  "  typed_config:\n" + pad +
                  "    \"@type\": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog\n" + pad +
                  "    path: " + path + "\n";
  if (json) {
    y += pad + "    log_format:\n" + pad + "      json_format:\n" + format;
  } else if (!format.empty()) {
    y += pad + "    log_format:\n" + pad + "      text_format_source:\n" + pad + "        inline_string: " +
         yaml_quoted(format) + "\n";
  }
  if (!filter.empty()) y += pad + "  filter: " + filter + "\n";
  return y;
}

struct chain_spec {
  std::string sni;
  std::string cluster;
  std::string tcp_proxy_extra;  // YAML lines at 10 spaces under typed_config
  bool sni_cluster = false;
};

struct cluster_spec {
  std::string name;
  std::vector<std::uint16_t> ports;
  std::string extra;            // YAML lines at 4 spaces under the cluster
  std::string endpoint_extra;   // YAML lines at 10 spaces under each lb_endpoint
};

std::string make_yaml(const std::vector<chain_spec>& chains, const std::vector<cluster_spec>& clusters,
                      const std::string& listener_access_log) {
  std::string y =
      "static_resources:\n  listeners:\n  - name: gw\n    address: {socket_address: {address: 127.0.0.1, port_value: 0}}\n"
      "    listener_filters:\n    - name: envoy.filters.listener.tls_inspector\n      typed_config: {\"@type\": "
      "type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}\n";
  if (!listener_access_log.empty()) y += "    access_log:\n" + listener_access_log;
  y += "    filter_chains:\n";
  int n = 0;
  for (const chain_spec& c : chains) {
    y += "    - name: chain" + std::to_string(n) + "\n";
    y += "      filter_chain_match: {server_names: [\"" + c.sni + "\"]}\n      filters:\n";
    if (c.sni_cluster) {
      y += "      - name: envoy.filters.network.sni_cluster\n        typed_config: {\"@type\": "
           "type.googleapis.com/envoy.extensions.filters.network.sni_cluster.v3.SniCluster}\n";
    }
    y += "      - name: envoy.filters.network.tcp_proxy\n        typed_config:\n          \"@type\": "
         "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy\n          stat_prefix: chain" +
         std::to_string(n++) + "\n          cluster: \"" + c.cluster + "\"\n" + c.tcp_proxy_extra;
  }
  y += "  clusters:\n";
  for (const cluster_spec& c : clusters) {
    y += "  - name: \"" + c.name + "\"\n    type: STATIC\n    connect_timeout: 2s\n" + c.extra +
         "    load_assignment:\n      cluster_name: \"" + c.name + "\"\n      endpoints:\n      - lb_endpoints:\n";
    for (std::uint16_t p : c.ports) {
      y += "        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: " + std::to_string(p) +
           "}}}\n" + c.endpoint_extra;
    }
  }
  return y;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == sep) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur.push_back(c);
    }
  }
  out.push_back(cur);
  return out;
}

class AccessLogTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { test::ignore_sigpipe(); }

  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("ewgw-access-log-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }

  void TearDown() override {
    if (gw_) gw_->stop();
    std::filesystem::remove_all(dir_);
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  void start(const std::string& yaml, proxy::gateway_options options = {2, 10ms, 8192}) {
    auto loaded = xds::load_bootstrap_text(yaml, "test.yaml");
    ASSERT_TRUE(loaded.diag.ok()) << loaded.diag.errors[0] << "\n" << yaml;
    notices_ = loaded.diag.notices;
    gw_ = std::make_unique<proxy::gateway>(options);
    const auto errors = gw_->apply(loaded.config);
    ASSERT_TRUE(errors.empty()) << errors[0];
    const auto error = gw_->start();
    ASSERT_FALSE(error) << *error;
    port_ = gw_->listener_port("gw");
    ASSERT_NE(port_, 0);
  }

  static std::string read_file(const std::string& p) {
    std::ifstream in(p);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // The file's lines once it has `n` of them (bounded wait: the writer drains every 10 ms).
  std::vector<std::string> wait_lines(const std::string& p, std::size_t n) const {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    std::vector<std::string> lines;
    for (;;) {
      const std::string text = read_file(p);
      lines.clear();
      if (!text.empty()) {
        lines = split(text, '\n');
        lines.pop_back();  // after the last '\n'
      }
      if (lines.size() >= n || std::chrono::steady_clock::now() > deadline) return lines;
      std::this_thread::sleep_for(5ms);
    }
  }

  std::int64_t stat(const std::string& name) const { return gw_->stats().value(name); }

  ::testing::AssertionResult stat_reaches(const std::string& name, std::int64_t want) const {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    std::int64_t got = stat(name);
    while (got != want && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
      got = stat(name);
    }
    if (got == want) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << name << " = " << got << ", expected " << want;
  }

  // A raw ClientHello for `sni`; returns the connected socket.
  test::unique_fd send_hello(const std::string& sni) const {
    const auto hello = test::make_client_hello(sni, istio_alpn);
    test::unique_fd fd(test::connect_tcp(port_));
    EXPECT_GE(fd.get(), 0);
    EXPECT_TRUE(test::send_all(fd.get(), {reinterpret_cast<const char*>(hello.data()), hello.size()}));
    return fd;
  }

  std::filesystem::path dir_;
  test::test_pki pki_{"ewgw access log"};
  std::unique_ptr<proxy::gateway> gw_;
  std::uint16_t port_ = 0;
  std::vector<std::string> notices_;
};

TEST_F(AccessLogTest, RoutedMutualTlsConnectionInTextIstioAndJsonFormats) {
  const auto server_cert = pki_.make_leaf("helloworld-v1", {istio_sni}, test::cert_usage::server);
  const auto client_cert = pki_.make_leaf("sleep", {"spiffe://cluster.local/ns/sample/sa/sleep"}, test::cert_usage::client);
  test::tls_server_options so;
  so.set_identity(server_cert);
  so.require_client_cert = true;
  test::tls_test_server backend(so);
  const std::string json_members =
      "                  start_time: \"%START_TIME%\"\n"
      "                  bytes_received: \"%BYTES_RECEIVED%\"\n"
      "                  bytes_sent: \"%BYTES_SENT%\"\n"
      "                  response_flags: \"%RESPONSE_FLAGS%\"\n"
      "                  upstream_cluster: \"%UPSTREAM_CLUSTER%\"\n"
      "                  upstream_host: \"%UPSTREAM_HOST%\"\n"
      "                  requested_server_name: \"%REQUESTED_SERVER_NAME%\"\n"
      "                  duration: \"%DURATION%\"\n";
  const std::string logs = "          access_log:\n" + file_log(10, path("text.log"), test_format) +
                           file_log(10, path("istio.log"), istio_text_format) +
                           file_log(10, path("json.log"), json_members, true);
  start(make_yaml({{istio_sni, "helloworld", logs}}, {{"helloworld", {backend.port()}}},
                  file_log(4, path("listener.log"), test_format, false, "{response_flag_filter: {flags: [NR]}}")));

  auto o = test::tls_client_options{};
  o.port = port_;
  o.sni = istio_sni;
  o.alpn = istio_alpn;
  o.set_identity(client_cert);
  o.expected_server_name = istio_sni;
  o.payload = std::string(100 * 1024, 'x');
  const auto r = test::run_tls_client(o);
  ASSERT_TRUE(r.success) << r.error;
  ASSERT_TRUE(r.echo_matched);

  const auto text = wait_lines(path("text.log"), 1);
  ASSERT_EQ(text.size(), 1u);
  const auto f = split(text[0], '|');
  ASSERT_EQ(f.size(), 10u) << text[0];
  EXPECT_EQ(f[0], "-");
  EXPECT_EQ(f[1], "helloworld");
  EXPECT_EQ(f[2], istio_sni);
  EXPECT_EQ(f[3], "127.0.0.1:" + std::to_string(backend.port()));
  // Bytes each way are the gateway's own counts for this one connection, and both directions
  // carried at least the 100 KiB payload plus the TLS handshake.
  ASSERT_TRUE(stat_reaches("listener.127.0.0.1_0.downstream_cx_active", 0));
  EXPECT_EQ(f[4], std::to_string(stat("tcp.chain0.downstream_cx_rx_bytes_total")));
  EXPECT_EQ(f[5], std::to_string(stat("tcp.chain0.downstream_cx_tx_bytes_total")));
  EXPECT_GT(std::stoll(f[4]), 100 * 1024);
  EXPECT_GT(std::stoll(f[5]), 100 * 1024);
  EXPECT_EQ(stat("tcp.chain0.downstream_cx_rx_bytes_total"), stat("cluster.helloworld.upstream_cx_tx_bytes_total"));
  EXPECT_EQ(f[6], "-");
  EXPECT_EQ(f[7], "-");
  EXPECT_EQ(f[8], "127.0.0.1");
  EXPECT_EQ(f[9], "127.0.0.1");

  // Istio's default format: TCP renders the HTTP fields as '-' and the response code as 0.
  const auto istio = wait_lines(path("istio.log"), 1);
  ASSERT_EQ(istio.size(), 1u);
  const std::string expected_middle = "\"- - -\" 0 - - - \"-\" " + f[4] + " " + f[5] + " ";
  EXPECT_NE(istio[0].find(expected_middle), std::string::npos) << istio[0];
  EXPECT_NE(istio[0].find(" - \"-\" \"-\" \"-\" \"-\" \"127.0.0.1:" + std::to_string(backend.port()) + "\" helloworld 127.0.0.1:"),
            std::string::npos)
      << istio[0];
  EXPECT_NE(istio[0].find(" 127.0.0.1:" + std::to_string(port_) + " 127.0.0.1:"), std::string::npos) << istio[0];
  EXPECT_TRUE(istio[0].ends_with(" " + istio_sni + " -")) << istio[0];
  EXPECT_EQ(istio[0].front(), '[');

  // JSON: one object per line, typed, parseable.
  const auto json = wait_lines(path("json.log"), 1);
  ASSERT_EQ(json.size(), 1u);
  google::protobuf::Struct s;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(json[0], &s).ok()) << json[0];
  EXPECT_EQ(s.fields().at("bytes_received").number_value(), std::stod(f[4]));
  EXPECT_EQ(s.fields().at("bytes_sent").number_value(), std::stod(f[5]));
  EXPECT_TRUE(s.fields().at("response_flags").has_null_value());
  EXPECT_EQ(s.fields().at("upstream_cluster").string_value(), "helloworld");
  EXPECT_EQ(s.fields().at("requested_server_name").string_value(), istio_sni);
  EXPECT_TRUE(s.fields().at("duration").has_number_value());
  EXPECT_EQ(s.fields().at("start_time").string_value().size(), std::string("2026-11-21T14:52:07.123Z").size());

  // Istio's listener log only takes NR: nothing for a routed connection.
  EXPECT_EQ(read_file(path("listener.log")), "");
}

TEST_F(AccessLogTest, ConnectFailureIsUfUrxWithTheReason) {
  const std::uint16_t dead = test::unused_port();
  const std::string logs = "          access_log:\n" + file_log(10, path("a.log"), test_format);
  start(make_yaml({{istio_sni, "helloworld", logs}}, {{"helloworld", {dead}}}, ""));
  auto fd = send_hello(istio_sni);
  EXPECT_TRUE(test::wait_closed(fd.get()));
  const auto lines = wait_lines(path("a.log"), 1);
  ASSERT_EQ(lines.size(), 1u);
  const auto f = split(lines[0], '|');
  EXPECT_EQ(f[0], "UF,URX");
  EXPECT_EQ(f[1], "helloworld");
  EXPECT_EQ(f[3], "127.0.0.1:" + std::to_string(dead));
  EXPECT_EQ(f[5], "0");
  EXPECT_EQ(f[6], "delayed_connect_error:_111");  // ECONNREFUSED
  EXPECT_EQ(f[9], "-");  // never connected
}

TEST_F(AccessLogTest, OverflowIsUo) {
  test::tcp_sink_server backend;
  const std::string logs = "          access_log:\n" + file_log(10, path("a.log"), test_format);
  start(make_yaml({{istio_sni, "helloworld", logs}},
                  {{"helloworld", {backend.port()}, "    circuit_breakers: {thresholds: [{max_connections: 1}]}\n"}}, ""));
  auto held = send_hello(istio_sni);
  ASSERT_TRUE(backend.wait_for_connections(1));
  auto refused = send_hello(istio_sni);
  EXPECT_TRUE(test::wait_closed(refused.get()));
  const auto lines = wait_lines(path("a.log"), 1);
  ASSERT_EQ(lines.size(), 1u);
  const auto f = split(lines[0], '|');
  EXPECT_EQ(f[0], "UO");
  EXPECT_EQ(f[1], "helloworld");
  EXPECT_EQ(f[3], "-");  // no host was picked
}

TEST_F(AccessLogTest, NoChainMatchIsNrOnTheListenerLog) {
  test::tcp_sink_server backend;
  const std::string logs = "          access_log:\n" + file_log(10, path("chain.log"), test_format);
  start(make_yaml({{istio_sni, "helloworld", logs}}, {{"helloworld", {backend.port()}}},
                  file_log(4, path("listener.log"), test_format, false, "{response_flag_filter: {flags: [NR]}}")));
  const std::string unknown = "outbound_.9999_._.unknown.sample.svc.cluster.local";
  auto fd = send_hello(unknown);
  EXPECT_TRUE(test::wait_closed(fd.get()));
  const auto lines = wait_lines(path("listener.log"), 1);
  ASSERT_EQ(lines.size(), 1u);
  const auto f = split(lines[0], '|');
  EXPECT_EQ(f[0], "NR");
  EXPECT_EQ(f[1], "-");
  EXPECT_EQ(f[2], unknown);
  EXPECT_EQ(f[4], "0");  // Envoy counts no bytes for a connection that never got a chain
  EXPECT_EQ(f[7], "filter_chain_not_found");
  EXPECT_EQ(read_file(path("chain.log")), "");
}

TEST_F(AccessLogTest, UnknownClusterIsNc) {
  const std::string logs = "          access_log:\n" + file_log(10, path("a.log"), test_format);
  const std::string sni = "outbound_.7000_._.missing.sample.svc.cluster.local";
  start(make_yaml({{sni, "fallback", logs, true}}, {{"fallback", {test::unused_port()}}}, ""));
  auto fd = send_hello(sni);
  EXPECT_TRUE(test::wait_closed(fd.get()));
  const auto lines = wait_lines(path("a.log"), 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(split(lines[0], '|')[0], "NC");
  EXPECT_EQ(stat("tcp.chain0.downstream_cx_no_route"), 1);
}

TEST_F(AccessLogTest, NoHealthyUpstreamIsUh) {
  const std::string logs = "          access_log:\n" + file_log(10, path("a.log"), test_format);
  start(make_yaml({{istio_sni, "helloworld", logs}},
                  {{"helloworld", {test::unused_port()}, "    common_lb_config: {healthy_panic_threshold: {value: 0}}\n",
                    "          health_status: UNHEALTHY\n"}},
                  ""));
  auto fd = send_hello(istio_sni);
  EXPECT_TRUE(test::wait_closed(fd.get()));
  const auto lines = wait_lines(path("a.log"), 1);
  ASSERT_EQ(lines.size(), 1u);
  const auto f = split(lines[0], '|');
  EXPECT_EQ(f[0], "UH");
  EXPECT_EQ(f[1], "helloworld");
  EXPECT_EQ(f[3], "-");
}

// Envoy's tcp_proxy sets no flag when either side closes normally (no DC, no UC: those are HTTP
// flags), and UR when it propagates an upstream reset.
TEST_F(AccessLogTest, ClosesAndResets) {
  test::tcp_sink_server backend;
  const std::string logs = "          access_log:\n" + file_log(10, path("a.log"), "%CONNECTION_ID% %RESPONSE_FLAGS%\n");
  start(make_yaml({{istio_sni, "helloworld", logs}}, {{"helloworld", {backend.port()}}}, ""), {1, 10ms, 8192});

  {  // the client closes first
    auto fd = send_hello(istio_sni);
    ASSERT_TRUE(backend.wait_for_connections(1));
    fd.reset();
    ASSERT_TRUE(backend.wait_peer_closed(0));
    backend.close(0);
  }
  ASSERT_EQ(wait_lines(path("a.log"), 1).size(), 1u);
  const std::size_t hello_size = test::make_client_hello(istio_sni, istio_alpn).size();
  {  // the backend closes first (after reading everything: unread data would make it a reset)
    auto fd = send_hello(istio_sni);
    ASSERT_TRUE(backend.wait_for_connections(2));
    ASSERT_TRUE(backend.wait_for_bytes(1, hello_size));
    backend.close(1);
    EXPECT_TRUE(test::wait_closed(fd.get()));
  }
  ASSERT_EQ(wait_lines(path("a.log"), 2).size(), 2u);
  {  // the backend resets
    auto fd = send_hello(istio_sni);
    ASSERT_TRUE(backend.wait_for_connections(3));
    ASSERT_TRUE(backend.wait_for_bytes(2, hello_size));
    backend.reset(2);
    EXPECT_TRUE(test::wait_closed(fd.get()));
  }
  ASSERT_EQ(wait_lines(path("a.log"), 3).size(), 3u);
  {  // the client resets (SO_LINGER 0): no flag, as Envoy's tcp_proxy (DR is an HTTP flag)
    auto fd = send_hello(istio_sni);
    ASSERT_TRUE(backend.wait_for_connections(4));
    ASSERT_TRUE(backend.wait_for_bytes(3, hello_size));
    const linger l{1, 0};
    ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof(l)), 0);
    fd.reset();
    ASSERT_TRUE(backend.wait_peer_closed(3));
  }
  const auto lines = wait_lines(path("a.log"), 4);
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_TRUE(lines[0].ends_with(" -")) << lines[0];
  EXPECT_TRUE(lines[1].ends_with(" -")) << lines[1];
  EXPECT_TRUE(lines[2].ends_with(" UR")) << lines[2];
  EXPECT_TRUE(lines[3].ends_with(" -")) << lines[3];
  // Connection ids differ.
  EXPECT_NE(split(lines[0], ' ')[0], split(lines[1], ' ')[0]);
}

TEST_F(AccessLogTest, IdleTimeoutSetsNoFlag) {
  test::tcp_sink_server backend;
  const std::string extra = "          idle_timeout: 0.05s\n          access_log:\n" +
                            file_log(10, path("a.log"), "%RESPONSE_FLAGS% %UPSTREAM_HOST%\n");
  start(make_yaml({{istio_sni, "helloworld", extra}}, {{"helloworld", {backend.port()}}}, ""));
  auto fd = send_hello(istio_sni);
  EXPECT_TRUE(test::wait_closed(fd.get()));
  EXPECT_EQ(wait_lines(path("a.log"), 1), std::vector<std::string>{"- 127.0.0.1:" + std::to_string(backend.port())});
  EXPECT_EQ(stat("tcp.chain0.idle_timeout"), 1);
}

// A connection whose cluster is removed while it is open keeps running (docs/configuration.md);
// when it closes, its line still names the cluster. The record references the cluster's name
// and holds the cluster alive until the writer thread has formatted it, after the session and
// every snapshot that had the cluster are gone (ASan reports a read of the freed name otherwise).
TEST_F(AccessLogTest, NamesAClusterRemovedWhileItsConnectionWasOpen) {
  test::tcp_sink_server backend;
  const std::string logs = "          access_log:\n" + file_log(10, path("a.log"), "%UPSTREAM_CLUSTER% %RESPONSE_FLAGS%\n");
  start(make_yaml({{istio_sni, "helloworld", logs}}, {{"helloworld", {backend.port()}}}, ""));
  auto fd = send_hello(istio_sni);
  ASSERT_TRUE(backend.wait_for_bytes(0, 1));
  auto next = xds::load_bootstrap_text(
      make_yaml({{"other.example.com", "other", logs}}, {{"other", {backend.port()}}}, ""), "next.yaml");
  ASSERT_TRUE(next.diag.ok());
  ASSERT_TRUE(gw_->apply(next.config).empty());
  ASSERT_EQ(read_file(path("a.log")), "");  // still open
  fd.reset();
  ASSERT_TRUE(backend.wait_peer_closed(0));
  backend.close(0);
  EXPECT_EQ(wait_lines(path("a.log"), 1), std::vector<std::string>{"helloworld -"});
}

TEST_F(AccessLogTest, MalformedClientHelloIsOnTheListenerLogOnly) {
  test::tcp_sink_server backend;
  const std::string logs = "          access_log:\n" + file_log(10, path("chain.log"), test_format);
  start(make_yaml({{istio_sni, "helloworld", logs}}, {{"helloworld", {backend.port()}}},
                  file_log(4, path("listener.log"), "%RESPONSE_FLAGS% %BYTES_RECEIVED% %REQUESTED_SERVER_NAME%\n")));
  test::unique_fd fd(test::connect_tcp(port_));
  // A handshake record whose ClientHello length runs past its record: malformed.
  ASSERT_TRUE(test::send_all(fd.get(), std::string("\x16\x03\x01\x00\x05\x01\x00\xff\xff\x03", 10)));
  EXPECT_TRUE(test::wait_closed(fd.get()));
  EXPECT_EQ(wait_lines(path("listener.log"), 1), std::vector<std::string>{"- 0 -"});
  EXPECT_EQ(read_file(path("chain.log")), "");
}

TEST_F(AccessLogTest, MaxConnectionDurationIsDt) {
  test::tcp_sink_server backend;
  const std::string extra = "          max_downstream_connection_duration: 0.05s\n          access_log:\n" +
                            file_log(10, path("a.log"), "%RESPONSE_FLAGS%\n");
  start(make_yaml({{istio_sni, "helloworld", extra}}, {{"helloworld", {backend.port()}}}, ""));
  auto fd = send_hello(istio_sni);
  EXPECT_TRUE(test::wait_closed(fd.get()));
  EXPECT_EQ(wait_lines(path("a.log"), 1), std::vector<std::string>{"DT"});
}

TEST_F(AccessLogTest, DefaultFormatAndStdoutLoggerAreAccepted) {
  test::tcp_sink_server backend;
  const std::string logs = "          access_log:\n" + file_log(10, path("default.log"), "") +
                           "          - name: envoy.access_loggers.stdout\n            typed_config: {\"@type\": "
                           "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog}\n";
  start(make_yaml({{istio_sni, "helloworld", logs}}, {{"helloworld", {backend.port()}}}, ""));
  auto fd = send_hello(istio_sni);
  ASSERT_TRUE(backend.wait_for_connections(1));
  fd.reset();
  ASSERT_TRUE(backend.wait_peer_closed(0));
  backend.close(0);
  const auto lines = wait_lines(path("default.log"), 1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("] \"- - -\" 0 - "), std::string::npos) << lines[0];
  EXPECT_TRUE(lines[0].ends_with("\"127.0.0.1:" + std::to_string(backend.port()) + "\"")) << lines[0];
}

TEST_F(AccessLogTest, FullQueueDropsAndShutdownFlushes) {
  const std::string logs = file_log(4, path("listener.log"), "%RESPONSE_FLAGS%\n");
  // One worker, room for two records, and a writer that only writes at shutdown.
  start(make_yaml({{istio_sni, "helloworld", ""}}, {{"helloworld", {test::unused_port()}}}, logs),
        {1, std::chrono::hours(1), 2});
  for (int i = 0; i < 5; ++i) {
    auto fd = send_hello("nomatch.example");
    EXPECT_TRUE(test::wait_closed(fd.get()));
  }
  ASSERT_TRUE(stat_reaches("listener.127.0.0.1_0.downstream_cx_destroy", 5));
  EXPECT_EQ(stat("access_log.records_dropped_total"), 3);
  EXPECT_EQ(read_file(path("listener.log")), "");
  gw_->stop();
  EXPECT_EQ(read_file(path("listener.log")), "NR\nNR\n");
  EXPECT_EQ(stat("access_log.lines_written_total"), 2);
}

TEST_F(AccessLogTest, BadConfigurationsAreRefusedOrIgnoredByName) {
  auto load = [&](const std::string& tcp_proxy_logs, const std::string& listener_logs = "") {
    return xds::load_bootstrap_text(make_yaml({{istio_sni, "helloworld", tcp_proxy_logs}}, {{"helloworld", {1}}},
                                              listener_logs),
                                    "test.yaml");
  };
  // An unknown operator: refused, naming the field and the operator.
  auto bad = load("          access_log:\n" + file_log(10, path("a.log"), "%BYTES_SENT% %NOPE%\n"));
  ASSERT_FALSE(bad.diag.ok());
  EXPECT_EQ(bad.diag.errors[0],
            "test.yaml: static_resources.listeners[0].filter_chains[0].filters[0].typed_config.access_log[0].typed_config."
            "log_format: unknown command operator 'NOPE' at position 13");
  // A file logger without a path.
  auto no_path = load("          access_log:\n" + file_log(10, "\"\"", "%BYTES_SENT%"));
  ASSERT_FALSE(no_path.diag.ok());
  EXPECT_NE(no_path.diag.errors[0].find("access_log[0].typed_config.path: must not be empty"), std::string::npos);
  // An unknown response flag in a filter.
  auto bad_flag = load("", file_log(4, path("l.log"), "%BYTES_SENT%", false, "{response_flag_filter: {flags: [XX]}}"));
  ASSERT_FALSE(bad_flag.diag.ok());
  EXPECT_NE(bad_flag.diag.errors[0].find("access_log[0].filter.response_flag_filter.flags[0]: 'XX' is not a response flag"),
            std::string::npos)
      << bad_flag.diag.errors[0];
  // A logger ewgw does not implement, and a filter it does not evaluate: accepted, ignored with
  // a notice naming them (they cannot change routing).
  auto ignored = load(
      "          access_log:\n          - name: envoy.access_loggers.tcp_grpc\n            typed_config: {\"@type\": "
      "type.googleapis.com/udpa.type.v1.TypedStruct, type_url: "
      "type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.TcpGrpcAccessLogConfig}\n",
      file_log(4, path("l.log"), "%BYTES_SENT%", false, "{duration_filter: {comparison: {op: GE, value: {default_value: 5, runtime_key: x}}}}"));
  ASSERT_TRUE(ignored.diag.ok()) << ignored.diag.errors[0];
  std::string notices;
  for (const auto& n : ignored.diag.notices) notices += n + "\n";
  EXPECT_NE(notices.find("access_log[0]: access logger 'envoy.access_loggers.tcp_grpc' "
                         "(type.googleapis.com/envoy.extensions.access_loggers.grpc.v3.TcpGrpcAccessLogConfig) is not supported"),
            std::string::npos)
      << notices;
  EXPECT_NE(notices.find("access_log[0].filter.duration_filter: access log filter not supported"), std::string::npos)
      << notices;
  EXPECT_TRUE(ignored.config.listeners[0].access_logs.empty());
  EXPECT_TRUE(ignored.config.listeners[0].filter_chains[0].settings->tcp_proxy.access_logs.empty());
  // A file that cannot be opened: the configuration is not applied.
  auto unopenable = load("          access_log:\n" + file_log(10, path("no/such/dir/a.log"), "%BYTES_SENT%\n"));
  ASSERT_TRUE(unopenable.diag.ok());
  proxy::gateway gw({1, 10ms, 16});
  const auto errors = gw.apply(unopenable.config);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("listener 'gw': filter chain 'chain0': access log 'envoy.access_loggers.file': cannot open "
                           "access log file"),
            std::string::npos)
      << errors[0];
}

TEST_F(AccessLogTest, ChainsShareOneDecodedList) {
  const std::string logs = "          access_log:\n" + file_log(10, path("a.log"), istio_text_format);
  auto loaded = xds::load_bootstrap_text(
      make_yaml({{istio_sni, "helloworld", logs}, {"b.example", "helloworld", logs}, {"c.example", "helloworld", logs}},
                {{"helloworld", {1}}}, ""),
      "test.yaml");
  ASSERT_TRUE(loaded.diag.ok()) << loaded.diag.errors[0];
  const auto& chains = loaded.config.listeners[0].filter_chains;
  ASSERT_EQ(chains.size(), 3u);
  ASSERT_FALSE(chains[0].settings->tcp_proxy.access_logs.empty());
  EXPECT_EQ(chains[0].settings->tcp_proxy.access_logs.items.get(), chains[1].settings->tcp_proxy.access_logs.items.get());
  EXPECT_EQ(chains[0].settings->tcp_proxy.access_logs.items.get(), chains[2].settings->tcp_proxy.access_logs.items.get());
}

}  // namespace
}  // namespace ewgw
