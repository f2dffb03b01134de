#include "proxy/admin_views.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

#include "accesslog/format.h"

namespace ewgw::proxy {

namespace {

std::vector<const cluster_runtime*> sorted_clusters(const routing_snapshot& snapshot) {
  std::vector<const cluster_runtime*> out;
  out.reserve(snapshot.clusters.size());
  for (const auto& c : snapshot.clusters) out.push_back(c.get());
  std::sort(out.begin(), out.end(), [](const auto* a, const auto* b) { return a->name < b->name; });
  return out;
}

struct locality_parts {
  std::string region, zone, sub_zone;
};

// lb::locality_config::name is "region/zone/sub_zone" (routing_snapshot.cc).
locality_parts split_locality(const std::string& name) {
  locality_parts out;
  const std::size_t a = name.find('/');
  const std::size_t b = a == std::string::npos ? std::string::npos : name.find('/', a + 1);
  if (a == std::string::npos) return {name, {}, {}};
  out.region = name.substr(0, a);
  out.zone = b == std::string::npos ? name.substr(a + 1) : name.substr(a + 1, b - a - 1);
  if (b != std::string::npos) out.sub_zone = name.substr(b + 1);
  return out;
}

// Envoy's host health flags as /clusters prints them: "healthy", or each failing flag
// prefixed with '/' (HostUtility::healthFlagsToString).
std::string health_flags(const lb::host_state& h) {
  std::string flags;
  if (h.ejected) flags += "/failed_outlier_check";
  switch (h.health) {
    case lb::host_health::healthy: break;
    case lb::host_health::degraded: flags += "/degraded_eds_health"; break;
    case lb::host_health::unhealthy: flags += "/failed_eds_health"; break;
    case lb::host_health::excluded: flags += "/excluded_via_immediate_hc_fail"; break;
  }
  return flags.empty() ? "healthy" : flags;
}

std::string eds_health_name(lb::host_health h) {
  switch (h) {
    case lb::host_health::healthy: return "HEALTHY";
    case lb::host_health::degraded: return "DEGRADED";
    case lb::host_health::unhealthy: return "UNHEALTHY";
    case lb::host_health::excluded: return "EXCLUDED";
  }
  return "UNKNOWN";
}

std::string format_double(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}

std::string percent(std::uint32_t v) { return std::to_string(v) + "%"; }

std::string seconds(std::chrono::nanoseconds d) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", std::chrono::duration<double>(d).count());
  return buf;
}

std::string policy_name(lb::lb_policy p) {
  switch (p) {
    case lb::lb_policy::round_robin: return "ROUND_ROBIN";
    case lb::lb_policy::least_request: return "LEAST_REQUEST";
    case lb::lb_policy::random: return "RANDOM";
  }
  return "?";
}

std::string host_word(std::uint32_t n) { return std::to_string(n) + (n == 1 ? " host" : " hosts"); }

}  // namespace

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  accesslog::append_json_escaped(out, s);
  return out;
}

std::string render_clusters_text(const routing_snapshot& snapshot) {
  std::string out;
  for (const cluster_runtime* c : sorted_clusters(snapshot)) {
    const xds::shared_string& n = c->name;
    out += n + "::observability_name::" + n + "\n";
    // Only the threshold ewgw enforces (a TCP proxy has no pending requests, requests or
    // retries to limit).
    out += n + "::default_priority::max_connections::" + std::to_string(c->max_connections) + "\n";
    out += n + "::added_via_api::" + (c->added_via_api ? "true" : "false") + "\n";
    if (!c->eds_service_name().empty()) out += n + "::eds_service_name::" + std::string(c->eds_service_name()) + "\n";
    const lb::balancer_state st = c->balancer->explain();
    for (const lb::host_state& h : st.hosts) {
      const std::string p = n + "::" + h.address.to_string() + "::";
      const locality_parts where = split_locality(st.priorities[h.priority].localities[h.locality].name);
      out += p + "cx_active::" + std::to_string(h.active_connections) + "\n";
      out += p + "cx_connect_fail::" + std::to_string(h.connect_failures) + "\n";
      out += p + "cx_total::" + std::to_string(h.connections_total) + "\n";
      out += p + "hostname::\n";
      out += p + "health_flags::" + health_flags(h) + "\n";
      out += p + "weight::" + std::to_string(h.weight) + "\n";
      out += p + "region::" + where.region + "\n";
      out += p + "zone::" + where.zone + "\n";
      out += p + "sub_zone::" + where.sub_zone + "\n";
      out += p + "canary::false\n";
      out += p + "priority::" + std::to_string(h.priority) + "\n";
      out += p + "success_rate::" + format_double(h.success_rate) + "\n";
      out += p + "local_origin_success_rate::" + format_double(h.local_origin_success_rate) + "\n";
    }
  }
  return out;
}

std::string render_clusters_json(const routing_snapshot& snapshot) {
  // envoy.admin.v3.Clusters in the proto3 JSON mapping (uint64 as strings, enums by name).
  std::string out = "{\"cluster_statuses\":[";
  bool first_cluster = true;
  for (const cluster_runtime* c : sorted_clusters(snapshot)) {
    if (!first_cluster) out += ",";
    first_cluster = false;
    out += "{\"name\":\"" + json_escape(c->name) + "\",\"observability_name\":\"" + json_escape(c->name) + "\"";
    out += std::string(",\"added_via_api\":") + (c->added_via_api ? "true" : "false");
    if (!c->eds_service_name().empty()) out += ",\"eds_service_name\":\"" + json_escape(c->eds_service_name()) + "\"";
    out += ",\"circuit_breakers\":{\"thresholds\":[{\"priority\":\"DEFAULT\",\"max_connections\":" +
           std::to_string(c->max_connections) + "}]}";
    out += ",\"host_statuses\":[";
    const lb::balancer_state st = c->balancer->explain();
    bool first_host = true;
    for (const lb::host_state& h : st.hosts) {
      if (!first_host) out += ",";
      first_host = false;
      std::string ip = h.address.to_string();
      ip = ip.substr(0, ip.rfind(':'));
      if (h.address.ipv6) ip = ip.substr(1, ip.size() - 2);
      const locality_parts where = split_locality(st.priorities[h.priority].localities[h.locality].name);
      out += "{\"address\":{\"socket_address\":{\"address\":\"" + ip + "\",\"port_value\":" +
             std::to_string(h.address.port) + "}}";
      out += ",\"stats\":[{\"name\":\"cx_connect_fail\",\"value\":\"" + std::to_string(h.connect_failures) +
             "\"},{\"name\":\"cx_total\",\"value\":\"" + std::to_string(h.connections_total) +
             "\"},{\"type\":\"GAUGE\",\"name\":\"cx_active\",\"value\":\"" + std::to_string(h.active_connections) + "\"}]";
      out += ",\"health_status\":{";
      out += "\"eds_health_status\":\"" + eds_health_name(h.health) + "\"";
      if (h.ejected) out += ",\"failed_outlier_check\":true";
      out += "}";
      if (h.success_rate >= 0) out += ",\"success_rate\":{\"value\":" + format_double(h.success_rate) + "}";
      if (h.local_origin_success_rate >= 0) {
        out += ",\"local_origin_success_rate\":{\"value\":" + format_double(h.local_origin_success_rate) + "}";
      }
      out += ",\"weight\":" + std::to_string(h.weight);
      out += ",\"locality\":{\"region\":\"" + json_escape(where.region) + "\",\"zone\":\"" + json_escape(where.zone) +
             "\",\"sub_zone\":\"" + json_escape(where.sub_zone) + "\"}";
      out += ",\"priority\":" + std::to_string(h.priority) + "}";
    }
    out += "]}";
  }
  out += "]}\n";
  return out;
}

// ---- explain ----------------------------------------------------------------------------------

namespace {

// Which hosts a pick could return from priority `p` under the current view, and why not.
struct priority_reading {
  std::uint32_t hosts = 0, healthy = 0, degraded = 0, ejected = 0, eds_unhealthy = 0, eds_degraded = 0;
};

priority_reading read_priority(const lb::balancer_state& st, std::uint32_t p) {
  priority_reading r;
  for (const lb::host_state& h : st.hosts) {
    if (h.priority != p) continue;
    ++r.hosts;
    if (h.ejected) ++r.ejected;
    if (h.health == lb::host_health::unhealthy || h.health == lb::host_health::excluded) ++r.eds_unhealthy;
    if (h.health == lb::host_health::degraded) ++r.eds_degraded;
  }
  r.healthy = st.priorities[p].counts.healthy;
  r.degraded = st.priorities[p].counts.degraded;
  return r;
}

// "both hosts are ejected", "2 of 3 hosts are ejected and 1 is UNHEALTHY per EDS".
std::string why_unavailable(const priority_reading& r) {
  if (r.hosts == 0) return "it has no hosts";
  std::vector<std::string> parts;
  if (r.ejected > 0) {
    parts.push_back(r.ejected == r.hosts ? (r.hosts == 2 ? std::string("both hosts are ejected")
                                                        : (r.hosts == 1 ? std::string("its host is ejected")
                                                                        : "all " + std::to_string(r.hosts) + " hosts are ejected"))
                                         : std::to_string(r.ejected) + " of " + host_word(r.hosts) + " ejected");
  }
  if (r.eds_unhealthy > 0) {
    parts.push_back(std::to_string(r.eds_unhealthy) + (r.eds_unhealthy == 1 ? " is" : " are") + " not healthy per EDS");
  }
  if (r.eds_degraded > 0) parts.push_back(std::to_string(r.eds_degraded) + " degraded per EDS");
  std::string s;
  for (std::size_t i = 0; i < parts.size(); ++i) s += (i == 0 ? "" : " and ") + parts[i];
  if (s.empty()) s = std::to_string(r.healthy) + " of " + host_word(r.hosts) + " healthy";
  return s;
}

void explain_cluster(const cluster_runtime& c, const explain_context& ctx, std::string& out, std::string& conclusion) {
  const lb::balancer_state st = c.balancer->explain();
  const std::uint32_t active = c.shared ? c.shared->active_connections.load() : 0;
  out += "cluster '" + c.name + "'";
  out += c.added_via_api ? " (from CDS" : " (static";
  if (!c.eds_service_name().empty()) out += ", EDS service '" + std::string(c.eds_service_name()) + "'";
  out += "): " + policy_name(st.policy) + ", healthy_panic_threshold " + percent(st.panic_threshold) +
         (st.panic_threshold == 0 ? " (panic disabled)" : "") + ", overprovisioning factor " +
         format_double(st.overprovisioning_factor / 100.0) + (st.locality_weighted ? ", locality weighted" : "") +
         ", outlier detection " + (st.outlier_detection ? "every " + seconds(st.outlier_interval) : std::string("off")) +
         "\n";
  out += "  connections: " + std::to_string(active) + " active of max_connections " + std::to_string(c.max_connections) +
         "\n";
  if (!c.unsupported().empty()) {
    out += "  unusable: " + std::string(c.unsupported()) + "\n";
    conclusion = "cluster '" + c.name + "' is unusable because it uses settings ewgw does not implement (" +
                 std::string(c.unsupported()) + "); the connection is closed (upstream_cx_unsupported_config)";
    return;
  }
  for (std::uint32_t p = 0; p < st.priorities.size(); ++p) {
    const lb::priority_state& ps = st.priorities[p];
    out += "  priority " + std::to_string(p) + ": " + host_word(ps.counts.hosts) + ", " + std::to_string(ps.counts.healthy) +
           " healthy, " + std::to_string(ps.counts.degraded) + " degraded; availability " + percent(ps.health) +
           " healthy, " + percent(ps.degraded) + " degraded; load " + percent(ps.healthy_load) + " healthy + " +
           percent(ps.degraded_load) + " degraded" + (ps.panic ? "; PANIC (picks any host of this priority)" : "") + "\n";
    for (std::uint32_t l = 0; l < ps.localities.size(); ++l) {
      const lb::locality_state& ls = ps.localities[l];
      out += "    locality " + (ls.name == "//" ? std::string("(none)") : ls.name) + ": weight " + std::to_string(ls.weight);
      if (st.locality_weighted) {
        out += ", effective weight " + format_double(ls.effective_weight) + " (degraded " +
               format_double(ls.effective_degraded_weight) + ")";
      } else {
        out += " (unused: no locality_weighted_lb_config)";
      }
      out += ", " + std::to_string(ls.counts.healthy) + "/" + std::to_string(ls.counts.hosts) + " healthy\n";
      for (const lb::host_state& h : st.hosts) {
        if (h.priority != p || h.locality != l) continue;
        out += "      " + h.address.to_string() + "  EDS " + eds_health_name(h.health) + ", weight " +
               std::to_string(h.weight) + ", ";
        if (h.ejected) {
          out += "EJECTED (failed_outlier_check, ejection " + std::to_string(h.num_ejections) + ")";
          if (h.ejection_ends) {
            const auto left = *h.ejection_ends - ctx.now;
            out += left.count() > 0 ? ", returns in " + seconds(left) + " (at the next outlier check after that)"
                                    : ", ejection time over: returns at the next outlier check";
          }
        } else {
          out += "not ejected";
        }
        out += ", " + std::to_string(h.active_connections) + " active, connect failures " +
               std::to_string(h.connect_failures) + "\n";
      }
    }
  }

  // The conclusion: follow pick()'s steps on the current view.
  if (active >= c.max_connections) {
    conclusion = "the next connection overflows: cluster '" + c.name + "' has " + std::to_string(active) +
                 " connections open, its circuit breaker allows " + std::to_string(c.max_connections) +
                 " (upstream_cx_overflow)";
    return;
  }
  if (st.hosts.empty()) {
    conclusion = "no healthy upstream: cluster '" + c.name + "' has no endpoints" +
                 (c.eds_service_name().empty() ? std::string() : " (EDS sent none for '" + std::string(c.eds_service_name()) + "')") +
                 " (upstream_cx_none_healthy)";
    return;
  }
  std::vector<std::string> targets;
  bool pickable = false;
  for (std::uint32_t p = 0; p < st.priorities.size(); ++p) {
    const lb::priority_state& ps = st.priorities[p];
    const std::uint32_t load = ps.healthy_load + ps.degraded_load;
    if (load == 0) continue;
    const priority_reading r = read_priority(st, p);
    std::string t = "priority " + std::to_string(p) + " takes " + percent(load);
    if (ps.panic) {
      t += " in panic mode (healthy availability " + percent(ps.health + ps.degraded) + " is below the panic threshold " +
           percent(st.panic_threshold) + " because " + why_unavailable(r) + "), so it picks among all its " +
           host_word(r.hosts) + " whatever their health";
      pickable = pickable || r.hosts > 0;
    } else {
      const std::uint32_t pool = ps.healthy_load > 0 ? r.healthy : r.degraded;
      if (pool == 0) {
        t += " but has no healthy host to give (" + why_unavailable(r) + ")";
      } else {
        pickable = true;
        t += " (" + std::to_string(r.healthy) + " healthy" +
             (ps.degraded_load > 0 ? ", " + std::to_string(r.degraded) + " degraded" : std::string()) + " of " +
             host_word(r.hosts) + ")";
        if (st.locality_weighted) {
          // Healthy and degraded picks each choose a locality by EDF over effective weights.
          const auto split = [&](bool degraded) {
            double total = 0;
            for (const auto& ls : ps.localities) total += degraded ? ls.effective_degraded_weight : ls.effective_weight;
            std::string parts;
            for (const auto& ls : ps.localities) {
              const double w = degraded ? ls.effective_degraded_weight : ls.effective_weight;
              if (w <= 0 || total <= 0) continue;
              char buf[16];
              std::snprintf(buf, sizeof buf, "%.0f%%", 100.0 * w / total);
              parts += (parts.empty() ? "" : ", ") + ls.name + " " + buf;
            }
            return parts;
          };
          if (ps.healthy_load > 0) {
            const std::string healthy = split(false);
            if (!healthy.empty()) t += "; its healthy picks (" + percent(ps.healthy_load) + ") by effective locality weight: " + healthy;
          }
          if (ps.degraded_load > 0) {
            const std::string degraded = split(true);
            if (!degraded.empty()) t += "; its degraded picks (" + percent(ps.degraded_load) + "): " + degraded;
          }
        }
      }
    }
    targets.push_back(std::move(t));
  }
  // Why higher priorities get nothing.
  std::string skipped;
  for (std::uint32_t p = 0; p < st.priorities.size(); ++p) {
    const lb::priority_state& ps = st.priorities[p];
    if (ps.healthy_load + ps.degraded_load > 0) break;
    skipped += (skipped.empty() ? "" : "; ") + std::string("priority ") + std::to_string(p) + " has 0% load because " +
               why_unavailable(read_priority(st, p));
  }
  std::string where;
  for (const auto& t : targets) where += (where.empty() ? "" : "; ") + t;
  if (!pickable) {
    std::uint32_t ejected = 0, unhealthy = 0;
    for (const auto& h : st.hosts) {
      ejected += h.ejected ? 1 : 0;
      unhealthy += !h.ejected && h.health != lb::host_health::healthy && h.health != lb::host_health::degraded ? 1 : 0;
    }
    conclusion = "no healthy upstream: in cluster '" + c.name + "' " + std::to_string(ejected) + " of " +
                 host_word(static_cast<std::uint32_t>(st.hosts.size())) + " are ejected and " + std::to_string(unhealthy) +
                 " unhealthy per EDS, and panic mode is " +
                 (st.panic_threshold == 0 ? std::string("disabled (healthy_panic_threshold 0)")
                                          : "not in effect") +
                 ", so there is no host to pick (upstream_cx_none_healthy)";
    return;
  }
  conclusion = "the next connection goes to cluster '" + c.name + "': " + (skipped.empty() ? "" : skipped + "; ") + where;
  if (st.total_panic) conclusion += " (every priority is in panic: it may well reach an unhealthy or ejected host)";
}

}  // namespace

explain_result explain_sni(const explain_request& request, const explain_context& ctx) {
  explain_result result;
  std::string& out = result.text;
  const routing_snapshot& snapshot = *ctx.snapshot;
  std::vector<std::string_view> alpns(request.alpns.begin(), request.alpns.end());
  std::string offered;
  for (const auto& a : request.alpns) offered += (offered.empty() ? "" : ", ") + a;
  out += "SNI " + request.sni + ", transport tls, ALPN " + (offered.empty() ? std::string("(none)") : offered) +
         " (routing snapshot version " + std::to_string(snapshot.version) + ")\n";

  std::vector<const listener_runtime*> listeners;
  if (!request.listener.empty()) {
    const listener_runtime* l = snapshot.find_listener(request.listener);
    if (l == nullptr) {
      result.status = 404;
      std::string known;
      for (const auto& x : snapshot.listeners) known += (known.empty() ? "" : ", ") + ("'" + x->name + "'");
      out = "unknown listener '" + request.listener + "'; listeners in force: " + (known.empty() ? "(none)" : known) + "\n";
      return result;
    }
    listeners.push_back(l);
  } else {
    for (const auto& l : snapshot.listeners) listeners.push_back(l.get());
  }
  if (listeners.empty()) {
    out += "conclusion: no listener is configured; nothing accepts the connection\n";
    return result;
  }

  const listener_runtime* chosen = nullptr;
  const filter_chain_runtime* chain = nullptr;
  std::string no_match_reasons;
  for (const listener_runtime* l : listeners) {
    std::uint16_t port = request.destination_port.value_or(0);
    if (port == 0 && ctx.bound_port) port = ctx.bound_port(l->name);
    if (port == 0) port = l->address.port;
    const connection_facts facts{port, request.sni, "tls", std::span<const std::string_view>(alpns.data(), alpns.size())};
    out += "listener '" + l->name + "' (" + l->address.address + ":" + std::to_string(port) + "): ";
    const int index = l->matcher->match(facts);
    const filter_chain_runtime* matched = nullptr;
    if (index != filter_chain_matcher::no_match) {
      matched = &l->chains[static_cast<std::size_t>(index)];
      out += "filter chain " + (!matched->settings->name ? "filter_chains[" + std::to_string(index) + "]" : "'" + *matched->settings->name + "'") +
             " matches\n";
    } else {
      const std::string why = l->matcher->why_no_match(facts);
      if (l->default_chain) {
        matched = &*l->default_chain;
        out += "no filter chain matches (" + why + "); the default filter chain applies\n";
      } else {
        out += "no filter chain matches: " + why + "\n";
        no_match_reasons += (no_match_reasons.empty() ? "" : "; ") + ("listener '" + l->name + "': " + why);
      }
    }
    if (matched != nullptr && chosen == nullptr) {
      chosen = l;
      chain = matched;
    }
  }
  if (chain == nullptr) {
    out += "conclusion: no filter chain matches, so the connection is closed (no_filter_chain_match): " + no_match_reasons +
           "\n";
    return result;
  }
  if (listeners.size() > 1) out += "explained below: listener '" + chosen->name + "'\n";

  // tcp_proxy's cluster choice (tcp_session.cc route()): weighted clusters, then sni_cluster,
  // then the chain's cluster.
  std::vector<std::pair<std::string, const cluster_runtime*>> clusters;  // name, runtime (null: missing)
  const chain_settings& settings = *chain->settings;
  if (!settings.weighted.empty()) {
    out += "tcp_proxy: weighted_clusters";
    for (std::size_t i = 0; i < settings.weighted.size(); ++i) {
      const weighted_target& w = settings.weighted[i];
      out += (i == 0 ? " " : ", ") + w.name + " (weight " + std::to_string(w.weight) + " of " +
             std::to_string(settings.total_weight) + ")";
      clusters.emplace_back(w.name, w.cluster.get());
    }
    out += "\n";
  } else if (settings.cluster_from_sni && !request.sni.empty()) {
    out += "tcp_proxy behind sni_cluster: the SNI names the cluster\n";
    clusters.emplace_back(request.sni, snapshot.clusters.at(request.sni).get());
  } else {
    const std::string name(chain->cluster_name());
    out += "tcp_proxy: cluster '" + name + "'\n";
    clusters.emplace_back(name, chain->cluster.get());
  }

  std::string conclusion;
  for (const auto& [name, c] : clusters) {
    std::string this_conclusion;
    if (c == nullptr) {
      std::string note = ctx.missing_cluster_note ? ctx.missing_cluster_note(name) : std::string();
      if (note.empty()) note = "it is not in the configuration in force (never received, removed, or still warming)";
      out += "cluster '" + name + "': unknown\n";
      this_conclusion = "no route: cluster '" + name + "' is unknown because " + note +
                        "; the connection is closed (downstream_cx_no_route)";
    } else {
      explain_cluster(*c, ctx, out, this_conclusion);
    }
    conclusion += (conclusion.empty() ? "" : "\n            ") + this_conclusion;
  }
  out += "conclusion: " + conclusion + "\n";
  return result;
}

}  // namespace ewgw::proxy
