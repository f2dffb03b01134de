// ewgw: an east-west gateway for Istio multi-cluster meshes (SNI passthrough on port 15443).
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>

#include <cstdio>
#include <map>
#include <memory>
#include <optional>
#include <vector>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include "proxy/admin_client.h"
#include "proxy/allocator_policy.h"
#include "proxy/admin_endpoints.h"
#include "proxy/admin_server.h"
#include "proxy/gateway.h"
#include "proxy/xds_controller.h"
#include "stats/log.h"
#include "xds/ads_client.h"
#include "xds/decode.h"
#include "xds/istio_bootstrap.h"

namespace {

constexpr std::string_view usage = R"(usage: ewgw [--config FILE | --istio] [options]
       ewgw explain SNI [--admin-address A:P | URL] [--listener NAME] [--alpn P1,P2] [--port N]

  --config FILE          Envoy v3 Bootstrap (YAML or JSON)
  --istio                Istio mode (the default without --config): build the bootstrap from
                         the environment of an Istio gateway pod and follow istiod over xDS
  --print-bootstrap      Istio mode: print the bootstrap built from the environment and exit
  --mode serve|validate  serve (default) or only check the configuration (exit 0 or 1)
  --concurrency N        worker threads (default: number of cores)
  --log-level LEVEL      trace, debug, info (default), warn, error, off
  --file-flush-interval-msec N  how often access log lines are written (default 100)
  --admin-address A:P    admin endpoints (default: the bootstrap's admin.address, else none)
  --prometheus-address A:P  serve /stats/prometheus here (Istio mode default: 0.0.0.0:15090)
  --readiness-address A:P   serve /healthz/ready here (Istio mode default: 0.0.0.0:15021)
  --help                 this text

explain asks a running gateway's admin port (default 127.0.0.1:15000; an http:// URL, e.g.
through kubectl port-forward, also works) where a connection with this SNI would go and why:
the matching listener and filter chain (with the ALPNs an Istio sidecar offers unless --alpn
says otherwise), the cluster, each priority's load, each locality's weight and each
endpoint's health and ejection state, then a conclusion.
)";

struct host_port {
  std::string address;
  std::uint16_t port = 0;
};

// "127.0.0.1:15000", "[::]:15090", "0.0.0.0:15021".
bool parse_host_port(std::string_view text, host_port& out) {
  const std::size_t colon = text.rfind(':');
  if (colon == std::string_view::npos || colon + 1 == text.size()) return false;
  std::string_view host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  char* end = nullptr;
  const std::string port(text.substr(colon + 1));
  const long p = std::strtol(port.c_str(), &end, 10);
  if (*end != '\0' || p < 0 || p > 65535 || host.empty()) return false;
  out = {std::string(host), static_cast<std::uint16_t>(p)};
  return true;
}

struct options {
  std::optional<host_port> admin;
  std::optional<host_port> prometheus;
  std::optional<host_port> readiness;
  std::string config;
  bool istio = false;
  bool print_bootstrap = false;
  std::string mode = "serve";
  std::size_t concurrency = 0;
  long file_flush_interval_ms = 100;
  ewgw::log::level level = ewgw::log::level::info;
};

int usage_error(const std::string& message) {
  std::fprintf(stderr, "ewgw: %s\n\n%.*s", message.c_str(), static_cast<int>(usage.size()), usage.data());
  return 2;
}

// `ewgw explain SNI ...`: GET /explain on a running gateway's admin port and print the answer.
int explain_command(int argc, char** argv) {
  std::string sni, admin = "127.0.0.1:15000", listener, alpn, port;
  for (int i = 2; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](std::string& out) {
      if (i + 1 >= argc) return false;
      out = argv[++i];
      return true;
    };
    if (arg == "--help" || arg == "-h") {
      std::fwrite(usage.data(), 1, usage.size(), stdout);
      return 0;
    } else if (arg == "--admin-address" || arg == "--admin") {
      if (!value(admin)) return usage_error("--admin-address needs HOST:PORT or a URL");
    } else if (arg == "--listener") {
      if (!value(listener)) return usage_error("--listener needs a listener name");
    } else if (arg == "--alpn") {
      if (!value(alpn)) return usage_error("--alpn needs a comma-separated list");
    } else if (arg == "--port") {
      if (!value(port)) return usage_error("--port needs a port number");
    } else if (!arg.empty() && arg[0] == '-') {
      return usage_error("explain: unknown option '" + std::string(arg) + "'");
    } else if (sni.empty()) {
      sni = std::string(arg);
    } else {
      return usage_error("explain takes one SNI; got '" + sni + "' and '" + std::string(arg) + "'");
    }
  }
  if (sni.empty()) return usage_error("explain needs the SNI to explain, e.g. ewgw explain outbound_.5000_._.helloworld.sample.svc.cluster.local");
  ewgw::proxy::admin_target target;
  if (auto error = ewgw::proxy::parse_admin_target(admin, target)) return usage_error("--admin-address " + *error);
  std::string path = "/explain?sni=" + ewgw::proxy::url_encode(sni);
  if (!listener.empty()) path += "&listener=" + ewgw::proxy::url_encode(listener);
  if (!alpn.empty()) path += "&alpn=" + ewgw::proxy::url_encode(alpn);
  if (!port.empty()) path += "&port=" + ewgw::proxy::url_encode(port);
  const auto reply = ewgw::proxy::admin_get(target, path);
  if (reply.status == 0) {
    std::fprintf(stderr, "ewgw explain: %s (is the gateway running with its admin port there? see --admin-address)\n",
                 reply.error.c_str());
    return 1;
  }
  if (reply.status != 200) {
    std::fprintf(stderr, "ewgw explain: the gateway answered %u: %s", reply.status, reply.body.c_str());
    if (!reply.body.empty() && reply.body.back() != '\n') std::fputc('\n', stderr);
    return 1;
  }
  std::fwrite(reply.body.data(), 1, reply.body.size(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before any thread exists: both change process-wide settings (see their headers).
  ewgw::proxy::apply_allocator_policy();
  ewgw::xds::prepare_grpc_environment();
  if (argc >= 2 && std::string_view(argv[1]) == "explain") return explain_command(argc, argv);
  options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&](std::string_view name) -> const char* {
      if (i + 1 >= argc) return nullptr;
      (void)name;
      return argv[++i];
    };
    if (arg == "--help" || arg == "-h") {
      std::fwrite(usage.data(), 1, usage.size(), stdout);
      return 0;
    } else if (arg == "--config" || arg == "-c") {
      const char* v = value(arg);
      if (!v) return usage_error("--config needs a file");
      opt.config = v;
    } else if (arg == "--istio") {
      opt.istio = true;
    } else if (arg == "--print-bootstrap") {
      opt.print_bootstrap = true;
    } else if (arg == "--mode") {
      const char* v = value(arg);
      if (!v || (std::string_view(v) != "serve" && std::string_view(v) != "validate")) {
        return usage_error("--mode must be serve or validate");
      }
      opt.mode = v;
    } else if (arg == "--concurrency") {
      const char* v = value(arg);
      char* end = nullptr;
      const long n = v ? std::strtol(v, &end, 10) : 0;
      if (!v || *end != '\0' || n < 1 || n > 1024) return usage_error("--concurrency must be 1..1024");
      opt.concurrency = static_cast<std::size_t>(n);
    } else if (arg == "--file-flush-interval-msec") {
      // Envoy's flag name; Envoy's default is 10 s, ewgw writes sooner (its queues are bounded).
      const char* v = value(arg);
      char* end = nullptr;
      const long n = v ? std::strtol(v, &end, 10) : 0;
      if (!v || *end != '\0' || n < 1 || n > 3600000) return usage_error("--file-flush-interval-msec must be 1..3600000");
      opt.file_flush_interval_ms = n;
    } else if (arg == "--admin-address" || arg == "--prometheus-address" || arg == "--readiness-address") {
      const char* v = value(arg);
      host_port hp;
      if (!v || !parse_host_port(v, hp)) return usage_error(std::string(arg) + " needs ADDRESS:PORT");
      (arg == "--admin-address" ? opt.admin : arg == "--prometheus-address" ? opt.prometheus : opt.readiness) = hp;
    } else if (arg == "--log-level" || arg == "-l") {
      const char* v = value(arg);
      if (!v || !ewgw::log::parse_level(v, opt.level)) return usage_error("--log-level must be trace, debug, info, warn, error or off");
    } else {
      return usage_error("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (!opt.config.empty() && opt.istio) return usage_error("--config and --istio exclude each other");
  if (!opt.config.empty() && opt.print_bootstrap) {
    return usage_error("--print-bootstrap shows the Istio-mode bootstrap; it does not take --config");
  }
  ewgw::log::set_level(opt.level);
  if (opt.concurrency == 0) opt.concurrency = std::max(1u, std::thread::hardware_concurrency());

  ewgw::xds::bootstrap_load_result loaded;
  std::string origin = opt.config;
  if (opt.config.empty()) {
    // Istio mode: the bootstrap pilot-agent would give Envoy, from this pod's environment.
    origin = "istio-bootstrap";
    // An Istio gateway pod is probed on 15021 and scraped on 15090 (its pod annotations say so).
    if (!opt.readiness) opt.readiness = host_port{"0.0.0.0", 15021};
    if (!opt.prometheus) opt.prometheus = host_port{"0.0.0.0", 15090};
    const auto built = ewgw::xds::build_istio_bootstrap(ewgw::xds::current_istio_environment());
    if (!built.errors.empty()) {
      for (const std::string& e : built.errors) std::fprintf(stderr, "error: istio mode: %s\n", e.c_str());
      return 1;
    }
    if (opt.print_bootstrap) {
      std::fwrite(built.json.data(), 1, built.json.size(), stdout);
      return 0;
    }
    for (const std::string& n : built.notices) EWGW_LOG(info, "istio", n);
    loaded = ewgw::xds::load_bootstrap_text(built.json, origin);
  } else {
    loaded = ewgw::xds::load_bootstrap_file(opt.config);
  }
  for (const std::string& n : loaded.diag.notices) EWGW_LOG(info, "config", n);
  if (!loaded.diag.ok()) {
    for (const std::string& e : loaded.diag.errors) std::fprintf(stderr, "error: %s\n", e.c_str());
    std::fprintf(stderr, "ewgw: %s: %zu error(s); configuration rejected\n", origin.c_str(), loaded.diag.errors.size());
    return 1;
  }

  ewgw::proxy::gateway_options gateway_options;
  gateway_options.concurrency = opt.concurrency;
  gateway_options.access_log_flush_interval = std::chrono::milliseconds(opt.file_flush_interval_ms);
  ewgw::proxy::gateway gw(gateway_options);
  // Building the routing snapshot checks what the decoder cannot (e.g. overlapping chains).
  if (auto errors = gw.apply(loaded.config); !errors.empty()) {
    for (const std::string& e : errors) std::fprintf(stderr, "error: %s: %s\n", origin.c_str(), e.c_str());
    std::fprintf(stderr, "ewgw: %s: configuration rejected\n", origin.c_str());
    return 1;
  }
  if (opt.mode == "validate") {
    std::printf("%s: configuration is valid (%zu listener(s), %zu cluster(s)%s)\n", origin.c_str(),
                loaded.config.listeners.size(), loaded.config.clusters.size(),
                loaded.config.ads ? (", more from the ADS server at " + loaded.config.ads->target).c_str() : "");
    return 0;
  }

  if (auto error = gw.start()) {
    std::fprintf(stderr, "ewgw: %s\n", error->c_str());
    gw.stop();
    return 1;
  }
  EWGW_LOG(info, "main", "ewgw started", {{"config", origin}, {"concurrency", ewgw::log::num(opt.concurrency)}});

  // With an ADS server, the xDS client's thread becomes the gateway's control thread from here
  // until it is stopped (proxy/xds_controller.h). An unreachable server is retried with backoff;
  // the gateway serves its static listeners meanwhile and is not ready.
  if (!opt.admin && loaded.config.admin_address) {
    opt.admin = host_port{loaded.config.admin_address->address, loaded.config.admin_address->port};
  }
  // What /config_dump shows: the bootstrap and every accepted xDS resource as received. Kept
  // only when there is an admin port to ask for it.
  std::shared_ptr<ewgw::xds::config_store> config_dump;
  if (opt.admin) {
    config_dump = std::make_shared<ewgw::xds::config_store>();
    config_dump->set_bootstrap(loaded.bootstrap_proto);
  }

  std::unique_ptr<ewgw::proxy::xds_controller> xds;
  if (loaded.config.ads) {
    const auto& ads = *loaded.config.ads;
    EWGW_LOG(info, "main", "following the control plane",
             {{"target", ads.target}, {"api", ads.api == ewgw::xds::xds_api::delta ? "delta" : "sotw"},
              {"tls", ads.tls ? "true" : "false"}, {"node", loaded.config.node.id}});
    ewgw::xds::ads_client_options ads_options;
    ads_options.config_dump = config_dump;
    xds = std::make_unique<ewgw::proxy::xds_controller>(gw, loaded.config, ads_options);
    // Ready (15021, /ready) only once the first CDS and LDS are in force, as Istio expects.
    gw.set_readiness_gate([client = &xds->client()] { return client->ready(); });
    xds->start();
  }

  // The control thread: signals and the admin, scrape and probe endpoints. Workers never wait
  // on it.
  boost::asio::io_context main_context(1);
  boost::asio::signal_set signals(main_context, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    EWGW_LOG(info, "main", "shutting down", {{"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
    main_context.stop();
  });
  // The readiness probe gets its own thread: a large /config_dump or scrape on the main thread
  // (seconds at 10,000 clusters) must not make the kubelet's probe time out. It only reads
  // atomics (gateway::ready()).
  boost::asio::io_context probe_context(1);
  std::vector<std::unique_ptr<ewgw::proxy::admin_server>> servers;
  auto serve = [&](const std::optional<host_port>& where, const char* what, auto install,
                   boost::asio::io_context& context) -> bool {
    if (!where) return true;
    auto server = std::make_unique<ewgw::proxy::admin_server>(context);
    install(*server);
    if (auto error = server->listen(where->address, where->port)) {
      std::fprintf(stderr, "ewgw: %s: %s\n", what, error->c_str());
      return false;
    }
    EWGW_LOG(info, "main", "serving", {{"endpoints", what}, {"address", where->address}, {"port", ewgw::log::num(server->port())}});
    servers.push_back(std::move(server));
    return true;
  };
  const bool served =
      serve(opt.admin, "admin", [&](ewgw::proxy::admin_server& s) {
        ewgw::proxy::admin_extras extras;
        extras.config_dump = [config_dump](const std::map<std::string, std::string>& query) { return config_dump->render(query); };
        extras.missing_cluster_note = [config_dump](std::string_view cluster) { return config_dump->missing_cluster_note(cluster); };
        ewgw::proxy::install_admin_routes(s, gw, [&] { boost::asio::post(main_context, [&] { main_context.stop(); }); },
                                          std::move(extras));
      }, main_context) &&
      serve(opt.prometheus, "prometheus", [&](ewgw::proxy::admin_server& s) { ewgw::proxy::install_prometheus_routes(s, gw); },
            main_context) &&
      serve(opt.readiness, "readiness", [&](ewgw::proxy::admin_server& s) { ewgw::proxy::install_readiness_routes(s, gw); },
            probe_context);
  if (!served) {
    gw.stop();
    return 1;
  }
  std::thread probe_thread([&probe_context] {
    auto work = boost::asio::make_work_guard(probe_context);
    probe_context.run();
  });
  main_context.run();
  probe_context.stop();
  probe_thread.join();
  for (auto& s : servers) s->stop();
  if (xds) xds->stop();
  gw.stop();
  return 0;
}
