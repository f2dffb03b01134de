#include "xds/istio_bootstrap.h"

#include <arpa/inet.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/config/grpc_credential/v3/file_based_metadata.pb.h"

extern char** environ;

namespace ewgw::xds {

namespace {

namespace pb = google::protobuf;
namespace core_v3 = envoy::config::core::v3;

constexpr std::string_view meta_prefix = "ISTIO_META_";
constexpr std::string_view meta_json_prefix = "ISTIO_METAJSON_";
constexpr const char* default_discovery_address = "istiod.istio-system.svc:15012";
constexpr const char* default_root_cert = "/var/run/secrets/istio/root-cert.pem";
constexpr const char* default_token = "/var/run/secrets/tokens/istio-token";
constexpr const char* default_cluster_id = "Kubernetes";

std::string get(const istio_environment& e, const std::string& name, const std::string& fallback = "") {
  auto it = e.env.find(name);
  return it == e.env.end() || it->second.empty() ? fallback : it->second;
}

bool read_text(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream s;
  s << in.rdbuf();
  out = s.str();
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return true;
}

// The downward API labels file: one `key="value"` per line, the value Go-quoted.
std::map<std::string, std::string> parse_labels_file(const std::string& text) {
  std::map<std::string, std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq == std::string::npos) continue;
    std::string key = line.substr(0, eq);
    std::string raw = line.substr(eq + 1);
    std::string value;
    if (raw.size() >= 2 && raw.front() == '"' && raw.back() == '"') {
      for (std::size_t i = 1; i + 1 < raw.size(); ++i) {
        if (raw[i] == '\\' && i + 2 < raw.size()) ++i;
        value.push_back(raw[i]);
      }
    } else {
      value = raw;
    }
    out[key] = value;
  }
  return out;
}

// "host:port" -> host, port ("[v6]:port" too).
bool split_host_port(const std::string& address, std::string& host, int& port) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos || colon + 1 == address.size()) return false;
  host = address.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  try {
    port = std::stoi(address.substr(colon + 1));
  } catch (...) {
    return false;
  }
  return port > 0 && port < 65536;
}

bool is_ip(const std::string& s) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

void set_string(pb::Struct& s, const std::string& key, const std::string& value) {
  (*s.mutable_fields())[key].set_string_value(value);
}

}  // namespace

istio_bootstrap_result build_istio_bootstrap(const istio_environment& e) {
  istio_bootstrap_result result;
  auto notice = [&](std::string n) { result.notices.push_back(std::move(n)); };

  // PROXY_CONFIG: the mesh's ProxyConfig as JSON (the injector sets it on every proxy).
  pb::Struct proxy_config;
  if (const std::string pc = get(e, "PROXY_CONFIG"); !pc.empty()) {
    if (!pb::util::JsonStringToMessage(pc, &proxy_config).ok()) {
      result.errors.push_back("PROXY_CONFIG: not a JSON object");
    }
  }
  auto proxy_config_string = [&](const std::string& key) -> std::string {
    auto it = proxy_config.fields().find(key);
    return it != proxy_config.fields().end() && it->second.has_string_value() ? it->second.string_value() : "";
  };

  // Node metadata: ProxyConfig.proxyMetadata ISTIO_META_* first, then the environment (which
  // wins), as pilot-agent does. Values are strings; Istio's list-valued keys
  // (REQUESTED_NETWORK_VIEW, INSTANCE_IPS) are comma-separated strings, which is how Istio's
  // StringList marshals them.
  pb::Struct metadata;
  if (auto it = proxy_config.fields().find("proxyMetadata");
      it != proxy_config.fields().end() && it->second.has_struct_value()) {
    for (const auto& [k, v] : it->second.struct_value().fields()) {
      if (k.starts_with(meta_prefix) && v.has_string_value()) {
        set_string(metadata, k.substr(meta_prefix.size()), v.string_value());
      }
    }
  }
  std::map<std::string, std::string> labels;
  for (const auto& [k, v] : e.env) {
    if (k.starts_with(meta_json_prefix)) {
      pb::Struct parsed;
      if (!pb::util::JsonStringToMessage(v, &parsed).ok()) {
        result.errors.push_back(k + ": not a JSON object");
        continue;
      }
      if (k == "ISTIO_METAJSON_LABELS") {
        for (const auto& [lk, lv] : parsed.fields()) {
          if (lv.has_string_value()) labels[lk] = lv.string_value();
        }
      } else {
        // pilot-agent merges other ISTIO_METAJSON_* objects into the metadata (the name is ignored).
        for (const auto& [mk, mv] : parsed.fields()) (*metadata.mutable_fields())[mk] = mv;
      }
    } else if (k.starts_with(meta_prefix)) {
      set_string(metadata, k.substr(meta_prefix.size()), v);
    }
  }
  if (std::string text; read_text(e.labels_file, text)) {
    for (const auto& [k, v] : parse_labels_file(text)) {
      if (k != "pod-template-hash") labels[k] = v;  // as pilot-agent
    }
  }

  std::string pod_name = get(e, "POD_NAME");
  if (pod_name.empty()) {
    pod_name = e.hostname;
    notice("POD_NAME unset; using the host name '" + pod_name + "'");
  }
  std::string pod_namespace = get(e, "POD_NAMESPACE");
  if (pod_namespace.empty()) {
    if (!read_text(e.namespace_file, pod_namespace) || pod_namespace.empty()) pod_namespace = "istio-system";
    notice("POD_NAMESPACE unset; using '" + pod_namespace + "'");
  }
  std::string instance_ip = get(e, "INSTANCE_IP");
  if (instance_ip.empty()) {
    instance_ip = e.interface_ips.empty() ? "127.0.0.1" : e.interface_ips.front();
    notice("INSTANCE_IP unset; using " + instance_ip);
  }
  const std::string cluster_id = get(e, "ISTIO_META_CLUSTER_ID", default_cluster_id);

  set_string(metadata, "NAME", pod_name);
  set_string(metadata, "NAMESPACE", pod_namespace);
  set_string(metadata, "CLUSTER_ID", cluster_id);
  if (!metadata.fields().contains("INSTANCE_IPS")) set_string(metadata, "INSTANCE_IPS", instance_ip);
  if (const std::string sa = get(e, "SERVICE_ACCOUNT"); !sa.empty()) set_string(metadata, "SERVICE_ACCOUNT", sa);
  if (!labels.empty()) {
    pb::Struct l;
    for (const auto& [k, v] : labels) set_string(l, k, v);
    *(*metadata.mutable_fields())["LABELS"].mutable_struct_value() = l;
  }
  if (const std::string pc = get(e, "PROXY_CONFIG"); !pc.empty() && !proxy_config.fields().empty()) {
    *(*metadata.mutable_fields())["PROXY_CONFIG"].mutable_struct_value() = proxy_config;
  }

  envoy::config::bootstrap::v3::Bootstrap b;
  auto* node = b.mutable_node();
  // Istio's proxy id: type~ip~pod.namespace~namespace.svc.<domain>; "router" for gateways.
  node->set_id("router~" + instance_ip + "~" + pod_name + "." + pod_namespace + "~" + pod_namespace +
               ".svc.cluster.local");
  // Istio's service cluster: "<app label>.<ns>", else "<workload>.<ns>", else "istio-proxy.<ns>".
  std::string service = "istio-proxy";
  if (auto it = labels.find("app"); it != labels.end()) {
    service = it->second;
  } else if (const std::string w = get(e, "ISTIO_META_WORKLOAD_NAME"); !w.empty()) {
    service = w;
  }
  node->set_cluster(service + "." + pod_namespace);
  *node->mutable_metadata() = metadata;
  // Locality: ISTIO_LOCALITY ("region/zone/subzone"), else the istio-locality label
  // ("region.zone.subzone"), else the Kubernetes topology labels. istiod also derives it from
  // the pod's node, so this is optional.
  std::string region, zone, subzone;
  auto split3 = [&](const std::string& v, char sep) {
    std::vector<std::string> parts;
    std::string cur;
    for (char c : v) {
      if (c == sep) {
        parts.push_back(cur);
        cur.clear();
      } else {
        cur.push_back(c);
      }
    }
    parts.push_back(cur);
    region = parts.size() > 0 ? parts[0] : "";
    zone = parts.size() > 1 ? parts[1] : "";
    subzone = parts.size() > 2 ? parts[2] : "";
  };
  if (const std::string loc = get(e, "ISTIO_LOCALITY"); !loc.empty()) {
    split3(loc, '/');
  } else if (auto it = labels.find("istio-locality"); it != labels.end()) {
    split3(it->second, '.');
  } else {
    if (auto r = labels.find("topology.kubernetes.io/region"); r != labels.end()) region = r->second;
    if (auto z = labels.find("topology.kubernetes.io/zone"); z != labels.end()) zone = z->second;
    if (auto s = labels.find("topology.istio.io/subzone"); s != labels.end()) subzone = s->second;
  }
  if (!region.empty() || !zone.empty() || !subzone.empty()) {
    node->mutable_locality()->set_region(region);
    node->mutable_locality()->set_zone(zone);
    node->mutable_locality()->set_sub_zone(subzone);
  }

  auto* admin = b.mutable_admin()->mutable_address()->mutable_socket_address();
  admin->set_address("127.0.0.1");
  admin->set_port_value(15000);

  // The xDS server: PILOT_ADDRESS, else ProxyConfig.discoveryAddress, else istiod's default.
  std::string discovery = get(e, "PILOT_ADDRESS");
  if (discovery.empty()) discovery = proxy_config_string("discoveryAddress");
  if (discovery.empty()) discovery = default_discovery_address;
  std::string host;
  int port = 0;
  if (!split_host_port(discovery, host, port)) {
    result.errors.push_back("discovery address '" + discovery + "' is not host:port");
  }
  // 15010 is istiod's plaintext port; everything else is TLS (15012) unless EWGW_XDS_TLS says.
  bool tls = port != 15010;
  if (const std::string t = get(e, "EWGW_XDS_TLS"); !t.empty()) {
    if (t == "true" || t == "1") {
      tls = true;
    } else if (t == "false" || t == "0") {
      tls = false;
    } else {
      result.errors.push_back("EWGW_XDS_TLS must be true or false");
    }
  }
  bool delta = true;
  if (const std::string d = get(e, "ISTIO_DELTA_XDS"); !d.empty()) delta = !(d == "false" || d == "0");

  auto* dr = b.mutable_dynamic_resources();
  dr->mutable_cds_config()->mutable_ads();
  dr->mutable_cds_config()->set_resource_api_version(core_v3::V3);
  dr->mutable_lds_config()->mutable_ads();
  dr->mutable_lds_config()->set_resource_api_version(core_v3::V3);
  auto* ads = dr->mutable_ads_config();
  ads->set_api_type(delta ? core_v3::ApiConfigSource::DELTA_GRPC : core_v3::ApiConfigSource::GRPC);
  ads->set_transport_api_version(core_v3::V3);
  ads->set_set_node_on_first_message_only(true);
  auto* service_def = ads->add_grpc_services();
  auto* g = service_def->mutable_google_grpc();
  g->set_target_uri(discovery);
  g->set_stat_prefix("xds-grpc");
  if (tls) {
    const std::string root = get(e, "XDS_ROOT_CA", default_root_cert);
    g->mutable_channel_credentials()->mutable_ssl_credentials()->mutable_root_certs()->set_filename(root);
    // The name istiod's certificate carries: ISTIOD_SAN, else the discovery host (an IP has no
    // such name, so istiod's usual one is assumed).
    std::string san = get(e, "ISTIOD_SAN");
    if (san.empty()) san = is_ip(host) ? "istiod.istio-system.svc" : host;
    if (san != host) {
      (*g->mutable_channel_args()->mutable_args())["grpc.ssl_target_name_override"].set_string_value(san);
    }
    // PROV_CERT: a directory of pre-provisioned certificates (Istio's VM onboarding, or a
    // Secret mounted into the pod). pilot-agent then presents its cert-chain.pem / key.pem to
    // istiod as a client certificate; ewgw does the same (mTLS towards the control plane). The
    // files are read on every new stream, so a rotated pair is used from the next reconnect;
    // a missing file is reported now, by name, rather than as a failed handshake later.
    if (std::string dir = get(e, "PROV_CERT"); !dir.empty()) {
      while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
      auto* ssl = g->mutable_channel_credentials()->mutable_ssl_credentials();
      for (const auto& [file, field] : {std::pair{"/cert-chain.pem", ssl->mutable_cert_chain()},
                                        std::pair{"/key.pem", ssl->mutable_private_key()}}) {
        const std::string path = dir + file;
        if (::access(path.c_str(), R_OK) != 0) {
          result.errors.push_back("PROV_CERT: cannot read " + path + ": " + std::strerror(errno));
        }
        field->set_filename(path);
      }
    }
    // istiod authenticates the stream with the pod's projected service account token.
    envoy::config::grpc_credential::v3::FileBasedMetadataConfig fbm;
    fbm.mutable_secret_data()->set_filename(get(e, "EWGW_XDS_TOKEN_PATH", default_token));
    fbm.set_header_key("authorization");
    fbm.set_header_prefix("Bearer ");
    auto* plugin = g->add_call_credentials()->mutable_from_plugin();
    plugin->set_name("envoy.grpc_credentials.file_based_metadata");
    plugin->mutable_typed_config()->PackFrom(fbm);
  } else {
    notice("xDS over plaintext to " + discovery + " (no token is sent)");
    if (!get(e, "PROV_CERT").empty()) notice("PROV_CERT ignored: xDS is plaintext, there is no TLS to present it in");
  }
  auto* h = service_def->add_initial_metadata();
  h->set_key("clusterid");  // istiod reads "ClusterID"; HTTP/2 header names are lower-case
  h->set_value(cluster_id);

  pb::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  if (auto s = pb::util::MessageToJsonString(b, &result.json, options); !s.ok()) {
    result.errors.push_back("cannot print the bootstrap: " + std::string(s.message()));
  }
  return result;
}

istio_environment current_istio_environment() {
  istio_environment e;
  for (char** p = environ; p != nullptr && *p != nullptr; ++p) {
    std::string kv = *p;
    const auto eq = kv.find('=');
    if (eq != std::string::npos) e.env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) == 0) e.hostname = host;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) == 0) {
    for (ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
      char buf[INET_ADDRSTRLEN];
      const auto* sin = reinterpret_cast<const sockaddr_in*>(a->ifa_addr);
      if (::inet_ntop(AF_INET, &sin->sin_addr, buf, sizeof buf) == nullptr) continue;
      if (std::string(buf).starts_with("127.")) continue;
      e.interface_ips.push_back(buf);
    }
    ::freeifaddrs(list);
  }
  return e;
}

}  // namespace ewgw::xds
