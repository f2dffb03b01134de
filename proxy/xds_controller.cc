#include "proxy/xds_controller.h"

namespace ewgw::proxy {

xds_controller::xds_controller(gateway& gw, const xds::bootstrap_config& bootstrap, xds::ads_client_options options)
    : gw_(gw),
      client_(std::make_unique<xds::ads_client>(
          bootstrap, [&gw](const xds::bootstrap_config& config) { return gw.apply(config); }, gw.stats(), options)) {}

xds_controller::~xds_controller() { stop(); }

void xds_controller::start() { client_->start(); }

void xds_controller::stop() { client_->stop(); }

bool xds_controller::ready() const { return gw_.ready() && client_->ready(); }

}  // namespace ewgw::proxy
