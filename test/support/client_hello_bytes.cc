#include "test/support/client_hello_bytes.h"

#include <openssl/bio.h>
#include <openssl/ssl.h>

#include <stdexcept>

#include "test/support/openssl_util.h"

namespace ewgw::test {

std::vector<std::uint8_t> make_client_hello(const std::string& sni, const std::vector<std::string>& alpns, bool tls13) {
  detail::ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) detail::throw_openssl("SSL_CTX_new");
  detail::set_versions(ctx.get(), tls_version::tls1_2, tls13 ? tls_version::tls1_3 : tls_version::tls1_2);
  detail::ssl_ptr ssl(SSL_new(ctx.get()));
  if (!ssl) detail::throw_openssl("SSL_new");
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  if (in == nullptr || out == nullptr) {
    BIO_free(in);
    BIO_free(out);
    detail::throw_openssl("BIO_new");
  }
  SSL_set_bio(ssl.get(), in, out);  // ssl owns both from here
  if (!sni.empty() && SSL_set_tlsext_host_name(ssl.get(), sni.c_str()) != 1) detail::throw_openssl("SNI");
  if (!alpns.empty()) {
    const auto wire = detail::alpn_wire(alpns);
    if (SSL_set_alpn_protos(ssl.get(), wire.data(), static_cast<unsigned int>(wire.size())) != 0) {
      detail::throw_openssl("SSL_set_alpn_protos");
    }
  }
  SSL_set_connect_state(ssl.get());
  // With nothing to read, the first step writes the ClientHello and stops wanting to read.
  const int ret = SSL_do_handshake(ssl.get());
  if (ret == 1 || SSL_get_error(ssl.get(), ret) != SSL_ERROR_WANT_READ) detail::throw_openssl("ClientHello generation");
  char* data = nullptr;
  const long size = BIO_get_mem_data(out, &data);
  if (size <= 0) throw std::runtime_error("OpenSSL wrote no ClientHello");
  return std::vector<std::uint8_t>(reinterpret_cast<const std::uint8_t*>(data),
                                   reinterpret_cast<const std::uint8_t*>(data) + size);
}

}  // namespace ewgw::test
