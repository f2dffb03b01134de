// The shared types of the configuration model (xds/config.h) on their own: shared_string's
// intrusive block, its reference counting across threads, and its reading and comparing like
// the other string types; shared_value, shared_vector and shared_optional's counted blocks.
#include "xds/config.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ewgw::xds {
namespace {

const std::string istio_name = "outbound_.8080_._.svc-42.ns-7.svc.cluster.local";

// Four threads copy `original` into slots, move it out and read it, 2,000,000 times each: enough
// that a load-then-store count fails every run here. Returns how many reads saw a wrong value.
template <class Handle, class Valid>
int copy_move_and_read_on_threads(const Handle& original, Valid valid) {
  constexpr int threads = 4;
  constexpr int rounds = 2'000'000;
  std::atomic<bool> go{false};
  std::atomic<int> bad_reads{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      std::vector<Handle> held(8);
      for (int i = 0; i < rounds; ++i) {
        Handle& slot = held[static_cast<std::size_t>(i) % held.size()];
        slot = original;  // drops what the slot held (a reference to the same block) and takes another
        Handle moved = std::move(slot);
        if (!valid(moved)) bad_reads.fetch_add(1);
        slot = moved;
      }
    });
  }
  go.store(true, std::memory_order_release);
  for (auto& t : pool) t.join();
  return bad_reads.load();
}

// One pointer per reference: the reason for the intrusive block (every cluster holds ~10).
static_assert(sizeof(shared_string) == sizeof(void*));

TEST(SharedString, CopiesShareOneBlockAndCountTheirReferences) {
  shared_string a(istio_name);
  EXPECT_EQ(a.use_count(), 1);
  {
    const shared_string b = a;  // NOLINT(performance-unnecessary-copy-initialization): a copy on purpose
    EXPECT_TRUE(b.shares_with(a));
    EXPECT_EQ(b.data(), a.data());  // the same text, not a copy of it
    EXPECT_EQ(a.use_count(), 2);
    shared_string c;
    c = b;
    EXPECT_EQ(a.use_count(), 3);
  }
  EXPECT_EQ(a.use_count(), 1);

  // An equal text built separately is its own block until share_if_equal hands it this one.
  shared_string separate(istio_name);
  EXPECT_EQ(separate, a);
  EXPECT_FALSE(separate.shares_with(a));
  separate.share_if_equal(a);
  EXPECT_TRUE(separate.shares_with(a));
  EXPECT_EQ(a.use_count(), 2);
}

TEST(SharedString, MoveLeavesTheSourceEmptyAndKeepsTheCount) {
  shared_string a(istio_name);
  const char* text = a.data();
  shared_string b = std::move(a);
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is specified as empty
  EXPECT_EQ(a.use_count(), 0);
  EXPECT_EQ(b.data(), text);
  EXPECT_EQ(b.use_count(), 1);

  shared_string c("other");
  c = std::move(b);  // drops "other", takes the block
  EXPECT_TRUE(b.empty());  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(c, istio_name);
  EXPECT_EQ(c.use_count(), 1);
}

TEST(SharedString, SelfAssignmentAndSwapKeepTheBlock) {
  shared_string a(istio_name);
  const shared_string& same = a;
  a = same;
  EXPECT_EQ(a, istio_name);
  EXPECT_EQ(a.use_count(), 1);
  a = std::move(a);  // NOLINT: self-move on purpose
  EXPECT_EQ(a, istio_name);
  EXPECT_EQ(a.use_count(), 1);

  shared_string b("b");
  swap(a, b);
  EXPECT_EQ(a, "b");
  EXPECT_EQ(b, istio_name);
  a.swap(b);
  EXPECT_EQ(a, istio_name);
  EXPECT_EQ(b, "b");
  EXPECT_EQ(a.use_count(), 1);
  EXPECT_EQ(b.use_count(), 1);

  // Assigning over the only reference to a block frees it (ASan reports a leak otherwise).
  b = a;
  EXPECT_EQ(a.use_count(), 2);
}

TEST(SharedString, EmptyIsANullHandle) {
  const shared_string none;
  const shared_string from_empty_string{std::string()};
  const shared_string from_empty_literal("");
  for (const shared_string* s : {&none, &from_empty_string, &from_empty_literal}) {
    EXPECT_TRUE(s->empty());
    EXPECT_EQ(s->size(), 0U);
    EXPECT_EQ(s->use_count(), 0);  // no block
    ASSERT_NE(s->c_str(), nullptr);
    EXPECT_STREQ(s->c_str(), "");
    EXPECT_EQ(s->view(), "");
    EXPECT_EQ(s->begin(), s->end());
    EXPECT_EQ(*s, "");
    EXPECT_EQ(*s, none);
  }
  const shared_string copy = none;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(copy.use_count(), 0);
}

TEST(SharedString, CStrIsNulTerminated) {
  const shared_string a(istio_name);
  EXPECT_EQ(std::strlen(a.c_str()), istio_name.size());
  EXPECT_EQ(a.c_str()[a.size()], '\0');
  EXPECT_STREQ(a.c_str(), istio_name.c_str());
  EXPECT_EQ(a.data(), a.c_str());

  // The length is the string's, not strlen's: an embedded NUL is text.
  const std::string with_nul("a\0b", 3);
  const shared_string b(with_nul);
  EXPECT_EQ(b.size(), 3U);
  EXPECT_EQ(b.length(), 3U);
  EXPECT_EQ(b, with_nul);
  EXPECT_EQ(b.c_str()[3], '\0');
}

TEST(SharedString, ReadsLikeAString) {
  const shared_string a(istio_name);
  EXPECT_EQ(a.size(), istio_name.size());
  EXPECT_EQ(std::string(a.begin(), a.end()), istio_name);
  EXPECT_EQ(a[0], 'o');
  EXPECT_EQ(a[a.size() - 1], 'l');
  const std::string_view v = a;  // implicit, into the block
  EXPECT_EQ(v.data(), a.data());
  EXPECT_EQ(std::string(a.view()), istio_name);
  std::ostringstream out;
  out << '[' << a << ']';
  EXPECT_EQ(out.str(), "[" + istio_name + "]");

  // `+` with the other string types builds a std::string.
  const std::string suffix = ".x";
  EXPECT_EQ(a + suffix, istio_name + ".x");
  EXPECT_EQ(a + ".x", istio_name + ".x");
  EXPECT_EQ(a + std::string_view(".x"), istio_name + ".x");
  EXPECT_EQ(suffix + a, ".x" + istio_name);
  EXPECT_EQ(".x" + a, ".x" + istio_name);
  EXPECT_EQ(std::string("cluster '") + a + "'", "cluster '" + istio_name + "'");
  std::string appended = "x:";
  appended += a;  // std::string's append of anything that reads as a string_view
  EXPECT_EQ(appended, "x:" + istio_name);
}

TEST(SharedString, ComparesWithEveryStringType) {
  const shared_string b("b");
  const std::string b_string = "b";
  const std::string_view b_view = "b";
  EXPECT_TRUE(b == shared_string("b"));
  EXPECT_TRUE(b == b_string);
  EXPECT_TRUE(b_string == b);
  EXPECT_TRUE(b == b_view);
  EXPECT_TRUE(b_view == b);
  EXPECT_TRUE(b == "b");
  EXPECT_TRUE("b" == b);
  EXPECT_TRUE(b != "bb");
  EXPECT_TRUE(b != shared_string());

  // Order is the texts' (byte-wise, as std::string's), in both directions.
  const shared_string a("a"), c("c");
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
  EXPECT_LT(shared_string(), a);  // empty first
  EXPECT_LT(a, b_string);
  EXPECT_LT(b_string, c);
  EXPECT_LT(a, b_view);
  EXPECT_LT(b_view, c);
  EXPECT_LT(a, "b");
  EXPECT_LT("b", c);
  EXPECT_EQ(b <=> b_string, std::strong_ordering::equal);
  EXPECT_EQ(b <=> "ba", std::strong_ordering::less);
  EXPECT_EQ(shared_string("ba") <=> b_view, std::strong_ordering::greater);

  const std::set<shared_string> sorted{c, a, b, shared_string("b")};
  EXPECT_EQ(sorted.size(), 3U);
  EXPECT_EQ(*sorted.begin(), "a");
}

TEST(SharedString, HashesLikeTheOtherStringTypes) {
  const shared_string_hash hash;
  const shared_string a(istio_name);
  EXPECT_EQ(hash(a), std::hash<std::string_view>{}(istio_name));
  EXPECT_EQ(hash(a), hash(istio_name));
  EXPECT_EQ(hash(a), hash(std::string_view(istio_name)));
  EXPECT_EQ(hash(shared_string()), hash(std::string_view()));

  // Heterogeneous lookups by the other string types find a shared_string key.
  std::unordered_map<shared_string, int, shared_string_hash, std::equal_to<>> index;
  index.emplace(a, 1);
  EXPECT_EQ(index.count(istio_name), 1U);
  EXPECT_EQ(index.count(std::string_view(istio_name)), 1U);
  EXPECT_EQ(index.count(std::string_view("missing")), 0U);
}

// Copies are made and dropped on several threads at once (workers drop snapshots while the xDS
// thread builds the next). A count that is not atomic loses updates under this load: the final
// count is then wrong, and a block freed while copies still read it is a use-after-free (ASan)
// or a double free.
TEST(SharedString, CountsCopiesMadeAndDroppedOnManyThreads) {
  const shared_string name(istio_name);
  EXPECT_EQ(copy_move_and_read_on_threads(name, [](const shared_string& s) {
              return s.size() == istio_name.size() && s[s.size() - 1] == 'l';
            }),
            0);
  EXPECT_EQ(name.use_count(), 1);
}

// The last reference is dropped on another thread than the one that made the block, which reads
// the text just before: ASan reports a read of a freed block or a double free if the last drop
// is not the only one that frees (a smoke test; the ordering itself is what the acq_rel
// decrement guarantees, which no test can observe reliably).
TEST(SharedString, TheLastHolderOnAnyThreadFreesTheBlock) {
  constexpr int names = 2000;
  std::vector<shared_string> made;
  made.reserve(names);
  for (int i = 0; i < names; ++i) made.emplace_back(istio_name + std::to_string(i));
  std::vector<shared_string> left(made), right(made);
  made.clear();  // the two threads now hold the only references
  std::atomic<std::size_t> total{0};
  auto drop = [&](std::vector<shared_string>& mine) {
    std::size_t sum = 0;
    for (shared_string& s : mine) {
      sum += static_cast<std::size_t>(s.c_str()[s.size() - 1]);  // read, then drop
      s = shared_string();
    }
    total.fetch_add(sum);
  };
  std::thread a(drop, std::ref(left));
  std::thread b(drop, std::ref(right));
  a.join();
  b.join();
  std::size_t expected = 0;
  for (int i = 0; i < names; ++i) expected += static_cast<std::size_t>(std::to_string(i).back());
  EXPECT_EQ(total.load(), 2 * expected);
}

// ---- shared_value, shared_vector, shared_optional: one counted block behind 8 bytes ----------

static_assert(sizeof(shared_value<locality>) == sizeof(void*));
static_assert(sizeof(shared_vector<std::string>) == sizeof(void*));
static_assert(sizeof(shared_optional<outlier_detection_config>) == sizeof(void*));

TEST(SharedValue, CopiesShareTheValueAndEditCopiesOnlyWhenShared) {
  shared_value<locality> unset;
  EXPECT_EQ(unset->zone, "");  // reads as a default T, with no block
  shared_value<locality> a(locality{.region = "r", .zone = "z", .sub_zone = ""});
  shared_value<locality> b = a;
  EXPECT_TRUE(b.shares_with(a));
  EXPECT_EQ(&b.get(), &a.get());

  // b is shared: editing it copies first, leaving a as it was.
  b.edit().zone = "z2";
  EXPECT_FALSE(b.shares_with(a));
  EXPECT_EQ(a->zone, "z");
  EXPECT_EQ(b->zone, "z2");
  // b is now its block's only holder: a second edit changes it in place.
  const locality* before = &b.get();
  b.edit().sub_zone = "s";
  EXPECT_EQ(&b.get(), before);
  EXPECT_EQ(b->sub_zone, "s");

  EXPECT_EQ(a, shared_value<locality>(locality{.region = "r", .zone = "z", .sub_zone = ""}));  // by contents
  EXPECT_NE(a, b);
  a = a;  // NOLINT: self-assignment on purpose
  EXPECT_EQ(a->zone, "z");
  shared_value<locality> moved = std::move(a);
  EXPECT_EQ(moved->zone, "z");
  EXPECT_EQ(a->zone, "");  // NOLINT(bugprone-use-after-move): moved-from reads as the default
}

TEST(SharedVector, CopiesShareTheItemsAndEmptyHasNoBlock) {
  const shared_vector<std::string> none;
  EXPECT_TRUE(none.empty());
  EXPECT_TRUE(shared_vector<std::string>(std::vector<std::string>{}).shares_with(none));  // both null
  const shared_vector<std::string> alpns{"h2", "http/1.1"};
  const shared_vector<std::string> copy = alpns;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_TRUE(copy.shares_with(alpns));
  EXPECT_EQ(&copy.get(), &alpns.get());
  EXPECT_EQ(copy.size(), 2U);
  EXPECT_EQ(copy[1], "http/1.1");
  const shared_vector<std::string> equal{"h2", "http/1.1"};
  EXPECT_FALSE(equal.shares_with(alpns));
  EXPECT_EQ(equal, alpns);
  EXPECT_NE(none, alpns);
}

TEST(SharedOptional, ReadsLikeAnOptionalAndComparesContents) {
  shared_optional<outlier_detection_config> unset;
  EXPECT_FALSE(unset.has_value());
  shared_optional<outlier_detection_config> a = outlier_detection_config{};
  ASSERT_TRUE(a.has_value());
  shared_optional<outlier_detection_config> b = a;
  EXPECT_EQ(&*b, &*a);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, unset);
  b.reset();
  EXPECT_FALSE(b.has_value());
  EXPECT_EQ(b, unset);
  b = outlier_detection_config{};
  EXPECT_EQ(a, b);  // equal contents, separate blocks
}

// As for shared_string: the block under shared_value, shared_vector and shared_optional has
// copies taken and dropped on several threads, each reading the value. A count that loses
// updates ends wrong, or frees the value while copies still read it (ASan).
TEST(CountedRef, CountsCopiesMadeAndDroppedOnManyThreads) {
  using list = counted_ref<const std::vector<std::string>>;
  const auto items = list::make(std::vector<std::string>{istio_name, "second"});
  EXPECT_EQ(copy_move_and_read_on_threads(items, [](const list& l) {
              return l.get()->size() == 2 && (*l.get())[1].size() == 6;
            }),
            0);
  EXPECT_EQ(items.use_count(), 1);
}

}  // namespace
}  // namespace ewgw::xds
