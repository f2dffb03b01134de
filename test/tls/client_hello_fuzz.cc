// libFuzzer entry for client_hello_parser: every input is parsed one-shot, byte by byte and in two
// parts at every split, under the default limit and under a limit taken from the input, and the
// invariants in hello_invariants.h must hold. Built as its own target with clang when
// EWGW_BUILD_FUZZ=ON; client_hello_test also links this file and replays seed hellos through it.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <span>

#include "test/tls/hello_invariants.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::span<const std::uint8_t> input(data, size);
  const auto check = [&](std::size_t max_bytes) {
    const std::string violation = ewgw::tls::testing::check_invariants(input, max_bytes);
    if (!violation.empty()) {
      std::fprintf(stderr, "client_hello invariant violated (max_bytes %zu): %s\n", max_bytes,
                   violation.c_str());
      std::abort();
    }
  };
  check(ewgw::tls::default_max_client_hello_bytes);
  // A second, input-dependent limit reaches the too_large paths without 16 KiB inputs.
  if (size > 0) check(1 + (size * data[0]) / 256);
  return 0;
}
