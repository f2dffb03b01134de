#include "stats/stats.h"

#include <gtest/gtest.h>

#include <thread>

namespace ewgw::stats {
namespace {

#define TEST_STATS(COUNTER, GAUGE) \
  COUNTER(requests_total, "Requests") \
  GAUGE(active, "Active things")
EWGW_STATS_BLOCK(test_stats, TEST_STATS)

TEST(Stats, PerWorkerBlocksSumAtReadTime) {
  registry r(4);
  auto s = r.get<test_stats>("listener", "l1");
  std::vector<std::thread> threads;
  for (std::size_t w = 0; w < 4; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < 100000; ++i) s->worker(w).requests_total.inc();
      s->worker(w).active.add(static_cast<std::int64_t>(w));
    });
  }
  for (auto& t : threads) t.join();
  // A gauge may be decremented on another worker than the one that incremented it.
  s->worker(0).active.sub(1);
  EXPECT_EQ(r.value("listener.l1.requests_total"), 400000);
  EXPECT_EQ(r.value("listener.l1.active"), 0 + 1 + 2 + 3 - 1);
  EXPECT_EQ(r.value("listener.l1.missing"), -1);
}

TEST(Stats, ScopesAreSharedByName) {
  registry r(1);
  auto a = r.get<test_stats>("cluster", "c");
  auto b = r.get<test_stats>("cluster", "c");
  EXPECT_EQ(a.get(), b.get());  // a config update that keeps a cluster keeps its counters
  a->worker(0).requests_total.inc(3);
  EXPECT_EQ(r.value("cluster.c.requests_total"), 3);
  auto totals = r.totals();
  EXPECT_EQ(totals.count("cluster.c.active"), 1u);
}

TEST(Stats, TotalsAreInNameOrderWithOneLinePerName) {
  registry r(2);
  r.get<test_stats>("cluster", "b")->worker(1).requests_total.inc(2);
  r.get<test_stats>("cluster", "a")->worker(0).requests_total.inc(5);
  // A computed scope that emits a name a stored scope has too: one entry with the sum.
  r.add_source([](const registry::scope_emitter& emit) {
    computed_scope extra("cluster", "a");
    extra.add("requests_total", "Requests", metric_kind::counter, 7);
    extra.add("zz_only_here", "Computed", metric_kind::gauge, 1);
    emit(extra);
  });
  const totals_table totals = r.totals();
  std::vector<std::string> names;
  for (const auto& e : totals) names.emplace_back(e.name);
  EXPECT_EQ(names, (std::vector<std::string>{"cluster.a.active", "cluster.a.requests_total", "cluster.a.zz_only_here",
                                             "cluster.b.active", "cluster.b.requests_total"}));
  ASSERT_NE(totals.find("cluster.a.requests_total"), nullptr);
  EXPECT_EQ(totals.find("cluster.a.requests_total")->value, 5 + 7);
  EXPECT_EQ(totals.find("cluster.b.requests_total")->value, 2);
  EXPECT_EQ(totals.find("cluster.c.requests_total"), nullptr);
  EXPECT_EQ(totals.find("cluster.a"), nullptr);  // a prefix of a name is not a name

  // Moving keeps the names where the entries view them, even when all of them together are
  // shorter than a std::string's inline buffer (5 characters here).
  registry small(1);
  small.add_source([](const registry::scope_emitter& emit) {
    computed_scope tiny("a", "b");
    tiny.add("n", "N", metric_kind::gauge, 3);
    emit(tiny);
  });
  totals_table moved = small.totals();
  ASSERT_EQ(moved.size(), 1u);
  totals_table target = std::move(moved);
  ASSERT_NE(target.find("a.b.n"), nullptr);
  EXPECT_EQ(target.find("a.b.n")->value, 3);
  EXPECT_EQ(target.begin()->name, "a.b.n");
}

TEST(Stats, VisitNamesEveryMetricWithHelp) {
  registry r(2);
  auto s = r.get<test_stats>("tcp", "p");
  std::vector<std::string> names;
  s->for_each_total([&](const sample& m) {
    names.emplace_back(m.name);
    EXPECT_FALSE(m.help.empty());
  });
  EXPECT_EQ(names, (std::vector<std::string>{"requests_total", "active"}));
}

}  // namespace
}  // namespace ewgw::stats
