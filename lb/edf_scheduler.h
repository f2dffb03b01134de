// Earliest-deadline-first scheduling for weighted round robin (Envoy's
// source/common/upstream/edf_scheduler.h semantics, our own implementation):
//
//   - an entry added with weight w at scheduler time t gets deadline t + 1/w;
//   - a pick takes the entry with the smallest deadline, ties going to the entry inserted first;
//   - the scheduler time becomes that deadline and the entry is re-added with its current weight.
//
// Entries are indices (into a host or locality list the caller owns). The heap is sized once in
// reset(); pick() moves entries within it and never allocates, so a worker can own one and pick
// from it on the data path.
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

namespace ewgw::lb {

class edf_scheduler {
 public:
  // Cold: one entry per index with a weight > 0, in index order (which breaks ties).
  // `prepicks` picks are made and discarded, so workers sharing a schedule start at different
  // points of it (Envoy seeds each worker's schedulers the same way).
  void reset(std::span<const double> weights, std::uint64_t prepicks = 0) {
    heap_.clear();
    now_ = 0;
    order_ = 0;
    for (std::uint32_t i = 0; i < weights.size(); ++i) {
      if (weights[i] > 0) heap_.push_back({1.0 / weights[i], order_++, i});
    }
    std::make_heap(heap_.begin(), heap_.end(), later);
    if (heap_.empty()) return;
    for (std::uint64_t n = prepicks % heap_.size(); n > 0; --n) {
      pick([&weights](std::uint32_t i) { return weights[i]; });
    }
  }

  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }

  // Hot: the index with the earliest deadline; it is re-added with weight_of(index) (> 0).
  // Precondition: !empty().
  template <class WeightOf>
  std::uint32_t pick(WeightOf&& weight_of) {
    std::pop_heap(heap_.begin(), heap_.end(), later);
    entry& e = heap_.back();
    now_ = e.deadline;
    e.deadline = now_ + 1.0 / weight_of(e.index);
    e.order = order_++;
    const std::uint32_t index = e.index;
    std::push_heap(heap_.begin(), heap_.end(), later);
    return index;
  }

 private:
  struct entry {
    double deadline;
    std::uint64_t order;  // insertion order: FIFO among equal deadlines
    std::uint32_t index;
  };
  // std heap functions build a max-heap; "later" makes it a min-heap on (deadline, order).
  static bool later(const entry& a, const entry& b) {
    return a.deadline > b.deadline || (a.deadline == b.deadline && a.order > b.order);
  }

  std::vector<entry> heap_;
  double now_ = 0;
  std::uint64_t order_ = 0;
};

}  // namespace ewgw::lb
