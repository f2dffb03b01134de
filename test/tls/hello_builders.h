// Test-side byte builders for ClientHellos: real ones from OpenSSL 3, hand-built ones from parts
// (so a broken field is one visible line in the test, not an opaque hex blob), and helpers that
// re-frame a handshake message into records of any size. Shared by client_hello_test and
// client_hello_bench. Test code: allocation and OpenSSL are fine here.
#pragma once

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ewgw::tls::testing {

using bytes = std::vector<std::uint8_t>;

// ---------------------------------------------------------------------------------------------
// Big-endian writers (TLS is network byte order, RFC 8446 s3.3). Values wider than the field
// are truncated on purpose: that is how tests write lying lengths.

inline void put_u8(bytes& b, std::size_t v) { b.push_back(static_cast<std::uint8_t>(v)); }
inline void put_u16(bytes& b, std::size_t v) {
  put_u8(b, v >> 8);
  put_u8(b, v);
}
inline void put_u24(bytes& b, std::size_t v) {
  put_u8(b, v >> 16);
  put_u16(b, v);
}
inline void put(bytes& b, const bytes& v) { b.insert(b.end(), v.begin(), v.end()); }
inline void put(bytes& b, std::string_view v) { b.insert(b.end(), v.begin(), v.end()); }
inline bytes cat(bytes a, const bytes& b) {
  put(a, b);
  return a;
}
inline std::size_t get_u16(const bytes& b, std::size_t at) {
  return static_cast<std::size_t>(b[at] << 8 | b[at + 1]);
}
inline std::size_t get_u24(const bytes& b, std::size_t at) {
  return static_cast<std::size_t>(b[at] << 16 | b[at + 1] << 8 | b[at + 2]);
}

// ---------------------------------------------------------------------------------------------
// Hand-built ClientHello parts (RFC 8446 s4.1.2, s4.2; RFC 6066 s3; RFC 7301 s3.1). Each
// optional length overrides the encoded length field, leaving the content as given.

inline bytes extension(std::uint16_t type, const bytes& data,
                       std::optional<std::size_t> length = {}) {
  bytes b;
  put_u16(b, type);
  put_u16(b, length.value_or(data.size()));
  put(b, data);
  return b;
}

inline bytes server_name_entry(std::uint8_t name_type, std::string_view name,
                               std::optional<std::size_t> length = {}) {
  bytes b;
  put_u8(b, name_type);
  put_u16(b, length.value_or(name.size()));
  put(b, name);
  return b;
}

// extension_data of server_name: ServerNameList.
inline bytes server_name_data(const std::vector<bytes>& entries,
                              std::optional<std::size_t> list_length = {}) {
  bytes list;
  for (const auto& e : entries) put(list, e);
  bytes b;
  put_u16(b, list_length.value_or(list.size()));
  put(b, list);
  return b;
}

inline bytes sni_extension(std::string_view host) {
  return extension(0, server_name_data({server_name_entry(0, host)}));
}

inline bytes alpn_name(std::string_view name, std::optional<std::size_t> length = {}) {
  // Sized up front: push_back-then-insert trips a GCC 12 -Warray-bounds false positive here.
  bytes b(1 + name.size());
  b[0] = static_cast<std::uint8_t>(length.value_or(name.size()));
  std::copy(name.begin(), name.end(), b.begin() + 1);
  return b;
}

// extension_data of application_layer_protocol_negotiation: ProtocolNameList.
inline bytes alpn_data(const std::vector<bytes>& names,
                       std::optional<std::size_t> list_length = {}) {
  bytes list;
  for (const auto& n : names) put(list, n);
  bytes b;
  put_u16(b, list_length.value_or(list.size()));
  put(b, list);
  return b;
}

inline bytes alpn_extension(const std::vector<std::string>& protocols) {
  std::vector<bytes> names;
  for (const auto& p : protocols) names.push_back(alpn_name(p));
  return extension(16, alpn_data(names));
}

// extension_data of supported_versions in a ClientHello.
inline bytes versions_data(const std::vector<std::uint16_t>& versions,
                           std::optional<std::size_t> list_length = {}) {
  bytes b;
  put_u8(b, list_length.value_or(2 * versions.size()));
  for (const auto v : versions) put_u16(b, v);
  return b;
}

struct hello_fields {
  std::uint16_t legacy_version = 0x0303;
  std::uint8_t random_byte = 0x42;
  bytes session_id = bytes(32, 0x5a);
  std::optional<std::size_t> session_id_length;
  bytes cipher_suites = {0x13, 0x01, 0x13, 0x02, 0xc0, 0x2f};
  std::optional<std::size_t> cipher_suites_length;
  bytes compression = {0x00};
  std::optional<std::size_t> compression_length;
  bool with_extensions = true;
  std::vector<bytes> extensions = {
      sni_extension("example.com"),
      alpn_extension({"h2", "http/1.1"}),
      extension(43, versions_data({0x0304, 0x0303})),
  };
  std::optional<std::size_t> extensions_length;
  bytes trailing;  // after the extensions block, inside the ClientHello
};

inline bytes hello_body(const hello_fields& f) {
  bytes b;
  put_u16(b, f.legacy_version);
  put(b, bytes(32, f.random_byte));
  put_u8(b, f.session_id_length.value_or(f.session_id.size()));
  put(b, f.session_id);
  put_u16(b, f.cipher_suites_length.value_or(f.cipher_suites.size()));
  put(b, f.cipher_suites);
  put_u8(b, f.compression_length.value_or(f.compression.size()));
  put(b, f.compression);
  if (f.with_extensions) {
    bytes block;
    for (const auto& e : f.extensions) put(block, e);
    put_u16(b, f.extensions_length.value_or(block.size()));
    put(b, block);
  }
  put(b, f.trailing);
  return b;
}

// Handshake message (RFC 8446 s4): msg_type, uint24 length, body.
inline bytes handshake(const bytes& body, std::optional<std::size_t> length = {},
                       std::uint8_t msg_type = 1) {
  bytes b;
  put_u8(b, msg_type);
  put_u24(b, length.value_or(body.size()));
  put(b, body);
  return b;
}

// One TLSPlaintext record (RFC 8446 s5.1).
inline bytes record(const bytes& payload, std::uint8_t type = 22, std::uint16_t version = 0x0301,
                    std::optional<std::size_t> length = {}) {
  bytes b;
  put_u8(b, type);
  put_u16(b, version);
  put_u16(b, length.value_or(payload.size()));
  put(b, payload);
  return b;
}

inline bytes wire_of(const hello_fields& f) { return record(handshake(hello_body(f))); }

// ---------------------------------------------------------------------------------------------
// Record framing.

// The first handshake message of a record stream, reassembled from its records' payloads.
inline bytes handshake_message(const bytes& wire) {
  bytes message;
  std::size_t at = 0;
  while (at + 5 <= wire.size() && wire[at] == 22) {
    const std::size_t length = get_u16(wire, at + 3);
    message.insert(message.end(), wire.begin() + static_cast<std::ptrdiff_t>(at + 5),
                   wire.begin() + static_cast<std::ptrdiff_t>(std::min(wire.size(), at + 5 + length)));
    at += 5 + length;
    if (message.size() >= 4 && message.size() >= 4 + get_u24(message, 1)) break;
  }
  if (message.size() >= 4) message.resize(std::min(message.size(), 4 + get_u24(message, 1)));
  return message;
}

// `message` cut into handshake records of record_size payload bytes (the last may be shorter).
// record_starts, if given, receives the offset of each record header.
inline bytes frame(const bytes& message, std::size_t record_size,
                   std::vector<std::size_t>* record_starts = nullptr,
                   std::uint16_t version = 0x0301) {
  bytes wire;
  for (std::size_t at = 0; at < message.size(); at += record_size) {
    if (record_starts) record_starts->push_back(wire.size());
    const std::size_t n = std::min(record_size, message.size() - at);
    put(wire, record(bytes(message.begin() + static_cast<std::ptrdiff_t>(at),
                           message.begin() + static_cast<std::ptrdiff_t>(at + n)),
                     22, version));
  }
  return wire;
}

// ---------------------------------------------------------------------------------------------
// Real ClientHellos from OpenSSL 3.

struct openssl_spec {
  int max_version = TLS1_3_VERSION;    // TLS1_2_VERSION for a TLS 1.2-only client
  std::string sni = {};                // empty: no server_name extension
  std::vector<std::string> alpn = {};  // empty: no ALPN extension
  // Sizes of extra private-use extensions (types 0xff10 + i: IANA's private-use range
  // 65280-65535, past 0xff01 renegotiation_info which OpenSSL implements itself),
  // used to grow the hello like a client with many or large extensions.
  std::vector<std::size_t> extra_extension_bytes = {};
};

inline int add_extra_extension(SSL*, unsigned int, unsigned int, const unsigned char** out,
                               std::size_t* outlen, X509*, std::size_t, int*, void* add_arg) {
  const auto* payload = static_cast<const bytes*>(add_arg);
  *out = payload->data();
  *outlen = payload->size();
  return 1;
}

[[noreturn]] inline void openssl_die(const char* what) {
  std::fprintf(stderr, "openssl_client_hello: %s failed\n", what);
  ERR_print_errors_fp(stderr);
  std::abort();
}

// The bytes a fresh OpenSSL client writes first: its ClientHello, in one or more records.
inline bytes openssl_client_hello(const openssl_spec& spec) {
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                        SSL_CTX_free);
  if (!ctx) openssl_die("SSL_CTX_new");
  if (!SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) ||
      !SSL_CTX_set_max_proto_version(ctx.get(), spec.max_version)) {
    openssl_die("set_proto_version");
  }
  std::list<bytes> payloads;  // stable addresses for the callbacks
  for (std::size_t i = 0; i < spec.extra_extension_bytes.size(); ++i) {
    payloads.emplace_back(spec.extra_extension_bytes[i], static_cast<std::uint8_t>(0xe0 + i));
    if (!SSL_CTX_add_custom_ext(ctx.get(), static_cast<unsigned>(0xff10 + i),
                                SSL_EXT_CLIENT_HELLO, add_extra_extension, nullptr,
                                &payloads.back(), nullptr, nullptr)) {
      openssl_die("SSL_CTX_add_custom_ext");
    }
  }
  std::unique_ptr<SSL, decltype(&SSL_free)> ssl(SSL_new(ctx.get()), SSL_free);
  if (!ssl) openssl_die("SSL_new");
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), in, out);  // ssl owns both now
  SSL_set_connect_state(ssl.get());
  if (!spec.sni.empty() && !SSL_set_tlsext_host_name(ssl.get(), spec.sni.c_str())) {
    openssl_die("SSL_set_tlsext_host_name");
  }
  if (!spec.alpn.empty()) {
    bytes wire;
    for (const auto& p : spec.alpn) put(wire, alpn_name(p));
    // Returns 0 on success, unlike most of the API.
    if (SSL_set_alpn_protos(ssl.get(), wire.data(), static_cast<unsigned>(wire.size())) != 0) {
      openssl_die("SSL_set_alpn_protos");
    }
  }
  const int rc = SSL_do_handshake(ssl.get());
  if (rc > 0 || SSL_get_error(ssl.get(), rc) != SSL_ERROR_WANT_READ) openssl_die("SSL_do_handshake");
  char* data = nullptr;
  const long size = BIO_get_mem_data(out, &data);
  if (size <= 0) openssl_die("BIO_get_mem_data");
  return bytes(data, data + size);
}

// Like openssl_client_hello, but with extra extensions sized so the handshake message (header
// included) is exactly message_bytes long. Sizes are deterministic for a given spec: only the
// contents of random, session_id and key_share vary between runs.
inline bytes openssl_client_hello_sized(openssl_spec spec, std::size_t message_bytes) {
  const std::size_t base = handshake_message(openssl_client_hello(spec)).size();
  if (message_bytes < base + 4) openssl_die("openssl_client_hello_sized: target too small");
  std::size_t need = message_bytes - base;
  // Each extension costs 4 header bytes plus its data; stay well below the 2^16-1 data limit and
  // never leave a remainder under 4 bytes, which no extension could fill.
  while (need > 0) {
    const std::size_t chunk = need <= 8000 ? need : (need - 8000 < 4 ? 7000 : 8000);
    spec.extra_extension_bytes.push_back(chunk - 4);
    need -= chunk;
  }
  bytes wire = openssl_client_hello(spec);
  if (handshake_message(wire).size() != message_bytes) openssl_die("openssl_client_hello_sized");
  return wire;
}

}  // namespace ewgw::tls::testing
