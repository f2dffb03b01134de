// lb/ internal: a per-worker array of lazily made entries (load_balancer's worker slots and each
// health view's picking state). In a header only so load_balancer can hold one inline.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>

namespace ewgw::lb {

// Per-worker state is created by each worker on its first pick (of the balancer, and of each
// view), not up front: a gateway with 10,000 clusters and N workers would otherwise hold
// 10,000 x N cache lines for clusters that one gateway may never route to. Entry w is written
// only by worker w; the cold path only reads it (hazard scan) or frees it (destructor).
template <class T>
class lazy_per_worker {
 public:
  explicit lazy_per_worker(std::size_t workers) : entries_(new std::atomic<T*>[workers]), size_(workers) {
    for (std::size_t w = 0; w < size_; ++w) entries_[w].store(nullptr, std::memory_order_relaxed);
  }
  ~lazy_per_worker() {
    for (std::size_t w = 0; w < size_; ++w) delete entries_[w].load(std::memory_order_relaxed);
  }
  lazy_per_worker(const lazy_per_worker&) = delete;
  lazy_per_worker& operator=(const lazy_per_worker&) = delete;

  // Worker w's entry, made by `make` on its first use. seq_cst: the hazard-pointer argument in
  // reclaim_locked() needs the entry's publication in the same total order as the hazard.
  template <class Make>
  T& get(std::size_t w, Make&& make) {
    T* e = entries_[w].load(std::memory_order_seq_cst);
    if (e == nullptr) {
      e = make();
      entries_[w].store(e, std::memory_order_seq_cst);
    }
    return *e;
  }
  // Null until worker w made it.
  const T* peek(std::size_t w) const { return entries_[w].load(std::memory_order_seq_cst); }

 private:
  std::unique_ptr<std::atomic<T*>[]> entries_;
  std::size_t size_;
};


}  // namespace ewgw::lb
