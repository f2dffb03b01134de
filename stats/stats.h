// Counters and gauges updated on the data path without locks, atomics read-modify-write or
// lookups, and summed across workers when read (scrape, admin, tests).
//
// Each module declares its metrics once as an X-macro list:
//
//   #define EWGW_MY_STATS(COUNTER, GAUGE)
//     COUNTER(downstream_cx_total, "Connections accepted")
//     GAUGE(downstream_cx_active, "Connections open")
//   EWGW_STATS_BLOCK(my_stats, EWGW_MY_STATS)
//
// which generates a struct with one member per metric and a visit() that names them, so the
// struct (hot path) and the registration/exposition (cold path) cannot drift apart.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <typeindex>
#include <vector>

namespace ewgw::stats {

// Written by exactly one thread (its worker), read by any thread. A relaxed load+store is a
// plain move on x86 and ARM: no lock prefix, no contention, and still no data race.
class counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  std::uint64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> value_{0};
};

// Per-worker gauge contribution. One worker may go negative (a connection opened on one worker
// cannot close on another today, but a gauge decremented elsewhere must still sum correctly).
class gauge {
 public:
  void add(std::int64_t n = 1) noexcept { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void sub(std::int64_t n = 1) noexcept { add(-n); }
  std::int64_t value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> value_{0};
};

enum class metric_kind : std::uint8_t { counter, gauge };

#define EWGW_STATS_DECLARE_COUNTER(name, help) ::ewgw::stats::counter name;
#define EWGW_STATS_DECLARE_GAUGE(name, help) ::ewgw::stats::gauge name;
#define EWGW_STATS_VISIT_COUNTER(name, help) \
  v(std::string_view(#name), std::string_view(help), ::ewgw::stats::metric_kind::counter, static_cast<std::int64_t>(name.value()));
#define EWGW_STATS_VISIT_GAUGE(name, help) \
  v(std::string_view(#name), std::string_view(help), ::ewgw::stats::metric_kind::gauge, name.value());

#define EWGW_STATS_BLOCK(type_name, LIST)                                 \
  struct alignas(64) type_name {                                          \
    LIST(EWGW_STATS_DECLARE_COUNTER, EWGW_STATS_DECLARE_GAUGE)            \
    template <class V>                                                    \
    void visit(V&& v) const {                                             \
      LIST(EWGW_STATS_VISIT_COUNTER, EWGW_STATS_VISIT_GAUGE)              \
    }                                                                     \
  };

// One metric's total across workers, as seen when read.
struct sample {
  std::string_view name;  // metric name within its scope, e.g. "downstream_cx_total"
  std::string_view help;
  metric_kind kind;
  std::int64_t value;
};

// A named group of metrics (e.g. "listener.0.0.0.0_15443."), one block per worker.
class scope {
 public:
  virtual ~scope() = default;
  // Envoy-style dotted prefix ending in '.', e.g. "cluster.outbound_.5000_._.helloworld.".
  const std::string& prefix() const { return prefix_; }
  // The family this scope belongs to ("listener", "cluster", "tcp", ...) and its label value,
  // for exposition formats that use labels instead of dotted names.
  const std::string& family() const { return family_; }
  const std::string& label() const { return label_; }
  virtual void for_each_total(const std::function<void(const sample&)>& fn) const = 0;

 protected:
  scope(std::string family, std::string label, std::string prefix)
      : prefix_(std::move(prefix)), family_(std::move(family)), label_(std::move(label)) {}

 private:
  std::string prefix_;
  std::string family_;
  std::string label_;
};

// A scope whose metrics are the members of Block, with one cache-line aligned Block per worker.
template <class Block>
class block_scope final : public scope {
 public:
  block_scope(std::string family, std::string label, std::string prefix, std::size_t workers)
      : scope(std::move(family), std::move(label), std::move(prefix)), blocks_(workers) {}

  // The block a worker updates. `worker` < the worker count given to the registry.
  Block& worker(std::size_t worker) noexcept { return blocks_[worker]; }
  std::size_t workers() const noexcept { return blocks_.size(); }

  void for_each_total(const std::function<void(const sample&)>& fn) const override {
    std::vector<sample> totals;
    blocks_[0].visit([&](std::string_view name, std::string_view help, metric_kind kind, std::int64_t) {
      totals.push_back(sample{name, help, kind, 0});
    });
    for (const Block& b : blocks_) {
      std::size_t i = 0;
      b.visit([&](std::string_view, std::string_view, metric_kind, std::int64_t value) { totals[i++].value += value; });
    }
    for (const sample& s : totals) fn(s);
  }

 private:
  std::vector<Block> blocks_;
};

// Owns every scope so that counters outlive configuration updates: a listener or cluster that
// is replaced by an identical one keeps counting where it left off. Lookups happen when a
// configuration snapshot is built, never per connection.
class registry {
 public:
  explicit registry(std::size_t workers) : workers_(workers == 0 ? 1 : workers) {}

  std::size_t workers() const { return workers_; }

  // The scope for (family, label) holding Block metrics, created on first use.
  template <class Block>
  std::shared_ptr<block_scope<Block>> get(const std::string& family, const std::string& label) {
    std::lock_guard lock(mu_);
    auto it = scopes_.find(key{family, label, std::type_index(typeid(Block))});
    if (it != scopes_.end()) return std::static_pointer_cast<block_scope<Block>>(it->second);
    // An empty label names the family itself ("control_plane.connected_state").
    auto s = std::make_shared<block_scope<Block>>(family, label, label.empty() ? family + "." : family + "." + label + ".",
                                                  workers_);
    // The key views the scope's own names (tens of thousands of scopes with long labels).
    scopes_.emplace(key{s->family(), s->label(), std::type_index(typeid(Block))}, s);
    return s;
  }

  // Calls fn for every scope, in name order.
  void for_each_scope(const std::function<void(const scope&)>& fn) const;

  // Every metric as "prefix+name" -> total, in name order (Envoy's /stats text form).
  std::map<std::string, std::int64_t> totals() const;

  // Total of one metric by its full dotted name, or -1 when absent (tests, admin).
  std::int64_t value(std::string_view full_name) const;

 private:
  struct key {
    std::string_view family;
    std::string_view label;
    std::type_index type;
    bool operator<(const key& o) const {
      if (family != o.family) return family < o.family;
      if (label != o.label) return label < o.label;
      return type < o.type;
    }
  };
  std::size_t workers_;
  mutable std::mutex mu_;
  std::map<key, std::shared_ptr<scope>> scopes_;
};

}  // namespace ewgw::stats
