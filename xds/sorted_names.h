// A sorted list of resource names that references the ADS state's own name strings.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <ostream>
#include <string_view>
#include <utility>
#include <vector>

#include "xds/config.h"

namespace ewgw::xds {

// The names the xDS client hands around after each update: the EDS subscription, the clusters
// that warm and the listeners that wait (/config_dump). At 10,000 clusters these were
// std::set<std::string>s: a tree node and a heap string per name, made after each response and
// freed after the next. Those small blocks filled the holes between the configuration that stays
// and left new holes when freed (~130 bytes per cluster resident after a full push, measured with
// heaptrack's raw allocation trace). Here each name is a reference to the string the state's
// index already holds, in one array: no allocation per name.
class sorted_names {
 public:
  sorted_names() = default;
  // Sorts and drops repeats.
  explicit sorted_names(std::vector<shared_string> names) : names_(std::move(names)) {
    std::sort(names_.begin(), names_.end(), [](const shared_string& a, const shared_string& b) { return a.view() < b.view(); });
    names_.erase(std::unique(names_.begin(), names_.end(),
                             [](const shared_string& a, const shared_string& b) { return a.view() == b.view(); }),
                 names_.end());
    names_.shrink_to_fit();
  }
  sorted_names(std::initializer_list<shared_string> names) : sorted_names(std::vector<shared_string>(names)) {}

  bool contains(std::string_view name) const {
    auto it = std::lower_bound(names_.begin(), names_.end(), name,
                               [](const shared_string& a, std::string_view b) { return a.view() < b; });
    return it != names_.end() && it->view() == name;
  }
  auto begin() const { return names_.begin(); }
  auto end() const { return names_.end(); }
  std::size_t size() const { return names_.size(); }
  bool empty() const { return names_.empty(); }
  template <class Char, class Traits>
  friend std::basic_ostream<Char, Traits>& operator<<(std::basic_ostream<Char, Traits>& os, const sorted_names& names) {
    os << "[";
    for (std::size_t i = 0; i < names.size(); ++i) os << (i == 0 ? "" : ", ") << names.names_[i].view();
    return os << "]";
  }
  friend bool operator==(const sorted_names& a, const sorted_names& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](const shared_string& x, const shared_string& y) { return x.view() == y.view(); });
  }

 private:
  std::vector<shared_string> names_;
};

}  // namespace ewgw::xds
