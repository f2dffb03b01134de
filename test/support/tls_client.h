// A real TLS client for integration tests: connects over TCP (to the gateway or straight to a
// tls_test_server), sends SNI and ALPN, presents an optional client certificate, and verifies
// the server's chain against a root and its name against an expected host name.
//
// Hostname verification uses OpenSSL (X509_VERIFY_PARAM_set1_host with
// X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS). OpenSSL compares a non-wildcard DNS SAN byte for byte
// (ASCII case-insensitively) and does not restrict the characters in it, so Istio's SNI names
// with underscores ("outbound_.5000_._.helloworld.sample.svc.cluster.local") verify when the
// certificate carries exactly that SAN. A wildcard SAN ("*.sample.svc.cluster.local") only
// matches a label made of letters, digits and '-', so it never covers a label containing '_'.
// support_test pins both behaviours.
//
// The socket is non-blocking and every step waits with poll(), so nothing blocks longer than
// the configured timeout.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "test/support/certs.h"
#include "test/support/tcp_util.h"
#include "test/support/tls_common.h"

namespace ewgw::test {

struct tls_client_options {
  std::uint16_t port = 0;                // on 127.0.0.1
  std::string sni;                       // server_name to send; "" sends none
  std::vector<std::string> alpn;         // offered in this order; empty sends none
  std::string cert_chain;                // PEM client certificate + intermediates; "" presents none
  std::string key;                       // PEM key for cert_chain
  std::string root;                      // PEM trust anchor(s) for the server; "" skips verification
  // Name the server certificate must match (DNS SAN, or IP SAN for an IP literal). "" checks
  // the chain only. Not derived from sni on purpose: tests of SNI routing often send a name
  // the certificate is not for.
  std::string expected_server_name;
  tls_version min_version = tls_version::tls1_2;
  tls_version max_version = tls_version::tls1_3;
  // Longest wait for any one step: connect, handshake, or a stall while reading or writing.
  std::chrono::milliseconds timeout = default_io_timeout;

  // For run_tls_client: bytes to send after the handshake.
  std::string payload;
  // For run_tls_client: false expects payload echoed back (reads exactly payload.size()
  // bytes); true reads a response until the server closes (greet servers).
  bool read_until_close = false;

  // cert_chain and key from `leaf`, root from leaf.root.
  void set_identity(const leaf_cert& leaf) {
    cert_chain = leaf.chain;
    key = leaf.key;
    root = leaf.root;
  }
};

struct tls_client_result {
  bool success = false;          // every step below that applies succeeded
  std::string error;             // first failure, "" on success
  bool connected = false;
  bool handshake_ok = false;     // includes chain and hostname verification
  std::string server_subject;    // server certificate's subject CN
  std::vector<std::string> server_sans;  // "DNS:...", "URI:...", "IP:..."
  std::string alpn;              // negotiated protocol, "" if none
  std::string tls_version;       // "TLSv1.3", ...
  bool echo_matched = false;     // the payload came back byte for byte (echo mode)
  std::string response;          // what was read (read_until_close mode)
  bool server_closed_cleanly = false;  // the server ended with close_notify
};

// A client connection driven step by step, for tests that interleave I/O with checks on the
// gateway or the server. Each step returns false on failure and leaves the reason in error().
class tls_connection {
 public:
  // Builds the TLS context; throws std::runtime_error on bad PEM input.
  explicit tls_connection(tls_client_options options);
  ~tls_connection();  // closes the socket (without close_notify)
  tls_connection(const tls_connection&) = delete;
  tls_connection& operator=(const tls_connection&) = delete;

  bool connect();
  bool handshake();
  bool write(std::string_view data);
  // Replaces `out` with exactly n bytes; on failure `out` holds what arrived.
  bool read_exact(std::size_t n, std::string& out);
  // Writes `payload` while reading the same number of bytes back into `out`, so a large payload
  // cannot deadlock against an echo peer whose buffers fill up.
  bool exchange(std::string_view payload, std::string& out);
  // Appends everything until the server closes. True when it closed with close_notify or a
  // bare TCP EOF (closed_cleanly() tells them apart); false on a TLS alert, error or timeout.
  bool read_to_end(std::string& out);
  // Sends close_notify, then half-closes TCP (SHUT_WR). The server's reply can still be read.
  bool shutdown();
  void close();

  const std::string& error() const;
  int fd() const;
  bool closed_cleanly() const;  // the server's close_notify was received

  // Valid after handshake().
  std::string server_subject() const;
  std::vector<std::string> server_sans() const;
  std::string alpn() const;
  std::string tls_version() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// connect, handshake, then (if payload is set) exchange it or send it and read until close,
// then shutdown and wait for the server to close. Never throws for connection-level failures;
// those end up in result.error. Throws std::runtime_error for bad PEM input.
tls_client_result run_tls_client(const tls_client_options& options);

}  // namespace ewgw::test
