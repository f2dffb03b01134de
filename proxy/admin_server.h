// A small HTTP/1.1 server for the admin (15000), Prometheus (15090) and readiness (15021)
// endpoints, on Boost.Beast. It runs on the control thread's io_context, never on a worker, so
// a slow scrape cannot delay traffic. Requests are bounded (8 KiB of headers, 64 KiB of body,
// 30 s per connection); anything malformed gets a 400 and the connection is closed.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

namespace ewgw::proxy {

struct admin_request {
  std::string method;  // "GET", "POST", ...
  std::string path;    // without the query
  std::map<std::string, std::string> query;
};

struct admin_response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=UTF-8";
  std::string body;
};

class admin_server {
 public:
  using handler = std::function<admin_response(const admin_request&)>;

  explicit admin_server(boost::asio::io_context& context);
  ~admin_server();

  // Exact-path routes; `methods` lists the allowed methods (others get 405).
  void route(std::string path, std::string methods, std::string help, handler h);

  // Binds and starts accepting. Returns an error naming the address on failure.
  std::optional<std::string> listen(const std::string& address, std::uint16_t port);
  std::uint16_t port() const { return port_; }
  void stop();

 private:
  struct route_entry {
    std::string methods;
    std::string help;
    handler fn;
  };
  class session;
  void accept();
  admin_response dispatch(const admin_request& request) const;

  boost::asio::io_context& context_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::map<std::string, route_entry> routes_;
};

// "a=1&b=two" -> {a: 1, b: two} (percent-decoding included).
std::map<std::string, std::string> parse_query(std::string_view query);

}  // namespace ewgw::proxy
