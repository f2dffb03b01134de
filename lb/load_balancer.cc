#include "lb/load_balancer.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <new>
#include <span>
#include <unordered_map>

#include "lb/edf_scheduler.h"
#include "lb/outlier_detector.h"

namespace ewgw::lb {

namespace {

struct host_ref {
  host* target;
  std::uint32_t weight;
};

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
  std::uint32_t availability = 0, degraded_availability = 0;  // percent (explain)
  std::uint32_t healthy_load = 0, degraded_load = 0;
  bool panic = false;
  std::uint32_t all_source = 0, healthy_source = 0, degraded_source = 0;
  // Locality i's healthy hosts are source locality_sources + 2 * i, its degraded ones + 1.
  std::uint32_t locality_sources = 0;
  // Schedules over the localities' effective weights (their initial weights are those
  // weights); -1 when not locality weighted, no locality has a weight, or there is one locality.
  std::int32_t healthy_locality_edf = -1, degraded_locality_edf = -1;
};

// One EDF schedule's initial weights: [begin, begin + size) of health_view::weights.
struct schedule_ref {
  std::uint32_t begin = 0, size = 0;
};

// One worker's picking state for one view. Only that worker touches it.
struct alignas(64) worker_state {
  std::vector<std::uint64_t> rr;  // rotation index per source
  std::vector<edf_scheduler> edf;
};

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

}  // namespace

struct load_balancer::shared_state {
  explicit shared_state(std::uint64_t seed) : cold_random(fast_random::mix(seed ^ 0x636f6c64)) {}
  ~shared_state() { delete outlier.load(std::memory_order_relaxed); }
  shared_state(const shared_state&) = delete;
  shared_state& operator=(const shared_state&) = delete;

  // The outlier_detection.* counters, made (under `cold`) by the first generation that enables
  // outlier detection and kept from then on, so they keep counting across generations. Kept
  // out of line: only clusters with outlier_detection pay for them. Read by stats() without the
  // mutex, hence published with release.
  atomic_outlier_stats& outlier_stats_locked() {
    atomic_outlier_stats* s = outlier.load(std::memory_order_relaxed);
    if (s == nullptr) {
      s = new atomic_outlier_stats();
      outlier.store(s, std::memory_order_release);
    }
    return *s;
  }

  std::mutex cold;
  std::atomic<std::uint64_t> membership_healthy{0}, membership_degraded{0}, membership_excluded{0},
      membership_total{0};
  std::atomic<atomic_outlier_stats*> outlier{nullptr};
  // lb_healthy_panic. One counter for all workers: it moves only while a priority is in panic,
  // which is rare, and per-worker padded counters cost a cache line per worker per cluster.
  std::atomic<std::uint64_t> panic{0};
  fast_random cold_random;
};

struct alignas(64) load_balancer::worker_slot {
  std::atomic<const health_view*> hazard{nullptr};
  fast_random random;
};

struct load_balancer::outlier_part {
  outlier_detection_config config;
  std::vector<host*> hosts;  // hosts_, for the outlier detector
};

namespace {
// What configure() is given when the cluster has no outlier detection, and what explain() reads
// times from then.
const outlier_detection_config no_outlier_detection{};
}  // namespace

// Everything a pick reads, in one allocation: the header below, then its arrays. A view often
// lives as long as its cluster, and a cluster with 3 hosts would otherwise hold ~15 small
// vectors here.
struct load_balancer::health_view {
  std::uint64_t generation = 0;
  std::uint64_t seed = 0;
  std::uint32_t normalized_total_availability = 0;
  bool total_panic = false;
  std::uint32_t priority_count = 0, locality_count = 0, source_count = 0, schedule_count = 0, worker_count = 0;
  const priority_picker* priorities = nullptr;
  const priority_counts* locality_counts = nullptr;
  const source* sources = nullptr;
  const host_ref* refs = nullptr;
  // Initial weights of each EDF schedule (source::edf, priority_picker::*_locality_edf); each
  // worker's state starts from them.
  const schedule_ref* schedules = nullptr;
  const double* weights = nullptr;
  // Each worker's picking state, made on its first pick of this view (see lazy_per_worker);
  // each worker mutates its own entry only.
  std::atomic<worker_state*>* workers = nullptr;

  static std::unique_ptr<health_view> pack(const view_parts& parts, std::size_t worker_count, std::uint64_t seed) {
    std::size_t size = sizeof(health_view);
    const auto place = [&size](std::size_t align, std::size_t bytes) {
      size = align_up(size, align);
      const std::size_t at = size;
      size += bytes;
      return at;
    };
    const std::size_t at_priorities = place(alignof(priority_picker), sizeof(priority_picker) * parts.priorities.size());
    const std::size_t at_localities =
        place(alignof(priority_counts), sizeof(priority_counts) * parts.locality_counts.size());
    const std::size_t at_sources = place(alignof(source), sizeof(source) * parts.sources.size());
    const std::size_t at_refs = place(alignof(host_ref), sizeof(host_ref) * parts.refs.size());
    const std::size_t at_schedules = place(alignof(schedule_ref), sizeof(schedule_ref) * parts.schedules.size());
    const std::size_t at_weights = place(alignof(double), sizeof(double) * parts.weights.size());
    const std::size_t at_workers =
        place(alignof(std::atomic<worker_state*>), sizeof(std::atomic<worker_state*>) * worker_count);
    static_assert(alignof(health_view) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);

    char* base = static_cast<char*>(::operator new(size));
    auto* v = new (base) health_view();
    v->seed = seed;
    v->normalized_total_availability = parts.normalized_total_availability;
    v->total_panic = parts.total_panic;
    v->priority_count = static_cast<std::uint32_t>(parts.priorities.size());
    v->locality_count = static_cast<std::uint32_t>(parts.locality_counts.size());
    v->source_count = static_cast<std::uint32_t>(parts.sources.size());
    v->schedule_count = static_cast<std::uint32_t>(parts.schedules.size());
    v->worker_count = static_cast<std::uint32_t>(worker_count);
    const auto copy = [base]<class T>(const std::vector<T>& from, std::size_t at) {
      return std::uninitialized_copy(from.begin(), from.end(), reinterpret_cast<T*>(base + at)) - from.size();
    };
    v->priorities = copy(parts.priorities, at_priorities);
    v->locality_counts = copy(parts.locality_counts, at_localities);
    v->sources = copy(parts.sources, at_sources);
    v->refs = copy(parts.refs, at_refs);
    v->schedules = copy(parts.schedules, at_schedules);
    v->weights = copy(parts.weights, at_weights);
    auto* workers = reinterpret_cast<std::atomic<worker_state*>*>(base + at_workers);
    for (std::size_t w = 0; w < worker_count; ++w) new (workers + w) std::atomic<worker_state*>(nullptr);
    v->workers = workers;
    return std::unique_ptr<health_view>(v);
  }

  health_view() = default;
  health_view(const health_view&) = delete;
  health_view& operator=(const health_view&) = delete;
  ~health_view() {
    for (std::size_t w = 0; w < worker_count; ++w) delete workers[w].load(std::memory_order_relaxed);
  }
  // The arrays after the header are trivially destructible; the storage came from pack().
  static void operator delete(void* p) { ::operator delete(p); }

  // Worker w's picking state for this view, made on its first use. seq_cst: the hazard-pointer
  // argument in reclaim_locked() needs the entry's publication in the same total order as the
  // hazard. With a seed, each worker starts its rotations and (up to 255 picks into) its
  // schedules at its own point, so workers do not all send their first picks to one host.
  worker_state& worker(std::size_t w) const {
    worker_state* e = workers[w].load(std::memory_order_seq_cst);
    if (e != nullptr) return *e;
    const std::uint64_t start = seed == 0 ? 0 : fast_random::mix(seed ^ (0xa0761d6478bd642full * (w + 1)));
    auto ws = std::make_unique<worker_state>();
    ws->rr.assign(source_count, start);
    ws->edf.resize(schedule_count);
    for (std::size_t k = 0; k < schedule_count; ++k) {
      ws->edf[k].reset(std::span<const double>(weights + schedules[k].begin, schedules[k].size), start & 0xff);
    }
    e = ws.release();
    workers[w].store(e, std::memory_order_seq_cst);
    return *e;
  }
};

std::shared_ptr<load_balancer> load_balancer::build(const cluster_config& config, const build_options& options,
                                                    const load_balancer* previous) {
  auto lb = std::make_shared<load_balancer>(private_tag{}, options.workers);
  lb->seed_ = options.seed;
  lb->overprovisioning_factor_ = config.overprovisioning_factor;
  lb->panic_threshold_ = config.healthy_panic_threshold;
  lb->locality_weighted_ = config.locality_weighted;
  lb->policy_ = config.policy;
  lb->choice_count_ = std::max<std::uint32_t>(1, config.choice_count);
  lb->active_request_bias_ = config.active_request_bias;
  if (config.outlier_detection.enabled) {
    lb->outlier_ = std::make_unique<outlier_part>();
    lb->outlier_->config = config.outlier_detection;
  }
  lb->shared_ = previous != nullptr ? previous->shared_ : std::make_shared<shared_state>(options.seed);
  // Workers that picked from the previous version pick from this one too: make their state now,
  // on the cold path, so that only a worker's very first pick of a cluster allocates (an EDS
  // update of a busy cluster must not make every worker allocate on the data path).
  if (previous != nullptr) {
    for (std::size_t w = 0; w < std::min(lb->workers_, previous->workers_); ++w) {
      if (previous->slots_.peek(w) != nullptr) lb->slot(w);
    }
  }

  std::lock_guard<std::mutex> lock(lb->shared_->cold);
  std::unordered_map<endpoint_address, std::size_t, endpoint_address_hash> known;  // index in previous->hosts_
  std::size_t listings = 0, localities = 0, names = 0;
  for (const priority_config& p : config.priorities) {
    localities += p.localities.size();
    for (const locality_config& loc : p.localities) {
      listings += loc.hosts.size();
      names += loc.name.size();
    }
  }
  if (previous != nullptr) {
    known.reserve(previous->hosts_.size());
    for (std::size_t i = 0; i < previous->hosts_.size(); ++i) known.emplace(previous->hosts_[i]->address(), i);
  }
  std::unordered_map<endpoint_address, host*, endpoint_address_hash> listed;
  listed.reserve(listings);
  // Exact sizes: a balancer often lives as long as its cluster, so no growth slack.
  lb->members_.reserve(listings);
  lb->hosts_.reserve(listings);
  lb->localities_.reserve(localities);
  lb->locality_names_.reserve(names);
  lb->priorities_.reserve(config.priorities.size());
  for (const priority_config& p : config.priorities) {
    priority_layout pl{};
    pl.begin = static_cast<std::uint32_t>(lb->members_.size());
    pl.locality_begin = static_cast<std::uint32_t>(lb->localities_.size());
    for (const locality_config& loc : p.localities) {
      locality_layout ll{static_cast<std::uint32_t>(lb->locality_names_.size()), static_cast<std::uint32_t>(loc.name.size()),
                         loc.weight, static_cast<std::uint32_t>(lb->members_.size()), 0};
      lb->locality_names_ += loc.name;
      for (const host_config& hc : loc.hosts) {
        host* target = nullptr;
        if (auto it = listed.find(hc.address); it != listed.end()) {
          target = it->second;
        } else {
          auto k = known.find(hc.address);
          std::shared_ptr<host> h = k != known.end() ? previous->hosts_[k->second] : std::make_shared<host>(hc.address);
          target = h.get();
          listed.emplace(hc.address, target);
          lb->hosts_.push_back(std::move(h));
        }
        lb->members_.push_back({target, std::max<std::uint32_t>(1, hc.weight), hc.health});
      }
      ll.end = static_cast<std::uint32_t>(lb->members_.size());
      lb->localities_.push_back(ll);
    }
    pl.end = static_cast<std::uint32_t>(lb->members_.size());
    pl.locality_end = static_cast<std::uint32_t>(lb->localities_.size());
    lb->priorities_.push_back(pl);
  }
  if (lb->hosts_.size() < listings) lb->hosts_.shrink_to_fit();  // a host listed twice
  std::uint64_t ejected = 0;
  if (lb->outlier_) lb->outlier_->hosts.reserve(lb->hosts_.size());
  const outlier_detection_config& outlier = lb->outlier_ ? lb->outlier_->config : no_outlier_detection;
  for (const std::shared_ptr<host>& h : lb->hosts_) {
    outlier_detector::configure(*h, outlier);
    ejected += h->ejected() ? 1 : 0;
    if (lb->outlier_) lb->outlier_->hosts.push_back(h.get());
  }
  // Without outlier detection nothing is ejected (configure() un-ejects), and a cluster that
  // never had it has no counters to set.
  if (lb->outlier_) {
    lb->shared_->outlier_stats_locked().ejections_active.store(ejected, std::memory_order_relaxed);
  } else if (atomic_outlier_stats* s = lb->shared_->outlier.load(std::memory_order_relaxed)) {
    s->ejections_active.store(ejected, std::memory_order_relaxed);
  }
  lb->publish_locked(lb->make_view());
  return lb;
}

load_balancer::load_balancer(private_tag, std::size_t workers)
    : workers_(std::max<std::size_t>(1, workers)), slots_(workers_) {}

load_balancer::~load_balancer() {
  delete view_.load(std::memory_order_relaxed);
  for (health_view* v : retired_) delete v;
}

// Cold: everything a pick needs that depends on which hosts are ejected.
std::unique_ptr<load_balancer::health_view> load_balancer::make_view() const {
  view_parts v;
  // The state each member counts as: ejected hosts are unhealthy (Envoy's FAILED_OUTLIER_CHECK),
  // excluded hosts stay excluded. Read once, so the whole view sees one ejected set.
  std::vector<host_health> state(members_.size());
  for (std::size_t i = 0; i < members_.size(); ++i) {
    const member& m = members_[i];
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
  counts.reserve(priorities_.size());
  v.locality_counts.resize(localities_.size());
  for (const priority_layout& pl : priorities_) {
    counts.push_back(count(pl.begin, pl.end));
    for (std::uint32_t l = pl.locality_begin; l < pl.locality_end; ++l) {
      v.locality_counts[l] = count(localities_[l].begin, localities_[l].end);
    }
  }
  const priority_loads loads = compute_priority_loads(counts, overprovisioning_factor_, panic_threshold_);
  // Refs before sharing: each priority's all, healthy and degraded hosts, and with locality
  // weighting its localities' healthy and degraded hosts again (no regrowth on 10,000 hosts).
  std::size_t ref_bound = 0;
  for (const priority_counts& c : counts) ref_bound += c.hosts + (c.healthy + c.degraded) * (locality_weighted_ ? 2 : 1);
  v.refs.reserve(ref_bound);
  v.sources.reserve(priorities_.size() * 3 + (locality_weighted_ ? localities_.size() * 2 : 0));
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
      if (wanted(state[i])) v.refs.push_back({members_[i].target, members_[i].weight});
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
    if (reachable && policy_ != lb_policy::random && src.size > 1 && !weights_equal(refs, src.size)) {
      std::vector<double> w(src.size);
      for (std::uint32_t i = 0; i < src.size; ++i) {
        w[i] = policy_ == lb_policy::least_request
                   ? refs[i].weight / std::pow(refs[i].target->active_connections() + 1.0, active_request_bias_)
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
  for (std::size_t p = 0; p < priorities_.size(); ++p) {
    const priority_layout& pl = priorities_[p];
    priority_picker pp;
    pp.counts = counts[p];
    pp.availability = loads.health[p];
    pp.degraded_availability = loads.degraded[p];
    pp.healthy_load = loads.healthy_load[p];
    pp.degraded_load = loads.degraded_load[p];
    pp.panic = loads.panic[p];
    const bool healthy_picks = !pp.panic && pp.healthy_load > 0;
    const bool degraded_picks = !pp.panic && pp.degraded_load > 0;
    bool healthy_schedule = false, degraded_schedule = false;
    healthy_locality_weights.clear();
    degraded_locality_weights.clear();
    if (locality_weighted_) {
      // Effective weights (locality_wrr.cc). No schedule when no locality has one: picks then
      // use the whole priority, as Envoy's LocalityWrr does without a scheduler.
      for (std::uint32_t l = pl.locality_begin; l < pl.locality_end; ++l) {
        const locality_layout& ll = localities_[l];
        const priority_counts& c = v.locality_counts[l];
        healthy_locality_weights.push_back(
            effective_locality_weight(ll.weight, c.healthy, c.hosts, c.excluded, overprovisioning_factor_));
        degraded_locality_weights.push_back(
            effective_locality_weight(ll.weight, c.degraded, c.hosts, c.excluded, overprovisioning_factor_));
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
    if (locality_weighted_) {
      for (std::uint32_t l = pl.locality_begin, i = 0; l < pl.locality_end; ++l, ++i) {
        const locality_layout& ll = localities_[l];
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

  auto view = health_view::pack(v, workers_, seed_);
  // The same for a new view (an ejection or a return): workers that have picked get their state
  // made here, before the view is published, so their picks never allocate.
  for (std::size_t w = 0; w < workers_; ++w) {
    if (slots_.peek(w) != nullptr) view->worker(w);
  }
  return view;
}

void load_balancer::publish_locked(std::unique_ptr<health_view> v) {
  v->generation = next_generation_++;
  std::uint64_t healthy = 0, degraded = 0, excluded = 0, total = 0;
  for (const priority_picker& pp : std::span(v->priorities, v->priority_count)) {
    const priority_counts& c = pp.counts;
    healthy += c.healthy;
    degraded += c.degraded;
    excluded += c.excluded;
    total += c.hosts;
  }
  shared_state& s = *shared_;
  s.membership_healthy.store(healthy, std::memory_order_relaxed);
  s.membership_degraded.store(degraded, std::memory_order_relaxed);
  s.membership_excluded.store(excluded, std::memory_order_relaxed);
  s.membership_total.store(total, std::memory_order_relaxed);
  health_view* old = view_.exchange(v.release(), std::memory_order_seq_cst);
  if (old != nullptr) retired_.push_back(old);
  reclaim_locked();
}

// Hazard-pointer reclamation: a retired view is freed once no worker announces it. A worker
// announces the view (seq_cst store) and then re-reads view_; publish_locked swapped view_
// (seq_cst) before this scan. So either the scan sees the announcement, or the worker's re-read
// sees the new view and drops the old one without using it.
void load_balancer::reclaim_locked() {
  std::erase_if(retired_, [this](health_view* r) {
    for (std::size_t w = 0; w < workers_; ++w) {
      const worker_slot* slot = slots_.peek(w);
      if (slot != nullptr && slot->hazard.load(std::memory_order_seq_cst) == r) return false;
    }
    delete r;
    return true;
  });
}

load_balancer::worker_slot& load_balancer::slot(std::size_t w) {
  return slots_.get(w, [&] {
    auto s = std::make_unique<worker_slot>();
    s->random = fast_random(fast_random::mix(seed_ + 0x9e3779b97f4a7c15ull * (w + 1)));
    return s.release();
  });
}

const load_balancer::health_view* load_balancer::enter(worker_slot& slot) {
  const health_view* v = view_.load(std::memory_order_acquire);
  for (;;) {
    slot.hazard.store(v, std::memory_order_seq_cst);
    const health_view* again = view_.load(std::memory_order_seq_cst);
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
  const health_view* v = enter(own);
  host* h = nullptr;
  if (avoid.empty()) {
    std::uint32_t source_id = 0;
    h = pick_once(*v, w, random, source_id);
  } else {
    h = pick_other(*v, w, random, avoid);
  }
  own.hazard.store(nullptr, std::memory_order_release);
  return h;
}

host* load_balancer::pick_once(const health_view& v, std::size_t w, random_source& random, std::uint32_t& source_out) {
  const std::size_t n = v.priority_count;
  if (n == 0) return nullptr;

  // Envoy's choosePriority: h in 1..100 over the cumulative healthy loads, then degraded loads.
  const std::uint64_t r = random.next();
  const std::uint32_t h = static_cast<std::uint32_t>(r % 100) + 1;
  std::size_t p = 0;
  bool use_degraded = false;
  std::uint32_t cumulative = 0;
  bool found = false;
  for (std::size_t i = 0; i < n && !found; ++i) {
    cumulative += v.priorities[i].healthy_load;
    if (h <= cumulative) p = i, found = true;
  }
  for (std::size_t i = 0; i < n && !found; ++i) {
    cumulative += v.priorities[i].degraded_load;
    if (h <= cumulative) p = i, use_degraded = true, found = true;
  }

  const priority_picker& pp = v.priorities[p];
  worker_state& ws = v.worker(w);
  std::uint32_t sid = use_degraded ? pp.degraded_source : pp.healthy_source;
  if (pp.panic) {
    shared_->panic.fetch_add(1, std::memory_order_relaxed);
    sid = pp.all_source;
  } else if (locality_weighted_) {
    const std::int32_t e = use_degraded ? pp.degraded_locality_edf : pp.healthy_locality_edf;
    if (e >= 0) {
      const double* weights = v.weights + v.schedules[e].begin;
      const std::uint32_t locality = ws.edf[e].pick([&weights](std::uint32_t i) { return weights[i]; });
      sid = pp.locality_sources + 2 * locality + (use_degraded ? 1 : 0);
    }
  }
  source_out = sid;

  const source& s = v.sources[sid];
  if (s.size == 0) return nullptr;
  const host_ref* refs = v.refs + s.begin;
  switch (policy_) {
    case lb_policy::round_robin:
      if (s.edf >= 0) {
        return refs[ws.edf[s.edf].pick([refs](std::uint32_t i) { return static_cast<double>(refs[i].weight); })].target;
      }
      return refs[ws.rr[sid]++ % s.size].target;
    case lb_policy::least_request: {
      if (s.edf >= 0) {
        const double bias = active_request_bias_;
        return refs[ws.edf[s.edf].pick([refs, bias](std::uint32_t i) {
                 const double active = refs[i].target->active_connections() + 1.0;
                 if (bias == 1.0) return refs[i].weight / active;
                 if (bias == 0.0) return static_cast<double>(refs[i].weight);
                 return refs[i].weight / std::pow(active, bias);
               })].target;
      }
      // Envoy's unweightedHostPickNChoices: sample choice_count hosts (with replacement), keep
      // the first with the fewest active connections.
      host* best = nullptr;
      std::uint32_t best_active = 0;
      for (std::uint32_t c = 0; c < choice_count_; ++c) {
        host* candidate = refs[random.next() % s.size].target;
        const std::uint32_t active = candidate->active_connections();
        if (best == nullptr || active < best_active) best = candidate, best_active = active;
      }
      return best;
    }
    case lb_policy::random:
      // Envoy's RandomLoadBalancer reuses the priority draw to index the hosts.
      return refs[r % s.size].target;
  }
  return nullptr;
}

// A pick that avoids the hosts in `avoid` when any other host can be given: two more ordinary
// picks (as Envoy re-picks when a host is rejected), then the rest of the chosen source, then any
// healthy, degraded or (in panic priorities) other host, highest priority first. When every
// candidate was tried, an ordinary pick (a retry on a tried host beats no retry).
host* load_balancer::pick_other(const health_view& v, std::size_t w, random_source& random,
                                std::span<const host* const> avoid) {
  const auto avoided = [avoid](const host* h) { return std::find(avoid.begin(), avoid.end(), h) != avoid.end(); };
  std::uint32_t sid = 0;
  host* h = nullptr;
  host* first = nullptr;
  for (int attempt = 0; attempt < 3; ++attempt) {
    h = pick_once(v, w, random, sid);
    if (attempt == 0) first = h;
    if (!avoided(h)) return h;
  }
  const auto scan = [&](std::uint32_t id) -> host* {
    const source& s = v.sources[id];
    if (s.size == 0) return nullptr;
    const std::uint64_t start = random.next();
    for (std::uint32_t i = 0; i < s.size; ++i) {
      host* candidate = v.refs[s.begin + (start + i) % s.size].target;
      if (!avoided(candidate)) return candidate;
    }
    return nullptr;
  };
  if (host* o = scan(sid)) return o;
  const std::span<const priority_picker> priorities(v.priorities, v.priority_count);
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
  if (!outlier_) return false;
  outlier_detector detector(outlier_->config, outlier_->hosts, shared_->outlier_stats_locked(), random);
  const bool changed = interval ? detector.tick(now) : detector.process_detections(now);
  if (changed) publish_locked(make_view());
  return changed;
}

bool load_balancer::process_detections(time_point now, random_source& random) {
  std::lock_guard<std::mutex> lock(shared_->cold);
  return outlier_pass_locked(now, random, false);
}

bool load_balancer::process_detections(time_point now) {
  std::lock_guard<std::mutex> lock(shared_->cold);
  return outlier_pass_locked(now, shared_->cold_random, false);
}

bool load_balancer::tick(time_point now, random_source& random) {
  std::lock_guard<std::mutex> lock(shared_->cold);
  return outlier_pass_locked(now, random, true);
}

bool load_balancer::tick(time_point now) {
  std::lock_guard<std::mutex> lock(shared_->cold);
  return outlier_pass_locked(now, shared_->cold_random, true);
}

std::chrono::milliseconds load_balancer::outlier_interval() const {
  return outlier_ ? outlier_->config.interval : std::chrono::milliseconds(0);
}

lb_stats load_balancer::stats() const {
  lb_stats out;
  out.membership_healthy = shared_->membership_healthy.load(std::memory_order_relaxed);
  out.membership_degraded = shared_->membership_degraded.load(std::memory_order_relaxed);
  out.membership_excluded = shared_->membership_excluded.load(std::memory_order_relaxed);
  out.membership_total = shared_->membership_total.load(std::memory_order_relaxed);
  if (const atomic_outlier_stats* s = shared_->outlier.load(std::memory_order_acquire)) s->load_into(out);
  out.lb_healthy_panic = shared_->panic.load(std::memory_order_relaxed);
  return out;
}

balancer_state load_balancer::explain() const {
  std::lock_guard<std::mutex> lock(shared_->cold);
  const health_view& v = *view_.load(std::memory_order_acquire);
  balancer_state out;
  out.view_generation = v.generation;
  out.overprovisioning_factor = overprovisioning_factor_;
  out.panic_threshold = panic_threshold_;
  out.locality_weighted = locality_weighted_;
  out.policy = policy_;
  out.outlier_detection = outlier_ != nullptr;
  const outlier_detection_config& outlier = outlier_ ? outlier_->config : no_outlier_detection;
  out.outlier_interval = outlier_interval();
  out.normalized_total_availability = v.normalized_total_availability;
  out.total_panic = v.total_panic;
  for (std::size_t p = 0; p < priorities_.size(); ++p) {
    const priority_layout& pl = priorities_[p];
    priority_state ps;
    const priority_picker& pp = v.priorities[p];
    ps.counts = pp.counts;
    ps.health = pp.availability;
    ps.degraded = pp.degraded_availability;
    ps.healthy_load = pp.healthy_load;
    ps.degraded_load = pp.degraded_load;
    ps.panic = pp.panic;
    for (std::uint32_t l = pl.locality_begin; l < pl.locality_end; ++l) {
      const locality_layout& ll = localities_[l];
      locality_state ls;
      ls.name = locality_names_.substr(ll.name_begin, ll.name_size);
      ls.weight = ll.weight;
      ls.counts = v.locality_counts[l];
      ls.effective_weight =
          effective_locality_weight(ll.weight, ls.counts.healthy, ls.counts.hosts, ls.counts.excluded, overprovisioning_factor_);
      ls.effective_degraded_weight = effective_locality_weight(ll.weight, ls.counts.degraded, ls.counts.hosts,
                                                               ls.counts.excluded, overprovisioning_factor_);
      ps.localities.push_back(std::move(ls));
      for (std::uint32_t i = ll.begin; i < ll.end; ++i) {
        const member& m = members_[i];
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
