// Outlier detection (ENVOY-SEMANTICS.md "Outlier detection for a TCP proxy"): the hot half
// (host::report) and the cold half (process_detections / tick) with an injected clock.
#include <gtest/gtest.h>

#include <chrono>

#include "lb/load_balancer.h"
#include "test/lb/lb_test_util.h"

namespace ewgw::lb {
namespace {

using namespace std::chrono_literals;
using testing::find;
using testing::h;
using testing::make;
using testing::priority;
using testing::scripted_random;

const time_point t0 = time_point{} + 1000s;

// `n` hosts on ports 1..n in P0, outlier detection on with the given max_ejection_percent.
cluster_config cluster(std::uint16_t n, std::uint32_t max_percent = 100) {
  cluster_config c;
  std::vector<host_config> hosts;
  for (std::uint16_t i = 1; i <= n; ++i) hosts.push_back(h(i));
  c.priorities = {priority(hosts)};
  c.outlier_detection.enabled = true;
  c.outlier_detection.max_ejection_percent = max_percent;
  return c;
}

void repeat(host& x, outcome o, int n) {
  for (int i = 0; i < n; ++i) x.report(o);
}

// Scenario 5: 500 then 200 resets the count; four failures do not eject, the fifth does
// (max_ejection_percent 100). Interval 10s, base 30s, ejected at t=0: still ejected at the
// 9.999s tick, back at the 30.001s tick.
TEST(OutlierDetection, Scenario5ConsecutiveFailuresAndEjectionTime) {
  auto lb = make(cluster(2));
  host& a = *find(*lb, 1);
  EXPECT_FALSE(a.report(outcome::request_failed));  // 500
  EXPECT_EQ(a.consecutive_5xx(), 1u);
  EXPECT_FALSE(a.report(outcome::request_success));  // 200
  EXPECT_EQ(a.consecutive_5xx(), 0u);

  for (int i = 0; i < 4; ++i) EXPECT_FALSE(a.report(outcome::request_failed));
  EXPECT_FALSE(lb->tick(t0));
  EXPECT_FALSE(a.ejected());
  EXPECT_TRUE(a.report(outcome::request_failed));  // the fifth: detection pending
  EXPECT_TRUE(lb->tick(t0));                       // enforced at the tick
  EXPECT_TRUE(a.ejected());
  EXPECT_EQ(a.consecutive_5xx(), 0u);  // reset when the detection was handled
  for (int i = 0; i < 10; ++i) EXPECT_NE(lb->pick(0), &a);

  EXPECT_FALSE(lb->tick(t0 + 9999ms));
  EXPECT_TRUE(a.ejected());
  EXPECT_FALSE(lb->tick(t0 + 29999ms));
  EXPECT_TRUE(a.ejected());
  EXPECT_TRUE(lb->tick(t0 + 30001ms));
  EXPECT_FALSE(a.ejected());

  const lb_stats s = lb->stats();
  EXPECT_EQ(s.ejections_detected_consecutive_5xx, 1u);
  EXPECT_EQ(s.ejections_enforced_consecutive_5xx, 1u);
  EXPECT_EQ(s.ejections_enforced_total, 1u);
  EXPECT_EQ(s.ejections_detected_consecutive_gateway_failure, 0u);  // a 500 is not a gateway error
  EXPECT_EQ(s.ejections_active, 0u);
}

// Scenario 6: base 10s, interval 10s. Ejections last 10s, 20s, 30s when re-ejected at once after
// each return; after two healthy intervals the next lasts 20s; after many, 10s.
TEST(OutlierDetection, Scenario6BackoffGrowsAndDecays) {
  cluster_config c = cluster(2);
  c.outlier_detection.base_ejection_time = 10s;
  c.outlier_detection.interval = 10s;
  auto lb = make(c);
  host& a = *find(*lb, 1);
  const auto eject_at = [&](time_point now) {
    repeat(a, outcome::request_failed, 5);
    EXPECT_TRUE(lb->process_detections(now));
    EXPECT_TRUE(a.ejected());
  };
  // Ticks every interval from `from` (exclusive); returns when a came back.
  const auto ejection_length = [&](time_point from) {
    for (auto t = from + 10s; t <= from + 400s; t += 10s) {
      lb->tick(t);
      if (!a.ejected()) return t - from;
    }
    return time_point::duration::max();
  };
  const auto backoff = [&] { return lb->explain().hosts[0].ejection_backoff; };

  eject_at(t0);
  EXPECT_EQ(ejection_length(t0), 10s);
  eject_at(t0 + 10s);
  EXPECT_EQ(ejection_length(t0 + 10s), 20s);
  eject_at(t0 + 30s);
  EXPECT_EQ(ejection_length(t0 + 30s), 30s);
  EXPECT_EQ(backoff(), 3u);

  lb->tick(t0 + 70s);  // one healthy interval
  EXPECT_EQ(backoff(), 2u);
  lb->tick(t0 + 80s);  // two
  EXPECT_EQ(backoff(), 1u);
  eject_at(t0 + 80s);
  EXPECT_EQ(ejection_length(t0 + 80s), 20s);

  for (auto t = t0 + 110s; t <= t0 + 200s; t += 10s) lb->tick(t);  // many
  EXPECT_EQ(backoff(), 0u);
  eject_at(t0 + 200s);
  EXPECT_EQ(ejection_length(t0 + 200s), 10s);
}

TEST(OutlierDetection, MaxEjectionTimeCapsTheLength) {
  cluster_config c = cluster(2);
  c.outlier_detection.base_ejection_time = 10s;
  c.outlier_detection.max_ejection_time = 25s;
  auto lb = make(c);
  host& a = *find(*lb, 1);
  std::vector<std::uint32_t> backoffs;
  std::vector<long> lengths;
  time_point now = t0;
  for (int i = 0; i < 5; ++i) {
    repeat(a, outcome::request_failed, 5);
    lb->process_detections(now);
    backoffs.push_back(lb->explain().hosts[0].ejection_backoff);
    const time_point from = now;
    while (a.ejected()) lb->tick(now += 1s);
    lengths.push_back(static_cast<long>(std::chrono::duration_cast<std::chrono::seconds>(now - from).count()));
  }
  // backoff grows while backoff * base < max + base (35s): 1, 2, 3, 4, then stays.
  EXPECT_EQ(backoffs, (std::vector<std::uint32_t>{1, 2, 3, 4, 4}));
  EXPECT_EQ(lengths, (std::vector<long>{10, 20, 25, 25, 25}));
}

// Without split, a connect failure is a 503 and a timeout a 504: both count on the 5xx and the
// gateway-failure counters; a connect success (200) resets both.
TEST(OutlierDetection, ConnectResultsWithoutSplit) {
  auto lb = make(cluster(2));
  host& a = *find(*lb, 1);
  repeat(a, outcome::connect_failed, 3);
  a.report(outcome::connect_timeout);
  EXPECT_EQ(a.consecutive_5xx(), 4u);
  EXPECT_EQ(a.consecutive_gateway_failure(), 4u);
  EXPECT_EQ(a.consecutive_local_origin_failure(), 0u);
  a.report(outcome::connect_success);
  EXPECT_EQ(a.consecutive_5xx(), 0u);
  EXPECT_EQ(a.consecutive_gateway_failure(), 0u);

  // A plain 500 (request_failed) resets the gateway counter but not the 5xx one.
  repeat(a, outcome::connect_failed, 3);
  a.report(outcome::request_failed);
  EXPECT_EQ(a.consecutive_5xx(), 4u);
  EXPECT_EQ(a.consecutive_gateway_failure(), 0u);
  a.report(outcome::connect_success);

  // Five connect failures: both counters fire. Gateway failure is detected but not enforced
  // (enforcing 0 by default), 5xx is enforced. Both counters reset.
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(a.report(outcome::connect_failed));
  EXPECT_TRUE(a.report(outcome::connect_failed));
  EXPECT_TRUE(lb->process_detections(t0));
  EXPECT_TRUE(a.ejected());
  EXPECT_EQ(a.consecutive_5xx(), 0u);
  EXPECT_EQ(a.consecutive_gateway_failure(), 0u);
  const lb_stats s = lb->stats();
  EXPECT_EQ(s.ejections_detected_consecutive_gateway_failure, 1u);
  EXPECT_EQ(s.ejections_enforced_consecutive_gateway_failure, 0u);
  EXPECT_EQ(s.ejections_detected_consecutive_5xx, 1u);
  EXPECT_EQ(s.ejections_enforced_consecutive_5xx, 1u);
  EXPECT_EQ(s.ejections_detected_consecutive_local_origin_failure, 0u);
}

// With split_external_local_origin_errors, connect results feed the local-origin counter only.
TEST(OutlierDetection, ConnectResultsWithSplit) {
  cluster_config c = cluster(2);
  c.outlier_detection.split_external_local_origin_errors = true;
  auto lb = make(c);
  host& a = *find(*lb, 1);
  repeat(a, outcome::connect_failed, 2);
  a.report(outcome::connect_timeout);
  EXPECT_EQ(a.consecutive_local_origin_failure(), 3u);
  EXPECT_EQ(a.consecutive_5xx(), 0u);
  EXPECT_EQ(a.consecutive_gateway_failure(), 0u);
  a.report(outcome::connect_success);
  EXPECT_EQ(a.consecutive_local_origin_failure(), 0u);

  // An external failure counts as a 503 on the external counters, leaving the local one alone;
  // an external success resets all three.
  repeat(a, outcome::connect_failed, 2);
  a.report(outcome::request_failed);
  EXPECT_EQ(a.consecutive_local_origin_failure(), 2u);
  EXPECT_EQ(a.consecutive_5xx(), 1u);
  EXPECT_EQ(a.consecutive_gateway_failure(), 1u);
  a.report(outcome::request_success);
  EXPECT_EQ(a.consecutive_local_origin_failure(), 0u);
  EXPECT_EQ(a.consecutive_5xx(), 0u);

  for (int i = 0; i < 4; ++i) EXPECT_FALSE(a.report(outcome::connect_timeout));
  EXPECT_TRUE(a.report(outcome::connect_failed));
  EXPECT_TRUE(lb->tick(t0));
  EXPECT_TRUE(a.ejected());
  const lb_stats s = lb->stats();
  EXPECT_EQ(s.ejections_detected_consecutive_local_origin_failure, 1u);
  EXPECT_EQ(s.ejections_enforced_consecutive_local_origin_failure, 1u);
  EXPECT_EQ(s.ejections_detected_consecutive_5xx, 0u);
  EXPECT_EQ(s.ejections_detected_consecutive_gateway_failure, 0u);
}

TEST(OutlierDetection, EnforcingZeroDetectsButDoesNotEject) {
  cluster_config c = cluster(2);
  c.outlier_detection.enforcing_consecutive_5xx = 0;
  auto lb = make(c);
  host& a = *find(*lb, 1);
  repeat(a, outcome::request_failed, 5);
  EXPECT_FALSE(lb->tick(t0));
  EXPECT_FALSE(a.ejected());
  EXPECT_EQ(a.consecutive_5xx(), 0u);  // reset even though not enforced
  EXPECT_EQ(lb->stats().ejections_detected_consecutive_5xx, 1u);
  EXPECT_EQ(lb->stats().ejections_enforced_consecutive_5xx, 0u);
  EXPECT_EQ(lb->stats().ejections_enforced_total, 0u);
  // A fresh run of five is needed for the next detection.
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(a.report(outcome::request_failed));
  EXPECT_TRUE(a.report(outcome::request_failed));
  lb->tick(t0 + 10s);
  EXPECT_EQ(lb->stats().ejections_detected_consecutive_5xx, 2u);
}

TEST(OutlierDetection, EnforcingPercentageDrawsFromTheInjectedRandom) {
  cluster_config c = cluster(2);
  c.outlier_detection.enforcing_consecutive_5xx = 50;
  auto lb = make(c);
  host& a = *find(*lb, 1);
  // random % 100 < 50 enforces: 150 -> 50, not enforced; 249 -> 49, enforced (then one draw for
  // the jitter).
  scripted_random r{150, 249, 0};
  repeat(a, outcome::request_failed, 5);
  EXPECT_FALSE(lb->tick(t0, r));
  EXPECT_FALSE(a.ejected());
  EXPECT_EQ(r.drawn(), 1u);
  repeat(a, outcome::request_failed, 5);
  EXPECT_TRUE(lb->tick(t0 + 10s, r));
  EXPECT_TRUE(a.ejected());
  EXPECT_EQ(r.drawn(), 3u);
  EXPECT_EQ(lb->stats().ejections_detected_consecutive_5xx, 2u);
  EXPECT_EQ(lb->stats().ejections_enforced_consecutive_5xx, 1u);
}

TEST(OutlierDetection, MaxEjectionPercentOverflow) {
  // 10 hosts, default 10%: the first ejection is 100 * 1 / 10 = 10 <= 10; the second would be 20.
  auto lb = make(cluster(10, 10));
  repeat(*find(*lb, 1), outcome::request_failed, 5);
  EXPECT_TRUE(lb->tick(t0));
  repeat(*find(*lb, 2), outcome::request_failed, 5);
  EXPECT_FALSE(lb->tick(t0 + 10s));
  EXPECT_FALSE(find(*lb, 2)->ejected());
  lb_stats s = lb->stats();
  EXPECT_EQ(s.ejections_overflow, 1u);
  EXPECT_EQ(s.ejections_detected_consecutive_5xx, 2u);
  EXPECT_EQ(s.ejections_enforced_consecutive_5xx, 1u);
  EXPECT_EQ(s.ejections_active, 1u);

  // Envoy checks the percentage before enforcement: a connect failure's gateway-failure
  // detection (never enforced by default) overflows too.
  repeat(*find(*lb, 3), outcome::connect_failed, 5);
  lb->tick(t0 + 20s);
  EXPECT_EQ(lb->stats().ejections_overflow, 3u);

  // Hosts are counted across priorities.
  cluster_config two = cluster(5, 20);
  two.priorities.push_back(priority({h(6), h(7), h(8), h(9), h(10)}));
  auto spread = make(two);
  repeat(*find(*spread, 1), outcome::request_failed, 5);
  repeat(*find(*spread, 2), outcome::request_failed, 5);
  repeat(*find(*spread, 3), outcome::request_failed, 5);
  spread->tick(t0);
  EXPECT_EQ(spread->stats().ejections_active, 2u);  // 20% of 10
  EXPECT_EQ(spread->stats().ejections_overflow, 1u);
}

TEST(OutlierDetection, AlwaysEjectOneHost) {
  cluster_config c = cluster(3, 0);
  c.outlier_detection.always_eject_one_host = true;
  auto lb = make(c);
  repeat(*find(*lb, 1), outcome::request_failed, 5);
  repeat(*find(*lb, 2), outcome::request_failed, 5);
  lb->tick(t0);
  EXPECT_TRUE(find(*lb, 1)->ejected());
  EXPECT_FALSE(find(*lb, 2)->ejected());
  EXPECT_EQ(lb->stats().ejections_overflow, 1u);
}

TEST(OutlierDetection, JitterLengthensTheEjection) {
  cluster_config c = cluster(2);
  c.outlier_detection.max_ejection_time_jitter = 1000ms;
  auto lb = make(c);
  host& a = *find(*lb, 1);
  scripted_random r{0, 500};  // enforce (0 < 100), then jitter 500 % 1001 = 500ms
  repeat(a, outcome::request_failed, 5);
  lb->tick(t0, r);
  ASSERT_TRUE(a.ejected());
  lb->tick(t0 + 30s, r);
  EXPECT_TRUE(a.ejected());
  lb->tick(t0 + 30500ms, r);
  EXPECT_FALSE(a.ejected());
}

TEST(OutlierDetection, DetectionsOnAnEjectedHostAreDroppedAndCountersResetOnReturn) {
  auto lb = make(cluster(2));
  host& a = *find(*lb, 1);
  repeat(a, outcome::request_failed, 5);
  lb->process_detections(t0);
  ASSERT_TRUE(a.ejected());
  // Traffic still reaches it (in-flight, or panic): the detection fires but is dropped, and
  // the counter keeps counting past the threshold (Envoy resets it on un-ejection).
  repeat(a, outcome::request_failed, 7);
  EXPECT_FALSE(lb->process_detections(t0 + 1s));
  EXPECT_EQ(a.consecutive_5xx(), 7u);
  EXPECT_EQ(lb->stats().ejections_detected_consecutive_5xx, 1u);
  lb->tick(t0 + 30s);
  ASSERT_FALSE(a.ejected());
  EXPECT_EQ(a.consecutive_5xx(), 0u);
  EXPECT_EQ(a.consecutive_gateway_failure(), 0u);
}

TEST(OutlierDetection, ReportFiresOnceAtTheThreshold) {
  auto lb = make(cluster(2));
  host& a = *find(*lb, 1);
  std::vector<bool> fired;
  for (int i = 0; i < 7; ++i) fired.push_back(a.report(outcome::request_failed));
  EXPECT_EQ(fired, (std::vector<bool>{false, false, false, false, true, false, false}));
}

TEST(OutlierDetection, SuccessRate) {
  // Envoy's example: rates 100, 100, 100, 100, 50 -> mean 90, stdev 20, threshold
  // 90 - 1.9 * 20 = 52: the fifth host goes.
  auto lb = make(cluster(5));
  for (std::uint16_t p = 1; p <= 4; ++p) repeat(*find(*lb, p), outcome::request_success, 100);
  host& bad = *find(*lb, 5);
  for (int i = 0; i < 50; ++i) {
    bad.report(outcome::request_failed);
    bad.report(outcome::request_success);
  }
  EXPECT_TRUE(lb->tick(t0));
  EXPECT_TRUE(bad.ejected());
  EXPECT_DOUBLE_EQ(bad.outlier_state().external_success_rate, 50.0);
  const lb_stats s = lb->stats();
  EXPECT_EQ(s.ejections_detected_success_rate, 1u);
  EXPECT_EQ(s.ejections_enforced_success_rate, 1u);
  EXPECT_EQ(s.ejections_detected_consecutive_5xx, 0u);
  // The next interval has no traffic: nothing to judge.
  EXPECT_FALSE(lb->tick(t0 + 10s));
  EXPECT_EQ(lb->stats().ejections_detected_success_rate, 1u);
}

TEST(OutlierDetection, SuccessRateNeedsVolumeAndHosts) {
  auto lb = make(cluster(5));
  for (std::uint16_t p = 1; p <= 4; ++p) repeat(*find(*lb, p), outcome::request_success, 100);
  host& bad = *find(*lb, 5);
  for (int i = 0; i < 49; ++i) {  // 98 requests: below success_rate_request_volume
    bad.report(outcome::request_failed);
    bad.report(outcome::request_success);
  }
  EXPECT_FALSE(lb->tick(t0));
  EXPECT_FALSE(bad.ejected());

  auto few = make(cluster(4));  // fewer than success_rate_minimum_hosts
  for (std::uint16_t p = 1; p <= 3; ++p) repeat(*find(*few, p), outcome::request_success, 100);
  for (int i = 0; i < 50; ++i) {
    find(*few, 4)->report(outcome::request_failed);
    find(*few, 4)->report(outcome::request_success);
  }
  EXPECT_FALSE(few->tick(t0));
  EXPECT_EQ(few->stats().ejections_detected_success_rate, 0u);
}

TEST(OutlierDetection, LocalOriginSuccessRateWithSplit) {
  cluster_config c = cluster(5);
  c.outlier_detection.split_external_local_origin_errors = true;
  auto lb = make(c);
  for (std::uint16_t p = 1; p <= 4; ++p) repeat(*find(*lb, p), outcome::connect_success, 100);
  host& bad = *find(*lb, 5);
  for (int i = 0; i < 50; ++i) {
    bad.report(outcome::connect_failed);
    bad.report(outcome::connect_success);
  }
  EXPECT_TRUE(lb->tick(t0));
  EXPECT_TRUE(bad.ejected());
  EXPECT_EQ(lb->stats().ejections_enforced_local_origin_success_rate, 1u);
  EXPECT_EQ(lb->stats().ejections_detected_success_rate, 0u);
}

TEST(OutlierDetection, FailurePercentage) {
  cluster_config c = cluster(5);
  c.outlier_detection.enforcing_failure_percentage = 100;
  c.outlier_detection.consecutive_5xx = 1000;  // keep the consecutive detectors out of the way
  c.outlier_detection.consecutive_gateway_failure = 1000;
  auto lb = make(c);
  for (std::uint16_t p = 1; p <= 3; ++p) repeat(*find(*lb, p), outcome::request_success, 50);
  host& meh = *find(*lb, 4);  // 80% failures: below the 85% threshold
  repeat(meh, outcome::request_failed, 40);
  repeat(meh, outcome::request_success, 10);
  host& bad = *find(*lb, 5);  // 90%
  repeat(bad, outcome::request_failed, 45);
  repeat(bad, outcome::request_success, 5);
  EXPECT_TRUE(lb->tick(t0));
  EXPECT_TRUE(bad.ejected());
  EXPECT_FALSE(meh.ejected());
  const lb_stats s = lb->stats();
  EXPECT_EQ(s.ejections_detected_failure_percentage, 1u);
  EXPECT_EQ(s.ejections_enforced_failure_percentage, 1u);
  EXPECT_EQ(s.ejections_detected_success_rate, 0u);  // 50 requests: below the success-rate volume

  // Default enforcing_failure_percentage is 0: detected, not ejected.
  c.outlier_detection.enforcing_failure_percentage = 0;
  auto unenforced = make(c);
  for (std::uint16_t p = 1; p <= 4; ++p) repeat(*find(*unenforced, p), outcome::request_success, 50);
  repeat(*find(*unenforced, 5), outcome::request_failed, 50);
  EXPECT_FALSE(unenforced->tick(t0));
  EXPECT_EQ(unenforced->stats().ejections_detected_failure_percentage, 1u);
  EXPECT_EQ(unenforced->stats().ejections_enforced_failure_percentage, 0u);
}

TEST(OutlierDetection, DisabledWithoutOutlierDetection) {
  cluster_config c = cluster(2);
  c.outlier_detection.enabled = false;
  auto lb = make(c);
  host& a = *find(*lb, 1);
  for (int i = 0; i < 10; ++i) EXPECT_FALSE(a.report(outcome::connect_failed));
  EXPECT_EQ(a.consecutive_5xx(), 0u);
  EXPECT_FALSE(lb->tick(t0));
  EXPECT_FALSE(lb->process_detections(t0));
  EXPECT_EQ(lb->outlier_interval(), 0ms);
  EXPECT_EQ(make(cluster(2))->outlier_interval(), 10s);
}

// Hosts keep their outlier state out of line, made when a generation first enables detection;
// the outlier_detection.* counters likewise. Enabling it on an update starts detection on the
// hosts taken over; disabling it un-ejects them, and the counters keep what they counted.
TEST(OutlierDetection, EnabledByAnUpdateThenDisabled) {
  cluster_config off = cluster(2);
  off.outlier_detection.enabled = false;
  auto first = make(off);
  host& a = *find(*first, 1);
  for (int i = 0; i < 5; ++i) EXPECT_FALSE(a.report(outcome::connect_failed));
  EXPECT_EQ(a.consecutive_5xx(), 0u);
  EXPECT_EQ(a.outlier_state().num_ejections, 0u);
  EXPECT_EQ(first->stats().ejections_enforced_total, 0u);

  auto on = make(cluster(2), 1, first.get());
  EXPECT_EQ(find(*on, 1), &a);  // the same host, now detecting
  for (int i = 0; i < 4; ++i) EXPECT_FALSE(a.report(outcome::connect_failed));
  EXPECT_EQ(a.consecutive_5xx(), 4u);
  EXPECT_TRUE(a.report(outcome::connect_failed));
  EXPECT_TRUE(on->process_detections(t0));
  EXPECT_TRUE(a.ejected());
  EXPECT_EQ(a.outlier_state().num_ejections, 1u);
  EXPECT_EQ(on->stats().ejections_active, 1u);
  EXPECT_EQ(on->stats().ejections_enforced_consecutive_5xx, 1u);
  EXPECT_EQ(first->stats().ejections_enforced_total, 1u);  // one set of counters per cluster

  auto off_again = make(off, 1, on.get());
  EXPECT_FALSE(a.ejected());
  EXPECT_EQ(a.outlier_state().num_ejections, 0u);
  EXPECT_FALSE(a.report(outcome::connect_failed));
  EXPECT_EQ(a.consecutive_5xx(), 0u);
  EXPECT_EQ(off_again->stats().ejections_active, 0u);
  EXPECT_EQ(off_again->stats().ejections_enforced_total, 1u);
  EXPECT_EQ(off_again->outlier_interval(), 0ms);
  EXPECT_FALSE(off_again->explain().outlier_detection);
}

TEST(OutlierDetection, DefaultsAreEnvoys) {
  const outlier_detection_config d;
  EXPECT_EQ(d.interval, 10s);
  EXPECT_EQ(d.base_ejection_time, 30s);
  EXPECT_EQ(d.effective_max_ejection_time(), 300s);
  outlier_detection_config long_base;
  long_base.base_ejection_time = 400s;
  EXPECT_EQ(long_base.effective_max_ejection_time(), 400s);
  EXPECT_EQ(d.max_ejection_percent, 10u);
  EXPECT_EQ(d.consecutive_5xx, 5u);
  EXPECT_EQ(d.enforcing_consecutive_5xx, 100u);
  EXPECT_EQ(d.consecutive_gateway_failure, 5u);
  EXPECT_EQ(d.enforcing_consecutive_gateway_failure, 0u);
  EXPECT_EQ(d.consecutive_local_origin_failure, 5u);
  EXPECT_EQ(d.enforcing_consecutive_local_origin_failure, 100u);
  EXPECT_FALSE(d.split_external_local_origin_errors);
  EXPECT_EQ(d.success_rate_minimum_hosts, 5u);
  EXPECT_EQ(d.success_rate_request_volume, 100u);
  EXPECT_EQ(d.success_rate_stdev_factor, 1900u);
  EXPECT_EQ(d.failure_percentage_threshold, 85u);
  EXPECT_EQ(d.failure_percentage_minimum_hosts, 5u);
  EXPECT_EQ(d.failure_percentage_request_volume, 50u);
  EXPECT_EQ(d.enforcing_failure_percentage, 0u);
  const cluster_config c;
  EXPECT_EQ(c.overprovisioning_factor, 140u);
  EXPECT_EQ(c.healthy_panic_threshold, 50u);
  EXPECT_EQ(c.choice_count, 2u);
  EXPECT_EQ(c.active_request_bias, 1.0);
}

}  // namespace
}  // namespace ewgw::lb
