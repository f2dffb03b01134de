// Wires the ADS client to a running gateway: every configuration the client assembles goes to
// gateway::apply(), and its refusals come back as NACKs.
//
// Threading: gateway::apply(), start() and stop() belong to one control thread at a time. The
// gateway is started (with the static part of the bootstrap) before start() here; from then on
// the xDS client's thread is the gateway's control thread, until stop() here returns. So the
// owner calls, in order: gateway::apply(static) -> gateway::start() -> xds_controller::start()
// ... xds_controller::stop() -> gateway::stop().
#pragma once

#include <memory>

#include "proxy/gateway.h"
#include "xds/ads_client.h"
#include "xds/config.h"

namespace ewgw::proxy {

class xds_controller {
 public:
  // `bootstrap.ads` must be set. Metrics go to the gateway's registry.
  xds_controller(gateway& gw, const xds::bootstrap_config& bootstrap, xds::ads_client_options options = {});
  ~xds_controller();
  xds_controller(const xds_controller&) = delete;
  xds_controller& operator=(const xds_controller&) = delete;

  void start();
  void stop();

  // The gateway is serving and the first CDS and LDS from the control plane are in force
  // (Istio's readiness: /healthz/ready on 15021).
  bool ready() const;
  xds::ads_client& client() { return *client_; }

 private:
  gateway& gw_;
  std::unique_ptr<xds::ads_client> client_;
};

}  // namespace ewgw::proxy
