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

#include <array>
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
#include <utility>
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

// Envoy's default histogram bucket bounds (HistogramBucketSettings defaults), used for
// milliseconds and bytes alike so existing dashboards' bucket queries keep working.
inline constexpr double default_histogram_bounds[] = {0.5,   1,     5,     10,     25,     50,     100,
                                                      250,   500,   1000,  2500,   5000,   10000, 30000,
                                                      60000, 300000, 600000, 1800000, 3600000};
inline constexpr std::size_t histogram_bucket_count = std::size(default_histogram_bounds);

// Per-worker histogram: one count per bucket (plus +Inf) and a running sum, each written only by
// its worker with relaxed load+store, like counter.
class histogram {
 public:
  void record(double value) noexcept {
    std::size_t i = 0;
    while (i < histogram_bucket_count && value > default_histogram_bounds[i]) ++i;
    bump(counts_[i], 1);
    sum_.store(sum_.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
  }
  // counts()[i] counts values <= bounds[i]; counts()[bucket_count] those above every bound.
  std::uint64_t count_at(std::size_t i) const noexcept { return counts_[i].load(std::memory_order_relaxed); }
  double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }

 private:
  static void bump(std::atomic<std::uint64_t>& a, std::uint64_t n) {
    a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::array<std::atomic<std::uint64_t>, histogram_bucket_count + 1> counts_{};
  std::atomic<double> sum_{0};
};

// A histogram's totals across workers, as seen when read.
struct histogram_sample {
  std::string_view name;
  std::string_view help;
  std::array<std::uint64_t, histogram_bucket_count + 1> counts{};  // not cumulative
  double sum = 0;
  std::uint64_t count() const {
    std::uint64_t n = 0;
    for (auto c : counts) n += c;
    return n;
  }
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

#define EWGW_STATS_DECLARE_HISTOGRAM(name, help) ::ewgw::stats::histogram name;
#define EWGW_STATS_VISIT_HISTOGRAM(name, help) h(std::string_view(#name), std::string_view(help), name);

// A block with histograms as well: HLIST(HISTOGRAM) lists them.
#define EWGW_STATS_BLOCK_WITH_HISTOGRAMS(type_name, LIST, HLIST)          \
  struct alignas(64) type_name {                                          \
    LIST(EWGW_STATS_DECLARE_COUNTER, EWGW_STATS_DECLARE_GAUGE)            \
    HLIST(EWGW_STATS_DECLARE_HISTOGRAM)                                   \
    template <class V>                                                    \
    void visit(V&& v) const {                                             \
      LIST(EWGW_STATS_VISIT_COUNTER, EWGW_STATS_VISIT_GAUGE)              \
    }                                                                     \
    template <class H>                                                    \
    void visit_histograms(H&& h) const {                                  \
      HLIST(EWGW_STATS_VISIT_HISTOGRAM)                                   \
    }                                                                     \
  };

// One metric's total across workers, as seen when read.
struct sample {
  std::string_view name;  // metric name within its scope, e.g. "downstream_cx_total"
  std::string_view help;
  metric_kind kind;
  std::int64_t value;
};

// A named group of metrics, one block per worker. Envoy names a stat by a dotted path
// (family, then the tagged value, then sub-scopes: "listener.0.0.0.0_15443.tls_inspector.") and
// turns the tagged value into a Prometheus label (envoy_listener_address="0.0.0.0_15443").
class scope {
 public:
  virtual ~scope() = default;
  // Dotted prefix ending in '.', e.g. "cluster.outbound_.5000_._.helloworld.".
  const std::string& prefix() const { return prefix_; }
  // "listener", "cluster", "tcp", "server", "cluster_manager", ...
  const std::string& family() const { return family_; }
  // The tagged value (cluster name, listener address, stat prefix); empty for untagged scopes.
  const std::string& label() const { return label_; }
  // Sub-scope below the tagged value, e.g. "tls_inspector" or "cds"; may be empty.
  const std::string& subsystem() const { return subsystem_; }
  virtual void for_each_total(const std::function<void(const sample&)>& fn) const = 0;
  virtual void for_each_histogram(const std::function<void(const histogram_sample&)>&) const {}
  // Prometheus only: labels that replace the scope's tag label, with the metric names used as
  // they are (no "envoy_" prefix); null for Envoy-named scopes. Istio's metrics use this.
  virtual const std::vector<std::pair<std::string, std::string>>* prometheus_labels() const { return nullptr; }

 protected:
  scope(std::string family, std::string label, std::string subsystem)
      : family_(std::move(family)), label_(std::move(label)), subsystem_(std::move(subsystem)) {
    for (const std::string* part : {&family_, &label_, &subsystem_}) {
      if (!part->empty()) prefix_ += *part + ".";
    }
  }

 private:
  std::string prefix_;
  std::string family_;
  std::string label_;
  std::string subsystem_;
};

// A scope whose metrics are the members of Block, with one cache-line aligned Block per worker.
template <class Block>
class block_scope final : public scope {
 public:
  block_scope(std::string family, std::string label, std::string subsystem, std::size_t workers)
      : scope(std::move(family), std::move(label), std::move(subsystem)), blocks_(workers) {}

  // The block a worker updates. `worker` < the worker count given to the registry.
  Block& worker(std::size_t worker) noexcept { return blocks_[worker]; }
  const Block& worker(std::size_t worker) const noexcept { return blocks_[worker]; }
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

  void for_each_histogram(const std::function<void(const histogram_sample&)>& fn) const override {
    if constexpr (requires(const Block& b) { b.visit_histograms([](std::string_view, std::string_view, const histogram&) {}); }) {
      std::vector<histogram_sample> totals;
      blocks_[0].visit_histograms([&](std::string_view name, std::string_view help, const histogram&) {
        histogram_sample s;
        s.name = name;
        s.help = help;
        totals.push_back(s);
      });
      for (const Block& b : blocks_) {
        std::size_t i = 0;
        b.visit_histograms([&](std::string_view, std::string_view, const histogram& h) {
          for (std::size_t k = 0; k <= histogram_bucket_count; ++k) totals[i].counts[k] += h.count_at(k);
          totals[i].sum += h.sum();
          ++i;
        });
      }
      for (const histogram_sample& s : totals) fn(s);
    }
  }

 private:
  std::vector<Block> blocks_;
};

// A scope whose values are computed when it is read, by the module that owns them (e.g. the
// load balancers' membership and outlier statistics, which lb/ keeps itself), instead of being
// counted in per-worker blocks. Produced afresh by a registry source on every read.
class computed_scope final : public scope {
 public:
  computed_scope(std::string family, std::string label, std::string subsystem = "")
      : scope(std::move(family), std::move(label), std::move(subsystem)) {}
  // `name` and `help` are viewed, not copied: string literals or strings that outlive the read.
  void add(std::string_view name, std::string_view help, metric_kind kind, std::int64_t value) {
    samples_.push_back(sample{name, help, kind, value});
  }
  void set_prometheus_labels(std::vector<std::pair<std::string, std::string>> labels) {
    labels_ = std::move(labels);
    has_labels_ = true;
  }
  bool empty() const { return samples_.empty(); }
  void for_each_total(const std::function<void(const sample&)>& fn) const override {
    for (const sample& s : samples_) fn(s);
  }
  const std::vector<std::pair<std::string, std::string>>* prometheus_labels() const override {
    return has_labels_ ? &labels_ : nullptr;
  }

 private:
  std::vector<sample> samples_;
  std::vector<std::pair<std::string, std::string>> labels_;
  bool has_labels_ = false;
};

// Every metric's full dotted name and total, in name order, as read once (/stats, tests).
// The names sit in one buffer and the entries in one array: at 10,000 clusters a read sees
// ~60,000 metrics, and a map of strings made 120,000 small allocations per read that the
// admin thread's malloc arena kept afterwards (~5 MB, bench/xds/gateway_memory.sh).
class totals_table {
 public:
  struct entry {
    std::string_view name;
    std::int64_t value;
  };
  std::size_t size() const { return entries_.size(); }
  auto begin() const { return entries_.begin(); }
  auto end() const { return entries_.end(); }
  // The total of one metric by its full name, or nullptr when there is none.
  const entry* find(std::string_view name) const;
  std::size_t count(std::string_view name) const { return find(name) != nullptr ? 1 : 0; }

  totals_table() = default;
  // The entries view names_: a copy would view the source's buffer. A move keeps the buffer where
  // it is (a vector's heap array, never a string's inline bytes).
  totals_table(const totals_table&) = delete;
  totals_table& operator=(const totals_table&) = delete;
  totals_table(totals_table&&) noexcept = default;
  totals_table& operator=(totals_table&&) noexcept = default;

 private:
  friend class registry;
  std::vector<char> names_;
  std::vector<entry> entries_;
};

// Owns every scope so that counters outlive configuration updates: a listener or cluster that
// is replaced by an identical one keeps counting where it left off. Lookups happen when a
// configuration snapshot is built, never per connection.
class registry {
 public:
  explicit registry(std::size_t workers) : workers_(workers == 0 ? 1 : workers) {}

  std::size_t workers() const { return workers_; }

  // The scope for (family, label, subsystem) holding Block metrics, created on first use.
  // `blocks`: how many per-worker blocks a new scope gets; 0 means one per worker. Metrics that
  // a single thread writes (the xDS client's) need one: a per-EDS-cluster scope with a cache
  // line per worker is most of what such a scope costs at 10,000 clusters.
  template <class Block>
  std::shared_ptr<block_scope<Block>> get(const std::string& family, const std::string& label,
                                          const std::string& subsystem = "", std::size_t blocks = 0) {
    std::lock_guard lock(mu_);
    auto it = scopes_.find(key{family, label, subsystem, std::type_index(typeid(Block))});
    if (it != scopes_.end()) return std::static_pointer_cast<block_scope<Block>>(it->second);
    auto s = std::make_shared<block_scope<Block>>(family, label, subsystem, blocks == 0 ? workers_ : blocks);
    // The key views the scope's own names (tens of thousands of scopes with long labels).
    scopes_.emplace(key{s->family(), s->label(), s->subsystem(), std::type_index(typeid(Block))}, s);
    return s;
  }

  // Calls fn for every scope: the stored ones in name order, then those the sources produce.
  void for_each_scope(const std::function<void(const scope&)>& fn) const;

  // A source of computed scopes, called on every read (scrape, /stats) from the reading thread;
  // it calls `emit` once per scope. Register sources before the registry is read; a source must
  // not outlive what it reads (the gateway registers one over its own routing snapshots).
  using scope_emitter = std::function<void(const scope&)>;
  using scope_source = std::function<void(const scope_emitter& emit)>;
  void add_source(scope_source source);

  // Every metric as "prefix+name" -> total, in name order (Envoy's /stats text form).
  class totals_table totals() const;

  // Total of one metric by its full dotted name, or -1 when absent (tests, admin).
  std::int64_t value(std::string_view full_name) const;

 private:
  struct key {
    std::string_view family;
    std::string_view label;
    std::string_view subsystem;
    std::type_index type;
    bool operator<(const key& o) const {
      if (family != o.family) return family < o.family;
      if (label != o.label) return label < o.label;
      if (subsystem != o.subsystem) return subsystem < o.subsystem;
      return type < o.type;
    }
  };
  std::size_t workers_;
  mutable std::mutex mu_;
  std::map<key, std::shared_ptr<scope>> scopes_;
  std::vector<scope_source> sources_;
};

// A scope created on first use. A gateway knows thousands of clusters (istiod sends one per
// service port, twice over) and most never carry a connection; their metrics would cost memory
// per worker and series per scrape for nothing. The first worker to touch the scope creates it
// through the registry (a lock, once); afterwards it is one atomic load.
//
// lazy_scope_slot is the pointer alone, for owners that already keep the registry and the name
// (a cluster's or chain's runtime, at tens of thousands per snapshot); lazy_scope keeps them.
template <class Block>
class lazy_scope_slot {
 public:
  Block& worker(registry& r, std::string_view family, std::string_view label, std::size_t w) {
    block_scope<Block>* s = scope_.load(std::memory_order_acquire);
    if (s == nullptr) {
      // The registry returns the same scope for the same name, so racing workers agree; it
      // also keeps the scope alive, so a raw pointer is enough here.
      s = r.get<Block>(std::string(family), std::string(label)).get();
      scope_.store(s, std::memory_order_release);
    }
    return s->worker(w);
  }
  // The scope once created, else null (readers: scrape).
  const block_scope<Block>* get() const { return scope_.load(std::memory_order_acquire); }
  // Takes over `previous`'s scope if it was created: a new version of the same cluster (an
  // EDS or CDS update) keeps counting in the same scope and still counts as having carried
  // traffic, without a registry lookup on its first connection. Same registry and name.
  void carry_over(const lazy_scope_slot& previous) {
    if (block_scope<Block>* s = previous.scope_.load(std::memory_order_acquire)) scope_.store(s, std::memory_order_release);
  }

 private:
  std::atomic<block_scope<Block>*> scope_{nullptr};
};

template <class Block>
class lazy_scope {
 public:
  lazy_scope(registry& r, std::string family, std::string label)
      : registry_(&r), family_(std::move(family)), label_(std::move(label)) {}

  Block& worker(std::size_t w) { return slot_.worker(*registry_, family_, label_, w); }
  bool created() const { return slot_.get() != nullptr; }
  const block_scope<Block>* get() const { return slot_.get(); }
  void carry_over(const lazy_scope& previous) { slot_.carry_over(previous.slot_); }

 private:
  registry* registry_;
  std::string family_;
  std::string label_;
  lazy_scope_slot<Block> slot_;
};

}  // namespace ewgw::stats
