#include "xds/ads_client.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/version_info.h>
#include <malloc.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <variant>

#include "envoy/service/discovery/v3/ads.grpc.pb.h"
#include "google/rpc/status.pb.h"
#include "stats/log.h"
#include "xds/ads_state.h"
#include "xds/xds_stats.h"

namespace ewgw::xds {

std::optional<std::string> grpc_experiments_for_xds(const char* current) {
  constexpr std::string_view experiment = "tcp_read_chunks";
  std::string value = current != nullptr ? current : "";
  if (value.find(experiment) != std::string::npos) return std::nullopt;  // the operator's choice
  if (!value.empty()) value += ',';
  value += '-';
  value += experiment;
  return value;
}

void prepare_grpc_environment() {
#if GRPC_CPP_VERSION_MAJOR == 1 && GRPC_CPP_VERSION_MINOR == 51
  if (auto value = grpc_experiments_for_xds(std::getenv("GRPC_EXPERIMENTS"))) {
    ::setenv("GRPC_EXPERIMENTS", value->c_str(), 1);
  }
#endif
}

namespace {

namespace discovery = envoy::service::discovery::v3;
using clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr resource_kind all_kinds[] = {resource_kind::cluster, resource_kind::endpoint, resource_kind::listener};
constexpr std::size_t max_error_detail = 16 * 1024;
constexpr int grpc_internal = 13;  // google.rpc.Code INTERNAL, what Envoy puts in error_detail

std::size_t slot(resource_kind k) { return static_cast<std::size_t>(k); }

bool read_file(const std::string& path, std::string& out, std::string& error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    error = "cannot read " + path;
    return false;
  }
  std::ostringstream s;
  s << in.rdbuf();
  out = s.str();
  return true;
}

std::string trim_right(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}

std::string join_errors(const std::vector<std::string>& errors) {
  std::string out;
  for (const auto& e : errors) {
    if (!out.empty()) out += "; ";
    out += e;
    if (out.size() > max_error_detail) {
      out.resize(max_error_detail);
      out += " ...";
      break;
    }
  }
  return out;
}

std::string status_text(const grpc::Status& s) {
  static const char* names[] = {"OK",
                                "CANCELLED",
                                "UNKNOWN",
                                "INVALID_ARGUMENT",
                                "DEADLINE_EXCEEDED",
                                "NOT_FOUND",
                                "ALREADY_EXISTS",
                                "PERMISSION_DENIED",
                                "RESOURCE_EXHAUSTED",
                                "FAILED_PRECONDITION",
                                "ABORTED",
                                "OUT_OF_RANGE",
                                "UNIMPLEMENTED",
                                "INTERNAL",
                                "UNAVAILABLE",
                                "DATA_LOSS",
                                "UNAUTHENTICATED"};
  const int code = s.error_code();
  std::string text = code >= 0 && code <= 16 ? names[code] : std::to_string(code);
  if (!s.error_message().empty()) text += ": " + s.error_message();
  return text;
}

// The token file, re-read when its modification time or size changes (a projected service
// account token is replaced in place by the kubelet).
class token_source {
 public:
  explicit token_source(std::string path) : path_(std::move(path)) {}

  // The current token; false (with `error`) when the file cannot be read.
  bool get(std::string& token, std::string& error) {
    struct stat st {};
    if (::stat(path_.c_str(), &st) != 0) {
      error = "cannot stat token file " + path_;
      return false;
    }
    if (!loaded_ || st.st_mtim.tv_sec != mtime_.tv_sec || st.st_mtim.tv_nsec != mtime_.tv_nsec ||
        st.st_size != size_) {
      std::string text;
      if (!read_file(path_, text, error)) return false;
      token_ = trim_right(std::move(text));
      mtime_ = st.st_mtim;
      size_ = st.st_size;
      loaded_ = true;
    }
    token = token_;
    return true;
  }

 private:
  std::string path_;
  std::string token_;
  timespec mtime_{};
  off_t size_ = 0;
  bool loaded_ = false;
};

}  // namespace

struct ads_client::impl {
  struct stream_ended {};
  using event = std::variant<discovery::DiscoveryResponse, discovery::DeltaDiscoveryResponse, stream_ended>;

  // Protocol state of one resource type.
  struct type_state {
    std::string version;           // SotW: version_info of the last accepted response
    std::string nonce;             // nonce of the last response received on this stream
    bool requested = false;        // subscribed on this stream
    sorted_names names;            // EDS: names sent in the subscription (the state's strings)
  };

  // Per EDS cluster update counters. Clusters are never dropped from it (their counters stay
  // readable, as before). A dense_index (a flat vector found through an open-addressing table)
  // whose entries reference the cluster's name as the ADS state holds it (a shared_string) instead
  // of a copy of its ~55 characters: ~40 bytes per cluster where a hash node and a heap string
  // took ~130 (heaptrack, 10,000 istiod clusters). The emitter reads the names on the stats
  // thread under `mu`; the ADS state's references to them change on the xDS thread, which
  // shared_ptr's atomic counts allow.
  struct eds_update_table {
    struct counts {
      std::uint64_t attempt = 0, success = 0, rejected = 0;
    };
    std::mutex mu;

    // Before adding a batch (the full state's 10,000 clusters): room for exactly the new
    // entries, instead of growth steps that leave slack.
    void reserve_for(const std::vector<shared_string>& clusters) {
      std::size_t added = 0;
      for (const auto& c : clusters) {
        if (!index_.contains(c.view())) ++added;
      }
      if (added >= 64) index_.reserve(index_.size() + added);  // a few new clusters: ordinary growth
    }

    counts& of(const shared_string& cluster) {
      if (auto it = index_.find(cluster.view()); it != index_.end()) {
        // A cluster removed and added again has a new name block in the ADS state: take it,
        // so that this table does not keep the old one alive as a copy of its own.
        it->first.share_if_equal(cluster);
        return it->second;
      }
      index_.insert_or_assign(cluster, counts{});
      return index_.find(cluster.view())->second;
    }

    template <class F>
    void each(F f) const {
      for (const auto& [name, values] : index_) f(name.view(), values);
    }

   private:
    dense_index<counts> index_;
  };

  impl(const bootstrap_config& bootstrap_in, apply_fn apply_in, stats::registry& registry_in, ads_client_options o)
      : bootstrap(bootstrap_in),
        ads(*bootstrap_in.ads),
        apply(std::move(apply_in)),
        registry(registry_in),
        options(o),
        state(bootstrap_in, o.listener_wait),
        cds_stats(registry_in.get<xds_update_stats>("cluster_manager", "cds")),
        lds_stats(registry_in.get<xds_update_stats>("listener_manager", "lds")),
        cp_stats(registry_in.get<control_plane_stats>("control_plane", "")),
        listener_manager(registry_in.get<listener_manager_stats>("listener_manager", "", "", 1)),
        cluster_manager(registry_in.get<cluster_manager_stats>("cluster_manager", "", "", 1)),
        tokens(ads.token_file) {
    build_node();
    registry_in.add_source([table = eds_updates](const stats::registry::scope_emitter& emit) {
      // Names and help as in the xds_update_stats block (a never-written instance lists them).
      static const xds_update_stats names;
      std::lock_guard lock(table->mu);
      table->each([&](std::string_view cluster, const eds_update_table::counts& c) {
        const std::uint64_t values[] = {c.attempt, c.success, c.rejected};
        stats::computed_scope s("cluster", std::string(cluster));
        std::size_t i = 0;
        names.visit([&](std::string_view name, std::string_view help, stats::metric_kind kind, std::int64_t) {
          s.add(name, help, kind, static_cast<std::int64_t>(values[i++]));
        });
        emit(s);
      });
    });
  }

  void build_node() {
    auto& n = node;
    n.set_id(bootstrap.node.id);
    n.set_cluster(bootstrap.node.cluster);
    n.mutable_locality()->set_region(std::string(bootstrap.node.where.region.view()));
    n.mutable_locality()->set_zone(std::string(bootstrap.node.where.zone.view()));
    n.mutable_locality()->set_sub_zone(std::string(bootstrap.node.where.sub_zone.view()));
    n.set_user_agent_name("ewgw");
    n.set_user_agent_version("0.1.0");
    if (!bootstrap.node.metadata_json.empty()) {
      (void)google::protobuf::util::JsonStringToMessage(bootstrap.node.metadata_json, n.mutable_metadata());
    }
  }

  // ---- threads ------------------------------------------------------------------------------

  void start() {
    std::lock_guard lock(mu);
    if (thread.joinable()) return;
    stopping = false;
    thread = std::thread([this] { run(); });
  }

  void stop() {
    {
      std::lock_guard lock(mu);
      stopping = true;
      if (context != nullptr) context->TryCancel();
    }
    cv.notify_all();
    if (thread.joinable()) thread.join();
  }

  void push(event e) {
    {
      std::lock_guard lock(mu);
      events.push_back(std::move(e));
    }
    cv.notify_all();
  }

  bool is_stopping() {
    std::lock_guard lock(mu);
    return stopping;
  }

  milliseconds jitter(milliseconds base) {
    // Uniform in [base/2, base]: spreads reconnects of many gateways after an istiod restart.
    std::uniform_int_distribution<long> d(base.count() / 2, std::max<long>(base.count(), 1));
    return milliseconds(d(rng));
  }

  void run() {
    milliseconds backoff = options.initial_backoff;
    while (!is_stopping()) {
      const bool had_response = run_stream();
      if (is_stopping()) break;
      // A trim still pending when the stream has ended runs now, once the stream's channel and
      // its read buffers are gone: the reconnect backoff does not look at it, and the control
      // plane may stay away for long.
      trim_pending();
      if (had_response) backoff = options.initial_backoff;
      const milliseconds delay = jitter(backoff);
      // A stream that worked and was closed (istiod does so every ~30 min) is routine; a stream
      // that could not be established is what operators need to see.
      if (had_response) {
        EWGW_LOG(info, "xds", "control plane stream ended; reconnecting",
                 {{"target", ads.target}, {"reason", last_stream_error()}, {"retry_in_ms", log::num(delay.count())}});
      } else {
        EWGW_LOG(warn, "xds", "control plane unreachable or refused the stream; retrying",
                 {{"target", ads.target}, {"reason", last_stream_error()}, {"retry_in_ms", log::num(delay.count())}});
      }
      backoff = std::min(backoff * 2, options.max_backoff);
      idle_until(clock::now() + delay);
    }
  }

  // Waits until `until` (or stop), still letting waiting listeners take effect on time.
  void idle_until(clock::time_point until) {
    while (true) {
      auto wake = until;
      if (auto d = next_wake(); d && *d < wake) wake = *d;
      {
        std::unique_lock lock(mu);
        cv.wait_until(lock, wake, [&] { return stopping; });
        if (stopping) return;
      }
      promote(clock::now());
      if (clock::now() >= until) return;
    }
  }

  // When a waiting listener's wait ends (nothing to wake for while promotions are blocked).
  std::optional<clock::time_point> next_wake() const {
    if (promotion_blocked) return std::nullopt;
    return state.next_wait_deadline();
  }

  std::string last_stream_error() {
    std::lock_guard lock(mu);
    return status_.last_error;
  }

  std::shared_ptr<grpc::Channel> make_channel(std::string& error) {
    std::shared_ptr<grpc::ChannelCredentials> creds;
    if (ads.tls) {
      grpc::SslCredentialsOptions ssl;
      if (!ads.root_cert_file.empty() && !read_file(ads.root_cert_file, ssl.pem_root_certs, error)) return nullptr;
      // mTLS towards the control plane: read for every new channel (a rotated certificate is
      // used from the next stream on).
      if (!ads.client_cert_chain_file.empty() &&
          (!read_file(ads.client_cert_chain_file, ssl.pem_cert_chain, error) ||
           !read_file(ads.client_private_key_file, ssl.pem_private_key, error))) {
        return nullptr;
      }
      creds = grpc::SslCredentials(ssl);
    } else {
      creds = grpc::InsecureChannelCredentials();
    }
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(-1);  // istiod's CDS/EDS for a large mesh exceed gRPC's 4 MiB default
    args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, static_cast<int>(options.keepalive_time.count()));
    args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, static_cast<int>(options.keepalive_timeout.count()));
    args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);  // an idle xDS stream must keep pinging
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, static_cast<int>(options.initial_backoff.count()));
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, static_cast<int>(options.initial_backoff.count()));
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, static_cast<int>(options.max_backoff.count()));
    args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "ewgw/0.1.0");
    // Bounds each read buffer once tcp_read_chunks is off (prepare_grpc_environment()).
    args.SetInt(GRPC_ARG_TCP_MAX_READ_CHUNK_SIZE, 64 * 1024);
    if (ads.tls && !ads.server_name.empty()) args.SetSslTargetNameOverride(ads.server_name);
    return grpc::CreateCustomChannel(ads.target, creds, args);
  }

  // One stream from open to end. Returns whether it received at least one response.
  bool run_stream() {
    std::string error;
    auto channel = make_channel(error);
    if (!channel) {
      set_error(error);
      return false;
    }
    grpc::ClientContext ctx;
    if (!ads.token_file.empty()) {
      std::string token;
      if (tokens.get(token, error)) {
        ctx.AddMetadata(ads.token_header, ads.token_prefix + token);
      } else {
        EWGW_LOG(warn, "xds", "token file unreadable; connecting without a token", {{"error", error}});
      }
    }
    for (const grpc_header& h : ads.initial_metadata) ctx.AddMetadata(h.key, h.value);
    {
      std::lock_guard lock(mu);
      if (stopping) return false;
      context = &ctx;
      events.clear();
    }
    auto stub = discovery::AggregatedDiscoveryService::NewStub(channel);
    bool had_response = false;
    if (ads.api == xds_api::delta) {
      auto stream = stub->DeltaAggregatedResources(&ctx);
      delta = stream.get();
      had_response = serve_stream(*stream, [&](event& e) {
        return std::holds_alternative<discovery::DeltaDiscoveryResponse>(e) ? (on_delta(std::get<1>(e)), true) : false;
      });
      delta = nullptr;
    } else {
      auto stream = stub->StreamAggregatedResources(&ctx);
      sotw = stream.get();
      had_response = serve_stream(*stream, [&](event& e) {
        return std::holds_alternative<discovery::DiscoveryResponse>(e) ? (on_sotw(std::get<0>(e)), true) : false;
      });
      sotw = nullptr;
    }
    std::lock_guard lock(mu);
    context = nullptr;
    return had_response;
  }

  static constexpr std::size_t trim_after_bytes = 1 << 20;

  static std::size_t payload_bytes(const event& e) {
    std::size_t n = 0;
    if (const auto* r = std::get_if<discovery::DiscoveryResponse>(&e)) {
      for (const auto& a : r->resources()) n += a.value().size();
    } else if (const auto* d = std::get_if<discovery::DeltaDiscoveryResponse>(&e)) {
      for (const auto& res : d->resources()) n += res.resource().value().size();
    }
    return n;
  }

  static void release_free_memory() {
#if defined(__GLIBC__)
    ::malloc_trim(0);
#endif
  }

  // A large response (istiod's full state at start or after a reconnect: tens of MB of
  // transient protobuf at 10,000 services) leaves its memory free in the malloc arenas, where
  // glibc keeps it; malloc_trim hands it back. It runs once the stream has been quiet for
  // trim_quiet, or at the latest trim_deadline after the first large response of a burst: one
  // trim walks every arena (~50 ms for a heap of this size), so CDS, EDS and LDS pushed
  // together pay for one, not three, and whatever the threads free just after handling is
  // included. (gRPC's reads are bounded by prepare_grpc_environment() and the channel's read
  // chunk size, and the reader thread's arena returns its top thanks to apply_allocator_policy():
  // after the trim, what stays resident is about what is live.)
  static constexpr auto trim_quiet = std::chrono::milliseconds(500);
  static constexpr auto trim_deadline = std::chrono::seconds(5);
  std::optional<clock::time_point> trim_first_due;  // the burst's first large response + trim_deadline
  std::optional<clock::time_point> trim_due;

  void note_large_response(clock::time_point now) {
    if (!trim_first_due) trim_first_due = now + trim_deadline;
    trim_due = std::min(now + trim_quiet, *trim_first_due);
  }

  void trim_if_due(clock::time_point now) {
    if (trim_due && now >= *trim_due) trim_pending();
  }

  void trim_pending() {
    if (!trim_due) return;
    trim_due.reset();
    trim_first_due.reset();
    release_free_memory();
  }

  template <class Stream, class Handler>
  bool serve_stream(Stream& stream, Handler handle) {
    cp_stats->worker(0).stream_opened.inc();
    {
      std::lock_guard lock(mu);
      ++status_.streams_opened;
    }
    for (auto& t : types) {
      t.nonce.clear();
      t.requested = false;
      t.names = {};
    }
    first_message = true;
    got_response = false;
    using response_t = std::conditional_t<std::is_same_v<Stream, grpc::ClientReaderWriter<discovery::DiscoveryRequest,
                                                                                            discovery::DiscoveryResponse>>,
                                          discovery::DiscoveryResponse, discovery::DeltaDiscoveryResponse>;
    std::thread reader([this, &stream] {
      response_t response;
      while (stream.Read(&response)) {
        push(event(std::move(response)));
        response = response_t();
      }
      push(event(stream_ended{}));
    });
    EWGW_LOG(info, "xds", "stream opened",
             {{"target", ads.target}, {"api", ads.api == xds_api::delta ? "delta" : "sotw"}});
    // Subscriptions in Envoy's order: CDS, EDS (names known from a previous stream), LDS once
    // clusters have been received.
    if (ads.cds) subscribe(resource_kind::cluster);
    update_eds_subscription(state.eds_names());
    if (ads.lds && (!ads.cds || cds_accepted)) subscribe(resource_kind::listener);

    bool ended = false;
    while (!ended) {
      std::optional<event> next;
      {
        std::unique_lock lock(mu);
        auto deadline = next_wake();
        if (trim_due && (!deadline || *trim_due < *deadline)) deadline = trim_due;
        auto ready = [&] { return stopping || !events.empty(); };
        if (deadline) {
          cv.wait_until(lock, *deadline, ready);
        } else {
          cv.wait(lock, ready);
        }
        if (stopping && context != nullptr) context->TryCancel();
        if (!events.empty()) {
          next = std::move(events.front());
          events.pop_front();
        }
      }
      if (!next) {
        promote(clock::now());
        trim_if_due(clock::now());
        continue;
      }
      if (std::holds_alternative<stream_ended>(*next)) {
        ended = true;
        continue;
      }
      if (is_stopping()) continue;  // drain until the reader ends; apply nothing more
      const std::size_t bytes = payload_bytes(*next);
      handle(*next);
      next.reset();
      if (bytes >= trim_after_bytes) note_large_response(clock::now());
      trim_if_due(clock::now());  // a steady stream of small updates must not postpone it past the deadline
    }
    reader.join();
    const grpc::Status status = stream.Finish();
    set_connected(false);
    cp_stats->worker(0).stream_closed.inc();
    if (got_response) {
      set_error("stream closed by the server: " + status_text(status));
    } else if (ads.tls && ads.client_cert_chain_file.empty() && status.error_code() == grpc::StatusCode::UNAVAILABLE &&
               status.error_message().find("Socket closed") != std::string::npos) {
      // With TLS 1.3 a server that requires a client certificate rejects the handshake after
      // the client has finished it: gRPC only sees the socket close. Say what is likely.
      set_error(status_text(status) +
                " (TLS: no client certificate is configured; a control plane that requires mutual TLS closes the "
                "connection like this, see ssl_credentials.cert_chain/private_key)");
    } else {
      set_error(status_text(status));
    }
    return got_response;
  }

  // ---- requests -----------------------------------------------------------------------------

  void write_failed() {
    // The stream is broken; Read() will end it. Nothing else to do here.
  }

  void send_sotw(resource_kind kind, const google::rpc::Status* error) {
    discovery::DiscoveryRequest req;
    auto& t = types[slot(kind)];
    req.set_type_url(std::string(type_url(kind)));
    req.set_version_info(t.version);
    req.set_response_nonce(t.nonce);
    if (kind == resource_kind::endpoint) {
      for (const shared_string& n : t.names) req.add_resource_names(n.data(), n.size());
    }
    if (first_message || !ads.node_on_first_message_only) *req.mutable_node() = node;
    first_message = false;
    if (error != nullptr) *req.mutable_error_detail() = *error;
    if (sotw != nullptr && !sotw->Write(req)) write_failed();
  }

  void send_delta(discovery::DeltaDiscoveryRequest& req) {
    if (first_message) *req.mutable_node() = node;
    first_message = false;
    if (delta != nullptr && !delta->Write(req)) write_failed();
  }

  // The first request for a type on this stream. `eds_names`: state.eds_names() when the caller
  // has it (it is a fresh list of every service name: built once per update, not per use).
  void subscribe(resource_kind kind, const sorted_names* eds_names = nullptr) {
    auto& t = types[slot(kind)];
    if (t.requested) return;
    t.requested = true;
    if (kind == resource_kind::endpoint) {
      t.names = eds_names != nullptr ? *eds_names : state.eds_names();
    }
    if (ads.api == xds_api::sotw) {
      send_sotw(kind, nullptr);
      return;
    }
    discovery::DeltaDiscoveryRequest req;
    req.set_type_url(std::string(type_url(kind)));
    if (kind == resource_kind::endpoint) {
      for (const shared_string& n : t.names) req.add_resource_names_subscribe(n.data(), n.size());
    } else {
      req.add_resource_names_subscribe("*");  // explicit wildcard (xDS protocol, "*" reserved name)
    }
    // EDS: only the versions of subscribed names (both sorted: one merge walk).
    auto subscribed = t.names.begin();
    for (const auto& [name, version] : state.versions(kind)) {
      if (kind == resource_kind::endpoint) {
        while (subscribed != t.names.end() && subscribed->view() < name) ++subscribed;
        if (subscribed == t.names.end() || subscribed->view() != name) continue;
      }
      (*req.mutable_initial_resource_versions())[name] = version;
    }
    send_delta(req);
  }

  // EDS follows the EDS clusters: subscribe when the first appears, then send changes.
  void update_eds_subscription(const sorted_names& names) {
    auto& t = types[slot(resource_kind::endpoint)];
    if (!t.requested) {
      if (!names.empty()) subscribe(resource_kind::endpoint, &names);
      return;
    }
    if (names == t.names) return;
    if (ads.api == xds_api::sotw) {
      t.names = names;
      send_sotw(resource_kind::endpoint, nullptr);
      return;
    }
    discovery::DeltaDiscoveryRequest req;
    req.set_type_url(std::string(type_url(resource_kind::endpoint)));
    // Both sorted: one merge walk gives the names added and the names dropped.
    auto now = names.begin();
    for (auto before = t.names.begin(); before != t.names.end() || now != names.end();) {
      if (before == t.names.end() || (now != names.end() && now->view() < before->view())) {
        req.add_resource_names_subscribe(now->data(), now->size());
        ++now;
      } else if (now == names.end() || before->view() < now->view()) {
        req.add_resource_names_unsubscribe(before->data(), before->size());
        ++before;
      } else {
        ++now;
        ++before;
      }
    }
    t.names = names;
    send_delta(req);
  }

  // ---- responses ----------------------------------------------------------------------------


  xds_update_stats* type_stats(resource_kind kind) {
    switch (kind) {
      case resource_kind::cluster: return &cds_stats->worker(0);
      case resource_kind::listener: return &lds_stats->worker(0);
      case resource_kind::endpoint: return nullptr;
    }
    return nullptr;
  }

  void on_response_received() {
    if (!got_response) {
      got_response = true;
      set_connected(true);
      EWGW_LOG(info, "xds", "connected to the control plane", {{"target", ads.target}});
    }
  }

  // Applies a staged result; false (rolled back) when the gateway refused it.
  bool apply_staged(const ads_state::result& r, std::vector<std::string>& errors) {
    if (r.changed) {
      auto refused = apply(state.assemble());
      if (!refused.empty()) {
        state.rollback();
        for (auto& e : refused) errors.push_back("the gateway refused the configuration: " + e);
        return false;
      }
      std::lock_guard lock(mu);
      ++status_.applies;
    }
    state.commit();
    return true;
  }

  void count(resource_kind kind, const ads_state::result& r, bool accepted, bool attempt) {
    if (auto* s = type_stats(kind)) {
      if (attempt) s->update_attempt.inc();
      (accepted ? s->update_success : s->update_rejected).inc();
    }
    if (kind == resource_kind::endpoint && !r.eds_clusters.empty()) {
      std::lock_guard lock(eds_updates->mu);
      eds_updates->reserve_for(r.eds_clusters);
      for (const auto& c : r.eds_clusters) {
        auto& counts = eds_updates->of(c);
        ++counts.attempt;
        ++(accepted ? counts.success : counts.rejected);
      }
    }
  }

  void log_notes(const ads_state::result& r) {
    for (const auto& n : r.notes) EWGW_LOG(info, "xds", n);
  }

  void rejected(resource_kind kind, const std::string& nonce, const std::vector<std::string>& errors) {
    reject(kind, nonce, errors);
    // As Envoy: clusters having been answered (even by a rejected update), listeners follow.
    if (kind == resource_kind::cluster && ads.lds) subscribe(resource_kind::listener);
  }

  void reject(resource_kind kind, const std::string& nonce, const std::vector<std::string>& errors) {
    const std::string message = join_errors(errors);
    EWGW_LOG(warn, "xds", "update rejected (NACK); the last good configuration stays",
             {{"type", short_name(kind)}, {"nonce", nonce}, {"errors", message}});
    {
      std::lock_guard lock(mu);
      ++status_.nacks;
      status_.last_error = std::string(short_name(kind)) + " rejected: " + message;
    }
    google::rpc::Status detail;
    detail.set_code(grpc_internal);
    detail.set_message(message);
    types[slot(kind)].nonce = nonce;
    if (ads.api == xds_api::sotw) {
      send_sotw(kind, &detail);
    } else {
      discovery::DeltaDiscoveryRequest req;
      req.set_type_url(std::string(type_url(kind)));
      req.set_response_nonce(nonce);
      *req.mutable_error_detail() = detail;
      send_delta(req);
    }
  }

  void accepted(resource_kind) {
    std::lock_guard lock(mu);
    ++status_.acks;
  }

  // After an accepted response: follow-up subscriptions, waiting listeners, readiness.
  void after_accept(resource_kind kind) {
    if (kind == resource_kind::cluster) {
      cds_accepted = true;
      // Assignments of services no cluster uses any more leave the dump, as they leave the state.
      const auto eds_names = state.eds_names();
      if (options.config_dump) options.config_dump->retain(config_store::kind::endpoint, eds_names);
      update_eds_subscription(eds_names);
      if (ads.lds) subscribe(resource_kind::listener);
    }
    if (kind == resource_kind::listener) {
      lds_accepted = true;
      promotion_blocked = false;
    }
    promote(clock::now());
  }

  // ---- admin /config_dump: the accepted resources as sent --------------------------------

  static config_store::kind dump_kind(resource_kind k) {
    switch (k) {
      case resource_kind::cluster: return config_store::kind::cluster;
      case resource_kind::endpoint: return config_store::kind::endpoint;
      case resource_kind::listener: return config_store::kind::listener;
    }
    return config_store::kind::cluster;
  }

  // The name the store keeps for an accepted resource: the state's own string when it holds the
  // resource (shared, not copied: see config_dump.cc), else a copy (an EDS assignment for a
  // service no cluster uses any more, which the state ignores).
  shared_string dump_name(resource_kind kind, std::string_view name) const {
    if (shared_string shared = state.shared_name(kind, name); !shared.empty()) return shared;
    return shared_string(name);
  }

  void record_sotw(resource_kind kind, const discovery::DiscoveryResponse& resp) {
    config_store* store = options.config_dump.get();
    if (store == nullptr) return;
    const auto now = std::chrono::system_clock::now();
    if (kind == resource_kind::endpoint) {
      // A state-of-the-world EDS response may hold a subset: absent assignments are unchanged.
      for (const auto& any : resp.resources()) {
        store->put(config_store::kind::endpoint, dump_name(kind, config_store::resource_name(any.value())),
                   resp.version_info(), any.value(), now);
      }
      return;
    }
    std::vector<std::pair<shared_string, const std::string*>> all;
    all.reserve(static_cast<std::size_t>(resp.resources_size()));
    for (const auto& any : resp.resources()) {
      all.emplace_back(dump_name(kind, config_store::resource_name(any.value())), &any.value());
    }
    store->replace_all(dump_kind(kind), all, resp.version_info(), now);
  }

  void record_delta(resource_kind kind, const discovery::DeltaDiscoveryResponse& resp) {
    config_store* store = options.config_dump.get();
    if (store == nullptr) return;
    const auto now = std::chrono::system_clock::now();
    for (const auto& res : resp.resources()) {
      if (!res.has_resource()) continue;
      // The name from the resource itself only when the Resource wrapper leaves it out.
      const std::string parsed = res.name().empty() ? config_store::resource_name(res.resource().value()) : std::string();
      const std::string_view name = res.name().empty() ? std::string_view(parsed) : std::string_view(res.name());
      store->put(dump_kind(kind), dump_name(kind, name), res.version(), res.resource().value(), now);
    }
    for (const auto& name : resp.removed_resources()) store->remove(dump_kind(kind), name);
  }

  // Which clusters warm and which listeners wait, as the dump shows them.
  void record_pending() {
    config_store* store = options.config_dump.get();
    if (store == nullptr) return;
    const bool pending = state.warming_clusters() > 0 || state.waiting_listeners() > 0;
    if (!pending && !dump_had_pending) return;
    store->set_pending(state.warming_cluster_names(), state.waiting_listener_names());
    dump_had_pending = pending;
  }

  void on_sotw(const discovery::DiscoveryResponse& resp) {
    on_response_received();
    const auto kind = kind_of(resp.type_url());
    if (!kind) {
      EWGW_LOG(warn, "xds", "response for a type that was not requested; ignored", {{"type", resp.type_url()}});
      return;
    }
    auto r = state.apply_sotw(*kind, resp.resources(), clock::now());
    std::vector<std::string> errors = r.errors;
    if (errors.empty()) apply_staged(r, errors);
    if (!errors.empty()) {
      count(*kind, r, false, true);
      rejected(*kind, resp.nonce(), errors);
      return;
    }
    count(*kind, r, true, true);
    log_notes(r);
    auto& t = types[slot(*kind)];
    t.version = resp.version_info();
    t.nonce = resp.nonce();
    EWGW_LOG(debug, "xds", "ACK", {{"type", short_name(*kind)}, {"version", t.version}, {"nonce", t.nonce}});
    accepted(*kind);
    record_sotw(*kind, resp);
    send_sotw(*kind, nullptr);
    after_accept(*kind);
  }

  void on_delta(const discovery::DeltaDiscoveryResponse& resp) {
    on_response_received();
    const auto kind = kind_of(resp.type_url());
    if (!kind) {
      EWGW_LOG(warn, "xds", "response for a type that was not requested; ignored", {{"type", resp.type_url()}});
      return;
    }
    auto r = state.apply_delta(*kind, resp.resources(), resp.removed_resources(), clock::now());
    std::vector<std::string> errors = r.errors;
    if (errors.empty()) apply_staged(r, errors);
    if (!errors.empty()) {
      count(*kind, r, false, true);
      rejected(*kind, resp.nonce(), errors);
      return;
    }
    count(*kind, r, true, true);
    log_notes(r);
    types[slot(*kind)].nonce = resp.nonce();
    accepted(*kind);
    record_delta(*kind, resp);
    discovery::DeltaDiscoveryRequest ack;
    ack.set_type_url(resp.type_url());
    ack.set_response_nonce(resp.nonce());
    send_delta(ack);
    after_accept(*kind);
  }

  // Listeners whose clusters became ready (or whose wait ended) take effect.
  void promote(clock::time_point now) {
    if (!promotion_blocked && state.waiting_listeners() > 0) {
      auto r = state.promote_listeners(now);
      std::vector<std::string> errors;
      if (!apply_staged(r, errors)) {
        // The listener was ACKed already; it cannot be NACKed any more. Keep what is in force
        // and try again with the next LDS update (Envoy counts listener_create_failure).
        promotion_blocked = true;
        EWGW_LOG(error, "xds", "a waiting listener could not take effect; keeping the previous configuration",
                 {{"errors", join_errors(errors)}});
      } else {
        log_notes(r);
      }
    }
    update_ready();
  }

  void update_ready() {
    record_pending();
    {
      std::lock_guard lock(mu);
      status_.clusters = state.cluster_count();
      status_.warming_clusters = state.warming_clusters();
      status_.listeners = state.listener_count();
      status_.waiting_listeners = state.waiting_listeners();
      status_.unusable_listeners = state.unusable_listeners();
    }
    const auto set = [](stats::gauge& g, std::size_t v) { g.add(static_cast<std::int64_t>(v) - g.value()); };
    set(listener_manager->worker(0).total_listeners_unusable, state.unusable_listeners());
    set(cluster_manager->worker(0).active_clusters, state.assemble().clusters.size());
    set(cluster_manager->worker(0).warming_clusters, state.warming_clusters());
    if (ready.load()) return;
    const bool cds_done = !ads.cds || cds_accepted;
    const bool lds_done = !ads.lds || lds_accepted;
    if (cds_done && lds_done && (state.waiting_listeners() == 0 || promotion_blocked)) {
      ready = true;
      EWGW_LOG(info, "xds", "ready: first CDS and LDS applied",
               {{"clusters", log::num(state.cluster_count())}, {"listeners", log::num(state.listener_count())}});
      std::lock_guard lock(mu);
      status_.ready = true;
    }
  }

  void set_connected(bool on) {
    if (connected.exchange(on) == on) return;
    cp_stats->worker(0).connected_state.add(on ? 1 : -1);
    std::lock_guard lock(mu);
    status_.connected = on;
  }

  void set_error(std::string e) {
    std::lock_guard lock(mu);
    status_.last_error = std::move(e);
  }

  // Configuration (immutable after construction).
  bootstrap_config bootstrap;
  ads_config ads;
  apply_fn apply;
  stats::registry& registry;
  ads_client_options options;
  envoy::config::core::v3::Node node;

  // Client thread only.
  ads_state state;
  type_state types[3];
  bool first_message = true;
  bool got_response = false;
  bool cds_accepted = false;
  bool lds_accepted = false;
  bool promotion_blocked = false;
  bool dump_had_pending = false;  // the dump showed warming clusters or waiting listeners
  grpc::ClientReaderWriter<discovery::DiscoveryRequest, discovery::DiscoveryResponse>* sotw = nullptr;
  grpc::ClientReaderWriter<discovery::DeltaDiscoveryRequest, discovery::DeltaDiscoveryResponse>* delta = nullptr;
  std::shared_ptr<stats::block_scope<xds_update_stats>> cds_stats;
  std::shared_ptr<stats::block_scope<xds_update_stats>> lds_stats;
  // Per EDS cluster: Envoy's cluster.<name>.update_attempt / _success / _rejected. Three
  // integers per cluster in one table, emitted as computed scopes when read, instead of a stored
  // registry scope per cluster (which holds its names twice and a padded block: ~540 bytes per
  // cluster at 10,000 clusters, against ~90 here). Shared with the registry's source, which may
  // outlive this client.
  std::shared_ptr<eds_update_table> eds_updates = std::make_shared<eds_update_table>();
  std::shared_ptr<stats::block_scope<control_plane_stats>> cp_stats;
  std::shared_ptr<stats::block_scope<listener_manager_stats>> listener_manager;
  std::shared_ptr<stats::block_scope<cluster_manager_stats>> cluster_manager;
  token_source tokens;
  std::mt19937_64 rng{std::random_device{}()};

  // Shared with other threads (under mu, or atomic).
  mutable std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::deque<event> events;
  grpc::ClientContext* context = nullptr;
  ads_client_status status_;
  std::atomic<bool> ready{false};
  std::atomic<bool> connected{false};
  std::thread thread;
};

ads_client::ads_client(const bootstrap_config& bootstrap, apply_fn apply, stats::registry& registry,
                       ads_client_options options)
    : impl_(std::make_unique<impl>(bootstrap, std::move(apply), registry, options)) {}

ads_client::~ads_client() { stop(); }

void ads_client::start() { impl_->start(); }
void ads_client::stop() { impl_->stop(); }
bool ads_client::ready() const { return impl_->ready.load(); }
bool ads_client::connected() const { return impl_->connected.load(); }

ads_client_status ads_client::status() const {
  std::lock_guard lock(impl_->mu);
  return impl_->status_;
}

}  // namespace ewgw::xds
