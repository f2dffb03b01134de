#include "accesslog/writer.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "stats/log.h"

namespace ewgw::accesslog {

// An open destination. Its buffer is touched by the writer thread only.
class sink {
 public:
  sink(std::string path, int fd, bool owned) : path_(std::move(path)), fd_(fd), owned_(owned) {}
  ~sink() {
    if (owned_ && fd_ >= 0) ::close(fd_);
  }
  sink(const sink&) = delete;
  sink& operator=(const sink&) = delete;

  const std::string& path() const { return path_; }
  int fd() const { return fd_; }
  std::string buffer;
  bool touched = false;
  bool failed_before = false;  // log a failing destination once, not per drain

 private:
  std::string path_;
  int fd_;
  bool owned_;
};

bool compiled_filter::matches(const record& r) const {
  switch (type) {
    case filter_config::kind::response_flags:
      // Envoy's ResponseFlagFilter: with no flags listed, any flag matches.
      return mask == 0 ? r.response_flags != 0 : (r.response_flags & mask) != 0;
    case filter_config::kind::all_of:
      for (const compiled_filter& c : children) {
        if (!c.matches(r)) return false;
      }
      return true;
    case filter_config::kind::any_of:
      for (const compiled_filter& c : children) {
        if (c.matches(r)) return true;
      }
      return false;
  }
  return false;
}

namespace {

bool compile_filter(const filter_config& in, compiled_filter& out, std::string& error) {
  out.type = in.type;
  for (const std::string& name : in.flags) {
    response_flag f;
    if (!parse_flag(name, f)) {
      error = "unknown response flag '" + name + "'";
      return false;
    }
    out.mask |= flag_bit(f);
  }
  for (const filter_config& c : in.children) {
    compiled_filter child;
    if (!compile_filter(c, child, error)) return false;
    out.children.push_back(std::move(child));
  }
  return true;
}

}  // namespace

writer::writer(writer_options options, stats::registry& registry)
    : options_(options), stats_(registry.get<access_log_stats>("access_log", "")) {
  if (options_.workers == 0) options_.workers = 1;
  if (options_.queue_capacity == 0) options_.queue_capacity = 1;
}

writer::~writer() { stop(); }

std::shared_ptr<sink> writer::open(const logger_config& c, std::string& error) {
  std::string path = c.path;
  if (c.where == destination::standard_output) path = "/dev/stdout";
  if (c.where == destination::standard_error) path = "/dev/stderr";
  std::lock_guard lock(mu_);
  if (auto it = sinks_.find(path); it != sinks_.end()) return it->second;
  std::shared_ptr<sink> s;
  // The process's own descriptors rather than a second open of /dev/stdout: a container's
  // stdout is often a pipe, which a fresh open() may not reach.
  if (path == "/dev/stdout") {
    s = std::make_shared<sink>(path, STDOUT_FILENO, false);
  } else if (path == "/dev/stderr") {
    s = std::make_shared<sink>(path, STDERR_FILENO, false);
  } else {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) {
      error = "cannot open access log file '" + path + "': " + std::strerror(errno);
      return nullptr;
    }
    s = std::make_shared<sink>(path, fd, true);
  }
  sinks_.emplace(path, s);
  return s;
}

std::shared_ptr<const log_set> writer::build(const logger_list& list, std::string& error) {
  auto set = std::make_shared<log_set>();
  if (list.empty()) return set;
  for (const logger_config& c : *list.items) {
    compiled_logger l;
    l.name = c.name;
    l.format = formatter::compile(c.format, error);
    if (!l.format) {
      error = "access log '" + c.name + "': " + error;
      return nullptr;
    }
    if (c.has_filter) {
      l.has_filter = true;
      if (!compile_filter(c.filter, l.filter, error)) {
        error = "access log '" + c.name + "': " + error;
        return nullptr;
      }
    }
    l.out = open(c, error);
    if (!l.out) {
      error = "access log '" + c.name + "': " + error;
      return nullptr;
    }
    set->needs |= l.format->needs();
    set->loggers.push_back(std::move(l));
  }
  if (!started_.load(std::memory_order_acquire) && !stopped_.load()) {
    // The rings exist before any snapshot naming this set is published to a worker (publish
    // goes through the worker's queue, which orders this write before the worker's reads).
    rings_ = std::make_unique<ring[]>(options_.workers);
    for (std::size_t i = 0; i < options_.workers; ++i) {
      rings_[i].slots = std::make_unique<entry[]>(options_.queue_capacity);
      rings_[i].capacity = options_.queue_capacity;
    }
    started_.store(true, std::memory_order_release);
    thread_ = std::thread([this] { run(); });
  }
  return set;
}

bool writer::submit(std::size_t worker, std::unique_ptr<record> r, std::shared_ptr<const log_set> listener_logs,
                    std::shared_ptr<const log_set> chain_logs) {
  access_log_stats& s = stats_->worker(worker);
  if (!started_.load(std::memory_order_acquire) || stopped_.load(std::memory_order_relaxed)) {
    s.records_dropped_total.inc();
    return false;
  }
  ring& q = rings_[worker];
  const std::size_t tail = q.tail.load(std::memory_order_relaxed);
  if (tail - q.head.load(std::memory_order_acquire) >= q.capacity) {
    s.records_dropped_total.inc();
    return false;
  }
  entry& e = q.slots[tail % q.capacity];
  e.r = std::move(r);
  e.listener_logs = std::move(listener_logs);
  e.chain_logs = std::move(chain_logs);
  q.tail.store(tail + 1, std::memory_order_release);
  return true;
}

void writer::run() {
  for (;;) {
    bool stopping;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, options_.flush_interval, [this] { return stopping_; });
      stopping = stopping_;
    }
    drain();
    if (stopping) return;
  }
}

void writer::drain() {
  std::vector<sink*> touched;
  access_log_stats& s = stats_->worker(0);
  for (std::size_t w = 0; w < options_.workers; ++w) {
    ring& q = rings_[w];
    std::size_t head = q.head.load(std::memory_order_relaxed);
    const std::size_t tail = q.tail.load(std::memory_order_acquire);
    for (; head != tail; ++head) {
      entry e = std::move(q.slots[head % q.capacity]);
      // Release the slot before formatting: the producer may reuse it at once.
      q.head.store(head + 1, std::memory_order_release);
      if (!e.r) continue;
      for (const log_set* set : {e.listener_logs.get(), e.chain_logs.get()}) {
        if (set == nullptr) continue;
        for (const compiled_logger& l : set->loggers) {
          if (l.has_filter && !l.filter.matches(*e.r)) continue;
          l.format->render(*e.r, l.out->buffer);
          s.lines_written_total.inc();
          if (!l.out->touched) {
            l.out->touched = true;
            touched.push_back(l.out.get());
          }
        }
      }
    }
  }
  write_out(touched);
}

void writer::write_out(const std::vector<sink*>& touched) {
  access_log_stats& s = stats_->worker(0);
  for (sink* out : touched) {
    out->touched = false;
    std::string_view left = out->buffer;
    while (!left.empty()) {
      const ssize_t n = ::write(out->fd(), left.data(), left.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        s.write_failed_total.inc();
        if (!out->failed_before) {
          out->failed_before = true;
          EWGW_LOG(error, "access_log", "cannot write the access log; lines are lost",
                   {{"path", out->path()}, {"error", std::strerror(errno)}});
        }
        break;
      }
      left.remove_prefix(static_cast<std::size_t>(n));
    }
    // Keep the capacity for the next drain, but not a burst's worth forever.
    if (out->buffer.capacity() > (1u << 20)) {
      std::string().swap(out->buffer);
    } else {
      out->buffer.clear();
    }
  }
}

void writer::stop() {
  if (stopped_.exchange(true)) return;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

}  // namespace ewgw::accesslog
