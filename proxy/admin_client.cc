#include "proxy/admin_client.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <cctype>

namespace ewgw::proxy {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

std::optional<std::string> parse_admin_target(const std::string& text, admin_target& out) {
  std::string rest = text;
  bool url = false;
  if (rest.starts_with("https://")) return "'" + text + "': https is not supported (the admin port serves plain HTTP)";
  if (rest.starts_with("http://")) {
    rest = rest.substr(7);
    url = true;
  }
  admin_target t;
  if (const std::size_t slash = rest.find('/'); slash != std::string::npos) {
    if (!url) return "'" + text + "': a path needs the http:// form";
    t.prefix = rest.substr(slash);
    while (!t.prefix.empty() && t.prefix.back() == '/') t.prefix.pop_back();
    rest = rest.substr(0, slash);
  }
  std::string port;
  if (rest.starts_with("[")) {
    const std::size_t close = rest.find(']');
    if (close == std::string::npos) return "'" + text + "': unterminated '[' in the address";
    t.host = rest.substr(1, close - 1);
    if (close + 1 < rest.size()) {
      if (rest[close + 1] != ':') return "'" + text + "': expected ':PORT' after ']'";
      port = rest.substr(close + 2);
    }
  } else if (const std::size_t colon = rest.rfind(':'); colon != std::string::npos) {
    t.host = rest.substr(0, colon);
    port = rest.substr(colon + 1);
  } else {
    t.host = rest;
  }
  if (t.host.empty()) return "'" + text + "': no host";
  if (port.empty() && !url) return "'" + text + "': expected HOST:PORT or http://HOST[:PORT][/PATH]";
  if (!port.empty()) {
    for (const char c : port) {
      if (!std::isdigit(static_cast<unsigned char>(c))) return "'" + text + "': port '" + port + "' is not a number";
    }
    if (port.size() > 5 || std::stoul(port) > 65535 || std::stoul(port) == 0) return "'" + text + "': port out of range";
    t.port = port;
  } else {
    t.port = "80";
  }
  out = std::move(t);
  return std::nullopt;
}

std::string url_encode(const std::string& value) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (const unsigned char c : value) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

admin_reply admin_get(const admin_target& target, const std::string& path_and_query, std::chrono::milliseconds timeout) {
  admin_reply reply;
  asio::io_context context;
  asio::ip::tcp::resolver resolver(context);
  beast::tcp_stream stream(context);
  beast::flat_buffer buffer;
  http::request<http::empty_body> request(http::verb::get, target.prefix + path_and_query, 11);
  request.set(http::field::host, target.host);
  request.set(http::field::user_agent, "ewgw");
  http::response_parser<http::string_body> parser;
  parser.body_limit(64 * 1024 * 1024);
  const std::string where = target.host + ":" + target.port;

  resolver.async_resolve(target.host, target.port, [&](const beast::error_code& resolve_ec, const auto& results) {
    if (resolve_ec) {
      reply.error = "cannot resolve " + target.host + ": " + resolve_ec.message();
      return;
    }
    stream.expires_after(timeout);
    stream.async_connect(results, [&](const beast::error_code& connect_ec, const auto&) {
      if (connect_ec) {
        reply.error = "cannot connect to " + where + ": " + connect_ec.message();
        return;
      }
      http::async_write(stream, request, [&](const beast::error_code& write_ec, std::size_t) {
        if (write_ec) {
          reply.error = "cannot send the request to " + where + ": " + write_ec.message();
          return;
        }
        http::async_read(stream, buffer, parser, [&](const beast::error_code& read_ec, std::size_t) {
          if (read_ec) {
            reply.error = "no valid answer from " + where + ": " + read_ec.message();
            return;
          }
          reply.status = parser.get().result_int();
          reply.body = parser.get().body();
        });
      });
    });
  });
  context.run();
  return reply;
}

}  // namespace ewgw::proxy
