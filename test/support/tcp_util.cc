#include "test/support/tcp_util.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <system_error>

namespace ewgw::test {

namespace {

using clock = std::chrono::steady_clock;

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::runtime_error(what + ": " + std::strerror(errno));
}

sockaddr_in loopback(std::uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return addr;
}

void set_io_timeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

// Milliseconds left until `deadline`, clamped to [0, INT_MAX] for poll().
int remaining_ms(clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
  if (left <= 0) return 0;
  return left > 1'000'000'000 ? 1'000'000'000 : static_cast<int>(left);
}

bool wait_ready(int fd, short events, clock::time_point deadline) { return detail::poll_until(fd, events, deadline); }

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK || err == EINTR; }

}  // namespace

bool detail::poll_until(int fd, short events, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;
  }
}

void ignore_sigpipe() {
  static std::once_flag once;
  std::call_once(once, [] { std::signal(SIGPIPE, SIG_IGN); });
}

void unique_fd::reset(int fd) {
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

int connect_tcp(std::uint16_t port, std::chrono::milliseconds timeout) {
  ignore_sigpipe();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  const auto fail = [fd](int err) {
    ::close(fd);
    errno = err;
    return -1;
  };
  const sockaddr_in addr = loopback(port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (errno != EINPROGRESS) return fail(errno);
    // Non-blocking connect so the wait is bounded by `timeout`, not the kernel's SYN retries.
    if (!wait_ready(fd, POLLOUT, clock::now() + timeout)) return fail(ETIMEDOUT);
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return fail(errno);
    if (err != 0) return fail(err);
  }
  const int flags = ::fcntl(fd, F_GETFL);
  ::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  set_io_timeouts(fd, timeout);
  return fd;
}

bool send_all(int fd, std::string_view data, std::chrono::milliseconds timeout) {
  ignore_sigpipe();
  auto deadline = clock::now() + timeout;
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      deadline = clock::now() + timeout;  // the timeout bounds a stall, not the whole transfer
      continue;
    }
    if (n < 0 && would_block(errno)) {
      if (!wait_ready(fd, POLLOUT, deadline)) return false;
      continue;
    }
    return false;
  }
  return true;
}

bool read_exact(int fd, std::size_t n, std::string& out, std::chrono::milliseconds timeout) {
  out.clear();
  const auto deadline = clock::now() + timeout;
  char buf[64 * 1024];
  while (out.size() < n) {
    if (!wait_ready(fd, POLLIN, deadline)) return false;
    const std::size_t want = std::min(sizeof buf, n - out.size());
    const ssize_t got = ::recv(fd, buf, want, MSG_DONTWAIT);
    if (got > 0) {
      out.append(buf, static_cast<std::size_t>(got));
    } else if (got == 0 || !would_block(errno)) {
      return false;
    }
  }
  return true;
}

read_result read_until_eof(int fd, std::chrono::milliseconds timeout) {
  read_result result;
  const auto deadline = clock::now() + timeout;
  char buf[64 * 1024];
  for (;;) {
    if (!wait_ready(fd, POLLIN, deadline)) {
      result.timed_out = true;
      return result;
    }
    const ssize_t got = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got > 0) {
      result.bytes.append(buf, static_cast<std::size_t>(got));
    } else if (got == 0) {
      result.closed_cleanly = true;
      return result;
    } else if (errno == ECONNRESET) {
      result.reset = true;
      return result;
    } else if (!would_block(errno)) {
      result.error = errno;
      return result;
    }
  }
}

bool wait_closed(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  char buf[16 * 1024];
  for (;;) {
    if (!wait_ready(fd, POLLIN, deadline)) return false;
    const ssize_t got = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got == 0) return true;
    if (got < 0 && !would_block(errno)) return errno == ECONNRESET;
  }
}

std::uint16_t unused_port() {
  unique_fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  sockaddr_in addr = loopback(0);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind 127.0.0.1:0");
  socklen_t len = sizeof addr;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) throw_errno("getsockname");
  // Closed without listen(): the port is free again and a connect gets RST (ECONNREFUSED).
  return ntohs(addr.sin_port);
}

// ---------------------------------------------------------------------------------------------
// threaded_listener

threaded_listener::threaded_listener(handler h, std::uint16_t port, std::chrono::milliseconds io_timeout)
    : handler_(std::move(h)), io_timeout_(io_timeout) {
  ignore_sigpipe();
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw_errno("socket");
  // A fixed port (the demo) must be reusable right after a previous run left TIME_WAIT behind.
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr = loopback(port);
  // A full accept queue makes the kernel drop handshakes and, with SYN cookies, answer the
  // client's data with RST: stress tests open 1,000 connections at once, so take the maximum.
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listen_fd_, SOMAXCONN) != 0) {
    const int err = errno;
    ::close(listen_fd_);
    errno = err;
    throw_errno("listen on 127.0.0.1:" + std::to_string(port));
  }
  socklen_t len = sizeof addr;
  ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
}

threaded_listener::~threaded_listener() { stop(); }

void threaded_listener::accept_loop() {
  while (!stopping_.load()) {
    // The poll timeout is a backstop: stop() also wakes it by shutting the socket down.
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 200) <= 0) continue;
    if (stopping_.load()) break;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINVAL || errno == EBADF) break;  // shut down by stop()
      continue;                                       // EINTR, ECONNABORTED, EMFILE...: keep going
    }
    const int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    set_io_timeouts(fd, io_timeout_);
    const std::size_t index = accepted_.fetch_add(1);

    std::lock_guard lock(mu_);
    reap_locked();
    if (stopping_.load()) {
      ::close(fd);
      break;
    }
    auto it = connections_.emplace(connections_.end());
    it->fd = fd;
    try {
      it->thread = std::thread([this, it, fd, index] {
        handler_(fd, index);
        std::lock_guard done_lock(mu_);
        // Closed under the lock so stop() never shuts down a reused descriptor number.
        ::close(fd);
        it->fd = -1;
        it->done = true;
      });
    } catch (const std::system_error&) {
      // Out of threads (a stress test): drop this connection rather than terminate.
      ::close(fd);
      connections_.erase(it);
    }
  }
}

// Joins finished connection threads so a long test does not accumulate thousands of them.
void threaded_listener::reap_locked() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->done) {
      it->thread.join();  // the thread only returns after setting done; this cannot block long
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

void threaded_listener::stop() {
  // Idempotent (the destructor calls it again), but not meant to race with itself.
  stopping_.store(true);
  if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) acceptor_.join();
  std::list<connection> running;
  {
    std::lock_guard lock(mu_);
    if (listen_fd_ >= 0) {
      ::close(listen_fd_);
      listen_fd_ = -1;
    }
    for (auto& c : connections_) {
      if (c.fd >= 0) ::shutdown(c.fd, SHUT_RDWR);
    }
    // splice keeps the elements (and the iterators the threads hold) valid.
    running.splice(running.end(), connections_);
  }
  for (auto& c : running) {
    if (c.thread.joinable()) c.thread.join();
  }
}

// ---------------------------------------------------------------------------------------------
// tcp_echo_server

tcp_echo_server::tcp_echo_server(std::uint16_t port)
    : listener_(std::make_unique<threaded_listener>([this](int fd, std::size_t) { serve(fd); }, port)) {}

tcp_echo_server::~tcp_echo_server() { listener_->stop(); }

void tcp_echo_server::serve(int fd) {
  char buf[64 * 1024];
  for (;;) {
    // Blocking recv bounded by SO_RCVTIMEO; stop() unblocks it with shutdown().
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    // Counters move before the bytes or FIN they describe go out, so a client that has seen
    // them can rely on the counter already being up to date.
    if (n > 0) {
      bytes_echoed_ += static_cast<std::uint64_t>(n);
      if (!send_all(fd, std::string_view(buf, static_cast<std::size_t>(n)))) return;
    } else if (n == 0) {
      // Everything read has been written back; pass the half-close on.
      ++half_closes_;
      ::shutdown(fd, SHUT_WR);
      return;
    } else if (errno != EINTR) {
      return;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// tcp_sink_server

struct tcp_sink_server::connection {
  std::mutex io_mu;  // held while the test writes or shuts down fd, so fd cannot close under it
  int fd = -1;       // -1 once the serving thread is about to return (the listener closes it)
  // Guarded by tcp_sink_server::mu_:
  std::string data;
  bool peer_closed = false;
  bool close_requested = false;
};

tcp_sink_server::tcp_sink_server(std::uint16_t port)
    : listener_(std::make_unique<threaded_listener>([this](int fd, std::size_t index) { serve(fd, index); }, port)) {}

tcp_sink_server::~tcp_sink_server() { stop(); }

void tcp_sink_server::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  listener_->stop();
}

void tcp_sink_server::serve(int fd, std::size_t index) {
  auto conn = std::make_shared<connection>();
  conn->fd = fd;
  {
    std::lock_guard lock(mu_);
    if (connections_.size() <= index) connections_.resize(index + 1);
    connections_[index] = conn;
    ++registered_;
  }
  cv_.notify_all();

  char buf[64 * 1024];
  for (;;) {
    {
      std::unique_lock lock(mu_);
      if (stopping_ || conn->close_requested) break;
      if (conn->peer_closed) {
        // Nothing more to read; keep the socket open until the test closes it or stops.
        cv_.wait(lock, [&] { return stopping_ || conn->close_requested; });
        break;
      }
    }
    // Short poll so a close request or stop is noticed promptly.
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 20) <= 0) continue;
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && would_block(errno)) continue;
    {
      std::lock_guard lock(mu_);
      if (n > 0) {
        conn->data.append(buf, static_cast<std::size_t>(n));
      } else {
        conn->peer_closed = true;  // FIN, RST or another error: the client is gone either way
      }
    }
    cv_.notify_all();
  }
  std::lock_guard io_lock(conn->io_mu);
  conn->fd = -1;
}

std::shared_ptr<tcp_sink_server::connection> tcp_sink_server::find(std::size_t index) const {
  std::lock_guard lock(mu_);
  return index < connections_.size() ? connections_[index] : nullptr;
}

bool tcp_sink_server::wait_for_connections(std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return registered_ >= n; });
}

std::string tcp_sink_server::received(std::size_t index) const {
  std::lock_guard lock(mu_);
  return index < connections_.size() && connections_[index] ? connections_[index]->data : std::string();
}

bool tcp_sink_server::wait_for_bytes(std::size_t index, std::size_t n, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    return index < connections_.size() && connections_[index] && connections_[index]->data.size() >= n;
  });
}

bool tcp_sink_server::peer_closed(std::size_t index) const {
  std::lock_guard lock(mu_);
  return index < connections_.size() && connections_[index] && connections_[index]->peer_closed;
}

bool tcp_sink_server::wait_peer_closed(std::size_t index, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, timeout, [&] {
    return index < connections_.size() && connections_[index] && connections_[index]->peer_closed;
  });
}

bool tcp_sink_server::send(std::size_t index, std::string_view data, std::chrono::milliseconds timeout) {
  auto conn = find(index);
  if (!conn) return false;
  std::lock_guard io_lock(conn->io_mu);
  return conn->fd >= 0 && send_all(conn->fd, data, timeout);
}

void tcp_sink_server::shutdown_write(std::size_t index) {
  auto conn = find(index);
  if (!conn) return;
  std::lock_guard io_lock(conn->io_mu);
  if (conn->fd >= 0) ::shutdown(conn->fd, SHUT_WR);
}

void tcp_sink_server::close(std::size_t index) {
  auto conn = find(index);
  if (!conn) return;
  {
    std::lock_guard lock(mu_);
    conn->close_requested = true;
  }
  cv_.notify_all();
}

void tcp_sink_server::reset(std::size_t index) {
  auto conn = find(index);
  if (!conn) return;
  {
    std::lock_guard io_lock(conn->io_mu);
    if (conn->fd >= 0) {
      // Linger 0: the close that follows sends RST instead of FIN.
      const linger l{1, 0};
      ::setsockopt(conn->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
  }
  close(index);
}

}  // namespace ewgw::test
