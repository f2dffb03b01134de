#include "proxy/gateway.h"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>

#include "proxy/worker.h"
#include "stats/log.h"

namespace ewgw::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

namespace {

using reuse_port = asio::detail::socket_option::boolean<SOL_SOCKET, SO_REUSEPORT>;

}  // namespace

gateway::gateway(gateway_options options)
    : options_(options), stats_(options.concurrency == 0 ? 1 : options.concurrency) {
  for (std::size_t i = 0; i < stats_.workers(); ++i) workers_.push_back(std::make_unique<worker>(i));
}

gateway::~gateway() { stop(); }

std::vector<std::string> gateway::apply(const xds::bootstrap_config& config) {
  std::vector<std::string> errors;
  auto snapshot = build_snapshot(config, stats_, ++version_, snapshot_.get(), errors);
  if (!errors.empty()) return errors;
  snapshot_ = snapshot;
  for (auto& w : workers_) w->publish(snapshot);
  return errors;
}

std::optional<std::string> gateway::start() {
  if (started_) return std::nullopt;
  if (!snapshot_) return "no configuration applied";
  for (const auto& l : snapshot_->listeners) {
    error_code ec;
    const auto address = asio::ip::make_address(l->address.address, ec);
    if (ec) return "listener '" + l->name + "': bad address '" + l->address.address + "'";
    std::uint16_t port = l->address.port;
    for (auto& w : workers_) {
      asio::ip::tcp::acceptor acceptor(w->context());
      const asio::ip::tcp::endpoint endpoint(address, port);
      acceptor.open(endpoint.protocol(), ec);
      // As Envoy: an IPv6 listener does not take IPv4 connections unless ipv4_compat is set.
      if (!ec && address.is_v6()) acceptor.set_option(asio::ip::v6_only(!l->address.ipv4_compat), ec);
      if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) acceptor.set_option(reuse_port(true), ec);
      if (!ec) acceptor.bind(endpoint, ec);
      if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
      if (!ec) acceptor.non_blocking(true, ec);
      if (ec) {
        return "listener '" + l->name + "': cannot listen on " + l->address.address + ":" + std::to_string(port) +
               ": " + ec.message();
      }
      port = acceptor.local_endpoint().port();  // an ephemeral port, once chosen, for all workers
      w->add_acceptor(l->name, std::move(acceptor));
    }
    bound_.emplace_back(l->name, port);
    EWGW_LOG(info, "gateway", "listening",
             {{"listener", l->name}, {"address", l->address.address}, {"port", log::num(port)},
              {"workers", log::num(workers_.size())}});
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
}

std::uint16_t gateway::listener_port(std::string_view listener) const {
  for (const auto& [name, port] : bound_) {
    if (name == listener) return port;
  }
  return 0;
}

std::size_t gateway::open_connections() const {
  std::size_t n = 0;
  for (const auto& w : workers_) n += w->open_sessions();
  return n;
}

}  // namespace ewgw::proxy
