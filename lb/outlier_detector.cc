#include "lb/outlier_detector.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace ewgw::lb {

std::atomic<std::uint64_t>& atomic_outlier_stats::detected(ejection_kind k) {
  switch (k) {
    case ejection_kind::consecutive_5xx: return ejections_detected_consecutive_5xx;
    case ejection_kind::consecutive_gateway_failure: return ejections_detected_consecutive_gateway_failure;
    case ejection_kind::consecutive_local_origin_failure: return ejections_detected_consecutive_local_origin_failure;
    case ejection_kind::success_rate: return ejections_detected_success_rate;
    case ejection_kind::local_origin_success_rate: return ejections_detected_local_origin_success_rate;
    case ejection_kind::failure_percentage: return ejections_detected_failure_percentage;
    case ejection_kind::local_origin_failure_percentage: return ejections_detected_local_origin_failure_percentage;
  }
  return ejections_detected_consecutive_5xx;
}

std::atomic<std::uint64_t>& atomic_outlier_stats::enforced(ejection_kind k) {
  switch (k) {
    case ejection_kind::consecutive_5xx: return ejections_enforced_consecutive_5xx;
    case ejection_kind::consecutive_gateway_failure: return ejections_enforced_consecutive_gateway_failure;
    case ejection_kind::consecutive_local_origin_failure: return ejections_enforced_consecutive_local_origin_failure;
    case ejection_kind::success_rate: return ejections_enforced_success_rate;
    case ejection_kind::local_origin_success_rate: return ejections_enforced_local_origin_success_rate;
    case ejection_kind::failure_percentage: return ejections_enforced_failure_percentage;
    case ejection_kind::local_origin_failure_percentage: return ejections_enforced_local_origin_failure_percentage;
  }
  return ejections_enforced_consecutive_5xx;
}

namespace {

void bump(std::atomic<std::uint64_t>& c) { c.fetch_add(1, std::memory_order_relaxed); }

}  // namespace

outlier_detector::outlier_detector(const outlier_detection_config& config, std::span<host* const> hosts,
                                   atomic_outlier_stats& stats, random_source& random)
    : config_(config), hosts_(hosts), stats_(stats), random_(random) {
  for (host* h : hosts_) ejected_ += h->ejected() ? 1 : 0;
}

void outlier_detector::configure(host& h, const outlier_detection_config& config) {
  host::outlier_state_block* s = h.outlier_block();
  if (s == nullptr && !config.enabled) return;  // never enabled: nothing to reset, nothing ejected
  const bool fresh = s == nullptr;
  if (fresh) s = new host::outlier_state_block();
  s->split.store(config.split_external_local_origin_errors, std::memory_order_relaxed);
  s->threshold_5xx.store(config.consecutive_5xx, std::memory_order_relaxed);
  s->threshold_gateway_failure.store(config.consecutive_gateway_failure, std::memory_order_relaxed);
  s->threshold_local_origin_failure.store(config.consecutive_local_origin_failure, std::memory_order_relaxed);
  s->detect.store(config.enabled, std::memory_order_relaxed);
  // Published after its settings, so a worker that sees the block sees them (host::report
  // loads it with acquire).
  if (fresh) h.outlier_.store(s, std::memory_order_release);
  if (!config.enabled) {
    s->ejected.store(false, std::memory_order_release);
    s->pending.store(0, std::memory_order_relaxed);
    s->consecutive_5xx.store(0, std::memory_order_relaxed);
    s->consecutive_gateway_failure.store(0, std::memory_order_relaxed);
    s->consecutive_local_origin_failure.store(0, std::memory_order_relaxed);
    s->cold = outlier_cold_state{};
  }
}

// runtime featureEnabled(key, percent): random % 100 < percent.
bool outlier_detector::enforce(ejection_kind kind) {
  std::uint32_t percent = 0;
  switch (kind) {
    case ejection_kind::consecutive_5xx: percent = config_.enforcing_consecutive_5xx; break;
    case ejection_kind::consecutive_gateway_failure: percent = config_.enforcing_consecutive_gateway_failure; break;
    case ejection_kind::consecutive_local_origin_failure:
      percent = config_.enforcing_consecutive_local_origin_failure;
      break;
    case ejection_kind::success_rate: percent = config_.enforcing_success_rate; break;
    case ejection_kind::local_origin_success_rate: percent = config_.enforcing_local_origin_success_rate; break;
    case ejection_kind::failure_percentage: percent = config_.enforcing_failure_percentage; break;
    case ejection_kind::local_origin_failure_percentage:
      percent = config_.enforcing_failure_percentage_local_origin;
      break;
  }
  return random_.next() % 100 < percent;
}

// Envoy's DetectorImpl::ejectHost. The max_ejection_percent check counts every host of the
// cluster, across priorities, so a whole priority can be ejected.
bool outlier_detector::eject(host& h, ejection_kind kind, time_point now) {
  if (h.ejected()) return false;  // already out (e.g. flagged by both success rate and failure percentage)
  const double max_percent = std::min<std::uint32_t>(100, config_.max_ejection_percent);
  const double ejected_percent = 100.0 * (ejected_ + 1) / static_cast<double>(hosts_.size());
  bool allowed = ejected_percent <= max_percent;
  if (config_.always_eject_one_host) allowed = allowed || ejected_ == 0;
  if (!allowed) {
    bump(stats_.ejections_overflow);
    return false;
  }
  if (!enforce(kind)) return false;

  ++ejected_;
  bump(stats_.ejections_enforced_total);
  bump(stats_.enforced(kind));
  outlier_cold_state& s = h.outlier_block()->cold;
  ++s.num_ejections;
  s.last_ejection = now;
  const auto jitter_ms = static_cast<std::uint64_t>(config_.max_ejection_time_jitter.count());
  s.jitter = std::chrono::milliseconds(random_.next() % (jitter_ms + 1));
  const auto base = config_.base_ejection_time;
  const auto max = config_.effective_max_ejection_time();
  if (base * s.backoff < max + base) ++s.backoff;
  h.outlier_block()->ejected.store(true, std::memory_order_release);
  return true;
}

// Envoy's DetectorImpl::unejectHost: also resets the consecutive counters so a host does not
// return one failure away from re-ejection.
void outlier_detector::uneject(host& h, time_point now) {
  --ejected_;
  host::outlier_state_block& s = *h.outlier_block();
  s.ejected.store(false, std::memory_order_release);
  s.consecutive_5xx.store(0, std::memory_order_relaxed);
  s.consecutive_gateway_failure.store(0, std::memory_order_relaxed);
  s.consecutive_local_origin_failure.store(0, std::memory_order_relaxed);
  s.cold.last_unejection = now;
}

bool outlier_detector::process_detections(time_point now) {
  static constexpr ejection_kind order[] = {ejection_kind::consecutive_gateway_failure, ejection_kind::consecutive_5xx,
                                            ejection_kind::consecutive_local_origin_failure};
  bool changed = false;
  for (host* h : hosts_) {
    host::outlier_state_block& s = *h->outlier_block();
    if (s.pending.load(std::memory_order_relaxed) == 0) continue;
    const std::uint32_t bits = s.pending.exchange(0, std::memory_order_acquire);
    for (ejection_kind kind : order) {
      if ((bits & host::pending_bit(kind)) == 0) continue;
      if (h->ejected()) continue;  // Envoy ignores (and does not reset) detections on an ejected host
      bump(stats_.detected(kind));
      changed = eject(*h, kind, now) || changed;
      switch (kind) {
        case ejection_kind::consecutive_gateway_failure:
          s.consecutive_gateway_failure.store(0, std::memory_order_relaxed);
          break;
        case ejection_kind::consecutive_5xx: s.consecutive_5xx.store(0, std::memory_order_relaxed); break;
        default: s.consecutive_local_origin_failure.store(0, std::memory_order_relaxed); break;
      }
    }
  }
  stats_.ejections_active.store(ejected_, std::memory_order_relaxed);
  return changed;
}

bool outlier_detector::tick(time_point now) {
  bool changed = process_detections(now);
  const auto base = config_.base_ejection_time;
  const auto max = config_.effective_max_ejection_time();

  for (host* h : hosts_) {
    outlier_cold_state& s = h->outlier_block()->cold;
    if (h->ejected() && std::min(base * s.backoff, max) + s.jitter <= now - s.last_ejection) {
      uneject(*h, now);
      changed = true;
    }
  }

  changed = success_rate_pass(false, now) || changed;
  changed = success_rate_pass(true, now) || changed;

  // A host that has been back for a whole interval earns its ejection time back step by step.
  for (host* h : hosts_) {
    outlier_cold_state& s = h->outlier_block()->cold;
    if (!h->ejected() && s.last_unejection && now - *s.last_unejection >= config_.interval && s.backoff != 0) {
      --s.backoff;
    }
  }
  stats_.ejections_active.store(ejected_, std::memory_order_relaxed);
  return changed;
}

// Envoy's processSuccessRateEjections for one monitor type, over this interval's results (the
// difference of each host's cumulative counters since the previous tick).
bool outlier_detector::success_rate_pass(bool local_origin, time_point now) {
  struct sample {
    host* target;
    double rate;
  };
  std::vector<sample> success_rate_hosts;
  std::vector<sample> failure_percentage_hosts;
  double rate_sum = 0;

  // Advance every host's interval bucket, ejected or not (Envoy swaps buckets for all hosts).
  struct bucket {
    std::uint64_t total, success;
  };
  std::vector<bucket> buckets(hosts_.size());
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    host::outlier_state_block& block = *hosts_[i]->outlier_block();
    outlier_cold_state& s = block.cold;
    const std::uint64_t total = (local_origin ? block.local_total : block.external_total).load(std::memory_order_relaxed);
    const std::uint64_t success =
        (local_origin ? block.local_success : block.external_success).load(std::memory_order_relaxed);
    std::uint64_t& seen_total = local_origin ? s.seen_local_total : s.seen_external_total;
    std::uint64_t& seen_success = local_origin ? s.seen_local_success : s.seen_external_success;
    buckets[i] = {total - seen_total, success - seen_success};
    seen_total = total;
    seen_success = success;
    (local_origin ? s.local_success_rate : s.external_success_rate) = -1;
  }

  const std::uint64_t host_count = hosts_.size();
  if (host_count < config_.success_rate_minimum_hosts && host_count < config_.failure_percentage_minimum_hosts) {
    return false;
  }
  const std::uint64_t sr_volume = config_.success_rate_request_volume;
  const std::uint64_t fp_volume = config_.failure_percentage_request_volume;
  for (std::size_t i = 0; i < hosts_.size(); ++i) {
    host& h = *hosts_[i];
    if (h.ejected() || buckets[i].total == 0) continue;
    const double rate = buckets[i].success * 100.0 / static_cast<double>(buckets[i].total);
    if (buckets[i].total >= std::min(sr_volume, fp_volume)) {
      outlier_cold_state& s = h.outlier_block()->cold;
      (local_origin ? s.local_success_rate : s.external_success_rate) = rate;
    }
    if (buckets[i].total >= sr_volume) {
      success_rate_hosts.push_back({&h, rate});
      rate_sum += rate;
    }
    if (buckets[i].total >= fp_volume) failure_percentage_hosts.push_back({&h, rate});
  }

  bool changed = false;
  if (!success_rate_hosts.empty() && success_rate_hosts.size() >= config_.success_rate_minimum_hosts) {
    // Outliers sit more than stdev_factor standard deviations below the mean success rate.
    const double mean = rate_sum / static_cast<double>(success_rate_hosts.size());
    double variance = 0;
    for (const sample& s : success_rate_hosts) variance += (s.rate - mean) * (s.rate - mean);
    variance /= static_cast<double>(success_rate_hosts.size());
    const double threshold = mean - (config_.success_rate_stdev_factor / 1000.0) * std::sqrt(variance);
    const ejection_kind kind = local_origin ? ejection_kind::local_origin_success_rate : ejection_kind::success_rate;
    for (const sample& s : success_rate_hosts) {
      if (s.rate < threshold) {
        bump(stats_.detected(kind));
        changed = eject(*s.target, kind, now) || changed;
      }
    }
  }
  if (!failure_percentage_hosts.empty() && failure_percentage_hosts.size() >= config_.failure_percentage_minimum_hosts) {
    const ejection_kind kind =
        local_origin ? ejection_kind::local_origin_failure_percentage : ejection_kind::failure_percentage;
    for (const sample& s : failure_percentage_hosts) {
      if (100.0 - s.rate >= config_.failure_percentage_threshold) {
        bump(stats_.detected(kind));
        changed = eject(*s.target, kind, now) || changed;
      }
    }
  }
  return changed;
}

}  // namespace ewgw::lb
