// In-memory PKI for integration tests: a self-signed root CA, an intermediate CA signed by it,
// and leaf certificates signed by the intermediate, all P-256 ECDSA (fast to generate) and
// valid from now-1h (tolerates clock skew between peers) to now+1 day.
//
// The chain is two levels deep on purpose: peers trust only the root, so a peer that forgets to
// send its intermediate fails verification — the same mistake that breaks real Istio meshes.
//
// Setup failures throw std::runtime_error with the OpenSSL error text.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ewgw::test {

// Which extendedKeyUsage purposes a leaf carries.
enum class cert_usage : std::uint8_t { server, client, server_and_client };

// A leaf certificate and everything a peer needs to present or verify it, as PEM text.
struct leaf_cert {
  std::string cert;   // the leaf alone
  std::string key;    // its private key, PKCS#8
  std::string chain;  // leaf followed by the intermediate: what a peer presents
  std::string root;   // the root CA: what the other side trusts
};

class test_pki {
 public:
  // Generates a fresh root and intermediate. `name` goes into their subject CNs
  // ("<name> Root CA", "<name> Intermediate CA") so certificates from two instances are told
  // apart in error messages (tests use a second instance as the "wrong root").
  explicit test_pki(std::string_view name = "ewgw test");
  ~test_pki();
  test_pki(test_pki&&) noexcept;
  test_pki& operator=(test_pki&&) noexcept;

  // A leaf with subject CN `common_name`. Each entry of `sans` becomes one subjectAltName:
  // an entry containing "://" is a URI (e.g. "spiffe://cluster.local/ns/sample/sa/helloworld"),
  // an IPv4/IPv6 literal is an IP address, anything else a DNS name (taken verbatim, so Istio's
  // "outbound_.5000_._.helloworld.sample.svc.cluster.local" works).
  leaf_cert make_leaf(std::string_view common_name, const std::vector<std::string>& sans, cert_usage usage) const;

  const std::string& root_pem() const;
  const std::string& intermediate_pem() const;

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

// Writes `contents` to dir/name, creating dir if needed; private keys (names ending in ".key")
// get mode 0600 because some tools refuse group- or world-readable keys. Throws on I/O errors.
void write_pem_file(const std::filesystem::path& dir, std::string_view name, std::string_view contents);

// Writes <stem>.crt (the chain: leaf + intermediate), <stem>.key, <stem>-leaf.crt and root.crt
// into dir — the layout curl (--cert/--key/--cacert), gnutls-cli (--x509certfile/
// --x509keyfile/--x509cafile) and ewgw-demo-backend (server.crt/server.key/root.crt) expect.
// openssl s_client sends only the first certificate of -cert; add "-cert_chain <stem>.crt",
// or a server that trusts only the root rejects it with "unknown ca".
void write_leaf_files(const std::filesystem::path& dir, std::string_view stem, const leaf_cert& leaf);

}  // namespace ewgw::test
