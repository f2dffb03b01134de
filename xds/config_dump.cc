#include "xds/config_dump.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/util/field_mask_util.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <google/protobuf/wire_format_lite.h>

#include <mutex>

#include "envoy/admin/v3/config_dump.pb.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "xds/type/v3/typed_struct.pb.h"

namespace ewgw::xds {

namespace pb = google::protobuf;
namespace admin = envoy::admin::v3;

namespace {

constexpr const char* cluster_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
constexpr const char* endpoint_url = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
constexpr const char* listener_url = "type.googleapis.com/envoy.config.listener.v3.Listener";

struct stored {
  std::string version;
  std::shared_ptr<const std::string> bytes;
  config_store::time updated;
};

pb::Timestamp timestamp(config_store::time t) {
  return pb::util::TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

void pack_raw(pb::Any* any, const char* url, const std::string& bytes) {
  any->set_type_url(url);
  any->set_value(bytes);
}

}  // namespace

struct config_store::impl {
  mutable std::mutex mu;
  std::shared_ptr<const std::string> bootstrap;
  time bootstrap_loaded{};
  std::map<std::string, stored> resources[3];
  std::string sotw_version[3];  // the last state-of-the-world version_info per kind
  std::set<std::string> warming_clusters;
  std::set<std::string> waiting_listeners;

  std::map<std::string, stored>& of(kind k) { return resources[static_cast<int>(k)]; }
  const std::map<std::string, stored>& of(kind k) const { return resources[static_cast<int>(k)]; }
};

config_store::config_store() : impl_(std::make_unique<impl>()) {}
config_store::~config_store() = default;

void config_store::set_bootstrap(std::shared_ptr<const std::string> serialized, time loaded) {
  std::lock_guard lock(impl_->mu);
  impl_->bootstrap = std::move(serialized);
  impl_->bootstrap_loaded = loaded;
}

void config_store::put(kind k, const std::string& name, const std::string& version, const std::string& bytes, time now) {
  std::lock_guard lock(impl_->mu);
  auto& m = impl_->of(k);
  auto it = m.find(name);
  if (it != m.end() && *it->second.bytes == bytes) return;
  stored s{version, std::make_shared<const std::string>(bytes), now};
  m.insert_or_assign(name, std::move(s));
}

void config_store::remove(kind k, const std::string& name) {
  std::lock_guard lock(impl_->mu);
  impl_->of(k).erase(name);
}

void config_store::replace_all(kind k, const std::vector<std::pair<std::string, const std::string*>>& resources,
                               const std::string& version, time now) {
  std::map<std::string, stored> fresh;
  std::lock_guard lock(impl_->mu);
  auto& m = impl_->of(k);
  for (const auto& [name, bytes] : resources) {
    auto it = m.find(name);
    if (it != m.end() && *it->second.bytes == *bytes) {
      fresh.emplace(name, std::move(it->second));
    } else {
      fresh.emplace(name, stored{version, std::make_shared<const std::string>(*bytes), now});
    }
  }
  m = std::move(fresh);
  impl_->sotw_version[static_cast<int>(k)] = version;
}

void config_store::retain(kind k, const std::set<std::string>& names) {
  std::lock_guard lock(impl_->mu);
  std::erase_if(impl_->of(k), [&](const auto& entry) { return !names.contains(entry.first); });
}

void config_store::set_pending(std::set<std::string> warming_clusters, std::set<std::string> waiting_listeners) {
  std::lock_guard lock(impl_->mu);
  impl_->warming_clusters = std::move(warming_clusters);
  impl_->waiting_listeners = std::move(waiting_listeners);
}

std::string config_store::missing_cluster_note(std::string_view cluster) const {
  std::lock_guard lock(impl_->mu);
  const std::string name(cluster);
  if (impl_->warming_clusters.contains(name)) {
    return "it is warming: received over CDS but still waiting for its first EDS assignment";
  }
  if (impl_->of(kind::cluster).contains(name)) return "it was received over CDS but is not in force";
  return "no cluster of that name was received from the control plane or configured statically";
}

std::string config_store::resource_name(const std::string& bytes) {
  pb::io::CodedInputStream in(reinterpret_cast<const std::uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
  for (;;) {
    const std::uint32_t tag = in.ReadTag();
    if (tag == 0) return {};
    if (tag == pb::internal::WireFormatLite::MakeTag(1, pb::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED)) {
      std::uint32_t size = 0;
      std::string name;
      if (!in.ReadVarint32(&size) || !in.ReadString(&name, static_cast<int>(size))) return {};
      return name;
    }
    if (!pb::internal::WireFormatLite::SkipField(&in, tag)) return {};
  }
}

namespace {

std::string bad(std::string message) { return message + "\n"; }

bool replace_unknown_any(pb::Message& m);

// An Any whose type this binary has no descriptor for (Istio's istio.stats filter config,
// type.googleapis.com/stats.PluginConfig) cannot be printed as JSON. It becomes an
// xds.type.v3.TypedStruct carrying the original type_url, Envoy's own way of naming a config
// type it cannot print (the payload is left out). Returns true if anything changed.
bool fix_any(pb::Any& any) {
  const std::string& url = any.type_url();
  const std::string type = url.substr(url.rfind('/') + 1);
  const pb::Descriptor* d = pb::DescriptorPool::generated_pool()->FindMessageTypeByName(type);
  if (d == nullptr) {
    ::xds::type::v3::TypedStruct unknown;
    unknown.set_type_url(url);
    any.PackFrom(unknown);
    return true;
  }
  std::unique_ptr<pb::Message> inner(pb::MessageFactory::generated_factory()->GetPrototype(d)->New());
  if (!inner->ParseFromString(any.value()) || !replace_unknown_any(*inner)) return false;
  any.PackFrom(*inner);
  return true;
}

bool replace_unknown_any(pb::Message& m) {
  const pb::Reflection* r = m.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  bool changed = false;
  const auto visit = [&](pb::Message* child) {
    if (auto* any = dynamic_cast<pb::Any*>(child)) {
      changed = fix_any(*any) || changed;
    } else {
      changed = replace_unknown_any(*child) || changed;
    }
  };
  for (const pb::FieldDescriptor* f : fields) {
    if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) visit(r->MutableRepeatedMessage(&m, f, i));
    } else {
      visit(r->MutableMessage(&m, f));
    }
  }
  return changed;
}

}  // namespace

std::pair<unsigned, std::string> config_store::render(const std::map<std::string, std::string>& query) const {
  bool include_eds = false;
  std::string resource, mask_text;
  bool has_mask = false;
  for (const auto& [key, value] : query) {
    if (key == "include_eds") {
      include_eds = true;
    } else if (key == "resource") {
      resource = value;
      if (resource.empty()) return {400, bad("parameter 'resource' needs a field name, e.g. dynamic_active_clusters")};
    } else if (key == "mask") {
      mask_text = value;
      has_mask = true;
    } else {
      return {400, bad("unknown query parameter '" + key + "' for /config_dump; accepted: include_eds, resource, mask")};
    }
  }

  // Build the typed dumps under the lock (copies of shared byte strings), print outside it.
  admin::BootstrapConfigDump bootstrap_dump;
  admin::ClustersConfigDump clusters;
  admin::EndpointsConfigDump endpoints;
  admin::ListenersConfigDump listeners;
  {
    std::lock_guard lock(impl_->mu);
    const auto loaded = timestamp(impl_->bootstrap_loaded);
    if (impl_->bootstrap && !bootstrap_dump.mutable_bootstrap()->ParseFromString(*impl_->bootstrap)) {
      return {500, bad("the stored bootstrap does not parse")};
    }
    *bootstrap_dump.mutable_last_updated() = loaded;
    const auto& statics = bootstrap_dump.bootstrap().static_resources();
    for (const auto& c : statics.clusters()) {
      auto* s = clusters.add_static_clusters();
      s->mutable_cluster()->PackFrom(c);
      *s->mutable_last_updated() = loaded;
      if (include_eds && c.has_load_assignment()) {
        auto* e = endpoints.add_static_endpoint_configs();
        e->mutable_endpoint_config()->PackFrom(c.load_assignment());
        *e->mutable_last_updated() = loaded;
      }
    }
    for (const auto& l : statics.listeners()) {
      auto* s = listeners.add_static_listeners();
      s->mutable_listener()->PackFrom(l);
      *s->mutable_last_updated() = loaded;
    }
    clusters.set_version_info(impl_->sotw_version[static_cast<int>(kind::cluster)]);
    for (const auto& [name, r] : impl_->of(kind::cluster)) {
      auto* d = impl_->warming_clusters.contains(name) ? clusters.add_dynamic_warming_clusters()
                                                       : clusters.add_dynamic_active_clusters();
      d->set_version_info(r.version);
      pack_raw(d->mutable_cluster(), cluster_url, *r.bytes);
      *d->mutable_last_updated() = timestamp(r.updated);
      d->set_client_status(admin::ACKED);
    }
    if (include_eds) {
      for (const auto& [name, r] : impl_->of(kind::endpoint)) {
        auto* d = endpoints.add_dynamic_endpoint_configs();
        d->set_version_info(r.version);
        pack_raw(d->mutable_endpoint_config(), endpoint_url, *r.bytes);
        *d->mutable_last_updated() = timestamp(r.updated);
        d->set_client_status(admin::ACKED);
      }
    }
    listeners.set_version_info(impl_->sotw_version[static_cast<int>(kind::listener)]);
    for (const auto& [name, r] : impl_->of(kind::listener)) {
      auto* d = listeners.add_dynamic_listeners();
      d->set_name(name);
      auto* state = impl_->waiting_listeners.contains(name) ? d->mutable_warming_state() : d->mutable_active_state();
      state->set_version_info(r.version);
      pack_raw(state->mutable_listener(), listener_url, *r.bytes);
      *state->mutable_last_updated() = timestamp(r.updated);
      d->set_client_status(admin::ACKED);
    }
  }

  // Envoy's order: bootstrap, clusters, endpoints (only with include_eds), listeners.
  std::vector<const pb::Message*> configs = {&bootstrap_dump, &clusters};
  if (include_eds) configs.push_back(&endpoints);
  configs.push_back(&listeners);

  pb::FieldMask mask;
  if (has_mask) pb::util::FieldMaskUtil::FromString(mask_text, &mask);

  admin::ConfigDump dump;
  if (!resource.empty()) {
    bool found = false;
    for (const pb::Message* config : configs) {
      const pb::Descriptor* d = config->GetDescriptor();
      const pb::FieldDescriptor* f = d->FindFieldByName(resource);
      if (f == nullptr || !f->is_repeated() || f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
      found = true;
      const pb::Reflection* reflection = config->GetReflection();
      for (int i = 0; i < reflection->FieldSize(*config, f); ++i) {
        const pb::Message& element = reflection->GetRepeatedMessage(*config, f, i);
        if (has_mask) {
          for (const auto& path : mask.paths()) {
            if (!pb::util::FieldMaskUtil::GetFieldDescriptors(element.GetDescriptor(), path, nullptr)) {
              return {400, bad("parameter 'mask': '" + path + "' is not a field path of " + element.GetDescriptor()->full_name())};
            }
          }
          std::unique_ptr<pb::Message> trimmed(element.New());
          trimmed->CopyFrom(element);
          pb::util::FieldMaskUtil::TrimMessage(mask, trimmed.get());
          dump.add_configs()->PackFrom(*trimmed);
        } else {
          dump.add_configs()->PackFrom(element);
        }
      }
    }
    if (!found) {
      return {400, bad("parameter 'resource': no config dump has a repeated field '" + resource +
                       "' (e.g. static_clusters, dynamic_active_clusters, dynamic_listeners" +
                       std::string(include_eds ? ", dynamic_endpoint_configs" : "") + ")")};
    }
  } else {
    for (const pb::Message* config : configs) {
      if (has_mask) {
        bool valid = true;
        for (const auto& path : mask.paths()) {
          valid = valid && pb::util::FieldMaskUtil::GetFieldDescriptors(config->GetDescriptor(), path, nullptr);
        }
        // As Envoy: a mask applies to the configs it fits; the others are left out.
        if (!valid) continue;
        std::unique_ptr<pb::Message> trimmed(config->New());
        trimmed->CopyFrom(*config);
        pb::util::FieldMaskUtil::TrimMessage(mask, trimmed.get());
        dump.add_configs()->PackFrom(*trimmed);
      } else {
        dump.add_configs()->PackFrom(*config);
      }
    }
    if (has_mask && dump.configs_size() == 0) {
      return {400, bad("parameter 'mask': '" + mask_text + "' names no field of any config dump")};
    }
  }

  pb::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  // Istio's resources nearly always hold a type this binary does not know (istio.stats), and a
  // failed print costs as much as the walk: name unknown types first, then print once.
  replace_unknown_any(dump);
  std::string out;
  const auto status = pb::util::MessageToJsonString(dump, &out, options);
  if (!status.ok()) return {500, bad("cannot print the configuration: " + std::string(status.message()))};
  return {200, std::move(out)};
}

}  // namespace ewgw::xds
