// EDF scheduling (ENVOY-SEMANTICS.md "Localities"): deadline = now + 1/weight, earliest first,
// ties to the entry inserted first.
#include "lb/edf_scheduler.h"

#include <gtest/gtest.h>

#include <vector>

#include "test/lb/allocation_counter.h"

namespace ewgw::lb {
namespace {

std::vector<std::uint32_t> picks(edf_scheduler& s, const std::vector<double>& weights, int n) {
  std::vector<std::uint32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(s.pick([&weights](std::uint32_t x) { return weights[x]; }));
  return out;
}

// Scenario 4: weights [1, 2] give host1, host0, host1, host1, host0, host1.
TEST(EdfScheduler, Scenario4WeightsOneAndTwo) {
  const std::vector<double> w{1, 2};
  edf_scheduler s;
  s.reset(w);
  EXPECT_EQ(picks(s, w, 6), (std::vector<std::uint32_t>{1, 0, 1, 1, 0, 1}));
}

TEST(EdfScheduler, EqualDeadlinesGoInInsertionOrder) {
  const std::vector<double> w{1, 1, 1};
  edf_scheduler s;
  s.reset(w);
  EXPECT_EQ(picks(s, w, 7), (std::vector<std::uint32_t>{0, 1, 2, 0, 1, 2, 0}));
}

TEST(EdfScheduler, ExactShareOverManyPicks) {
  const std::vector<double> w{1, 2, 3, 4};
  edf_scheduler s;
  s.reset(w);
  std::vector<int> count(4);
  for (std::uint32_t i : picks(s, w, 1000)) count[i]++;
  EXPECT_EQ(count, (std::vector<int>{100, 200, 300, 400}));
  // And every prefix stays within one pick of its share (smoothness, not just the total).
  s.reset(w);
  std::vector<int> running(4);
  for (int n = 1; n <= 1000; ++n) {
    running[s.pick([&w](std::uint32_t x) { return w[x]; })]++;
    for (int i = 0; i < 4; ++i) EXPECT_NEAR(running[i], n * w[i] / 10.0, 1.0) << "after " << n << " picks";
  }
}

TEST(EdfScheduler, ZeroWeightsAreNeverScheduled) {
  const std::vector<double> w{0, 3, 0, 1};
  edf_scheduler s;
  s.reset(w);
  EXPECT_EQ(s.size(), 2u);
  // Deadlines 1/3, 2/3, then 1 (three thirds add up to exactly 1.0) ties with host 3's 1.0:
  // host 3 was inserted first.
  EXPECT_EQ(picks(s, w, 8), (std::vector<std::uint32_t>{1, 1, 3, 1, 1, 1, 1, 3}));
  s.reset(std::vector<double>{0, 0});
  EXPECT_TRUE(s.empty());
}

TEST(EdfScheduler, ReAddUsesTheCurrentWeight) {
  // Weights change between picks (least request's weight / (active + 1)): host 0 is re-added
  // with a tenth of its weight (deadline 1 + 10), so host 1 takes deadlines 1 to 10 and host 0
  // wins the tie at 11 (it was re-added first).
  std::vector<double> w{1, 1};
  edf_scheduler s;
  s.reset(w);
  w[0] = 0.1;
  EXPECT_EQ(picks(s, w, 12), (std::vector<std::uint32_t>{0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0}));
}

TEST(EdfScheduler, PrepicksStartFurtherAlongTheSameSchedule) {
  const std::vector<double> w{1, 2, 5};
  edf_scheduler a, b;
  a.reset(w);
  const std::vector<std::uint32_t> sequence = picks(a, w, 20);
  b.reset(w, 2);
  EXPECT_EQ(picks(b, w, 18), std::vector<std::uint32_t>(sequence.begin() + 2, sequence.end()));
  // Prepicks are taken modulo the number of entries.
  edf_scheduler c;
  c.reset(w, 2 + 3 * 1000);
  EXPECT_EQ(picks(c, w, 18), std::vector<std::uint32_t>(sequence.begin() + 2, sequence.end()));
}

TEST(EdfScheduler, PickDoesNotAllocate) {
  std::vector<double> w(1000);
  for (std::size_t i = 0; i < w.size(); ++i) w[i] = 1 + static_cast<double>(i % 7);
  edf_scheduler s;
  s.reset(w);
  const std::uint64_t before = testing::allocations_on_this_thread();
  std::uint64_t sum = 0;
  for (int i = 0; i < 10000; ++i) sum += s.pick([&w](std::uint32_t x) { return w[x]; });
  EXPECT_EQ(testing::allocations_on_this_thread() - before, 0u);
  EXPECT_GT(sum, 0u);
}

}  // namespace
}  // namespace ewgw::lb
