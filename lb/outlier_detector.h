// The cold half of outlier detection (Envoy's Outlier::DetectorImpl, outlier_detection_impl.cc,
// for the results a TCP proxy reports). The hot half is host::report(): relaxed atomics on the
// data path, flagging a consecutive-failure detection the moment a counter reaches its threshold.
// Everything that decides (enforcement, max_ejection_percent, ejection length and backoff,
// success rate and failure percentage) runs here, off the data path, with the time and the
// randomness passed in.
//
// Not thread-safe: the load balancer calls it with its cluster's cold mutex held.
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "lb/config.h"
#include "lb/host.h"
#include "lb/lb_stats.h"
#include "lb/random.h"

namespace ewgw::lb {

// The atomic twin of lb_stats' outlier_detection.* counters, generated from the same list.
// Shared by every balancer generation of one cluster, so counters survive endpoint updates; made
// the first time the cluster enables outlier detection (the others read zero until then).
struct atomic_outlier_stats {
#define EWGW_LB_STAT_ATOMIC(member, name, kind) std::atomic<std::uint64_t> member{0};
  EWGW_LB_OUTLIER_STATS(EWGW_LB_STAT_ATOMIC)
#undef EWGW_LB_STAT_ATOMIC

  void load_into(lb_stats& out) const {
#define EWGW_LB_STAT_LOAD(member, name, kind) out.member = member.load(std::memory_order_relaxed);
    EWGW_LB_OUTLIER_STATS(EWGW_LB_STAT_LOAD)
#undef EWGW_LB_STAT_LOAD
  }
  std::atomic<std::uint64_t>& detected(ejection_kind k);
  std::atomic<std::uint64_t>& enforced(ejection_kind k);
};

class outlier_detector {
 public:
  // `hosts`: every host of the cluster, across priorities, each once (max_ejection_percent and
  // the minimum-hosts checks count them).
  outlier_detector(const outlier_detection_config& config, std::span<host* const> hosts, atomic_outlier_stats& stats,
                   random_source& random);

  // Copies the detection settings into the host's hot half; with detection disabled, also
  // un-ejects the host and clears its outlier state.
  static void configure(host& h, const outlier_detection_config& config);

  // Handles the consecutive-failure detections the data path flagged since the last call: for
  // each, in the order Envoy posts them (gateway failure, then 5xx, then local origin), count it
  // as detected, try to eject, and reset that counter. Detections on an already-ejected host are
  // dropped, as in Envoy. Returns true if a host was ejected.
  bool process_detections(time_point now);

  // One interval timer tick (Envoy's onIntervalTimer), preceded by process_detections(): un-eject
  // hosts whose ejection has lasted min(base * backoff, max) + jitter, success-rate and
  // failure-percentage detection over the interval's results, then backoff decay. Returns true
  // if the set of ejected hosts changed.
  bool tick(time_point now);

  std::uint32_t ejected_count() const { return ejected_; }

 private:
  bool eject(host& h, ejection_kind kind, time_point now);
  void uneject(host& h, time_point now);
  bool enforce(ejection_kind kind);
  bool success_rate_pass(bool local_origin, time_point now);

  const outlier_detection_config& config_;
  std::span<host* const> hosts_;
  atomic_outlier_stats& stats_;
  random_source& random_;
  std::uint32_t ejected_ = 0;
};

}  // namespace ewgw::lb
