#include "lb/host.h"

#include <arpa/inet.h>

namespace ewgw::lb {

bool endpoint_address::parse(const std::string& text, std::uint16_t port, endpoint_address& out) {
  endpoint_address a;
  a.port = port;
  if (inet_pton(AF_INET, text.c_str(), a.ip.data()) == 1) {
    a.ipv6 = false;
  } else if (inet_pton(AF_INET6, text.c_str(), a.ip.data()) == 1) {
    a.ipv6 = true;
  } else {
    return false;
  }
  out = a;
  return true;
}

std::string endpoint_address::to_string() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(ipv6 ? AF_INET6 : AF_INET, ip.data(), buf, sizeof buf);
  return ipv6 ? "[" + std::string(buf) + "]:" + std::to_string(port) : std::string(buf) + ":" + std::to_string(port);
}

}  // namespace ewgw::lb
