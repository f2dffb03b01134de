#include "proxy/filter_chain_matcher.h"

#include <algorithm>

namespace ewgw::proxy {

namespace {

std::string describe(const std::vector<xds::filter_chain_config>& chains, std::size_t i) {
  return chains[i].name.empty() ? "filter_chains[" + std::to_string(i) + "]"
                                : "filter chain '" + chains[i].name + "'";
}

}  // namespace

std::optional<std::string> filter_chain_matcher::build(const std::vector<xds::filter_chain_config>& chains) {
  root_ = {};
  protocols_.clear();
  for (std::size_t i = 0; i < chains.size(); ++i) {
    const xds::filter_chain_match& m = chains[i].match;
    server_name_node& names = m.destination_port ? root_.by_port[*m.destination_port]
                                                 : (root_.any ? *root_.any : root_.any.emplace());
    std::vector<transport_node*> transports;
    if (m.server_names.empty()) {
      transports.push_back(names.any ? &*names.any : &names.any.emplace());
    } else {
      for (const std::string& n : m.server_names) {
        if (n.starts_with("*.")) {
          transports.push_back(&names.wildcard[n.substr(1)]);
        } else {
          transports.push_back(&names.exact[n]);
        }
      }
    }
    for (transport_node* t : transports) {
      alpn_node& alpns = m.transport_protocol.empty() ? (t->any ? *t->any : t->any.emplace())
                                                      : t->by_protocol[m.transport_protocol];
      auto claim = [&](int& slot) -> std::optional<std::string> {
        if (slot != no_match && slot != static_cast<int>(i)) {
          return describe(chains, i) + " overlaps " + describe(chains, static_cast<std::size_t>(slot)) +
                 ": both match the same destination port, server name, transport and ALPN";
        }
        slot = static_cast<int>(i);
        return std::nullopt;
      };
      if (m.application_protocols.empty()) {
        if (auto e = claim(alpns.any)) return e;
      } else {
        for (const std::string& p : m.application_protocols) {
          const std::string_view interned = *protocols_.insert(p).first;
          auto it = std::find_if(alpns.by_protocol.begin(), alpns.by_protocol.end(),
                                 [&](const auto& e) { return e.first == interned; });
          if (it == alpns.by_protocol.end()) {
            alpns.by_protocol.emplace_back(interned, no_match);
            it = alpns.by_protocol.end() - 1;
          }
          if (auto e = claim(it->second)) return e;
        }
      }
    }
  }
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
    if (auto it = names->exact.find(sni); it != names->exact.end()) {
      transport = &it->second;
    } else if (!names->wildcard.empty()) {
      // "*.example.com" is stored as ".example.com"; try the longest suffix first:
      // a.b.example.com -> .b.example.com, .example.com, .com
      for (std::size_t dot = sni.find('.', 1); dot != std::string_view::npos; dot = sni.find('.', dot + 1)) {
        if (auto w = names->wildcard.find(sni.substr(dot)); w != names->wildcard.end()) {
          transport = &w->second;
          break;
        }
      }
    }
  }
  if (transport == nullptr) {
    if (!names->any) return no_match;
    transport = &*names->any;
  }

  const alpn_node* alpns = nullptr;
  if (auto it = transport->by_protocol.find(facts.transport_protocol); it != transport->by_protocol.end()) {
    alpns = &it->second;
  } else if (transport->any) {
    alpns = &*transport->any;
  } else {
    return no_match;
  }

  // The client's first offered protocol that some chain names wins (client order).
  for (std::string_view p : facts.application_protocols) {
    for (const auto& [protocol, chain] : alpns->by_protocol) {
      if (protocol == p) return chain;
    }
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
    if (auto it = names->exact.find(sni); it != names->exact.end()) {
      transport = &it->second;
      name_level = "the chain(s) for server name '" + std::string(sni) + "'";
    } else {
      for (std::size_t dot = sni.find('.', 1); dot != std::string_view::npos; dot = sni.find('.', dot + 1)) {
        if (auto w = names->wildcard.find(sni.substr(dot)); w != names->wildcard.end()) {
          transport = &w->second;
          name_level = "the chain(s) for server name '*" + w->first + "'";
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
  const alpn_node* alpns = nullptr;
  if (auto it = transport->by_protocol.find(facts.transport_protocol); it != transport->by_protocol.end()) {
    alpns = &it->second;
  } else if (transport->any) {
    alpns = &*transport->any;
  } else {
    return name_level + " require(s) another transport protocol than '" + std::string(facts.transport_protocol) +
           "' (Envoy does not fall back to less specific server names)";
  }
  std::string accepted;
  for (const auto& [protocol, chain] : alpns->by_protocol) {
    if (!accepted.empty()) accepted += ", ";
    accepted += protocol;
  }
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
