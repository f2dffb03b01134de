// OpenSSL plumbing shared by the test-support sources: owning pointers, PEM in and out, error
// text, and reading names out of certificates. Internal to ewgw_test_support; tests use the
// higher-level headers, which keep <openssl/...> out of their includes.
#pragma once

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "test/support/tls_common.h"

namespace ewgw::test::detail {

template <auto free_fn>
struct openssl_deleter {
  template <typename T>
  void operator()(T* p) const {
    free_fn(p);
  }
};

using x509_ptr = std::unique_ptr<X509, openssl_deleter<X509_free>>;
using evp_pkey_ptr = std::unique_ptr<EVP_PKEY, openssl_deleter<EVP_PKEY_free>>;
using x509_store_ptr = std::unique_ptr<X509_STORE, openssl_deleter<X509_STORE_free>>;
using ssl_ctx_ptr = std::unique_ptr<SSL_CTX, openssl_deleter<SSL_CTX_free>>;
using ssl_ptr = std::unique_ptr<SSL, openssl_deleter<SSL_free>>;
using bio_ptr = std::unique_ptr<BIO, openssl_deleter<BIO_free_all>>;

// Drains this thread's OpenSSL error queue into one line ("" when empty). Always drain after a
// failure: the queue is per thread and a stale entry would be blamed on the next failure.
std::string drain_errors();

// Throws std::runtime_error("<what>: <drained errors>").
[[noreturn]] void throw_openssl(std::string_view what);

std::string to_pem(X509* cert);
std::string to_pem(EVP_PKEY* key);  // PKCS#8, unencrypted

// Every certificate in `pem`, in order. Throws when there is none or one is malformed.
std::vector<x509_ptr> load_certs(std::string_view pem, std::string_view what);
evp_pkey_ptr load_key(std::string_view pem, std::string_view what);

// A store trusting exactly the certificates in `pem` (no system roots, no intermediates).
x509_store_ptr make_trust_store(std::string_view pem);

// Installs leaf (first certificate of chain_pem), the rest of the chain and the key. Throws on
// mismatch, so a test with a wrong key fails at setup rather than with a confusing alert.
void use_cert_chain(SSL_CTX* ctx, std::string_view chain_pem, std::string_view key_pem);

// Wire format for SSL_set_alpn_protos / SSL_CTX_set_alpn_protos: length-prefixed names.
std::vector<unsigned char> alpn_wire(const std::vector<std::string>& protocols);

// Subject commonName ("" when absent).
std::string common_name(X509* cert);
// subjectAltName entries as "DNS:<name>", "URI:<uri>", "IP:<address>", "email:<addr>".
std::vector<std::string> subject_alt_names(X509* cert);

// Why an SSL_* call returned `ret`: the SSL_get_error class, the drained error queue, errno for
// syscall failures, and the certificate verification error when there is one.
std::string describe_ssl_error(SSL* ssl, int ret);

// TLS1_2_VERSION / TLS1_3_VERSION.
int protocol_version(tls_version v);

// Applies min/max protocol versions; throws when OpenSSL refuses them.
void set_versions(SSL_CTX* ctx, tls_version min_version, tls_version max_version);

}  // namespace ewgw::test::detail
