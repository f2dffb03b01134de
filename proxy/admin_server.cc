#include "proxy/admin_server.h"

#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include "stats/log.h"

namespace ewgw::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using boost::system::error_code;

std::map<std::string, std::string> parse_query(std::string_view query) {
  std::map<std::string, std::string> out;
  auto decode = [](std::string_view in) {
    std::string s;
    for (std::size_t i = 0; i < in.size(); ++i) {
      if (in[i] == '+') {
        s.push_back(' ');
      } else if (in[i] == '%' && i + 2 < in.size() && std::isxdigit(static_cast<unsigned char>(in[i + 1])) &&
                 std::isxdigit(static_cast<unsigned char>(in[i + 2]))) {
        s.push_back(static_cast<char>(std::stoi(std::string(in.substr(i + 1, 2)), nullptr, 16)));
        i += 2;
      } else {
        s.push_back(in[i]);
      }
    }
    return s;
  };
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    const std::size_t eq = pair.find('=');
    if (!pair.empty()) {
      out[decode(pair.substr(0, eq))] = eq == std::string_view::npos ? "" : decode(pair.substr(eq + 1));
    }
    if (amp == std::string_view::npos) break;
    query.remove_prefix(amp + 1);
  }
  return out;
}

class admin_server::session : public std::enable_shared_from_this<session> {
 public:
  session(admin_server& server, asio::ip::tcp::socket socket)
      : server_(server), stream_(std::move(socket)) {}

  void start() { read(); }

 private:
  void read() {
    parser_.emplace();
    parser_->header_limit(8 * 1024);
    parser_->body_limit(64 * 1024);
    stream_.expires_after(std::chrono::seconds(30));
    http::async_read(stream_, buffer_, *parser_, [self = shared_from_this()](const error_code& ec, std::size_t) {
      self->on_read(ec);
    });
  }

  void on_read(const error_code& ec) {
    if (ec == http::error::end_of_stream || ec == asio::error::eof) {
      error_code ignored;
      stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
      return;
    }
    if (ec) {
      if (ec != beast::error::timeout && ec != asio::error::operation_aborted && ec != asio::error::connection_reset) {
        // Malformed request: answer once, then close.
        respond({400, "text/plain; charset=UTF-8", "bad request: " + ec.message() + "\n"}, false, 11);
      }
      return;
    }
    const auto& req = parser_->get();
    admin_request request;
    request.method = std::string(req.method_string());
    const std::string_view target(req.target().data(), req.target().size());
    const std::size_t q = target.find('?');
    request.path = std::string(target.substr(0, q));
    if (q != std::string_view::npos) request.query = parse_query(target.substr(q + 1));
    respond(server_.dispatch(request), req.keep_alive(), req.version());
  }

  void respond(admin_response r, bool keep_alive, unsigned version) {
    auto res = std::make_shared<http::response<http::string_body>>(static_cast<http::status>(r.status), version);
    res->set(http::field::server, "ewgw");
    res->set(http::field::content_type, r.content_type);
    res->keep_alive(keep_alive);
    res->body() = std::move(r.body);
    res->prepare_payload();
    http::async_write(stream_, *res, [self = shared_from_this(), res, keep_alive](const error_code& ec, std::size_t) {
      if (ec || !keep_alive) {
        error_code ignored;
        self->stream_.socket().shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
        return;
      }
      self->read();
    });
  }

  admin_server& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<http::request_parser<http::string_body>> parser_;
};

admin_server::admin_server(asio::io_context& context) : context_(context), acceptor_(context) {}

admin_server::~admin_server() { stop(); }

void admin_server::route(std::string path, std::string methods, std::string help, handler h) {
  routes_[std::move(path)] = route_entry{std::move(methods), std::move(help), std::move(h)};
}

std::optional<std::string> admin_server::listen(const std::string& address, std::uint16_t port) {
  error_code ec;
  const auto ip = asio::ip::make_address(address, ec);
  if (ec) return "admin address '" + address + "' is not a numeric IP address";
  const asio::ip::tcp::endpoint endpoint(ip, port);
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor_.bind(endpoint, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return "cannot listen on " + address + ":" + std::to_string(port) + ": " + ec.message();
  port_ = acceptor_.local_endpoint().port();
  accept();
  return std::nullopt;
}

void admin_server::stop() {
  error_code ignored;
  acceptor_.close(ignored);
}

void admin_server::accept() {
  acceptor_.async_accept([this](const error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
    if (!ec) std::make_shared<session>(*this, std::move(socket))->start();
    accept();
  });
}

admin_response admin_server::dispatch(const admin_request& request) const {
  auto it = routes_.find(request.path);
  if (it == routes_.end()) {
    std::string body = "unknown path '" + request.path + "'; available:\n";
    for (const auto& [path, r] : routes_) body += "  " + path + "  (" + r.methods + ") " + r.help + "\n";
    return {404, "text/plain; charset=UTF-8", body};
  }
  if (it->second.methods.find(request.method) == std::string::npos) {
    return {405, "text/plain; charset=UTF-8", request.path + " accepts " + it->second.methods + "\n"};
  }
  return it->second.fn(request);
}

}  // namespace ewgw::proxy
