#include "proxy/tcp_session.h"

#include <boost/asio/write.hpp>

#include <algorithm>
#include <array>
#include <cstring>

#include "proxy/worker.h"
#include "stats/log.h"

namespace ewgw::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

// The first read sizes the hello buffer; Istio configures tls_inspector's initial read buffer
// at 512 bytes and typical ClientHellos are 250-600 bytes (1.7-2 KB with post-quantum key
// shares), so the buffer starts small and doubles only for larger ones.
constexpr std::size_t initial_hello_capacity = 1024;
// More ALPN protocols than this are not used for chain matching (Istio offers five).
constexpr std::size_t max_matched_alpns = 16;

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

}  // namespace

tcp_session::tcp_session(worker& owner, std::shared_ptr<const listener_runtime> listener, asio::ip::tcp::socket downstream)
    : owner_(owner),
      listener_(std::move(listener)),
      downstream_(std::move(downstream)),
      upstream_(owner.context()),
      timer_(owner.context()),
      down_to_up_{&downstream_, &upstream_, nullptr, false, true},
      up_to_down_{&upstream_, &downstream_, nullptr, false, false} {
  owner_.attach(this);
  auto& s = listener_->stats->worker(owner_.id());
  s.downstream_cx_total.inc();
  s.downstream_cx_active.add();
}

tcp_session::~tcp_session() {
  owner_.detach(this);
  owner_.buffers().release(std::move(down_to_up_.buffer));
  owner_.buffers().release(std::move(up_to_down_.buffer));
  auto& s = listener_->stats->worker(owner_.id());
  s.downstream_cx_active.sub();
  s.downstream_cx_destroy.inc();
}

void tcp_session::start() {
  error_code ec;
  downstream_.set_option(asio::ip::tcp::no_delay(true), ec);
  downstream_.non_blocking(true, ec);
  local_port_ = downstream_.local_endpoint(ec).port();
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
  wait_for_hello();
}

void tcp_session::wait_for_hello() {
  downstream_.async_wait(asio::socket_base::wait_read,
                         [self = shared_from_this()](const error_code& ec) { self->on_hello_readable(ec); });
}

void tcp_session::on_hello_readable(const error_code& ec) {
  if (phase_ != phase::inspecting) return;
  auto& tls_stats = listener_->tls_stats->worker(owner_.id());
  if (ec) {
    close();
    return;
  }
  hello_state& h = *hello_;
  const std::size_t limit = tls::default_max_client_hello_bytes;
  error_code avail_ec;
  const std::size_t available = downstream_.available(avail_ec);
  // Read what is there, but never past the size limit: a ClientHello must complete within it,
  // and bytes beyond stay in the kernel until the relay reads them.
  const std::size_t want = std::min(std::max<std::size_t>(available, 1), limit - h.size);
  if (h.size + want > h.capacity) {
    std::size_t cap = std::max(h.capacity * 2, initial_hello_capacity);
    cap = std::min(std::max(cap, h.size + want), limit);
    auto grown = std::make_unique<std::uint8_t[]>(cap);
    if (h.size > 0) std::memcpy(grown.get(), h.data.get(), h.size);
    h.data = std::move(grown);
    h.capacity = cap;
  }
  error_code read_ec;
  const std::size_t n = downstream_.read_some(asio::buffer(h.data.get() + h.size, want), read_ec);
  if (read_ec == asio::error::would_block || read_ec == asio::error::try_again) {
    wait_for_hello();
    return;
  }
  if (read_ec) {
    // EOF or reset before the ClientHello was complete.
    tls_stats.connection_closed.inc();
    close();
    return;
  }
  h.size += n;
  const tls::hello_status status = h.parser.parse({h.data.get(), h.size});
  switch (status) {
    case tls::hello_status::need_more:
      if (h.size >= limit) {
        tls_stats.client_hello_too_large.inc();
        close();
        return;
      }
      wait_for_hello();
      return;
    case tls::hello_status::complete: {
      const tls::client_hello& hello = h.parser.hello();
      tls_stats.tls_found.inc();
      (hello.server_name().empty() ? tls_stats.sni_not_found : tls_stats.sni_found).inc();
      (hello.has_alpn() ? tls_stats.alpn_found : tls_stats.alpn_not_found).inc();
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
      tls_stats.tls_not_found.inc();
      route({}, "raw_buffer", {});
      return;
    case tls::hello_status::too_large:
      tls_stats.client_hello_too_large.inc();
      EWGW_LOG(debug, "tcp", "ClientHello too large", {{"listener", listener_->name}});
      close();
      return;
    case tls::hello_status::malformed:
      tls_stats.client_hello_malformed.inc();
      EWGW_LOG(debug, "tcp", "malformed ClientHello", {{"listener", listener_->name}, {"reason", h.parser.error()}});
      close();
      return;
  }
}

void tcp_session::route(std::string_view server_name, std::string_view transport, std::span<const std::string_view> alpns) {
  const connection_facts facts{local_port_, server_name, transport, alpns};
  const int index = listener_->matcher.match(facts);
  if (index != filter_chain_matcher::no_match) {
    chain_ = &listener_->chains[static_cast<std::size_t>(index)];
  } else if (listener_->default_chain) {
    chain_ = &*listener_->default_chain;
  } else {
    listener_->stats->worker(owner_.id()).no_filter_chain_match.inc();
    EWGW_LOG(debug, "tcp", "no filter chain matched", {{"listener", listener_->name}, {"sni", server_name}});
    close();
    return;
  }
  auto& tcp = chain_->stats->worker(owner_.id());
  tcp.downstream_cx_total.inc();

  // tcp_proxy: weighted_clusters win over everything (Envoy ignores the per-connection cluster
  // that sni_cluster sets when weights are configured); then sni_cluster's SNI; then `cluster`.
  const xds::tcp_proxy_config& tp = chain_->tcp_proxy;
  if (!chain_->weighted.empty()) {
    const std::uint32_t r = static_cast<std::uint32_t>(owner_.random()() % chain_->total_weight);
    for (const weighted_target& t : chain_->weighted) {
      if (r < t.cumulative_weight) {
        cluster_ = t.cluster;
        break;
      }
    }
  } else if (tp.cluster_from_sni && !server_name.empty()) {
    const auto& clusters = owner_.snapshot()->clusters;
    if (auto it = clusters.find(server_name); it != clusters.end()) cluster_ = it->second;
  } else {
    cluster_ = chain_->cluster;
  }
  if (!cluster_) {
    tcp.downstream_cx_no_route.inc();
    EWGW_LOG(debug, "tcp", "no route: cluster not found", {{"listener", listener_->name}, {"sni", server_name}});
    close();
    return;
  }
  routed_at_ = clock::now();
  connect();
}

void tcp_session::connect() {
  auto& cs = cluster_->stats->worker(owner_.id());
  // Circuit breaker (cluster circuit_breakers.thresholds max_connections).
  if (cluster_->active_connections->load(std::memory_order_relaxed) >= cluster_->max_connections) {
    cs.upstream_cx_overflow.inc();
    close();
    return;
  }
  lb::host* previous = host_;
  host_ = cluster_->balancer->pick(owner_.id(), previous);
  if (host_ == nullptr) {
    cs.upstream_cx_none_healthy.inc();
    close();
    return;
  }
  ++connect_attempts_;
  cs.upstream_cx_total.inc();
  cs.upstream_cx_active.add();
  cluster_->active_connections->fetch_add(1, std::memory_order_relaxed);
  host_->connection_opened();
  upstream_counted_ = true;

  phase_ = phase::connecting;
  connect_timed_out_ = false;
  connect_deadline_ = clock::now() + cluster_->connect_timeout;
  arm_timer(connect_deadline_);
  upstream_.async_connect(to_endpoint(host_->address()),
                          [self = shared_from_this()](const error_code& ec) { self->on_connected(ec); });
}

void tcp_session::on_connected(const error_code& ec) {
  if (phase_ != phase::connecting) return;
  if (ec) {
    on_connect_failed(connect_timed_out_);
    return;
  }
  error_code opt_ec;
  upstream_.set_option(asio::ip::tcp::no_delay(true), opt_ec);
  upstream_.non_blocking(true, opt_ec);
  last_activity_ = clock::now();
  arm_timer(relay_deadline());
  forward_hello();
}

void tcp_session::on_connect_failed(bool timed_out) {
  auto& cs = cluster_->stats->worker(owner_.id());
  (timed_out ? cs.upstream_cx_connect_timeout : cs.upstream_cx_connect_fail).inc();
  EWGW_LOG(debug, "tcp", timed_out ? "upstream connect timeout" : "upstream connect failed",
           {{"cluster", cluster_->name}, {"host", host_->address().to_string()}});
  release_upstream();
  error_code ignored;
  upstream_.close(ignored);
  if (connect_attempts_ < chain_->tcp_proxy.max_connect_attempts) {
    connect();
    return;
  }
  if (chain_->tcp_proxy.max_connect_attempts > 1) cs.upstream_cx_connect_attempts_exceeded.inc();
  close();
}

void tcp_session::forward_hello() {
  if (!hello_ || hello_->size == 0) {
    hello_.reset();
    start_relay();
    return;
  }
  phase_ = phase::forwarding;
  const std::size_t n = hello_->size;
  chain_->stats->worker(owner_.id()).downstream_cx_rx_bytes_total.inc(n);
  cluster_->stats->worker(owner_.id()).upstream_cx_tx_bytes_total.inc(n);
  asio::async_write(upstream_, asio::buffer(hello_->data.get(), n),
                    [self = shared_from_this()](const error_code& ec, std::size_t) {
                      if (self->phase_ != phase::forwarding) return;
                      if (ec) {
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
  // Bytes may already be waiting on either side; pump() reads without waiting first.
  pump(down_to_up_);
  if (phase_ == phase::relaying) pump(up_to_down_);
}

void tcp_session::wait_readable(direction& d) {
  d.from->async_wait(asio::socket_base::wait_read, [self = shared_from_this(), &d](const error_code& ec) {
    if (self->phase_ != phase::relaying) return;
    if (ec) {
      self->close();
      return;
    }
    self->pump(d);
  });
}

void tcp_session::pump(direction& d) {
  if (!d.buffer) d.buffer = owner_.buffers().acquire();
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
    close();
    return;
  }
  last_activity_ = clock::now();
  const std::size_t w = owner_.id();
  if (d.downstream_to_upstream) {
    chain_->stats->worker(w).downstream_cx_rx_bytes_total.inc(n);
    cluster_->stats->worker(w).upstream_cx_tx_bytes_total.inc(n);
  } else {
    cluster_->stats->worker(w).upstream_cx_rx_bytes_total.inc(n);
    chain_->stats->worker(w).downstream_cx_tx_bytes_total.inc(n);
  }
  asio::async_write(*d.to, asio::buffer(d.buffer.get(), n),
                    [self = shared_from_this(), &d](const error_code& wec, std::size_t bytes) {
                      self->on_written(d, wec, bytes);
                    });
}

void tcp_session::on_written(direction& d, const error_code& ec, std::size_t) {
  if (phase_ != phase::relaying) return;
  if (ec) {
    close();
    return;
  }
  last_activity_ = clock::now();
  // Keep the buffer and read again at once: while data flows, the next read usually succeeds.
  pump(d);
}

void tcp_session::finish_direction(direction& d) {
  // Half-close: the peer finished sending, so finish sending to the other side (RFC 9293
  // s3.6: a FIN closes one direction; the other may keep carrying data).
  d.finished = true;
  error_code ec;
  d.to->shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  if (down_to_up_.finished && up_to_down_.finished) close();
  else if (ec && ec != asio::error::not_connected) close();
}

tcp_session::clock::time_point tcp_session::relay_deadline() const {
  const xds::tcp_proxy_config& tp = chain_->tcp_proxy;
  clock::time_point deadline = clock::time_point::max();
  if (tp.idle_timeout.count() > 0) deadline = last_activity_ + tp.idle_timeout;
  if (tp.max_downstream_connection_duration.count() > 0) {
    deadline = std::min(deadline, routed_at_ + tp.max_downstream_connection_duration);
  }
  return deadline;
}

void tcp_session::arm_timer(clock::time_point deadline) {
  if (deadline == clock::time_point::max()) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(deadline);
  timer_.async_wait([self = shared_from_this()](const error_code& ec) { self->on_timer(ec); });
}

// One timer serves every phase. A firing may be stale (the phase moved on after it was queued),
// so each phase re-checks its own deadline against the clock and re-arms when not yet due.
void tcp_session::on_timer(const error_code& ec) {
  if (ec == asio::error::operation_aborted) return;
  const clock::time_point now = clock::now();
  switch (phase_) {
    case phase::inspecting:
      if (now < inspect_deadline_) return arm_timer(inspect_deadline_);
      listener_->stats->worker(owner_.id()).downstream_pre_cx_timeout.inc();
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
      auto& tcp = chain_->stats->worker(owner_.id());
      const auto& tp = chain_->tcp_proxy;
      if (tp.max_downstream_connection_duration.count() > 0 && now >= routed_at_ + tp.max_downstream_connection_duration) {
        tcp.max_downstream_connection_duration.inc();
      } else {
        tcp.idle_timeout.inc();
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
  auto& cs = cluster_->stats->worker(owner_.id());
  cs.upstream_cx_active.sub();
  cs.upstream_cx_destroy.inc();
  cluster_->active_connections->fetch_sub(1, std::memory_order_relaxed);
  host_->connection_closed();
}

void tcp_session::close() {
  if (phase_ == phase::closed) return;
  const bool was_connecting = phase_ == phase::connecting;
  phase_ = phase::closed;
  error_code ignored;
  timer_.cancel();
  downstream_.close(ignored);
  upstream_.close(ignored);
  if (was_connecting || upstream_counted_) release_upstream();
  hello_.reset();
  owner_.buffers().release(std::move(down_to_up_.buffer));
  owner_.buffers().release(std::move(up_to_down_.buffer));
}

}  // namespace ewgw::proxy
