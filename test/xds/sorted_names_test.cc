#include "xds/sorted_names.h"

#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

namespace ewgw::xds {
namespace {

TEST(SortedNames, SortsAndDropsRepeats) {
  sorted_names names({shared_string("b"), shared_string("a"), shared_string("c"), shared_string("a")});
  std::ostringstream out;
  out << names;
  EXPECT_EQ(out.str(), "[a, b, c]");
  EXPECT_EQ(names.size(), 3u);
}

TEST(SortedNames, FindsOnlyItsNames) {
  const sorted_names names{"outbound_.8080_._.b.ns.svc.cluster.local", "outbound_.8080_._.a.ns.svc.cluster.local"};
  EXPECT_TRUE(names.contains("outbound_.8080_._.a.ns.svc.cluster.local"));
  EXPECT_TRUE(names.contains("outbound_.8080_._.b.ns.svc.cluster.local"));
  EXPECT_FALSE(names.contains("outbound_.8080_._.c.ns.svc.cluster.local"));
  EXPECT_FALSE(names.contains("outbound_.8080_._.a.ns.svc.cluster"));  // a prefix is not the name
  EXPECT_FALSE(names.contains(""));
  EXPECT_FALSE(sorted_names().contains("a"));
}

TEST(SortedNames, EqualWhenTheTextsAreEqual) {
  EXPECT_EQ(sorted_names({"a", "b"}), sorted_names({"b", "a"}));
  EXPECT_FALSE(sorted_names({"a", "b"}) == sorted_names({"a"}));
  EXPECT_FALSE(sorted_names({"a"}) == sorted_names({"c"}));
  EXPECT_EQ(sorted_names(), sorted_names(std::vector<shared_string>{}));
}

// The point of the type: the list references the strings it is given (the state's index keys)
// instead of copying them.
TEST(SortedNames, SharesTheStringsItIsGiven) {
  const shared_string name("outbound_.5000_._.helloworld.sample.svc.cluster.local");
  const long before = name.use_count();
  const sorted_names names({name});
  EXPECT_EQ(name.use_count(), before + 1);
  ASSERT_EQ(names.size(), 1u);
  EXPECT_TRUE(names.begin()->shares_with(name));
}

}  // namespace
}  // namespace ewgw::xds
