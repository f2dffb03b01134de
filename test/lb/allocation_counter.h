// Counts heap allocations made by the calling thread: the test binaries that link
// allocation_counter.cc replace the global operator new to bump a thread-local counter, so a
// test can assert that a code path allocates nothing.
#pragma once

#include <cstdint>

namespace ewgw::lb::testing {

std::uint64_t allocations_on_this_thread();
// Blocks allocated with operator new and not yet deleted, by any thread.
std::int64_t live_allocations();
// Their usable sizes in bytes (malloc_usable_size: the request rounded up to the allocator's
// granule).
std::int64_t live_bytes();

}  // namespace ewgw::lb::testing
