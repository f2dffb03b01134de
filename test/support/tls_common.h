// Vocabulary shared by the TLS test peers (tls_server.h, tls_client.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace ewgw::test {

enum class tls_version : std::uint8_t { tls1_2, tls1_3 };

// The ALPN names Istio sidecars offer on mTLS connections through the east-west gateway, plus
// "http/1.1" so curl (which offers "h2","http/1.1" by default) negotiates HTTP/1.1 with a greet
// server. "h2" is deliberately absent: the greet behaviour only speaks HTTP/1.1.
inline std::vector<std::string> istio_alpns() {
  return {"istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2", "http/1.1"};
}

}  // namespace ewgw::test
