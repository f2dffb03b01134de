// Proves the test-support peers work on their own (no gateway in between), so a failing
// gateway integration test points at the gateway, not at its test harness.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>

#include "test/support/certs.h"
#include "test/support/client_hello_bytes.h"
#include "test/support/tcp_util.h"
#include "test/support/tls_client.h"
#include "test/support/tls_server.h"

namespace ewgw::test {
namespace {

using std::chrono::milliseconds;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr const char* istio_sni = "outbound_.5000_._.helloworld.sample.svc.cluster.local";
constexpr const char* server_spiffe = "spiffe://cluster.local/ns/sample/sa/helloworld";
constexpr const char* client_spiffe = "spiffe://cluster.local/ns/sample/sa/sleep";

// One PKI for the whole suite: generation is cheap, but sharing keeps each test about the
// behaviour it checks.
class support_test : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    pki_ = new test_pki("support");
    other_pki_ = new test_pki("other");
    server_leaf_ = new leaf_cert(pki_->make_leaf(
        "helloworld", {istio_sni, "helloworld.sample.svc.cluster.local", server_spiffe}, cert_usage::server));
    client_leaf_ = new leaf_cert(pki_->make_leaf("sleep", {client_spiffe}, cert_usage::client));
  }
  static void TearDownTestSuite() {
    delete client_leaf_;
    delete server_leaf_;
    delete other_pki_;
    delete pki_;
  }

  static tls_server_options server_options(bool require_client_cert = false) {
    tls_server_options o;
    o.set_identity(*server_leaf_);
    o.require_client_cert = require_client_cert;
    return o;
  }

  static tls_client_options client_options(std::uint16_t port, bool with_client_cert = false) {
    tls_client_options o;
    o.port = port;
    o.sni = istio_sni;
    o.root = pki_->root_pem();
    o.expected_server_name = istio_sni;
    if (with_client_cert) {
      o.cert_chain = client_leaf_->chain;
      o.key = client_leaf_->key;
    }
    return o;
  }

  static inline test_pki* pki_ = nullptr;
  static inline test_pki* other_pki_ = nullptr;
  static inline leaf_cert* server_leaf_ = nullptr;
  static inline leaf_cert* client_leaf_ = nullptr;
};

TEST_F(support_test, mutual_tls_verified_both_ways) {
  tls_test_server server(server_options(/*require_client_cert=*/true));
  auto options = client_options(server.port(), /*with_client_cert=*/true);
  options.payload = "ping";
  const tls_client_result r = run_tls_client(options);

  ASSERT_TRUE(r.success) << r.error;
  EXPECT_TRUE(r.echo_matched);
  EXPECT_TRUE(r.server_closed_cleanly);
  EXPECT_EQ(r.server_subject, "helloworld");
  EXPECT_THAT(r.server_sans, Contains(std::string("DNS:") + istio_sni));
  EXPECT_THAT(r.server_sans, Contains(std::string("URI:") + server_spiffe));
  EXPECT_EQ(r.tls_version, "TLSv1.3");

  ASSERT_TRUE(server.wait_for_finished(1));
  EXPECT_EQ(server.handshakes_completed(), 1u);
  EXPECT_EQ(server.last_client_subject(), "sleep");
  const auto c = server.connections().at(0);
  EXPECT_THAT(c.client_sans, Contains(std::string("URI:") + client_spiffe));
  EXPECT_EQ(c.bytes_received, 4u);
  EXPECT_TRUE(c.close_notify_received);
}

TEST_F(support_test, tls12_works_too) {
  auto so = server_options(true);
  so.max_version = tls_version::tls1_2;
  tls_test_server server(so);
  auto options = client_options(server.port(), true);
  options.payload = "over TLS 1.2";
  const auto r = run_tls_client(options);
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_EQ(r.tls_version, "TLSv1.2");
  EXPECT_EQ(server.last_client_subject(), "sleep");
}

TEST_F(support_test, client_rejects_server_from_another_root) {
  tls_test_server server(server_options());
  auto options = client_options(server.port());
  options.root = other_pki_->root_pem();
  const auto r = run_tls_client(options);
  EXPECT_FALSE(r.success);
  EXPECT_TRUE(r.connected);
  EXPECT_FALSE(r.handshake_ok);
  EXPECT_THAT(r.error, HasSubstr("certificate verify failed"));
  ASSERT_TRUE(server.wait_for_handshake_failures(1));
  EXPECT_EQ(server.handshakes_completed(), 0u);
}

TEST_F(support_test, server_rejects_client_from_another_root) {
  tls_test_server server(server_options(true));
  auto options = client_options(server.port());
  const leaf_cert stranger = other_pki_->make_leaf("stranger", {client_spiffe}, cert_usage::client);
  options.cert_chain = stranger.chain;
  options.key = stranger.key;
  options.payload = "let me in";
  const auto r = run_tls_client(options);
  EXPECT_FALSE(r.success);
  ASSERT_TRUE(server.wait_for_handshake_failures(1));
  EXPECT_THAT(server.last_handshake_error(), HasSubstr("certificate verify failed"));
  EXPECT_EQ(server.handshakes_completed(), 0u);
}

TEST_F(support_test, server_rejects_client_without_certificate) {
  tls_test_server server(server_options(true));
  // No payload: with TLS 1.3 the rejection arrives after the client's handshake "completed",
  // and run_tls_client must still report it (it waits for the server's close).
  const auto r = run_tls_client(client_options(server.port(), /*with_client_cert=*/false));
  EXPECT_FALSE(r.success);
  EXPECT_THAT(r.error, HasSubstr("certificate required"));
  ASSERT_TRUE(server.wait_for_handshake_failures(1));
  EXPECT_THAT(server.last_handshake_error(), HasSubstr("peer did not return a certificate"));
}

TEST_F(support_test, server_rejects_client_that_omits_its_intermediate) {
  tls_test_server server(server_options(true));
  auto options = client_options(server.port());
  options.cert_chain = client_leaf_->cert;  // leaf only
  options.key = client_leaf_->key;
  options.payload = "x";
  const auto r = run_tls_client(options);
  EXPECT_FALSE(r.success);
  ASSERT_TRUE(server.wait_for_handshake_failures(1));
  EXPECT_THAT(server.last_handshake_error(), HasSubstr("unable to get local issuer certificate"));
}

TEST_F(support_test, client_rejects_wrong_hostname) {
  tls_test_server server(server_options());
  auto options = client_options(server.port());
  options.expected_server_name = "outbound_.5000_._.goodbye.sample.svc.cluster.local";
  const auto r = run_tls_client(options);
  EXPECT_FALSE(r.success);
  EXPECT_THAT(r.error, HasSubstr("hostname mismatch"));
}

// Pins how OpenSSL hostname verification treats Istio's underscore names (see tls_client.h):
// exact SANs with '_' match; a wildcard never covers a label containing '_'.
TEST_F(support_test, hostname_verification_with_underscores) {
  const leaf_cert wildcard = pki_->make_leaf("wildcard", {"*.helloworld.sample.svc.cluster.local"}, cert_usage::server);
  auto so = server_options();
  so.cert_chain = wildcard.chain;
  so.key = wildcard.key;
  tls_test_server wildcard_server(so);
  auto options = client_options(wildcard_server.port());
  options.expected_server_name = "v1-a.helloworld.sample.svc.cluster.local";
  EXPECT_TRUE(run_tls_client(options).success);
  options.expected_server_name = "v1_a.helloworld.sample.svc.cluster.local";
  const auto r = run_tls_client(options);
  EXPECT_FALSE(r.success);
  EXPECT_THAT(r.error, HasSubstr("hostname mismatch"));

  tls_test_server exact_server(server_options());
  options = client_options(exact_server.port());  // expects istio_sni, which has underscores
  const auto exact = run_tls_client(options);
  EXPECT_TRUE(exact.success) << exact.error;
  options.expected_server_name = "OUTBOUND_.5000_._.HelloWorld.sample.svc.cluster.local";
  EXPECT_TRUE(run_tls_client(options).success) << "DNS names compare case-insensitively";
}

TEST_F(support_test, ip_san_verification) {
  const leaf_cert ip_leaf = pki_->make_leaf("loopback", {"127.0.0.1"}, cert_usage::server);
  auto so = server_options();
  so.cert_chain = ip_leaf.chain;
  so.key = ip_leaf.key;
  tls_test_server server(so);
  auto options = client_options(server.port());
  options.expected_server_name = "127.0.0.1";
  const auto r = run_tls_client(options);
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_THAT(r.server_sans, Contains("IP:127.0.0.1"));
}

TEST_F(support_test, server_sees_sni_and_selects_first_client_alpn_it_supports) {
  tls_test_server server(server_options(true));
  auto options = client_options(server.port(), true);
  options.alpn = {"istio-peer-exchange", "istio"};
  auto r = run_tls_client(options);
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_EQ(r.alpn, "istio-peer-exchange");
  EXPECT_EQ(server.last_sni(), istio_sni);
  EXPECT_EQ(server.last_alpn(), "istio-peer-exchange");

  // Client preference, not server preference: "istio" comes before "istio-http/1.1" on the wire.
  options.alpn = {"h2", "istio-http/1.1", "istio"};
  r = run_tls_client(options);
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_EQ(r.alpn, "istio-http/1.1");

  // No overlap: the handshake goes ahead without ALPN.
  options.alpn = {"h2", "spdy/3"};
  options.sni = "other.example";
  options.expected_server_name.clear();
  r = run_tls_client(options);
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_THAT(r.alpn, IsEmpty());
  EXPECT_EQ(server.last_sni(), "other.example");
  ASSERT_TRUE(server.wait_for_finished(3));
  EXPECT_THAT(server.connections().at(2).alpn, IsEmpty());

  // No SNI at all.
  options.sni.clear();
  options.alpn.clear();
  r = run_tls_client(options);
  ASSERT_TRUE(r.success) << r.error;
  ASSERT_TRUE(server.wait_for_finished(4));
  EXPECT_THAT(server.connections().at(3).sni, IsEmpty());
}

TEST_F(support_test, echo_of_one_mebibyte_is_intact) {
  tls_test_server server(server_options(true));
  auto options = client_options(server.port(), true);
  std::string payload(1 << 20, '\0');
  std::mt19937 rng(42);
  for (auto& ch : payload) ch = static_cast<char>(rng());
  options.payload = payload;
  const auto r = run_tls_client(options);
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_TRUE(r.echo_matched);
  ASSERT_TRUE(server.wait_for_finished(1));
  EXPECT_EQ(server.connections().at(0).bytes_received, payload.size());
  EXPECT_EQ(server.connections().at(0).bytes_sent, payload.size());
}

TEST_F(support_test, tls_connection_interleaves_steps) {
  tls_test_server server(server_options(true));
  tls_connection c(client_options(server.port(), true));
  ASSERT_TRUE(c.connect()) << c.error();
  ASSERT_TRUE(c.handshake()) << c.error();
  ASSERT_TRUE(server.wait_for_handshakes(1));
  EXPECT_EQ(server.last_client_subject(), "sleep");
  std::string got;
  for (const std::string msg : {"first", "second message", "third"}) {
    ASSERT_TRUE(c.write(msg)) << c.error();
    ASSERT_TRUE(c.read_exact(msg.size(), got)) << c.error();
    EXPECT_EQ(got, msg);
  }
  ASSERT_TRUE(c.shutdown()) << c.error();
  std::string rest;
  EXPECT_TRUE(c.read_to_end(rest)) << c.error();
  EXPECT_TRUE(rest.empty());
  EXPECT_TRUE(c.closed_cleanly());
}

TEST_F(support_test, read_times_out_instead_of_hanging) {
  tls_test_server server(server_options());
  auto options = client_options(server.port());
  options.timeout = milliseconds(200);
  tls_connection c(options);
  ASSERT_TRUE(c.connect());
  ASSERT_TRUE(c.handshake()) << c.error();
  std::string got;
  const auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(c.read_exact(1, got));
  EXPECT_THAT(c.error(), HasSubstr("timed out"));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(support_test, greet_returns_the_body) {
  auto so = server_options();
  so.behaviour = server_behaviour::greet;
  so.greet_body = "Hello version: v1, instance: helloworld-v1\n";
  tls_test_server server(so);
  auto options = client_options(server.port());
  options.alpn = {"h2", "http/1.1"};
  options.payload = "GET /hello HTTP/1.1\r\nHost: helloworld\r\n\r\n";
  options.read_until_close = true;
  const auto r = run_tls_client(options);
  ASSERT_TRUE(r.success) << r.error;
  EXPECT_EQ(r.alpn, "http/1.1");
  EXPECT_THAT(r.response, HasSubstr("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(r.response, HasSubstr("Content-Length: 43\r\n"));
  EXPECT_THAT(r.response, ::testing::EndsWith("\r\n\r\nHello version: v1, instance: helloworld-v1\n"));
  EXPECT_TRUE(r.server_closed_cleanly);

  // A single non-HTTP line is a complete request too.
  options.payload = "hi\n";
  const auto line = run_tls_client(options);
  ASSERT_TRUE(line.success) << line.error;
  EXPECT_THAT(line.response, ::testing::EndsWith("helloworld-v1\n"));
}

TEST_F(support_test, stop_is_prompt_with_idle_connections_open) {
  auto server = std::make_unique<tls_test_server>(server_options());
  tls_connection idle(client_options(server->port()));
  ASSERT_TRUE(idle.connect());
  ASSERT_TRUE(idle.handshake()) << idle.error();
  const int raw = connect_tcp(server->port());  // connected, never says hello
  ASSERT_GE(raw, 0);
  unique_fd raw_fd(raw);
  ASSERT_TRUE(server->wait_for_handshakes(1));
  const auto start = std::chrono::steady_clock::now();
  server.reset();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(3));
  EXPECT_TRUE(wait_closed(raw_fd.get(), milliseconds(1000)));
}

TEST_F(support_test, pem_files_are_written) {
  const auto dir = std::filesystem::temp_directory_path() / ("ewgw-support-test-" + std::to_string(::getpid()));
  write_leaf_files(dir, "server", *server_leaf_);
  for (const char* name : {"server.crt", "server-leaf.crt", "server.key", "root.crt"}) {
    EXPECT_TRUE(std::filesystem::exists(dir / name)) << name;
  }
  std::ifstream chain(dir / "server.crt");
  const std::string text((std::istreambuf_iterator<char>(chain)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, server_leaf_->chain);
  const auto perms = std::filesystem::status(dir / "server.key").permissions();
  EXPECT_EQ(perms & (std::filesystem::perms::group_all | std::filesystem::perms::others_all),
            std::filesystem::perms::none);
  std::filesystem::remove_all(dir);
}

TEST_F(support_test, leaf_chain_is_leaf_then_intermediate) {
  EXPECT_EQ(server_leaf_->chain, server_leaf_->cert + pki_->intermediate_pem());
  EXPECT_EQ(server_leaf_->root, pki_->root_pem());
  EXPECT_NE(pki_->root_pem(), other_pki_->root_pem());
}

TEST(tcp_util_test, echo_server_answers_half_close_after_echoing) {
  tcp_echo_server server;
  unique_fd fd(connect_tcp(server.port()));
  ASSERT_TRUE(fd);
  ASSERT_TRUE(send_all(fd.get(), "hello "));
  ASSERT_TRUE(send_all(fd.get(), "world"));
  ASSERT_EQ(::shutdown(fd.get(), SHUT_WR), 0);
  const read_result r = read_until_eof(fd.get());
  EXPECT_EQ(r.bytes, "hello world");
  EXPECT_TRUE(r.closed_cleanly);
  EXPECT_FALSE(r.timed_out);
  EXPECT_FALSE(r.reset);
  EXPECT_EQ(server.half_closes(), 1u);
  EXPECT_EQ(server.bytes_echoed(), 11u);
}

TEST(tcp_util_test, echo_server_keeps_echoing_until_half_close) {
  tcp_echo_server server;
  unique_fd fd(connect_tcp(server.port()));
  ASSERT_TRUE(fd);
  std::string got;
  ASSERT_TRUE(send_all(fd.get(), "abc"));
  ASSERT_TRUE(read_exact(fd.get(), 3, got));
  EXPECT_EQ(got, "abc");
  // Nothing more arrives while the client keeps its side open.
  const read_result idle = read_until_eof(fd.get(), milliseconds(100));
  EXPECT_TRUE(idle.timed_out);
  EXPECT_TRUE(idle.bytes.empty());
}

TEST(tcp_util_test, unused_port_refuses) {
  const std::uint16_t port = unused_port();
  ASSERT_NE(port, 0);
  errno = 0;
  const int fd = connect_tcp(port, milliseconds(1000));
  EXPECT_EQ(fd, -1);
  EXPECT_EQ(errno, ECONNREFUSED);
  if (fd >= 0) ::close(fd);
}

TEST(tcp_util_test, sink_records_and_answers) {
  tcp_sink_server sink;
  unique_fd a(connect_tcp(sink.port()));
  ASSERT_TRUE(a);
  ASSERT_TRUE(sink.wait_for_connections(1));
  unique_fd b(connect_tcp(sink.port()));
  ASSERT_TRUE(b);
  ASSERT_TRUE(sink.wait_for_connections(2));

  ASSERT_TRUE(send_all(a.get(), "to sink"));
  ASSERT_TRUE(sink.wait_for_bytes(0, 7));
  EXPECT_EQ(sink.received(0), "to sink");
  EXPECT_EQ(sink.received(1), "");

  // Client half-closes; the sink can still answer, then close.
  ASSERT_EQ(::shutdown(a.get(), SHUT_WR), 0);
  ASSERT_TRUE(sink.wait_peer_closed(0));
  ASSERT_TRUE(sink.send(0, "reply"));
  sink.close(0);
  const read_result r = read_until_eof(a.get());
  EXPECT_EQ(r.bytes, "reply");
  EXPECT_TRUE(r.closed_cleanly);

  // Reset: the client sees ECONNRESET.
  sink.reset(1);
  const read_result rb = read_until_eof(b.get());
  EXPECT_TRUE(rb.reset);
  EXPECT_FALSE(sink.send(1, "gone"));
}

TEST(tcp_util_test, wait_closed_times_out_on_open_connection) {
  tcp_sink_server sink;
  unique_fd fd(connect_tcp(sink.port()));
  ASSERT_TRUE(fd);
  ASSERT_TRUE(sink.wait_for_connections(1));
  EXPECT_FALSE(wait_closed(fd.get(), milliseconds(100)));
  sink.close(0);
  EXPECT_TRUE(wait_closed(fd.get(), milliseconds(2000)));
}

TEST(client_hello_test, carries_sni_and_alpn) {
  const auto hello = make_client_hello(istio_sni, {"istio-peer-exchange", "istio"});
  ASSERT_GT(hello.size(), 5u);
  EXPECT_EQ(hello[0], 0x16);  // handshake record
  EXPECT_EQ(hello[1], 0x03);
  const std::size_t record_len = (std::size_t{hello[3]} << 8) | hello[4];
  EXPECT_EQ(hello.size(), 5 + record_len);
  EXPECT_EQ(hello[5], 0x01);  // ClientHello
  const std::string bytes(hello.begin(), hello.end());
  EXPECT_THAT(bytes, HasSubstr(istio_sni));
  EXPECT_THAT(bytes, HasSubstr("\x13istio-peer-exchange\x05istio"));
  EXPECT_THAT(bytes, HasSubstr(std::string("\x00\x2b", 2))) << "supported_versions extension (TLS 1.3)";
}

TEST(client_hello_test, tls12_only_and_no_extensions_requested) {
  const auto hello = make_client_hello("", {}, /*tls13=*/false);
  ASSERT_GT(hello.size(), 5u);
  EXPECT_EQ(hello[5], 0x01);
  EXPECT_NE(make_client_hello("", {}, false), hello) << "fresh random each time";
}

}  // namespace
}  // namespace ewgw::test
