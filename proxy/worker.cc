#include "proxy/worker.h"

#include <boost/asio/post.hpp>

#include "proxy/tcp_session.h"
#include "stats/log.h"

namespace ewgw::proxy {

namespace asio = boost::asio;
using boost::system::error_code;

worker::worker(std::size_t id) : id_(id), random_state_(0x2545f4914f6cdd1dull * (id + 1)) {}

worker::~worker() { stop(); }

void worker::add_acceptor(std::string listener, asio::ip::tcp::acceptor acceptor) {
  error_code ec;
  const std::uint16_t port = acceptor.local_endpoint(ec).port();
  auto entry = std::shared_ptr<acceptor_entry>(
      new acceptor_entry{std::move(listener), std::move(acceptor), port, nullptr, asio::steady_timer(context_)});
  asio::post(context_, [this, entry] {
    acceptors_.push_back(entry);
    if (running_) accept(entry);
  });
}

void worker::remove_acceptor(const std::string& listener, std::uint16_t port) {
  asio::post(context_, [this, listener, port] {
    for (auto it = acceptors_.begin(); it != acceptors_.end();) {
      if ((*it)->listener == listener && (*it)->port == port) {
        error_code ignored;
        (*it)->acceptor.close(ignored);
        (*it)->retry.cancel();
        it = acceptors_.erase(it);
      } else {
        ++it;
      }
    }
  });
}

void worker::publish(std::shared_ptr<const routing_snapshot> snapshot) {
  asio::post(context_, [this, snapshot = std::move(snapshot)]() mutable {
    snapshot_ = std::move(snapshot);
    update_acceptors();
  });
}

void worker::update_acceptors() {
  for (auto& entry : acceptors_) {
    std::shared_ptr<const listener_runtime> found;
    if (snapshot_) {
      for (const auto& l : snapshot_->listeners) {
        if (l->name == entry->listener) found = l;
      }
    }
    entry->current = std::move(found);
  }
}

void worker::start() {
  // Keeps run() going while the worker has no listener (they can be added later).
  work_.emplace(context_.get_executor());
  asio::post(context_, [this] {
    running_ = true;
    for (auto& entry : acceptors_) accept(entry);
  });
  thread_ = std::thread([this] {
    // Handlers report errors as error_codes; an exception escaping one is a bug. Log it and keep
    // the worker serving its other connections rather than taking the process down.
    for (;;) {
      try {
        context_.run();
        break;
      } catch (const std::exception& e) {
        EWGW_LOG(error, "worker", "unexpected exception in handler", {{"what", e.what()}});
      }
    }
  });
}

void worker::accept(const std::shared_ptr<acceptor_entry>& entry) {
  entry->acceptor.async_accept(context_, [this, entry](const error_code& ec, asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted || !entry->acceptor.is_open()) return;
    if (ec) {
      // EMFILE/ENFILE/ENOBUFS: back off briefly instead of spinning on the ready listener, and
      // log at most once a second however long it lasts.
      ++entry->errors_since_log;
      const auto now = std::chrono::steady_clock::now();
      if (now - entry->last_error_log >= std::chrono::seconds(1)) {
        EWGW_LOG(warn, "worker", "accept failed",
                 {{"listener", entry->listener}, {"error", ec.message()}, {"count", log::num(entry->errors_since_log)}});
        entry->last_error_log = now;
        entry->errors_since_log = 0;
      }
      entry->retry.expires_after(std::chrono::milliseconds(50));
      entry->retry.async_wait([this, entry](const error_code& tec) {
        if (!tec && entry->acceptor.is_open()) accept(entry);
      });
      return;
    }
    // Keep accepting whatever happens to this connection.
    accept(entry);
    if (!entry->current) return;
    try {
      std::make_shared<tcp_session>(*this, entry->current, std::move(socket), entry->port)->start();
    } catch (const std::bad_alloc&) {
      EWGW_LOG(error, "worker", "out of memory creating a session", {{"listener", entry->listener}});
    }
  });
}

void worker::attach(tcp_session* s) {
  s->next_ = sessions_;
  s->prev_ = nullptr;
  if (sessions_) sessions_->prev_ = s;
  sessions_ = s;
  open_sessions_.store(open_sessions_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void worker::detach(tcp_session* s) {
  if (s->prev_) s->prev_->next_ = s->next_;
  else sessions_ = s->next_;
  if (s->next_) s->next_->prev_ = s->prev_;
  s->prev_ = s->next_ = nullptr;
  open_sessions_.store(open_sessions_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
}

void worker::stop() {
  if (!thread_.joinable()) return;
  asio::post(context_, [this] {
    work_.reset();
    for (auto& entry : acceptors_) {
      error_code ignored;
      entry->acceptor.close(ignored);
      entry->retry.cancel();
    }
    // abort() may destroy sessions only after handlers drain; take the list first.
    std::vector<std::shared_ptr<tcp_session>> open;
    for (tcp_session* s = sessions_; s != nullptr; s = s->next_) open.push_back(s->shared_from_this());
    for (auto& s : open) s->abort();
  });
  thread_.join();
}

}  // namespace ewgw::proxy
