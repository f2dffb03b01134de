#include "xds/yaml_to_json.h"

#include <google/protobuf/descriptor.h>
#include <yaml-cpp/yaml.h>

#include <cctype>
#include <charconv>
#include <cstdio>
#include <regex>

#include "accesslog/format.h"

namespace ewgw::xds {
namespace {

namespace pb = google::protobuf;

constexpr std::string_view type_url_prefix = "type.googleapis.com/";

void append_json_string(std::string& out, std::string_view s) {
  out.push_back('"');
  accesslog::append_json_escaped(out, s);
  out.push_back('"');
}

bool is_quoted(const YAML::Node& n) { return n.Tag() == "!"; }

// YAML 1.2 core schema resolution for plain scalars.
enum class scalar_kind { null, boolean, number, string };
scalar_kind classify_plain(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return scalar_kind::null;
  if (s == "true" || s == "True" || s == "TRUE" || s == "false" || s == "False" || s == "FALSE") {
    return scalar_kind::boolean;
  }
  static const std::regex number(R"([-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?)");
  if (std::regex_match(s, number)) return scalar_kind::number;
  return scalar_kind::string;
}

// Field by proto name or JSON name (protobuf 3.21 has no FindFieldByJsonName).
const pb::FieldDescriptor* find_field(const pb::Descriptor& d, const std::string& key) {
  if (const pb::FieldDescriptor* f = d.FindFieldByName(key)) return f;
  for (int i = 0; i < d.field_count(); ++i) {
    if (d.field(i)->json_name() == key) return d.field(i);
  }
  return nullptr;
}

class converter {
 public:
  explicit converter(yaml_to_json_result& result) : result_(result) {}

  void message(const YAML::Node& node, const pb::Descriptor& d, std::string& out) {
    const std::string& full = d.full_name();
    if (full == "google.protobuf.Any") return any(node, out);
    if (full == "google.protobuf.Struct") return inferred_object(node, out);
    if (full == "google.protobuf.Value") return inferred(node, out);
    if (full == "google.protobuf.ListValue") return inferred_list(node, out);
    if (has_scalar_json_form(full)) {
      if (!node.IsScalar()) {
        error(node, "expected a scalar for " + full);
        out += "null";
        return;
      }
      append_json_string(out, node.Scalar());
      return;
    }
    if (node.IsNull()) {
      out += "{}";
      return;
    }
    if (!node.IsMap()) {
      error(node, "expected a mapping for " + full);
      out += "{}";
      return;
    }
    out.push_back('{');
    bool first = true;
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      const pb::FieldDescriptor* f = find_field(d, key);
      if (f == nullptr) {
        error(kv.first, "unknown field '" + key + "' in " + full);
        continue;
      }
      if (!first) out.push_back(',');
      first = false;
      append_json_string(out, f->json_name());
      out.push_back(':');
      field(kv.second, *f, out);
    }
    out.push_back('}');
  }

 private:
  static bool has_scalar_json_form(const std::string& full) {
    // Well-known types whose JSON form is a single scalar (protobuf JSON mapping).
    static const char* const names[] = {
        "google.protobuf.Duration",    "google.protobuf.Timestamp",  "google.protobuf.FieldMask",
        "google.protobuf.DoubleValue", "google.protobuf.FloatValue", "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value", "google.protobuf.Int32Value", "google.protobuf.UInt32Value",
        "google.protobuf.BoolValue",   "google.protobuf.StringValue", "google.protobuf.BytesValue",
    };
    for (const char* n : names) {
      if (full == n) return true;
    }
    return false;
  }

  void field(const YAML::Node& node, const pb::FieldDescriptor& f, std::string& out) {
    if (f.is_map()) {
      if (node.IsNull()) {
        out += "{}";
        return;
      }
      if (!node.IsMap()) {
        error(node, "expected a mapping for field '" + f.name() + "'");
        out += "{}";
        return;
      }
      const pb::FieldDescriptor& value_field = *f.message_type()->map_value();
      out.push_back('{');
      bool first = true;
      for (const auto& kv : node) {
        if (!first) out.push_back(',');
        first = false;
        append_json_string(out, kv.first.as<std::string>());
        out.push_back(':');
        single(kv.second, value_field, out);
      }
      out.push_back('}');
      return;
    }
    if (f.is_repeated()) {
      if (node.IsNull()) {
        out += "[]";
        return;
      }
      if (!node.IsSequence()) {
        error(node, "expected a list for field '" + f.name() + "'");
        out += "[]";
        return;
      }
      out.push_back('[');
      bool first = true;
      for (const auto& item : node) {
        if (!first) out.push_back(',');
        first = false;
        single(item, f, out);
      }
      out.push_back(']');
      return;
    }
    single(node, f, out);
  }

  void single(const YAML::Node& node, const pb::FieldDescriptor& f, std::string& out) {
    if (f.type() == pb::FieldDescriptor::TYPE_MESSAGE || f.type() == pb::FieldDescriptor::TYPE_GROUP) {
      message(node, *f.message_type(), out);
      return;
    }
    if (!node.IsScalar()) {
      error(node, "expected a scalar for field '" + f.name() + "'");
      out += "null";
      return;
    }
    // Strings are accepted for every scalar type by protobuf's JSON parser.
    append_json_string(out, node.Scalar());
  }

  void any(const YAML::Node& node, std::string& out) {
    if (!node.IsMap() || !node["@type"]) {
      error(node, "an Any needs an '@type' field");
      out += "{}";
      return;
    }
    const std::string type_url = node["@type"].as<std::string>();
    const std::string_view name = std::string_view(type_url).substr(type_url.rfind('/') + 1);
    const pb::Descriptor* d = pb::DescriptorPool::generated_pool()->FindMessageTypeByName(std::string(name));
    if (d == nullptr) {
      // Not a type we were built with: keep it as a TypedStruct so the decoder can name it.
      out += R"({"@type":"type.googleapis.com/xds.type.v3.TypedStruct","typeUrl":)";
      append_json_string(out, type_url);
      out += R"(,"value":{)";
      bool first = true;
      for (const auto& kv : node) {
        const std::string key = kv.first.as<std::string>();
        if (key == "@type") continue;
        if (!first) out.push_back(',');
        first = false;
        append_json_string(out, key);
        out.push_back(':');
        inferred(kv.second, out);
      }
      out += "}}";
      return;
    }
    out += "{\"@type\":";
    append_json_string(out, std::string(type_url_prefix) + std::string(name));
    const std::string& full = d->full_name();
    if (has_scalar_json_form(full) || full == "google.protobuf.Struct" || full == "google.protobuf.Value" ||
        full == "google.protobuf.ListValue" || full == "google.protobuf.Any") {
      // Protobuf JSON mapping: such a type sits under "value" inside an Any.
      out += ",\"value\":";
      message(node["value"], *d, out);
      out.push_back('}');
      return;
    }
    for (const auto& kv : node) {
      const std::string key = kv.first.as<std::string>();
      if (key == "@type") continue;
      const pb::FieldDescriptor* f = find_field(*d, key);
      if (f == nullptr) {
        error(kv.first, "unknown field '" + key + "' in " + full);
        continue;
      }
      out.push_back(',');
      append_json_string(out, f->json_name());
      out.push_back(':');
      field(kv.second, *f, out);
    }
    out.push_back('}');
  }

  void inferred(const YAML::Node& node, std::string& out) {
    if (node.IsMap()) return inferred_object(node, out);
    if (node.IsSequence()) return inferred_list(node, out);
    if (!node.IsDefined() || node.IsNull()) {
      out += "null";
      return;
    }
    const std::string& s = node.Scalar();
    if (is_quoted(node)) {
      append_json_string(out, s);
      return;
    }
    switch (classify_plain(s)) {
      case scalar_kind::null: out += "null"; return;
      case scalar_kind::boolean: out += (s[0] == 't' || s[0] == 'T') ? "true" : "false"; return;
      case scalar_kind::number: {
        // JSON has no leading '+' or bare leading '.'.
        std::string n = s[0] == '+' ? s.substr(1) : s;
        if (!n.empty() && n[0] == '.') n.insert(0, "0");
        if (n.size() > 1 && n[0] == '-' && n[1] == '.') n.insert(1, "0");
        if (!n.empty() && n.back() == '.') n.push_back('0');
        // JSON forbids leading zeros ("007" is the YAML integer 7).
        const std::size_t sign = (!n.empty() && n[0] == '-') ? 1 : 0;
        std::size_t zeros = 0;
        while (sign + zeros + 1 < n.size() && n[sign + zeros] == '0' && std::isdigit(static_cast<unsigned char>(n[sign + zeros + 1]))) {
          ++zeros;
        }
        n.erase(sign, zeros);
        out += n;
        return;
      }
      case scalar_kind::string: append_json_string(out, s); return;
    }
  }

  void inferred_object(const YAML::Node& node, std::string& out) {
    if (node.IsNull()) {
      out += "{}";
      return;
    }
    if (!node.IsMap()) {
      error(node, "expected a mapping for a Struct");
      out += "{}";
      return;
    }
    out.push_back('{');
    bool first = true;
    for (const auto& kv : node) {
      if (!first) out.push_back(',');
      first = false;
      append_json_string(out, kv.first.as<std::string>());
      out.push_back(':');
      inferred(kv.second, out);
    }
    out.push_back('}');
  }

  void inferred_list(const YAML::Node& node, std::string& out) {
    if (!node.IsSequence()) {
      error(node, "expected a list for a ListValue");
      out += "[]";
      return;
    }
    out.push_back('[');
    bool first = true;
    for (const auto& item : node) {
      if (!first) out.push_back(',');
      first = false;
      inferred(item, out);
    }
    out.push_back(']');
  }

  void error(const YAML::Node& at, std::string why) {
    const YAML::Mark m = at.Mark();
    if (m.is_null()) {
      result_.errors.push_back(std::move(why));
    } else {
      result_.errors.push_back(std::to_string(m.line + 1) + ":" + std::to_string(m.column + 1) + ": " + why);
    }
  }

  yaml_to_json_result& result_;
};

}  // namespace

yaml_to_json_result yaml_to_json(std::string_view yaml_text, const pb::Descriptor& root) {
  yaml_to_json_result result;
  YAML::Node doc;
  try {
    doc = YAML::Load(std::string(yaml_text));
  } catch (const YAML::Exception& e) {
    // yaml-cpp reports parse errors by exception; this is startup/control-plane code, not the
    // data path, so it is converted to an error here and goes no further.
    result.errors.push_back(std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) + ": " + e.msg);
    return result;
  }
  if (!doc.IsDefined() || doc.IsNull()) {
    result.errors.push_back("the document is empty");
    return result;
  }
  converter c(result);
  try {
    c.message(doc, root, result.json);
  } catch (const YAML::Exception& e) {
    result.errors.push_back(std::to_string(e.mark.line + 1) + ":" + std::to_string(e.mark.column + 1) + ": " + e.msg);
  }
  return result;
}

}  // namespace ewgw::xds
