// How the process's allocator is set up for a gateway that holds a large, long-lived
// configuration next to short-lived xDS traffic. Called once from main() before any thread
// starts (and by the scale benchmark, so that it measures what a deployment gets).
#pragma once

namespace ewgw::proxy {

// glibc malloc, unless the operator tunes it (GLIBC_TUNABLES naming a glibc.malloc.* setting,
// which is then left as given):
//   - no fastbins (M_MXFAST 0). istiod's full state is a few MB of small protobuf objects that
//     gRPC's reader thread allocates in its own arena and the xDS thread frees after decoding.
//     Freed into fastbins they are not coalesced; once malloc_trim consolidates them they form
//     the arena's top chunk, which glibc never returns for a thread arena (malloc_trim only
//     returns a thread arena's free bins; free() returns its top only when a large free merges
//     into it). That left 9-18 MB resident per burst at 10,000 services. Without fastbins each
//     free coalesces at once and the top is returned as it forms. Small allocations still go
//     through the per-thread tcache first, so the data path's allocation cost is unchanged
//     (bench/passthrough A/B in the README).
//   - fixed thresholds (M_TRIM_THRESHOLD and M_MMAP_THRESHOLD 128 KiB, glibc's defaults). Left
//     dynamic, glibc raises both after the first large block is freed (up to 32 and 64 MB), so
//     after one full-state response a heap keeps up to twice that block free before it is
//     trimmed.
void apply_allocator_policy();

}  // namespace ewgw::proxy
