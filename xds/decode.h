// Decoding of Envoy v3 resources into the plain structs of xds/config.h, with validation.
//
// Policy (docs/configuration.md): every field either is applied, is accepted and ignored because
// it cannot change where or whether a connection is routed (noted once), or makes the resource
// invalid with an error naming the field and why. Decoders take serialized messages so that
// callers outside xds/ never see a generated protobuf type.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "xds/config.h"

namespace ewgw::xds {

// Problems found while decoding. Each entry is "path: reason", the path in the resource's field
// names (e.g. "static_resources.listeners[0].filter_chains[2].filters[1]").
struct diagnostics {
  std::vector<std::string> errors;
  // Fields accepted but not applied, for one log line each.
  std::vector<std::string> notices;
  // Valid settings ewgw does not implement. Normally they are errors (a static bootstrap is
  // refused rather than routed differently); with `collect_unsupported` set they are collected
  // here instead, so a cluster received over xDS can be accepted as unusable rather than
  // rejecting (and freezing) the whole CDS update.
  std::vector<std::string> unsupported;
  bool collect_unsupported = false;
  // False when nobody reads the notices (resources received over xDS: ads_state reports errors
  // only). The decoders then skip building them: at 10,000 istiod clusters that was ~100,000
  // strings per full state, allocated and freed between the long-lived decoded resources.
  bool keep_notices = true;

  bool ok() const { return errors.empty(); }
  void error(std::string path, std::string_view why);
  void notice(std::string path, std::string_view why);
  void unsupported_setting(std::string path, std::string_view why);
};

// Result of loading a bootstrap file.
struct bootstrap_load_result {
  bootstrap_config config;
  diagnostics diag;
  // The bootstrap as parsed (a serialized envoy.config.bootstrap.v3.Bootstrap), for the admin
  // /config_dump (config_store::set_bootstrap). Set when the text parsed.
  std::shared_ptr<const std::string> bootstrap_proto;
};

// Loads an envoy.config.bootstrap.v3.Bootstrap from a YAML or JSON file (protobuf JSON mapping,
// Any as {"@type": ...}); errors name the file and the field.
bootstrap_load_result load_bootstrap_file(const std::string& path);
bootstrap_load_result load_bootstrap_text(std::string_view text, std::string_view origin);

// Cross-resource checks for a complete static configuration: unique names, clusters named by
// listeners exist (unless an ADS server may still provide them), unique listener addresses.
void validate_static_config(const bootstrap_config& config, diagnostics& diag);

}  // namespace ewgw::xds
