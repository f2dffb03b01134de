#include "lb/load_balancer.h"

#include <algorithm>
#include <limits>

namespace ewgw::lb {

load_balancer::load_balancer(std::vector<host_entry> hosts, std::size_t workers)
    : hosts_(std::move(hosts)), workers_(workers == 0 ? 1 : workers) {
  for (const host_health wanted : {host_health::healthy, host_health::degraded}) {
    std::uint32_t best = std::numeric_limits<std::uint32_t>::max();
    for (const host_entry& e : hosts_) {
      if (e.target->health() == wanted) best = std::min(best, e.priority);
    }
    for (const host_entry& e : hosts_) {
      if (e.target->health() == wanted && e.priority == best) candidates_.push_back(e.target.get());
    }
    if (!candidates_.empty()) break;
  }
  if (candidates_.empty()) {
    for (const host_entry& e : hosts_) candidates_.push_back(e.target.get());
  }
  // Start each worker at a different offset so workers do not all hit the same host first.
  for (std::size_t w = 0; w < workers_.size(); ++w) {
    workers_[w].next = candidates_.empty() ? 0 : w % candidates_.size();
  }
}

host* load_balancer::pick(std::size_t worker, const host* avoid) {
  if (candidates_.empty()) return nullptr;
  worker_state& s = workers_[worker % workers_.size()];
  host* h = candidates_[s.next % candidates_.size()];
  s.next = (s.next + 1) % candidates_.size();
  if (h == avoid && candidates_.size() > 1) {
    h = candidates_[s.next % candidates_.size()];
    s.next = (s.next + 1) % candidates_.size();
  }
  return h;
}

}  // namespace ewgw::lb
