// Access log lines written off the data path.
//
// A worker hands a finished connection's record to submit(): a move into its own bounded
// single-producer single-consumer ring, no lock, no formatting, no I/O, no allocation. A full
// ring drops the record and counts access_log.records_dropped_total (a slow disk must never
// stall or grow the data path). One writer thread wakes every flush_interval, drains every ring,
// formats each record for each configured log and writes each destination with one write(2)
// per wake. stop() drains and flushes what is left (gateway shutdown, after the workers
// stopped).
//
// The ring holds the record and the log sets (formatter + destination) it is for by
// shared_ptr, so a configuration update that replaces them while records wait is harmless.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "accesslog/config.h"
#include "accesslog/format.h"
#include "accesslog/record.h"
#include "stats/stats.h"

namespace ewgw::accesslog {

// Scope "access_log." Names coined by ewgw (Envoy has no equivalent for this queue).
#define EWGW_ACCESS_LOG_STATS(COUNTER, GAUGE)                                                     \
  COUNTER(records_dropped_total, "Access log records dropped because the writer queue was full") \
  COUNTER(lines_written_total, "Access log lines written")                                        \
  COUNTER(write_failed_total, "Access log writes that failed")
EWGW_STATS_BLOCK(access_log_stats, EWGW_ACCESS_LOG_STATS)

class sink;

// A compiled access_log filter (response flags, and/or).
struct compiled_filter {
  filter_config::kind type = filter_config::kind::response_flags;
  std::uint32_t mask = 0;  // response_flags: any of these; 0 = any flag at all
  std::vector<compiled_filter> children;
  bool matches(const record& r) const;
};

struct compiled_logger {
  std::string name;
  std::shared_ptr<const formatter> format;
  std::shared_ptr<sink> out;
  bool has_filter = false;
  compiled_filter filter;
};

// The access logs of one listener or tcp_proxy, ready to use.
struct log_set {
  std::vector<compiled_logger> loggers;
  std::uint32_t needs = 0;  // union of the formatters' needs()
};

struct writer_options {
  std::size_t workers = 1;
  // Records each worker may have waiting; at 100 ms per drain, 8192 absorbs 80,000 closing
  // connections per second per worker.
  std::size_t queue_capacity = 8192;
  std::chrono::milliseconds flush_interval{100};
};

class writer {
 public:
  writer(writer_options options, stats::registry& registry);
  ~writer();
  writer(const writer&) = delete;
  writer& operator=(const writer&) = delete;

  // Control thread. Compiles `list` and opens its destinations (files are opened once per path
  // and shared). Returns nullptr with `error` set (naming the log and the reason) on a bad
  // format or a file that cannot be opened; an empty list gives an empty set. The first
  // non-empty set allocates the rings and starts the writer thread.
  std::shared_ptr<const log_set> build(const logger_list& list, std::string& error);

  // Worker `worker` only; never blocks. `listener_logs` and `chain_logs` may be null. Returns
  // false when the record was dropped (ring full, or the writer stopped).
  bool submit(std::size_t worker, std::unique_ptr<record> r, std::shared_ptr<const log_set> listener_logs,
              std::shared_ptr<const log_set> chain_logs);

  // Drains, writes and joins the thread. Later submits are dropped. Idempotent.
  void stop();

 private:
  struct entry {
    std::unique_ptr<record> r;
    std::shared_ptr<const log_set> listener_logs;
    std::shared_ptr<const log_set> chain_logs;
  };
  // Single producer (its worker), single consumer (the writer thread).
  struct alignas(64) ring {
    std::unique_ptr<entry[]> slots;
    std::size_t capacity = 0;
    alignas(64) std::atomic<std::size_t> head{0};  // next to read; written by the consumer
    alignas(64) std::atomic<std::size_t> tail{0};  // next to write; written by the producer
  };

  void run();
  void drain();
  void write_out(const std::vector<sink*>& touched);
  std::shared_ptr<sink> open(const logger_config& c, std::string& error);

  writer_options options_;
  std::shared_ptr<stats::block_scope<access_log_stats>> stats_;
  std::unique_ptr<ring[]> rings_;
  std::atomic<bool> started_{false};
  std::atomic<bool> stopped_{false};
  std::mutex mu_;  // guards stopping_ for the thread's wait; sinks_ for build()
  std::condition_variable cv_;
  bool stopping_ = false;
  std::map<std::string, std::shared_ptr<sink>> sinks_;
  std::thread thread_;
};

}  // namespace ewgw::accesslog
