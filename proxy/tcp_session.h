// One downstream connection through the gateway:
//
//   inspect   read the ClientHello (tls/client_hello.h) into a buffer that grows as bytes
//             arrive, bounded by 16 KiB and listener_filters_timeout;
//   route     choose the filter chain (SNI, ALPN, destination port) and its cluster;
//   connect   pick a host and connect within connect_timeout, retrying on another host up to
//             tcp_proxy max_connect_attempts;
//   forward   write every byte read while inspecting to the upstream, once;
//   relay     copy both directions until both are finished. A FIN from one side becomes a
//             shutdown(SHUT_WR) towards the other, each direction independently; errors close
//             both; idle_timeout and max_downstream_connection_duration close both.
//
// TLS is never terminated. Errors are error_codes, never exceptions. The object lives as long
// as an operation on it is pending (shared_ptr captured by each handler).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include "accesslog/record.h"
#include "proxy/buffer_pool.h"
#include "proxy/routing_snapshot.h"
#include "tls/client_hello.h"

namespace ewgw::proxy {

class worker;

class tcp_session final : public std::enable_shared_from_this<tcp_session> {
 public:
  // `local_port` is the port the listener is bound to (the destination port for chain
  // matching; the acceptor knows it, so no getsockname per connection).
  tcp_session(worker& owner, std::shared_ptr<const listener_runtime> listener, boost::asio::ip::tcp::socket downstream,
              std::uint16_t local_port);
  ~tcp_session();
  tcp_session(const tcp_session&) = delete;
  tcp_session& operator=(const tcp_session&) = delete;

  void start();
  // Closes both sides now (gateway shutdown).
  void abort() { close(); }

  // Intrusive list links, owned by the worker.
  tcp_session* prev_ = nullptr;
  tcp_session* next_ = nullptr;

 private:
  using clock = std::chrono::steady_clock;
  enum class phase : std::uint8_t { inspecting, connecting, forwarding, relaying, closed };

  // Bytes read while inspecting; forwarded to the upstream first.
  struct hello_state {
    tls::client_hello_parser parser;
    std::unique_ptr<std::uint8_t[]> data;
    std::size_t size = 0;
    std::size_t capacity = 0;
  };

  // One relay direction.
  struct direction {
    boost::asio::ip::tcp::socket* from;
    boost::asio::ip::tcp::socket* to;
    buffer_pool::block buffer;
    bool finished = false;  // EOF read from `from` and shut down towards `to`
    bool downstream_to_upstream;
  };

  void wait_for_hello();
  void on_hello_readable(const boost::system::error_code& ec);
  void route(std::string_view server_name, std::string_view transport, std::span<const std::string_view> alpns);
  void connect();
  void wait_for_connect();
  void on_connected(const boost::system::error_code& ec);
  void on_connect_failed(bool timed_out, const boost::system::error_code& ec);
  void forward_hello();
  void start_relay();
  void wait_readable(direction& d);
  void pump(direction& d);
  void on_written(direction& d, const boost::system::error_code& ec, std::size_t bytes);
  void finish_direction(direction& d);
  void watch_for_errors(boost::asio::ip::tcp::socket& socket);
  bool needs_error_watch(const boost::asio::ip::tcp::socket& socket) const;

  void arm_timer(clock::time_point deadline);
  void on_timer(const boost::system::error_code& ec);
  clock::time_point relay_deadline() const;
  void close();
  void release_upstream();

  // Access log (only when the listener or one of its chains logs): the record is filled as
  // the outcomes happen and handed to the writer when the session ends.
  void start_log();
  void flag(accesslog::response_flag f) {
    if (log_) log_->set(f);
  }
  void note_reset(const boost::asio::ip::tcp::socket& socket, const boost::system::error_code& ec);
  void submit_log();

  worker& owner_;
  std::shared_ptr<const listener_runtime> listener_;
  // Resolved once, so that the relay updates counters without pointer chasing or lookups.
  listener_stats& listener_stats_;
  tls_inspector_stats& tls_stats_;
  tcp_stats* tcp_stats_ = nullptr;
  cluster_stats* cluster_stats_ = nullptr;
  const filter_chain_runtime* chain_ = nullptr;  // owned by listener_
  std::shared_ptr<cluster_runtime> cluster_;
  lb::host* host_ = nullptr;  // owned by cluster_'s balancer; counted in its active connections
  boost::asio::ip::tcp::socket downstream_;
  boost::asio::ip::tcp::socket upstream_;
  boost::asio::steady_timer timer_;
  std::unique_ptr<hello_state> hello_;
  std::unique_ptr<accesslog::record> log_;
  direction down_to_up_;
  direction up_to_down_;
  phase phase_ = phase::inspecting;
  bool connect_timed_out_ = false;
  bool downstream_drained_ = false;  // the last ClientHello read emptied the socket
  bool watching_downstream_ = false;
  bool watching_upstream_ = false;
  bool upstream_counted_ = false;
  bool upstream_connected_ = false;
  std::uint32_t connect_attempts_ = 0;
  std::array<const lb::host*, 4> tried_hosts_{};  // ring, indexed by attempt
  std::uint16_t local_port_ = 0;
  clock::time_point inspect_deadline_{};
  clock::time_point connect_deadline_{};
  clock::time_point connect_started_{};
  clock::time_point routed_at_{};
  clock::time_point last_activity_{};
  // Expiry of the pending timer wait; max() when none is pending.
  clock::time_point armed_until_ = clock::time_point::max();
};

}  // namespace ewgw::proxy
