// The gateway: workers, listeners and the routing snapshot they share. Used by main() and,
// in-process, by the integration tests. apply(), start() and stop() are called from one control
// thread (main, or the xDS client's thread); workers never block on it.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <optional>
#include <string>
#include <vector>

#include "accesslog/writer.h"
#include "proxy/routing_snapshot.h"
#include "stats/stats.h"
#include "xds/config.h"

namespace ewgw::proxy {

class worker;

struct gateway_options {
  std::size_t concurrency = 1;
  // Access logs: how often the writer thread drains the workers' queues and writes, and how
  // many closed connections each worker may have waiting (more are dropped and counted in
  // access_log.records_dropped_total).
  std::chrono::milliseconds access_log_flush_interval{100};
  std::size_t access_log_queue_capacity = 8192;
};

class gateway {
 public:
  explicit gateway(gateway_options options);
  ~gateway();
  gateway(const gateway&) = delete;
  gateway& operator=(const gateway&) = delete;

  // Builds a routing snapshot from `config` and publishes it to every worker, atomically per
  // worker. Returns the errors that prevented it; nothing changes then (the last good
  // configuration stays in force).
  //
  // Once started, listeners are reconciled by name: new ones are bound, removed ones stop
  // accepting, one whose address changed is rebound. Connections already accepted are never
  // closed by an update: each keeps the listener and cluster state it started with, so a
  // connection on a chain that did not change carries on untouched, and so does one whose
  // listener or cluster went away (it ends when its peers or its timeouts end it).
  std::vector<std::string> apply(const xds::bootstrap_config& config);

  // Binds every listener of the current snapshot on every worker (SO_REUSEPORT) and starts the
  // worker threads. A listener with port 0 gets one ephemeral port shared by all workers.
  // Returns an error naming the listener and address when a bind fails.
  std::optional<std::string> start();
  void stop();

  // The port a listener is bound to (after start()), or 0. Any thread.
  std::uint16_t listener_port(std::string_view listener) const;
  // True once a configuration is applied, the gateway started and every listener bound, and not
  // draining. Any thread.
  bool ready() const { return ready_.load() && !draining_.load() && (!readiness_gate_ || readiness_gate_()); }

  // An extra condition for ready(), e.g. "the first CDS and LDS from the control plane are in
  // force" (Istio's readiness). Set before serving readiness; called from any thread.
  void set_readiness_gate(std::function<bool()> gate) { readiness_gate_ = std::move(gate); }
  bool draining() const { return draining_.load(); }

  // Stops accepting on every listener (open connections continue) and reports not ready, for
  // a graceful rollout (admin /drain_listeners, SIGTERM).
  void drain_listeners();

  // Updates the server.* gauges (uptime, memory, connections); call before reading stats.
  void refresh_server_stats();

  // The routing snapshot in force (null before the first apply()). Any thread: the admin
  // endpoints and the scrape read it on their own thread while workers keep their own
  // reference, and never wait for a snapshot being built. Copying the
  // pointer takes a short lock, never held while a snapshot is built.
  std::shared_ptr<const routing_snapshot> current_snapshot() const;

  stats::registry& stats() { return stats_; }
  std::size_t open_connections() const;
  std::uint64_t snapshot_version() const { return version_; }

 private:
  struct bound_listener {
    xds::socket_address address;
    std::uint16_t port = 0;  // the port actually bound
  };
  // Binds `l` on every worker; on failure closes what was bound and returns the reason.
  std::optional<std::string> bind(const listener_runtime& l, bound_listener& out);
  void unbind(const std::string& name, std::uint16_t port);

  gateway_options options_;
  stats::registry stats_;
  // Outlives the workers: sessions hand it their records until the workers have stopped.
  accesslog::writer access_logs_;
  std::vector<std::unique_ptr<worker>> workers_;
  std::shared_ptr<const routing_snapshot> snapshot_;  // written under cold_mu_ and snapshot_mu_
  mutable std::mutex snapshot_mu_;                    // for current_snapshot() readers
  mutable std::mutex bound_mu_;  // bound_ is read by listener_port() from any thread
  std::map<std::string, bound_listener> bound_;
  std::uint64_t version_ = 0;
  bool started_ = false;
  std::atomic<bool> ready_{false};
  std::atomic<bool> draining_{false};
  std::function<bool()> readiness_gate_;

  // The cold path of outlier detection runs here, off the workers: ejection decisions when a
  // worker reports a detection, and each cluster's periodic tick (outlier_detection.interval).
  // cold_mu_ serializes it with snapshot building, which reads the balancers' state.
  void on_detection(std::string_view cluster);
  void schedule_outlier_ticks();
  void outlier_tick(const std::string& cluster);
  std::mutex cold_mu_;
  boost::asio::io_context control_{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> control_work_;
  struct outlier_timer {
    std::unique_ptr<boost::asio::steady_timer> timer;
    std::chrono::milliseconds interval{0};  // what it was armed with
  };
  std::map<std::string, outlier_timer> outlier_timers_;  // control thread
  std::thread control_thread_;
  std::chrono::steady_clock::time_point started_at_ = std::chrono::steady_clock::now();
  std::shared_ptr<stats::block_scope<server_stats>> server_stats_;
};

}  // namespace ewgw::proxy
