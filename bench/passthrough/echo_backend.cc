// ewgw-bench-backend: the upstream for the passthrough benchmark. A plain TCP echo server on
// 127.0.0.1: every byte read is written back; a FIN from the peer is answered with a FIN once
// the pending echo is written. One thread, one epoll set, no per-connection threads; an idle
// connection costs one small struct (a write backlog is allocated only while the peer is not
// reading), so it holds tens of thousands of idle connections.
//
//   ewgw-bench-backend [--port P]     P = 0 (default) picks a free port
//
// Prints "port <P>" on stdout once listening, then serves until SIGINT or SIGTERM. Loopback only.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace {

volatile std::sig_atomic_t stop_requested = 0;
void on_signal(int) { stop_requested = 1; }

constexpr std::size_t read_chunk = 64 * 1024;

struct connection {
  int fd = -1;
  bool want_write = false;      // EPOLLOUT registered
  std::vector<char> backlog;    // echo bytes not yet accepted by the socket
  std::size_t backlog_off = 0;  // written part of backlog
};

int epfd = -1;
std::size_t open_connections = 0;

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

void close_connection(connection* c) {
  epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  delete c;
  --open_connections;
}

void set_events(connection* c, bool want_write) {
  if (c->want_write == want_write) return;
  c->want_write = want_write;
  epoll_event ev{};
  // While a backlog is pending, stop reading: the peer must drain its side first (back-pressure).
  ev.events = want_write ? EPOLLOUT : EPOLLIN;
  ev.data.ptr = c;
  epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

// Writes what the socket takes; keeps the rest in the backlog. Returns false on a fatal error.
bool echo(connection* c, const char* data, std::size_t n) {
  std::size_t off = 0;
  while (off < n) {
    const ssize_t w = send(c->fd, data + off, n - off, MSG_NOSIGNAL);
    if (w > 0) {
      off += static_cast<std::size_t>(w);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      c->backlog.assign(data + off, data + n);
      c->backlog_off = 0;
      set_events(c, true);
      return true;
    } else {
      return false;
    }
  }
  return true;
}

// Level-triggered read: one chunk per wake-up keeps one busy connection from starving others.
void on_readable(connection* c, char* buf) {
  const ssize_t n = recv(c->fd, buf, read_chunk, 0);
  if (n > 0) {
    if (!echo(c, buf, static_cast<std::size_t>(n))) close_connection(c);
    return;
  }
  if (n == 0) {
    // Nothing is pending (we only read with an empty backlog): answer the FIN and close.
    close_connection(c);
    return;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
  close_connection(c);
}

void on_writable(connection* c) {
  while (c->backlog_off < c->backlog.size()) {
    const ssize_t w = send(c->fd, c->backlog.data() + c->backlog_off, c->backlog.size() - c->backlog_off, MSG_NOSIGNAL);
    if (w > 0) {
      c->backlog_off += static_cast<std::size_t>(w);
    } else if (w < 0 && errno == EINTR) {
      continue;
    } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      return;
    } else {
      close_connection(c);
      return;
    }
  }
  std::vector<char>().swap(c->backlog);  // give the memory back; idle connections hold none
  c->backlog_off = 0;
  set_events(c, false);
}

void accept_all(int lfd) {
  for (;;) {
    const int fd = accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK) std::fprintf(stderr, "ewgw-bench-backend: accept: %s\n", std::strerror(errno));
      return;  // EMFILE etc.: the pending connection waits in the backlog
    }
    const int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    auto* c = new connection;
    c->fd = fd;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.ptr = c;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
      close(fd);
      delete c;
      continue;
    }
    ++open_connections;
  }
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--port" && i + 1 < argc) {
      port = std::atoi(argv[++i]);
    } else if (a == "--help" || a == "-h") {
      std::printf("usage: ewgw-bench-backend [--port P]   (TCP echo on 127.0.0.1; P=0 picks a free port)\n");
      return 0;
    } else {
      std::fprintf(stderr, "ewgw-bench-backend: unknown argument '%s'\n", argv[i]);
      return 2;
    }
  }
  if (port < 0 || port > 65535) {
    std::fprintf(stderr, "ewgw-bench-backend: bad port\n");
    return 2;
  }
  raise_fd_limit();
  std::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  const int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || listen(lfd, 65535) != 0) {
    std::fprintf(stderr, "ewgw-bench-backend: bind/listen 127.0.0.1:%d: %s\n", port, std::strerror(errno));
    return 1;
  }
  socklen_t len = sizeof addr;
  getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
  std::printf("port %d\n", ntohs(addr.sin_port));
  std::fflush(stdout);

  epfd = epoll_create1(EPOLL_CLOEXEC);
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.ptr = nullptr;  // nullptr marks the listener
  epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);

  auto buf = std::make_unique<char[]>(read_chunk);
  std::vector<epoll_event> events(1024);
  while (!stop_requested) {
    const int n = epoll_wait(epfd, events.data(), static_cast<int>(events.size()), 500);
    if (n < 0) {
      if (errno == EINTR) continue;
      std::perror("epoll_wait");
      return 1;
    }
    for (int i = 0; i < n; ++i) {
      auto* c = static_cast<connection*>(events[i].data.ptr);
      if (c == nullptr) {
        accept_all(lfd);
        continue;
      }
      // A connection closed earlier in this batch cannot appear later in it: epoll reports each
      // fd once per wait, and we never close one connection while handling another.
      if (c->want_write) {
        if (events[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) on_writable(c);
      } else {
        on_readable(c, buf.get());
      }
    }
  }
  std::fprintf(stderr, "ewgw-bench-backend: stopping with %zu open connection(s)\n", open_connections);
  return 0;
}
