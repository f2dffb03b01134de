#include "stats/prometheus.h"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <map>

namespace ewgw::stats {

std::string_view prometheus_label_for(std::string_view family) {
  if (family == "cluster") return "envoy_cluster_name";
  if (family == "listener") return "envoy_listener_address";
  if (family == "tcp") return "envoy_tcp_prefix";
  return "";
}

namespace {

// Prometheus metric names allow [a-zA-Z0-9_:]; Envoy replaces anything else with '_'.
std::string sanitize(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ':';
    if (!ok) c = '_';
  }
  return out;
}

std::string metric_name(const scope& s, std::string_view metric) {
  std::string name = "envoy_" + sanitize(s.family());
  if (prometheus_label_for(s.family()).empty() && !s.label().empty()) name += "_" + sanitize(s.label());
  if (!s.subsystem().empty()) name += "_" + sanitize(s.subsystem());
  name += "_";
  name += sanitize(metric);
  return name;
}

}  // namespace

std::string render_prometheus(const registry& r) {
  std::map<std::string, prometheus::MetricFamily> families;
  auto family_for = [&](const std::string& name, std::string_view help, prometheus::MetricType type) -> prometheus::MetricFamily& {
    auto [it, inserted] = families.try_emplace(name);
    if (inserted) {
      it->second.name = name;
      it->second.help = std::string(help);
      it->second.type = type;
    }
    return it->second;
  };
  r.for_each_scope([&](const scope& s) {
    std::vector<prometheus::ClientMetric::Label> labels;
    const auto* own_labels = s.prometheus_labels();
    if (own_labels != nullptr) {
      for (const auto& [name, value] : *own_labels) labels.push_back({name, value});
    } else {
      const std::string_view label_name = prometheus_label_for(s.family());
      if (!label_name.empty()) labels.push_back({std::string(label_name), s.label()});
    }
    s.for_each_total([&](const sample& m) {
      const bool counter = m.kind == metric_kind::counter;
      auto& f = family_for(own_labels != nullptr ? sanitize(m.name) : metric_name(s, m.name), m.help,
                           counter ? prometheus::MetricType::Counter : prometheus::MetricType::Gauge);
      prometheus::ClientMetric cm;
      cm.label = labels;
      if (counter) {
        cm.counter.value = static_cast<double>(m.value);
      } else {
        cm.gauge.value = static_cast<double>(m.value);
      }
      f.metric.push_back(std::move(cm));
    });
    s.for_each_histogram([&](const histogram_sample& h) {
      auto& f = family_for(metric_name(s, h.name), h.help, prometheus::MetricType::Histogram);
      prometheus::ClientMetric cm;
      cm.label = labels;
      std::uint64_t cumulative = 0;
      for (std::size_t i = 0; i < histogram_bucket_count; ++i) {
        cumulative += h.counts[i];
        cm.histogram.bucket.push_back({cumulative, default_histogram_bounds[i]});
      }
      cumulative += h.counts[histogram_bucket_count];
      cm.histogram.bucket.push_back({cumulative, std::numeric_limits<double>::infinity()});
      cm.histogram.sample_count = cumulative;
      cm.histogram.sample_sum = h.sum;
      f.metric.push_back(std::move(cm));
    });
  });
  std::vector<prometheus::MetricFamily> out;
  out.reserve(families.size());
  for (auto& [name, f] : families) out.push_back(std::move(f));
  return prometheus::TextSerializer().Serialize(out);
}

}  // namespace ewgw::stats
