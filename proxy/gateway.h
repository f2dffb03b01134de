// The gateway: workers, listeners and the routing snapshot they share. Used by main() and,
// in-process, by the integration tests.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "proxy/routing_snapshot.h"
#include "stats/stats.h"
#include "xds/config.h"

namespace ewgw::proxy {

class worker;

struct gateway_options {
  std::size_t concurrency = 1;
};

class gateway {
 public:
  explicit gateway(gateway_options options);
  ~gateway();
  gateway(const gateway&) = delete;
  gateway& operator=(const gateway&) = delete;

  // Builds a routing snapshot from `config` and publishes it to every worker. Returns the
  // errors that prevented it (nothing is published then).
  std::vector<std::string> apply(const xds::bootstrap_config& config);

  // Binds every listener of the current snapshot on every worker (SO_REUSEPORT) and starts the
  // worker threads. A listener with port 0 gets one ephemeral port shared by all workers.
  // Returns an error naming the listener and address when a bind fails.
  std::optional<std::string> start();
  void stop();

  // The port a listener is bound to (after start()), or 0.
  std::uint16_t listener_port(std::string_view listener) const;
  // True once the configuration is applied and every listener is bound.
  bool ready() const { return ready_.load(); }

  stats::registry& stats() { return stats_; }
  std::size_t open_connections() const;

 private:
  gateway_options options_;
  stats::registry stats_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::shared_ptr<const routing_snapshot> snapshot_;
  std::vector<std::pair<std::string, std::uint16_t>> bound_;
  std::uint64_t version_ = 0;
  bool started_ = false;
  std::atomic<bool> ready_{false};
};

}  // namespace ewgw::proxy
