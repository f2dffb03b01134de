#include "proxy/filter_chain_matcher.h"

#include <algorithm>

namespace ewgw::proxy {

namespace {

std::string describe(const std::vector<xds::filter_chain_config>& chains, std::size_t i) {
  return chains[i].name.empty() ? "filter_chains[" + std::to_string(i) + "]"
                                : "filter chain '" + chains[i].name + "'";
}

// Server names compare without regard to case (RFC 6066 section 3; DNS names, RFC 4343) and
// connection_facts carries the SNI lower-cased, so the table holds lower-case names. The decoder
// lower-cases them already (xds/decode.cc), and then the chain's shared copy is kept; a name
// given in another case gets its own lower-cased copy.
xds::shared_string lower_case(const xds::shared_string& name) {
  if (std::none_of(name.begin(), name.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) return name;
  return xds::ascii_lower(name.view());
}

}  // namespace

int filter_chain_matcher::alpn_node::find(std::string_view protocol) const {
  if (shared != nullptr) {
    for (std::string_view p : *shared) {
      if (p == protocol) return shared_chain;
    }
    return no_match;
  }
  for (const auto& [p, chain] : by_protocol) {
    if (p == protocol) return chain;
  }
  return no_match;
}

template <class F>
void filter_chain_matcher::alpn_node::for_each_protocol(F&& f) const {
  if (shared != nullptr) {
    for (std::string_view p : *shared) f(p);
  } else {
    for (const auto& entry : by_protocol) f(entry.first);
  }
}

const filter_chain_matcher::alpn_node* filter_chain_matcher::transport_node::find(std::string_view protocol) const {
  for (const auto& [p, node] : by_protocol) {
    if (p == protocol) return &node;
  }
  return any.claimed() ? &any : nullptr;
}

std::optional<std::string> filter_chain_matcher::claim_alpns(alpn_node& alpns,
                                                             const std::vector<xds::filter_chain_config>& chains,
                                                             std::size_t i) {
  const std::vector<std::string>& protocols = chains[i].settings->match.application_protocols;
  auto claim = [&](int& slot) -> std::optional<std::string> {
    if (slot != no_match && slot != static_cast<int>(i)) {
      return describe(chains, i) + " overlaps " + describe(chains, static_cast<std::size_t>(slot)) +
             ": both match the same destination port, server name, transport and ALPN";
    }
    slot = static_cast<int>(i);
    return std::nullopt;
  };
  if (protocols.empty()) return claim(alpns.any);
  std::vector<std::string_view> interned;
  interned.reserve(protocols.size());
  for (const std::string& p : protocols) {
    const std::string_view v = *protocols_.insert(p).first;
    if (std::find(interned.begin(), interned.end(), v) == interned.end()) interned.push_back(v);
  }
  if (alpns.shared == nullptr && alpns.by_protocol.empty()) {  // the first chain here: share its list
    alpns.shared = &*protocol_lists_.insert(std::move(interned)).first;
    alpns.shared_chain = static_cast<int>(i);
    return std::nullopt;
  }
  if (alpns.shared != nullptr) {  // a second chain here: one pair per protocol from now on
    for (std::string_view p : *alpns.shared) alpns.by_protocol.emplace_back(p, alpns.shared_chain);
    alpns.shared = nullptr;
    alpns.shared_chain = no_match;
  }
  for (std::string_view p : interned) {
    auto it = std::find_if(alpns.by_protocol.begin(), alpns.by_protocol.end(), [&](const auto& e) { return e.first == p; });
    if (it == alpns.by_protocol.end()) {
      alpns.by_protocol.emplace_back(p, no_match);
      it = alpns.by_protocol.end() - 1;
    }
    if (auto e = claim(it->second)) return e;
  }
  return std::nullopt;
}

std::optional<std::string> filter_chain_matcher::build(const std::vector<xds::filter_chain_config>& chains) {
  root_ = {};
  protocol_lists_.clear();
  protocols_.clear();
  auto server_names_for = [&](const xds::filter_chain_match& m) -> server_name_node& {
    return m.destination_port ? root_.by_port[*m.destination_port] : (root_.any ? *root_.any : root_.any.emplace());
  };
  auto each_server_name_node = [&](auto&& f) {
    for (auto& entry : root_.by_port) f(entry.second);
    if (root_.any) f(*root_.any);
  };
  // Each table sized once for all its names: no vector grown by doubling (and its slack) nor
  // rehashes on a 10,000-chain listener. Names repeated across chains are counted twice here and
  // the room they leave is dropped at the end.
  std::unordered_map<const name_table*, std::size_t> name_counts;
  for (const xds::filter_chain_config& c : chains) {
    server_name_node& names = server_names_for(c.settings->match);
    for (const xds::shared_string& n : c.server_names) {
      ++name_counts[n.view().starts_with("*.") ? &names.wildcard : &names.exact];
    }
  }
  each_server_name_node([&](server_name_node& n) {
    n.exact.reserve(name_counts[&n.exact]);
    n.wildcard.reserve(name_counts[&n.wildcard]);
  });
  for (std::size_t i = 0; i < chains.size(); ++i) {
    const xds::filter_chain_match& m = chains[i].settings->match;
    const xds::server_name_list& server_names = chains[i].server_names;
    server_name_node& names = server_names_for(m);
    std::vector<transport_node*> transports;
    if (server_names.empty()) {
      transports.push_back(names.any ? &*names.any : &names.any.emplace());
    } else {
      // Positions first: adding a name may move the table's earlier entries.
      std::vector<std::pair<name_table*, std::size_t>> added;
      for (const xds::shared_string& n : server_names) {
        name_table& table = n.view().starts_with("*.") ? names.wildcard : names.exact;
        added.emplace_back(&table, table.add({lower_case(n), transport_node{}}).first);
      }
      for (auto [table, position] : added) transports.push_back(&table->at(position).node);
    }
    for (transport_node* t : transports) {
      alpn_node* alpns = nullptr;
      if (m.transport_protocol.empty()) {
        alpns = &t->any;
      } else {
        for (auto& [p, node] : t->by_protocol) {
          if (p == m.transport_protocol) alpns = &node;
        }
        if (alpns == nullptr) {
          auto known = protocols_.find(m.transport_protocol.view());
          if (known == protocols_.end()) known = protocols_.emplace(m.transport_protocol.view()).first;
          alpns = &t->by_protocol.emplace_back(*known, alpn_node{}).second;
        }
      }
      if (auto e = claim_alpns(*alpns, chains, i)) return e;
    }
  }
  each_server_name_node([](server_name_node& n) {
    n.exact.shrink();
    n.wildcard.shrink();
  });
  return std::nullopt;
}

int filter_chain_matcher::match(const connection_facts& facts) const {
  const server_name_node* names = nullptr;
  if (auto it = root_.by_port.find(facts.destination_port); it != root_.by_port.end()) {
    names = &it->second;
  } else if (root_.any) {
    names = &*root_.any;
  } else {
    return no_match;
  }

  const transport_node* transport = nullptr;
  const std::string_view sni = facts.server_name;
  if (!sni.empty()) {
    if (const auto* exact = names->exact.find(sni)) {
      transport = &exact->node;
    } else if (!names->wildcard.empty()) {
      // "*.example.com" is found as ".example.com"; try the longest suffix first:
      // a.b.example.com -> .b.example.com, .example.com, .com
      for (std::size_t dot = sni.find('.', 1); dot != std::string_view::npos; dot = sni.find('.', dot + 1)) {
        if (const auto* w = names->wildcard.find(sni.substr(dot))) {
          transport = &w->node;
          break;
        }
      }
    }
  }
  if (transport == nullptr) {
    if (!names->any) return no_match;
    transport = &*names->any;
  }

  const alpn_node* alpns = transport->find(facts.transport_protocol);
  if (alpns == nullptr) return no_match;

  // The client's first offered protocol that some chain names wins (client order).
  for (std::string_view p : facts.application_protocols) {
    if (const int chain = alpns->find(p); chain != no_match) return chain;
  }
  return alpns->any;
}

std::string filter_chain_matcher::why_no_match(const connection_facts& facts) const {
  if (match(facts) != no_match) return {};
  const std::string port = std::to_string(facts.destination_port);
  const server_name_node* names = nullptr;
  if (auto it = root_.by_port.find(facts.destination_port); it != root_.by_port.end()) {
    names = &it->second;
  } else if (root_.any) {
    names = &*root_.any;
  } else {
    return "no filter chain accepts destination port " + port;
  }
  const transport_node* transport = nullptr;
  std::string name_level;
  const std::string_view sni = facts.server_name;
  if (!sni.empty()) {
    if (const auto* exact = names->exact.find(sni)) {
      transport = &exact->node;
      name_level = "the chain(s) for server name '" + std::string(sni) + "'";
    } else {
      for (std::size_t dot = sni.find('.', 1); dot != std::string_view::npos; dot = sni.find('.', dot + 1)) {
        if (const auto* w = names->wildcard.find(sni.substr(dot))) {
          transport = &w->node;
          name_level = "the chain(s) for server name '*" + std::string(names->wildcard.key(*w)) + "'";
          break;
        }
      }
    }
  }
  if (transport == nullptr) {
    if (!names->any) {
      const std::size_t known = names->exact.size() + names->wildcard.size();
      return (sni.empty() ? std::string("the connection has no SNI") : "no filter chain names server name '" + std::string(sni) + "'") +
             " (exactly or by a '*.' wildcard; " + std::to_string(known) + " server name(s) are configured for port " +
             port + ") and no chain accepts any server name";
    }
    transport = &*names->any;
    name_level = "the chain(s) without server_names";
  }
  // Envoy never backtracks: once a server-name branch is chosen, a miss further down is final.
  const alpn_node* alpns = transport->find(facts.transport_protocol);
  if (alpns == nullptr) {
    return name_level + " require(s) another transport protocol than '" + std::string(facts.transport_protocol) +
           "' (Envoy does not fall back to less specific server names)";
  }
  std::string accepted;
  alpns->for_each_protocol([&](std::string_view protocol) {
    if (!accepted.empty()) accepted += ", ";
    accepted += protocol;
  });
  std::string offered;
  for (std::string_view p : facts.application_protocols) {
    if (!offered.empty()) offered += ", ";
    offered += p;
  }
  return name_level + " accept(s) ALPN " + (accepted.empty() ? std::string("(none)") : accepted) +
         "; the client offers " + (offered.empty() ? std::string("no ALPN") : offered) +
         " (Envoy does not fall back to less specific server names)";
}

}  // namespace ewgw::proxy
