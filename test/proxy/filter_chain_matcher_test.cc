// Filter chain selection must follow Envoy's FilterChainMatch semantics exactly: istiod builds
// one chain per service port and relies on them.
#include "proxy/filter_chain_matcher.h"

#include <gtest/gtest.h>

#include <array>

namespace ewgw::proxy {
namespace {

xds::filter_chain_config chain(std::vector<std::string> names, std::vector<std::string> alpns = {},
                               std::optional<std::uint16_t> port = std::nullopt, std::string transport = "") {
  xds::filter_chain_config c;
  c.match.server_names.assign(names.begin(), names.end());
  c.match.application_protocols = std::move(alpns);
  c.match.destination_port = port;
  c.match.transport_protocol = std::move(transport);
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

TEST(FilterChainMatcher, EmptyMatcherMatchesNothing) {
  filter_chain_matcher m;
  ASSERT_FALSE(m.build({}));
  EXPECT_EQ(match(m, "a"), filter_chain_matcher::no_match);
}

}  // namespace
}  // namespace ewgw::proxy
