// Filter chain selection with Envoy's semantics (FilterChainMatch in listener_components.proto;
// filter_chain_manager_impl.cc): criteria are checked in the order destination port, server
// name, transport protocol, application protocols. At each level the most specific entry that
// exists is taken (an exact port over "any port"; an exact name, then the longest "*.suffix",
// over "any name"; ...), and the search never backtracks: if the chosen branch has no match
// further down, there is no match (the listener's default chain applies, if any).
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "xds/config.h"

namespace ewgw::proxy {

// Transparent hash: maps keyed by std::string are searched with a string_view (the SNI, an
// ALPN) without building a string per connection.
struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// What is known about a connection when its chain is chosen.
struct connection_facts {
  std::uint16_t destination_port = 0;
  std::string_view server_name;         // lower-case; empty without SNI
  std::string_view transport_protocol;  // "tls" or "raw_buffer"
  std::span<const std::string_view> application_protocols;  // client's ALPN offer, in order
};

class filter_chain_matcher {
 public:
  static constexpr int no_match = -1;

  filter_chain_matcher() = default;
  // The tree views strings the matcher owns (protocols_): moving keeps them, copying would not.
  filter_chain_matcher(filter_chain_matcher&&) = default;
  filter_chain_matcher& operator=(filter_chain_matcher&&) = default;
  filter_chain_matcher(const filter_chain_matcher&) = delete;
  filter_chain_matcher& operator=(const filter_chain_matcher&) = delete;

  // Builds the match tree for `chains` (indices into that vector are returned by match()).
  // Returns an error naming both chains when two of them claim the same combination of
  // criteria, as Envoy rejects overlapping matchers.
  std::optional<std::string> build(const std::vector<xds::filter_chain_config>& chains);

  // Index of the chosen chain, or no_match. Allocation-free.
  int match(const connection_facts& facts) const;

  // Cold (admin `explain`): the same walk as match(), saying at which criterion it stopped when
  // nothing matches ("no chain names server name 'x' for port 15443 and none accepts any
  // name"). Empty when match() finds a chain.
  std::string why_no_match(const connection_facts& facts) const;

 private:
  template <class V>
  using string_map = std::unordered_map<std::string, V, string_hash, std::equal_to<>>;

  // A handful of protocols per chain (Istio: the same five on every chain, tens of thousands of
  // chains): a small vector of views into the interned protocols_ is a fraction of a hash map's
  // memory, and a linear scan of five entries is as fast as hashing.
  struct alpn_node {
    std::vector<std::pair<std::string_view, int>> by_protocol;
    int any = no_match;
  };
  struct transport_node {
    string_map<alpn_node> by_protocol;
    std::optional<alpn_node> any;
  };
  struct server_name_node {
    string_map<transport_node> exact;
    string_map<transport_node> wildcard;  // key ".example.com" for "*.example.com"
    std::optional<transport_node> any;
  };
  struct port_node {
    std::unordered_map<std::uint16_t, server_name_node> by_port;
    std::optional<server_name_node> any;
  };

  port_node root_;
  std::set<std::string, std::less<>> protocols_;  // every ALPN named by some chain, once
};

}  // namespace ewgw::proxy
