// Real ClientHello bytes from OpenSSL, for feeding the gateway's ClientHello inspection (or a
// raw TCP connection to it) without a live TLS peer.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ewgw::test {

// The TLS record(s) a fresh OpenSSL client writes first: a ClientHello with server_name `sni`
// (omitted when empty) and ALPN `alpns` (omitted when empty). tls13 = false caps the client at
// TLS 1.2, so there is no supported_versions or key_share extension. Random and key shares
// differ on every call. Throws std::runtime_error if OpenSSL fails.
std::vector<std::uint8_t> make_client_hello(const std::string& sni, const std::vector<std::string>& alpns,
                                            bool tls13 = true);

}  // namespace ewgw::test
