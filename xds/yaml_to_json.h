// Converts a YAML (or JSON) document to protobuf JSON, guided by the target message's
// descriptor, so that protobuf's JSON parser can read Envoy configs written as YAML.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace google::protobuf {
class Descriptor;
}

namespace ewgw::xds {

struct yaml_to_json_result {
  std::string json;
  // "line:column: reason" for each problem found; empty on success.
  std::vector<std::string> errors;
};

// Why schema-guided: YAML scalars are untyped text. Protobuf's JSON parser accepts numbers and
// bools written as JSON strings, but rejects a JSON number for a string field (e.g. a cluster
// named 123). So scalars for typed fields are emitted as strings, while the loosely typed
// google.protobuf.Struct/Value fields (node metadata, istio filter metadata) get YAML 1.2 core
// schema typing: an unquoted true/false/null/number is typed, a quoted scalar is a string.
//
// An Any whose @type is not in the generated descriptor pool (e.g. Istio's stats.PluginConfig)
// is rewritten as an xds.type.v3.TypedStruct carrying the original type_url and its fields as a
// Struct, so the decoder can accept telemetry-only filters by type and reject the rest by name.
//
// Unknown field names are reported with their YAML position.
yaml_to_json_result yaml_to_json(std::string_view yaml_text, const google::protobuf::Descriptor& root);

}  // namespace ewgw::xds
