#include "tls/client_hello.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <map>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "test/tls/hello_builders.h"
#include "test/tls/hello_invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

namespace ewgw::tls {
namespace {

using testing::bytes;
using testing::check_invariants;
using testing::describe;
using testing::parse_once;
using testing::parse_outcome;

constexpr std::size_t default_limit = default_max_client_hello_bytes;

std::span<const std::uint8_t> prefix(const bytes& b, std::size_t k) {
  return std::span<const std::uint8_t>(b).first(k);
}

std::vector<std::string> alpn_of(const client_hello& hello) {
  std::vector<std::string> out;
  hello.for_each_alpn([&](std::string_view p) { out.emplace_back(p); });
  return out;
}

const std::vector<std::string> istio_alpn = {"istio-peer-exchange", "istio", "istio-http/1.0",
                                             "istio-http/1.1", "istio-h2"};
const std::string istio_sni = "outbound_.5000_._.helloworld.sample.svc.cluster.local";

// ---------------------------------------------------------------------------------------------
// Real OpenSSL hellos: every one is parsed whole, at every prefix, in two parts at every split,
// and re-framed into records of many sizes.

struct hello_case {
  std::string name;
  testing::openssl_spec spec;
  std::size_t message_bytes = 0;  // 0: as OpenSSL makes it; else padded to this handshake size
  std::string expected_sni;
};

std::vector<hello_case> hello_cases() {
  using testing::openssl_spec;
  const openssl_spec tls12{.max_version = TLS1_2_VERSION};
  const openssl_spec tls13{.max_version = TLS1_3_VERSION};
  auto with = [](openssl_spec s, std::string sni, std::vector<std::string> alpn) {
    s.sni = std::move(sni);
    s.alpn = std::move(alpn);
    return s;
  };
  return {
      {"tls12_plain", tls12, 0, ""},
      {"tls12_sni", with(tls12, "example.com", {}), 0, "example.com"},
      {"tls12_alpn_only", with(tls12, "", istio_alpn), 0, ""},
      {"tls12_istio", with(tls12, istio_sni, istio_alpn), 0, istio_sni},
      {"tls13_plain", tls13, 0, ""},
      {"tls13_sni", with(tls13, "example.com", {}), 0, "example.com"},
      {"tls13_alpn_only", with(tls13, "", {"h2", "http/1.1"}), 0, ""},
      {"tls13_istio", with(tls13, istio_sni, istio_alpn), 0, istio_sni},
      {"tls13_mixed_case_sni", with(tls13, "Outbound_.5000_._.HelloWorld.Sample.SVC.Cluster.Local",
                                    istio_alpn),
       0, istio_sni},
      {"tls13_istio_2k", with(tls13, istio_sni, istio_alpn), 2048, istio_sni},
      {"tls12_istio_5k5", with(tls12, istio_sni, istio_alpn), 5632, istio_sni},
      {"tls13_istio_5k5", with(tls13, istio_sni, istio_alpn), 5632, istio_sni},
      {"tls13_istio_15k", with(tls13, istio_sni, istio_alpn), 15360, istio_sni},
  };
}

// Test names (and ctest names via gtest_discover_tests) show the case name, not a byte dump.
void PrintTo(const hello_case& c, std::ostream* os) { *os << c.name; }

// Generated once per case: the tests below share them.
const bytes& hello_for(const hello_case& c) {
  static std::map<std::string, bytes> cache;
  auto it = cache.find(c.name);
  if (it == cache.end()) {
    it = cache
             .emplace(c.name, c.message_bytes == 0
                                  ? testing::openssl_client_hello(c.spec)
                                  : testing::openssl_client_hello_sized(c.spec, c.message_bytes))
             .first;
  }
  return it->second;
}

class openssl_hello : public ::testing::TestWithParam<hello_case> {
 protected:
  const bytes& wire() const { return hello_for(GetParam()); }

  // What a complete parse of this case must report.
  parse_outcome expected(std::size_t wire_bytes) const {
    parse_outcome o;
    o.status = hello_status::complete;
    o.server_name = GetParam().expected_sni;
    o.alpn = GetParam().spec.alpn;
    o.offers_tls13 = GetParam().spec.max_version == TLS1_3_VERSION;
    o.legacy_version = 0x0303;
    o.wire_bytes = wire_bytes;
    return o;
  }

  // Feeds `input` one byte more per call and in two parts at split points (every split, or
  // every `stride`-th plus the last 64), expecting need_more until `want` exactly at the end.
  void expect_incremental(const bytes& input, std::size_t max_bytes, const parse_outcome& want,
                          std::size_t stride) const {
    {
      client_hello_parser parser(max_bytes);
      for (std::size_t k = 0; k < input.size(); ++k) {
        ASSERT_EQ(parser.parse(prefix(input, k)), hello_status::need_more) << "prefix " << k;
      }
      const auto got = testing::outcome_of(parser, parser.parse(input));
      ASSERT_EQ(got, want) << describe(got);
    }
    for (std::size_t k = 0; k < input.size(); ++k) {
      if (k % stride != 0 && k + 64 < input.size()) continue;
      client_hello_parser parser(max_bytes);
      ASSERT_EQ(parser.parse(prefix(input, k)), hello_status::need_more) << "split " << k;
      const auto got = testing::outcome_of(parser, parser.parse(input));
      ASSERT_EQ(got, want) << "split " << k << ": " << describe(got);
    }
  }
};

TEST_P(openssl_hello, ParsesWholeHello) {
  const bytes& hello = wire();
  ASSERT_EQ(hello[0], 22);
  if (GetParam().message_bytes != 0) {
    EXPECT_EQ(testing::handshake_message(hello).size(), GetParam().message_bytes);
  }
  client_hello_parser parser;
  ASSERT_EQ(parser.parse(hello), hello_status::complete) << parser.error();
  EXPECT_EQ(parser.error(), "");
  const client_hello& h = parser.hello();
  EXPECT_EQ(h.server_name(), GetParam().expected_sni);
  EXPECT_EQ(alpn_of(h), GetParam().spec.alpn);
  EXPECT_EQ(h.has_alpn(), !GetParam().spec.alpn.empty());
  EXPECT_FALSE(h.alpn_truncated());
  EXPECT_EQ(h.legacy_version(), 0x0303);
  EXPECT_EQ(h.offers_tls13(), GetParam().spec.max_version == TLS1_3_VERSION);
  EXPECT_EQ(h.wire_bytes(), hello.size());
  for (const auto& p : GetParam().spec.alpn) EXPECT_TRUE(h.offers_alpn(p)) << p;
  EXPECT_FALSE(h.offers_alpn("h3"));
  EXPECT_FALSE(h.offers_alpn(""));
}

// A fresh parser given only the first k bytes, for every k.
TEST_P(openssl_hello, EveryPrefixOneShot) {
  const bytes& hello = wire();
  for (std::size_t k = 0; k < hello.size(); ++k) {
    client_hello_parser parser;
    ASSERT_EQ(parser.parse(prefix(hello, k)), hello_status::need_more) << "prefix " << k;
    ASSERT_EQ(parser.error(), "");
  }
  EXPECT_EQ(parse_once(hello, default_limit), expected(hello.size()));
}

// One parser fed every prefix in turn, then two parts split at every offset.
TEST_P(openssl_hello, EveryPrefixIncrementalAndEveryTwoPartSplit) {
  expect_incremental(wire(), default_limit, expected(wire().size()), 1);
}

// The same handshake message re-framed into records of N bytes parses to the same hello.
TEST_P(openssl_hello, ReframedIntoRecords) {
  const bytes message = testing::handshake_message(wire());
  for (const std::size_t n : {1, 2, 7, 100, 1000}) {
    SCOPED_TRACE("record size " + std::to_string(n));
    const bytes framed = testing::frame(message, n);
    ASSERT_EQ(framed.size(), message.size() + 5 * ((message.size() + n - 1) / n));
    // With room for all its headers, it completes at exactly its last byte.
    EXPECT_EQ(parse_once(framed, framed.size()), expected(framed.size()));
    // Two-part splits at every offset are quadratic in the record count; stride the big ones.
    expect_incremental(framed, framed.size(), expected(framed.size()),
                       framed.size() <= 20000 ? 1 : 61);
    // Under the default 16 KiB limit the record headers count too.
    const auto under_default = parse_once(framed, default_limit);
    if (framed.size() <= default_limit) {
      EXPECT_EQ(under_default, expected(framed.size()));
    } else {
      EXPECT_EQ(under_default.status, hello_status::too_large) << describe(under_default);
    }
  }
}

// Bytes after the hello belong to the peer's next messages (RFC 8446 s5.1 lets a record carry
// more than one handshake message; early data follows): never read, and wire_bytes is exact.
TEST_P(openssl_hello, BytesAfterHelloAreIgnored) {
  const bytes message = testing::handshake_message(wire());
  const bytes app_data = testing::record(bytes(40, 0xee), 23, 0x0303);
  const bytes junk = {0x00, 0xff, 0x80, 0x16};

  // A later record of another type, and garbage that is not a record at all.
  for (const bytes& after : {app_data, junk, testing::cat(app_data, junk)}) {
    const bytes input = testing::cat(wire(), after);
    EXPECT_EQ(parse_once(input, default_limit), expected(wire().size()));
    if (input.size() < 4096) {
      EXPECT_EQ(check_invariants(input, default_limit), "");
    }
  }
  // More bytes inside the hello's own last record: its length covers them, the hello ends first.
  for (const std::size_t n : {7, 100, 100000}) {
    SCOPED_TRACE("record size " + std::to_string(n));
    bytes framed = testing::frame(message, n);
    const std::size_t hello_end = framed.size();
    const std::size_t last_header = hello_end - 5 - ((message.size() - 1) % n + 1);
    const std::size_t last_length = testing::get_u16(framed, last_header + 3);
    framed[last_header + 3] = static_cast<std::uint8_t>((last_length + 10) >> 8);
    framed[last_header + 4] = static_cast<std::uint8_t>(last_length + 10);
    framed.insert(framed.end(), 10, 0x99);
    const bytes input = testing::cat(framed, app_data);
    EXPECT_EQ(parse_once(input, input.size()), expected(hello_end));
    EXPECT_EQ(parse_once(prefix(input, hello_end), input.size()), expected(hello_end));
    EXPECT_EQ(parse_once(prefix(input, hello_end - 1), input.size()).status,
              hello_status::need_more);
  }
}

// The limit counts record headers: a hello of exactly max_bytes fits, one byte less does not,
// and the parser knows as soon as the handshake header (or the last record header) shows it.
TEST_P(openssl_hello, LimitCountsRecordHeaders) {
  const bytes& hello = wire();
  EXPECT_EQ(parse_once(hello, hello.size()), expected(hello.size()));
  {
    // One record: record header + handshake header reveal the exact size after 9 bytes.
    client_hello_parser parser(hello.size() - 1);
    for (std::size_t k = 0; k < 9; ++k) {
      ASSERT_EQ(parser.parse(prefix(hello, k)), hello_status::need_more) << k;
    }
    EXPECT_EQ(parser.parse(prefix(hello, 9)), hello_status::too_large);
    EXPECT_EQ(parser.error(), "ClientHello length exceeds the byte limit");
  }
  {
    // 100-byte records: the least possible size assumes the rest comes in one more record, so it
    // grows with each header and becomes exact at the second-to-last one: one byte over. (With
    // only two records that is the first, and the handshake header after 9 bytes decides.)
    const bytes message = testing::handshake_message(hello);
    std::vector<std::size_t> starts;
    const bytes framed = testing::frame(message, 100, &starts);
    ASSERT_GE(starts.size(), 2u);
    EXPECT_EQ(parse_once(framed, framed.size()), expected(framed.size()));
    client_hello_parser parser(framed.size() - 1);
    const std::size_t detect = std::max<std::size_t>(starts[starts.size() - 2] + 5, 9);
    for (std::size_t k = 0; k < detect; ++k) {
      ASSERT_EQ(parser.parse(prefix(framed, k)), hello_status::need_more) << k;
    }
    EXPECT_EQ(parser.parse(prefix(framed, detect)), hello_status::too_large);
    EXPECT_EQ(parser.error(), starts.size() == 2
                                  ? "ClientHello length exceeds the byte limit"
                                  : "ClientHello with its records exceeds the byte limit");
    EXPECT_EQ(check_invariants(framed, framed.size() - 1, framed.size() <= 4096), "");
  }
}

INSTANTIATE_TEST_SUITE_P(ClientHello, openssl_hello, ::testing::ValuesIn(hello_cases()),
                         [](const auto& test_info) { return test_info.param.name; });

// Over 16 KiB OpenSSL itself splits the hello into two records (max_send_fragment 2^14).
TEST(ClientHelloLimits, OpensslHelloOver16KiBIsTooLarge) {
  const bytes hello = testing::openssl_client_hello_sized(
      {.max_version = TLS1_3_VERSION, .sni = istio_sni, .alpn = istio_alpn}, 17 * 1024);
  const bytes message = testing::handshake_message(hello);
  ASSERT_EQ(hello.size(), message.size() + 10) << "expected two records";
  ASSERT_EQ(testing::get_u16(hello, 3), 1u << 14);

  client_hello_parser parser;  // default 16 KiB limit
  for (std::size_t k = 0; k < 9; ++k) {
    ASSERT_EQ(parser.parse(prefix(hello, k)), hello_status::need_more) << k;
  }
  // The handshake length alone shows that 2^14 + 5 bytes cannot hold it.
  EXPECT_EQ(parser.parse(prefix(hello, 9)), hello_status::too_large);
  EXPECT_EQ(parser.parse(hello), hello_status::too_large);
  EXPECT_EQ(parse_once(hello, default_limit).status, hello_status::too_large);

  // With a larger limit the same bytes are a fine two-record hello.
  const auto big = parse_once(hello, 64 * 1024);
  EXPECT_EQ(big.status, hello_status::complete) << describe(big);
  EXPECT_EQ(big.server_name, istio_sni);
  EXPECT_EQ(big.alpn, istio_alpn);
  EXPECT_EQ(big.wire_bytes, hello.size());
  EXPECT_EQ(check_invariants(hello, 64 * 1024, /*every_split=*/false), "");
}

TEST(ClientHelloLimits, HeaderRevealsRecordsCannotFit) {
  // A 194-byte handshake message framed as 100 + 94 bytes: 204 wire bytes. After the first
  // record and handshake header the parser knows at least 105 + 94 + 5 bytes are needed.
  testing::hello_fields f;
  f.extensions = {};
  bytes body = testing::hello_body(f);
  f.extensions = {testing::extension(0xff10, bytes(190 - body.size() - 4, 0x11))};
  body = testing::hello_body(f);
  ASSERT_EQ(body.size(), 190u);
  const bytes framed = testing::frame(testing::handshake(body), 100);
  ASSERT_EQ(framed.size(), 204u);

  EXPECT_EQ(parse_once(framed, 204).status, hello_status::complete);
  client_hello_parser parser(203);
  for (std::size_t k = 0; k < 9; ++k) {
    ASSERT_EQ(parser.parse(prefix(framed, k)), hello_status::need_more) << k;
  }
  EXPECT_EQ(parser.parse(prefix(framed, 9)), hello_status::too_large);
  EXPECT_EQ(check_invariants(framed, 203), "");
  EXPECT_EQ(check_invariants(framed, 204), "");
}

// Limits below the first 4 handshake bytes: the hello's length is not known yet, so the parser
// must notice that it has max_bytes bytes and still no hello.
TEST(ClientHelloLimits, TinyLimits) {
  const bytes message = testing::handshake(testing::hello_body({}));
  for (const std::size_t record_size : {1 << 14, 1}) {
    const bytes hello = testing::frame(message, record_size);
    // 1-byte records show the 4th handshake byte only at offset 24.
    const std::size_t header_known = record_size == 1 ? 24 : 9;
    for (std::size_t limit = 0; limit < header_known; ++limit) {
      SCOPED_TRACE("record size " + std::to_string(record_size) + " limit " +
                   std::to_string(limit));
      // Exactly `limit` bytes: too_large now, not a need_more that can never complete.
      const auto at_limit = parse_once(prefix(hello, limit), limit);
      EXPECT_EQ(at_limit.status, hello_status::too_large) << describe(at_limit);
      EXPECT_EQ(at_limit.error, "ClientHello exceeds the byte limit");
      if (limit > 0) {
        EXPECT_EQ(parse_once(prefix(hello, limit - 1), limit).status, hello_status::need_more);
      }
      EXPECT_EQ(parse_once(hello, limit).status, hello_status::too_large);
      EXPECT_EQ(check_invariants(hello, limit), "");
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Hand-built hellos.

TEST(ClientHelloFields, HandBuiltBaseline) {
  const bytes hello = testing::wire_of({});
  const auto got = parse_once(hello, default_limit);
  ASSERT_EQ(got.status, hello_status::complete) << describe(got);
  EXPECT_EQ(got.server_name, "example.com");
  EXPECT_EQ(got.alpn, (std::vector<std::string>{"h2", "http/1.1"}));
  EXPECT_TRUE(got.offers_tls13);
  EXPECT_EQ(got.wire_bytes, hello.size());
  EXPECT_EQ(check_invariants(hello, default_limit), "");
}

// RFC 5246 s7.4.1.2: a TLS 1.2 hello may end right after compression_methods.
TEST(ClientHelloFields, NoExtensionsAtAll) {
  testing::hello_fields f;
  f.with_extensions = false;
  f.session_id = {};
  f.cipher_suites = {0x00, 0x2f};
  const bytes hello = testing::wire_of(f);
  ASSERT_EQ(hello.size(), 5u + 4 + 41) << "the smallest ClientHello there is";
  const auto got = parse_once(hello, default_limit);
  ASSERT_EQ(got.status, hello_status::complete) << describe(got);
  EXPECT_EQ(got.server_name, "");
  EXPECT_TRUE(got.alpn.empty());
  EXPECT_FALSE(got.offers_tls13);
  EXPECT_EQ(check_invariants(hello, default_limit), "");
}

TEST(ClientHelloFields, EmptyExtensionsBlock) {
  testing::hello_fields f;
  f.extensions = {};
  const auto got = parse_once(testing::wire_of(f), default_limit);
  ASSERT_EQ(got.status, hello_status::complete) << describe(got);
  EXPECT_EQ(got.server_name, "");
  EXPECT_TRUE(got.alpn.empty());
}

TEST(ClientHelloFields, LegacyVersionReported) {
  testing::hello_fields f;
  f.legacy_version = 0x0301;
  f.extensions = {testing::sni_extension("a.b")};
  client_hello_parser parser;
  ASSERT_EQ(parser.parse(testing::wire_of(f)), hello_status::complete);
  EXPECT_EQ(parser.hello().legacy_version(), 0x0301);
  EXPECT_FALSE(parser.hello().offers_tls13());
}

TEST(ClientHelloFields, UnknownNameTypesSkippedFirstHostNameWins) {
  testing::hello_fields f;
  f.extensions = {testing::extension(
      0, testing::server_name_data({testing::server_name_entry(7, "ignored.example"),
                                    testing::server_name_entry(0, "First.Example.COM"),
                                    testing::server_name_entry(0, "second.example")}))};
  const bytes hello = testing::wire_of(f);
  const auto got = parse_once(hello, default_limit);
  ASSERT_EQ(got.status, hello_status::complete) << describe(got);
  EXPECT_EQ(got.server_name, "first.example.com");
  EXPECT_EQ(check_invariants(hello, default_limit), "");
}

TEST(ClientHelloFields, OnlyUnknownNameTypeMeansNoSni) {
  testing::hello_fields f;
  f.extensions = {
      testing::extension(0, testing::server_name_data({testing::server_name_entry(1, "x")}))};
  const auto got = parse_once(testing::wire_of(f), default_limit);
  ASSERT_EQ(got.status, hello_status::complete) << describe(got);
  EXPECT_EQ(got.server_name, "");
}

TEST(ClientHelloFields, HostNameLengthBounds) {
  for (const std::size_t n : {1, 253, 255}) {
    testing::hello_fields f;
    const std::string name(n, 'A');
    f.extensions = {testing::sni_extension(name)};
    const auto got = parse_once(testing::wire_of(f), default_limit);
    ASSERT_EQ(got.status, hello_status::complete) << n << describe(got);
    EXPECT_EQ(got.server_name, std::string(n, 'a'));
  }
}

TEST(ClientHelloFields, PrintableAsciiBoundsAccepted) {
  testing::hello_fields f;
  f.extensions = {testing::sni_extension("!~AZaz09.-_")};
  const auto got = parse_once(testing::wire_of(f), default_limit);
  ASSERT_EQ(got.status, hello_status::complete) << describe(got);
  EXPECT_EQ(got.server_name, "!~azaz09.-_");
}

TEST(ClientHelloFields, AlpnKeepsPrefixThatFits) {
  // 200-byte names: two fit in 512 bytes (2 * 201), the third does not, nor the short fourth.
  const std::string a(200, 'a'), b(200, 'b'), c(200, 'c');
  testing::hello_fields f;
  f.extensions = {testing::alpn_extension({a, b, c, "h2"})};
  const bytes hello = testing::wire_of(f);
  client_hello_parser parser;
  ASSERT_EQ(parser.parse(hello), hello_status::complete) << parser.error();
  EXPECT_EQ(alpn_of(parser.hello()), (std::vector<std::string>{a, b}));
  EXPECT_TRUE(parser.hello().alpn_truncated());
  EXPECT_TRUE(parser.hello().has_alpn());
  EXPECT_FALSE(parser.hello().offers_alpn("h2"));
  EXPECT_EQ(check_invariants(hello, default_limit), "");
}

// Exactly 512 bytes fit without truncation: 1 + 255 + 1 + 255.
TEST(ClientHelloFields, AlpnExactlyFillsStorage) {
  const std::string x(255, 'x'), y(255, 'y');
  testing::hello_fields f;
  f.extensions = {testing::alpn_extension({x, y})};
  client_hello_parser parser;
  ASSERT_EQ(parser.parse(testing::wire_of(f)), hello_status::complete) << parser.error();
  EXPECT_EQ(alpn_of(parser.hello()), (std::vector<std::string>{x, y}));
  EXPECT_FALSE(parser.hello().alpn_truncated());

  f.extensions = {testing::alpn_extension({x, y, "z"})};
  client_hello_parser parser2;
  ASSERT_EQ(parser2.parse(testing::wire_of(f)), hello_status::complete) << parser2.error();
  EXPECT_EQ(alpn_of(parser2.hello()), (std::vector<std::string>{x, y}));
  EXPECT_TRUE(parser2.hello().alpn_truncated());
}

TEST(ClientHelloFields, SupportedVersions) {
  const auto tls13 = [](std::vector<std::uint16_t> versions) {
    testing::hello_fields f;
    f.extensions = {testing::extension(43, testing::versions_data(versions))};
    client_hello_parser parser;
    EXPECT_EQ(parser.parse(testing::wire_of(f)), hello_status::complete) << parser.error();
    return parser.hello().offers_tls13();
  };
  EXPECT_TRUE(tls13({0x0304}));
  EXPECT_TRUE(tls13({0x3a3a, 0x0304, 0x0303}));  // GREASE first (RFC 8701)
  EXPECT_FALSE(tls13({0x0303, 0x0302}));
  EXPECT_FALSE(tls13({0x7f1c}));  // a TLS 1.3 draft is not TLS 1.3
}

TEST(ClientHelloFields, UnknownExtensionsSkipped) {
  testing::hello_fields f;
  f.extensions = {testing::extension(0x0a0a, {}),  // GREASE, empty (RFC 8701)
                  testing::extension(0xff10, bytes(300, 0x16)),
                  testing::sni_extension("svc.ns"),
                  testing::extension(21, bytes(33, 0))};  // padding (RFC 7685)
  const auto got = parse_once(testing::wire_of(f), default_limit);
  ASSERT_EQ(got.status, hello_status::complete) << describe(got);
  EXPECT_EQ(got.server_name, "svc.ns");
}

// ---------------------------------------------------------------------------------------------
// Broken hellos: exactly which status and which reason.

struct broken_case {
  std::string name;
  bytes input;
  hello_status status;
  std::string error;
};

testing::hello_fields with(void (*mutate)(testing::hello_fields&)) {
  testing::hello_fields f;
  mutate(f);
  return f;
}

std::vector<broken_case> broken_cases() {
  using testing::alpn_data;
  using testing::alpn_name;
  using testing::extension;
  using testing::hello_fields;
  using testing::server_name_data;
  using testing::server_name_entry;
  using testing::versions_data;
  using testing::wire_of;
  const auto m = hello_status::malformed;
  const auto sni = [](const bytes& data, std::optional<std::size_t> len = {}) {
    hello_fields f;
    f.extensions = {extension(0, data, len)};
    return wire_of(f);
  };
  const auto alpn = [](const bytes& data, std::optional<std::size_t> len = {}) {
    hello_fields f;
    f.extensions = {extension(16, data, len)};
    return wire_of(f);
  };
  const auto versions = [](const bytes& data) {
    hello_fields f;
    f.extensions = {extension(43, data)};
    return wire_of(f);
  };
  const bytes body = testing::hello_body({});
  const bytes message = testing::handshake(body);
  std::vector<std::size_t> starts;
  const bytes framed = testing::frame(message, 40, &starts);

  std::vector<broken_case> cases = {
      // Fixed fields (RFC 8446 s4.1.2).
      {"session_id_33", wire_of(with([](hello_fields& f) { f.session_id = bytes(33, 1); })), m,
       "legacy_session_id longer than 32 bytes"},
      // The next three use the smallest hello (a 41-byte body of fixed fields only), so the lying
      // length can only run off its end.
      {"session_id_overruns", wire_of(with([](hello_fields& f) {
         f.with_extensions = false;
         f.session_id = {};
         f.cipher_suites = {0x00, 0x2f};
         f.session_id_length = 32;
       })),
       m, "legacy_session_id overruns the ClientHello"},
      {"cipher_suites_odd",
       wire_of(with([](hello_fields& f) { f.cipher_suites = {0x13, 0x01, 0x13}; })), m,
       "cipher_suites length is zero or odd"},
      {"cipher_suites_zero", wire_of(with([](hello_fields& f) { f.cipher_suites = {}; })), m,
       "cipher_suites length is zero or odd"},
      {"cipher_suites_overruns", wire_of(with([](hello_fields& f) {
         f.with_extensions = false;
         f.session_id = {};
         f.cipher_suites = {0x00, 0x2f};
         f.cipher_suites_length = 0x100;
       })),
       m, "cipher_suites overruns the ClientHello"},
      {"compression_zero", wire_of(with([](hello_fields& f) { f.compression = {}; })), m,
       "compression_methods is empty"},
      {"compression_overruns", wire_of(with([](hello_fields& f) {
         f.with_extensions = false;
         f.session_id = {};
         f.cipher_suites = {0x00, 0x2f};
         f.compression_length = 2;
       })),
       m, "compression_methods overruns the ClientHello"},
      // Extensions block.
      {"one_byte_after_compression", wire_of(with([](hello_fields& f) {
         f.with_extensions = false;
         f.trailing = {0x00};
       })),
       m, "ClientHello ends inside the extensions length"},
      {"extensions_length_too_long", wire_of(with([](hello_fields& f) {
         bytes block;
         for (const auto& e : f.extensions) testing::put(block, e);
         f.extensions_length = block.size() + 1;
       })),
       m, "extensions length does not match the ClientHello length"},
      {"extensions_length_too_short", wire_of(with([](hello_fields& f) {
         bytes block;
         for (const auto& e : f.extensions) testing::put(block, e);
         f.extensions_length = block.size() - 1;
       })),
       m, "extensions length does not match the ClientHello length"},
      {"trailing_bytes_after_extensions",
       wire_of(with([](hello_fields& f) { f.trailing = {0x00, 0x00, 0x00, 0x00}; })), m,
       "extensions length does not match the ClientHello length"},
      {"extension_header_truncated", wire_of(with([](hello_fields& f) {
         f.extensions.push_back({0x00, 0x2a, 0x00});
       })),
       m, "extension header overruns the extensions block"},
      {"extension_data_overruns", wire_of(with([](hello_fields& f) {
         f.extensions.push_back(extension(0xff10, bytes(8, 0), 9));
       })),
       m, "extension data overruns the extensions block"},
      // server_name (RFC 6066 s3).
      {"sni_extension_1_byte", sni({0x00}), m,
       "server_name extension shorter than its list length"},
      {"sni_list_empty", sni(server_name_data({})), m, "server_name list is empty"},
      {"sni_list_longer_than_extension",
       sni(server_name_data({server_name_entry(0, "a.example")}, 13)), m,
       "server_name list length does not match the extension length"},
      {"sni_list_shorter_than_extension",
       sni(server_name_data({server_name_entry(0, "a.example")}, 11)), m,
       "server_name list length does not match the extension length"},
      {"sni_entry_truncated", sni(server_name_data({{0x00, 0x00}})), m,
       "server_name entry overruns its list"},
      {"host_name_overruns_list",
       sni(server_name_data({server_name_entry(0, "a.example", 10)})), m,
       "server_name entry overruns its list"},
      {"host_name_empty", sni(server_name_data({server_name_entry(0, "")})), m,
       "host_name length is not in 1..255"},
      {"host_name_256", sni(server_name_data({server_name_entry(0, std::string(256, 'a'))})), m,
       "host_name length is not in 1..255"},
      // ALPN (RFC 7301 s3.1).
      {"alpn_extension_1_byte", alpn({0x00}), m, "ALPN extension shorter than its list length"},
      {"alpn_list_empty", alpn(alpn_data({})), m, "ALPN list shorter than 2 bytes"},
      {"alpn_list_1_byte", alpn(alpn_data({{0x00}})), m, "ALPN list shorter than 2 bytes"},
      {"alpn_list_longer_than_extension", alpn(alpn_data({alpn_name("h2")}, 4)), m,
       "ALPN list length does not match the extension length"},
      {"alpn_list_shorter_than_extension", alpn(alpn_data({alpn_name("h2")}, 2)), m,
       "ALPN list length does not match the extension length"},
      {"alpn_name_empty", alpn(alpn_data({alpn_name("h2"), alpn_name("")})), m,
       "empty ALPN protocol name"},
      {"alpn_name_overruns_list", alpn(alpn_data({alpn_name("h2"), alpn_name("http/1.1", 9)})),
       m, "ALPN protocol name overruns its list"},
      // supported_versions (RFC 8446 s4.2.1).
      {"versions_extension_empty", versions({}), m, "supported_versions extension is empty"},
      {"versions_list_longer_than_extension", versions(versions_data({0x0304}, 4)), m,
       "supported_versions length does not match the extension length"},
      {"versions_list_shorter_than_extension", versions(versions_data({0x0304, 0x0303}, 2)), m,
       "supported_versions length does not match the extension length"},
      {"versions_list_odd", versions({0x03, 0x03, 0x04, 0x03}), m,
       "supported_versions length is zero or odd"},
      {"versions_list_zero", versions({0x00}), m, "supported_versions length is zero or odd"},
      // At most one extension of each type (RFC 8446 s4.2).
      {"duplicate_sni", wire_of(with([](hello_fields& f) {
         f.extensions.push_back(testing::sni_extension("other.example"));
       })),
       m, "duplicate server_name extension"},
      {"duplicate_sni_same_name", wire_of(with([](hello_fields& f) {
         f.extensions.push_back(testing::sni_extension("example.com"));
       })),
       m, "duplicate server_name extension"},
      {"duplicate_alpn", wire_of(with([](hello_fields& f) {
         f.extensions.push_back(testing::alpn_extension({"h2"}));
       })),
       m, "duplicate ALPN extension"},
      {"duplicate_supported_versions", wire_of(with([](hello_fields& f) {
         f.extensions.push_back(extension(43, versions_data({0x0304})));
       })),
       m, "duplicate supported_versions extension"},
      // Handshake header (RFC 8446 s4).
      {"handshake_length_below_fixed_fields", testing::record(testing::handshake(body, 40)), m,
       "ClientHello shorter than its fixed fields"},
      {"handshake_length_zero", testing::record(testing::handshake(body, 0)), m,
       "ClientHello shorter than its fixed fields"},
      {"handshake_length_one_short", testing::record(testing::handshake(body, body.size() - 1)),
       m, "extensions length does not match the ClientHello length"},
      {"handshake_length_2to24", testing::record(testing::handshake(body, 0xffffff)),
       hello_status::too_large, "ClientHello length exceeds the byte limit"},
      {"handshake_type_server_hello", testing::record(testing::handshake(body, {}, 2)),
       hello_status::not_tls, "handshake type is not client_hello"},
      // Record layer (RFC 8446 s5.1).
      {"record_zero_length", testing::cat(testing::record({}), testing::record(message)), m,
       "zero-length handshake record"},
      {"record_length_2to14_plus_1", testing::record(message, 22, 0x0301, (1 << 14) + 1), m,
       "record length exceeds 2^14"},
      {"record_version_major_2", testing::record(message, 22, 0x0200), hello_status::not_tls,
       "record version major is not 3"},
  };

  // A record shorter than the message: its remaining bytes are read as a record header. They are
  // zeros here, so that "header" is content type 0.
  {
    hello_fields f;
    f.extensions.push_back(extension(0xff10, bytes(20, 0x00)));
    const bytes msg = testing::handshake(hello_body(f));
    bytes wire = testing::record(msg, 22, 0x0301, msg.size() - 10);
    cases.push_back({"record_shorter_than_hello", wire, m,
                     "non-handshake record inside the ClientHello"});
  }
  // Later records of a fragmented hello must be handshake records with major version 3.
  {
    bytes wire = framed;
    wire[starts[1]] = 23;
    cases.push_back({"second_record_application_data", wire, m,
                     "non-handshake record inside the ClientHello"});
    wire = framed;
    wire[starts[2] + 1] = 2;
    cases.push_back({"third_record_version_major_2", wire, m, "record version major is not 3"});
    wire = framed;
    wire.insert(wire.begin() + static_cast<std::ptrdiff_t>(starts[1]), {22, 3, 1, 0, 0});
    cases.push_back({"zero_length_record_inside", wire, m, "zero-length handshake record"});
    wire = framed;
    wire[starts[1] + 3] = 0x40;
    wire[starts[1] + 4] = 0x01;
    cases.push_back({"second_record_2to14_plus_1", wire, m, "record length exceeds 2^14"});
  }
  // Non-printable bytes in host_name.
  for (const std::uint8_t c : {0x00, 0x09, 0x20, 0x7f, 0x80, 0xff}) {
    hello_fields f;
    std::string name = "bad.example";
    name[3] = static_cast<char>(c);
    f.extensions = {testing::sni_extension(name)};
    cases.push_back({"host_name_byte_" + std::to_string(c), wire_of(f), m,
                     "host_name has a byte outside 0x21..0x7e"});
  }
  return cases;
}

void PrintTo(const broken_case& c, std::ostream* os) { *os << c.name; }

class broken_hello : public ::testing::TestWithParam<broken_case> {};

TEST_P(broken_hello, ExactStatusAndReason) {
  const broken_case& c = GetParam();
  client_hello_parser parser;
  EXPECT_EQ(to_string(parser.parse(c.input)), to_string(c.status));
  EXPECT_EQ(parser.error(), c.error);
  // Same answer however the bytes arrive, and no prefix claims anything else.
  EXPECT_EQ(check_invariants(c.input, default_limit), "");
  // The same defect inside a hello spread over 7-byte records gives the same answer, as long
  // as the defect is in the handshake message rather than in the record layer.
  const bytes message = testing::handshake_message(c.input);
  if (c.input[0] == 22 && c.input[1] == 3 && c.input.size() == message.size() + 5 &&
      testing::get_u16(c.input, 3) == message.size()) {
    const bytes framed = testing::frame(message, 7);
    client_hello_parser fragmented(framed.size());
    EXPECT_EQ(to_string(fragmented.parse(framed)), to_string(c.status));
    EXPECT_EQ(fragmented.error(), c.error);
    EXPECT_EQ(check_invariants(framed, framed.size()), "");
  }
}

INSTANTIATE_TEST_SUITE_P(ClientHello, broken_hello, ::testing::ValuesIn(broken_cases()),
                         [](const auto& test_info) { return test_info.param.name; });

// Lengths that claim more than has arrived, while still within the limit, are a valid prefix.
TEST(ClientHelloPrefix, LongerLengthsWaitForMore) {
  const bytes body = testing::hello_body({});
  // The handshake length claims 50 bytes more than this record holds: wait for another record.
  const bytes first = testing::record(testing::handshake(body, body.size() + 50));
  EXPECT_EQ(parse_once(first, default_limit).status, hello_status::need_more);
  // An application_data record cannot continue it (RFC 8446 s5.1).
  const auto app = parse_once(testing::cat(first, testing::record(bytes(50, 0), 23)),
                               default_limit);
  EXPECT_EQ(app.status, hello_status::malformed);
  EXPECT_EQ(app.error, "non-handshake record inside the ClientHello");
  // A handshake record with 50 more bytes completes it, but now the extensions block is 50
  // bytes short of the hello's end.
  const auto more = parse_once(testing::cat(first, testing::record(bytes(50, 0))), default_limit);
  EXPECT_EQ(more.status, hello_status::malformed);
  EXPECT_EQ(more.error, "extensions length does not match the ClientHello length");

  // The record length claims more than has arrived: need_more for every truncation.
  const bytes message = testing::handshake(body);
  const bytes wire = testing::record(message);
  for (std::size_t k = 0; k < wire.size(); ++k) {
    ASSERT_EQ(parse_once(prefix(wire, k), default_limit).status, hello_status::need_more) << k;
  }
  // A record length longer than the hello: the hello ends inside the record, the rest is not
  // the parser's business.
  const bytes roomy = testing::cat(testing::record(message, 22, 0x0301, message.size() + 100),
                                   bytes(100, 0xab));
  const auto got = parse_once(roomy, default_limit);
  EXPECT_EQ(got.status, hello_status::complete) << describe(got);
  EXPECT_EQ(got.wire_bytes, wire.size());
}

// ---------------------------------------------------------------------------------------------
// Not TLS: decided from the first byte (or the first two for the record version).

TEST(ClientHelloNotTls, DecidedFromFirstBytes) {
  const auto text = [](std::string_view s) { return bytes(s.begin(), s.end()); };
  // SSLv2-compatible CLIENT-HELLO (RFC 5246 appendix E.2): 2-byte header with the high bit set.
  const bytes sslv2 = {0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15, 0x00, 0x00, 0x00, 0x10};
  const bytes body = testing::hello_body({});
  struct not_tls_case {
    std::string name;
    bytes input;
    std::size_t decided_at;  // shortest prefix that is not_tls
    std::string error;
  };
  const std::vector<not_tls_case> cases = {
      {"http", text("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"), 1,
       "first record is not a handshake record"},
      {"ssh", text("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n"), 1,
       "first record is not a handshake record"},
      {"sslv2_hello", sslv2, 1, "first record is not a handshake record"},
      {"application_data_record", testing::record(bytes(20, 1), 23, 0x0303), 1,
       "first record is not a handshake record"},
      {"alert_record", testing::record({2, 40}, 21, 0x0303), 1,
       "first record is not a handshake record"},
      {"change_cipher_spec_record", testing::record({1}, 20, 0x0303), 1,
       "first record is not a handshake record"},
      {"record_version_major_2", testing::record(testing::handshake(body), 22, 0x0200), 2,
       "record version major is not 3"},
      {"record_version_major_0", testing::record(testing::handshake(body), 22, 0x0003), 2,
       "record version major is not 3"},
      {"server_hello", testing::record(testing::handshake(body, {}, 2)), 6,
       "handshake type is not client_hello"},
      {"finished_in_1_byte_records", testing::frame(testing::handshake(body, {}, 20), 1), 6,
       "handshake type is not client_hello"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    client_hello_parser incremental;
    for (std::size_t k = 0; k <= c.input.size(); ++k) {
      const auto one_shot = parse_once(prefix(c.input, k), default_limit);
      const hello_status step = incremental.parse(prefix(c.input, k));
      if (k < c.decided_at) {
        ASSERT_EQ(one_shot.status, hello_status::need_more) << k;
        ASSERT_EQ(step, hello_status::need_more) << k;
      } else {
        ASSERT_EQ(one_shot.status, hello_status::not_tls) << k;
        ASSERT_EQ(one_shot.error, c.error);
        ASSERT_EQ(step, hello_status::not_tls) << k;
        ASSERT_EQ(incremental.error(), c.error);
      }
    }
    EXPECT_EQ(check_invariants(c.input, default_limit), "");
  }
}

TEST(ClientHelloNotTls, EmptyInputNeedsMore) {
  client_hello_parser parser;
  EXPECT_EQ(parser.parse({}), hello_status::need_more);
  EXPECT_EQ(parser.error(), "");
}

// ---------------------------------------------------------------------------------------------
// API behaviour.

TEST(ClientHelloApi, ResultsAreFinal) {
  const bytes hello = testing::wire_of({});
  bytes longer = testing::cat(hello, testing::record(bytes(10, 0), 23));
  client_hello_parser parser;
  ASSERT_EQ(parser.parse(hello), hello_status::complete);
  ASSERT_EQ(parser.parse(longer), hello_status::complete);
  EXPECT_EQ(parser.hello().wire_bytes(), hello.size());
  EXPECT_EQ(parser.hello().server_name(), "example.com");

  const bytes http = {'G', 'E', 'T', ' '};
  client_hello_parser refused;
  ASSERT_EQ(refused.parse(http), hello_status::not_tls);
  EXPECT_EQ(refused.parse(testing::cat(http, hello)), hello_status::not_tls);
  EXPECT_EQ(refused.error(), "first record is not a handshake record");

  client_hello_parser too_small(20);
  ASSERT_EQ(too_small.parse(hello), hello_status::too_large);
  EXPECT_EQ(too_small.parse(longer), hello_status::too_large);
}

TEST(ClientHelloApi, StatusNames) {
  EXPECT_EQ(to_string(hello_status::need_more), "need_more");
  EXPECT_EQ(to_string(hello_status::complete), "complete");
  EXPECT_EQ(to_string(hello_status::not_tls), "not_tls");
  EXPECT_EQ(to_string(hello_status::too_large), "too_large");
  EXPECT_EQ(to_string(hello_status::malformed), "malformed");
}

TEST(ClientHelloApi, OffersAlpnMatchesWholeNames) {
  const bytes hello = testing::openssl_client_hello(
      {.max_version = TLS1_3_VERSION, .sni = istio_sni, .alpn = istio_alpn});
  client_hello_parser parser;
  ASSERT_EQ(parser.parse(hello), hello_status::complete) << parser.error();
  const client_hello& h = parser.hello();
  EXPECT_TRUE(h.offers_alpn("istio"));
  EXPECT_TRUE(h.offers_alpn("istio-h2"));
  EXPECT_TRUE(h.offers_alpn("istio-peer-exchange"));
  EXPECT_FALSE(h.offers_alpn("istio-http"));  // a prefix of offered names
  EXPECT_FALSE(h.offers_alpn("h2"));
  EXPECT_FALSE(h.offers_alpn("ISTIO"));  // ALPN names are compared bytewise (RFC 7301 s3.1)

  client_hello_parser none;
  ASSERT_EQ(none.parse(testing::openssl_client_hello({})), hello_status::complete);
  EXPECT_FALSE(none.hello().has_alpn());
  EXPECT_FALSE(none.hello().offers_alpn("istio"));
}

// The caller must pass the previous bytes plus new ones; a shrinking span is a bug.
TEST(ClientHelloApiDeathTest, ShrinkingInputIsRejected) {
  const bytes hello = testing::wire_of({});
  EXPECT_DEBUG_DEATH(
      {
        client_hello_parser parser;
        (void)parser.parse(prefix(hello, 50));
        (void)parser.parse(prefix(hello, 20));
      },
      "received.size\\(\\) >= scanned_");
#ifdef NDEBUG
  // Release builds ignore such a call (nothing new to read) and can still finish.
  client_hello_parser parser;
  ASSERT_EQ(parser.parse(prefix(hello, 50)), hello_status::need_more);
  EXPECT_EQ(parser.parse(prefix(hello, 20)), hello_status::need_more);
  EXPECT_EQ(parser.parse(hello), hello_status::complete);
#endif
}

// ---------------------------------------------------------------------------------------------
// Seeded mutation campaign: the fuzz invariants on thousands of damaged real hellos, so they run
// under g++/ASan where libFuzzer is not available.

// Offsets and widths of the length fields in a well-formed handshake message (the ones the
// parser reads, plus key_share's), for targeted corruption.
struct length_field {
  std::size_t offset;
  std::size_t width;
};

std::vector<length_field> length_fields(const bytes& m) {
  using testing::get_u16;
  std::vector<length_field> out = {{1, 3}};
  std::size_t at = 4 + 2 + 32;
  out.push_back({at, 1});
  at += 1 + m[at];
  out.push_back({at, 2});
  at += 2 + get_u16(m, at);
  out.push_back({at, 1});
  at += 1 + m[at];
  if (at == m.size()) return out;
  out.push_back({at, 2});
  at += 2;
  while (at + 4 <= m.size()) {
    const std::size_t type = get_u16(m, at);
    const std::size_t len = get_u16(m, at + 2);
    const std::size_t data = at + 4;
    out.push_back({at + 2, 2});
    if (type == 0) {
      out.push_back({data, 2});
      for (std::size_t p = data + 2; p + 3 <= data + len; p += 3 + get_u16(m, p + 1)) {
        out.push_back({p + 1, 2});
      }
    } else if (type == 16) {
      out.push_back({data, 2});
      for (std::size_t p = data + 2; p < data + len; p += 1 + m[p]) out.push_back({p, 1});
    } else if (type == 43) {
      out.push_back({data, 1});
    } else if (type == 51) {  // key_share: client_shares<0..2^16-1> of {group, key_exchange}
      out.push_back({data, 2});
      for (std::size_t p = data + 2; p + 4 <= data + len; p += 4 + get_u16(m, p + 2)) {
        out.push_back({p + 2, 2});
      }
    }
    at = data + len;
  }
  return out;
}

// OpenSSL fills random, session_id and key_share with fresh random bytes; overwrite them so the
// campaign sees the same inputs on every run.
bytes normalized(bytes m) {
  using testing::get_u16;
  std::fill(m.begin() + 6, m.begin() + 38, 0xa5);
  const std::size_t sid = m[38];
  std::fill(m.begin() + 39, m.begin() + 39 + static_cast<std::ptrdiff_t>(sid), 0x5a);
  std::size_t at = 39 + sid;
  at += 2 + get_u16(m, at);
  at += 1 + m[at];
  if (at == m.size()) return m;
  at += 2;
  while (at + 4 <= m.size()) {
    const std::size_t type = get_u16(m, at);
    const std::size_t len = get_u16(m, at + 2);
    const std::size_t data = at + 4;
    if (type == 51) {
      for (std::size_t p = data + 2; p + 4 <= data + len; p += 4 + get_u16(m, p + 2)) {
        std::fill(m.begin() + static_cast<std::ptrdiff_t>(p + 4),
                  m.begin() + static_cast<std::ptrdiff_t>(p + 4 + get_u16(m, p + 2)), 0x3c);
      }
    }
    at = data + len;
  }
  return m;
}

void write_field(bytes& b, std::size_t offset, std::size_t width, std::size_t value) {
  for (std::size_t i = 0; i < width; ++i) {
    b[offset + width - 1 - i] = static_cast<std::uint8_t>(value >> (8 * i));
  }
}

std::size_t read_field(const bytes& b, std::size_t offset, std::size_t width) {
  std::size_t v = 0;
  for (std::size_t i = 0; i < width; ++i) v = v << 8 | b[offset + i];
  return v;
}

TEST(ClientHelloMutation, InvariantsHoldForDamagedRealHellos) {
  using testing::openssl_spec;
  std::vector<bytes> seeds;
  for (const openssl_spec& spec :
       {openssl_spec{.max_version = TLS1_2_VERSION},
        openssl_spec{.max_version = TLS1_2_VERSION, .sni = "a.example", .alpn = {"h2"}},
        openssl_spec{.max_version = TLS1_3_VERSION, .sni = istio_sni, .alpn = istio_alpn},
        openssl_spec{.max_version = TLS1_3_VERSION, .sni = "Mixed.Case.Example"}}) {
    seeds.push_back(normalized(testing::handshake_message(testing::openssl_client_hello(spec))));
  }
  seeds.push_back(testing::handshake(testing::hello_body({})));

  std::mt19937_64 rng(0x5eed'c11e'4e11'0001);  // fixed: failures reproduce
  const auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  constexpr int iterations = 4000;
  std::map<hello_status, int> seen;

  for (int i = 0; i < iterations; ++i) {
    bytes message = seeds[pick(seeds.size())];
    const int kind = i % 5;
    // Length-field corruption happens inside the handshake message, before framing, so the
    // record layer stays valid and the lie reaches the body decoder.
    if (kind == 0) {
      const auto fields = length_fields(message);
      const length_field f = fields[pick(fields.size())];
      const std::size_t was = read_field(message, f.offset, f.width);
      const std::size_t max = (std::size_t{1} << (8 * f.width)) - 1;
      const std::array<std::size_t, 6> values = {0, 1, was - 1, was + 1, max, rng() & max};
      write_field(message, f.offset, f.width, values[pick(values.size())] & max);
    }
    const std::array<std::size_t, 5> record_sizes = {1 << 14, 1, 7, 100, 1000};
    const std::size_t record_size = record_sizes[pick(record_sizes.size())];
    std::vector<std::size_t> starts;
    bytes input = testing::frame(message, record_size, &starts);
    if (kind == 1) {  // bit flips anywhere
      for (std::size_t n = 1 + pick(4); n > 0; --n) {
        input[pick(input.size())] ^= static_cast<std::uint8_t>(1u << pick(8));
      }
    } else if (kind == 2) {  // truncation, sometimes with a flip before the cut
      input.resize(pick(input.size() + 1));
      if (!input.empty() && pick(2) == 0) input[pick(input.size())] ^= 0x10;
    } else if (kind == 3) {  // record header damage: type, version or length
      const std::size_t h = starts[pick(starts.size())];
      switch (pick(4)) {
        case 0: input[h] = static_cast<std::uint8_t>(pick(256)); break;
        case 1: input[h + 1] = static_cast<std::uint8_t>(pick(4)); break;
        default: {
          const std::size_t was = testing::get_u16(input, h + 3);
          const std::array<std::size_t, 6> values = {0, was - 1, was + 1, 1 << 14, (1 << 14) + 1,
                                                     pick(1 << 16)};
          write_field(input, h + 3, 2, values[pick(values.size())] & 0xffff);
        }
      }
    } else if (kind == 4) {  // bytes after the hello, or inserted in the middle
      bytes extra(1 + pick(40));
      for (auto& b : extra) b = static_cast<std::uint8_t>(pick(256));
      const std::size_t at = pick(2) == 0 ? input.size() : pick(input.size() + 1);
      input.insert(input.begin() + static_cast<std::ptrdiff_t>(at), extra.begin(), extra.end());
    }
    // Mostly the default limit; sometimes one near the input size to hit too_large edges.
    const std::size_t limit =
        pick(4) == 0 ? std::max<std::size_t>(1, input.size() - std::min(input.size(), pick(64)) +
                                                    pick(8))
                     : default_limit;
    // Two-part splits cost (bytes x records); skip them for the biggest fragmented inputs.
    const bool every_split = input.size() * (starts.size() + 1) <= 1'000'000;
    const std::string violation = check_invariants(input, limit, every_split);
    ASSERT_EQ(violation, "") << "iteration " << i << " kind " << kind << " record size "
                             << record_size << " limit " << limit << " size " << input.size();
    ++seen[parse_once(input, limit).status];
  }
  // The campaign must reach every outcome, or it is not testing what it claims to.
  for (const auto s : {hello_status::need_more, hello_status::complete, hello_status::not_tls,
                       hello_status::too_large, hello_status::malformed}) {
    EXPECT_GT(seen[s], 0) << to_string(s);
  }
  for (const auto& [s, n] : seen) std::printf("  %-9s %d\n", std::string(to_string(s)).c_str(), n);
}

// The libFuzzer entry itself, replayed on seeds (it aborts on a violated invariant).
TEST(ClientHelloFuzzEntry, AcceptsSeeds) {
  std::vector<bytes> inputs = {
      {},
      {22},
      {22, 3, 1, 0, 0},
      testing::wire_of({}),
      testing::frame(testing::handshake(testing::hello_body({})), 3),
      testing::openssl_client_hello({.max_version = TLS1_3_VERSION, .sni = istio_sni}),
  };
  for (const auto& in : inputs) EXPECT_EQ(LLVMFuzzerTestOneInput(in.data(), in.size()), 0);
}

}  // namespace
}  // namespace ewgw::tls
