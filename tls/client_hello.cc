#include "tls/client_hello.h"

#include <algorithm>
#include <cassert>
#include <cstring>

namespace ewgw::tls {

std::string_view to_string(hello_status status) {
  switch (status) {
    case hello_status::need_more: return "need_more";
    case hello_status::complete: return "complete";
    case hello_status::not_tls: return "not_tls";
    case hello_status::too_large: return "too_large";
    case hello_status::malformed: return "malformed";
  }
  return "unknown";
}

bool client_hello::offers_alpn(std::string_view protocol) const {
  bool found = false;
  for_each_alpn([&](std::string_view offered) { found = found || offered == protocol; });
  return found;
}

// Wire layout parsed here.
//
// Record layer, RFC 8446 s5.1 (same framing as RFC 5246 s6.2.1):
//   struct {
//     ContentType type;                      // 1 byte; 22 = handshake
//     ProtocolVersion legacy_record_version; // 2 bytes; major 3 (0x0301..0x0303 seen in practice)
//     uint16 length;                         // 1..2^14 for handshake records
//     opaque fragment[TLSPlaintext.length];
//   } TLSPlaintext;
// A handshake message may be fragmented over several consecutive records with no records of
// another type in between.
//
// Handshake message, RFC 8446 s4:
//   struct {
//     HandshakeType msg_type;                // 1 byte; 1 = client_hello
//     uint24 length;                         // bytes of the body that follows
//     ClientHello body;
//   } Handshake;
//
// ClientHello, RFC 8446 s4.1.2 (RFC 5246 s7.4.1.2 is the same up to extensions, which TLS 1.2
// clients may omit entirely):
//   struct {
//     ProtocolVersion legacy_version = 0x0303;    // 2 bytes
//     Random random;                              // 32 bytes
//     opaque legacy_session_id<0..32>;            // 1-byte length
//     CipherSuite cipher_suites<2..2^16-2>;       // 2-byte length, 2 bytes per suite
//     opaque legacy_compression_methods<1..2^8-1>;// 1-byte length
//     Extension extensions<8..2^16-1>;            // 2-byte length; <0..2^16-1> in TLS 1.2
//   } ClientHello;
//   struct {
//     ExtensionType extension_type;               // 2 bytes
//     opaque extension_data<0..2^16-1>;           // 2-byte length
//   } Extension;
namespace {

constexpr std::uint8_t content_type_handshake = 22;
constexpr std::uint8_t record_version_major = 3;
constexpr std::uint8_t handshake_type_client_hello = 1;
constexpr std::size_t record_header_bytes = 5;
constexpr std::size_t handshake_header_bytes = 4;
// RFC 8446 s5.1: "The length MUST NOT exceed 2^14 bytes."
constexpr std::size_t max_record_payload = std::size_t{1} << 14;
// legacy_version(2) + random(32) + session_id length(1) + cipher_suites length(2) + one suite(2)
// + compression_methods length(1) + one method(1): nothing shorter is a ClientHello.
constexpr std::size_t min_hello_body = 41;
constexpr std::size_t random_bytes = 32;
constexpr std::size_t max_session_id_bytes = 32;

constexpr std::uint16_t extension_server_name = 0;          // RFC 6066 s3
constexpr std::uint16_t extension_alpn = 16;                // RFC 7301 s3.1
constexpr std::uint16_t extension_supported_versions = 43;  // RFC 8446 s4.2.1
constexpr std::uint8_t name_type_host_name = 0;             // RFC 6066 s3
constexpr std::uint16_t version_tls13 = 0x0304;

// Reads the handshake message as one byte sequence while it lies in the payloads of consecutive
// records, so the body is decoded in place without first reassembling it. The record scan has
// validated every record header up to the ClientHello's last byte (all handshake, all non-empty),
// and the decoder checks each read against the ClientHello's length first, so the reader never
// touches a byte the scan did not see.
class fragment_reader {
 public:
  fragment_reader(const std::uint8_t* stream, [[maybe_unused]] std::size_t stream_end)
      : stream_(stream)
#ifndef NDEBUG
        , stream_end_(stream_end)
#endif
  {
  }

  // Handshake-message bytes consumed so far (0 = msg_type).
  std::size_t offset() const { return offset_; }

  std::uint8_t u8() {
    if (left_ == 0) enter_next_record();
    assert(raw_ < stream_end_);
    --left_;
    ++offset_;
    return stream_[raw_++];
  }

  std::uint16_t u16() {
    if (left_ >= 2) {  // common case: both bytes in this record
      const auto value = static_cast<std::uint16_t>(stream_[raw_] << 8 | stream_[raw_ + 1]);
      assert(raw_ + 2 <= stream_end_);
      raw_ += 2;
      left_ -= 2;
      offset_ += 2;
      return value;
    }
    const std::uint16_t high = u8();
    return static_cast<std::uint16_t>(high << 8 | u8());
  }

  std::uint32_t u24() {
    const std::uint32_t high = u8();
    return high << 16 | u16();
  }

  void skip(std::size_t n) {
    while (n > 0) {
      if (left_ == 0) enter_next_record();
      const std::size_t take = std::min(n, left_);
      assert(raw_ + take <= stream_end_);
      raw_ += take;
      left_ -= take;
      offset_ += take;
      n -= take;
    }
  }

  void read(char* out, std::size_t n) {
    while (n > 0) {
      if (left_ == 0) enter_next_record();
      const std::size_t take = std::min(n, left_);
      assert(raw_ + take <= stream_end_);
      std::memcpy(out, stream_ + raw_, take);
      out += take;
      raw_ += take;
      left_ -= take;
      offset_ += take;
      n -= take;
    }
  }

 private:
  void enter_next_record() {
    // The scan rejected zero-length records, so after one header there is payload to read.
    assert(raw_ + record_header_bytes < stream_end_);
    left_ = static_cast<std::size_t>(stream_[raw_ + 3] << 8 | stream_[raw_ + 4]);
    raw_ += record_header_bytes;
  }

  const std::uint8_t* stream_;
#ifndef NDEBUG
  std::size_t stream_end_;
#endif
  std::size_t raw_ = 0;     // stream offset of the next byte
  std::size_t left_ = 0;    // payload bytes left in the current record
  std::size_t offset_ = 0;  // handshake bytes consumed
};

}  // namespace

hello_status client_hello_parser::fail(hello_status status, std::string_view why) {
  status_ = status;
  error_ = why;
  return status;
}

std::size_t client_hello_parser::min_wire_bytes() const {
  const std::size_t total = handshake_header_bytes + hello_length_;
  // The current record (whose header has been seen) ends at next_record_.
  const std::size_t record_holds = handshake_bytes_ + (next_record_ - scanned_);
  if (total <= record_holds) return scanned_ - handshake_bytes_ + total;
  // The rest needs further records: at least one 5-byte header per 2^14 payload bytes (s5.1).
  const std::size_t rest = total - record_holds;
  return next_record_ + rest +
         record_header_bytes * ((rest + max_record_payload - 1) / max_record_payload);
}

hello_status client_hello_parser::parse(std::span<const std::uint8_t> received) {
  if (status_ != hello_status::need_more) return status_;
  // Each call must show at least the bytes of the previous one: the scan state below refers to
  // them. A shorter span is a caller bug; it has nothing new to scan either way.
  assert(received.size() >= scanned_);
  if (received.size() < scanned_) return status_;

  const std::uint8_t* const data = received.data();
  // Bytes past the limit can never belong to an acceptable ClientHello, so are never read.
  const std::size_t avail = std::min(received.size(), max_bytes_);

  while (scanned_ < avail) {
    if (scanned_ < next_record_) {
      // Inside a handshake record's payload: everything up to the ClientHello's end is hello.
      const std::size_t take = std::min(avail, next_record_) - scanned_;
      scanned_ += take;
      handshake_bytes_ += take;
      if (hello_length_ == 0) {
        // Records are non-empty, so handshake byte 0 is the first record's first payload byte.
        if (data[record_header_bytes] != handshake_type_client_hello) {
          return fail(hello_status::not_tls, "handshake type is not client_hello");
        }
        if (handshake_bytes_ < handshake_header_bytes) continue;
        fragment_reader header(data, scanned_);
        header.skip(1);
        const std::size_t length = header.u24();
        if (length < min_hello_body) {
          return fail(hello_status::malformed, "ClientHello shorter than its fixed fields");
        }
        hello_length_ = length;
        if (min_wire_bytes() > max_bytes_) {
          return fail(hello_status::too_large, "ClientHello length exceeds the byte limit");
        }
      }
      const std::size_t total = handshake_header_bytes + hello_length_;
      if (handshake_bytes_ >= total) {
        // The hello ends inside the payload just taken; anything after it is not ours to read.
        hello_.wire_bytes_ = scanned_ - (handshake_bytes_ - total);
        return decode_body(received);
      }
      continue;
    }

    // At a record header; it may be only partly here. Check each byte as it arrives so non-TLS
    // peers are told apart after their first byte.
    const std::uint8_t* header = data + scanned_;
    const std::size_t have = avail - scanned_;
    const bool first = scanned_ == 0;
    if (header[0] != content_type_handshake) {
      // s5.1: a handshake message split over records has no other record types between them.
      return first ? fail(hello_status::not_tls, "first record is not a handshake record")
                   : fail(hello_status::malformed, "non-handshake record inside the ClientHello");
    }
    if (have < 2) break;
    if (header[1] != record_version_major) {
      // Major 2 is an SSLv2-compatible hello (RFC 5246 appendix E.2): not something we route.
      return first ? fail(hello_status::not_tls, "record version major is not 3")
                   : fail(hello_status::malformed, "record version major is not 3");
    }
    if (have < record_header_bytes) break;
    const std::size_t length = static_cast<std::size_t>(header[3] << 8 | header[4]);
    if (length == 0) {
      // s5.1: "Implementations MUST NOT send zero-length fragments of Handshake types".
      return fail(hello_status::malformed, "zero-length handshake record");
    }
    if (length > max_record_payload) {
      return fail(hello_status::malformed, "record length exceeds 2^14");
    }
    scanned_ += record_header_bytes;
    next_record_ = scanned_ + length;
    // Each further record header pushes the earliest possible end of the hello out.
    if (hello_length_ != 0 && min_wire_bytes() > max_bytes_) {
      return fail(hello_status::too_large, "ClientHello with its records exceeds the byte limit");
    }
  }

  // Still a valid prefix. If the limit has been reached, completing it takes bytes past it.
  if (received.size() >= max_bytes_) {
    return fail(hello_status::too_large, "ClientHello exceeds the byte limit");
  }
  return status_;
}

hello_status client_hello_parser::decode_body(std::span<const std::uint8_t> received) {
  fragment_reader r(received.data(), hello_.wire_bytes_);
  const std::size_t end = handshake_header_bytes + hello_length_;
  // True when the next n bytes lie inside a structure ending at handshake offset `limit`.
  // Callers keep r.offset() <= limit, so the subtraction cannot wrap.
  const auto fits = [&r](std::size_t n, std::size_t limit) { return n <= limit - r.offset(); };
  const auto malformed = [this](std::string_view why) {
    return fail(hello_status::malformed, why);
  };

  r.skip(handshake_header_bytes);
  // hello_length_ >= min_hello_body, so the fixed-size fields are present.
  hello_.legacy_version_ = r.u16();
  r.skip(random_bytes);

  const std::size_t session_id = r.u8();
  if (session_id > max_session_id_bytes) return malformed("legacy_session_id longer than 32 bytes");
  if (!fits(session_id, end)) return malformed("legacy_session_id overruns the ClientHello");
  r.skip(session_id);

  if (!fits(2, end)) return malformed("ClientHello ends inside cipher_suites");
  const std::size_t cipher_suites = r.u16();
  // cipher_suites<2..2^16-2> of 2-byte CipherSuite values.
  if (cipher_suites < 2 || cipher_suites % 2 != 0) {
    return malformed("cipher_suites length is zero or odd");
  }
  if (!fits(cipher_suites, end)) return malformed("cipher_suites overruns the ClientHello");
  r.skip(cipher_suites);

  if (!fits(1, end)) return malformed("ClientHello ends before compression_methods");
  const std::size_t compression = r.u8();
  if (compression == 0) return malformed("compression_methods is empty");
  if (!fits(compression, end)) return malformed("compression_methods overruns the ClientHello");
  r.skip(compression);

  // RFC 5246 s7.4.1.2: a TLS 1.2 client may send no extensions at all; their presence is told by
  // whether bytes follow compression_methods.
  if (r.offset() == end) return status_ = hello_status::complete;

  if (!fits(2, end)) return malformed("ClientHello ends inside the extensions length");
  const std::size_t extensions = r.u16();
  if (extensions != end - r.offset()) {
    return malformed("extensions length does not match the ClientHello length");
  }

  // RFC 8446 s4.2: at most one extension of each type. Only the ones we interpret are tracked:
  // a duplicate of those would make the routing input ambiguous.
  bool seen_server_name = false;
  bool seen_alpn = false;
  bool seen_supported_versions = false;

  while (r.offset() < end) {
    if (!fits(4, end)) return malformed("extension header overruns the extensions block");
    const std::uint16_t type = r.u16();
    const std::size_t length = r.u16();
    if (!fits(length, end)) return malformed("extension data overruns the extensions block");
    const std::size_t ext_end = r.offset() + length;

    switch (type) {
      case extension_server_name: {
        // RFC 6066 s3: ServerName server_name_list<1..2^16-1>, each entry
        // { NameType name_type; opaque HostName<1..2^16-1> } for host_name.
        if (seen_server_name) return malformed("duplicate server_name extension");
        seen_server_name = true;
        if (length < 2) return malformed("server_name extension shorter than its list length");
        const std::size_t list = r.u16();
        if (list != length - 2) {
          return malformed("server_name list length does not match the extension length");
        }
        if (list == 0) return malformed("server_name list is empty");
        bool have_host_name = false;
        while (r.offset() < ext_end) {
          if (!fits(3, ext_end)) return malformed("server_name entry overruns its list");
          const std::uint8_t name_type = r.u8();
          const std::size_t name_length = r.u16();
          if (!fits(name_length, ext_end)) return malformed("server_name entry overruns its list");
          // Unknown name types are skipped, as are further host_names: the first one decides.
          if (name_type != name_type_host_name || have_host_name) {
            r.skip(name_length);
            continue;
          }
          if (name_length == 0 || name_length > max_server_name_bytes) {
            return malformed("host_name length is not in 1..255");
          }
          r.read(hello_.server_name_, name_length);
          for (std::size_t i = 0; i < name_length; ++i) {
            const char c = hello_.server_name_[i];
            // A DNS name in SNI is ASCII without controls or spaces (RFC 6066 s3); anything else
            // cannot match a route and may confuse logs.
            if (c < 0x21 || c > 0x7e) return malformed("host_name has a byte outside 0x21..0x7e");
            // RFC 4343: DNS names compare case-insensitively; routes are stored lower-cased.
            if (c >= 'A' && c <= 'Z') hello_.server_name_[i] = static_cast<char>(c - 'A' + 'a');
          }
          hello_.server_name_size_ = static_cast<std::uint8_t>(name_length);
          have_host_name = true;
        }
        break;
      }
      case extension_alpn: {
        // RFC 7301 s3.1: ProtocolName protocol_name_list<2..2^16-1>, ProtocolName<1..2^8-1>.
        if (seen_alpn) return malformed("duplicate ALPN extension");
        seen_alpn = true;
        if (length < 2) return malformed("ALPN extension shorter than its list length");
        const std::size_t list = r.u16();
        if (list != length - 2) return malformed("ALPN list length does not match the extension length");
        if (list < 2) return malformed("ALPN list shorter than 2 bytes");
        while (r.offset() < ext_end) {
          const std::size_t name_length = r.u8();
          // "Empty strings MUST NOT be included" (s3.1).
          if (name_length == 0) return malformed("empty ALPN protocol name");
          if (!fits(name_length, ext_end)) return malformed("ALPN protocol name overruns its list");
          // Keep a prefix of the client's preference order: once one name does not fit, later
          // ones are dropped too, so what is reported is the client's first choices.
          const std::size_t used = hello_.alpn_list_size_;
          if (!hello_.alpn_truncated_ && used + 1 + name_length <= max_alpn_list_bytes) {
            hello_.alpn_list_[used] = static_cast<char>(name_length);
            r.read(hello_.alpn_list_ + used + 1, name_length);
            hello_.alpn_list_size_ = static_cast<std::uint16_t>(used + 1 + name_length);
          } else {
            hello_.alpn_truncated_ = true;
            r.skip(name_length);
          }
        }
        break;
      }
      case extension_supported_versions: {
        // RFC 8446 s4.2.1: in ClientHello, ProtocolVersion versions<2..254>.
        if (seen_supported_versions) return malformed("duplicate supported_versions extension");
        seen_supported_versions = true;
        if (length < 1) return malformed("supported_versions extension is empty");
        const std::size_t list = r.u8();
        if (list != length - 1) {
          return malformed("supported_versions length does not match the extension length");
        }
        if (list < 2 || list % 2 != 0) return malformed("supported_versions length is zero or odd");
        for (std::size_t i = 0; i < list; i += 2) {
          if (r.u16() == version_tls13) hello_.offers_tls13_ = true;
        }
        break;
      }
      default:
        r.skip(length);
        break;
    }
    // Every case above consumes exactly its extension_data or fails.
    assert(r.offset() == ext_end);
  }
  return status_ = hello_status::complete;
}

}  // namespace ewgw::tls
