// Filter chain selection must follow Envoy's FilterChainMatch semantics exactly: istiod builds
// one chain per service port and relies on them.
#include "proxy/filter_chain_matcher.h"

#include <gtest/gtest.h>

#include <array>
#include <functional>

#include "test/lb/allocation_counter.h"

namespace ewgw::proxy {
namespace {

xds::filter_chain_config chain(std::vector<std::string> names, std::vector<std::string> alpns = {},
                               std::optional<std::uint16_t> port = std::nullopt, std::string transport = "") {
  xds::filter_chain_config c;
  for (std::string& n : names) c.server_names.push_back(std::move(n));
  xds::filter_chain_match& m = c.settings.edit().match;
  m.application_protocols = std::move(alpns);
  m.destination_port = port;
  m.transport_protocol = std::move(transport);
  return c;
}

int match(const filter_chain_matcher& m, std::string_view sni, std::vector<std::string_view> alpns = {},
          std::uint16_t port = 15443, std::string_view transport = "tls") {
  return m.match({port, sni, transport, alpns});
}

TEST(FilterChainMatcher, ExactBeatsWildcardBeatsAny) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({chain({"a.example.com"}), chain({"*.example.com"}), chain({})}));
  EXPECT_EQ(match(m, "a.example.com"), 0);
  EXPECT_EQ(match(m, "b.example.com"), 1);
  EXPECT_EQ(match(m, "x.y.example.com"), 1);  // wildcards match at any depth
  EXPECT_EQ(match(m, "example.com"), 2);      // but not the bare suffix
  EXPECT_EQ(match(m, "other.org"), 2);
  EXPECT_EQ(match(m, ""), 2);  // no SNI goes to the chain without server_names
}

TEST(FilterChainMatcher, LongestWildcardWins) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({chain({"*.com"}), chain({"*.example.com"}), chain({"*.b.example.com"})}));
  EXPECT_EQ(match(m, "a.b.example.com"), 2);
  EXPECT_EQ(match(m, "a.c.example.com"), 1);
  EXPECT_EQ(match(m, "a.org.com"), 0);
  EXPECT_EQ(match(m, "a.org"), filter_chain_matcher::no_match);
}

TEST(FilterChainMatcher, NoBacktrackingFromAMoreSpecificBranch) {
  // Envoy picks the exact-name branch and does not fall back to the catch-all chain when
  // the ALPN level below it has no match.
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({chain({"foo"}, {"h2"}), chain({})}));
  EXPECT_EQ(match(m, "foo", {"h2"}), 0);
  EXPECT_EQ(match(m, "foo", {"http/1.1"}), filter_chain_matcher::no_match);
  EXPECT_EQ(match(m, "bar", {"http/1.1"}), 1);
}

TEST(FilterChainMatcher, AlpnFollowsClientOrder) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({chain({"s"}, {"istio-h2"}), chain({"s"}, {"istio"}), chain({"s"})}));
  EXPECT_EQ(match(m, "s", {"istio", "istio-h2"}), 1);
  EXPECT_EQ(match(m, "s", {"istio-h2", "istio"}), 0);
  EXPECT_EQ(match(m, "s", {"h2"}), 2);
  EXPECT_EQ(match(m, "s", {}), 2);
}

TEST(FilterChainMatcher, IstioAutoPassthroughShape) {
  const std::vector<std::string> istio_alpns = {"istio", "istio-peer-exchange", "istio-http/1.0", "istio-http/1.1", "istio-h2"};
  filter_chain_matcher m;
  std::vector<xds::filter_chain_config> chains;
  for (int i = 0; i < 200; ++i) {
    chains.push_back(chain({"outbound_.5000_._.svc" + std::to_string(i) + ".sample.svc.cluster.local"}, istio_alpns));
  }
  ASSERT_FALSE(m.build(chains));
  EXPECT_EQ(match(m, "outbound_.5000_._.svc17.sample.svc.cluster.local", {"istio-peer-exchange", "istio"}), 17);
  EXPECT_EQ(match(m, "outbound_.5000_._.svc17.sample.svc.cluster.local", {"h2"}), filter_chain_matcher::no_match);
  EXPECT_EQ(match(m, "outbound_.5000_._.unknown.sample.svc.cluster.local", {"istio"}), filter_chain_matcher::no_match);
  EXPECT_EQ(match(m, "", {}, 15443, "raw_buffer"), filter_chain_matcher::no_match);
}

TEST(FilterChainMatcher, DestinationPortIsMostSpecificFirst) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({chain({"a"}, {}, 443), chain({})}));
  EXPECT_EQ(match(m, "a", {}, 443), 0);
  EXPECT_EQ(match(m, "b", {}, 443), filter_chain_matcher::no_match);  // the port branch has no catch-all
  EXPECT_EQ(match(m, "a", {}, 80), 1);
}

TEST(FilterChainMatcher, TransportProtocol) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({chain({}, {}, std::nullopt, "tls"), chain({}, {}, std::nullopt, "raw_buffer")}));
  EXPECT_EQ(match(m, "", {}, 1, "tls"), 0);
  EXPECT_EQ(match(m, "", {}, 1, "raw_buffer"), 1);
}

// A server name whose only chain requires a transport protocol has no "any transport" branch:
// another transport finds nothing there (no backtracking), and why_no_match() says so.
TEST(FilterChainMatcher, TransportProtocolOfANamedChain) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({chain({"a"}, {}, std::nullopt, "tls"), chain({"b"}), chain({})}));
  EXPECT_EQ(match(m, "a", {}, 1, "tls"), 0);
  EXPECT_EQ(match(m, "a", {}, 1, "raw_buffer"), filter_chain_matcher::no_match);
  EXPECT_EQ(match(m, "b", {}, 1, "raw_buffer"), 1);
  EXPECT_EQ(m.why_no_match({1, "a", "raw_buffer", {}}),
            "the chain(s) for server name 'a' require(s) another transport protocol than 'raw_buffer' (Envoy does not "
            "fall back to less specific server names)");
}

TEST(FilterChainMatcher, OverlapsAreRejected) {
  filter_chain_matcher m;
  auto e = m.build({chain({"a", "b"}, {"istio"}), chain({"b"}, {"istio", "h2"})});
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("filter_chains[1] overlaps filter_chains[0]"), std::string::npos) << *e;
  EXPECT_FALSE(m.build({chain({"a"}, {"istio"}), chain({"a"}, {"h2"})}));
  EXPECT_TRUE(m.build({chain({}), chain({})}));
}

// Chains that name the same ALPN list share one copy of it; a second chain on the same server
// name (here with a different list and a duplicate) must still be told apart per protocol, and
// the tree must survive a move (its keys view strings the matcher owns).
TEST(FilterChainMatcher, SharedAlpnListsSplitWhenASecondChainJoinsAName) {
  const std::vector<std::string> istio_alpns = {"istio", "istio-h2"};
  filter_chain_matcher built;
  ASSERT_FALSE(built.build({chain({"a"}, istio_alpns), chain({"b"}, istio_alpns), chain({"a"}, {"h2", "h2"}),
                            chain({"*.c"}, istio_alpns)}));
  const filter_chain_matcher m = std::move(built);
  EXPECT_EQ(match(m, "a", {"istio-h2"}), 0);
  EXPECT_EQ(match(m, "a", {"h2", "istio"}), 2);
  EXPECT_EQ(match(m, "a", {"http/1.1"}), filter_chain_matcher::no_match);
  EXPECT_EQ(match(m, "b", {"h2", "istio"}), 1);
  EXPECT_EQ(match(m, "x.c", {"istio"}), 3);
  EXPECT_NE(m.why_no_match({15443, "a", "tls", {}}).find("accept(s) ALPN istio, istio-h2, h2;"), std::string::npos)
      << m.why_no_match({15443, "a", "tls", {}});
  filter_chain_matcher overlapping;
  auto e = overlapping.build({chain({"a"}, istio_alpns), chain({"a"}, {"h2", "istio-h2"})});
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("filter_chains[1] overlaps filter_chains[0]"), std::string::npos) << *e;
}

std::string service(int i) {
  return "outbound_.8080_._.svc-" + std::to_string(i) + ".ns-" + std::to_string(i % 7) + ".svc.cluster.local";
}

// An istiod east-west listener: thousands of chains, one name each, on the same port (plus a
// few on another port so that two tables coexist). Every name finds its own chain, names that
// differ only in a digit or in length do not, and the count in why_no_match() is the number of
// names configured for that port.
TEST(FilterChainMatcher, ThousandsOfExactNames) {
  constexpr int services = 5000;
  std::vector<xds::filter_chain_config> chains;
  for (int i = 0; i < services; ++i) chains.push_back(chain({service(i)}, {"istio"}));
  for (int i = 0; i < 3; ++i) chains.push_back(chain({service(i)}, {"istio"}, 443));
  filter_chain_matcher m;
  ASSERT_FALSE(m.build(chains));
  for (int i = 0; i < services; ++i) {
    ASSERT_EQ(match(m, service(i), {"istio"}), i) << service(i);
    ASSERT_EQ(match(m, service(i) + "x", {"istio"}), filter_chain_matcher::no_match);
    ASSERT_EQ(match(m, service(i + services), {"istio"}), filter_chain_matcher::no_match);
  }
  EXPECT_EQ(match(m, service(1), {"istio"}, 443), services + 1);
  EXPECT_EQ(match(m, service(3), {"istio"}, 443), filter_chain_matcher::no_match);
  EXPECT_EQ(match(m, service(services).substr(1), {"istio"}), filter_chain_matcher::no_match);
  EXPECT_EQ(m.why_no_match({15443, "absent.example", "tls", {}}),
            "no filter chain names server name 'absent.example' (exactly or by a '*.' wildcard; 5000 server "
            "name(s) are configured for port 15443) and no chain accepts any server name");
  EXPECT_EQ(m.why_no_match({443, "absent.example", "tls", {}}),
            "no filter chain names server name 'absent.example' (exactly or by a '*.' wildcard; 3 server name(s) are "
            "configured for port 443) and no chain accepts any server name");
}

// Names chosen so that they all start their probe at the same slot of the smallest table (16
// slots), the last one: each is found past the others, wrapping around to slot 0, and so are
// the absent names that start there too.
TEST(FilterChainMatcher, NamesThatShareAHomeSlot) {
  std::vector<std::string> same_home;
  std::vector<std::string> absent_same_home;
  for (int i = 0; same_home.size() < 8 || absent_same_home.size() < 8; ++i) {
    std::string n = "host-" + std::to_string(i) + ".example";
    if ((std::hash<std::string_view>{}(n) & 15) != 15) continue;
    (same_home.size() < 8 ? same_home : absent_same_home).push_back(std::move(n));
  }
  std::vector<xds::filter_chain_config> chains;
  for (const std::string& n : same_home) chains.push_back(chain({n}));
  chains.push_back(chain({"*.example"}));
  filter_chain_matcher m;
  ASSERT_FALSE(m.build(chains));
  for (std::size_t i = 0; i < same_home.size(); ++i) {
    EXPECT_EQ(match(m, same_home[i]), static_cast<int>(i)) << same_home[i];
  }
  for (const std::string& n : absent_same_home) EXPECT_EQ(match(m, n), static_cast<int>(same_home.size())) << n;
  EXPECT_EQ(match(m, "host-0.other"), filter_chain_matcher::no_match);
}

// An exact name beats every wildcard, a longer wildcard beats a shorter one, and a wildcard
// never matches its own suffix; one chain may name both kinds. why_no_match() names the
// wildcard as configured.
TEST(FilterChainMatcher, ExactAndWildcardNamesSideBySide) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({chain({"a.example.com", "*.a.example.com"}, {"h2"}), chain({"*.example.com"}, {"h2"}),
                        chain({"b.a.example.com"}, {"h2"}), chain({"*.com", "example.com"}, {"h2"})}));
  EXPECT_EQ(match(m, "a.example.com", {"h2"}), 0);
  EXPECT_EQ(match(m, "x.a.example.com", {"h2"}), 0);
  EXPECT_EQ(match(m, "b.a.example.com", {"h2"}), 2);
  EXPECT_EQ(match(m, "c.b.a.example.com", {"h2"}), 0);
  EXPECT_EQ(match(m, "b.example.com", {"h2"}), 1);
  EXPECT_EQ(match(m, "example.com", {"h2"}), 3);
  EXPECT_EQ(match(m, "other.com", {"h2"}), 3);
  EXPECT_EQ(match(m, ".a.example.com", {"h2"}), 1);  // the wildcard's key, as an SNI: not the wildcard itself
  EXPECT_EQ(match(m, "com", {"h2"}), filter_chain_matcher::no_match);
  EXPECT_EQ(m.why_no_match({15443, "x.a.example.com", "tls", {}}),
            "the chain(s) for server name '*.a.example.com' accept(s) ALPN h2; the client offers no ALPN (Envoy "
            "does not fall back to less specific server names)");
  EXPECT_EQ(m.why_no_match({15443, "a.example.com", "tls", {}}),
            "the chain(s) for server name 'a.example.com' accept(s) ALPN h2; the client offers no ALPN (Envoy does not "
            "fall back to less specific server names)");
}

// Server names compare without regard to case and the SNI arrives lower-cased: a name
// configured in upper case matches, and names equal but for case are the same name.
TEST(FilterChainMatcher, UpperCaseNamesAreMatchedLowerCased) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({chain({"Svc.Example.COM"}), chain({"*.Example.Com"}, {"h2"}), chain({"lower.example.com"})}));
  EXPECT_EQ(match(m, "svc.example.com"), 0);
  EXPECT_EQ(match(m, "other.example.com", {"h2"}), 1);
  EXPECT_EQ(match(m, "lower.example.com"), 2);
  EXPECT_EQ(m.why_no_match({15443, "x.example.com", "tls", {}}),
            "the chain(s) for server name '*.example.com' accept(s) ALPN h2; the client offers no ALPN (Envoy does not "
            "fall back to less specific server names)");
  filter_chain_matcher same;
  auto e = same.build({chain({"A.example"}), chain({"a.example"})});
  ASSERT_TRUE(e);
  EXPECT_NE(e->find("filter_chains[1] overlaps filter_chains[0]"), std::string::npos) << *e;
}

// The matcher outlives the configuration it was built from (a listener_runtime keeps it across
// snapshots): it holds the names itself. It holds them by reference, not as copies: what it
// keeps after build() is well below the names' own size.
TEST(FilterChainMatcher, KeepsTheChainsNamesWithoutCopyingThem) {
  constexpr int services = 2000;
  const std::string padding(200, 'p');
  filter_chain_matcher m;
  std::int64_t kept = 0;
  {
    std::vector<xds::filter_chain_config> chains;
    for (int i = 0; i < services; ++i) chains.push_back(chain({padding + service(i)}, {"istio"}));
    const std::int64_t before = lb::testing::live_bytes();
    ASSERT_FALSE(m.build(chains));
    kept = lb::testing::live_bytes() - before;
  }
  EXPECT_LT(kept, static_cast<std::int64_t>(services * padding.size() / 2));
  for (int i = 0; i < services; ++i) ASSERT_EQ(match(m, padding + service(i), {"istio"}), i);
}

// Connections pick their chain without touching the heap, whichever branch decides.
TEST(FilterChainMatcher, MatchDoesNotAllocate) {
  std::vector<xds::filter_chain_config> chains;
  for (int i = 0; i < 100; ++i) chains.push_back(chain({service(i)}, {"istio", "istio-h2"}));
  chains.push_back(chain({"*.ns-1.svc.cluster.local"}));
  chains.push_back(chain({}, {"h2"}));
  filter_chain_matcher m;
  ASSERT_FALSE(m.build(chains));
  const std::string hit = service(42);
  const std::string wildcard = "unknown.ns-1.svc.cluster.local";
  const std::string absent = "unknown.ns-2.svc.cluster.local";
  const std::array<std::string_view, 2> offer = {"istio-h2", "h2"};
  const std::uint64_t before = lb::testing::allocations_on_this_thread();
  int found = 0;
  for (std::string_view sni : {std::string_view(hit), std::string_view(wildcard), std::string_view(absent),
                               std::string_view()}) {
    found += m.match({15443, sni, "tls", offer}) != filter_chain_matcher::no_match;
  }
  EXPECT_EQ(lb::testing::allocations_on_this_thread(), before);
  EXPECT_EQ(found, 4);
}

TEST(FilterChainMatcher, EmptyMatcherMatchesNothing) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({}));
  EXPECT_EQ(match(m, "a"), filter_chain_matcher::no_match);
}

}  // namespace
}  // namespace ewgw::proxy
