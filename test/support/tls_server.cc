#include "test/support/tls_server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <stdexcept>

#include "test/support/openssl_util.h"

namespace ewgw::test {

using detail::ssl_ctx_ptr;
using detail::ssl_ptr;
using detail::throw_openssl;

struct tls_test_server::state {
  tls_server_options options;
  ssl_ctx_ptr ctx;

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::vector<tls_server_connection> records;  // by accept index
  std::size_t handshakes = 0;
  std::size_t failures = 0;
  std::size_t finished = 0;
  std::string last_sni;
  std::string last_alpn;
  std::string last_client_subject;
  std::string last_error;

  // Reached from OpenSSL callbacks through SSL_get_app_data.
  struct callback_context {
    state* self;
    std::size_t index;
  };

  tls_server_connection& record_locked(std::size_t index) {
    if (records.size() <= index) records.resize(index + 1);
    records[index].index = index;
    return records[index];
  }

  static int on_servername(SSL* ssl, int* alert, void* arg);
  static int on_alpn(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                     unsigned int inlen, void* arg);
  void serve(int fd, std::size_t index);
  void echo(SSL* ssl, std::size_t index, bool& clean);
  void greet(SSL* ssl, std::size_t index, bool& clean);
  void io_error(std::size_t index, SSL* ssl, int ret, bool& clean);
  void add_bytes(std::size_t index, std::uint64_t received, std::uint64_t sent);
};

namespace {

// close_notify (when the connection is still healthy), then FIN, then read and discard until
// the client closes (bounded). Closing with unread bytes in the receive buffer — e.g. the
// client's own close_notify arriving late — would send RST, and a client that has not yet read
// our last response would lose it.
void finish(SSL* ssl, int fd, bool send_close_notify) {
  if (send_close_notify) {
    SSL_shutdown(ssl);
    ERR_clear_error();
  }
  ::shutdown(fd, SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
  char buf[16 * 1024];
  while (std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) return;
  }
}

}  // namespace

int tls_test_server::state::on_servername(SSL* ssl, int* /*alert*/, void* /*arg*/) {
  auto* cb = static_cast<callback_context*>(SSL_get_app_data(ssl));
  const char* name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
  if (cb != nullptr && name != nullptr) {
    std::lock_guard lock(cb->self->mu);
    cb->self->record_locked(cb->index).sni = name;
    cb->self->last_sni = name;
  }
  return SSL_TLSEXT_ERR_OK;
}

// Client preference: the first protocol the client offered that the server supports. Istio
// sidecars list "istio-peer-exchange" first and expect it back; OpenSSL's
// SSL_select_next_proto would use server preference instead.
int tls_test_server::state::on_alpn(SSL* /*ssl*/, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                                    unsigned int inlen, void* arg) {
  const auto* supported = static_cast<const std::vector<std::string>*>(arg);
  for (unsigned int i = 0; i < inlen;) {
    const unsigned int len = in[i];
    if (len == 0 || i + 1 + len > inlen) break;  // malformed list: OpenSSL should have rejected it
    const std::string_view offered(reinterpret_cast<const char*>(in + i + 1), len);
    if (std::find(supported->begin(), supported->end(), offered) != supported->end()) {
      *out = in + i + 1;
      *outlen = static_cast<unsigned char>(len);
      return SSL_TLSEXT_ERR_OK;
    }
    i += 1 + len;
  }
  return SSL_TLSEXT_ERR_NOACK;
}

tls_test_server::tls_test_server(tls_server_options options) : state_(std::make_unique<state>()) {
  ignore_sigpipe();
  state& s = *state_;
  s.options = std::move(options);
  const tls_server_options& o = s.options;

  s.ctx.reset(SSL_CTX_new(TLS_server_method()));
  if (!s.ctx) throw_openssl("SSL_CTX_new");
  SSL_CTX* ctx = s.ctx.get();
  detail::set_versions(ctx, o.min_version, o.max_version);
  detail::use_cert_chain(ctx, o.cert_chain, o.key);
  if (o.require_client_cert) {
    if (o.client_root.empty()) throw std::runtime_error("tls_test_server: require_client_cert needs client_root");
    // Root only, no intermediates: the client has to present its chain.
    SSL_CTX_set_cert_store(ctx, detail::make_trust_store(o.client_root).release());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
    // Without a session id context, resuming a session that carried a client cert fails.
    static const unsigned char sid_ctx[] = "ewgw-test";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
  }
  SSL_CTX_set_tlsext_servername_callback(ctx, state::on_servername);
  if (!o.alpn.empty()) {
    detail::alpn_wire(o.alpn);  // validates the names now rather than mid-handshake
    SSL_CTX_set_alpn_select_cb(ctx, state::on_alpn, &s.options.alpn);
  }

  listener_ = std::make_unique<threaded_listener>([&s](int fd, std::size_t index) { s.serve(fd, index); }, o.port,
                                                  o.io_timeout);
}

tls_test_server::~tls_test_server() { stop(); }

void tls_test_server::stop() {
  if (listener_) listener_->stop();
}

std::uint16_t tls_test_server::port() const { return listener_->port(); }
std::size_t tls_test_server::connections_accepted() const { return listener_->connections_accepted(); }

std::size_t tls_test_server::handshakes_completed() const {
  std::lock_guard lock(state_->mu);
  return state_->handshakes;
}
std::size_t tls_test_server::handshake_failures() const {
  std::lock_guard lock(state_->mu);
  return state_->failures;
}
std::string tls_test_server::last_sni() const {
  std::lock_guard lock(state_->mu);
  return state_->last_sni;
}
std::string tls_test_server::last_alpn() const {
  std::lock_guard lock(state_->mu);
  return state_->last_alpn;
}
std::string tls_test_server::last_client_subject() const {
  std::lock_guard lock(state_->mu);
  return state_->last_client_subject;
}
std::string tls_test_server::last_handshake_error() const {
  std::lock_guard lock(state_->mu);
  return state_->last_error;
}
std::vector<tls_server_connection> tls_test_server::connections() const {
  std::lock_guard lock(state_->mu);
  return state_->records;
}

bool tls_test_server::wait_for_handshakes(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mu);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->handshakes >= n; });
}
bool tls_test_server::wait_for_handshake_failures(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mu);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->failures >= n; });
}
bool tls_test_server::wait_for_finished(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(state_->mu);
  return state_->cv.wait_for(lock, timeout, [&] { return state_->finished >= n; });
}

void tls_test_server::state::serve(int fd, std::size_t index) {
  {
    std::lock_guard lock(mu);
    record_locked(index);
  }
  callback_context cb{this, index};
  ssl_ptr ssl(SSL_new(ctx.get()));
  bool clean = false;
  if (ssl && SSL_set_fd(ssl.get(), fd) == 1) {
    SSL_set_app_data(ssl.get(), &cb);
    // Blocking socket: SO_RCVTIMEO/SO_SNDTIMEO (io_timeout) bound every step of the handshake.
    const int ret = SSL_accept(ssl.get());
    if (ret == 1) {
      X509* peer = SSL_get0_peer_certificate(ssl.get());
      const unsigned char* alpn_data = nullptr;
      unsigned int alpn_len = 0;
      SSL_get0_alpn_selected(ssl.get(), &alpn_data, &alpn_len);
      {
        std::lock_guard lock(mu);
        tls_server_connection& r = record_locked(index);
        r.handshake_ok = true;
        if (alpn_data != nullptr) r.alpn.assign(reinterpret_cast<const char*>(alpn_data), alpn_len);
        r.tls_version = SSL_get_version(ssl.get());
        if (peer != nullptr) {
          r.client_subject = detail::common_name(peer);
          r.client_sans = detail::subject_alt_names(peer);
        }
        ++handshakes;
        last_alpn = r.alpn;
        last_client_subject = r.client_subject;
      }
      cv.notify_all();
      clean = true;
      if (options.behaviour == server_behaviour::echo) {
        echo(ssl.get(), index, clean);
      } else {
        greet(ssl.get(), index, clean);
      }
    } else {
      const std::string error = detail::describe_ssl_error(ssl.get(), ret);
      {
        std::lock_guard lock(mu);
        record_locked(index).handshake_error = error;
        ++failures;
        last_error = error;
      }
      cv.notify_all();
    }
  } else {
    {
      std::lock_guard lock(mu);
      record_locked(index).handshake_error = "SSL_new/SSL_set_fd: " + detail::drain_errors();
      ++failures;
    }
    cv.notify_all();
  }
  if (ssl) finish(ssl.get(), fd, clean);
  ERR_clear_error();

  tls_server_connection final_record;
  {
    std::lock_guard lock(mu);
    tls_server_connection& r = record_locked(index);
    r.finished = true;
    ++finished;
    final_record = r;
  }
  cv.notify_all();
  if (options.on_connection_end) options.on_connection_end(final_record);
}

void tls_test_server::state::io_error(std::size_t index, SSL* ssl, int ret, bool& clean) {
  const int code = SSL_get_error(ssl, ret);
  std::string error = detail::describe_ssl_error(ssl, ret);
  // After a fatal error OpenSSL forbids SSL_shutdown; after a clean close_notify it is expected.
  clean = code == SSL_ERROR_ZERO_RETURN;
  std::lock_guard lock(mu);
  tls_server_connection& r = record_locked(index);
  if (clean) {
    r.close_notify_received = true;
  } else {
    r.io_error = error;
  }
}

void tls_test_server::state::add_bytes(std::size_t index, std::uint64_t received, std::uint64_t sent) {
  std::lock_guard lock(mu);
  tls_server_connection& r = record_locked(index);
  r.bytes_received += received;
  r.bytes_sent += sent;
}

// SSL_write on a blocking socket writes everything (SSL_MODE_AUTO_RETRY and no partial writes
// by default) or fails.
namespace {
bool write_all(SSL* ssl, const char* data, std::size_t size, int& ret) {
  ret = size == 0 ? 1 : SSL_write(ssl, data, static_cast<int>(size));
  return ret > 0;
}
}  // namespace

void tls_test_server::state::echo(SSL* ssl, std::size_t index, bool& clean) {
  char buf[16 * 1024];
  for (;;) {
    const int n = SSL_read(ssl, buf, sizeof buf);
    if (n <= 0) {
      io_error(index, ssl, n, clean);
      return;
    }
    int ret = 0;
    if (!write_all(ssl, buf, static_cast<std::size_t>(n), ret)) {
      add_bytes(index, static_cast<std::uint64_t>(n), 0);
      io_error(index, ssl, ret, clean);
      return;
    }
    add_bytes(index, static_cast<std::uint64_t>(n), static_cast<std::uint64_t>(n));
  }
}

void tls_test_server::state::greet(SSL* ssl, std::size_t index, bool& clean) {
  std::string request;
  char buf[16 * 1024];
  const auto complete = [&] {
    if (request.find("\r\n\r\n") != std::string::npos) return true;
    const auto eol = request.find('\n');
    // A first line that is not an HTTP request line ends the request by itself, so line-based
    // clients (`echo hi | openssl s_client ...`) get an answer too.
    return eol != std::string::npos && request.substr(0, eol).find(" HTTP/") == std::string::npos;
  };
  while (!complete()) {
    if (request.size() > 64 * 1024) break;  // nonsense; answer anyway rather than read forever
    const int n = SSL_read(ssl, buf, sizeof buf);
    if (n <= 0) {
      io_error(index, ssl, n, clean);
      return;
    }
    request.append(buf, static_cast<std::size_t>(n));
    add_bytes(index, static_cast<std::uint64_t>(n), 0);
  }
  const std::string& body = options.greet_body;
  const std::string response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " +
                               std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" + body;
  int ret = 0;
  if (!write_all(ssl, response.data(), response.size(), ret)) {
    io_error(index, ssl, ret, clean);
    return;
  }
  add_bytes(index, 0, response.size());
}

}  // namespace ewgw::test
