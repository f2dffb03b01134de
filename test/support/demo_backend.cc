// ewgw-demo-backend: a TLS "helloworld" service for the demo and manual testing behind the
// gateway. Answers every request with "Hello version: <version>, instance: <name>" over TLS,
// like Istio's helloworld sample, so curl through the gateway shows which backend served it.
//
//   ewgw-demo-backend --port N --cert-dir DIR --name helloworld-v1 --version v1 [--require-client-cert]
//
// DIR holds server.crt (leaf + intermediate), server.key and root.crt (trust anchor for client
// certificates), as written by ewgw-demo-certs. Runs until SIGTERM or SIGINT.
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include "test/support/tls_server.h"

namespace {

void usage() {
  std::fprintf(stderr,
               "usage: ewgw-demo-backend --port N --cert-dir DIR --name NAME --version VERSION "
               "[--require-client-cert]\n");
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) out += (out.empty() ? "" : ",") + item;
  return out;
}

int run(int argc, char** argv) {
  long port = -1;
  std::string cert_dir;
  std::string name;
  std::string version;
  bool require_client_cert = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    const auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::invalid_argument(std::string(arg) + " needs a value");
      return argv[++i];
    };
    if (arg == "--port") {
      const std::string text = value();
      char* end = nullptr;
      port = std::strtol(text.c_str(), &end, 10);
      if (end == text.c_str() || *end != '\0' || port < 0 || port > 65535) {
        throw std::invalid_argument("--port must be 0..65535, got '" + text + "'");
      }
    } else if (arg == "--cert-dir") {
      cert_dir = value();
    } else if (arg == "--name") {
      name = value();
    } else if (arg == "--version") {
      version = value();
    } else if (arg == "--require-client-cert") {
      require_client_cert = true;
    } else if (arg == "--help" || arg == "-h") {
      usage();
      return 0;
    } else {
      throw std::invalid_argument("unknown argument '" + std::string(arg) + "'");
    }
  }
  if (port < 0 || cert_dir.empty() || name.empty() || version.empty()) {
    usage();
    return 2;
  }

  // Block the stop signals before any thread starts so every thread inherits the mask and
  // sigwait below is the only place they are delivered.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  ewgw::test::tls_server_options options;
  options.cert_chain = read_file(std::filesystem::path(cert_dir) / "server.crt");
  options.key = read_file(std::filesystem::path(cert_dir) / "server.key");
  options.client_root = read_file(std::filesystem::path(cert_dir) / "root.crt");
  options.require_client_cert = require_client_cert;
  options.behaviour = ewgw::test::server_behaviour::greet;
  options.greet_body = "Hello version: " + version + ", instance: " + name + "\n";
  options.port = static_cast<std::uint16_t>(port);
  options.on_connection_end = [&name](const ewgw::test::tls_server_connection& c) {
    // One line per connection, so the demo shows what the gateway passed through.
    std::string line = name + ": connection " + std::to_string(c.index) + " sni=" + c.sni + " alpn=" + c.alpn;
    if (c.handshake_ok) {
      line += " version=" + c.tls_version;
      if (!c.client_subject.empty()) line += " client=" + c.client_subject + " sans=" + join(c.client_sans);
    } else {
      line += " handshake failed: " + c.handshake_error;
    }
    std::fprintf(stderr, "%s\n", line.c_str());
  };

  ewgw::test::tls_test_server server(std::move(options));
  std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(server.port()));
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  std::fprintf(stderr, "%s: %s, stopping\n", name.c_str(), strsignal(signal_number));
  server.stop();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "ewgw-demo-backend: %s\n", e.what());
    usage();
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ewgw-demo-backend: %s\n", e.what());
    return 1;
  }
}
