// What the load balancer is built from: plain data, filled by proxy/ from the xDS structs (or by
// tests and benchmarks directly). Field names and defaults follow Envoy's
// envoy.config.cluster.v3.Cluster and envoy.config.endpoint.v3.ClusterLoadAssignment.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "lb/host.h"

namespace ewgw::lb {

// lb_endpoints[]: one upstream endpoint.
struct host_config {
  endpoint_address address;
  std::uint32_t weight = 1;  // load_balancing_weight; 0 is treated as 1
  host_health health = host_health::healthy;
};

// endpoints[]: the hosts of one locality at one priority.
struct locality_config {
  std::string name;          // for explain/logs only, e.g. "region/zone/sub_zone"
  std::uint32_t weight = 0;  // load_balancing_weight; 0 = unset (never picked when locality weighted)
  std::vector<host_config> hosts;
};

// All localities at one priority. Index in cluster_config::priorities = priority (0 = highest).
struct priority_config {
  std::vector<locality_config> localities;
};

enum class lb_policy : std::uint8_t { round_robin, least_request, random };

// envoy.config.cluster.v3.OutlierDetection, with Envoy's defaults. Durations in milliseconds as
// in Envoy (PROTOBUF_GET_MS_OR_DEFAULT). Percentages are 0..100.
struct outlier_detection_config {
  bool enabled = false;  // the cluster has an outlier_detection message at all

  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds base_ejection_time{30000};
  // Unset: max(300s, base_ejection_time). Must not be below base_ejection_time.
  std::optional<std::chrono::milliseconds> max_ejection_time;
  std::chrono::milliseconds max_ejection_time_jitter{0};
  std::uint32_t max_ejection_percent = 10;
  bool always_eject_one_host = false;

  std::uint32_t consecutive_5xx = 5;
  std::uint32_t enforcing_consecutive_5xx = 100;
  std::uint32_t consecutive_gateway_failure = 5;
  std::uint32_t enforcing_consecutive_gateway_failure = 0;
  bool split_external_local_origin_errors = false;
  std::uint32_t consecutive_local_origin_failure = 5;
  std::uint32_t enforcing_consecutive_local_origin_failure = 100;

  std::uint32_t success_rate_minimum_hosts = 5;
  std::uint32_t success_rate_request_volume = 100;
  std::uint32_t success_rate_stdev_factor = 1900;  // divided by 1000
  std::uint32_t enforcing_success_rate = 100;
  std::uint32_t enforcing_local_origin_success_rate = 100;

  std::uint32_t failure_percentage_threshold = 85;
  std::uint32_t failure_percentage_minimum_hosts = 5;
  std::uint32_t failure_percentage_request_volume = 50;
  std::uint32_t enforcing_failure_percentage = 0;
  std::uint32_t enforcing_failure_percentage_local_origin = 0;

  std::chrono::milliseconds effective_max_ejection_time() const {
    if (max_ejection_time) return *max_ejection_time;
    return std::max(std::chrono::milliseconds(300000), base_ejection_time);
  }
};

struct cluster_config {
  std::vector<priority_config> priorities;
  // ClusterLoadAssignment.policy.overprovisioning_factor, percent (140 = 1.4).
  std::uint32_t overprovisioning_factor = 140;
  // common_lb_config.healthy_panic_threshold, percent; 0 disables panic.
  std::uint32_t healthy_panic_threshold = 50;
  // common_lb_config.locality_weighted_lb_config is set.
  bool locality_weighted = false;
  lb_policy policy = lb_policy::round_robin;
  // least_request_lb_config.choice_count / .active_request_bias.
  std::uint32_t choice_count = 2;
  double active_request_bias = 1.0;
  outlier_detection_config outlier_detection;
};

}  // namespace ewgw::lb
