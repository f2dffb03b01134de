#include "proxy/gateway.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <set>

#include "proxy/cluster_metrics.h"
#include "proxy/worker.h"
#include "stats/log.h"

namespace ewgw::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

bool same_address(const xds::socket_address& a, const xds::socket_address& b) {
  return a.address == b.address && a.port == b.port && a.ipv4_compat == b.ipv4_compat;
}

}  // namespace

gateway::gateway(gateway_options options)
    : options_(options),
      stats_(options.concurrency == 0 ? 1 : options.concurrency),
      access_logs_({stats_.workers(), options.access_log_queue_capacity, options.access_log_flush_interval}, stats_) {
  for (std::size_t i = 0; i < stats_.workers(); ++i) workers_.push_back(std::make_unique<worker>(i));
  server_stats_ = stats_.get<server_stats>("server", "");
  // Load balancer and Istio metrics per cluster, computed from the snapshot in force when read.
  stats_.add_source([this](const stats::registry::scope_emitter& emit) {
    if (auto snapshot = current_snapshot()) emit_cluster_metrics(*snapshot, emit);
  });
  refresh_server_stats();
  for (auto& w : workers_) {
    w->set_detection_handler([this](std::string_view cluster) { on_detection(cluster); });
  }
  control_work_.emplace(control_.get_executor());
  control_thread_ = std::thread([this] { control_.run(); });
}

void gateway::on_detection(std::string_view cluster_name) {
  asio::post(control_, [this, cluster = std::string(cluster_name)] {
    std::lock_guard lock(cold_mu_);
    if (!snapshot_) return;
    // The current version of the cluster: hosts (and their counters) carry over between
    // versions, so the decision is taken where pickers look.
    if (const auto* c = snapshot_->clusters.find(cluster)) {
      (*c)->balancer->process_detections(std::chrono::steady_clock::now());
    }
  });
}

void gateway::schedule_outlier_ticks() {
  std::lock_guard lock(cold_mu_);
  if (!snapshot_) return;
  for (const auto& c : snapshot_->clusters) {
    const auto interval = c->balancer->outlier_interval();
    if (interval.count() <= 0) continue;  // a stale timer finds this out when it fires
    const std::string name(c->name);
    auto [it, added] = outlier_timers_.try_emplace(name);
    outlier_timer& t = it->second;
    if (!added && t.interval == interval) continue;
    // New, or its interval changed: (re)arm with the new interval now, as Envoy's new outlier
    // detector would, instead of waiting out the old one (which may be minutes away).
    // expires_after cancels the pending wait, whose handler then sees operation_aborted.
    if (!t.timer) t.timer = std::make_unique<asio::steady_timer>(control_);
    t.interval = interval;
    t.timer->expires_after(interval);
    t.timer->async_wait([this, name](const error_code& ec) {
      if (!ec) outlier_tick(name);
    });
  }
}

void gateway::outlier_tick(const std::string& cluster) {
  std::unique_lock lock(cold_mu_);
  auto timer = outlier_timers_.find(cluster);
  if (timer == outlier_timers_.end()) return;
  const cluster_runtime* c = nullptr;
  if (snapshot_) {
    if (const auto* found = snapshot_->clusters.find(cluster)) c = found->get();
  }
  const auto interval = c ? c->balancer->outlier_interval() : std::chrono::milliseconds(0);
  if (interval.count() <= 0) {
    outlier_timers_.erase(timer);  // cluster gone or detection turned off
    return;
  }
  c->balancer->tick(std::chrono::steady_clock::now());
  timer->second.interval = interval;
  timer->second.timer->expires_after(interval);
  timer->second.timer->async_wait([this, cluster](const error_code& ec) {
    if (!ec) outlier_tick(cluster);
  });
}

void gateway::drain_listeners() {
  draining_ = true;
  std::lock_guard lock(bound_mu_);
  for (const auto& [name, b] : bound_) {
    for (auto& w : workers_) w->remove_acceptor(name, b.port);
  }
  EWGW_LOG(info, "gateway", "draining: listeners closed, open connections continue",
           {{"connections", log::num(open_connections())}});
}

namespace {

std::int64_t resident_bytes() {
  // /proc/self/statm: size resident shared ... in pages.
  FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  long size = 0, resident = 0;
  const int n = std::fscanf(f, "%ld %ld", &size, &resident);
  std::fclose(f);
  return n == 2 ? static_cast<std::int64_t>(resident) * sysconf(_SC_PAGESIZE) : 0;
}

}  // namespace

void gateway::refresh_server_stats() {
  // Written only here (the control thread) into block 0; readers sum all blocks.
  server_stats& s = server_stats_->worker(0);
  auto set = [](stats::gauge& g, std::int64_t v) { g.add(v - g.value()); };
  set(s.live, ready() ? 1 : 0);
  set(s.state, draining_ ? 1 : (ready_ ? 0 : 2));
  set(s.uptime, std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started_at_).count());
  set(s.concurrency, static_cast<std::int64_t>(workers_.size()));
  set(s.total_connections, static_cast<std::int64_t>(open_connections()));
  const struct mallinfo2 mi = mallinfo2();
  set(s.memory_allocated, static_cast<std::int64_t>(mi.uordblks + mi.hblkhd));
  set(s.memory_heap_size, static_cast<std::int64_t>(mi.arena + mi.hblkhd));
  set(s.memory_physical_size, resident_bytes());
}

gateway::~gateway() { stop(); }

std::optional<std::string> gateway::bind(const listener_runtime& l, bound_listener& out) {
  error_code ec;
  const auto address = asio::ip::make_address(l.address.address, ec);
  if (ec) return "listener '" + l.name + "': bad address '" + l.address.address + "'";
  std::uint16_t port = l.address.port;
  std::vector<asio::ip::tcp::acceptor> acceptors;
  for (auto& w : workers_) {
    asio::ip::tcp::acceptor acceptor(w->context());
    const asio::ip::tcp::endpoint endpoint(address, port);
    acceptor.open(endpoint.protocol(), ec);
    // As Envoy: an IPv6 listener does not take IPv4 connections unless ipv4_compat is set.
    if (!ec && address.is_v6()) acceptor.set_option(asio::ip::v6_only(!l.address.ipv4_compat), ec);
    if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor.set_option(reuse_port(true), ec);
    if (!ec) acceptor.bind(endpoint, ec);
    if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) acceptor.non_blocking(true, ec);
    if (ec) {
      return "listener '" + l.name + "': cannot listen on " + l.address.address + ":" + std::to_string(port) + ": " +
             ec.message();
    }
    port = acceptor.local_endpoint().port();  // an ephemeral port, once chosen, for all workers
    acceptors.push_back(std::move(acceptor));
  }
  for (std::size_t i = 0; i < workers_.size(); ++i) workers_[i]->add_acceptor(l.name, std::move(acceptors[i]));
  out.address = l.address;
  out.port = port;
  EWGW_LOG(info, "gateway", "listening",
           {{"listener", l.name}, {"address", l.address.address}, {"port", log::num(port)},
            {"workers", log::num(workers_.size())}});
  return std::nullopt;
}

void gateway::unbind(const std::string& name, std::uint16_t port) {
  for (auto& w : workers_) w->remove_acceptor(name, port);
  EWGW_LOG(info, "gateway", "stopped listening; open connections continue",
           {{"listener", name}, {"port", log::num(port)}});
}

std::vector<std::string> gateway::apply(const xds::bootstrap_config& config) {
  std::vector<std::string> errors;
  std::unique_lock cold(cold_mu_);
  auto snapshot = build_snapshot(config, stats_, version_ + 1, snapshot_.get(), errors, &access_logs_);
  if (!errors.empty()) return errors;

  if (started_) {
    // Bind what is new or moved before anything changes, so a bind failure rejects the whole
    // update and the last good configuration stays in force.
    std::map<std::string, bound_listener> fresh;
    for (const auto& l : snapshot->listeners) {
      auto it = bound_.find(l->name);
      if (it != bound_.end() && same_address(it->second.address, l->address)) continue;
      bound_listener b;
      if (auto error = bind(*l, b)) {
        for (const auto& [name, done] : fresh) unbind(name, done.port);
        errors.push_back(*error);
        return errors;
      }
      fresh[l->name] = b;
    }
    std::set<std::string> wanted;
    for (const auto& l : snapshot->listeners) wanted.insert(l->name);
    std::lock_guard lock(bound_mu_);
    for (auto it = bound_.begin(); it != bound_.end();) {
      const bool moved = fresh.contains(it->first);
      if (!wanted.contains(it->first) || moved) {
        unbind(it->first, it->second.port);
        it = bound_.erase(it);
      } else {
        ++it;
      }
    }
    for (auto& [name, b] : fresh) bound_[name] = b;
  }
  ++version_;
  {
    std::lock_guard published(snapshot_mu_);
    snapshot_ = std::move(snapshot);
  }
  for (auto& w : workers_) w->publish(snapshot_);
  cold.unlock();
  asio::post(control_, [this] { schedule_outlier_ticks(); });
  return errors;
}

std::optional<std::string> gateway::start() {
  if (started_) return std::nullopt;
  if (!snapshot_) return "no configuration applied";
  for (const auto& l : snapshot_->listeners) {
    bound_listener b;
    if (auto error = bind(*l, b)) return error;
    std::lock_guard lock(bound_mu_);
    bound_[l->name] = b;
  }
  for (auto& w : workers_) w->publish(snapshot_);
  for (auto& w : workers_) w->start();
  started_ = true;
  ready_ = true;
  return std::nullopt;
}

void gateway::stop() {
  ready_ = false;
  for (auto& w : workers_) w->stop();
  // The workers have closed every connection and handed over their records: write them.
  access_logs_.stop();
  if (control_thread_.joinable()) {
    asio::post(control_, [this] {
      outlier_timers_.clear();
      control_work_.reset();
    });
    control_thread_.join();
  }
}

std::shared_ptr<const routing_snapshot> gateway::current_snapshot() const {
  std::lock_guard lock(snapshot_mu_);
  return snapshot_;
}

std::uint16_t gateway::listener_port(std::string_view listener) const {
  std::lock_guard lock(bound_mu_);
  auto it = bound_.find(std::string(listener));
  return it == bound_.end() ? 0 : it->second.port;
}

std::size_t gateway::open_connections() const {
  std::size_t n = 0;
  for (const auto& w : workers_) n += w->open_sessions();
  return n;
}

}  // namespace ewgw::proxy
