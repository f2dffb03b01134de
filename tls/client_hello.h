// ClientHello inspection for SNI passthrough: reads the server name and ALPN offer from the first
// bytes of a TLS connection without terminating TLS. Pure: bytes in, result out; no I/O, no
// OpenSSL, no allocation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace ewgw::tls {

// What the bytes seen so far amount to.
enum class hello_status : std::uint8_t {
  need_more,   // a valid prefix of a ClientHello: wait for more bytes and call again
  complete,    // a whole ClientHello was parsed; client_hello_parser::hello() is valid
  not_tls,     // the first bytes are not a TLS handshake record carrying a ClientHello
  too_large,   // the ClientHello, record headers included, exceeds the parser's byte limit
  malformed,   // TLS framing, but a length or field is inconsistent with RFC 8446 / RFC 5246
};

std::string_view to_string(hello_status status);

// Envoy's tls_inspector stops at 16 KiB (max_client_hello_size); so do we by default.
inline constexpr std::size_t default_max_client_hello_bytes = 16 * 1024;
// RFC 6066 s3 allows longer host_name values, but no DNS name exceeds 253 octets (RFC 1035 s2.3.4).
inline constexpr std::size_t max_server_name_bytes = 255;
// ALPN protocol_name_list bytes kept; clients offer a few short names (Istio: five, < 60 bytes).
inline constexpr std::size_t max_alpn_list_bytes = 512;

// The parts of a ClientHello that routing needs. Fixed-size storage so it can live inside a
// connection's hello-phase state without heap allocation.
class client_hello {
 public:
  // host_name from the server_name extension (RFC 6066 s3), lower-cased (DNS names compare
  // case-insensitively, RFC 4343). Empty when the client sent no SNI.
  std::string_view server_name() const { return {server_name_, server_name_size_}; }

  bool has_alpn() const { return alpn_list_size_ > 0; }
  // True when the offered ALPN list was longer than max_alpn_list_bytes; the protocols that fit
  // completely are still reported.
  bool alpn_truncated() const { return alpn_truncated_; }
  // Calls fn(std::string_view protocol) for each offered ALPN protocol, in the client's order.
  template <class F>
  void for_each_alpn(F&& fn) const {
    std::size_t at = 0;
    while (at < alpn_list_size_) {
      const std::size_t len = static_cast<unsigned char>(alpn_list_[at]);
      fn(std::string_view(alpn_list_ + at + 1, len));
      at += 1 + len;
    }
  }
  bool offers_alpn(std::string_view protocol) const;

  // ClientHello.legacy_version (0x0303 for TLS 1.2 and 1.3 clients).
  std::uint16_t legacy_version() const { return legacy_version_; }
  // True when supported_versions (RFC 8446 s4.2.1) lists TLS 1.3 (0x0304).
  bool offers_tls13() const { return offers_tls13_; }
  // Bytes of the stream, record headers included, up to and including the ClientHello's last
  // byte. Anything after it (e.g. early data) belongs to the peer too and is forwarded unchanged.
  std::size_t wire_bytes() const { return wire_bytes_; }

 private:
  friend class client_hello_parser;
  char server_name_[max_server_name_bytes];
  std::uint8_t server_name_size_ = 0;
  bool alpn_truncated_ = false;
  bool offers_tls13_ = false;
  std::uint16_t legacy_version_ = 0;
  std::uint16_t alpn_list_size_ = 0;  // bytes used in alpn_list_ (length-prefixed names)
  char alpn_list_[max_alpn_list_bytes];
  std::size_t wire_bytes_ = 0;
};

// Incremental ClientHello parser.
//
// Call parse() with every byte received so far, starting from the connection's first byte; each
// call passes the previous bytes unchanged plus any new ones. The record layer is scanned once
// (work per call is proportional to the new bytes); the ClientHello body is decoded once, when
// all of it has arrived. The ClientHello may be split across any number of TCP reads and TLS
// records (RFC 8446 s5.1 allows a handshake message to span records).
//
// Never trusts a length field: every length is checked against its enclosing structure and the
// byte limit before use. A result other than need_more is final; further calls return it again.
class client_hello_parser {
 public:
  explicit client_hello_parser(std::size_t max_bytes = default_max_client_hello_bytes)
      : max_bytes_(max_bytes) {}

  hello_status parse(std::span<const std::uint8_t> received);

  // Valid once parse() returned complete.
  const client_hello& hello() const { return hello_; }

  // Reason for not_tls / too_large / malformed, for logs (static string, never empty then).
  std::string_view error() const { return error_; }

 private:
  hello_status fail(hello_status status, std::string_view why);
  hello_status decode_body(std::span<const std::uint8_t> received);
  // Fewest stream bytes that can still hold the whole ClientHello; needs hello_length_.
  std::size_t min_wire_bytes() const;

  std::size_t max_bytes_;
  hello_status status_ = hello_status::need_more;
  std::string_view error_;
  // Record-layer scan state: stream bytes consumed by the scan (record headers once seen whole,
  // payload bytes as they arrive), offset just past the current record's payload (= offset of
  // the next record header; equal to scanned_ while waiting for a header), handshake payload
  // bytes seen so far (from complete and partial records), and the ClientHello's length from its
  // handshake header once known (0 until then; a real one is at least 41 bytes).
  std::size_t scanned_ = 0;
  std::size_t next_record_ = 0;
  std::size_t handshake_bytes_ = 0;
  std::size_t hello_length_ = 0;
  client_hello hello_;
};

}  // namespace ewgw::tls
