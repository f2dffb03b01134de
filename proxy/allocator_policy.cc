#include "proxy/allocator_policy.h"

#include <cstdlib>
#include <string_view>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace ewgw::proxy {

void apply_allocator_policy() {
#if defined(__GLIBC__)
  const char* tunables = std::getenv("GLIBC_TUNABLES");
  if (tunables != nullptr && std::string_view(tunables).find("glibc.malloc.") != std::string_view::npos) return;
  constexpr int threshold = 128 * 1024;
  ::mallopt(M_MXFAST, 0);
  ::mallopt(M_TRIM_THRESHOLD, threshold);
  ::mallopt(M_MMAP_THRESHOLD, threshold);
#endif
}

}  // namespace ewgw::proxy
