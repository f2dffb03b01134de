// Plain-TCP helpers for integration tests: connect/send/read with deadlines, close detection,
// a thread-per-connection listener, an echo server and a recording sink server.
//
// Every blocking step has a timeout so a broken gateway fails a test instead of hanging it.
// Sockets are IPv4 on 127.0.0.1. Writes use MSG_NOSIGNAL and the library ignores SIGPIPE
// (see ignore_sigpipe), so writing to a peer that has gone away is an error, not a crash.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ewgw::test {

inline constexpr std::chrono::milliseconds default_io_timeout{5000};

// Sets SIGPIPE to SIG_IGN once per process. OpenSSL writes with plain send(), which raises
// SIGPIPE on a reset connection and would kill the test binary; the servers and clients here
// call this themselves.
void ignore_sigpipe();

// Owns a file descriptor; closes it on destruction.
class unique_fd {
 public:
  unique_fd() = default;
  explicit unique_fd(int fd) : fd_(fd) {}
  ~unique_fd() { reset(); }
  unique_fd(unique_fd&& other) noexcept : fd_(other.release()) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

// Connects to 127.0.0.1:port within `timeout`. Returns a blocking socket with TCP_NODELAY and
// SO_RCVTIMEO/SO_SNDTIMEO set to `timeout` (so even raw recv/send by a test cannot hang), or
// -1 with errno set (ECONNREFUSED, ETIMEDOUT, ...).
int connect_tcp(std::uint16_t port, std::chrono::milliseconds timeout = default_io_timeout);

// Writes all of `data`; false on error or when no progress is possible within `timeout`.
bool send_all(int fd, std::string_view data, std::chrono::milliseconds timeout = default_io_timeout);

// Reads exactly n bytes into `out` (replacing it); false on EOF, error or timeout (what was read
// so far stays in `out`). `timeout` bounds the whole read.
bool read_exact(int fd, std::size_t n, std::string& out, std::chrono::milliseconds timeout = default_io_timeout);

struct read_result {
  std::string bytes;            // everything read
  bool closed_cleanly = false;  // read returned 0 (the peer sent FIN)
  bool timed_out = false;       // the deadline passed first
  bool reset = false;           // ECONNRESET (the peer sent RST)
  int error = 0;                // errno of any other read failure
};

// Reads until the peer closes, the connection fails, or `timeout` (for the whole read) passes.
read_result read_until_eof(int fd, std::chrono::milliseconds timeout = default_io_timeout);

// True if the peer closed (read returned 0 or ECONNRESET) within `timeout`; data that arrives
// meanwhile is discarded.
bool wait_closed(int fd, std::chrono::milliseconds timeout = default_io_timeout);

// A port on 127.0.0.1 with nothing listening: binds port 0, reads the port, closes. Another
// process could take it in between, but nothing in the test suite listens on fixed ports.
std::uint16_t unused_port();

namespace detail {
// poll() for `events` on fd until `deadline`, retrying on EINTR. True when ready (or in error,
// which the next read or write reports), false on timeout.
bool poll_until(int fd, short events, std::chrono::steady_clock::time_point deadline);
}  // namespace detail

// Listens on 127.0.0.1:port (0: an ephemeral port) and runs `handler(fd, index)` on its own
// thread for each accepted connection; index counts accepted connections from 0. The listener
// closes fd after the handler returns. Accepted sockets are blocking with SO_RCVTIMEO and
// SO_SNDTIMEO set to io_timeout.
//
// stop() (also run by the destructor) shuts the listening socket down, then shuts down every
// open connection so blocked reads and writes return, then joins all threads. Handlers that
// wait on something else (a condition variable) must watch their own stop flag.
class threaded_listener {
 public:
  using handler = std::function<void(int fd, std::size_t index)>;

  explicit threaded_listener(handler h, std::uint16_t port = 0,
                             std::chrono::milliseconds io_timeout = std::chrono::seconds(60));
  ~threaded_listener();
  threaded_listener(const threaded_listener&) = delete;
  threaded_listener& operator=(const threaded_listener&) = delete;

  std::uint16_t port() const { return port_; }
  std::size_t connections_accepted() const { return accepted_.load(); }
  void stop();

 private:
  struct connection {
    std::thread thread;
    int fd = -1;  // -1 once the handler returned and the socket was closed
    bool done = false;
  };

  void accept_loop();
  void reap_locked();

  handler handler_;
  std::chrono::milliseconds io_timeout_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stopping_{false};
  std::atomic<std::size_t> accepted_{0};
  std::mutex mu_;  // guards connections_ and each connection's fd/done
  std::list<connection> connections_;
  std::thread acceptor_;
};

// Echoes every byte back. Half-close aware: on EOF from the client it has already written
// everything it read, so it answers with shutdown(SHUT_WR) and closes — a gateway that
// forwards half-closes lets the client read the full echo and then EOF.
class tcp_echo_server {
 public:
  explicit tcp_echo_server(std::uint16_t port = 0);
  ~tcp_echo_server();

  std::uint16_t port() const { return listener_->port(); }
  std::size_t connections_accepted() const { return listener_->connections_accepted(); }
  std::uint64_t bytes_echoed() const { return bytes_echoed_.load(); }
  // Connections whose EOF was seen and answered with SHUT_WR.
  std::size_t half_closes() const { return half_closes_.load(); }
  void stop() { listener_->stop(); }

 private:
  void serve(int fd);

  std::atomic<std::uint64_t> bytes_echoed_{0};
  std::atomic<std::size_t> half_closes_{0};
  std::unique_ptr<threaded_listener> listener_;  // last: its threads use the members above
};

// Records what each connection sends and lets the test answer, half-close, close or reset
// each connection. Connections are numbered in accept order from 0.
class tcp_sink_server {
 public:
  explicit tcp_sink_server(std::uint16_t port = 0);
  ~tcp_sink_server();

  std::uint16_t port() const { return listener_->port(); }
  std::size_t connections_accepted() const { return listener_->connections_accepted(); }
  bool wait_for_connections(std::size_t n, std::chrono::milliseconds timeout = default_io_timeout);

  // Bytes received so far on connection `index` ("" if it does not exist yet).
  std::string received(std::size_t index) const;
  bool wait_for_bytes(std::size_t index, std::size_t n, std::chrono::milliseconds timeout = default_io_timeout);
  // The client closed its side (FIN) or reset the connection.
  bool peer_closed(std::size_t index) const;
  bool wait_peer_closed(std::size_t index, std::chrono::milliseconds timeout = default_io_timeout);

  // Sends to connection `index`; false if it is gone or the send fails.
  bool send(std::size_t index, std::string_view data, std::chrono::milliseconds timeout = default_io_timeout);
  // FIN towards the client; the connection keeps recording what the client sends.
  void shutdown_write(std::size_t index);
  // Orderly close (FIN) of connection `index`.
  void close(std::size_t index);
  // Abortive close: SO_LINGER 0, so the client sees RST.
  void reset(std::size_t index);

  void stop();

 private:
  struct connection;
  void serve(int fd, std::size_t index);
  std::shared_ptr<connection> find(std::size_t index) const;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::shared_ptr<connection>> connections_;  // by index; null until registered
  std::size_t registered_ = 0;
  bool stopping_ = false;
  std::unique_ptr<threaded_listener> listener_;  // last: its threads use the members above
};

}  // namespace ewgw::test
