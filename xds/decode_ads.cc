// dynamic_resources: where the ADS server is and how to talk to it (Envoy's ApiConfigSource
// and GrpcService, config_source.proto and grpc_service.proto), decoded into ads_config.
//
// Both ways Envoy names a gRPC server are accepted:
//   - google_grpc: target_uri, channel_credentials.ssl_credentials.root_certs (a file),
//     call_credentials (an inline access_token, or the file_based_metadata plugin that reads a
//     token file), channel_args "grpc.ssl_target_name_override";
//   - envoy_grpc: cluster_name naming a static cluster whose single endpoint is the server, with
//     an optional envoy.transport_sockets.tls UpstreamTlsContext (validation_context.trusted_ca
//     file, sni). That cluster only leads to the control plane and takes no part in routing.
#include <google/protobuf/util/json_util.h>

#include "envoy/config/core/v3/config_source.pb.h"
#include "envoy/config/core/v3/grpc_service.pb.h"
#include "envoy/config/grpc_credential/v3/file_based_metadata.pb.h"
#include "envoy/extensions/transport_sockets/tls/v3/tls.pb.h"
#include "xds/decode_internal.h"

namespace ewgw::xds {

namespace pb = google::protobuf;
namespace core_v3 = envoy::config::core::v3;
namespace cluster_v3 = envoy::config::cluster::v3;
namespace tls_v3 = envoy::extensions::transport_sockets::tls::v3;
namespace cred_v3 = envoy::config::grpc_credential::v3;

using namespace internal;

namespace {

constexpr std::string_view file_based_metadata_name = "envoy.grpc_credentials.file_based_metadata";

std::string lower_ascii(std::string s) {
  for (char& c : s) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return s;
}

// A DataSource that must name a file: the file is read when a channel or stream is created,
// so a rotated certificate or token is picked up.
bool file_source(const core_v3::DataSource& ds, const std::string& path, diagnostics& diag, std::string& out) {
  if (ds.specifier_case() != core_v3::DataSource::kFilename) {
    diag.error(path, "only 'filename' is supported (the file is re-read on reconnect)");
    return false;
  }
  if (ds.filename().empty()) {
    diag.error(join(path, "filename"), "must not be empty");
    return false;
  }
  out = ds.filename();
  return true;
}

// A ConfigSource for cds_config / lds_config: only the ADS stream.
bool decode_ads_source(const core_v3::ConfigSource& src, const std::string& path, diagnostics& diag) {
  check_fields(src, {"ads", "resource_api_version"}, {"initial_fetch_timeout"}, path, diag);
  if (!src.has_ads()) {
    diag.error(path, "only 'ads: {}' is supported (resources come over the aggregated stream)");
    return false;
  }
  if (src.resource_api_version() != core_v3::V3 && src.resource_api_version() != core_v3::AUTO) {
    diag.error(join(path, "resource_api_version"), "only V3 is supported");
  }
  return true;
}

// FileBasedMetadataConfig from its Any.
bool unpack_file_based_metadata(const pb::Any& any, cred_v3::FileBasedMetadataConfig& out) {
  if (any.Is<cred_v3::FileBasedMetadataConfig>()) return any.UnpackTo(&out);
  return false;
}

void decode_call_credentials(const core_v3::GrpcService::GoogleGrpc& g, const std::string& path, diagnostics& diag,
                             ads_config& out) {
  for (int i = 0; i < g.call_credentials_size(); ++i) {
    const auto& cc = g.call_credentials(i);
    const std::string p = index(join(path, "call_credentials"), i);
    using cc_t = core_v3::GrpcService::GoogleGrpc::CallCredentials;
    switch (cc.credential_specifier_case()) {
      case cc_t::kAccessToken:
        // gRPC's AccessTokenCredentials: "authorization: Bearer <token>".
        out.initial_metadata.push_back({"authorization", "Bearer " + cc.access_token()});
        break;
      case cc_t::kFromPlugin: {
        const auto& plugin = cc.from_plugin();
        const std::string pp = join(p, "from_plugin");
        cred_v3::FileBasedMetadataConfig fbm;
        if (plugin.name() != file_based_metadata_name ||
            (plugin.has_typed_config() && !unpack_file_based_metadata(plugin.typed_config(), fbm))) {
          diag.error(pp, "only '" + std::string(file_based_metadata_name) +
                             "' (FileBasedMetadataConfig) is supported");
          break;
        }
        check_fields(fbm, {"secret_data", "header_key", "header_prefix"}, {}, join(pp, "typed_config"), diag);
        if (!fbm.has_secret_data()) {
          diag.error(join(pp, "typed_config.secret_data"), "is required");
          break;
        }
        if (!out.token_file.empty()) {
          diag.error(pp, "only one token file is supported");
          break;
        }
        file_source(fbm.secret_data(), join(pp, "typed_config.secret_data"), diag, out.token_file);
        // Envoy's defaults: header "authorization", no prefix.
        out.token_header = fbm.header_key().empty() ? "authorization" : lower_ascii(fbm.header_key());
        out.token_prefix = fbm.header_prefix();
        break;
      }
      default:
        diag.error(p, "only 'access_token' and the '" + std::string(file_based_metadata_name) +
                          "' plugin are supported");
    }
  }
}

void decode_google_grpc(const core_v3::GrpcService::GoogleGrpc& g, const std::string& path, diagnostics& diag,
                        ads_config& out) {
  check_fields(g, {"target_uri", "channel_credentials", "call_credentials", "channel_args", "credentials_factory_name"},
               {"stat_prefix", "per_stream_buffer_limit_bytes", "config"}, path, diag);
  if (g.target_uri().empty()) diag.error(join(path, "target_uri"), "must not be empty");
  out.target = g.target_uri();
  if (g.has_channel_credentials()) {
    const auto& cc = g.channel_credentials();
    const std::string cp = join(path, "channel_credentials");
    if (!cc.has_ssl_credentials()) {
      diag.error(cp, "only ssl_credentials is supported");
    } else {
      const auto& ssl = cc.ssl_credentials();
      const std::string sp = join(cp, "ssl_credentials");
      check_fields(ssl, {"root_certs", "cert_chain", "private_key"}, {}, sp, diag);
      out.tls = true;
      if (ssl.has_root_certs()) file_source(ssl.root_certs(), join(sp, "root_certs"), diag, out.root_cert_file);
      if (ssl.has_cert_chain() != ssl.has_private_key()) {
        diag.error(sp, "cert_chain and private_key go together (a client certificate needs its key)");
      } else if (ssl.has_cert_chain()) {
        file_source(ssl.cert_chain(), join(sp, "cert_chain"), diag, out.client_cert_chain_file);
        file_source(ssl.private_key(), join(sp, "private_key"), diag, out.client_private_key_file);
      }
    }
  }
  if (!g.credentials_factory_name().empty() && g.credentials_factory_name() != file_based_metadata_name) {
    diag.error(join(path, "credentials_factory_name"),
               "only '" + std::string(file_based_metadata_name) + "' is supported");
  }
  decode_call_credentials(g, path, diag, out);
  if (g.has_channel_args()) {
    for (const auto& [key, value] : g.channel_args().args()) {
      const std::string ap = join(path, "channel_args.args['" + key + "']");
      if (key == "grpc.ssl_target_name_override" && value.has_string_value()) {
        out.server_name = value.string_value();
      } else {
        diag.notice(ap, "accepted and ignored (ewgw sets its own channel arguments)");
      }
    }
  }
}

// The static cluster behind envoy_grpc: its single endpoint is the server; its TLS transport
// socket, if any, gives the trust anchors and the server name. Other settings only shape the
// connection to the control plane (HTTP/2 options, keepalive, buffer limits) and are ignored.
void decode_control_plane_cluster(const cluster_v3::Cluster& c, const std::string& path, diagnostics& diag,
                                  ads_config& out) {
  switch (c.type()) {
    case cluster_v3::Cluster::STATIC:
    case cluster_v3::Cluster::STRICT_DNS:
    case cluster_v3::Cluster::LOGICAL_DNS: break;
    default:
      diag.error(join(path, "type"), "the control-plane cluster must be STATIC, STRICT_DNS or LOGICAL_DNS");
  }
  std::vector<const core_v3::Address*> addresses;
  for (const auto& le : c.load_assignment().endpoints()) {
    for (const auto& lbe : le.lb_endpoints()) {
      if (lbe.has_endpoint()) addresses.push_back(&lbe.endpoint().address());
    }
  }
  if (addresses.size() != 1) {
    diag.error(join(path, "load_assignment"), "the control-plane cluster must have exactly one endpoint (it has " +
                                                  std::to_string(addresses.size()) + ")");
  } else if (addresses[0]->has_pipe()) {
    out.target = "unix:" + addresses[0]->pipe().path();
  } else if (addresses[0]->has_socket_address()) {
    const auto& sa = addresses[0]->socket_address();
    const bool v6 = sa.address().find(':') != std::string::npos;
    out.target = (v6 ? "[" + sa.address() + "]" : sa.address()) + ":" + std::to_string(sa.port_value());
  } else {
    diag.error(join(path, "load_assignment"), "the control-plane endpoint needs a socket address or a pipe");
  }
  if (c.has_transport_socket()) {
    const auto& ts = c.transport_socket();
    const std::string tp = join(path, "transport_socket");
    tls_v3::UpstreamTlsContext ctx;
    if (!ts.typed_config().Is<tls_v3::UpstreamTlsContext>() || !ts.typed_config().UnpackTo(&ctx)) {
      diag.error(tp, "only envoy.transport_sockets.tls with an UpstreamTlsContext is supported");
      return;
    }
    const std::string cp = join(tp, "typed_config");
    check_fields(ctx, {"common_tls_context", "sni"}, {"max_session_keys", "allow_renegotiation"}, cp, diag);
    check_fields(ctx.common_tls_context(), {"validation_context", "tls_certificates"}, {"alpn_protocols", "tls_params"},
                 join(cp, "common_tls_context"), diag);
    out.tls = true;
    out.server_name = ctx.sni();
    const auto& certs = ctx.common_tls_context().tls_certificates();
    if (certs.size() > 1) {
      diag.error(join(cp, "common_tls_context.tls_certificates"), "at most one client certificate is supported");
    } else if (certs.size() == 1) {
      const std::string cert_path = join(cp, "common_tls_context.tls_certificates[0]");
      check_fields(certs[0], {"certificate_chain", "private_key"}, {}, cert_path, diag);
      if (!certs[0].has_certificate_chain() || !certs[0].has_private_key()) {
        diag.error(cert_path, "needs both certificate_chain and private_key");
      } else {
        file_source(certs[0].certificate_chain(), join(cert_path, "certificate_chain"), diag, out.client_cert_chain_file);
        file_source(certs[0].private_key(), join(cert_path, "private_key"), diag, out.client_private_key_file);
      }
    }
    if (ctx.common_tls_context().has_validation_context()) {
      const auto& vc = ctx.common_tls_context().validation_context();
      const std::string vp = join(cp, "common_tls_context.validation_context");
      check_fields(vc, {"trusted_ca"}, {}, vp, diag);
      if (vc.has_trusted_ca()) file_source(vc.trusted_ca(), join(vp, "trusted_ca"), diag, out.root_cert_file);
    }
  }
  diag.notice(path, "the control-plane cluster is used for its address and TLS settings only; it is not a routing target");
}

}  // namespace

void decode_dynamic_resources(const envoy::config::bootstrap::v3::Bootstrap& b, diagnostics& diag,
                              bootstrap_config& out) {
  const auto& dr = b.dynamic_resources();
  const std::string path = "dynamic_resources";
  check_fields(dr, {"ads_config", "cds_config", "lds_config"}, {}, path, diag);
  if (!dr.has_ads_config()) {
    diag.error(path, "needs ads_config: ewgw takes resources from an aggregated (ADS) stream only");
    return;
  }
  ads_config ads;
  ads.cds = dr.has_cds_config() && decode_ads_source(dr.cds_config(), join(path, "cds_config"), diag);
  ads.lds = dr.has_lds_config() && decode_ads_source(dr.lds_config(), join(path, "lds_config"), diag);
  if (!dr.has_cds_config() && !dr.has_lds_config()) {
    diag.error(path, "needs cds_config and/or lds_config set to 'ads: {}': nothing would be subscribed");
  }
  const auto& src = dr.ads_config();
  const std::string ap = join(path, "ads_config");
  check_fields(src, {"api_type", "transport_api_version", "grpc_services", "set_node_on_first_message_only"},
               {"refresh_delay", "request_timeout", "rate_limit_settings", "config_validators"}, ap, diag);
  using api = core_v3::ApiConfigSource;
  switch (src.api_type()) {
    case api::GRPC:
    case api::AGGREGATED_GRPC: ads.api = xds_api::sotw; break;
    case api::DELTA_GRPC:
    case api::AGGREGATED_DELTA_GRPC: ads.api = xds_api::delta; break;
    default:
      diag.error(join(ap, "api_type"), api::ApiType_Name(src.api_type()) + " is not supported; use GRPC or DELTA_GRPC");
  }
  if (src.transport_api_version() != core_v3::V3 && src.transport_api_version() != core_v3::AUTO) {
    diag.error(join(ap, "transport_api_version"), "only V3 is supported");
  }
  ads.node_on_first_message_only = src.set_node_on_first_message_only();
  if (src.grpc_services_size() != 1) {
    diag.error(join(ap, "grpc_services"), "exactly one gRPC service is supported (" +
                                             std::to_string(src.grpc_services_size()) + " given)");
    out.ads = ads;
    return;
  }
  const auto& gs = src.grpc_services(0);
  const std::string gp = join(ap, "grpc_services[0]");
  check_fields(gs, {"envoy_grpc", "google_grpc", "initial_metadata"}, {"timeout", "retry_policy"}, gp, diag);
  for (int i = 0; i < gs.initial_metadata_size(); ++i) {
    const auto& h = gs.initial_metadata(i);
    check_fields(h, {"key", "value"}, {}, index(join(gp, "initial_metadata"), i), diag);
    if (h.key().empty()) diag.error(index(join(gp, "initial_metadata"), i), "key must not be empty");
    // HTTP/2 header names are lower-case; gRPC refuses others.
    ads.initial_metadata.push_back({lower_ascii(h.key()), h.value()});
  }
  if (gs.has_google_grpc()) {
    decode_google_grpc(gs.google_grpc(), join(gp, "google_grpc"), diag, ads);
  } else if (gs.has_envoy_grpc()) {
    const auto& eg = gs.envoy_grpc();
    check_fields(eg, {"cluster_name"}, {"authority", "retry_policy", "max_receive_message_length", "skip_envoy_headers"},
                 join(gp, "envoy_grpc"), diag);
    ads.control_plane_cluster = eg.cluster_name();
    const cluster_v3::Cluster* found = nullptr;
    int at = 0;
    for (int i = 0; i < b.static_resources().clusters_size(); ++i) {
      if (b.static_resources().clusters(i).name() == eg.cluster_name()) {
        found = &b.static_resources().clusters(i);
        at = i;
      }
    }
    if (found == nullptr) {
      diag.error(join(gp, "envoy_grpc.cluster_name"),
                 "names cluster '" + eg.cluster_name() + "', which is not a static cluster");
    } else {
      decode_control_plane_cluster(*found, index("static_resources.clusters", static_cast<std::size_t>(at)), diag,
                                   ads);
    }
  } else {
    diag.error(gp, "needs envoy_grpc or google_grpc");
  }
  out.ads = std::move(ads);
}

}  // namespace ewgw::xds
