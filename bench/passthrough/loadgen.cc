// ewgw-loadgen: load generator for the SNI-passthrough benchmark (bench/passthrough/run.sh).
//
// It speaks to a proxy on 127.0.0.1:PORT that routes by the SNI of a TLS ClientHello to an echo
// backend (ewgw-bench-backend). Each connection sends a real OpenSSL ClientHello (SNI + ALPN)
// and then plain payload bytes; the proxy never terminates TLS, so the echo comes back verbatim
// and every received byte is checked against what was sent (a misrouted or corrupted stream is
// an error, not a number).
//
// One thread, one epoll set, non-blocking sockets. Every run ends by itself: rate and
// throughput after --duration, idle after connection setup (bounded by --setup-timeout) plus
// --hold; connects and exchanges time out. Loopback only.
//
// Modes (one "RESULT mode=... key=value ..." line on stdout per run; progress on stderr):
//   rate        --concurrency C --duration SEC --request-bytes N
//               C connections in flight; each connects, sends hello + N bytes, reads back
//               hello + N bytes, closes, and its slot opens the next connection at once.
//               Reports connections/s and latency percentiles (connect start to last byte).
//   throughput  --connections K --duration SEC [--chunk BYTES] [--window BYTES]
//               K long-lived connections; each sends the hello, then streams chunks and reads
//               the echo (at most --window bytes unechoed). Reports echoed MB/s (10^6 B/s),
//               summed over connections, measured once all K are set up.
//   idle        --connections K --hold SEC
//               opens K connections (at most --max-connecting at a time), sends the hello on
//               each and waits for its echo (so the proxy has routed it and connected upstream),
//               prints "holding" on stdout, keeps them idle for SEC seconds, then closes them.
//   check       --expect echo|close
//               one connection: hello + 16 bytes; reports whether they were echoed or the proxy
//               closed the connection. Exit status 0 when the outcome is the expected one.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "test/support/client_hello_bytes.h"

namespace {

using clock_type = std::chrono::steady_clock;
using std::chrono::duration_cast;
using std::chrono::microseconds;
using std::chrono::milliseconds;

volatile std::sig_atomic_t interrupted = 0;
void on_signal(int) { interrupted = 1; }

// ---------------------------------------------------------------------------------------------
// Options

struct options {
  std::string mode;
  std::string label = "proxy";
  int port = 0;
  std::string sni = "outbound_.8080_._.echo.bench.svc.cluster.local";
  std::vector<std::string> alpns{"istio"};
  std::size_t concurrency = 50;
  double duration_s = 10;
  std::size_t request_bytes = 1024;
  std::size_t connections = 8;
  double hold_s = 10;
  std::size_t chunk = 64 * 1024;
  std::size_t window = 512 * 1024;
  std::size_t max_connecting = 256;
  double connect_timeout_s = 5;
  double io_timeout_s = 10;
  double setup_timeout_s = 120;
  std::string expect = "echo";
};

[[noreturn]] void usage_error(const std::string& msg) {
  std::fprintf(stderr,
               "ewgw-loadgen: %s\n\n"
               "usage: ewgw-loadgen --mode rate|throughput|idle|check --port P [options]\n"
               "  --label NAME           proxy label for the RESULT line (default: proxy)\n"
               "  --sni NAME             ClientHello server_name\n"
               "  --alpn LIST            comma-separated ALPN offer (default: istio; '' for none)\n"
               "  rate:       --concurrency C (50) --duration SEC (10) --request-bytes N (1024)\n"
               "  throughput: --connections K (8) --duration SEC (10) --chunk B (65536) --window B (524288)\n"
               "  idle:       --connections K --hold SEC (10) --max-connecting N (256) --setup-timeout SEC (120)\n"
               "  check:      --expect echo|close\n"
               "  --connect-timeout SEC (5)  --io-timeout SEC (10)\n",
               msg.c_str());
  std::exit(2);
}

double parse_double(const char* v, const char* name, double min) {
  char* end = nullptr;
  const double d = v ? std::strtod(v, &end) : 0;
  if (!v || *end != '\0' || !(d >= min)) usage_error(std::string("bad value for ") + name);
  return d;
}

std::size_t parse_size(const char* v, const char* name, std::size_t min) {
  char* end = nullptr;
  const long long n = v ? std::strtoll(v, &end, 10) : 0;
  if (!v || *end != '\0' || n < static_cast<long long>(min)) usage_error(std::string("bad value for ") + name);
  return static_cast<std::size_t>(n);
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : nullptr;
    auto take = [&] {
      if (!v) usage_error(std::string(a) + " needs a value");
      ++i;
      return v;
    };
    if (a == "--help" || a == "-h") usage_error("help");
    else if (a == "--mode") o.mode = take();
    else if (a == "--label") o.label = take();
    else if (a == "--port") o.port = static_cast<int>(parse_size(take(), "--port", 1));
    else if (a == "--sni") o.sni = take();
    else if (a == "--alpn") {
      o.alpns.clear();
      std::string_view list = take();
      while (!list.empty()) {
        const auto comma = list.find(',');
        const auto item = list.substr(0, comma);
        if (!item.empty()) o.alpns.emplace_back(item);
        if (comma == std::string_view::npos) break;
        list.remove_prefix(comma + 1);
      }
    } else if (a == "--concurrency") o.concurrency = parse_size(take(), "--concurrency", 1);
    else if (a == "--duration") o.duration_s = parse_double(take(), "--duration", 0.1);
    else if (a == "--request-bytes") o.request_bytes = parse_size(take(), "--request-bytes", 0);
    else if (a == "--connections") o.connections = parse_size(take(), "--connections", 1);
    else if (a == "--hold") o.hold_s = parse_double(take(), "--hold", 0);
    else if (a == "--chunk") o.chunk = parse_size(take(), "--chunk", 1);
    else if (a == "--window") o.window = parse_size(take(), "--window", 1);
    else if (a == "--max-connecting") o.max_connecting = parse_size(take(), "--max-connecting", 1);
    else if (a == "--connect-timeout") o.connect_timeout_s = parse_double(take(), "--connect-timeout", 0.001);
    else if (a == "--io-timeout") o.io_timeout_s = parse_double(take(), "--io-timeout", 0.001);
    else if (a == "--setup-timeout") o.setup_timeout_s = parse_double(take(), "--setup-timeout", 0.1);
    else if (a == "--expect") o.expect = take();
    else usage_error("unknown argument '" + std::string(a) + "'");
  }
  if (o.mode != "rate" && o.mode != "throughput" && o.mode != "idle" && o.mode != "check") {
    usage_error("--mode must be rate, throughput, idle or check");
  }
  if (o.port <= 0 || o.port > 65535) usage_error("--port is required (1..65535)");
  if (o.expect != "echo" && o.expect != "close") usage_error("--expect must be echo or close");
  if (o.window < o.chunk) o.window = o.chunk;
  return o;
}

// ---------------------------------------------------------------------------------------------
// Connections

enum class phase : std::uint8_t { free, connecting, exchanging, idle, streaming };

enum class failure : std::uint8_t { connect, closed, timeout, mismatch };

struct conn {
  int fd = -1;
  std::uint32_t gen = 0;    // bumped on every reuse of the slot; tags epoll events
  phase ph = phase::free;
  std::uint32_t events = 0;  // currently registered epoll events
  // Fixed exchange (rate, idle, check): send `out`, expect the same bytes back.
  const std::uint8_t* out = nullptr;
  std::size_t out_len = 0;
  std::size_t out_off = 0;
  std::size_t in_off = 0;
  // Streaming (throughput): hello first, then the pattern stream.
  std::uint64_t sent_payload = 0;
  std::uint64_t recv_payload = 0;
  bool hello_echoed = false;
  clock_type::time_point started{};
  clock_type::time_point deadline{};
};

// Bytes of the payload stream at offset o are pattern[o % period]; a buffer of period + chunk
// bytes lets any window be compared with one memcmp.
constexpr std::size_t pattern_period = 251;

struct counters {
  std::uint64_t completed = 0;
  std::uint64_t err_connect = 0;
  std::uint64_t err_closed = 0;
  std::uint64_t err_timeout = 0;
  std::uint64_t err_mismatch = 0;
  std::uint64_t total_errors() const { return err_connect + err_closed + err_timeout + err_mismatch; }
};

class loadgen {
 public:
  explicit loadgen(options o) : opt_(std::move(o)) {
    epfd_ = epoll_create1(EPOLL_CLOEXEC);
    if (epfd_ < 0) throw std::runtime_error("epoll_create1 failed");
    addr_.sin_family = AF_INET;
    addr_.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr_.sin_port = htons(static_cast<std::uint16_t>(opt_.port));
    // A few distinct ClientHellos (random and key shares differ), reused round robin. Building
    // one costs an SSL_CTX and key generation, which stays out of the measured loop.
    const std::size_t variants = 8;
    for (std::size_t i = 0; i < variants; ++i) hellos_.push_back(ewgw::test::make_client_hello(opt_.sni, opt_.alpns));
    pattern_.resize(pattern_period + std::max<std::size_t>(opt_.chunk, 64 * 1024));
    for (std::size_t i = 0; i < pattern_.size(); ++i) pattern_[i] = static_cast<std::uint8_t>((i % pattern_period) * 7 + 1);
    const std::size_t payload = opt_.mode == "rate" ? opt_.request_bytes : opt_.mode == "check" ? 16 : 0;
    for (const auto& h : hellos_) {
      std::vector<std::uint8_t> m(h);
      for (std::size_t i = 0; i < payload; ++i) m.push_back(pattern_[i % pattern_period]);
      messages_.push_back(std::move(m));
    }
    scratch_.resize(std::max<std::size_t>(opt_.chunk, 64 * 1024));
  }

  ~loadgen() {
    for (auto& c : slots_) close_fd(c);
    if (epfd_ >= 0) ::close(epfd_);
  }

  int run() {
    if (opt_.mode == "rate") return run_rate();
    if (opt_.mode == "throughput") return run_throughput();
    if (opt_.mode == "idle") return run_idle();
    return run_check();
  }

 private:
  // --- plumbing ---------------------------------------------------------------------------

  void report_error(failure f, const conn& c, const char* what, int err) {
    switch (f) {
      case failure::connect: ++stats_.err_connect; break;
      case failure::closed: ++stats_.err_closed; break;
      case failure::timeout: ++stats_.err_timeout; break;
      case failure::mismatch: ++stats_.err_mismatch; break;
    }
    if (error_messages_ < 5) {
      ++error_messages_;
      std::fprintf(stderr, "ewgw-loadgen: %s: %s%s%s (sent %zu/%zu, received %zu)\n", opt_.label.c_str(), what,
                   err ? ": " : "", err ? std::strerror(err) : "", c.out_off, c.out_len, c.in_off);
    }
  }

  void close_fd(conn& c) {
    if (c.fd >= 0) {
      ::close(c.fd);  // also removes it from the epoll set
      c.fd = -1;
    }
    c.ph = phase::free;
    c.events = 0;
  }

  void set_events(std::size_t slot, std::uint32_t ev) {
    conn& c = slots_[slot];
    if (c.events == ev) return;
    epoll_event e{};
    e.events = ev;
    e.data.u64 = (static_cast<std::uint64_t>(c.gen) << 32) | slot;
    epoll_ctl(epfd_, c.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &e);
    c.events = ev;
  }

  // Starts a non-blocking connect in `slot`. Returns false (and counts an error) on failure.
  bool open(std::size_t slot, const std::vector<std::uint8_t>* message) {
    conn& c = slots_[slot];
    c = conn{.gen = c.gen + 1};
    c.started = clock_type::now();
    c.deadline = c.started + duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.connect_timeout_s));
    if (message) {
      c.out = message->data();
      c.out_len = message->size();
    }
    c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c.fd < 0) {
      report_error(failure::connect, c, "socket", errno);
      c.fd = -1;
      return false;
    }
    const int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(c.fd, reinterpret_cast<const sockaddr*>(&addr_), sizeof addr_) != 0 && errno != EINPROGRESS) {
      report_error(failure::connect, c, "connect", errno);
      close_fd(c);
      return false;
    }
    c.ph = phase::connecting;
    set_events(slot, EPOLLOUT);
    return true;
  }

  // The connect finished (writable). Returns the socket error, 0 when connected.
  int connect_result(conn& c) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    return err;
  }

  void arm_io_deadline(conn& c) {
    c.deadline = clock_type::now() + duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.io_timeout_s));
  }

  enum class step { pending, done, failed };

  // Fixed exchange: write what is left of c.out, then read the echo and compare it.
  step exchange(std::size_t slot, std::uint32_t ev) {
    conn& c = slots_[slot];
    if (c.ph == phase::connecting) {
      if (const int err = connect_result(c); err != 0) {
        report_error(failure::connect, c, "connect", err);
        return step::failed;
      }
      c.ph = phase::exchanging;
      arm_io_deadline(c);
    }
    while (c.out_off < c.out_len) {
      const ssize_t w = ::send(c.fd, c.out + c.out_off, c.out_len - c.out_off, MSG_NOSIGNAL);
      if (w > 0) {
        c.out_off += static_cast<std::size_t>(w);
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        set_events(slot, EPOLLOUT | EPOLLIN);
        break;
      } else {
        report_error(failure::closed, c, "send", errno);
        return step::failed;
      }
    }
    if (c.out_off == c.out_len) set_events(slot, EPOLLIN);
    // Read only when told to: right after the send, the echo cannot be there yet.
    if (!(ev & (EPOLLIN | EPOLLERR | EPOLLHUP))) return step::pending;
    while (c.in_off < c.out_len) {
      const ssize_t r = ::recv(c.fd, scratch_.data(), std::min(scratch_.size(), c.out_len - c.in_off + 1), 0);
      if (r > 0) {
        const auto n = static_cast<std::size_t>(r);
        if (c.in_off + n > c.out_len || std::memcmp(scratch_.data(), c.out + c.in_off, n) != 0) {
          report_error(failure::mismatch, c, "echo differs from what was sent", 0);
          return step::failed;
        }
        c.in_off += n;
      } else if (r == 0) {
        report_error(failure::closed, c, "closed by peer before the full echo", 0);
        return step::failed;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return step::pending;
      } else {
        report_error(failure::closed, c, "recv", errno);
        return step::failed;
      }
    }
    return step::done;
  }

  // Calls `handle(slot, events)` for each ready connection and `tick()` about every 50 ms,
  // until `running()` turns false.
  template <typename Handle, typename Tick, typename Running>
  void loop(Handle handle, Tick tick, Running running) {
    std::vector<epoll_event> events(1024);
    auto next_tick = clock_type::now();
    while (running() && !interrupted) {
      const int n = epoll_wait(epfd_, events.data(), static_cast<int>(events.size()), 10);
      if (n < 0 && errno != EINTR) throw std::runtime_error(std::string("epoll_wait: ") + std::strerror(errno));
      for (int i = 0; i < n; ++i) {
        const auto slot = static_cast<std::size_t>(events[i].data.u64 & 0xffffffffu);
        const auto gen = static_cast<std::uint32_t>(events[i].data.u64 >> 32);
        if (slot >= slots_.size() || slots_[slot].gen != gen || slots_[slot].ph == phase::free) continue;  // stale
        handle(slot, events[i].events);
      }
      const auto now = clock_type::now();
      if (now >= next_tick) {
        next_tick = now + milliseconds(50);
        tick(now);
      }
    }
  }

  // Fails every connection whose deadline has passed (not idle ones: they have none).
  template <typename OnFail>
  void expire(clock_type::time_point now, OnFail on_fail) {
    for (std::size_t s = 0; s < slots_.size(); ++s) {
      conn& c = slots_[s];
      if (c.ph == phase::free || c.ph == phase::idle || c.ph == phase::streaming || now < c.deadline) continue;
      report_error(c.ph == phase::connecting ? failure::connect : failure::timeout, c,
                   c.ph == phase::connecting ? "connect timed out" : "echo timed out", 0);
      close_fd(c);
      on_fail(s);
    }
  }

  const std::vector<std::uint8_t>* next_message() { return &messages_[next_hello_++ % messages_.size()]; }

  static double seconds_between(clock_type::time_point a, clock_type::time_point b) {
    return std::chrono::duration<double>(b - a).count();
  }

  std::string error_fields() const {
    char buf[256];
    std::snprintf(buf, sizeof buf, "errors=%llu err_connect=%llu err_closed=%llu err_timeout=%llu err_mismatch=%llu",
                  static_cast<unsigned long long>(stats_.total_errors()), static_cast<unsigned long long>(stats_.err_connect),
                  static_cast<unsigned long long>(stats_.err_closed), static_cast<unsigned long long>(stats_.err_timeout),
                  static_cast<unsigned long long>(stats_.err_mismatch));
    return buf;
  }

  // --- rate -------------------------------------------------------------------------------

  int run_rate() {
    slots_.resize(opt_.concurrency);
    std::vector<std::uint32_t> latencies_us;
    latencies_us.reserve(1 << 20);
    const auto start = clock_type::now();
    const auto end = start + duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.duration_s));
    bool open_more = true;
    // A slot that fails to even start (socket/connect error) is retried on the next tick, so a
    // refusing proxy yields a bounded error rate instead of a busy loop.
    std::vector<std::size_t> retry;
    auto refill = [&](std::size_t s) {
      if (!open_more) return;
      if (!open(s, next_message())) retry.push_back(s);
    };
    for (std::size_t s = 0; s < slots_.size(); ++s) refill(s);
    loop(
        [&](std::size_t s, std::uint32_t ev) {
          const step r = exchange(s, ev);
          if (r == step::pending) return;
          if (r == step::done) {
            const auto now = clock_type::now();
            if (now <= end) {
              ++stats_.completed;
              const auto us = duration_cast<microseconds>(now - slots_[s].started).count();
              latencies_us.push_back(static_cast<std::uint32_t>(std::min<long long>(us, UINT32_MAX)));
            }
          }
          close_fd(slots_[s]);
          refill(s);
        },
        [&](clock_type::time_point now) {
          if (now >= end) open_more = false;
          expire(now, [&](std::size_t s) { refill(s); });
          auto pending = std::move(retry);
          retry.clear();
          for (std::size_t s : pending) refill(s);
        },
        [&] { return open_more; });
    const double elapsed = std::min(seconds_between(start, clock_type::now()), opt_.duration_s);
    std::size_t inflight = 0;
    for (auto& c : slots_) {
      if (c.ph != phase::free) ++inflight;
      close_fd(c);
    }
    std::sort(latencies_us.begin(), latencies_us.end());
    auto pct = [&](double p) -> unsigned long long {
      if (latencies_us.empty()) return 0;
      const auto idx = static_cast<std::size_t>(p / 100.0 * static_cast<double>(latencies_us.size() - 1) + 0.5);
      return latencies_us[std::min(idx, latencies_us.size() - 1)];
    };
    double mean = 0;
    for (auto v : latencies_us) mean += v;
    if (!latencies_us.empty()) mean /= static_cast<double>(latencies_us.size());
    std::printf(
        "RESULT mode=rate proxy=%s concurrency=%zu request_bytes=%zu hello_bytes=%zu duration_s=%.2f completed=%llu "
        "cps=%.1f p50_us=%llu p90_us=%llu p99_us=%llu p999_us=%llu max_us=%llu mean_us=%.0f %s inflight_at_end=%zu\n",
        opt_.label.c_str(), opt_.concurrency, opt_.request_bytes, hellos_[0].size(), elapsed,
        static_cast<unsigned long long>(stats_.completed), static_cast<double>(stats_.completed) / elapsed, pct(50), pct(90),
        pct(99), pct(99.9), latencies_us.empty() ? 0ULL : static_cast<unsigned long long>(latencies_us.back()), mean,
        error_fields().c_str(), inflight);
    std::fflush(stdout);
    return stats_.total_errors() == 0 ? 0 : 1;
  }

  // --- throughput -------------------------------------------------------------------------

  // Streaming connection: hello, then pattern chunks while at most `window` bytes are unechoed.
  step stream(std::size_t s, std::uint32_t ev, std::uint64_t& measured_bytes, bool measuring) {
    conn& c = slots_[s];
    const std::vector<std::uint8_t>& hello = hellos_[s % hellos_.size()];
    if (c.ph == phase::connecting) {
      if (const int err = connect_result(c); err != 0) {
        report_error(failure::connect, c, "connect", err);
        return step::failed;
      }
      c.ph = phase::streaming;
      c.out = hello.data();
      c.out_len = hello.size();
    }
    // Send: the hello first, then payload chunks.
    for (;;) {
      const std::uint8_t* data;
      std::size_t len;
      if (c.out_off < c.out_len) {
        data = c.out + c.out_off;
        len = c.out_len - c.out_off;
      } else {
        const std::uint64_t unechoed = c.sent_payload - c.recv_payload;
        if (unechoed >= opt_.window) break;
        data = pattern_.data() + c.sent_payload % pattern_period;
        len = std::min<std::uint64_t>(opt_.chunk, opt_.window - unechoed);
      }
      const ssize_t w = ::send(c.fd, data, len, MSG_NOSIGNAL);
      if (w > 0) {
        if (c.out_off < c.out_len) c.out_off += static_cast<std::size_t>(w);
        else c.sent_payload += static_cast<std::uint64_t>(w);
      } else if (w < 0 && errno == EINTR) {
        continue;
      } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        report_error(failure::closed, c, "send", errno);
        return step::failed;
      }
    }
    // Receive: the hello echo, then the payload echo.
    for (int reads = 0; reads < 4; ++reads) {
      std::size_t want = scratch_.size();
      if (c.in_off < c.out_len) want = c.out_len - c.in_off;
      const ssize_t r = ::recv(c.fd, scratch_.data(), want, 0);
      if (r > 0) {
        const auto n = static_cast<std::size_t>(r);
        if (c.in_off < c.out_len) {
          if (std::memcmp(scratch_.data(), c.out + c.in_off, n) != 0) {
            report_error(failure::mismatch, c, "hello echo differs", 0);
            return step::failed;
          }
          c.in_off += n;
          if (c.in_off == c.out_len) c.hello_echoed = true;
        } else {
          if (c.recv_payload + n > c.sent_payload ||
              std::memcmp(scratch_.data(), pattern_.data() + c.recv_payload % pattern_period, n) != 0) {
            report_error(failure::mismatch, c, "payload echo differs", 0);
            return step::failed;
          }
          c.recv_payload += n;
          if (measuring) measured_bytes += n;
        }
      } else if (r == 0) {
        report_error(failure::closed, c, "closed by peer", 0);
        return step::failed;
      } else if (errno == EINTR) {
        continue;
      } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
        break;
      } else {
        report_error(failure::closed, c, "recv", errno);
        return step::failed;
      }
    }
    const bool can_send = c.out_off < c.out_len || c.sent_payload - c.recv_payload < opt_.window;
    set_events(s, EPOLLIN | (can_send ? EPOLLOUT : 0u));
    (void)ev;
    return step::pending;
  }

  int run_throughput() {
    slots_.resize(opt_.connections);
    const auto setup_start = clock_type::now();
    const auto setup_end = setup_start + duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.setup_timeout_s));
    for (std::size_t s = 0; s < slots_.size(); ++s) open(s, nullptr);
    std::uint64_t measured = 0;
    bool measuring = false;
    clock_type::time_point start{}, end{};
    std::size_t failed = 0;
    loop(
        [&](std::size_t s, std::uint32_t ev) {
          if (stream(s, ev, measured, measuring) == step::failed) {
            close_fd(slots_[s]);
            ++failed;
          }
        },
        [&](clock_type::time_point now) {
          expire(now, [&](std::size_t) { ++failed; });
          if (!measuring) {
            std::size_t ready = 0;
            for (auto& c : slots_) ready += (c.ph == phase::streaming && c.hello_echoed) ? 1 : 0;
            if (ready + failed == slots_.size() || now >= setup_end) {
              measuring = true;
              start = now;
              end = now + duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.duration_s));
            }
          }
        },
        [&] { return !measuring || clock_type::now() < end; });
    const double elapsed = measuring ? seconds_between(start, clock_type::now()) : 0;
    for (auto& c : slots_) close_fd(c);
    const double mbps = elapsed > 0 ? static_cast<double>(measured) / 1e6 / elapsed : 0;
    std::printf("RESULT mode=throughput proxy=%s connections=%zu chunk=%zu window=%zu duration_s=%.2f echoed_bytes=%llu mbps=%.1f %s\n",
                opt_.label.c_str(), opt_.connections, opt_.chunk, opt_.window, elapsed, static_cast<unsigned long long>(measured),
                mbps, error_fields().c_str());
    std::fflush(stdout);
    return stats_.total_errors() == 0 ? 0 : 1;
  }

  // --- idle -------------------------------------------------------------------------------

  int run_idle() {
    slots_.resize(opt_.connections);
    const auto setup_start = clock_type::now();
    const auto setup_end = setup_start + duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.setup_timeout_s));
    std::size_t next = 0, connecting = 0, established = 0, failed = 0;
    std::uint64_t closed_during_hold = 0;
    bool holding = false;
    double setup_ms = 0;
    clock_type::time_point hold_end{};
    auto open_more = [&] {
      while (!holding && next < slots_.size() && connecting < opt_.max_connecting) {
        const std::size_t s = next++;
        if (open(s, &hellos_[s % hellos_.size()])) ++connecting;
        else ++failed;
      }
    };
    open_more();
    loop(
        [&](std::size_t s, std::uint32_t ev) {
          conn& c = slots_[s];
          if (c.ph == phase::idle) {
            // Nothing should arrive on an idle connection; a close or reset is an error.
            const ssize_t r = ::recv(c.fd, scratch_.data(), scratch_.size(), 0);
            if (r > 0) {
              report_error(failure::mismatch, c, "unexpected bytes on an idle connection", 0);
            } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
              report_error(failure::closed, c, "idle connection closed by peer", r == 0 ? 0 : errno);
            } else {
              return;
            }
            if (holding) ++closed_during_hold;
            --established;
            ++failed;
            close_fd(c);
            return;
          }
          const step r = exchange(s, ev);
          if (r == step::pending) return;
          --connecting;
          if (r == step::done) {
            c.ph = phase::idle;
            ++established;
          } else {
            close_fd(c);
            ++failed;
          }
          open_more();
        },
        [&](clock_type::time_point now) {
          expire(now, [&](std::size_t) {
            --connecting;
            ++failed;
          });
          open_more();
          if (!holding && (next == slots_.size() && connecting == 0)) {
            holding = true;
          } else if (!holding && now >= setup_end) {
            std::fprintf(stderr, "ewgw-loadgen: %s: setup timed out after %.0f s\n", opt_.label.c_str(), opt_.setup_timeout_s);
            holding = true;
          }
          if (holding && hold_end == clock_type::time_point{}) {
            hold_end = now + duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.hold_s));
            setup_ms = seconds_between(setup_start, now) * 1000;
            std::printf("holding connections=%zu established=%zu failed=%zu setup_ms=%.0f\n", slots_.size(), established,
                        failed, setup_ms);
            std::fflush(stdout);
          }
        },
        [&] { return hold_end == clock_type::time_point{} || clock_type::now() < hold_end; });
    const std::size_t at_end = established;
    for (auto& c : slots_) close_fd(c);
    std::printf("RESULT mode=idle proxy=%s connections=%zu established=%zu setup_ms=%.0f hold_s=%.1f closed_during_hold=%llu %s\n",
                opt_.label.c_str(), opt_.connections, at_end, setup_ms, opt_.hold_s,
                static_cast<unsigned long long>(closed_during_hold), error_fields().c_str());
    std::fflush(stdout);
    return stats_.total_errors() == 0 ? 0 : 1;
  }

  // --- check ------------------------------------------------------------------------------

  int run_check() {
    slots_.resize(1);
    error_messages_ = 5;  // a close may be the expected outcome: no error chatter
    std::string outcome = "timeout";
    bool done = false;
    if (!open(0, next_message())) outcome = "connect_failed";
    else {
      const auto stop_at = clock_type::now() + duration_cast<clock_type::duration>(std::chrono::duration<double>(opt_.io_timeout_s));
      loop(
          [&](std::size_t s, std::uint32_t ev) {
            const auto before = stats_;
            const step r = exchange(s, ev);
            if (r == step::pending) return;
            done = true;
            if (r == step::done) outcome = "echo";
            else if (stats_.err_connect > before.err_connect) outcome = "connect_failed";
            else if (stats_.err_closed > before.err_closed && slots_[s].in_off == 0) outcome = "close";
            else outcome = "partial";
            close_fd(slots_[s]);
          },
          [&](clock_type::time_point) {},
          [&] { return !done && clock_type::now() < stop_at; });
    }
    const bool ok = outcome == opt_.expect;
    std::printf("RESULT mode=check proxy=%s sni=%s expect=%s outcome=%s ok=%d\n", opt_.label.c_str(), opt_.sni.c_str(),
                opt_.expect.c_str(), outcome.c_str(), ok ? 1 : 0);
    std::fflush(stdout);
    return ok ? 0 : 1;
  }

  options opt_;
  int epfd_ = -1;
  sockaddr_in addr_{};
  std::vector<std::vector<std::uint8_t>> hellos_;
  std::vector<std::vector<std::uint8_t>> messages_;  // hello + request payload
  std::vector<std::uint8_t> pattern_;
  std::vector<std::uint8_t> scratch_;
  std::vector<conn> slots_;
  std::size_t next_hello_ = 0;
  counters stats_;
  int error_messages_ = 0;
};

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const options opt = parse(argc, argv);
  raise_fd_limit();
  std::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  try {
    loadgen g(opt);
    return g.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ewgw-loadgen: %s\n", e.what());
    return 1;
  }
}
