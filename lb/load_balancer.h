// Host selection for one cluster, with Envoy's semantics (Envoy's load_balancer_impl.cc,
// locality_wrr.cc, edf_scheduler.h, the round_robin / least_request / random policies and
// outlier_detection_impl.cc; docs/configuration.md "Load balancing" states the rules):
//
//   pick = priority (h = random % 100 + 1 over the cumulative healthy, then degraded, loads)
//        → hosts source: all hosts of the priority when it is in panic; else, when locality
//          weighted, one locality by EDF over effective weights; else the priority's healthy (or
//          degraded) hosts
//        → host by policy: round robin (rotation; EDF when weights differ), least request (P2C
//          on active connections; EDF on weight / (active + 1)^bias when weights differ), random.
//
// Structure. A balancer is built from plain config (lb/config.h) off the data path and is then
// immutable, except for its "health view": everything a pick reads that depends on which hosts
// are ejected (host lists per priority and locality, priority loads, panic flags, locality
// weights) plus each worker's private picking state for that view (rotation indexes, EDF
// schedules, sized when the view is built). The cold half builds a new view whenever the
// ejected set changes and publishes it with one atomic pointer exchange. pick() takes the
// current view under a per-worker hazard pointer (a seq_cst store and a re-load of the view
// pointer, then a release store when done: no lock, no reference count, no shared cache line
// written), and the cold half frees a retired view only once no worker's hazard points at it.
// Only outlier detection changes the ejected set, so a balancer without it keeps the view
// build() made, and its picks read that view with no hazard at all. pick() never locks. Once a
// worker has picked from a cluster it never allocates or frees either: a cluster's first pick by
// any worker makes the per-worker slot array (racing first picks settle it with one
// compare-and-swap; a loser frees its own), and a worker's first pick makes its slot. Clusters
// nobody picks (most of an east-west gateway's thousands) thus cost no per-worker memory.
// test/lb checks this with a counting operator new, bench/lb reports allocations per pick.
//
// Outlier detection is split the same way. host::report() (data path) only updates atomics and
// flags a consecutive-failure detection the moment a counter reaches its threshold, as Envoy's
// host monitor does on the worker. Enforcement (enforcing_* percentages, max_ejection_percent,
// ejection time and backoff), un-ejection and the success-rate / failure-percentage detectors run
// in process_detections() / tick() on the control thread, like Envoy's main-thread handlers: a
// detection is enforced at the next process_detections() (Envoy: as soon as the main thread
// runs the posted event) or at the latest at the next tick().
//
// Generations. An EDS/CDS update builds a new balancer from the new config and the previous one:
// hosts are taken over by address, with their connection counts and outlier state, and the
// statistics and the cold mutex are shared by all generations of the cluster (except the
// membership gauges: each generation's stats() counts the hosts of its own current view, so the
// cluster's current generation reports the membership built or refreshed last). Old
// generations stay valid for the connections that hold them; their view no longer changes.
//
// Threads. pick(worker, ...) may run concurrently for different workers; each worker index must
// be used by one thread at a time. build(), tick(), process_detections(), explain() and stats()
// may be called from any thread: they serialize on the cluster's cold mutex (stats() takes it
// only with outlier detection; without it the view it reads never changes).
//
// Wiring outlier detection in the proxy (not done yet; two calls, plus decoding
// Cluster.outlier_detection into cluster_config::outlier_detection):
//   - data path, when a connect attempt ends: host->report(lb::outcome::connect_success /
//     connect_failed / connect_timeout); if it returns true, post
//     balancer->process_detections(now) to the control thread;
//   - control thread: every outlier_interval() (when non-zero), tick(now) on the cluster's
//     current balancer (the one in the latest routing snapshot).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "lb/config.h"
#include "lb/host.h"
#include "lb/lb_stats.h"
#include "lb/priority_load.h"
#include "lb/random.h"

namespace ewgw::lb {

namespace detail {
// A host as one list of a balancer names it (load_balancer.cc).
struct worker_state;  // one worker's picking state for one view (load_balancer.cc)
struct host_ref {
  host* target;
  std::uint32_t weight;
  host_health health;  // from EDS
};
}  // namespace detail

// What explain() reports: the computed loads and weights, for humans and tests.
struct locality_state {
  std::string name;
  std::uint32_t weight = 0;
  priority_counts counts;
  double effective_weight = 0;           // in the healthy schedule
  double effective_degraded_weight = 0;  // in the degraded schedule
};

struct priority_state {
  priority_counts counts;
  std::uint32_t health = 0;    // availability, percent
  std::uint32_t degraded = 0;  // degraded availability, percent
  std::uint32_t healthy_load = 0;
  std::uint32_t degraded_load = 0;
  bool panic = false;
  std::vector<locality_state> localities;
};

struct host_state {
  endpoint_address address;
  std::uint32_t priority = 0;
  std::uint32_t locality = 0;  // index in priority_state::localities
  std::uint32_t weight = 1;
  host_health health = host_health::healthy;  // from EDS
  bool ejected = false;
  std::uint32_t active_connections = 0;
  std::uint64_t connections_total = 0;
  std::uint64_t connect_failures = 0;
  std::uint32_t ejection_backoff = 0;
  std::uint32_t num_ejections = 0;
  // For an ejected host: when its ejection time (min(base_ejection_time * backoff,
  // max_ejection_time) + jitter, Envoy's DetectorImpl::checkHostForUneject) is over. It returns
  // at the first outlier interval tick at or after that moment, so the wait left is up to one
  // interval longer. Unset when not ejected.
  std::optional<time_point> ejection_ends;
  // Success rate (percent) seen in the last outlier interval; -1 when not computed (Envoy's
  // /clusters success_rate and local_origin_success_rate).
  double success_rate = -1;
  double local_origin_success_rate = -1;
};

struct balancer_state {
  std::uint64_t view_generation = 0;  // bumps each time the ejected set changes
  std::uint32_t normalized_total_availability = 0;
  bool total_panic = false;
  std::vector<priority_state> priorities;
  std::vector<host_state> hosts;
  // Settings explain output refers to.
  std::uint32_t overprovisioning_factor = 140;
  std::uint32_t panic_threshold = 50;  // percent; 0: panic disabled
  bool locality_weighted = false;
  lb_policy policy = lb_policy::round_robin;
  bool outlier_detection = false;
  std::chrono::milliseconds outlier_interval{0};
};

class load_balancer {
 public:
  struct build_options {
    std::size_t workers = 1;
    // 0: every worker starts each rotation at the first host and each EDF schedule at time zero
    // (deterministic; what the tests use). Otherwise each worker starts at a pseudo-random point
    // derived from the seed and its index, as Envoy seeds each worker's balancer.
    std::uint64_t seed = 0;
  };

  // Builds a balancer for `config`. `previous` (may be null) is this cluster's balancer being
  // replaced: hosts with the same address are taken over from it (connection counts and outlier
  // state survive), and so are the statistics. A host listed twice is one host.
  static std::shared_ptr<load_balancer> build(const cluster_config& config, const build_options& options,
                                              const load_balancer* previous = nullptr);

  // For build() only: private_tag cannot be named outside the class. Public because
  // allocate_shared (one allocation for the balancer, its reference count and its arrays) needs
  // to call it.
 private:
  struct private_tag {
    explicit private_tag() = default;
  };

 public:
  explicit load_balancer(private_tag);
  ~load_balancer();
  load_balancer(const load_balancer&) = delete;
  load_balancer& operator=(const load_balancer&) = delete;

  // Data path. A host for a new connection from `worker`, or nullptr when there is none to
  // give (no hosts, or panic disabled and nothing healthy). Hosts in `avoid` are not returned
  // when another host is available: a connect retry (tcp_proxy max_connect_attempts) goes to a
  // host this connection has not tried yet, and only back to a tried one when none is left.
  // Draws from `random`, which belongs to the calling worker.
  host* pick(std::size_t worker, random_source& random, std::span<const host* const> avoid = {});
  host* pick(std::size_t worker, random_source& random, const host* avoid) {
    return avoid ? pick(worker, random, std::span<const host* const>(&avoid, 1)) : pick(worker, random);
  }
  // The same with the worker's own generator (seeded from build_options::seed).
  host* pick(std::size_t worker, std::span<const host* const> avoid = {});
  host* pick(std::size_t worker, const host* avoid) {
    return avoid ? pick(worker, std::span<const host* const>(&avoid, 1)) : pick(worker);
  }

  // Cold half (outlier detection); no-ops returning false without outlier_detection. Each
  // returns true when the ejected set changed, in which case a new view has been published.
  bool process_detections(time_point now, random_source& random);
  bool process_detections(time_point now);  // with the cluster's own cold generator
  bool tick(time_point now, random_source& random);
  bool tick(time_point now);
  // How often tick() should run; zero without outlier detection.
  std::chrono::milliseconds outlier_interval() const;

  // Observability (cold: allocates).
  lb_stats stats() const;
  balancer_state explain() const;
  // Unique, in config order. Each host lives as long as some generation of the cluster lists it.
  std::span<host* const> hosts() const;
  lb_policy policy() const { return policy_; }

  // Diagnostics and tests: how many distinct shared structure blocks (a balancer's layout and
  // settings, a health view's loads and host lists) are alive across all balancers. Clusters of
  // the same shape share one of each instead of holding a copy.
  static std::size_t shared_structure_count();

 private:
  struct shared_state;
  struct host_block;
  struct health_view;
  struct worker_slot;
  struct topology;
  // One listing of a host (priority → locality → host order). The same type as a health
  // view's host references, so a view whose only list is every member in order (all healthy,
  // one locality: the common case) points at members_ instead of copying them.
  using member = detail::host_ref;
  struct locality_layout {
    std::uint32_t name_begin, name_size;  // into locality_names_
    std::uint32_t weight;
    std::uint32_t begin, end;  // into members_
  };
  struct priority_layout {
    std::uint32_t begin, end;                    // into members_
    std::uint32_t locality_begin, locality_end;  // into localities_
  };

  host* pick_once(const health_view& v, worker_slot& own, std::size_t worker, random_source& random,
                  std::uint32_t& source_out);
  host* pick_other(const health_view& v, worker_slot& own, std::size_t worker, random_source& random,
                   std::span<const host* const> avoid);
  worker_slot& slot(std::size_t worker);  // this worker's, made on its first pick
  [[gnu::noinline]] worker_slot& make_slot(std::size_t worker);  // slot()'s first time
  // The per-worker slot array; null until some worker picked (made by slot()).
  std::atomic<worker_slot*>* slots() const { return slots_.load(std::memory_order_seq_cst); }
  // Where worker w's picking state for `v` is kept (`own`: w's slot).
  std::atomic<detail::worker_state*>& state_entry(const health_view& v, worker_slot& own, std::size_t w) const;
  const health_view* enter(worker_slot& slot, const std::atomic<health_view*>& current);
  // The view picks use now: the first view unless outlier detection replaced it.
  const health_view* current_view() const;
  topology shape(std::vector<member>& members) const;
  health_view* make_view() const;  // a view in its own allocation (after an ejection or a return)
  void destroy_view(health_view* v) const;  // one make_view() made
  std::uint64_t generation(const health_view& v) const;
  void publish_locked(health_view* v);
  void reclaim_locked();
  bool outlier_pass_locked(time_point now, random_source& random, bool interval);

  // Immutable after build, except slots_ (made once) and the outlier part's current view. The
  // per-cluster arrays live in the balancer's own allocation, right after the object (build()
  // sizes it), and are found from `this` rather than through pointers of their own:
  //   with outlier detection, the outlier part (it holds the current view: without outlier
  //     detection a balancer's view never changes, so it keeps no pointer to it),
  //   the first view (the one build() makes: its interned body, then its host references),
  //   the members (each listing's host, priority -> locality -> host order; usually they are the
  //     first view's references, which then are not copied),
  //   and only when needed: the unique hosts (when not the members) and the host blocks (when
  //     more than one), each of these two arrays after a word with its count.
  // What is the same for every cluster of one shape (priority and locality layout, locality
  // names, member weights and health, settings) is one interned block shared by all (layout_).
  char* tail() const { return reinterpret_cast<char*>(const_cast<load_balancer*>(this) + 1); }
  health_view* first_view() const {
    return reinterpret_cast<health_view*>(tail() + ((flags_ & outlier_flag) != 0 ? sizeof(void*) : 0));
  }
  host** members() const;
  host** after_members() const;  // where the optional arrays start
  struct layout;
  const layout* layout_ = nullptr;  // interned
  // The blocks holding the hosts and the shared state (one reference each): usually one, which
  // is then held here rather than in an array (single_block_flag says which).
  union {
    host_block* block_ = nullptr;  // single_block_flag
    host_block** blocks_;  // otherwise: in the tail, their count in the word before them
  };
  std::span<host_block* const> blocks() const;
  shared_state& shared() const;  // in one of blocks()
  // Per-worker slots, made on a worker's first pick: most workers never pick from most of a
  // gateway's 10,000 clusters, so a slot (a cache line) exists only where it is used, and the
  // array of them (a pointer per worker) only once some worker picked. Entry w is written only
  // by worker w; the cold path only reads it (hazard scan) or frees it.
  std::atomic<std::atomic<worker_slot*>*> slots_{nullptr};
  std::uint64_t seed_ = 0;
  std::uint32_t choice_count_ = 2;
  std::uint16_t workers_ = 1;
  lb_policy policy_ = lb_policy::round_robin;
  enum : std::uint8_t {
    locality_weighted_flag = 1,
    hosts_are_members_flag = 2,  // the unique hosts are the members, in order
    refs_are_members_flag = 4,   // the first view's references are the members
    outlier_flag = 8,            // outlier detection: the tail starts with the outlier part
    single_block_flag = 16,      // one host block: block_
  };
  std::uint8_t flags_ = 0;
  bool locality_weighted() const { return (flags_ & locality_weighted_flag) != 0; }
  // Only with outlier detection enabled (most clusters have none); owned by the balancer.
  struct outlier_part;
  outlier_part* outlier() const {
    return (flags_ & outlier_flag) != 0 ? *std::launder(reinterpret_cast<outlier_part**>(tail())) : nullptr;
  }
};

}  // namespace ewgw::lb
