#include "stats/stats.h"

#include <algorithm>

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

totals_table registry::totals() const {
  // First pass: names appended to one buffer, entries as (offset, length, value); the views are
  // made once the buffer has stopped growing.
  struct raw {
    std::size_t offset;
    std::size_t length;
    std::int64_t value;
  };
  totals_table out;
  std::vector<raw> raws;
  auto add = [&](const std::string& prefix, std::string_view name, std::string_view suffix, std::int64_t value) {
    const std::size_t offset = out.names_.size();
    for (std::string_view part : {std::string_view(prefix), name, suffix}) {
      out.names_.insert(out.names_.end(), part.begin(), part.end());
    }
    raws.push_back({offset, out.names_.size() - offset, value});
  };
  for_each_scope([&](const scope& s) {
    s.for_each_total([&](const sample& m) { add(s.prefix(), m.name, {}, m.value); });
    // Histograms appear as their sample count and sum (Envoy's /stats shows quantiles instead).
    s.for_each_histogram([&](const histogram_sample& h) {
      add(s.prefix(), h.name, ".count", static_cast<std::int64_t>(h.count()));
      add(s.prefix(), h.name, ".sum", static_cast<std::int64_t>(h.sum));
    });
  });
  const std::string_view names(out.names_.data(), out.names_.size());
  auto name_of = [&](const raw& r) { return names.substr(r.offset, r.length); };
  std::sort(raws.begin(), raws.end(), [&](const raw& a, const raw& b) { return name_of(a) < name_of(b); });
  out.entries_.reserve(raws.size());
  for (const raw& r : raws) {
    // Two scopes can emit the same full name (e.g. a computed scope over a stored one): one
    // entry with the sum, as Envoy's /stats shows one line per name.
    if (!out.entries_.empty() && out.entries_.back().name == name_of(r)) {
      out.entries_.back().value += r.value;
    } else {
      out.entries_.push_back({name_of(r), r.value});
    }
  }
  return out;
}

const totals_table::entry* totals_table::find(std::string_view name) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), name,
                             [](const entry& e, std::string_view n) { return e.name < n; });
  return it != entries_.end() && it->name == name ? &*it : nullptr;
}

std::int64_t registry::value(std::string_view full_name) const {
  const totals_table all = totals();
  const auto* e = all.find(full_name);
  return e == nullptr ? -1 : e->value;
}

}  // namespace ewgw::stats
