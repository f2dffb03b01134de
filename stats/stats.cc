#include "stats/stats.h"

namespace ewgw::stats {

void registry::for_each_scope(const std::function<void(const scope&)>& fn) const {
  std::vector<std::shared_ptr<scope>> copy;
  {
    std::lock_guard lock(mu_);
    copy.reserve(scopes_.size());
    for (const auto& [k, s] : scopes_) copy.push_back(s);
  }
  for (const auto& s : copy) fn(*s);
  std::vector<scope_source> sources;
  {
    std::lock_guard lock(mu_);
    sources = sources_;
  }
  for (const scope_source& source : sources) source(fn);
}

void registry::add_source(scope_source source) {
  std::lock_guard lock(mu_);
  sources_.push_back(std::move(source));
}

std::map<std::string, std::int64_t> registry::totals() const {
  std::map<std::string, std::int64_t> out;
  for_each_scope([&](const scope& s) {
    s.for_each_total([&](const sample& m) { out[s.prefix() + std::string(m.name)] += m.value; });
    // Histograms appear as their sample count and sum (Envoy's /stats shows quantiles instead).
    s.for_each_histogram([&](const histogram_sample& h) {
      out[s.prefix() + std::string(h.name) + ".count"] += static_cast<std::int64_t>(h.count());
      out[s.prefix() + std::string(h.name) + ".sum"] += static_cast<std::int64_t>(h.sum);
    });
  });
  return out;
}

std::int64_t registry::value(std::string_view full_name) const {
  const auto all = totals();
  const auto it = all.find(std::string(full_name));
  return it == all.end() ? -1 : it->second;
}

}  // namespace ewgw::stats
