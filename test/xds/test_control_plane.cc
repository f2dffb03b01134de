#include "test/xds/test_control_plane.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <variant>

#include "envoy/service/discovery/v3/ads.grpc.pb.h"

namespace ewgw::test {

namespace {

namespace discovery = envoy::service::discovery::v3;
using clock = std::chrono::steady_clock;

const std::string type_order[] = {cluster_type, endpoint_type, listener_type};

struct resource {
  std::string version;
  google::protobuf::Any any;
};

std::string version_of(const google::protobuf::Any& any) {
  std::ostringstream s;
  s << std::hex << std::hash<std::string>{}(any.value());
  return s.str();
}

template <class M>
google::protobuf::Any pack(const M& m) {
  google::protobuf::Any a;
  a.PackFrom(m);
  return a;
}

std::string metadata_value(const grpc::ServerContext& ctx, const std::string& key) {
  const auto& md = ctx.client_metadata();
  auto it = md.find(key);
  if (it == md.end()) return {};
  return std::string(it->second.data(), it->second.size());
}

}  // namespace

struct test_control_plane::impl {
  // Per type, per stream.
  struct watch {
    bool subscribed = false;
    bool wildcard = false;
    std::set<std::string> names;
    std::string nonce_sent;
    bool awaiting = false;  // a response was sent and not yet answered
    std::map<std::string, std::string> client_versions;  // Delta: what the client holds
  };

  struct connection {
    bool delta = false;
    std::deque<std::variant<discovery::DiscoveryRequest, discovery::DeltaDiscoveryRequest>> queue;
    bool reader_done = false;
    bool close_requested = false;
    std::uint64_t pushed_generation = 0;
    std::map<std::string, watch> watches;
    std::size_t record = 0;  // index into records
    clock::time_point opened = clock::now();
    bool first_request = true;
  };

  class service final : public discovery::AggregatedDiscoveryService::Service {
   public:
    explicit service(impl& owner) : owner_(owner) {}
    grpc::Status StreamAggregatedResources(
        grpc::ServerContext* ctx,
        grpc::ServerReaderWriter<discovery::DiscoveryResponse, discovery::DiscoveryRequest>* stream) override {
      return owner_.serve<false>(ctx, stream);
    }
    grpc::Status DeltaAggregatedResources(
        grpc::ServerContext* ctx,
        grpc::ServerReaderWriter<discovery::DeltaDiscoveryResponse, discovery::DeltaDiscoveryRequest>* stream) override {
      return owner_.serve<true>(ctx, stream);
    }

   private:
    impl& owner_;
  };

  explicit impl(control_plane_options o) : options(std::move(o)), svc(*this), port(options.port) {}

  // ---- server lifecycle ---------------------------------------------------------------------

  void start() {
    std::lock_guard start_lock(lifecycle_mu);
    if (server) return;
    {
      std::lock_guard lock(mu);
      stopping = false;
    }
    std::shared_ptr<grpc::ServerCredentials> creds;
    if (options.tls) {
      grpc::SslServerCredentialsOptions ssl;
      ssl.pem_key_cert_pairs.push_back({options.key, options.cert_chain});
      if (!options.client_ca.empty()) {
        ssl.pem_root_certs = options.client_ca;
        ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
      }
      creds = grpc::SslServerCredentials(ssl);
    } else {
      creds = grpc::InsecureServerCredentials();
    }
    grpc::ServerBuilder builder;
    int bound = 0;
    builder.AddListeningPort("127.0.0.1:" + std::to_string(port), creds, &bound);
    builder.RegisterService(&svc);
    builder.SetMaxReceiveMessageSize(-1);
    builder.SetMaxSendMessageSize(-1);
    // istiod accepts client keepalive pings down to half its keepalive time (15 s of 30 s) and
    // without calls; gRPC's default (one ping per 5 minutes) would answer the gateway's 30 s
    // pings with GOAWAY too_many_pings and force a reconnect every few minutes.
    builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 15000);
    builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
    // Enough threads for a few concurrent streams (each holds one while open).
    builder.SetSyncServerOption(grpc::ServerBuilder::SyncServerOption::MIN_POLLERS, 1);
    server = builder.BuildAndStart();
    if (!server || bound == 0) {
      server.reset();
      throw std::runtime_error("test control plane: cannot listen on 127.0.0.1:" + std::to_string(port));
    }
    port = static_cast<std::uint16_t>(bound);
  }

  void stop() {
    std::lock_guard stop_lock(lifecycle_mu);
    if (!server) return;
    {
      std::lock_guard lock(mu);
      stopping = true;
    }
    cv.notify_all();
    server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    server->Wait();
    server.reset();
  }

  // ---- one stream ---------------------------------------------------------------------------

  template <bool Delta, class Stream>
  grpc::Status serve(grpc::ServerContext* ctx, Stream* stream) {
    using request_t = std::conditional_t<Delta, discovery::DeltaDiscoveryRequest, discovery::DiscoveryRequest>;
    auto conn = std::make_shared<connection>();
    conn->delta = Delta;
    {
      std::lock_guard lock(mu);
      if (stopping) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "server stopping");
      if (!options.required_token.empty() &&
          metadata_value(*ctx, "authorization") != "Bearer " + options.required_token) {
        ++rejected;
        return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "authentication failure: bad or missing token");
      }
      stream_record rec;
      rec.delta = Delta;
      rec.authorization = metadata_value(*ctx, "authorization");
      rec.cluster_id = metadata_value(*ctx, "clusterid");
      records.push_back(rec);
      conn->record = records.size() - 1;
      connections.insert(conn.get());
      ++opened;
    }
    std::thread reader([&] {
      request_t req;
      while (stream->Read(&req)) {
        {
          std::lock_guard lock(mu);
          conn->queue.push_back(std::move(req));
        }
        cv.notify_all();
        req = request_t();
      }
      {
        std::lock_guard lock(mu);
        conn->reader_done = true;
      }
      cv.notify_all();
    });

    grpc::Status result = grpc::Status::OK;
    while (true) {
      std::vector<std::variant<discovery::DiscoveryResponse, discovery::DeltaDiscoveryResponse>> out;
      {
        std::unique_lock lock(mu);
        auto due = [&] {
          return stopping || conn->close_requested || conn->reader_done || !conn->queue.empty() ||
                 (!paused && conn->pushed_generation < generation && !conn->first_request);
        };
        if (options.max_stream_age.count() > 0) {
          cv.wait_until(lock, conn->opened + options.max_stream_age, due);
          if (clock::now() >= conn->opened + options.max_stream_age) conn->close_requested = true;
        } else {
          cv.wait(lock, due);
        }
        if (stopping) {
          result = grpc::Status(grpc::StatusCode::UNAVAILABLE, "server stopping");
          break;
        }
        if (conn->close_requested || (conn->reader_done && conn->queue.empty())) break;
        while (!conn->queue.empty()) {
          auto req = std::move(conn->queue.front());
          conn->queue.pop_front();
          if constexpr (Delta) {
            on_delta_request(*conn, std::get<discovery::DeltaDiscoveryRequest>(req), out);
          } else {
            on_sotw_request(*conn, std::get<discovery::DiscoveryRequest>(req), out);
          }
        }
        if (!paused && conn->pushed_generation < generation && !conn->first_request) push_all(*conn, out);
      }
      cv.notify_all();  // progress for wait_synced
      bool write_ok = true;
      for (auto& r : out) {
        if constexpr (Delta) {
          write_ok = write_ok && stream->Write(std::get<discovery::DeltaDiscoveryResponse>(r));
        } else {
          write_ok = write_ok && stream->Write(std::get<discovery::DiscoveryResponse>(r));
        }
      }
      if (!write_ok) break;
    }
    ctx->TryCancel();
    reader.join();
    {
      std::lock_guard lock(mu);
      connections.erase(conn.get());
    }
    cv.notify_all();
    return result;
  }

  // ---- requests (istiod's rules) ------------------------------------------------------------

  void record_node(connection& c, const envoy::config::core::v3::Node& node, bool has_node) {
    auto& rec = records[c.record];
    if (c.first_request) {
      c.first_request = false;
      rec.node_id = node.id();
      google::protobuf::util::MessageToJsonString(node.metadata(), &rec.node_metadata_json);
    } else if (has_node) {
      rec.node_on_later_requests = true;
    }
  }

  void on_sotw_request(connection& c, const discovery::DiscoveryRequest& req,
                       std::vector<std::variant<discovery::DiscoveryResponse, discovery::DeltaDiscoveryResponse>>& out) {
    const bool first = c.first_request;
    record_node(c, req.node(), req.has_node());
    watch& w = c.watches[req.type_url()];
    if (req.has_error_detail()) {
      nack_list.push_back({req.type_url(), req.response_nonce(), req.version_info(), req.error_detail().message(),
                           req.error_detail().code()});
      if (req.response_nonce() == w.nonce_sent) w.awaiting = false;
      return;  // no response to a NACK
    }
    std::set<std::string> names(req.resource_names().begin(), req.resource_names().end());
    if (!w.subscribed) {
      w.subscribed = true;
      w.names = std::move(names);
      out.push_back(sotw_response(c, req.type_url()));
      if (first) c.pushed_generation = generation;
      return;
    }
    if (req.response_nonce() != w.nonce_sent) {
      ++stale;
      return;
    }
    w.awaiting = false;
    if (names == w.names) {
      ++ack_count[req.type_url()];
      return;
    }
    w.names = std::move(names);
    out.push_back(sotw_response(c, req.type_url()));
  }

  discovery::DiscoveryResponse sotw_response(connection& c, const std::string& type) {
    watch& w = c.watches[type];
    discovery::DiscoveryResponse resp;
    resp.set_type_url(type);
    resp.set_version_info("v" + std::to_string(generation));
    resp.set_nonce(next_nonce());
    const auto& all = resources[type];
    for (const auto& [name, r] : all) {
      if (type == endpoint_type && !w.names.contains(name)) continue;
      *resp.add_resources() = r.any;
    }
    w.nonce_sent = resp.nonce();
    w.awaiting = true;
    ++response_count[type];
    return resp;
  }

  void on_delta_request(connection& c, const discovery::DeltaDiscoveryRequest& req,
                        std::vector<std::variant<discovery::DiscoveryResponse, discovery::DeltaDiscoveryResponse>>& out) {
    const bool first = c.first_request;
    record_node(c, req.node(), req.has_node());
    const std::string& type = req.type_url();
    watch& w = c.watches[type];
    if (req.has_error_detail()) {
      nack_list.push_back({type, req.response_nonce(), "", req.error_detail().message(), req.error_detail().code()});
      if (req.response_nonce() == w.nonce_sent) w.awaiting = false;
      return;
    }
    if (!w.subscribed) {
      w.subscribed = true;
      auto& rec = records[c.record];
      rec.initial_versions[type] = {req.initial_resource_versions().begin(), req.initial_resource_versions().end()};
      for (const auto& n : req.resource_names_subscribe()) w.names.insert(n);
      for (const auto& [n, v] : req.initial_resource_versions()) {
        w.names.insert(n);
        w.client_versions[n] = v;
      }
      for (const auto& n : req.resource_names_unsubscribe()) w.names.erase(n);
      w.wildcard = w.names.erase("*") > 0 || req.resource_names_subscribe().empty();
      if (type != endpoint_type) w.wildcard = true;  // CDS and LDS are always wildcard for a gateway
      if (auto r = delta_response(c, type, nullptr, true)) out.push_back(std::move(*r));
      if (type == cluster_type && c.watches[endpoint_type].subscribed) {
        if (auto r = delta_response(c, endpoint_type, nullptr, true)) out.push_back(std::move(*r));
      }
      if (first) c.pushed_generation = generation;
      return;
    }
    if (!req.response_nonce().empty() && req.response_nonce() != w.nonce_sent) {
      ++stale;
      return;
    }
    if (!req.response_nonce().empty()) w.awaiting = false;
    std::set<std::string> added;
    for (const auto& n : req.resource_names_subscribe()) {
      if (n != "*" && w.names.insert(n).second) added.insert(n);
    }
    bool removed_any = false;
    for (const auto& n : req.resource_names_unsubscribe()) {
      if (w.names.erase(n) > 0) {
        removed_any = true;
        w.client_versions.erase(n);
      }
    }
    if (added.empty() && !removed_any) {
      if (!req.response_nonce().empty()) ++ack_count[type];
      return;
    }
    if (!added.empty()) {
      if (auto r = delta_response(c, type, &added, false)) out.push_back(std::move(*r));
    }
  }

  // Resources the client lacks (or all, when `full`), limited to `only` if given, plus
  // removals of what it holds that no longer exists. nullopt when there is nothing to say,
  // except that a first request is always answered.
  std::optional<discovery::DeltaDiscoveryResponse> delta_response(connection& c, const std::string& type,
                                                                  const std::set<std::string>* only, bool full) {
    watch& w = c.watches[type];
    discovery::DeltaDiscoveryResponse resp;
    resp.set_type_url(type);
    resp.set_system_version_info("v" + std::to_string(generation));
    const auto& all = resources[type];
    for (const auto& [name, r] : all) {
      if (only != nullptr && !only->contains(name)) continue;
      if (!w.wildcard && !w.names.contains(name)) continue;
      auto held = w.client_versions.find(name);
      if (!full && held != w.client_versions.end() && held->second == r.version) continue;
      auto* res = resp.add_resources();
      res->set_name(name);
      res->set_version(r.version);
      *res->mutable_resource() = r.any;
      w.client_versions[name] = r.version;
    }
    if (only == nullptr) {
      std::vector<std::string> gone;
      for (const auto& [name, v] : w.client_versions) {
        if (!all.contains(name)) gone.push_back(name);
      }
      for (const auto& name : gone) {
        resp.add_removed_resources(name);
        w.client_versions.erase(name);
      }
    }
    if (resp.resources().empty() && resp.removed_resources().empty() && !full) return std::nullopt;
    resp.set_nonce(next_nonce());
    w.nonce_sent = resp.nonce();
    w.awaiting = true;
    ++response_count[type];
    return resp;
  }

  void push_all(connection& c,
                std::vector<std::variant<discovery::DiscoveryResponse, discovery::DeltaDiscoveryResponse>>& out) {
    c.pushed_generation = generation;
    for (const std::string& type : type_order) {
      auto it = c.watches.find(type);
      if (it == c.watches.end() || !it->second.subscribed) continue;
      if (c.delta) {
        if (auto r = delta_response(c, type, nullptr, false)) out.push_back(std::move(*r));
      } else {
        out.push_back(sotw_response(c, type));
      }
    }
  }

  std::string next_nonce() { return "n" + std::to_string(++nonce_counter); }

  control_plane_options options;
  service svc;
  std::mutex lifecycle_mu;
  std::unique_ptr<grpc::Server> server;

  mutable std::mutex mu;
  mutable std::condition_variable cv;
  std::uint16_t port;
  bool stopping = false;
  bool paused = false;
  std::uint64_t generation = 0;
  std::uint64_t nonce_counter = 0;
  std::map<std::string, std::map<std::string, resource>> resources;
  std::set<connection*> connections;
  std::vector<stream_record> records;
  std::vector<nack_record> nack_list;
  std::map<std::string, std::size_t> ack_count;
  std::map<std::string, std::size_t> response_count;
  std::size_t opened = 0;
  std::size_t rejected = 0;
  std::size_t stale = 0;
};

test_control_plane::test_control_plane(control_plane_options options)
    : impl_(std::make_unique<impl>(std::move(options))) {}

test_control_plane::~test_control_plane() { stop(); }

void test_control_plane::start() { impl_->start(); }
void test_control_plane::stop() { impl_->stop(); }

std::uint16_t test_control_plane::port() const {
  std::lock_guard lock(impl_->mu);
  return impl_->port;
}

void test_control_plane::set_clusters(std::vector<envoy::config::cluster::v3::Cluster> clusters) {
  std::vector<std::pair<std::string, google::protobuf::Any>> raw;
  for (const auto& c : clusters) raw.emplace_back(c.name(), pack(c));
  set_raw(cluster_type, std::move(raw));
}

void test_control_plane::set_endpoints(std::vector<envoy::config::endpoint::v3::ClusterLoadAssignment> assignments) {
  std::vector<std::pair<std::string, google::protobuf::Any>> raw;
  for (const auto& a : assignments) raw.emplace_back(a.cluster_name(), pack(a));
  set_raw(endpoint_type, std::move(raw));
}

void test_control_plane::set_listeners(std::vector<envoy::config::listener::v3::Listener> listeners) {
  std::vector<std::pair<std::string, google::protobuf::Any>> raw;
  for (const auto& l : listeners) raw.emplace_back(l.name(), pack(l));
  set_raw(listener_type, std::move(raw));
}

void test_control_plane::set_raw(const std::string& type_url,
                                 std::vector<std::pair<std::string, google::protobuf::Any>> resources) {
  std::lock_guard lock(impl_->mu);
  auto& m = impl_->resources[type_url];
  m.clear();
  for (auto& [name, any] : resources) {
    const std::string v = version_of(any);
    m[name] = {v, std::move(any)};
  }
}

void test_control_plane::push() {
  {
    std::lock_guard lock(impl_->mu);
    ++impl_->generation;
  }
  impl_->cv.notify_all();
}

std::uint64_t test_control_plane::generation() const {
  std::lock_guard lock(impl_->mu);
  return impl_->generation;
}

void test_control_plane::close_streams() {
  {
    std::lock_guard lock(impl_->mu);
    for (auto* c : impl_->connections) c->close_requested = true;
  }
  impl_->cv.notify_all();
}

void test_control_plane::pause_pushes(bool paused) {
  {
    std::lock_guard lock(impl_->mu);
    impl_->paused = paused;
  }
  impl_->cv.notify_all();
}

std::size_t test_control_plane::streams_opened() const {
  std::lock_guard lock(impl_->mu);
  return impl_->opened;
}

std::size_t test_control_plane::active_streams() const {
  std::lock_guard lock(impl_->mu);
  return impl_->connections.size();
}

std::size_t test_control_plane::rejected_streams() const {
  std::lock_guard lock(impl_->mu);
  return impl_->rejected;
}

std::vector<nack_record> test_control_plane::nacks() const {
  std::lock_guard lock(impl_->mu);
  return impl_->nack_list;
}

std::size_t test_control_plane::acks(const std::string& type_url) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->ack_count.find(type_url);
  return it == impl_->ack_count.end() ? 0 : it->second;
}

std::size_t test_control_plane::stale_requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stale;
}

std::vector<stream_record> test_control_plane::streams() const {
  std::lock_guard lock(impl_->mu);
  return impl_->records;
}

std::size_t test_control_plane::responses(const std::string& type_url) const {
  std::lock_guard lock(impl_->mu);
  auto it = impl_->response_count.find(type_url);
  return it == impl_->response_count.end() ? 0 : it->second;
}

bool test_control_plane::wait_synced(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] {
    if (impl_->connections.empty()) return false;
    for (const auto* c : impl_->connections) {
      if (!c->queue.empty() || c->pushed_generation < impl_->generation || c->first_request) return false;
      for (const auto& [type, w] : c->watches) {
        if (w.awaiting) return false;
      }
    }
    return true;
  });
}

bool test_control_plane::wait_until(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = clock::now() + timeout;
  while (!pred()) {
    if (clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

}  // namespace ewgw::test
