#include "lb/load_balancer.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <cstdlib>
#include <cstring>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <unordered_set>

#include "lb/edf_scheduler.h"
#include "lb/outlier_detector.h"
#include "lb/trailing_allocator.h"

namespace ewgw::lb {

namespace {

using detail::host_ref;
using detail::worker_state;

// One list of candidate hosts (Envoy's HostsSource): a priority's all / healthy / degraded
// hosts, or one locality's healthy / degraded hosts.
struct source {
  std::uint32_t begin = 0;  // into health_view::refs
  std::uint32_t size = 0;
  std::int32_t edf = -1;  // index of this source's schedule in worker_state::edf; -1 = unweighted
};

// A priority's part of a health view: its counts and loads, and its sources.
struct priority_picker {
  priority_counts counts;
  // Percentages (0..100), a byte each: every cluster's view holds one of these per priority.
  std::uint8_t availability = 0, degraded_availability = 0;  // explain
  std::uint8_t healthy_load = 0, degraded_load = 0;
  bool panic = false;
  // Explicit: views are shared by their bytes (interned_pool), so no byte may be indeterminate.
  std::uint8_t unused[3] = {};
  std::uint32_t all_source = 0, healthy_source = 0, degraded_source = 0;
  // Locality i's healthy hosts are source locality_sources + 2 * i, its degraded ones + 1.
  std::uint32_t locality_sources = 0;
  // Schedules over the localities' effective weights (their initial weights are those
  // weights); -1 when not locality weighted, no locality has a weight, or there is one locality.
  std::int32_t healthy_locality_edf = -1, degraded_locality_edf = -1;
};

// A listing's config attributes (the host is per cluster: load_balancer::members_).
struct member_info {
  std::uint32_t weight = 1;
  host_health health = host_health::healthy;
  std::uint8_t unused[3] = {};
};

// One EDF schedule's initial weights: [begin, begin + size) of health_view::weights.
struct schedule_ref {
  std::uint32_t begin = 0, size = 0;
};

}  // namespace

// One worker's picking state for one view. Only that worker touches it.
struct alignas(64) detail::worker_state {
  std::vector<std::uint64_t> rr;  // rotation index per source
  std::vector<edf_scheduler> edf;
};

namespace {

// A health view while make_view() computes it; packed into one allocation when done.
struct view_parts {
  std::vector<priority_picker> priorities;
  std::vector<priority_counts> locality_counts;  // per locality_layout
  std::vector<source> sources;
  std::vector<host_ref> refs;
  std::vector<schedule_ref> schedules;
  std::vector<double> weights;
  std::uint32_t normalized_total_availability = 0;
  bool total_panic = false;
};

std::size_t align_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

bool weights_equal(const host_ref* refs, std::uint32_t n) {
  for (std::uint32_t i = 1; i < n; ++i) {
    if (refs[i].weight != refs[0].weight) return false;
  }
  return true;
}

// Immutable blocks shared by content: every balancer whose layout (or health view loads and
// sources) has the same bytes holds one reference to one copy. At 10,000 istiod clusters nearly
// all have the same shape (one locality, a few equal hosts), so this turns ~200 bytes per
// cluster into a pointer or two. Used only off the data path (build, outlier passes, the last
// release of a balancer or view), under one mutex.
class interned_pool {
 public:
  static interned_pool& instance() {
    static interned_pool* pool = new interned_pool();  // never destroyed: balancers may outlive statics
    return *pool;
  }
  // The shared copy of `bytes` (aligned for any fundamental type), one more reference to it.
  // The bytes are hashed before the lock is taken, and an entry keeps its hash, so a worker that
  // drops the last reference to an old balancer never waits behind hashing a large view.
  const char* acquire(std::string_view bytes) {
    const probe key{bytes, std::hash<std::string_view>()(bytes)};
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = entries_.find(key);
    if (it != entries_.end()) {
      ++(*it)->refs;
      return (*it)->bytes();
    }
    char* raw = static_cast<char*>(::operator new(sizeof(entry) + bytes.size()));
    auto* e = new (raw) entry{1, static_cast<std::uint32_t>(bytes.size()), key.hash};
    std::memcpy(raw + sizeof(entry), bytes.data(), bytes.size());
    entries_.insert(e);
    return e->bytes();
  }
  void release(const char* bytes) {
    auto* e = const_cast<entry*>(reinterpret_cast<const entry*>(bytes) - 1);
    std::lock_guard<std::mutex> lock(mutex_);
    if (--e->refs != 0) return;
    entries_.erase(e);
    e->~entry();
    ::operator delete(static_cast<void*>(e));
  }
  std::size_t size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return entries_.size();
  }

 private:
  struct alignas(__STDCPP_DEFAULT_NEW_ALIGNMENT__) entry {
    std::uint32_t refs;  // under mutex_
    std::uint32_t size;
    std::size_t hash;  // of the bytes (fits in the alignment padding: no extra memory)
    const char* bytes() const { return reinterpret_cast<const char*>(this + 1); }
    std::string_view view() const { return {bytes(), size}; }
  };
  struct probe {
    std::string_view bytes;
    std::size_t hash;
  };
  struct hash {
    using is_transparent = void;
    std::size_t operator()(const probe& p) const { return p.hash; }
    std::size_t operator()(const entry* e) const { return e->hash; }
  };
  struct equal {
    using is_transparent = void;
    bool operator()(const entry* a, const entry* b) const { return a == b || a->view() == b->view(); }
    bool operator()(const probe& p, const entry* e) const { return p.hash == e->hash && p.bytes == e->view(); }
    bool operator()(const entry* e, const probe& p) const { return (*this)(p, e); }
  };
  std::mutex mutex_;
  std::unordered_set<entry*, hash, equal> entries_;
};

// Writes trivially copyable arrays one after the other into a zeroed byte string (the key an
// interned block is found by; zeroed so alignment gaps compare equal).
class byte_writer {
 public:
  // One writer at a time per thread: they share the thread's buffer, so building a balancer
  // does not allocate for its keys.
  explicit byte_writer(std::size_t header) : bytes_(buffer()) {
    bytes_.clear();
    bytes_.resize(header, '\0');
  }
  template <class T>
  std::uint32_t add(std::span<const T> items) {
    static_assert((std::is_trivially_copyable_v<T> && std::has_unique_object_representations_v<T>) ||
                  std::is_floating_point_v<T>);
    bytes_.resize(align_up(bytes_.size(), alignof(T)), '\0');
    const auto at = static_cast<std::uint32_t>(bytes_.size());
    bytes_.append(reinterpret_cast<const char*>(items.data()), items.size_bytes());
    return at;
  }
  // n items of T, item i being make(i).
  template <class T, class F>
  std::uint32_t add_each(std::size_t n, F make) {
    static_assert(std::has_unique_object_representations_v<T>);
    bytes_.resize(align_up(bytes_.size(), alignof(T)), '\0');
    const auto at = static_cast<std::uint32_t>(bytes_.size());
    for (std::size_t i = 0; i < n; ++i) {
      const T item = make(i);
      bytes_.append(reinterpret_cast<const char*>(&item), sizeof(T));
    }
    return at;
  }
  // `h` must have no padding (its bytes are the key).
  template <class T>
  void header(const T& h) {
    std::memcpy(bytes_.data(), &h, sizeof(T));
  }
  std::string_view bytes() const { return bytes_; }

 private:
  static std::string& buffer() {
    thread_local std::string b;
    return b;
  }
  std::string& bytes_;
};

}  // namespace

struct load_balancer::shared_state {
  shared_state() = default;
  ~shared_state() { delete outlier.load(std::memory_order_relaxed); }
  shared_state(const shared_state&) = delete;
  shared_state& operator=(const shared_state&) = delete;

  // What only clusters with outlier detection need: the outlier_detection.* counters and the
  // generator of outlier passes that are given none.
  struct outlier_shared : atomic_outlier_stats {
    explicit outlier_shared(std::uint64_t seed) : cold_random(fast_random::mix(seed ^ 0x636f6c64)) {}
    fast_random cold_random;
  };
  // Made (under `cold`) by the first generation that enables outlier detection, seeded from that
  // generation's seed, and kept from then on, so the counters keep counting across generations.
  // Kept out of line: only clusters with outlier_detection pay for it. Read by stats() without
  // the mutex, hence published with release.
  outlier_shared& outlier_locked(std::uint64_t seed) {
    outlier_shared* s = outlier.load(std::memory_order_relaxed);
    if (s == nullptr) {
      s = new outlier_shared(seed);
      outlier.store(s, std::memory_order_release);
    }
    return *s;
  }

  // The cluster's cold mutex: one of a fixed set, chosen by address. A std::mutex per cluster is
  // 40 bytes times 10,000 clusters, for a lock taken only by rebuilds, outlier passes and admin
  // reads; no code holds two clusters' cold mutexes at once, so sharing one cannot deadlock.
  std::mutex& cold() const {
    static std::mutex stripes[64];
    return stripes[(reinterpret_cast<std::uintptr_t>(this) / alignof(shared_state)) % 64];
  }
  // No membership counts here: stats() sums them from the balancer's current view (its body
  // has each priority's counts), which saves 16 bytes per cluster. The proxy reads stats() of
  // the cluster's current generation, whose view is the one built or refreshed last.
  std::atomic<outlier_shared*> outlier{nullptr};
  // lb_healthy_panic. One counter for all workers: it moves only while a priority is in panic,
  // which is rare, and per-worker padded counters cost a cache line per worker per cluster.
  std::atomic<std::uint64_t> panic{0};
};

// Hosts that are new in one generation of a cluster (every host of its first generation), and
// in the first generation's block the cluster's shared state as well: one allocation instead of
// one per host plus one for the state. Every generation listing one of the block's hosts holds a
// reference, so a host lives as long as some generation lists it (connections counted on it
// keep working across updates) and the shared state as long as the cluster. A block whose hosts
// were all replaced but one stays whole until that one goes: at most one block per generation
// that added hosts, each no larger than that generation's new hosts. The first generation's block
// also lives as long as the cluster, for its shared state, so after every first host is replaced
// (a rolling restart) those dead hosts still take their 48 bytes each: a bounded cost, accepted
// to save the shared state's own allocation on every cluster (a separate block would cost more
// on the common cluster that never churns).
struct load_balancer::host_block {
  std::atomic<std::uint32_t> refs{0};
  std::uint32_t count : 31 = 0;
  std::uint32_t with_shared : 1 = 0;  // the shared state follows the hosts

  host* hosts() { return std::launder(reinterpret_cast<host*>(this + 1)); }
  bool holds(const host* h) { return count > 0 && h >= hosts() && h < hosts() + count; }
  shared_state* shared() {
    return with_shared ? std::launder(reinterpret_cast<shared_state*>(reinterpret_cast<char*>(this) + shared_at(count)))
                       : nullptr;
  }

  static std::size_t shared_at(std::size_t hosts) {
    return align_up(sizeof(host_block) + sizeof(host) * hosts, alignof(shared_state));
  }
  static host_block* make(std::span<const endpoint_address> addresses, bool with_shared) {
    static_assert(sizeof(host_block) % alignof(host) == 0 && alignof(host) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__ &&
                  alignof(shared_state) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
    const std::size_t size =
        with_shared ? shared_at(addresses.size()) + sizeof(shared_state) : sizeof(host_block) + sizeof(host) * addresses.size();
    char* base = static_cast<char*>(::operator new(size));
    auto* b = new (base) host_block();
    for (const endpoint_address& a : addresses) new (base + sizeof(host_block) + sizeof(host) * b->count++) host(a);
    if (with_shared) {
      new (base + shared_at(addresses.size())) shared_state();
      b->with_shared = 1;
    }
    return b;
  }
  void acquire() { refs.fetch_add(1, std::memory_order_relaxed); }
  void release() {
    if (refs.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
    if (shared_state* s = shared()) s->~shared_state();
    for (std::uint32_t i = 0; i < count; ++i) hosts()[i].~host();
    this->~host_block();
    ::operator delete(static_cast<void*>(this));
  }
};

struct alignas(64) load_balancer::worker_slot {
  worker_slot() = default;
  worker_slot(const worker_slot&) = delete;
  worker_slot& operator=(const worker_slot&) = delete;
  ~worker_slot() { delete first_view_state.load(std::memory_order_relaxed); }

  std::atomic<const health_view*> hazard{nullptr};
  fast_random random;
  // This worker's picking state for the view build() made (views made later hold their workers'
  // states themselves). Here because the slot has room for it in its cache line, and a view in
  // the balancer's block then needs no per-worker entries: most clusters never get another view.
  std::atomic<worker_state*> first_view_state{nullptr};
};

struct load_balancer::outlier_part {
  outlier_detection_config config;
  std::vector<host*> hosts;  // hosts(), for the outlier detector
  // Views replaced while a worker may still read them (under shared().cold). Only outlier
  // detection replaces a balancer's view, so clusters without it keep no list.
  std::vector<health_view*> retired;
  std::uint64_t next_generation = 2;  // build() publishes generation 1
  // The view picks use. Only outlier detection replaces a balancer's view, so only a balancer
  // with it keeps this pointer (and its picks announce the view they read: hazard pointers).
  std::atomic<health_view*> view{nullptr};
};

namespace {
// What configure() is given when the cluster has no outlier detection, and what explain() reads
// times from then.
const outlier_detection_config no_outlier_detection{};
}  // namespace

// An interned block (interned_pool): a header struct deriving from this, then its arrays at byte
// offsets from the header's start. The base is empty, so it sits at the header's address.
struct interned_block {
  void release() const { interned_pool::instance().release(reinterpret_cast<const char*>(this)); }

 protected:
  template <class T>
  const T* array(std::uint32_t at) const {
    return std::launder(reinterpret_cast<const T*>(reinterpret_cast<const char*>(this) + at));
  }
};

// The part of a health view without per-cluster pointers: counts, loads, sources and the
// initial weights of its EDF schedules, as one interned block (interned_pool) that every view
// with the same bytes shares: the header below, then its arrays at these byte offsets.
struct view_body : interned_block {
  std::uint32_t normalized_total_availability = 0;
  std::uint32_t total_panic = 0;
  std::uint32_t priority_count = 0, locality_count = 0, source_count = 0, schedule_count = 0;
  std::uint32_t at_priorities = 0, at_localities = 0, at_sources = 0, at_schedules = 0, at_weights = 0;
  std::uint32_t ref_count = 0, at_ref_weights = 0;
  std::uint32_t unused = 0;

  // The weight of each of the view's host references (health_view::refs).
  const std::uint32_t* ref_weights() const { return array<std::uint32_t>(at_ref_weights); }
  // First after the header, at a fixed offset: a pick reads them without reading at_priorities.
  const priority_picker* priorities() const { return array<priority_picker>(sizeof(view_body)); }
  const priority_counts* locality_counts() const { return array<priority_counts>(at_localities); }
  const source* sources() const { return array<source>(at_sources); }
  // Initial weights of each EDF schedule (source::edf, priority_picker::*_locality_edf); each
  // worker's state starts from them.
  const schedule_ref* schedules() const { return array<schedule_ref>(at_schedules); }
  const double* weights() const { return array<double>(at_weights); }

  static const view_body* intern(const view_parts& parts) {
    byte_writer out(sizeof(view_body));
    view_body h;
    h.normalized_total_availability = parts.normalized_total_availability;
    h.total_panic = parts.total_panic ? 1 : 0;
    h.priority_count = static_cast<std::uint32_t>(parts.priorities.size());
    h.locality_count = static_cast<std::uint32_t>(parts.locality_counts.size());
    h.source_count = static_cast<std::uint32_t>(parts.sources.size());
    h.schedule_count = static_cast<std::uint32_t>(parts.schedules.size());
    h.at_priorities = out.add(std::span(parts.priorities));
    static_assert(sizeof(view_body) % alignof(priority_picker) == 0);  // so at_priorities is sizeof(view_body)
    h.at_localities = out.add(std::span(parts.locality_counts));
    h.at_sources = out.add(std::span(parts.sources));
    h.at_schedules = out.add(std::span(parts.schedules));
    h.at_weights = out.add(std::span(parts.weights));
    h.ref_count = static_cast<std::uint32_t>(parts.refs.size());
    h.at_ref_weights = out.add_each<std::uint32_t>(parts.refs.size(), [&parts](std::size_t i) { return parts.refs[i].weight; });
    out.header(h);
    static_assert(std::is_standard_layout_v<view_body>);
    return reinterpret_cast<const view_body*>(interned_pool::instance().acquire(out.bytes()));
  }
};

// Everything a pick reads that depends on the ejected set: the interned body, then (right after
// this header, found without a pointer) the view's host references, their weights being
// body->ref_weights(). The view build() makes is at the start of the balancer's tail, and its
// references are usually the balancer's members themselves. A view made later (make_view) is
// one allocation: an owned_view_header, one picking-state entry per worker, then the view.
struct load_balancer::health_view {
  const view_body* body = nullptr;  // interned; one reference

  host* const* refs() const { return std::launder(reinterpret_cast<host* const*>(this + 1)); }
  host** refs() { return std::launder(reinterpret_cast<host**>(this + 1)); }

  health_view() = default;
  health_view(const health_view&) = delete;
  health_view& operator=(const health_view&) = delete;
};

namespace {

// What precedes a view made after build, with the workers' picking-state entries (one per
// worker, made on the worker's first pick of the view; each worker mutates its own entry only)
// between it and the view. The first view's generation is 1 and its workers' states are in
// their slots (worker_slot::first_view_state).
struct owned_view_header {
  std::uint64_t generation = 0;
};
static_assert(sizeof(owned_view_header) % alignof(std::atomic<worker_state*>) == 0 &&
              sizeof(std::atomic<worker_state*>) == sizeof(void*));

// Worker w's picking state in `entry`, made on its first use. seq_cst: the hazard-pointer
// argument in reclaim_locked() needs the entry's publication in the same total order as the
// hazard. With a seed, each worker starts its rotations and (up to 255 picks into) its
// schedules at its own point, so workers do not all send their first picks to one host.
// `seed` is the balancer's (build_options::seed).
[[gnu::noinline]] worker_state& make_worker_state(std::atomic<worker_state*>& entry, const view_body& b,
                                                  std::size_t w, std::uint64_t seed);
inline worker_state& worker_state_in(std::atomic<worker_state*>& entry, const view_body& b, std::size_t w,
                                     std::uint64_t seed) {
  worker_state* e = entry.load(std::memory_order_seq_cst);
  if (e != nullptr) return *e;
  return make_worker_state(entry, b, w, seed);  // the worker's first pick of the view
}
worker_state& make_worker_state(std::atomic<worker_state*>& entry, const view_body& b, std::size_t w,
                                std::uint64_t seed) {
  worker_state* e = nullptr;
  const std::uint64_t start = seed == 0 ? 0 : fast_random::mix(seed ^ (0xa0761d6478bd642full * (w + 1)));
  auto ws = std::make_unique<worker_state>();
  ws->rr.assign(b.source_count, start);
  ws->edf.resize(b.schedule_count);
  for (std::size_t k = 0; k < b.schedule_count; ++k) {
    ws->edf[k].reset(std::span<const double>(b.weights() + b.schedules()[k].begin, b.schedules()[k].size),
                     start & 0xff);
  }
  e = ws.release();
  entry.store(e, std::memory_order_seq_cst);
  return *e;
}

}  // namespace

namespace {

// Places arrays one after the other in a block being sized.
class block_layout {
 public:
  template <class T>
  std::size_t add(std::size_t n) {
    size_ = align_up(size_, alignof(T));
    const std::size_t at = size_;
    size_ += sizeof(T) * n;
    return at;
  }
  std::size_t size() const { return size_; }

 private:
  std::size_t size_ = 0;
};

template <class T>
std::span<T> place_copy(char* base, std::size_t at, const std::vector<T>& from) {
  T* to = reinterpret_cast<T*>(base + at);
  std::uninitialized_copy(from.begin(), from.end(), to);
  return {to, from.size()};
}

}  // namespace

// What every cluster of one shape has in common, interned (interned_pool): the settings only the
// cold half reads, the priority and locality layout and the locality names. The header below,
// then its arrays at these byte offsets.
struct load_balancer::layout : interned_block {
  double active_request_bias = 1.0;
  std::uint32_t overprovisioning_factor = 140, panic_threshold = 50;
  std::uint32_t priority_count = 0, locality_count = 0, name_bytes = 0, member_count = 0;
  std::uint32_t at_priorities = 0, at_localities = 0, at_names = 0, at_members = 0;

  // Each listing's weight and EDS health (load_balancer::members_ order).
  std::span<const member_info> members() const { return {array<member_info>(at_members), member_count}; }
  std::span<const priority_layout> priorities() const { return {array<priority_layout>(at_priorities), priority_count}; }
  std::span<const locality_layout> localities() const { return {array<locality_layout>(at_localities), locality_count}; }
  // Every locality's name, one after the other; only explain() reads them.
  std::string_view names() const { return {array<char>(at_names), name_bytes}; }

  static const layout* intern(const cluster_config& config, const std::vector<member>& members,
                              const std::vector<priority_layout>& priorities,
                              const std::vector<locality_layout>& localities, const std::string& names) {
    static_assert(sizeof(layout) == 8 + 4 * 10, "no padding: the bytes are the key");
    byte_writer out(sizeof(layout));
    layout h;
    h.active_request_bias = config.active_request_bias;
    h.overprovisioning_factor = config.overprovisioning_factor;
    h.panic_threshold = config.healthy_panic_threshold;
    h.priority_count = static_cast<std::uint32_t>(priorities.size());
    h.locality_count = static_cast<std::uint32_t>(localities.size());
    h.name_bytes = static_cast<std::uint32_t>(names.size());
    h.at_priorities = out.add(std::span(priorities));
    h.at_localities = out.add(std::span(localities));
    h.at_names = out.add(std::span<const char>(names.data(), names.size()));
    h.member_count = static_cast<std::uint32_t>(members.size());
    h.at_members = out.add_each<member_info>(members.size(), [&members](std::size_t i) {
      return member_info{members[i].weight, members[i].health};
    });
    out.header(h);
    static_assert(std::is_standard_layout_v<layout>);
    return reinterpret_cast<const layout*>(interned_pool::instance().acquire(out.bytes()));
  }
};

std::size_t load_balancer::shared_structure_count() { return interned_pool::instance().size(); }

struct load_balancer::topology {
  std::span<const member> members;
  std::span<const locality_layout> localities;
  std::span<const priority_layout> priorities;
  std::uint32_t overprovisioning_factor = 140;
  std::uint32_t panic_threshold = 50;
  bool locality_weighted = false;
  lb_policy policy = lb_policy::round_robin;
  double active_request_bias = 1.0;

  view_parts view() const;
};

// `members`: scratch the topology's members are put in.
load_balancer::topology load_balancer::shape(std::vector<member>& members) const {
  const std::span<const member_info> infos = layout_->members();
  members.resize(infos.size());
  for (std::size_t i = 0; i < infos.size(); ++i) members[i] = {this->members()[i], infos[i].weight, infos[i].health};
  return {members,
          layout_->localities(),
          layout_->priorities(),
          layout_->overprovisioning_factor,
          layout_->panic_threshold,
          locality_weighted(),
          policy_,
          layout_->active_request_bias};
}

std::shared_ptr<load_balancer> load_balancer::build(const cluster_config& config, const build_options& options,
                                                    const load_balancer* previous) {
  // First the structure in temporary arrays (hosts resolved: taken over from `previous` by
  // address, or new), then one block sized for all of it and the initial view.
  std::unordered_map<endpoint_address, host*, endpoint_address_hash> known;  // previous->hosts() by address
  std::size_t listings = 0, locality_count = 0, name_bytes = 0;
  for (const priority_config& p : config.priorities) {
    locality_count += p.localities.size();
    for (const locality_config& loc : p.localities) {
      listings += loc.hosts.size();
      name_bytes += loc.name.size();
    }
  }
  // Small clusters (most of them: istiod's have a few endpoints) are searched linearly: hashing
  // would cost more than it saves, and the maps' buckets are allocations.
  constexpr std::size_t linear_search_limit = 16;
  const bool small = listings <= linear_search_limit &&
                     (previous == nullptr || previous->hosts().size() <= linear_search_limit);
  if (previous != nullptr && !small) {
    known.reserve(previous->hosts().size());
    for (host* h : previous->hosts()) known.emplace(h->address(), h);
  }
  const auto find_known = [&](const endpoint_address& a) -> host* {
    if (previous == nullptr) return nullptr;
    if (small) {
      for (host* h : previous->hosts()) {
        if (h->address() == a) return h;
      }
      return nullptr;
    }
    auto k = known.find(a);
    return k == known.end() ? nullptr : k->second;
  };
  // Unique hosts in config order: a previous generation's, or the index of a new one.
  struct unique_host {
    host* taken = nullptr;
    std::uint32_t fresh = 0;
  };
  std::vector<unique_host> unique;
  std::vector<endpoint_address> fresh;
  std::vector<std::uint32_t> member_host;  // index in `unique` per member
  std::unordered_map<endpoint_address, std::uint32_t, endpoint_address_hash> listed;
  std::vector<endpoint_address> unique_addresses;  // when small: `listed` searched linearly
  if (small) {
    unique_addresses.reserve(listings);
  } else {
    listed.reserve(listings);
  }
  // Index in `unique` of the host at `a`, adding it when new.
  const auto list = [&](const endpoint_address& a) -> std::pair<std::uint32_t, bool> {
    const auto next = static_cast<std::uint32_t>(small ? unique_addresses.size() : listed.size());
    if (small) {
      for (std::uint32_t i = 0; i < unique_addresses.size(); ++i) {
        if (unique_addresses[i] == a) return {i, false};
      }
      unique_addresses.push_back(a);
      return {next, true};
    }
    auto [it, added] = listed.try_emplace(a, next);
    return {it->second, added};
  };
  unique.reserve(listings);
  member_host.reserve(listings);
  std::vector<member> members;
  std::vector<locality_layout> localities;
  std::vector<priority_layout> priorities;
  std::string names;
  members.reserve(listings);
  localities.reserve(locality_count);
  priorities.reserve(config.priorities.size());
  names.reserve(name_bytes);
  for (const priority_config& p : config.priorities) {
    priority_layout pl{};
    pl.begin = static_cast<std::uint32_t>(members.size());
    pl.locality_begin = static_cast<std::uint32_t>(localities.size());
    for (const locality_config& loc : p.localities) {
      locality_layout ll{static_cast<std::uint32_t>(names.size()), static_cast<std::uint32_t>(loc.name.size()), loc.weight,
                         static_cast<std::uint32_t>(members.size()), 0};
      names += loc.name;
      for (const host_config& hc : loc.hosts) {
        const auto [index, added] = list(hc.address);
        if (added) {
          unique_host u;
          if (host* k = find_known(hc.address)) {
            u.taken = k;
          } else {
            u.fresh = static_cast<std::uint32_t>(fresh.size());
            fresh.push_back(hc.address);
          }
          unique.push_back(u);
        }
        member_host.push_back(index);
        members.push_back({nullptr, std::max<std::uint32_t>(1, hc.weight), hc.health});
      }
      ll.end = static_cast<std::uint32_t>(members.size());
      localities.push_back(ll);
    }
    pl.end = static_cast<std::uint32_t>(members.size());
    pl.locality_end = static_cast<std::uint32_t>(localities.size());
    priorities.push_back(pl);
  }

  // The blocks this generation holds: the one with the shared state, those of hosts taken over,
  // and one for its new hosts (with the shared state when the cluster is new).
  std::vector<host_block*> blocks;
  const auto hold = [&blocks](host_block* b) {
    if (std::find(blocks.begin(), blocks.end(), b) == blocks.end()) blocks.push_back(b);
  };
  shared_state* shared = nullptr;
  host_block* fresh_block = nullptr;
  if (previous == nullptr || !fresh.empty()) {
    fresh_block = host_block::make(fresh, previous == nullptr);
    hold(fresh_block);
  }
  if (previous != nullptr) {
    shared = &previous->shared();
    for (host_block* b : previous->blocks()) {
      if (b->shared() == shared) hold(b);
    }
  } else {
    shared = fresh_block->shared();
  }
  std::vector<host*> hosts;
  hosts.reserve(unique.size());
  for (const unique_host& u : unique) {
    if (u.taken == nullptr) {
      hosts.push_back(fresh_block->hosts() + u.fresh);
      continue;
    }
    hosts.push_back(u.taken);
    for (host_block* b : previous->blocks()) {
      if (b->holds(u.taken)) hold(b);
    }
  }
  for (std::size_t i = 0; i < members.size(); ++i) members[i].target = hosts[member_host[i]];

  std::lock_guard<std::mutex> lock(shared->cold());
  std::unique_ptr<outlier_part> outlier;
  if (config.outlier_detection.enabled) {
    outlier = std::make_unique<outlier_part>();
    outlier->config = config.outlier_detection;
    outlier->hosts = hosts;
  }
  std::uint64_t ejected = 0;
  for (host* h : hosts) {
    outlier_detector::configure(*h, outlier ? outlier->config : no_outlier_detection);
    ejected += h->ejected() ? 1 : 0;
  }
  // Without outlier detection nothing is ejected (configure() un-ejects), and a cluster that
  // never had it has no counters to set.
  if (outlier) {
    shared->outlier_locked(options.seed).ejections_active.store(ejected, std::memory_order_relaxed);
  } else if (atomic_outlier_stats* s = shared->outlier.load(std::memory_order_relaxed)) {
    s->ejections_active.store(ejected, std::memory_order_relaxed);
  }

  const topology shape{members,
                       localities,
                       priorities,
                       config.overprovisioning_factor,
                       config.healthy_panic_threshold,
                       config.locality_weighted,
                       config.policy,
                       config.active_request_bias};
  const view_parts parts = shape.view();
  // The common view lists every member once, in order: it then reads the members themselves.
  const bool refs_are_members =
      parts.refs.size() == members.size() &&
      std::equal(parts.refs.begin(), parts.refs.end(), members.begin(),
                 [](const host_ref& a, const member& b) { return a.target == b.target && a.weight == b.weight; });
  // Worker indexes fit 16 bits (a gateway runs a few workers).
  const std::size_t workers = std::clamp<std::size_t>(options.workers, 1, UINT16_MAX);

  // The common cluster lists each host once, in config order: hosts() is then members().
  const bool hosts_are_members =
      hosts.size() == members.size() &&
      std::equal(hosts.begin(), hosts.end(), members.begin(), [](const host* h, const member& m) { return h == m.target; });
  // The tail after the object (load_balancer.h): the first view and its references (the
  // members when they are the same), the members, then what only some clusters need.
  block_layout tail;
  const std::size_t at_outlier = tail.add<outlier_part*>(outlier ? 1 : 0);
  const std::size_t at_view = tail.add<health_view>(1);
  const std::size_t at_refs = tail.add<host*>(refs_are_members ? members.size() : parts.refs.size());
  const std::size_t at_members = refs_are_members ? at_refs : tail.add<host*>(members.size());
  const std::size_t at_hosts = tail.add<host*>(hosts_are_members ? 0 : 1 + hosts.size());
  const std::size_t at_blocks = tail.add<host_block*>(blocks.size() == 1 ? 0 : 1 + blocks.size());
  static_assert(sizeof(std::uintptr_t) == sizeof(host*) && sizeof(std::uintptr_t) == sizeof(host_block*));
  static_assert(sizeof(load_balancer) % alignof(host*) == 0 && alignof(load_balancer) == alignof(host*) &&
                alignof(health_view) == alignof(host*) && sizeof(health_view) == sizeof(host*));
  assert(at_outlier == 0 && at_view == (outlier ? sizeof(void*) : 0));
  trailing_request.extra = tail.size();
  // The tail is found at `this + 1` (tail()). The allocator's tail starts at or after the
  // object's end (the object is inside the control block, whose size it rounds up to 8), so the
  // tail's bytes from `this + 1` are inside the allocation; with libstdc++ it is exactly there.
  auto lb = std::allocate_shared<load_balancer>(trailing_allocator<load_balancer, alignof(host*)>(), private_tag{});
  char* const base = lb->tail();
  assert(base <= trailing_request.at);
  // First what the destructor needs to find and free the tail's parts (the flags, the outlier
  // part, the first view), with nothing that can throw in between.
  lb->flags_ = static_cast<std::uint8_t>((config.locality_weighted ? locality_weighted_flag : 0) |
                                         (hosts_are_members ? hosts_are_members_flag : 0) |
                                         (refs_are_members ? refs_are_members_flag : 0) |
                                         (outlier ? outlier_flag : 0) | (blocks.size() == 1 ? single_block_flag : 0));
  if (outlier) new (base + at_outlier) outlier_part*(outlier.release());
  health_view* const view = new (base + at_view) health_view();
  assert(lb->first_view() == view);
  lb->workers_ = static_cast<std::uint16_t>(workers);
  lb->seed_ = options.seed;
  lb->policy_ = config.policy;
  lb->choice_count_ = std::max<std::uint32_t>(1, config.choice_count);
  lb->layout_ = layout::intern(config, members, priorities, localities, names);
  view->body = view_body::intern(parts);
  host** const targets = reinterpret_cast<host**>(base + at_members);
  for (std::size_t i = 0; i < members.size(); ++i) targets[i] = members[i].target;
  if (!refs_are_members) {
    host** const refs = view->refs();
    assert(reinterpret_cast<char*>(refs) == base + at_refs);
    for (std::size_t i = 0; i < parts.refs.size(); ++i) refs[i] = parts.refs[i].target;
  }
  assert(lb->members() == targets);
  if (!hosts_are_members) {
    new (base + at_hosts) std::uintptr_t(hosts.size());
    place_copy(base, at_hosts + sizeof(std::uintptr_t), hosts);
    assert(lb->hosts().data() == reinterpret_cast<host**>(base + at_hosts) + 1);
  }
  if (blocks.size() == 1) {
    lb->block_ = blocks[0];
  } else {
    new (base + at_blocks) std::uintptr_t(blocks.size());
    lb->blocks_ = place_copy(base, at_blocks + sizeof(std::uintptr_t), blocks).data();
  }
  assert(lb->hosts().size() == hosts.size() && lb->blocks().size() == blocks.size());
  for (host_block* b : blocks) b->acquire();
  assert(&lb->shared() == shared);
  // Workers that picked from the previous version pick from this one too: make their state now,
  // on the cold path, so that only a worker's very first pick of a cluster allocates (an EDS
  // update of a busy cluster must not make every worker allocate on the data path).
  if (previous != nullptr) {
    if (std::atomic<worker_slot*>* before = previous->slots()) {
      for (std::size_t w = 0; w < std::min(lb->workers_, previous->workers_); ++w) {
        if (before[w].load(std::memory_order_seq_cst) != nullptr) {
          worker_slot& own = lb->slot(w);
          worker_state_in(own.first_view_state, *view->body, w, lb->seed_);
        }
      }
    }
  }
  lb->publish_locked(view);
  return lb;
}

load_balancer::load_balancer(private_tag) {}

load_balancer::~load_balancer() {
  // The first view's worker states go with the slots; its body (which members() reads to find
  // the members) last.
  outlier_part* const outlier = this->outlier();
  if (outlier != nullptr) {
    health_view* const current = outlier->view.load(std::memory_order_relaxed);
    if (current != first_view()) destroy_view(current);
    for (health_view* v : outlier->retired) {
      if (v != first_view()) destroy_view(v);
    }
  }
  if (std::atomic<worker_slot*>* slots = slots_.load(std::memory_order_relaxed)) {
    for (std::size_t w = 0; w < workers_; ++w) delete slots[w].load(std::memory_order_relaxed);
    delete[] slots;
  }
  if (const view_body* body = first_view()->body) body->release();
  delete outlier;
  for (host_block* b : blocks()) {
    if (b != nullptr) b->release();  // null: build() did not get that far
  }
  if (layout_ != nullptr) layout_->release();
}

host** load_balancer::members() const {
  host** const refs = first_view()->refs();
  return (flags_ & refs_are_members_flag) != 0 ? refs : refs + first_view()->body->ref_count;
}

host** load_balancer::after_members() const { return members() + layout_->member_count; }

const load_balancer::health_view* load_balancer::current_view() const {
  const outlier_part* const outlier = this->outlier();
  return outlier != nullptr ? outlier->view.load(std::memory_order_acquire) : first_view();
}

std::span<host* const> load_balancer::hosts() const {
  if ((flags_ & hosts_are_members_flag) != 0) return {members(), layout_->member_count};
  host** const at = after_members();
  return {at + 1, *std::launder(reinterpret_cast<const std::uintptr_t*>(at))};
}

std::span<load_balancer::host_block* const> load_balancer::blocks() const {
  if ((flags_ & single_block_flag) != 0) return {&block_, 1};
  if (blocks_ == nullptr) return {};  // build() did not get that far
  return {blocks_, *std::launder(reinterpret_cast<const std::uintptr_t*>(blocks_) - 1)};
}

load_balancer::shared_state& load_balancer::shared() const {
  // Exactly one of the blocks a generation holds has the cluster's shared state (build()).
  for (host_block* b : blocks()) {
    if (shared_state* s = b->shared()) return *s;
  }
  std::abort();
}

// Cold: everything a pick needs that depends on which hosts are ejected.
view_parts load_balancer::topology::view() const {
  view_parts v;
  // The state each member counts as: ejected hosts are unhealthy (Envoy's FAILED_OUTLIER_CHECK),
  // excluded hosts stay excluded. Read once, so the whole view sees one ejected set.
  std::vector<host_health> state(members.size());
  for (std::size_t i = 0; i < members.size(); ++i) {
    const member& m = members[i];
    state[i] = m.health != host_health::excluded && m.target->ejected() ? host_health::unhealthy : m.health;
  }
  const auto count = [&](std::uint32_t begin, std::uint32_t end) {
    priority_counts c;
    c.hosts = end - begin;
    for (std::uint32_t i = begin; i < end; ++i) {
      switch (state[i]) {
        case host_health::healthy: ++c.healthy; break;
        case host_health::degraded: ++c.degraded; break;
        case host_health::excluded: ++c.excluded; break;
        case host_health::unhealthy: break;
      }
    }
    return c;
  };
  std::vector<priority_counts> counts;
  counts.reserve(priorities.size());
  v.locality_counts.resize(localities.size());
  for (const priority_layout& pl : priorities) {
    counts.push_back(count(pl.begin, pl.end));
    for (std::uint32_t l = pl.locality_begin; l < pl.locality_end; ++l) {
      v.locality_counts[l] = count(localities[l].begin, localities[l].end);
    }
  }
  const priority_loads loads = compute_priority_loads(counts, overprovisioning_factor, panic_threshold);
  // Refs before sharing: each priority's all, healthy and degraded hosts, and with locality
  // weighting its localities' healthy and degraded hosts again (no regrowth on 10,000 hosts).
  std::size_t ref_bound = 0;
  for (const priority_counts& c : counts) ref_bound += c.hosts + (c.healthy + c.degraded) * (locality_weighted ? 2 : 1);
  v.refs.reserve(ref_bound);
  v.sources.reserve(priorities.size() * 3 + (locality_weighted ? localities.size() * 2 : 0));
  v.normalized_total_availability = loads.normalized_total_availability;
  v.total_panic = loads.total_panic;

  // Initial weights of each EDF schedule; every worker gets its own copy (health_view::worker).
  const auto add_schedule = [&v](const std::vector<double>& w) {
    v.schedules.push_back({static_cast<std::uint32_t>(v.weights.size()), static_cast<std::uint32_t>(w.size())});
    v.weights.insert(v.weights.end(), w.begin(), w.end());
    return static_cast<std::int32_t>(v.schedules.size() - 1);
  };
  // A source gets a schedule when Envoy would build one (policy not random, more than one host,
  // weights differ) and a pick can reach it with this view's loads and panic flags; a source
  // that cannot be reached keeps the (equally valid) unweighted pick, which costs nothing to set
  // up. This keeps rebuilds proportional to the hosts that take traffic.
  // `first_source`: the priority's first source; a source whose hosts equal those of an earlier
  // source of the priority shares its refs (all hosts healthy, or a single locality).
  const auto add_source = [&](std::uint32_t first_source, std::uint32_t begin, std::uint32_t end, bool reachable,
                              auto wanted) {
    source src;
    src.begin = static_cast<std::uint32_t>(v.refs.size());
    for (std::uint32_t i = begin; i < end; ++i) {
      if (wanted(state[i])) v.refs.push_back(members[i]);
    }
    src.size = static_cast<std::uint32_t>(v.refs.size()) - src.begin;
    const auto same_refs = [&v](const source& a, std::uint32_t b, std::uint32_t n) {
      if (a.size != n) return false;
      for (std::uint32_t i = 0; i < n; ++i) {
        if (v.refs[a.begin + i].target != v.refs[b + i].target || v.refs[a.begin + i].weight != v.refs[b + i].weight) {
          return false;
        }
      }
      return true;
    };
    for (std::size_t earlier = first_source; src.size > 0 && earlier < v.sources.size(); ++earlier) {
      if (same_refs(v.sources[earlier], src.begin, src.size)) {
        v.refs.resize(src.begin);
        src.begin = v.sources[earlier].begin;
        break;
      }
    }
    const host_ref* refs = v.refs.data() + src.begin;
    if (reachable && policy != lb_policy::random && src.size > 1 && !weights_equal(refs, src.size)) {
      std::vector<double> w(src.size);
      for (std::uint32_t i = 0; i < src.size; ++i) {
        w[i] = policy == lb_policy::least_request
                   ? refs[i].weight / std::pow(refs[i].target->active_connections() + 1.0, active_request_bias)
                   : refs[i].weight;
      }
      src.edf = add_schedule(w);
    }
    v.sources.push_back(src);
    return static_cast<std::uint32_t>(v.sources.size() - 1);
  };
  const auto all = [](host_health) { return true; };
  const auto healthy = [](host_health x) { return x == host_health::healthy; };
  const auto degraded = [](host_health x) { return x == host_health::degraded; };

  std::vector<double> healthy_locality_weights, degraded_locality_weights;  // effective weights
  for (std::size_t p = 0; p < priorities.size(); ++p) {
    const priority_layout& pl = priorities[p];
    priority_picker pp;
    pp.counts = counts[p];
    const auto percent = [](std::uint32_t x) { return static_cast<std::uint8_t>(std::min<std::uint32_t>(x, 100)); };
    pp.availability = percent(loads.health[p]);
    pp.degraded_availability = percent(loads.degraded[p]);
    pp.healthy_load = percent(loads.healthy_load[p]);
    pp.degraded_load = percent(loads.degraded_load[p]);
    pp.panic = loads.panic[p];
    const bool healthy_picks = !pp.panic && pp.healthy_load > 0;
    const bool degraded_picks = !pp.panic && pp.degraded_load > 0;
    bool healthy_schedule = false, degraded_schedule = false;
    healthy_locality_weights.clear();
    degraded_locality_weights.clear();
    if (locality_weighted) {
      // Effective weights (locality_wrr.cc). No schedule when no locality has one: picks then
      // use the whole priority, as Envoy's LocalityWrr does without a scheduler.
      for (std::uint32_t l = pl.locality_begin; l < pl.locality_end; ++l) {
        const locality_layout& ll = localities[l];
        const priority_counts& c = v.locality_counts[l];
        healthy_locality_weights.push_back(
            effective_locality_weight(ll.weight, c.healthy, c.hosts, c.excluded, overprovisioning_factor));
        degraded_locality_weights.push_back(
            effective_locality_weight(ll.weight, c.degraded, c.hosts, c.excluded, overprovisioning_factor));
        healthy_schedule = healthy_schedule || healthy_locality_weights.back() > 0;
        degraded_schedule = degraded_schedule || degraded_locality_weights.back() > 0;
      }
      // With one locality the schedule could only ever pick it, and its hosts are the
      // priority's: picking from the priority's sources is the same pick without a schedule
      // (and without a scheduler per worker).
      if (pl.locality_end - pl.locality_begin == 1) healthy_schedule = degraded_schedule = false;
    }
    const bool panic_picks = pp.panic && pp.healthy_load + pp.degraded_load > 0;
    const auto first_source = static_cast<std::uint32_t>(v.sources.size());
    pp.all_source = add_source(first_source, pl.begin, pl.end, panic_picks, all);
    pp.healthy_source = add_source(first_source, pl.begin, pl.end, healthy_picks && !healthy_schedule, healthy);
    pp.degraded_source = add_source(first_source, pl.begin, pl.end, degraded_picks && !degraded_schedule, degraded);
    pp.locality_sources = static_cast<std::uint32_t>(v.sources.size());
    if (locality_weighted) {
      for (std::uint32_t l = pl.locality_begin, i = 0; l < pl.locality_end; ++l, ++i) {
        const locality_layout& ll = localities[l];
        add_source(first_source, ll.begin, ll.end, healthy_picks && healthy_schedule && healthy_locality_weights[i] > 0,
                   healthy);
        add_source(first_source, ll.begin, ll.end,
                   degraded_picks && degraded_schedule && degraded_locality_weights[i] > 0, degraded);
      }
      if (healthy_schedule) pp.healthy_locality_edf = add_schedule(healthy_locality_weights);
      if (degraded_schedule) pp.degraded_locality_edf = add_schedule(degraded_locality_weights);
    }
    v.priorities.push_back(pp);
  }

  return v;
}

// A view after build (an ejection or a return), in its own allocation.
load_balancer::health_view* load_balancer::make_view() const {
  std::vector<member> members;
  const view_parts parts = shape(members).view();
  const std::size_t entries_at = sizeof(owned_view_header);
  const std::size_t view_at = entries_at + sizeof(std::atomic<worker_state*>) * workers_;
  char* const base =
      static_cast<char*>(::operator new(view_at + sizeof(health_view) + sizeof(host*) * parts.refs.size()));
  new (base) owned_view_header();
  auto* const entries = reinterpret_cast<std::atomic<worker_state*>*>(base + entries_at);
  for (std::size_t w = 0; w < workers_; ++w) new (entries + w) std::atomic<worker_state*>(nullptr);
  auto* const v = new (base + view_at) health_view();
  v->body = view_body::intern(parts);
  for (std::size_t i = 0; i < parts.refs.size(); ++i) v->refs()[i] = parts.refs[i].target;
  // Workers that have picked get their state made here, before the view is published, so
  // their picks never allocate.
  if (std::atomic<worker_slot*>* const slots = this->slots()) {
    for (std::size_t w = 0; w < workers_; ++w) {
      if (slots[w].load(std::memory_order_seq_cst) != nullptr) worker_state_in(entries[w], *v->body, w, seed_);
    }
  }
  return v;
}

namespace {
// `v`: a view make_view() made; `workers`: its balancer's worker count.
std::atomic<worker_state*>* owned_view_entries(const void* v, std::size_t workers) {
  return std::launder(reinterpret_cast<std::atomic<worker_state*>*>(const_cast<void*>(v))) - workers;
}
owned_view_header& owned_view_header_of(const void* v, std::size_t workers) {
  return *std::launder(reinterpret_cast<owned_view_header*>(owned_view_entries(v, workers)) - 1);
}
}  // namespace

void load_balancer::destroy_view(health_view* v) const {
  if (v == nullptr) return;
  std::atomic<worker_state*>* const entries = owned_view_entries(v, workers_);
  for (std::size_t w = 0; w < workers_; ++w) delete entries[w].load(std::memory_order_relaxed);
  v->body->release();
  owned_view_header& header = owned_view_header_of(v, workers_);
  v->~health_view();
  header.~owned_view_header();
  ::operator delete(static_cast<void*>(&header));
}

std::uint64_t load_balancer::generation(const health_view& v) const {
  return &v == first_view() ? 1 : owned_view_header_of(&v, workers_).generation;
}

void load_balancer::publish_locked(health_view* v) {
  // build() publishes the first view (generation 1); only outlier passes publish others.
  outlier_part* const outlier = this->outlier();
  if (outlier == nullptr) return;  // the first view, which stays
  if (v != first_view()) owned_view_header_of(v, workers_).generation = outlier->next_generation++;
  health_view* old = outlier->view.exchange(v, std::memory_order_seq_cst);
  if (old != nullptr) outlier->retired.push_back(old);
  reclaim_locked();
}

// Hazard-pointer reclamation: a retired view is freed once no worker announces it. A worker
// announces the view (seq_cst store) and then re-reads the outlier part's view pointer, which
// publish_locked swapped (seq_cst) before this scan. So either the scan sees the announcement,
// or the worker's re-read sees the new view and drops the old one without using it.
void load_balancer::reclaim_locked() {
  outlier_part* const outlier = this->outlier();
  if (outlier == nullptr) return;
  std::atomic<worker_slot*>* const slots = this->slots();
  std::erase_if(outlier->retired, [this, slots](health_view* r) {
    for (std::size_t w = 0; slots != nullptr && w < workers_; ++w) {
      const worker_slot* slot = slots[w].load(std::memory_order_seq_cst);
      if (slot != nullptr && slot->hazard.load(std::memory_order_seq_cst) == r) return false;
    }
    if (r == first_view()) {
      // Its worker states are in the slots; its body stays until the balancer goes.
      for (std::size_t w = 0; slots != nullptr && w < workers_; ++w) {
        if (worker_slot* slot = slots[w].load(std::memory_order_relaxed)) {
          delete slot->first_view_state.exchange(nullptr, std::memory_order_relaxed);
        }
      }
    } else {
      destroy_view(r);
    }
    return true;
  });
}

std::atomic<worker_state*>& load_balancer::state_entry(const health_view& v, worker_slot& own, std::size_t w) const {
  return &v == first_view() ? own.first_view_state : owned_view_entries(&v, workers_)[w];
}

load_balancer::worker_slot& load_balancer::slot(std::size_t w) {
  if (std::atomic<worker_slot*>* const slots = this->slots()) {
    if (worker_slot* s = slots[w].load(std::memory_order_seq_cst)) return *s;
  }
  return make_slot(w);
}

load_balancer::worker_slot& load_balancer::make_slot(std::size_t w) {
  // seq_cst: the hazard-pointer argument in reclaim_locked() needs the slot's publication in
  // the same total order as the hazard.
  std::atomic<worker_slot*>* slots = this->slots();
  if (slots == nullptr) {
    // The first pick of any worker: make the array. Workers may race to; one array wins.
    auto* made = new std::atomic<worker_slot*>[workers_];
    for (std::size_t i = 0; i < workers_; ++i) made[i].store(nullptr, std::memory_order_relaxed);
    if (slots_.compare_exchange_strong(slots, made, std::memory_order_seq_cst)) {
      slots = made;
    } else {
      delete[] made;  // `slots` is the winner's
    }
  }
  worker_slot* s = slots[w].load(std::memory_order_seq_cst);
  if (s == nullptr) {
    s = new worker_slot();
    s->random = fast_random(fast_random::mix(seed_ + 0x9e3779b97f4a7c15ull * (w + 1)));
    slots[w].store(s, std::memory_order_seq_cst);
  }
  return *s;
}

const load_balancer::health_view* load_balancer::enter(worker_slot& slot, const std::atomic<health_view*>& current) {
  const health_view* v = current.load(std::memory_order_acquire);
  for (;;) {
    slot.hazard.store(v, std::memory_order_seq_cst);
    const health_view* again = current.load(std::memory_order_seq_cst);
    if (again == v) return v;
    v = again;
  }
}

host* load_balancer::pick(std::size_t worker, std::span<const host* const> avoid) {
  return pick(worker, slot(worker % workers_).random, avoid);
}

host* load_balancer::pick(std::size_t worker, random_source& random, std::span<const host* const> avoid) {
  const std::size_t w = worker % workers_;
  worker_slot& own = slot(w);
  // Without outlier detection the view never changes (and lives as long as the balancer): no
  // hazard to announce.
  const outlier_part* const outlier = this->outlier();
  const health_view* v = outlier != nullptr ? enter(own, outlier->view) : first_view();
  host* h = nullptr;
  if (avoid.empty()) {
    std::uint32_t source_id = 0;
    h = pick_once(*v, own, w, random, source_id);
  } else {
    h = pick_other(*v, own, w, random, avoid);
  }
  if (outlier != nullptr) own.hazard.store(nullptr, std::memory_order_release);
  return h;
}

host* load_balancer::pick_once(const health_view& v, worker_slot& own, std::size_t w, random_source& random,
                               std::uint32_t& source_out) {
  const view_body& b = *v.body;
  const std::size_t n = b.priority_count;
  if (n == 0) return nullptr;
  const priority_picker* const priorities = b.priorities();

  // Envoy's choosePriority: h in 1..100 over the cumulative healthy loads, then degraded loads.
  const std::uint64_t r = random.next();
  const std::uint32_t h = static_cast<std::uint32_t>(r % 100) + 1;
  std::size_t p = 0;
  bool use_degraded = false;
  std::uint32_t cumulative = 0;
  bool found = false;
  for (std::size_t i = 0; i < n && !found; ++i) {
    cumulative += priorities[i].healthy_load;
    if (h <= cumulative) p = i, found = true;
  }
  for (std::size_t i = 0; i < n && !found; ++i) {
    cumulative += priorities[i].degraded_load;
    if (h <= cumulative) p = i, use_degraded = true, found = true;
  }

  const priority_picker& pp = priorities[p];
  worker_state& ws = worker_state_in(state_entry(v, own, w), b, w, seed_);
  std::uint32_t sid = use_degraded ? pp.degraded_source : pp.healthy_source;
  if (pp.panic) {
    shared().panic.fetch_add(1, std::memory_order_relaxed);
    sid = pp.all_source;
  } else if (locality_weighted()) {
    const std::int32_t e = use_degraded ? pp.degraded_locality_edf : pp.healthy_locality_edf;
    if (e >= 0) {
      const double* weights = b.weights() + b.schedules()[e].begin;
      const std::uint32_t locality = ws.edf[e].pick([&weights](std::uint32_t i) { return weights[i]; });
      sid = pp.locality_sources + 2 * locality + (use_degraded ? 1 : 0);
    }
  }
  source_out = sid;

  const source& s = b.sources()[sid];
  if (s.size == 0) return nullptr;
  host* const* const refs = v.refs() + s.begin;
  switch (policy_) {
    case lb_policy::round_robin:
      if (s.edf >= 0) {
        const std::uint32_t* const weights = b.ref_weights() + s.begin;
        return refs[ws.edf[s.edf].pick([weights](std::uint32_t i) { return static_cast<double>(weights[i]); })];
      }
      return refs[ws.rr[sid]++ % s.size];
    case lb_policy::least_request: {
      if (s.edf >= 0) {
        const double bias = layout_->active_request_bias;
        const std::uint32_t* const weights = b.ref_weights() + s.begin;
        return refs[ws.edf[s.edf].pick([refs, weights, bias](std::uint32_t i) {
          const double active = refs[i]->active_connections() + 1.0;
          if (bias == 1.0) return weights[i] / active;
          if (bias == 0.0) return static_cast<double>(weights[i]);
          return weights[i] / std::pow(active, bias);
        })];
      }
      // Envoy's unweightedHostPickNChoices: sample choice_count hosts (with replacement), keep
      // the first with the fewest active connections.
      host* best = nullptr;
      std::uint32_t best_active = 0;
      for (std::uint32_t c = 0; c < choice_count_; ++c) {
        host* candidate = refs[random.next() % s.size];
        const std::uint32_t active = candidate->active_connections();
        if (best == nullptr || active < best_active) best = candidate, best_active = active;
      }
      return best;
    }
    case lb_policy::random:
      // Envoy's RandomLoadBalancer reuses the priority draw to index the hosts.
      return refs[r % s.size];
  }
  return nullptr;
}

// A pick that avoids the hosts in `avoid` when any other host can be given: two more ordinary
// picks (as Envoy re-picks when a host is rejected), then the rest of the chosen source, then any
// healthy, degraded or (in panic priorities) other host, highest priority first. When every
// candidate was tried, an ordinary pick (a retry on a tried host beats no retry).
host* load_balancer::pick_other(const health_view& v, worker_slot& own, std::size_t w, random_source& random,
                                std::span<const host* const> avoid) {
  const auto avoided = [avoid](const host* h) { return std::find(avoid.begin(), avoid.end(), h) != avoid.end(); };
  std::uint32_t sid = 0;
  host* h = nullptr;
  host* first = nullptr;
  for (int attempt = 0; attempt < 3; ++attempt) {
    h = pick_once(v, own, w, random, sid);
    if (attempt == 0) first = h;
    if (!avoided(h)) return h;
  }
  const auto scan = [&](std::uint32_t id) -> host* {
    const source& s = v.body->sources()[id];
    if (s.size == 0) return nullptr;
    const std::uint64_t start = random.next();
    for (std::uint32_t i = 0; i < s.size; ++i) {
      host* candidate = v.refs()[s.begin + (start + i) % s.size];
      if (!avoided(candidate)) return candidate;
    }
    return nullptr;
  };
  if (host* o = scan(sid)) return o;
  const std::span<const priority_picker> priorities(v.body->priorities(), v.body->priority_count);
  for (const priority_picker& pp : priorities) {
    if (host* o = scan(pp.healthy_source)) return o;
  }
  for (const priority_picker& pp : priorities) {
    if (host* o = scan(pp.degraded_source)) return o;
  }
  for (const priority_picker& pp : priorities) {
    if (!pp.panic) continue;
    if (host* o = scan(pp.all_source)) return o;
  }
  return first;
}

bool load_balancer::outlier_pass_locked(time_point now, random_source& random, bool interval) {
  outlier_part* const outlier = this->outlier();
  if (outlier == nullptr) return false;
  outlier_detector detector(outlier->config, outlier->hosts, shared().outlier_locked(seed_), random);
  const bool changed = interval ? detector.tick(now) : detector.process_detections(now);
  if (changed) publish_locked(make_view());
  return changed;
}

bool load_balancer::process_detections(time_point now, random_source& random) {
  std::lock_guard<std::mutex> lock(shared().cold());
  return outlier_pass_locked(now, random, false);
}

bool load_balancer::process_detections(time_point now) {
  std::lock_guard<std::mutex> lock(shared().cold());
  if (outlier() == nullptr) return false;
  return outlier_pass_locked(now, shared().outlier_locked(seed_).cold_random, false);
}

bool load_balancer::tick(time_point now, random_source& random) {
  std::lock_guard<std::mutex> lock(shared().cold());
  return outlier_pass_locked(now, random, true);
}

bool load_balancer::tick(time_point now) {
  std::lock_guard<std::mutex> lock(shared().cold());
  if (outlier() == nullptr) return false;
  return outlier_pass_locked(now, shared().outlier_locked(seed_).cold_random, true);
}

std::chrono::milliseconds load_balancer::outlier_interval() const {
  const outlier_part* const outlier = this->outlier();
  return outlier != nullptr ? outlier->config.interval : std::chrono::milliseconds(0);
}

lb_stats load_balancer::stats() const {
  lb_stats out;
  {
    // With outlier detection, under the cold mutex: an outlier pass may retire and free the
    // view otherwise. Without it the view is the first one, which lives as long as the balancer.
    std::unique_lock<std::mutex> lock;
    if (outlier() != nullptr) lock = std::unique_lock<std::mutex>(shared().cold());
    const view_body& b = *current_view()->body;
    for (const priority_picker& pp : std::span(b.priorities(), b.priority_count)) {
      out.membership_healthy += pp.counts.healthy;
      out.membership_degraded += pp.counts.degraded;
      out.membership_excluded += pp.counts.excluded;
      out.membership_total += pp.counts.hosts;
    }
  }
  if (const atomic_outlier_stats* s = shared().outlier.load(std::memory_order_acquire)) s->load_into(out);
  out.lb_healthy_panic = shared().panic.load(std::memory_order_relaxed);
  return out;
}

balancer_state load_balancer::explain() const {
  std::lock_guard<std::mutex> lock(shared().cold());
  const health_view& v = *current_view();
  balancer_state out;
  out.view_generation = generation(v);
  const std::uint32_t overprovisioning_factor = layout_->overprovisioning_factor;
  out.overprovisioning_factor = overprovisioning_factor;
  out.panic_threshold = layout_->panic_threshold;
  out.locality_weighted = locality_weighted();
  out.policy = policy_;
  out.outlier_detection = this->outlier() != nullptr;
  const outlier_detection_config& outlier = this->outlier() != nullptr ? this->outlier()->config : no_outlier_detection;
  out.outlier_interval = outlier_interval();
  const view_body& b = *v.body;
  out.normalized_total_availability = b.normalized_total_availability;
  out.total_panic = b.total_panic != 0;
  const std::span<const priority_layout> priorities = layout_->priorities();
  const std::span<const locality_layout> localities = layout_->localities();
  for (std::size_t p = 0; p < priorities.size(); ++p) {
    const priority_layout& pl = priorities[p];
    priority_state ps;
    const priority_picker& pp = b.priorities()[p];
    ps.counts = pp.counts;
    ps.health = pp.availability;
    ps.degraded = pp.degraded_availability;
    ps.healthy_load = pp.healthy_load;
    ps.degraded_load = pp.degraded_load;
    ps.panic = pp.panic;
    for (std::uint32_t l = pl.locality_begin; l < pl.locality_end; ++l) {
      const locality_layout& ll = localities[l];
      locality_state ls;
      ls.name = std::string(layout_->names().substr(ll.name_begin, ll.name_size));
      ls.weight = ll.weight;
      ls.counts = b.locality_counts()[l];
      ls.effective_weight =
          effective_locality_weight(ll.weight, ls.counts.healthy, ls.counts.hosts, ls.counts.excluded, overprovisioning_factor);
      ls.effective_degraded_weight = effective_locality_weight(ll.weight, ls.counts.degraded, ls.counts.hosts,
                                                               ls.counts.excluded, overprovisioning_factor);
      ps.localities.push_back(std::move(ls));
      for (std::uint32_t i = ll.begin; i < ll.end; ++i) {
        const member m{members()[i], layout_->members()[i].weight, layout_->members()[i].health};
        host_state hs;
        hs.address = m.target->address();
        hs.priority = static_cast<std::uint32_t>(p);
        hs.locality = l - pl.locality_begin;
        hs.weight = m.weight;
        hs.health = m.health;
        hs.ejected = m.target->ejected();
        hs.active_connections = m.target->active_connections();
        hs.connections_total = m.target->connections_total();
        hs.connect_failures = m.target->connect_failures();
        const outlier_cold_state& cold = m.target->outlier_state();
        hs.ejection_backoff = cold.backoff;
        hs.num_ejections = cold.num_ejections;
        if (hs.ejected) {
          hs.ejection_ends = cold.last_ejection +
                             std::min(outlier.base_ejection_time * cold.backoff, outlier.effective_max_ejection_time()) +
                             cold.jitter;
        }
        hs.success_rate = cold.external_success_rate;
        hs.local_origin_success_rate = cold.local_success_rate;
        out.hosts.push_back(hs);
      }
    }
    out.priorities.push_back(std::move(ps));
  }
  return out;
}

}  // namespace ewgw::lb
