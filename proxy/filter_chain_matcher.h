// Filter chain selection with Envoy's semantics (FilterChainMatch in listener_components.proto;
// filter_chain_manager_impl.cc): criteria are checked in the order destination port, server
// name, transport protocol, application protocols. At each level the most specific entry that
// exists is taken (an exact port over "any port"; an exact name, then the longest "*.suffix",
// over "any name"; ...), and the search never backtracks: if the chosen branch has no match
// further down, there is no match (the listener's default chain applies, if any).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "proxy/flat_name_table.h"
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
  // The tree views strings the matcher owns (protocols_, protocol_lists_): moving keeps them,
  // copying would not.
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
  // A list that is empty in almost every node (protocol-specific branches: Istio's chains name
  // no transport protocol and claim their ALPNs through a shared list): a pointer, allocated on
  // first use, instead of a vector's 24 bytes in every node of a listener with a node per
  // service.
  template <class T>
  class rare_list {
   public:
    rare_list() = default;
    rare_list(rare_list&&) noexcept = default;
    rare_list& operator=(rare_list&&) noexcept = default;
    const T* begin() const { return items_ ? items_->data() : nullptr; }
    const T* end() const { return items_ ? items_->data() + items_->size() : nullptr; }
    T* begin() { return items_ ? items_->data() : nullptr; }
    T* end() { return items_ ? items_->data() + items_->size() : nullptr; }
    bool empty() const { return !items_ || items_->empty(); }
    template <class... A>
    T& emplace_back(A&&... a) {
      if (!items_) items_ = std::make_unique<std::vector<T>>();
      return items_->emplace_back(std::forward<A>(a)...);
    }

   private:
    std::unique_ptr<std::vector<T>> items_;
  };

  // The chains for each offered ALPN. Istio names the same five protocols on every chain, each
  // node claimed by one chain: such a node points at one interned copy of the list
  // (protocol_lists_) and names its chain once. A node that several chains claim, with different
  // protocols, holds (protocol, chain) pairs instead.
  struct alpn_node {
    const std::vector<std::string_view>* shared = nullptr;  // every protocol -> shared_chain
    int shared_chain = no_match;
    int any = no_match;
    rare_list<std::pair<std::string_view, int>> by_protocol;

    int find(std::string_view protocol) const;
    // Some chain claimed this node (a node is only created for a chain to claim it).
    bool claimed() const { return shared != nullptr || any != no_match || !by_protocol.empty(); }
    template <class F>
    void for_each_protocol(F&& f) const;
  };
  // A chain names at most one transport protocol ("tls" or "raw_buffer"): a short list, not a map.
  struct transport_node {
    rare_list<std::pair<std::string_view, alpn_node>> by_protocol;
    // The chains naming no transport protocol; absent while unclaimed. Not a std::optional: its
    // flag would pad every server name's entry by 8 bytes (a chain per service at istiod).
    alpn_node any;

    const alpn_node* find(std::string_view protocol) const;
  };
  // Server names -> transport_node for one port, flat (flat_name_table): an istiod east-west
  // listener has a chain per service, each naming its cluster's ~55-character name.
  //
  // The names are the chains' xds::shared_string, held by reference: the matcher outlives the
  // configuration it was built from (a listener_runtime keeps it across snapshots), and the
  // reference keeps the characters alive without a copy (a name that is not lower-case is held as
  // its own lower-cased copy). The key is the name from the table's key offset on: 1 for
  // wildcards, whose entry "*.example.com" is found as ".example.com".
  struct name_entry {
    xds::shared_string name;
    transport_node node;
  };
  struct name_of {
    std::string_view operator()(const name_entry& e) const { return e.name.view(); }
  };
  using name_table = flat_name_table<name_entry, name_of>;
  struct server_name_node {
    name_table exact{0};
    name_table wildcard{1};  // "*.example.com", found as ".example.com"
    std::optional<transport_node> any;
  };
  struct port_node {
    std::unordered_map<std::uint16_t, server_name_node> by_port;
    std::optional<server_name_node> any;
  };

  std::optional<std::string> claim_alpns(alpn_node& alpns, const std::vector<xds::filter_chain_config>& chains,
                                         std::size_t i);

  port_node root_;
  std::set<std::string, std::less<>> protocols_;  // every ALPN and transport protocol named by some chain, once
  std::set<std::vector<std::string_view>> protocol_lists_;  // distinct ALPN lists (views into protocols_)
};

}  // namespace ewgw::proxy
