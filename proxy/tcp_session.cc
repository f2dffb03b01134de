#include "proxy/tcp_session.h"

#include <boost/asio/post.hpp>
#include <boost/asio/write.hpp>

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "proxy/worker.h"
#include "stats/log.h"

namespace ewgw::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// The hello buffer starts small and doubles only for larger ClientHellos: Istio configures
// tls_inspector's initial read buffer at 512 bytes, typical ClientHellos are 250-600 bytes
// (1.7-2 KB with post-quantum key shares). A fixed 16 KiB buffer per connection is what made
// Envoy's tls_inspector expensive (envoy#34706).
constexpr std::size_t initial_hello_capacity = 1024;
// ALPN protocols beyond this many are not used for chain matching (Istio offers five).
constexpr std::size_t max_matched_alpns = 64;
// Chunks relayed in one direction before yielding to other connections (256 KiB).
constexpr int max_chunks_per_turn = 16;

asio::ip::tcp::endpoint to_endpoint(const lb::endpoint_address& a) {
  if (a.ipv6) {
    asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), a.ip.data(), 16);
    return {asio::ip::address_v6(b), a.port};
  }
  asio::ip::address_v4::bytes_type b;
  std::memcpy(b.data(), a.ip.data(), 4);
  return {asio::ip::address_v4(b), a.port};
}

accesslog::address to_log_address(const asio::ip::tcp::endpoint& e) {
  accesslog::address out;
  out.set = true;
  out.port = e.port();
  if (e.address().is_v6()) {
    out.v6 = true;
    const auto b = e.address().to_v6().to_bytes();
    std::memcpy(out.ip.data(), b.data(), 16);
  } else {
    const auto b = e.address().to_v4().to_bytes();
    std::memcpy(out.ip.data(), b.data(), 4);
  }
  return out;
}

accesslog::address to_log_address(const lb::endpoint_address& a) {
  accesslog::address out;
  out.set = true;
  out.port = a.port;
  out.v6 = a.ipv6;
  std::memcpy(out.ip.data(), a.ip.data(), a.ipv6 ? 16 : 4);
  return out;
}

// The socket's pending error (SO_ERROR, which reading clears); a failure to read it is returned
// instead. Empty: no error pending.
error_code pending_socket_error(asio::ip::tcp::socket& socket) {
  asio::detail::socket_option::integer<SOL_SOCKET, SO_ERROR> option;
  error_code ec;
  socket.get_option(option, ec);
  return ec ? ec : error_code(option.value(), asio::error::get_system_category());
}

// Connection ids for %CONNECTION_ID%: unique across workers without a shared counter (the
// worker id in the low bits, the worker's own sequence above).
thread_local std::uint64_t connection_sequence = 0;

}  // namespace

tcp_session::tcp_session(worker& owner, std::shared_ptr<const listener_runtime> listener, asio::ip::tcp::socket downstream,
                         std::uint16_t local_port)
    : owner_(owner),
      listener_(std::move(listener)),
      listener_stats_(listener_->stats->worker(owner.id())),
      tls_stats_(listener_->tls_stats->worker(owner.id())),
      downstream_(std::move(downstream)),
      upstream_(owner.context()),
      timer_(owner.context()),
      down_to_up_{&downstream_, &upstream_, nullptr, false, true},
      up_to_down_{&upstream_, &downstream_, nullptr, false, false},
      local_port_(local_port) {
  owner_.attach(this);
  listener_stats_.downstream_cx_total.inc();
  listener_stats_.downstream_cx_active.add();
  if (listener_->log_writer != nullptr) start_log();
}

void tcp_session::start_log() {
  log_ = std::make_unique<accesslog::record>();
  log_->start_time = std::chrono::system_clock::now();
  log_->started = clock::now();
  log_->connection_id = (++connection_sequence << 10) | (owner_.id() & 0x3ff);
  // Addresses cost a system call each; only formats that print them pay for them.
  error_code ec;
  if (listener_->log_needs & accesslog::needs_downstream_remote) {
    const auto peer = downstream_.remote_endpoint(ec);
    if (!ec) log_->downstream_remote = to_log_address(peer);
  }
  if (listener_->log_needs & accesslog::needs_downstream_local) {
    const auto local = downstream_.local_endpoint(ec);
    if (!ec) log_->downstream_local = to_log_address(local);
  }
}

// An upstream reset (RST) ends the pair; Envoy's tcp_proxy flags it UR (UpstreamRemoteReset)
// when it propagates the reset. A reset from the downstream sets no flag in Envoy's tcp_proxy
// (DR is HTTP-only), so none is set here.
void tcp_session::note_reset(const asio::ip::tcp::socket& socket, const error_code& ec) {
  if (&socket == &upstream_ && (ec == asio::error::connection_reset || ec == asio::error::broken_pipe)) {
    flag(accesslog::response_flag::upstream_remote_reset);
  }
}

void tcp_session::submit_log() {
  if (!log_) return;
  if (log_->ended == clock::time_point{}) log_->ended = clock::now();
  const auto& listener_logs = listener_->access_logs;
  const auto* chain_logs = chain_ != nullptr ? &chain_->settings->access_logs : nullptr;
  if (!listener_logs && (chain_logs == nullptr || !*chain_logs)) return;
  // A full queue drops the record; the writer counts it.
  listener_->log_writer->submit(owner_.id(), std::move(log_), listener_logs,
                                chain_logs != nullptr ? *chain_logs : nullptr);
}

// Runs once no handler refers to the session any more, so buffers handed to pending writes are
// released here and never earlier.
tcp_session::~tcp_session() {
  release_upstream();
  submit_log();
  owner_.detach(this);
  owner_.buffers().release(std::move(down_to_up_.buffer));
  owner_.buffers().release(std::move(up_to_down_.buffer));
  listener_stats_.downstream_cx_active.sub();
  listener_stats_.downstream_cx_destroy.inc();
}

void tcp_session::start() {
  error_code ec;
  downstream_.set_option(asio::ip::tcp::no_delay(true), ec);
  downstream_.non_blocking(true, ec);
  if (ec) {
    close();
    return;
  }
  if (!listener_->tls_inspector) {
    route({}, "raw_buffer", {});
    return;
  }
  hello_ = std::make_unique<hello_state>();
  if (listener_->listener_filters_timeout.count() > 0) {
    inspect_deadline_ = clock::now() + listener_->listener_filters_timeout;
    arm_timer(inspect_deadline_);
  }
  // Clients send the ClientHello right after the handshake, so it is usually queued already:
  // try reading before waiting (saves an event-loop round trip per connection).
  on_hello_readable({});
}

void tcp_session::wait_for_hello() {
  downstream_.async_wait(asio::socket_base::wait_read,
                         [self = shared_from_this()](const error_code& ec) { self->on_hello_readable(ec); });
}

void tcp_session::on_hello_readable(const error_code& ec) {
  if (phase_ != phase::inspecting) return;
  if (ec) {
    tls_stats_.connection_closed.inc();
    close();
    return;
  }
  hello_state& h = *hello_;
  const std::size_t limit = tls::default_max_client_hello_bytes;
  if (h.size == h.capacity) {
    // Full (or not yet allocated): double, up to the limit. Never read past the limit: a
    // ClientHello must complete within it, and later bytes stay in the kernel for the relay.
    const std::size_t cap = std::min(std::max(h.capacity * 2, initial_hello_capacity), limit);
    auto grown = std::make_unique_for_overwrite<std::uint8_t[]>(cap);
    if (h.size > 0) std::memcpy(grown.get(), h.data.get(), h.size);
    h.data = std::move(grown);
    h.capacity = cap;
  }
  error_code read_ec;
  const std::size_t space = h.capacity - h.size;
  const std::size_t n = downstream_.read_some(asio::buffer(h.data.get() + h.size, space), read_ec);
  if (read_ec == asio::error::would_block || read_ec == asio::error::try_again) {
    wait_for_hello();
    return;
  }
  if (read_ec) {
    // EOF or reset before the ClientHello was complete.
    tls_stats_.connection_closed.inc();
    close();
    return;
  }
  h.size += n;
  downstream_drained_ = n < space;
  const tls::hello_status status = h.parser.parse({h.data.get(), h.size});
  switch (status) {
    case tls::hello_status::need_more:
      if (h.size >= limit) {
        tls_stats_.client_hello_too_large.inc();
        close();
        return;
      }
      wait_for_hello();
      return;
    case tls::hello_status::complete: {
      const tls::client_hello& hello = h.parser.hello();
      tls_stats_.tls_found.inc();
      tls_stats_.bytes_processed.record(static_cast<double>(hello.wire_bytes()));
      (hello.server_name().empty() ? tls_stats_.sni_not_found : tls_stats_.sni_found).inc();
      (hello.has_alpn() ? tls_stats_.alpn_found : tls_stats_.alpn_not_found).inc();
      std::array<std::string_view, max_matched_alpns> alpns;
      std::size_t count = 0;
      hello.for_each_alpn([&](std::string_view p) {
        if (count < alpns.size()) alpns[count++] = p;
      });
      route(hello.server_name(), "tls", std::span<const std::string_view>(alpns.data(), count));
      return;
    }
    case tls::hello_status::not_tls:
      // As Envoy: not TLS is not an error by itself; the connection is matched as raw_buffer
      // (Istio's chains all require an SNI, so it then matches nothing and is closed).
      tls_stats_.tls_not_found.inc();
      route({}, "raw_buffer", {});
      return;
    case tls::hello_status::too_large:
      tls_stats_.client_hello_too_large.inc();
      EWGW_LOG(debug, "tcp", "ClientHello too large", {{"listener", listener_->name}});
      close();
      return;
    case tls::hello_status::malformed:
      tls_stats_.client_hello_malformed_total.inc();
      EWGW_LOG(debug, "tcp", "malformed ClientHello", {{"listener", listener_->name}, {"reason", h.parser.error()}});
      close();
      return;
  }
}

void tcp_session::route(std::string_view server_name, std::string_view transport, std::span<const std::string_view> alpns) {
  const connection_facts facts{local_port_, server_name, transport, alpns};
  if (log_) log_->requested_server_name.assign(server_name);
  const int index = listener_->matcher->match(facts);
  if (index != filter_chain_matcher::no_match) {
    chain_ = &listener_->chains[static_cast<std::size_t>(index)];
  } else if (listener_->default_chain) {
    chain_ = &*listener_->default_chain;
  } else {
    listener_stats_.no_filter_chain_match.inc();
    // Envoy's listener: NoRouteFound with the details "filter_chain_not_found".
    flag(accesslog::response_flag::no_route_found);
    if (log_) log_->response_code_details = "filter_chain_not_found";
    EWGW_LOG(debug, "tcp", "no filter chain matched", {{"listener", listener_->name}, {"sni", server_name}});
    close();
    return;
  }
  tcp_stats_ = &chain_->stats->worker(*listener_->registry, owner_.id());
  const chain_settings& settings = *chain_->settings;
  tcp_stats_->downstream_cx_total.inc();
  if (hello_) tcp_stats_->downstream_cx_rx_bytes_total.inc(hello_->size);
  if (log_) {
    if (hello_) log_->bytes_received += hello_->size;
    log_->filter_chain_name = settings.name;  // null when the chain has no name
  }

  // tcp_proxy: weighted_clusters win over everything (Envoy ignores the per-connection cluster
  // that sni_cluster sets when weights are configured); then sni_cluster's SNI; then `cluster`.
  if (!settings.weighted.empty()) {
    const std::uint64_t r = owner_.next_random() % settings.total_weight;
    for (const weighted_target& t : settings.weighted) {
      if (r < t.cumulative_weight) {
        cluster_ = t.cluster;
        break;
      }
    }
  } else if (settings.cluster_from_sni && !server_name.empty()) {
    if (const auto* found = owner_.snapshot()->clusters.find(server_name)) cluster_ = *found;
  } else {
    cluster_ = chain_->cluster;
  }
  if (!cluster_) {
    tcp_stats_->downstream_cx_no_route.inc();
    // Envoy's tcp_proxy: NoClusterFound ("NC") for a cluster that does not exist.
    flag(accesslog::response_flag::no_cluster_found);
    EWGW_LOG(debug, "tcp", "no route: cluster not found", {{"listener", listener_->name}, {"sni", server_name}});
    close();
    return;
  }
  cluster_stats_ = &cluster_->worker_stats(*listener_->registry, owner_.id());
  if (log_) {
    log_->upstream_cluster = cluster_->name.view();
    log_->upstream_cluster_owner = cluster_;
  }
  if (!cluster_->unsupported().empty()) {
    cluster_stats_->upstream_cx_unsupported_config.inc();
    // No host ewgw can use: Envoy would have no such cluster; "no healthy upstream" is the
    // nearest outcome, and the details say why.
    flag(accesslog::response_flag::no_healthy_upstream);
    if (log_) log_->connection_termination_details = "cluster_uses_unsupported_settings";
    EWGW_LOG(debug, "tcp", "cluster uses settings ewgw does not implement; connection closed",
             {{"cluster", cluster_->name}, {"reason", std::string(cluster_->unsupported())}});
    close();
    return;
  }
  routed_at_ = clock::now();
  // A reset from the client while the upstream connects (or at any later time, including
  // after it half-closed) closes both sides at once.
  watch_for_errors(downstream_);
  connect();
}

// A pending relay read notices a reset on its socket by itself. A socket with no read pending
// needs watching: the downstream while the upstream connects and the hello is forwarded, and
// any socket after it sent its FIN (a later reset would otherwise go unnoticed until
// idle_timeout). Each wait costs an epoll_ctl, so only those cases are watched.
bool tcp_session::needs_error_watch(const asio::ip::tcp::socket& socket) const {
  if (phase_ == phase::connecting || phase_ == phase::forwarding) return &socket == &downstream_;
  if (phase_ != phase::relaying) return false;
  return &socket == &downstream_ ? down_to_up_.finished : up_to_down_.finished;
}

void tcp_session::watch_for_errors(asio::ip::tcp::socket& socket) {
  bool& watching = &socket == &downstream_ ? watching_downstream_ : watching_upstream_;
  if (watching) return;
  watching = true;
  // Wakes on EPOLLERR, EPOLLHUP or EPOLLPRI; plain data and FINs do not wake it. Only a pending
  // socket error (a reset) closes the pair: EPOLLHUP also means "both directions shut down",
  // which happens while the last bytes are still waiting to be read and relayed.
  socket.async_wait(asio::socket_base::wait_error, [self = shared_from_this(), &socket, &watching](const error_code& ec) {
    watching = false;
    if (ec == asio::error::operation_aborted || self->phase_ == phase::closed) return;
    if (const error_code error = pending_socket_error(socket)) {
      self->note_reset(socket, error);
      self->close();
      return;
    }
    if (self->needs_error_watch(socket)) self->watch_for_errors(socket);
  });
}

void tcp_session::connect() {
  // Circuit breaker (cluster circuit_breakers.thresholds max_connections).
  if (cluster_->shared->active_connections.load(std::memory_order_relaxed) >= cluster_->max_connections) {
    cluster_stats_->upstream_cx_overflow.inc();
    flag(accesslog::response_flag::upstream_overflow);
    close();
    return;
  }
  // A retry goes to a host this connection has not tried, while one is left (the balancer
  // falls back to a tried host otherwise). Only the last few are remembered: enough for the
  // attempts people configure, and no allocation.
  const std::size_t remembered = std::min<std::size_t>(connect_attempts_, tried_hosts_.size());
  host_ = cluster_->balancer->pick(owner_.id(), std::span<const lb::host* const>(tried_hosts_.data(), remembered));
  if (host_ == nullptr) {
    cluster_stats_->upstream_cx_none_healthy.inc();
    flag(accesslog::response_flag::no_healthy_upstream);
    close();
    return;
  }
  tried_hosts_[connect_attempts_ % tried_hosts_.size()] = host_;
  ++connect_attempts_;
  if (log_) {
    log_->upstream_host = to_log_address(host_->address());
    log_->connect_attempts = connect_attempts_;
  }
  cluster_stats_->upstream_cx_total.inc();
  cluster_stats_->upstream_cx_active.add();
  cluster_->shared->active_connections.fetch_add(1, std::memory_order_relaxed);
  host_->connection_opened();
  upstream_counted_ = true;

  phase_ = phase::connecting;
  connect_timed_out_ = false;
  connect_started_ = clock::now();
  connect_deadline_ = connect_started_ + cluster_->connect_timeout;
  arm_timer(connect_deadline_);
  const asio::ip::tcp::endpoint endpoint = to_endpoint(host_->address());
  // Non-blocking before connecting: one ioctl serves both the connect and the relay's reads.
  error_code open_ec;
  upstream_.open(endpoint.protocol(), open_ec);
  if (!open_ec) upstream_.non_blocking(true, open_ec);
  if (open_ec) {
    // A local failure (e.g. EMFILE): not the host's fault, so it is not reported to outlier
    // detection, and another host would fail the same way, so no retry.
    cluster_stats_->upstream_cx_connect_fail.inc();
    // Envoy: a local connection failure is not UF, and with no retry the attempts are spent.
    flag(accesslog::response_flag::upstream_retry_limit_exceeded);
    if (log_) log_->upstream_connect_errno = open_ec.value();
    cluster_stats_->upstream_cx_connect_attempts_exceeded.inc();
    EWGW_LOG(warn, "tcp", "cannot open an upstream socket", {{"cluster", cluster_->name}, {"error", open_ec.message()}});
    close();
    return;
  }
  // connect(2) and a wait for writability, rather than asio's async_connect, which confirms
  // every completion with poll(2) and then reads SO_ERROR: here one getpeername(2) confirms a
  // success (see wait_for_connect()). An immediate result still goes through the event loop, as
  // asio's would: a synchronous failure (ENETUNREACH, EADDRNOTAVAIL) must not recurse through
  // the retries on this stack.
  if (::connect(upstream_.native_handle(), endpoint.data(), static_cast<socklen_t>(endpoint.size())) == 0) {
    asio::post(owner_.context(), [self = shared_from_this()] { self->on_connected({}); });
    return;
  }
  if (errno != EINPROGRESS && errno != EINTR) {
    asio::post(owner_.context(), [self = shared_from_this(), ec = error_code(errno, asio::error::get_system_category())] {
      self->on_connected(ec);
    });
    return;
  }
  wait_for_connect();
}

void tcp_session::wait_for_connect() {
  upstream_.async_wait(asio::socket_base::wait_write, [self = shared_from_this()](const error_code& ec) {
    if (ec) {
      self->on_connected(ec);  // closed by the connect timeout or the session
      return;
    }
    if (self->phase_ != phase::connecting) return;
    // The reactor may report readiness that is not this connect's (asio warns of spurious
    // notifications; a descriptor slot can be reused while an old event for it is queued), so
    // the connection must be confirmed: getpeername succeeds once connected. Otherwise SO_ERROR
    // says whether the connect failed or is still in progress (then wait again).
    sockaddr_storage peer;
    socklen_t len = sizeof peer;
    if (::getpeername(self->upstream_.native_handle(), reinterpret_cast<sockaddr*>(&peer), &len) == 0) {
      self->on_connected({});
      return;
    }
    if (const error_code error = pending_socket_error(self->upstream_)) {
      self->on_connected(error);
    } else {
      self->wait_for_connect();  // still connecting
    }
  });
}

void tcp_session::on_connected(const error_code& ec) {
  if (phase_ != phase::connecting) return;
  // A success queued just as the timer closed the socket is still a timeout.
  if (ec || connect_timed_out_) {
    on_connect_failed(connect_timed_out_, ec);
    return;
  }
  // Outlier detection (Envoy: LocalOriginConnectSuccessFinal resets the consecutive counters).
  if (host_->report(lb::outcome::connect_success)) owner_.report_detection(cluster_->name);
  error_code opt_ec;
  upstream_.set_option(asio::ip::tcp::no_delay(true), opt_ec);
  last_activity_ = clock::now();
  upstream_connected_ = true;
  if (log_ && (listener_->log_needs & accesslog::needs_upstream_local)) {
    const auto local = upstream_.local_endpoint(opt_ec);
    if (!opt_ec) log_->upstream_local = to_log_address(local);
  }
  cluster_stats_->upstream_cx_connect_ms.record(
      std::chrono::duration<double, std::milli>(last_activity_ - connect_started_).count());
  arm_timer(relay_deadline());
  forward_hello();
}

void tcp_session::on_connect_failed(bool timed_out, const error_code& ec) {
  (timed_out ? cluster_stats_->upstream_cx_connect_timeout : cluster_stats_->upstream_cx_connect_fail).inc();
  // Envoy's tcp_proxy flags a refused or reset connect and a connect timeout alike as
  // UpstreamConnectionFailure (onConnectTimeout); the errno is the transport failure reason.
  flag(accesslog::response_flag::upstream_connection_failure);
  if (log_) log_->upstream_connect_errno = timed_out ? 0 : ec.value();
  host_->connect_failed();
  // LocalOriginTimeout / LocalOriginConnectFailed feed outlier detection; a counter reaching
  // its threshold is decided on by the control thread.
  if (host_->report(timed_out ? lb::outcome::connect_timeout : lb::outcome::connect_failed)) {
    owner_.report_detection(cluster_->name);
  }
  EWGW_LOG(debug, "tcp", timed_out ? "upstream connect timeout" : "upstream connect failed",
           {{"cluster", cluster_->name}, {"host", host_->address().to_string()}});
  release_upstream();
  error_code ignored;
  upstream_.close(ignored);
  if (connect_attempts_ < chain_->settings->max_connect_attempts) {
    connect();
    return;
  }
  // As Envoy's onConnectMaxAttempts: counted whenever the attempts are spent, including the
  // default single attempt.
  cluster_stats_->upstream_cx_connect_attempts_exceeded.inc();
  // Envoy sets UpstreamRetryLimitExceeded whenever the attempts are spent, also with the default
  // max_connect_attempts of 1 (onConnectMaxAttempts), hence Istio's familiar "UF,URX".
  flag(accesslog::response_flag::upstream_retry_limit_exceeded);
  close();
}

void tcp_session::forward_hello() {
  if (!hello_ || hello_->size == 0) {
    hello_.reset();
    start_relay();
    return;
  }
  phase_ = phase::forwarding;
  cluster_stats_->upstream_cx_tx_bytes_total.inc(hello_->size);
  asio::async_write(upstream_, asio::buffer(hello_->data.get(), hello_->size),
                    [self = shared_from_this()](const error_code& ec, std::size_t) {
                      if (self->phase_ != phase::forwarding) return;
                      if (ec) {
                        self->note_reset(self->upstream_, ec);
                        self->close();
                        return;
                      }
                      self->hello_.reset();
                      self->last_activity_ = clock::now();
                      self->start_relay();
                    });
}

void tcp_session::start_relay() {
  phase_ = phase::relaying;
  // A direction whose source is known to be empty starts by waiting rather than reading: asio's
  // async_wait re-arms the socket with EPOLL_CTL_MOD, and epoll reports it at once if bytes
  // arrived in between (the kernel re-checks readiness on MOD), so waiting loses nothing and
  // saves a read that would fail with EAGAIN. The downstream was drained if the last read of
  // the ClientHello came back short; the upstream has just connected.
  if (downstream_drained_) {
    wait_readable(down_to_up_);
  } else {
    pump(down_to_up_);
  }
  if (phase_ == phase::relaying) wait_readable(up_to_down_);
}

void tcp_session::wait_readable(direction& d) {
  d.from->async_wait(asio::socket_base::wait_read, [self = shared_from_this(), &d](const error_code& ec) {
    if (self->phase_ != phase::relaying) return;
    if (ec) {
      self->note_reset(*d.from, ec);
      self->close();
      return;
    }
    self->pump(d);
  });
}

void tcp_session::pump(direction& d) {
  if (!d.buffer) d.buffer = owner_.buffers().acquire();
  // Relay chunk after chunk without returning to the event loop while both sockets keep up:
  // read, then write with a non-blocking send; only a send that cannot complete goes through
  // async_write. The per-turn bound keeps one busy connection from starving the others.
  for (int chunk = 0; chunk < max_chunks_per_turn; ++chunk) {
    error_code ec;
    const std::size_t n = d.from->read_some(asio::buffer(d.buffer.get(), buffer_pool::block_size), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      // Nothing in flight: give the buffer back while this direction is idle.
      owner_.buffers().release(std::move(d.buffer));
      wait_readable(d);
      return;
    }
    if (ec == asio::error::eof) {
      owner_.buffers().release(std::move(d.buffer));
      finish_direction(d);
      return;
    }
    if (ec) {
      note_reset(*d.from, ec);
      close();
      return;
    }
    last_activity_ = clock::now();
    if (d.downstream_to_upstream) {
      tcp_stats_->downstream_cx_rx_bytes_total.inc(n);
      cluster_stats_->upstream_cx_tx_bytes_total.inc(n);
      if (log_) log_->bytes_received += n;
    } else {
      cluster_stats_->upstream_cx_rx_bytes_total.inc(n);
      tcp_stats_->downstream_cx_tx_bytes_total.inc(n);
      if (log_) log_->bytes_sent += n;
    }
    std::size_t written = 0;
    while (written < n) {
      const std::size_t w = d.to->write_some(asio::buffer(d.buffer.get() + written, n - written), ec);
      if (ec) break;
      written += w;
    }
    if (written == n) {
      if (n == buffer_pool::block_size) continue;  // more may be queued
      // A short read drained the socket: wait instead of reading into EAGAIN (start_relay()
      // says why that is safe).
      owner_.buffers().release(std::move(d.buffer));
      wait_readable(d);
      return;
    }
    if (ec != asio::error::would_block && ec != asio::error::try_again) {
      note_reset(*d.to, ec);
      close();
      return;
    }
    // The peer is slower than the sender: finish this chunk asynchronously; reading resumes
    // when it is written (backpressure).
    asio::async_write(*d.to, asio::buffer(d.buffer.get() + written, n - written),
                      [self = shared_from_this(), &d](const error_code& wec, std::size_t bytes) {
                        self->on_written(d, wec, bytes);
                      });
    return;
  }
  asio::post(owner_.context(), [self = shared_from_this(), &d] {
    if (self->phase_ == phase::relaying) self->pump(d);
  });
}

void tcp_session::on_written(direction& d, const error_code& ec, std::size_t) {
  if (phase_ != phase::relaying) return;
  if (ec) {
    note_reset(*d.to, ec);
    close();
    return;
  }
  last_activity_ = clock::now();
  // Keep the buffer and read again at once: while data flows the next read usually succeeds,
  // and with edge-triggered epoll the readiness edge may already have been consumed.
  pump(d);
}

void tcp_session::finish_direction(direction& d) {
  // Half-close: the peer finished sending, so finish sending to the other side (RFC 9293
  // s3.6: a FIN closes one direction; the other may keep carrying data). A later reset from
  // that peer is caught by watch_for_errors().
  d.finished = true;
  if (down_to_up_.finished && up_to_down_.finished) {
    // Both peers finished: close() sends the FIN that shutdown() would, with nothing left
    // unread on either socket (so no RST), one system call cheaper.
    close();
    return;
  }
  error_code ec;
  d.to->shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (ec && ec != asio::error::not_connected) {
    close();
  } else {
    watch_for_errors(*d.from);
  }
}

tcp_session::clock::time_point tcp_session::relay_deadline() const {
  const chain_settings& tp = *chain_->settings;
  clock::time_point deadline = clock::time_point::max();
  if (tp.idle_timeout.count() > 0) deadline = last_activity_ + tp.idle_timeout;
  if (tp.max_downstream_connection_duration.count() > 0) {
    deadline = std::min(deadline, routed_at_ + tp.max_downstream_connection_duration);
  }
  return deadline;
}

void tcp_session::arm_timer(clock::time_point deadline) {
  // A wait already pending for an earlier (or the same) time will fire first and re-arm for
  // whatever is due then, so only an earlier deadline needs the timer moved. This spares most
  // connections a cancel and a timerfd update at each phase change.
  if (armed_until_ <= deadline) return;
  if (deadline == clock::time_point::max()) return;
  timer_.expires_at(deadline);
  armed_until_ = deadline;
  timer_.async_wait([self = shared_from_this()](const error_code& ec) { self->on_timer(ec); });
}

// One timer serves every phase. A firing may be stale (the phase moved on after it was queued),
// so each phase re-checks its own deadline against the clock and re-arms when not yet due.
// The idle deadline moves with every read and write without touching the timer: the timer only
// fires at the old deadline and re-arms for the remainder.
void tcp_session::on_timer(const error_code& ec) {
  if (ec == asio::error::operation_aborted) return;
  armed_until_ = clock::time_point::max();
  const clock::time_point now = clock::now();
  switch (phase_) {
    case phase::inspecting:
      if (now < inspect_deadline_) return arm_timer(inspect_deadline_);
      listener_stats_.downstream_pre_cx_timeout.inc();
      if (listener_->continue_on_listener_filters_timeout) {
        route({}, "raw_buffer", {});
      } else {
        close();
      }
      return;
    case phase::connecting:
      if (now < connect_deadline_) return arm_timer(connect_deadline_);
      connect_timed_out_ = true;
      {
        // Closing the socket completes the pending connect with operation_aborted, which
        // on_connected() reports as a timeout.
        error_code ignored;
        upstream_.close(ignored);
      }
      return;
    case phase::forwarding:
    case phase::relaying: {
      const clock::time_point deadline = relay_deadline();
      if (now < deadline) return arm_timer(deadline);
      const chain_settings& tp = *chain_->settings;
      if (tp.max_downstream_connection_duration.count() > 0 && now >= routed_at_ + tp.max_downstream_connection_duration) {
        tcp_stats_->max_downstream_connection_duration.inc();
        flag(accesslog::response_flag::duration_timeout);  // Envoy: DurationTimeout ("DT")
      } else {
        // Envoy's tcp_proxy closes an idle session without a response flag.
        tcp_stats_->idle_timeout.inc();
      }
      close();
      return;
    }
    case phase::closed:
      return;
  }
}

void tcp_session::release_upstream() {
  if (!upstream_counted_) return;
  upstream_counted_ = false;
  if (upstream_connected_) {
    upstream_connected_ = false;
    cluster_stats_->upstream_cx_length_ms.record(
        std::chrono::duration<double, std::milli>(clock::now() - connect_started_).count());
  }
  cluster_stats_->upstream_cx_active.sub();
  cluster_stats_->upstream_cx_destroy.inc();
  cluster_->shared->active_connections.fetch_sub(1, std::memory_order_relaxed);
  host_->connection_closed();
}

void tcp_session::close() {
  if (phase_ == phase::closed) return;
  phase_ = phase::closed;
  if (log_) log_->ended = clock::now();
  error_code ignored;
  timer_.cancel();
  // Closing cancels pending operations; their handlers still run (and see phase closed) and
  // still hold the session, so buffers a pending write points at stay valid until the
  // destructor releases them.
  downstream_.close(ignored);
  upstream_.close(ignored);
  release_upstream();
}

}  // namespace ewgw::proxy
