// Host selection for one cluster.
//
// Interim policy (until the Envoy-faithful priority/locality balancer lands): round robin over
// the healthy hosts of the lowest priority that has any; if no priority has a healthy host,
// degraded hosts the same way; if none, every host (total panic, as Envoy does at threshold 0).
// Weights, localities, least request and outlier ejection are not applied yet.
//
// The structure is immutable once built and shared by all workers; each worker owns its own
// rotation state, so pick() takes no lock and allocates nothing.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "lb/host.h"

namespace ewgw::lb {

struct host_entry {
  std::shared_ptr<host> target;
  std::uint32_t priority = 0;
};

class load_balancer {
 public:
  load_balancer(std::vector<host_entry> hosts, std::size_t workers);

  // A host for a new connection from `worker`, or nullptr when the cluster has no host.
  // `avoid` (may be null) is skipped when another host is available: a retry after a failed
  // connect goes elsewhere (tcp_proxy max_connect_attempts).
  host* pick(std::size_t worker, const host* avoid = nullptr);

  const std::vector<host_entry>& hosts() const { return hosts_; }

 private:
  struct alignas(64) worker_state {
    std::size_t next = 0;
  };
  std::vector<host_entry> hosts_;
  std::vector<host*> candidates_;  // the hosts round robin rotates over
  std::vector<worker_state> workers_;
};

}  // namespace ewgw::lb
