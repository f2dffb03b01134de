// xds_scale_bench: what a large east-west gateway configuration costs ewgw.
//
// Builds an istiod-shaped state of N SNI-DNAT clusters (EDS, 3 endpoints each in one locality)
// and one 15443 listener with a chain per cluster, serialized as on the wire, then:
//   1. applies it whole: decode CDS, EDS and LDS (xds/ads_state, as the ADS client does),
//      assemble the full configuration and gateway::apply() it to a running gateway;
//   2. applies single-cluster EDS updates at that size (istiod's incremental EDS pushes);
//   3. re-applies the unchanged CDS response (a SotW push that changes nothing);
//   4. records the state in a config_store as the ADS client does for the admin /config_dump
//      (after the other steps, so their numbers do not include it) and renders one dump.
// Reports the time of each step and the resident memory per cluster (RSS growth after the full
// state is in force, with freed heap returned to the OS, divided by N). The serialized input is
// allocated before the baseline, so it is not counted.
//
//   xds_scale_bench [--clusters 10000] [--endpoints 3] [--updates 20] [--workers 2] [--exit-after-apply]
//
// --exit-after-apply stops right after step 1 without freeing anything, so that a heap profiler
// (heaptrack) lists what the full state keeps as "leaked", by allocation site.
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <tuple>
#include <vector>

#include "proxy/allocator_policy.h"
#include "proxy/gateway.h"
#include "stats/log.h"
#include "test/xds/istio_fixtures.h"
#include "xds/ads_state.h"
#include "xds/config_dump.h"

namespace {

namespace istio = ewgw::test::istio;
using clock_type = std::chrono::steady_clock;

double ms_since(clock_type::time_point t) {
  return std::chrono::duration<double, std::milli>(clock_type::now() - t).count();
}

long rss_kib() {
  std::ifstream in("/proc/self/statm");
  long size = 0;
  long resident = 0;
  in >> size >> resident;
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

long settled_rss_kib() {
  malloc_trim(0);
  return rss_kib();
}

// Bytes allocated from the heap and in use (glibc), for the breakdown per component.
// Blocks from the arenas plus those glibc mmaps (large vectors: 128 KiB and up).
std::size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

template <class M>
google::protobuf::Any pack(const M& m) {
  google::protobuf::Any a;
  a.PackFrom(m);
  return a;
}

// The Kubernetes service host of synthetic service i; its SNI cluster name is name_of(i).
std::string host_of(std::size_t i) {
  return "svc-" + std::to_string(i) + ".ns-" + std::to_string(i % 50) + ".svc.cluster.local";
}

std::string name_of(std::size_t i) { return istio::sni_name(host_of(i), 8080); }

envoy::config::endpoint::v3::ClusterLoadAssignment assignment_of(const std::string& name, std::size_t i,
                                                                 std::size_t endpoints, int salt) {
  istio::locality_spec l;
  for (std::size_t e = 0; e < endpoints; ++e) {
    l.endpoints.push_back({"10." + std::to_string((i >> 8) & 255) + "." + std::to_string(i & 255) + "." +
                               std::to_string(e + 1),
                           static_cast<std::uint16_t>(8080 + salt), 1, true});
  }
  return istio::assignment(name, {l});
}

bool check(const ewgw::xds::ads_state::result& r, const char* what) {
  if (r.errors.empty()) return true;
  std::fprintf(stderr, "%s rejected: %s\n", what, r.errors[0].c_str());
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  ewgw::proxy::apply_allocator_policy();  // as the gateway does: its RSS is what a deployment gets
  std::size_t clusters = 10000;
  std::size_t endpoints = 3;
  std::size_t updates = 20;
  std::size_t workers = 2;
  bool exit_after_apply = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--exit-after-apply") {
      exit_after_apply = true;
      continue;
    }
    std::size_t* target = arg == "--clusters"    ? &clusters
                          : arg == "--endpoints" ? &endpoints
                          : arg == "--updates"   ? &updates
                          : arg == "--workers"   ? &workers
                                                 : nullptr;
    if (target == nullptr || i + 1 >= argc) {
      std::fprintf(stderr,
                   "usage: xds_scale_bench [--clusters N] [--endpoints N] [--updates N] [--workers N] "
                   "[--exit-after-apply]\n");
      return 2;
    }
    *target = std::strtoul(argv[++i], nullptr, 10);
  }
  ewgw::log::set_level(ewgw::log::level::warn);

  // The wire input, before the baseline.
  ewgw::xds::ads_state::any_list cds;
  ewgw::xds::ads_state::any_list eds;
  ewgw::xds::ads_state::any_list lds;
  std::vector<istio::chain_spec> chains;
  for (std::size_t i = 0; i < clusters; ++i) {
    const std::string name = name_of(i);
    *cds.Add() = pack(istio::sni_dnat_cluster(name, host_of(i)));
    *eds.Add() = pack(assignment_of(name, i, endpoints, 0));
    chains.push_back({name, name});
  }
  *lds.Add() = pack(istio::gateway_listener(0, chains));
  chains.clear();
  chains.shrink_to_fit();
  std::size_t wire = 0;
  for (const auto& a : cds) wire += a.value().size();
  for (const auto& a : eds) wire += a.value().size();
  for (const auto& a : lds) wire += a.value().size();

  ewgw::proxy::gateway gw({workers});
  ewgw::xds::bootstrap_config boot;
  boot.ads = ewgw::xds::ads_config{};
  if (!gw.apply(boot).empty() || gw.start()) {
    std::fprintf(stderr, "cannot start the gateway\n");
    return 1;
  }
  const long rss_before = settled_rss_kib();
  const std::size_t heap_before = heap_in_use();

  // 1. The full state.
  ewgw::xds::ads_state state(boot, std::chrono::seconds(15));
  const auto now = clock_type::now();
  auto t = clock_type::now();
  if (!check(state.apply_sotw(ewgw::xds::resource_kind::cluster, cds, now), "CDS")) return 1;
  state.commit();
  const double cds_ms = ms_since(t);
  const std::size_t heap_cds = heap_in_use();
  t = clock_type::now();
  if (!check(state.apply_sotw(ewgw::xds::resource_kind::endpoint, eds, now), "EDS")) return 1;
  state.commit();
  const double eds_ms = ms_since(t);
  const std::size_t heap_eds = heap_in_use();
  t = clock_type::now();
  if (!check(state.apply_sotw(ewgw::xds::resource_kind::listener, lds, now), "LDS")) return 1;
  state.commit();
  const double lds_ms = ms_since(t);
  const long rss_state = settled_rss_kib();
  const std::size_t heap_lds = heap_in_use();
  t = clock_type::now();
  const auto& config = state.assemble();
  const double assemble_ms = ms_since(t);
  t = clock_type::now();
  if (auto errors = gw.apply(config); !errors.empty()) {
    std::fprintf(stderr, "gateway refused the configuration: %s\n", errors[0].c_str());
    return 1;
  }
  const double apply_ms = ms_since(t);
  const std::size_t applied_clusters = config.clusters.size();
  const long rss_after = settled_rss_kib();
  const std::size_t heap_gateway = heap_in_use();
  if (exit_after_apply) {
    // For heap profilers: what is still allocated at exit is what the full state keeps.
    std::printf("RSS per cluster after the full apply: %.0f bytes\n",
                static_cast<double>(rss_after - rss_before) * 1024.0 / static_cast<double>(clusters));
    std::fflush(stdout);
    std::_Exit(0);
  }

  // 2. Single-cluster EDS updates.
  std::vector<double> update_ms;
  std::vector<double> update_decode_ms;
  std::vector<double> update_assemble_ms;
  std::vector<double> update_apply_ms;
  for (std::size_t u = 0; u < updates; ++u) {
    const std::size_t i = (u * 7919) % clusters;
    ewgw::xds::ads_state::any_list one;
    *one.Add() = pack(assignment_of(name_of(i), i, endpoints, static_cast<int>(u + 1)));
    t = clock_type::now();
    auto r = state.apply_sotw(ewgw::xds::resource_kind::endpoint, one, now);
    if (!check(r, "EDS update")) return 1;
    const double decode = ms_since(t);
    double assemble = 0;
    double apply = 0;
    if (r.changed) {
      auto t2 = clock_type::now();
      const auto& next = state.assemble();
      assemble = ms_since(t2);
      t2 = clock_type::now();
      if (auto errors = gw.apply(next); !errors.empty()) {
        std::fprintf(stderr, "gateway refused the update: %s\n", errors[0].c_str());
        return 1;
      }
      apply = ms_since(t2);
    }
    state.commit();
    update_ms.push_back(ms_since(t));
    update_decode_ms.push_back(decode);
    update_assemble_ms.push_back(assemble);
    update_apply_ms.push_back(apply);
  }
  for (auto* v : {&update_ms, &update_decode_ms, &update_assemble_ms, &update_apply_ms}) std::sort(v->begin(), v->end());

  // 3. The same CDS again (a state-of-the-world push that changes nothing).
  t = clock_type::now();
  auto same = state.apply_sotw(ewgw::xds::resource_kind::cluster, cds, now);
  state.commit();
  const double same_ms = ms_since(t);

  // 4. What /config_dump keeps: the resources as received.
  ewgw::xds::config_store store;
  const std::size_t heap_before_store = heap_in_use();
  const auto received = std::chrono::system_clock::now();
  double store_ms = 0;  // the store's own work (replace_all), not the name lookups
  using ewgw::xds::resource_kind;
  using store_kind = ewgw::xds::config_store::kind;
  for (auto [kind, state_kind, list] : {std::tuple{store_kind::cluster, resource_kind::cluster, &cds},
                                        std::tuple{store_kind::endpoint, resource_kind::endpoint, &eds},
                                        std::tuple{store_kind::listener, resource_kind::listener, &lds}}) {
    // As the ADS client: the store references the state's name strings.
    std::vector<std::pair<ewgw::xds::shared_string, const std::string*>> all;
    for (const auto& a : *list) {
      std::string name = ewgw::xds::config_store::resource_name(a.value());
      auto shared = state.shared_name(state_kind, name);
      all.emplace_back(shared.empty() ? ewgw::xds::shared_string(std::move(name)) : shared, &a.value());
    }
    t = clock_type::now();
    store.replace_all(kind, all, "v1", received);
    store_ms += ms_since(t);
  }
  const std::size_t heap_store = heap_in_use();
  t = clock_type::now();
  const auto dumped = store.render({{"include_eds", ""}});
  const double dump_ms = ms_since(t);

  const double per_cluster = static_cast<double>(rss_after - rss_before) * 1024.0 / static_cast<double>(clusters);
  std::printf("clusters=%zu endpoints/cluster=%zu workers=%zu wire_bytes=%zu applied_clusters=%zu\n", clusters,
              endpoints, workers, wire, applied_clusters);
  std::printf("full state: decode CDS %.1f ms, EDS %.1f ms, LDS %.1f ms; assemble %.1f ms; gateway.apply %.1f ms; "
              "total %.1f ms\n",
              cds_ms, eds_ms, lds_ms, assemble_ms, apply_ms, cds_ms + eds_ms + lds_ms + assemble_ms + apply_ms);
  if (!update_ms.empty()) {
    std::printf("single-cluster EDS update (decode + assemble + gateway.apply), %zu runs: median %.2f ms, p90 %.2f ms, "
                "max %.2f ms\n",
                update_ms.size(), update_ms[update_ms.size() / 2], update_ms[update_ms.size() * 9 / 10],
                update_ms.back());
    std::printf("  of which (medians): decode %.2f ms, assemble %.2f ms, gateway.apply %.2f ms\n",
                update_decode_ms[update_decode_ms.size() / 2], update_assemble_ms[update_assemble_ms.size() / 2],
                update_apply_ms[update_apply_ms.size() / 2]);
  }
  std::printf("unchanged SotW CDS re-sent: %.1f ms (changed=%s)\n", same_ms, same.changed ? "yes" : "no");
  std::printf("RSS: %ld KiB before, %ld KiB after; %.0f bytes per cluster (incl. its %zu endpoints, chain and stats)\n",
              rss_before, rss_after, per_cluster, endpoints);
  std::printf("  of which: xDS state %.0f bytes per cluster, gateway snapshot and stats %.0f bytes per cluster\n",
              static_cast<double>(rss_state - rss_before) * 1024.0 / static_cast<double>(clusters),
              static_cast<double>(rss_after - rss_state) * 1024.0 / static_cast<double>(clusters));
  auto per = [&](std::size_t from, std::size_t to) {
    return (static_cast<double>(to) - static_cast<double>(from)) / static_cast<double>(clusters);
  };
  std::printf("heap in use per cluster: clusters %.0f, endpoints %.0f, listener chain %.0f, gateway runtime %.0f; total %.0f\n",
              per(heap_before, heap_cds), per(heap_cds, heap_eds), per(heap_eds, heap_lds), per(heap_lds, heap_gateway),
              per(heap_before, heap_gateway));
  std::printf("config_dump store: %.0f bytes of heap per cluster (its CDS, EDS and LDS resources as received), "
              "recorded in %.1f ms; one /config_dump?include_eds: %.0f ms, %zu bytes of JSON (status %u)\n",
              per(heap_before_store, heap_store), store_ms, dump_ms, dumped.second.size(), dumped.first);
  gw.stop();
  return 0;
}
