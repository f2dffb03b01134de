#include "test/support/openssl_util.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace ewgw::test::detail {

std::string drain_errors() {
  std::string out;
  char buf[256];
  while (unsigned long code = ERR_get_error()) {
    ERR_error_string_n(code, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}

void throw_openssl(std::string_view what) {
  std::string message(what);
  const std::string errors = drain_errors();
  if (!errors.empty()) message += ": " + errors;
  throw std::runtime_error(message);
}

namespace {

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<std::size_t>(size));
}

bio_ptr memory_bio() {
  bio_ptr bio(BIO_new(BIO_s_mem()));
  if (!bio) throw_openssl("BIO_new");
  return bio;
}

bio_ptr read_only_bio(std::string_view pem) {
  bio_ptr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw_openssl("BIO_new_mem_buf");
  return bio;
}

}  // namespace

std::string to_pem(X509* cert) {
  bio_ptr bio = memory_bio();
  if (PEM_write_bio_X509(bio.get(), cert) != 1) throw_openssl("PEM_write_bio_X509");
  return bio_contents(bio.get());
}

std::string to_pem(EVP_PKEY* key) {
  bio_ptr bio = memory_bio();
  if (PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    throw_openssl("PEM_write_bio_PrivateKey");
  }
  return bio_contents(bio.get());
}

std::vector<x509_ptr> load_certs(std::string_view pem, std::string_view what) {
  bio_ptr bio = read_only_bio(pem);
  std::vector<x509_ptr> certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  // The loop always ends with "no start line" at end of input; anything else is a real error.
  const unsigned long last = ERR_peek_last_error();
  if (ERR_GET_LIB(last) == ERR_LIB_PEM && ERR_GET_REASON(last) == PEM_R_NO_START_LINE && !certs.empty()) {
    ERR_clear_error();
  } else if (last != 0) {
    throw_openssl(std::string("reading certificates for ") + std::string(what));
  }
  if (certs.empty()) throw std::runtime_error(std::string("no PEM certificate in ") + std::string(what));
  return certs;
}

evp_pkey_ptr load_key(std::string_view pem, std::string_view what) {
  bio_ptr bio = read_only_bio(pem);
  evp_pkey_ptr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) throw_openssl(std::string("reading private key for ") + std::string(what));
  return key;
}

x509_store_ptr make_trust_store(std::string_view pem) {
  x509_store_ptr store(X509_STORE_new());
  if (!store) throw_openssl("X509_STORE_new");
  for (auto& cert : load_certs(pem, "trust store")) {
    if (X509_STORE_add_cert(store.get(), cert.get()) != 1) throw_openssl("X509_STORE_add_cert");
  }
  return store;
}

void use_cert_chain(SSL_CTX* ctx, std::string_view chain_pem, std::string_view key_pem) {
  auto certs = load_certs(chain_pem, "certificate chain");
  evp_pkey_ptr key = load_key(key_pem, "certificate chain");
  if (SSL_CTX_use_certificate(ctx, certs.front().get()) != 1) throw_openssl("SSL_CTX_use_certificate");
  for (std::size_t i = 1; i < certs.size(); ++i) {
    // add1: the context takes its own reference, our vector still frees its copy.
    if (SSL_CTX_add1_chain_cert(ctx, certs[i].get()) != 1) throw_openssl("SSL_CTX_add1_chain_cert");
  }
  if (SSL_CTX_use_PrivateKey(ctx, key.get()) != 1) throw_openssl("SSL_CTX_use_PrivateKey");
  if (SSL_CTX_check_private_key(ctx) != 1) throw_openssl("private key does not match the certificate");
}

std::vector<unsigned char> alpn_wire(const std::vector<std::string>& protocols) {
  std::vector<unsigned char> wire;
  for (const auto& p : protocols) {
    if (p.empty() || p.size() > 255) throw std::runtime_error("ALPN protocol name must be 1..255 bytes: '" + p + "'");
    wire.push_back(static_cast<unsigned char>(p.size()));
    wire.insert(wire.end(), p.begin(), p.end());
  }
  return wire;
}

std::string common_name(X509* cert) {
  X509_NAME* subject = X509_get_subject_name(cert);
  const int index = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
  if (index < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, index));
  unsigned char* utf8 = nullptr;
  const int size = ASN1_STRING_to_UTF8(&utf8, data);
  if (size < 0) {
    drain_errors();
    return {};
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(size));
  OPENSSL_free(utf8);
  return out;
}

std::vector<std::string> subject_alt_names(X509* cert) {
  std::vector<std::string> out;
  auto* names = static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names == nullptr) return out;
  auto ia5 = [](const ASN1_IA5STRING* s) {
    return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                       static_cast<std::size_t>(ASN1_STRING_length(s)));
  };
  for (int i = 0; i < sk_GENERAL_NAME_num(names); ++i) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
    switch (name->type) {
      case GEN_DNS: out.push_back("DNS:" + ia5(name->d.dNSName)); break;
      case GEN_URI: out.push_back("URI:" + ia5(name->d.uniformResourceIdentifier)); break;
      case GEN_EMAIL: out.push_back("email:" + ia5(name->d.rfc822Name)); break;
      case GEN_IPADD: {
        const ASN1_OCTET_STRING* ip = name->d.iPAddress;
        char text[INET6_ADDRSTRLEN] = {};
        const int family = ASN1_STRING_length(ip) == 4 ? AF_INET : AF_INET6;
        if (inet_ntop(family, ASN1_STRING_get0_data(ip), text, sizeof text) != nullptr) {
          out.push_back(std::string("IP:") + text);
        }
        break;
      }
      default: break;
    }
  }
  GENERAL_NAMES_free(names);
  return out;
}

std::string describe_ssl_error(SSL* ssl, int ret) {
  const int saved_errno = errno;
  const int code = SSL_get_error(ssl, ret);
  std::string out;
  switch (code) {
    case SSL_ERROR_ZERO_RETURN: out = "peer sent close_notify"; break;
    case SSL_ERROR_WANT_READ: out = "timed out waiting to read"; break;
    case SSL_ERROR_WANT_WRITE: out = "timed out waiting to write"; break;
    case SSL_ERROR_SYSCALL: out = "syscall error"; break;
    case SSL_ERROR_SSL: out = "TLS error"; break;
    default: out = "SSL_get_error=" + std::to_string(code); break;
  }
  const std::string errors = drain_errors();
  if (!errors.empty()) out += ": " + errors;
  if (code == SSL_ERROR_SYSCALL) {
    out += saved_errno != 0 ? std::string(": ") + std::strerror(saved_errno) : std::string(": unexpected EOF");
  }
  const long verify = SSL_get_verify_result(ssl);
  if (verify != X509_V_OK) out += std::string(" (certificate verify: ") + X509_verify_cert_error_string(verify) + ")";
  return out;
}

int protocol_version(tls_version v) { return v == tls_version::tls1_3 ? TLS1_3_VERSION : TLS1_2_VERSION; }

void set_versions(SSL_CTX* ctx, tls_version min_version, tls_version max_version) {
  if (SSL_CTX_set_min_proto_version(ctx, protocol_version(min_version)) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, protocol_version(max_version)) != 1) {
    throw_openssl("setting TLS protocol versions");
  }
}

}  // namespace ewgw::test::detail
