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
#include <random>
#include <string>
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
  std::minstd_rand& random() { return random_; }
  const std::shared_ptr<const routing_snapshot>& snapshot() const { return snapshot_; }

  // Adds an acceptor already bound and listening (created on this worker's context) for the
  // listener named `listener`. Call before start().
  void add_acceptor(std::string listener, boost::asio::ip::tcp::acceptor acceptor);

  // Replaces the worker's snapshot; safe from any thread (posted to the worker).
  void publish(std::shared_ptr<const routing_snapshot> snapshot);

  void start();
  // Stops accepting, closes every open connection and joins the thread. Any thread but this
  // worker's own.
  void stop();

  // Session bookkeeping (worker thread only): open sessions are closed on stop().
  void attach(tcp_session* s);
  void detach(tcp_session* s);
  // Any thread.
  std::size_t open_sessions() const { return open_sessions_.load(std::memory_order_relaxed); }

 private:
  struct acceptor_entry {
    std::string listener;
    boost::asio::ip::tcp::acceptor acceptor;
    std::shared_ptr<const listener_runtime> current;
    boost::asio::steady_timer retry;
  };
  void accept(acceptor_entry& entry);
  void update_acceptors();

  std::size_t id_;
  boost::asio::io_context context_{1};
  buffer_pool buffers_;
  std::minstd_rand random_;
  std::shared_ptr<const routing_snapshot> snapshot_;
  std::vector<std::unique_ptr<acceptor_entry>> acceptors_;
  tcp_session* sessions_ = nullptr;  // intrusive list head
  std::atomic<std::size_t> open_sessions_{0};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work_;
  std::thread thread_;
};

}  // namespace ewgw::proxy
