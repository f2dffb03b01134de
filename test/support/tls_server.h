// A real TLS server for integration tests: the upstream behind the gateway in SNI-passthrough
// tests. It terminates TLS with OpenSSL, so a test can prove the gateway passed the client's
// ClientHello through untouched (SNI, ALPN and the client certificate all reach this server).
//
// Listens on 127.0.0.1, one thread per connection (see threaded_listener). Setup failures
// (bad PEM, port in use) throw std::runtime_error; per-connection failures are recorded.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "test/support/certs.h"
#include "test/support/tcp_util.h"
#include "test/support/tls_common.h"

namespace ewgw::test {

enum class server_behaviour : std::uint8_t {
  // Echo application data until the client closes, then close_notify and close.
  echo,
  // Read one request (an HTTP request up to "\r\n\r\n", or one line if the first line is not
  // HTTP), answer "HTTP/1.1 200 OK" with greet_body, close_notify and close. For curl.
  greet,
};

// What the server saw on one connection.
struct tls_server_connection {
  std::size_t index = 0;       // accept order, from 0
  bool handshake_ok = false;
  std::string handshake_error;  // OpenSSL's reason (and the verify error), "" on success
  std::string sni;              // server_name the client sent, "" if none
  std::string alpn;             // protocol selected, "" if none
  std::string tls_version;      // "TLSv1.3", ...
  std::string client_subject;   // verified client certificate's subject CN, "" if none
  std::vector<std::string> client_sans;  // its SANs: "DNS:...", "URI:spiffe://..."
  std::uint64_t bytes_received = 0;      // application data
  std::uint64_t bytes_sent = 0;
  bool close_notify_received = false;    // the client ended with close_notify, not a bare FIN
  std::string io_error;                  // why the connection ended, if not by close_notify
  bool finished = false;                 // the connection thread is done with it
};

struct tls_server_options {
  std::string cert_chain;   // PEM: leaf first, then intermediates
  std::string key;          // PEM private key of the leaf
  std::string client_root;  // PEM trust anchor(s) for client certificates
  // Request a client certificate, fail the handshake without one, and verify it against
  // client_root alone — so the client must send its intermediate.
  bool require_client_cert = false;
  server_behaviour behaviour = server_behaviour::echo;
  std::string greet_body = "Hello\n";
  // Selection picks the first protocol the *client* offered that appears here; no overlap
  // means no ALPN in the answer (not a failure). Empty: ALPN is not negotiated at all.
  std::vector<std::string> alpn = istio_alpns();
  tls_version min_version = tls_version::tls1_2;
  tls_version max_version = tls_version::tls1_3;
  std::uint16_t port = 0;  // 0: ephemeral
  // Bounds each blocking read/write and the handshake; idle connections close after it.
  std::chrono::milliseconds io_timeout = std::chrono::seconds(30);
  // Called on the connection's thread when it ends (after the record is final).
  std::function<void(const tls_server_connection&)> on_connection_end;

  // cert_chain and key from `leaf`, client_root from leaf.root.
  void set_identity(const leaf_cert& leaf) {
    cert_chain = leaf.chain;
    key = leaf.key;
    client_root = leaf.root;
  }
};

class tls_test_server {
 public:
  explicit tls_test_server(tls_server_options options);
  ~tls_test_server();
  tls_test_server(const tls_test_server&) = delete;
  tls_test_server& operator=(const tls_test_server&) = delete;

  std::uint16_t port() const;

  std::size_t connections_accepted() const;
  std::size_t handshakes_completed() const;
  std::size_t handshake_failures() const;
  // From the most recent ClientHello (recorded before the handshake completes or fails).
  std::string last_sni() const;
  // From the most recent successful handshake.
  std::string last_alpn() const;
  std::string last_client_subject() const;  // CN
  std::string last_handshake_error() const;
  // A snapshot of every connection so far, in accept order.
  std::vector<tls_server_connection> connections() const;

  // Wait until that many handshakes completed / failed / connections finished.
  bool wait_for_handshakes(std::size_t n, std::chrono::milliseconds timeout = default_io_timeout) const;
  bool wait_for_handshake_failures(std::size_t n, std::chrono::milliseconds timeout = default_io_timeout) const;
  bool wait_for_finished(std::size_t n, std::chrono::milliseconds timeout = default_io_timeout) const;

  // Stops accepting, shuts every open connection down and joins all threads.
  void stop();

 private:
  struct state;
  std::unique_ptr<state> state_;
  std::unique_ptr<threaded_listener> listener_;  // last: its threads use state_
};

}  // namespace ewgw::test
