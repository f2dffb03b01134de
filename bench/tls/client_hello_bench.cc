// client_hello_parser cost per connection: a fresh parser per iteration, as per accepted
// connection. The hellos come from OpenSSL 3 once, outside the timed loops.
#include <benchmark/benchmark.h>

#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "test/tls/hello_builders.h"
#include "tls/client_hello.h"

namespace {

using ewgw::tls::client_hello_parser;
using ewgw::tls::hello_status;
using ewgw::tls::testing::bytes;
namespace builders = ewgw::tls::testing;

const builders::openssl_spec istio_tls13{
    .max_version = TLS1_3_VERSION,
    .sni = "outbound_.5000_._.helloworld.sample.svc.cluster.local",
    .alpn = {"istio-peer-exchange", "istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"},
};

// 517 bytes on the wire, the size browsers pad their hellos to (512-byte handshake message).
const bytes& typical_hello() {
  static const bytes hello = builders::openssl_client_hello_sized(istio_tls13, 512);
  return hello;
}

const bytes& hello_5k_message() {
  static const bytes message =
      builders::handshake_message(builders::openssl_client_hello_sized(istio_tls13, 5120));
  return message;
}

// Benchmarks that silently measure a failing parse would be worthless.
void require_complete(benchmark::State& state, std::span<const std::uint8_t> input) {
  client_hello_parser parser(input.size() + 1);
  if (parser.parse(input) != hello_status::complete) {
    state.SkipWithError("input does not parse as a complete ClientHello");
  }
}

void BM_one_record_at_once(benchmark::State& state) {
  const bytes& hello = typical_hello();
  require_complete(state, hello);
  for (auto _ : state) {
    client_hello_parser parser;
    benchmark::DoNotOptimize(parser.parse(hello));
    benchmark::DoNotOptimize(parser.hello().server_name().data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * hello.size()));
  state.counters["hello_bytes"] = static_cast<double>(hello.size());
}
BENCHMARK(BM_one_record_at_once);

// The worst arrival pattern: a call per byte. Work per call must stay proportional to the new
// bytes, so this should cost a small multiple of the one-shot parse, not hello_size times it.
void BM_one_record_byte_by_byte(benchmark::State& state) {
  const bytes& hello = typical_hello();
  require_complete(state, hello);
  const std::span<const std::uint8_t> all(hello);
  for (auto _ : state) {
    client_hello_parser parser;
    for (std::size_t k = 1; k <= all.size(); ++k) benchmark::DoNotOptimize(parser.parse(all.first(k)));
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * hello.size()));
  state.counters["hello_bytes"] = static_cast<double>(hello.size());
}
BENCHMARK(BM_one_record_byte_by_byte);

// A 5 KiB handshake message in records of state.range(0) payload bytes, fed at once.
void BM_5k_in_records(benchmark::State& state) {
  const bytes framed = builders::frame(hello_5k_message(), static_cast<std::size_t>(state.range(0)));
  require_complete(state, framed);
  for (auto _ : state) {
    client_hello_parser parser(framed.size());
    benchmark::DoNotOptimize(parser.parse(framed));
    benchmark::DoNotOptimize(parser.hello().server_name().data());
  }
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * framed.size()));
  state.counters["wire_bytes"] = static_cast<double>(framed.size());
  state.counters["records"] =
      static_cast<double>((hello_5k_message().size() + state.range(0) - 1) / state.range(0));
}
BENCHMARK(BM_5k_in_records)->Arg(16384)->Arg(1000)->Arg(100)->Arg(16);

}  // namespace

BENCHMARK_MAIN();
