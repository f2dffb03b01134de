#include "test/support/certs.h"

#include <openssl/ec.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "test/support/openssl_util.h"

namespace ewgw::test {

using detail::evp_pkey_ptr;
using detail::throw_openssl;
using detail::x509_ptr;

namespace {

constexpr long one_hour = 60L * 60;
constexpr long one_day = 24 * one_hour;

evp_pkey_ptr make_key() {
  evp_pkey_ptr key(EVP_EC_gen("P-256"));
  if (!key) throw_openssl("EVP_EC_gen(P-256)");
  return key;
}

// Random positive 63-bit serial: unique enough that two test PKIs never collide, and positive
// as RFC 5280 s4.1.2.2 requires.
void set_random_serial(X509* cert) {
  std::uint64_t serial = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial) != 1) throw_openssl("RAND_bytes");
  serial = (serial >> 1) | 1;
  if (ASN1_INTEGER_set_uint64(X509_get_serialNumber(cert), serial) != 1) throw_openssl("ASN1_INTEGER_set_uint64");
}

void set_subject_cn(X509* cert, std::string_view cn) {
  X509_NAME* name = X509_get_subject_name(cert);
  const auto add = [&](const char* field, std::string_view value) {
    if (X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(value.data()),
                                   static_cast<int>(value.size()), -1, 0) != 1) {
      throw_openssl("X509_NAME_add_entry_by_txt");
    }
  };
  add("O", "ewgw test");
  add("CN", cn);
}

// Adds one extension from its OpenSSL config text; the context names the issuer so that
// authorityKeyIdentifier can copy the issuer's subjectKeyIdentifier.
void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  if (ext == nullptr) throw_openssl(std::string("building extension ") + OBJ_nid2sn(nid) + "=" + value);
  const int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) throw_openssl("X509_add_ext");
}

// subjectAltName built from GENERAL_NAMEs directly rather than config text, so values are
// taken verbatim (config text would split on commas and reject some characters).
void add_sans(X509* cert, const std::vector<std::string>& sans) {
  if (sans.empty()) return;
  GENERAL_NAMES* names = sk_GENERAL_NAME_new_null();
  if (names == nullptr) throw_openssl("sk_GENERAL_NAME_new_null");
  const auto fail = [&](const std::string& what) {
    GENERAL_NAMES_free(names);
    throw_openssl(what);
  };
  for (const auto& san : sans) {
    GENERAL_NAME* name = GENERAL_NAME_new();
    if (name == nullptr) fail("GENERAL_NAME_new");
    unsigned char ip[16];
    int ip_len = 0;
    if (inet_pton(AF_INET, san.c_str(), ip) == 1) {
      ip_len = 4;
    } else if (inet_pton(AF_INET6, san.c_str(), ip) == 1) {
      ip_len = 16;
    }
    if (ip_len != 0) {
      ASN1_OCTET_STRING* value = ASN1_OCTET_STRING_new();
      if (value == nullptr || ASN1_OCTET_STRING_set(value, ip, ip_len) != 1) {
        ASN1_OCTET_STRING_free(value);
        GENERAL_NAME_free(name);
        fail("IP subjectAltName");
      }
      GENERAL_NAME_set0_value(name, GEN_IPADD, value);
    } else {
      ASN1_IA5STRING* value = ASN1_IA5STRING_new();
      if (value == nullptr || ASN1_STRING_set(value, san.data(), static_cast<int>(san.size())) != 1) {
        ASN1_IA5STRING_free(value);
        GENERAL_NAME_free(name);
        fail("subjectAltName value");
      }
      GENERAL_NAME_set0_value(name, san.find("://") != std::string::npos ? GEN_URI : GEN_DNS, value);
    }
    if (sk_GENERAL_NAME_push(names, name) == 0) {
      GENERAL_NAME_free(name);
      fail("sk_GENERAL_NAME_push");
    }
  }
  const int ok = X509_add1_ext_i2d(cert, NID_subject_alt_name, names, 0, X509V3_ADD_DEFAULT);
  GENERAL_NAMES_free(names);
  if (ok != 1) throw_openssl("adding subjectAltName");
}

// A certificate with everything but the issuer-specific parts and the signature.
x509_ptr new_cert(std::string_view cn, EVP_PKEY* key) {
  x509_ptr cert(X509_new());
  if (!cert) throw_openssl("X509_new");
  if (X509_set_version(cert.get(), X509_VERSION_3) != 1) throw_openssl("X509_set_version");
  set_random_serial(cert.get());
  // Backdated an hour so a peer whose clock is slightly behind still accepts it.
  if (X509_gmtime_adj(X509_getm_notBefore(cert.get()), -one_hour) == nullptr ||
      X509_gmtime_adj(X509_getm_notAfter(cert.get()), one_day) == nullptr) {
    throw_openssl("X509_gmtime_adj");
  }
  set_subject_cn(cert.get(), cn);
  if (X509_set_pubkey(cert.get(), key) != 1) throw_openssl("X509_set_pubkey");
  return cert;
}

void sign(X509* cert, X509* issuer, EVP_PKEY* issuer_key) {
  if (X509_set_issuer_name(cert, X509_get_subject_name(issuer)) != 1) throw_openssl("X509_set_issuer_name");
  if (X509_sign(cert, issuer_key, EVP_sha256()) <= 0) throw_openssl("X509_sign");
}

}  // namespace

struct test_pki::impl {
  evp_pkey_ptr root_key;
  x509_ptr root;
  evp_pkey_ptr intermediate_key;
  x509_ptr intermediate;
  std::string root_pem;
  std::string intermediate_pem;
};

test_pki::test_pki(std::string_view name) : impl_(std::make_unique<impl>()) {
  impl& s = *impl_;
  s.root_key = make_key();
  s.root = new_cert(std::string(name) + " Root CA", s.root_key.get());
  // Self-signed: the issuer name must be set before the AKI extension looks at the issuer.
  if (X509_set_issuer_name(s.root.get(), X509_get_subject_name(s.root.get())) != 1) throw_openssl("X509_set_issuer_name");
  add_ext(s.root.get(), s.root.get(), NID_basic_constraints, "critical,CA:TRUE");
  add_ext(s.root.get(), s.root.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(s.root.get(), s.root.get(), NID_subject_key_identifier, "hash");
  add_ext(s.root.get(), s.root.get(), NID_authority_key_identifier, "keyid:always");
  sign(s.root.get(), s.root.get(), s.root_key.get());

  s.intermediate_key = make_key();
  s.intermediate = new_cert(std::string(name) + " Intermediate CA", s.intermediate_key.get());
  // pathlen:0 — the intermediate may sign leaves only, as in Istio's plug-in CA layout.
  add_ext(s.intermediate.get(), s.root.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  add_ext(s.intermediate.get(), s.root.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  add_ext(s.intermediate.get(), s.root.get(), NID_subject_key_identifier, "hash");
  add_ext(s.intermediate.get(), s.root.get(), NID_authority_key_identifier, "keyid:always");
  sign(s.intermediate.get(), s.root.get(), s.root_key.get());

  s.root_pem = detail::to_pem(s.root.get());
  s.intermediate_pem = detail::to_pem(s.intermediate.get());
}

test_pki::~test_pki() = default;
test_pki::test_pki(test_pki&&) noexcept = default;
test_pki& test_pki::operator=(test_pki&&) noexcept = default;

const std::string& test_pki::root_pem() const { return impl_->root_pem; }
const std::string& test_pki::intermediate_pem() const { return impl_->intermediate_pem; }

leaf_cert test_pki::make_leaf(std::string_view common_name, const std::vector<std::string>& sans, cert_usage usage) const {
  const impl& s = *impl_;
  evp_pkey_ptr key = make_key();
  x509_ptr cert = new_cert(common_name, key.get());
  X509* issuer = s.intermediate.get();
  add_ext(cert.get(), issuer, NID_basic_constraints, "critical,CA:FALSE");
  // ECDSA keys only sign (ECDHE handles key exchange), so digitalSignature is the whole usage.
  add_ext(cert.get(), issuer, NID_key_usage, "critical,digitalSignature");
  const char* eku = usage == cert_usage::server   ? "serverAuth"
                    : usage == cert_usage::client ? "clientAuth"
                                                  : "serverAuth,clientAuth";
  add_ext(cert.get(), issuer, NID_ext_key_usage, eku);
  add_ext(cert.get(), issuer, NID_subject_key_identifier, "hash");
  add_ext(cert.get(), issuer, NID_authority_key_identifier, "keyid:always");
  add_sans(cert.get(), sans);
  sign(cert.get(), issuer, s.intermediate_key.get());

  leaf_cert out;
  out.cert = detail::to_pem(cert.get());
  out.key = detail::to_pem(key.get());
  out.chain = out.cert + s.intermediate_pem;
  out.root = s.root_pem;
  return out;
}

void write_pem_file(const std::filesystem::path& dir, std::string_view name, std::string_view contents) {
  std::filesystem::create_directories(dir);
  const std::filesystem::path path = dir / std::string(name);
  const bool is_key = name.size() >= 4 && name.substr(name.size() - 4) == ".key";
  // Remove first so a stale file with wide permissions is not reused by the open below.
  std::filesystem::remove(path);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error("cannot create " + path.string() + ": " + std::strerror(errno));
  // Narrowed before any key byte is written.
  if (is_key) std::filesystem::permissions(path, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  out.write(contents.data(), static_cast<std::streamsize>(contents.size()));
  out.close();
  if (!out) throw std::runtime_error("cannot write " + path.string() + ": " + std::strerror(errno));
}

void write_leaf_files(const std::filesystem::path& dir, std::string_view stem, const leaf_cert& leaf) {
  const std::string s(stem);
  write_pem_file(dir, s + ".crt", leaf.chain);
  write_pem_file(dir, s + "-leaf.crt", leaf.cert);
  write_pem_file(dir, s + ".key", leaf.key);
  write_pem_file(dir, "root.crt", leaf.root);
}

}  // namespace ewgw::test
