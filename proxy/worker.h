// One event-loop thread: its own io_context, its own SO_REUSEPORT acceptor per listener, its own
// copy of the current routing snapshot, its own buffer pool and its own stats blocks. Nothing
// on a worker is touched by another thread except through post().
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <cstddef>
#include <memory>
#include <optional>
#include <chrono>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "proxy/buffer_pool.h"
#include "proxy/routing_snapshot.h"

namespace ewgw::proxy {

class tcp_session;

class worker {
 public:
  explicit worker(std::size_t id);
  ~worker();
  worker(const worker&) = delete;
  worker& operator=(const worker&) = delete;

  std::size_t id() const { return id_; }
  boost::asio::io_context& context() { return context_; }
  buffer_pool& buffers() { return buffers_; }
  // 64 bits of pseudo-randomness (splitmix64): weighted picks over totals up to 2^32.
  std::uint64_t next_random() {
    std::uint64_t z = (random_state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  const std::shared_ptr<const routing_snapshot>& snapshot() const { return snapshot_; }

  // Adds an acceptor already bound and listening (created on this worker's context) for the
  // listener named `listener`. Any thread; before or after start(). It serves the listener of
  // that name in the snapshot published next (publish after adding).
  void add_acceptor(std::string listener, boost::asio::ip::tcp::acceptor acceptor);
  // Stops accepting for `listener` on `port` and closes its sockets. Connections it accepted carry on.
  // Any thread.
  void remove_acceptor(const std::string& listener, std::uint16_t port);

  // Replaces the worker's snapshot; safe from any thread (posted to the worker).
  void publish(std::shared_ptr<const routing_snapshot> snapshot);

  void start();
  // Stops accepting, closes every open connection and joins the thread. Any thread but this
  // worker's own.
  void stop();

  // Called (on this worker's thread) when a host's consecutive-failure counter reaches its
  // threshold: the gateway's control thread then decides on the ejection. Set before start().
  void set_detection_handler(std::function<void(std::string_view cluster)> handler) {
    detection_handler_ = std::move(handler);
  }
  void report_detection(std::string_view cluster) {
    if (detection_handler_) detection_handler_(cluster);
  }

  // Session bookkeeping (worker thread only): open sessions are closed on stop().
  void attach(tcp_session* s);
  void detach(tcp_session* s);
  // Any thread.
  std::size_t open_sessions() const { return open_sessions_.load(std::memory_order_relaxed); }

 private:
  struct acceptor_entry {
    std::string listener;
    boost::asio::ip::tcp::acceptor acceptor;
    std::uint16_t port;
    std::shared_ptr<const listener_runtime> current;
    boost::asio::steady_timer retry;
    std::chrono::steady_clock::time_point last_error_log{};
    std::uint64_t errors_since_log = 0;
  };
  void accept(const std::shared_ptr<acceptor_entry>& entry);
  void update_acceptors();

  // Declaration order is destruction order reversed: sessions destroyed while the context
  // shuts down still use the buffer pool and the session list, so those outlive the context;
  // acceptors and timers hold handles into the context, so they go first.
  std::size_t id_;
  buffer_pool buffers_;
  std::uint64_t random_state_;
  tcp_session* sessions_ = nullptr;  // intrusive list head
  std::atomic<std::size_t> open_sessions_{0};
  boost::asio::io_context context_{1};
  std::shared_ptr<const routing_snapshot> snapshot_;
  std::function<void(std::string_view)> detection_handler_;
  // Shared with pending accept handlers, so a removed entry outlives its last handler.
  std::vector<std::shared_ptr<acceptor_entry>> acceptors_;
  bool running_ = false;  // accept loops started (worker thread only)
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;
};

}  // namespace ewgw::proxy
