#include "test/support/tls_client.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "test/support/openssl_util.h"

namespace ewgw::test {

using detail::ssl_ctx_ptr;
using detail::ssl_ptr;
using detail::throw_openssl;
using clock = std::chrono::steady_clock;

struct tls_connection::impl {
  tls_client_options options;
  ssl_ctx_ptr ctx;
  ssl_ptr ssl;
  unique_fd fd;
  std::string error;
  bool handshake_done = false;
  bool fatal = false;  // OpenSSL forbids SSL_shutdown after a fatal error
  bool closed_cleanly = false;
  bool write_shut = false;

  bool fail(std::string what) {
    error = std::move(what);
    return false;
  }

  // Fails with OpenSSL's explanation of `ret` from the last SSL_* call.
  bool fail_ssl(const char* step, int ret) {
    const int code = SSL_get_error(ssl.get(), ret);
    if (code == SSL_ERROR_SSL || code == SSL_ERROR_SYSCALL) fatal = true;
    return fail(std::string(step) + ": " + detail::describe_ssl_error(ssl.get(), ret));
  }

  // Waits for the direction OpenSSL asked for. False when `ret` is not a want-read/write (a
  // real failure) or the deadline passed; error is set either way.
  bool wait_for(const char* step, int ret, clock::time_point deadline) {
    const int code = SSL_get_error(ssl.get(), ret);
    short events = 0;
    if (code == SSL_ERROR_WANT_READ) events = POLLIN;
    if (code == SSL_ERROR_WANT_WRITE) events = POLLOUT;
    if (events == 0) return fail_ssl(step, ret);
    if (!detail::poll_until(fd.get(), events, deadline)) {
      return fail(std::string(step) + ": timed out after " + std::to_string(options.timeout.count()) + " ms");
    }
    return true;
  }

  bool ready(const char* step) {
    if (!handshake_done) return fail(std::string(step) + ": no completed handshake");
    return true;
  }
};

tls_connection::tls_connection(tls_client_options options) : impl_(std::make_unique<impl>()) {
  ignore_sigpipe();
  impl& s = *impl_;
  s.options = std::move(options);
  const tls_client_options& o = s.options;
  s.ctx.reset(SSL_CTX_new(TLS_client_method()));
  if (!s.ctx) throw_openssl("SSL_CTX_new");
  SSL_CTX* ctx = s.ctx.get();
  detail::set_versions(ctx, o.min_version, o.max_version);
  // Partial writes let a non-blocking write report progress; a moving buffer lets a retry after
  // WANT_WRITE come from a different std::string position without OpenSSL complaining.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!o.cert_chain.empty()) detail::use_cert_chain(ctx, o.cert_chain, o.key);
  if (!o.root.empty()) {
    SSL_CTX_set_cert_store(ctx, detail::make_trust_store(o.root).release());
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  if (!o.alpn.empty()) detail::alpn_wire(o.alpn);  // validates the names at setup
}

tls_connection::~tls_connection() = default;

bool tls_connection::connect() {
  impl& s = *impl_;
  const int fd = connect_tcp(s.options.port, s.options.timeout);
  if (fd < 0) {
    return s.fail("connect 127.0.0.1:" + std::to_string(s.options.port) + ": " + std::strerror(errno));
  }
  s.fd.reset(fd);
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  return true;
}

bool tls_connection::handshake() {
  impl& s = *impl_;
  const tls_client_options& o = s.options;
  if (!s.fd) return s.fail("handshake: not connected");
  ERR_clear_error();
  s.ssl.reset(SSL_new(s.ctx.get()));
  if (!s.ssl || SSL_set_fd(s.ssl.get(), s.fd.get()) != 1) return s.fail("SSL_new: " + detail::drain_errors());
  SSL* ssl = s.ssl.get();
  if (!o.sni.empty() && SSL_set_tlsext_host_name(ssl, o.sni.c_str()) != 1) {
    return s.fail("SNI '" + o.sni + "' rejected: " + detail::drain_errors());
  }
  if (!o.alpn.empty()) {
    const auto wire = detail::alpn_wire(o.alpn);
    // Unlike most of OpenSSL, 0 means success here.
    if (SSL_set_alpn_protos(ssl, wire.data(), static_cast<unsigned int>(wire.size())) != 0) {
      return s.fail("SSL_set_alpn_protos: " + detail::drain_errors());
    }
  }
  if (!o.expected_server_name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    unsigned char ip[16];
    const bool is_ip = inet_pton(AF_INET, o.expected_server_name.c_str(), ip) == 1 ||
                       inet_pton(AF_INET6, o.expected_server_name.c_str(), ip) == 1;
    const std::string& name = o.expected_server_name;
    const int ok = is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str())
                         : X509_VERIFY_PARAM_set1_host(param, name.data(), name.size());
    if (ok != 1) return s.fail("expected server name '" + o.expected_server_name + "': " + detail::drain_errors());
  }
  SSL_set_connect_state(ssl);
  const auto deadline = clock::now() + o.timeout;
  for (;;) {
    const int ret = SSL_do_handshake(ssl);
    if (ret == 1) break;
    if (!s.wait_for("handshake", ret, deadline)) return false;
  }
  s.handshake_done = true;
  return true;
}

bool tls_connection::write(std::string_view data) {
  impl& s = *impl_;
  if (!s.ready("write")) return false;
  auto deadline = clock::now() + s.options.timeout;
  while (!data.empty()) {
    ERR_clear_error();
    const int chunk = static_cast<int>(std::min<std::size_t>(data.size(), 1 << 20));
    const int ret = SSL_write(s.ssl.get(), data.data(), chunk);
    if (ret > 0) {
      data.remove_prefix(static_cast<std::size_t>(ret));
      deadline = clock::now() + s.options.timeout;
    } else if (!s.wait_for("write", ret, deadline)) {
      return false;
    }
  }
  return true;
}

bool tls_connection::read_exact(std::size_t n, std::string& out) {
  impl& s = *impl_;
  out.clear();
  if (!s.ready("read")) return false;
  auto deadline = clock::now() + s.options.timeout;
  char buf[16 * 1024];
  while (out.size() < n) {
    ERR_clear_error();
    const int want = static_cast<int>(std::min(sizeof buf, n - out.size()));
    const int ret = SSL_read(s.ssl.get(), buf, want);
    if (ret > 0) {
      out.append(buf, static_cast<std::size_t>(ret));
      deadline = clock::now() + s.options.timeout;
      continue;
    }
    if (SSL_get_error(s.ssl.get(), ret) == SSL_ERROR_ZERO_RETURN) {
      s.closed_cleanly = true;
      return s.fail("read: server closed after " + std::to_string(out.size()) + " of " + std::to_string(n) + " bytes");
    }
    if (!s.wait_for("read", ret, deadline)) {
      s.error += " (after " + std::to_string(out.size()) + " of " + std::to_string(n) + " bytes)";
      return false;
    }
  }
  return true;
}

bool tls_connection::exchange(std::string_view payload, std::string& out) {
  impl& s = *impl_;
  out.clear();
  if (!s.ready("exchange")) return false;
  SSL* ssl = s.ssl.get();
  std::size_t written = 0;
  auto deadline = clock::now() + s.options.timeout;
  char buf[16 * 1024];
  while (out.size() < payload.size()) {
    bool progress = false;
    short events = POLLIN;
    if (written < payload.size()) {
      ERR_clear_error();
      const int chunk = static_cast<int>(std::min<std::size_t>(payload.size() - written, 64 * 1024));
      const int ret = SSL_write(ssl, payload.data() + written, chunk);
      if (ret > 0) {
        written += static_cast<std::size_t>(ret);
        progress = true;
      } else {
        const int code = SSL_get_error(ssl, ret);
        if (code == SSL_ERROR_WANT_WRITE) {
          events |= POLLOUT;
        } else if (code != SSL_ERROR_WANT_READ) {
          return s.fail_ssl("exchange write", ret);
        }
      }
    }
    ERR_clear_error();
    const std::size_t want = std::min(sizeof buf, payload.size() - out.size());
    const int ret = SSL_read(ssl, buf, static_cast<int>(want));
    if (ret > 0) {
      out.append(buf, static_cast<std::size_t>(ret));
      progress = true;
    } else {
      const int code = SSL_get_error(ssl, ret);
      if (code == SSL_ERROR_ZERO_RETURN) {
        s.closed_cleanly = true;
        return s.fail("exchange: server closed after echoing " + std::to_string(out.size()) + " of " +
                      std::to_string(payload.size()) + " bytes");
      }
      if (code == SSL_ERROR_WANT_WRITE) {
        events |= POLLOUT;
      } else if (code != SSL_ERROR_WANT_READ) {
        return s.fail_ssl("exchange read", ret);
      }
    }
    if (progress) {
      deadline = clock::now() + s.options.timeout;
      continue;
    }
    if (!detail::poll_until(s.fd.get(), events, deadline)) {
      return s.fail("exchange: no progress for " + std::to_string(s.options.timeout.count()) + " ms (sent " +
                    std::to_string(written) + ", received " + std::to_string(out.size()) + " of " +
                    std::to_string(payload.size()) + " bytes)");
    }
  }
  return true;
}

bool tls_connection::read_to_end(std::string& out) {
  impl& s = *impl_;
  if (!s.ready("read_to_end")) return false;
  SSL* ssl = s.ssl.get();
  auto deadline = clock::now() + s.options.timeout;
  char buf[16 * 1024];
  for (;;) {
    ERR_clear_error();
    errno = 0;
    const int ret = SSL_read(ssl, buf, sizeof buf);
    if (ret > 0) {
      out.append(buf, static_cast<std::size_t>(ret));
      deadline = clock::now() + s.options.timeout;
      continue;
    }
    const int code = SSL_get_error(ssl, ret);
    if (code == SSL_ERROR_ZERO_RETURN) {
      s.closed_cleanly = true;
      return true;
    }
    // A bare TCP FIN: OpenSSL 3 reports SSL_R_UNEXPECTED_EOF_WHILE_READING (older releases a
    // syscall error with errno 0). Not an alert, so the connection did not fail.
    const unsigned long err = ERR_peek_error();
    if ((code == SSL_ERROR_SSL && ERR_GET_REASON(err) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
        (code == SSL_ERROR_SYSCALL && err == 0 && errno == 0)) {
      ERR_clear_error();
      s.fatal = true;
      return true;
    }
    if (!s.wait_for("read_to_end", ret, deadline)) return false;
  }
}

bool tls_connection::shutdown() {
  impl& s = *impl_;
  if (!s.fd) return s.fail("shutdown: not connected");
  bool ok = true;
  if (s.handshake_done && !s.fatal) {
    const auto deadline = clock::now() + s.options.timeout;
    for (;;) {
      ERR_clear_error();
      // 0: our close_notify is sent, the server's not yet received; 1: both done.
      const int ret = SSL_shutdown(s.ssl.get());
      if (ret >= 0) break;
      if (!s.wait_for("shutdown", ret, deadline)) {
        ok = false;
        break;
      }
    }
  }
  if (!s.write_shut) {
    ::shutdown(s.fd.get(), SHUT_WR);
    s.write_shut = true;
  }
  return ok;
}

void tls_connection::close() {
  impl_->ssl.reset();
  impl_->fd.reset();
}

const std::string& tls_connection::error() const { return impl_->error; }
int tls_connection::fd() const { return impl_->fd.get(); }
bool tls_connection::closed_cleanly() const { return impl_->closed_cleanly; }

std::string tls_connection::server_subject() const {
  X509* cert = impl_->ssl ? SSL_get0_peer_certificate(impl_->ssl.get()) : nullptr;
  return cert != nullptr ? detail::common_name(cert) : std::string();
}

std::vector<std::string> tls_connection::server_sans() const {
  X509* cert = impl_->ssl ? SSL_get0_peer_certificate(impl_->ssl.get()) : nullptr;
  return cert != nullptr ? detail::subject_alt_names(cert) : std::vector<std::string>();
}

std::string tls_connection::alpn() const {
  if (!impl_->ssl) return {};
  const unsigned char* data = nullptr;
  unsigned int len = 0;
  SSL_get0_alpn_selected(impl_->ssl.get(), &data, &len);
  return data != nullptr ? std::string(reinterpret_cast<const char*>(data), len) : std::string();
}

std::string tls_connection::tls_version() const {
  return impl_->handshake_done ? SSL_get_version(impl_->ssl.get()) : std::string();
}

tls_client_result run_tls_client(const tls_client_options& options) {
  tls_client_result r;
  tls_connection c(options);
  const auto finish = [&] {
    r.error = c.error();
    r.success = r.error.empty();
    r.server_closed_cleanly = c.closed_cleanly();
    return r;
  };
  if (!c.connect()) return finish();
  r.connected = true;
  if (!c.handshake()) return finish();
  r.handshake_ok = true;
  r.server_subject = c.server_subject();
  r.server_sans = c.server_sans();
  r.alpn = c.alpn();
  r.tls_version = c.tls_version();

  if (options.read_until_close) {
    if (!options.payload.empty() && !c.write(options.payload)) return finish();
    c.read_to_end(r.response);
    return finish();
  }
  if (!options.payload.empty()) {
    std::string echoed;
    if (!c.exchange(options.payload, echoed)) return finish();
    r.echo_matched = echoed == options.payload;
    if (!r.echo_matched) {
      r.error = "echo differs from the payload";
      return r;
    }
  }
  // Wait for the server's close: in TLS 1.3 a rejected client certificate only shows up here,
  // as an alert after the client already considered the handshake complete.
  c.shutdown();
  std::string rest;
  if (c.read_to_end(rest) && !rest.empty()) {
    r.error = "server sent " + std::to_string(rest.size()) + " unexpected bytes before closing";
    return r;
  }
  return finish();
}

}  // namespace ewgw::test
