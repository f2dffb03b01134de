// xds::istio_service_list's builders and comparison (xds/config.h), out of line: config.h is
// included almost everywhere, and these run only when a cluster is decoded or compared. Copying
// and releasing stay inline: they are a reference count, taken with every copy of a cluster.
#include "xds/config.h"

#include <array>
#include <cstring>
#include <limits>
#include <optional>

namespace ewgw::xds {

istio_service_list::istio_service_list(const std::vector<istio_service>& services) : block_() {
  if (services.empty()) return;
  const std::size_t ends = 3 * services.size();
  std::size_t chars = 0;
  for (const istio_service& s : services) chars += s.host.size() + s.name.size() + s.namespace_.size();
  // One allocation for the reference count, the count, the end offsets and the texts.
  void* storage = ::operator new(sizeof(block) + ends * sizeof(std::uint32_t) + chars);
  auto* b = new (storage) block{{1}, static_cast<std::uint32_t>(services.size())};
  auto* end_of = new (static_cast<void*>(b + 1)) std::uint32_t[ends];
  char* out = reinterpret_cast<char*>(end_of + ends);
  std::uint32_t end = 0;
  std::size_t field = 0;
  for (const istio_service& s : services) {
    for (const std::string* t : {&s.host, &s.name, &s.namespace_}) {
      std::memcpy(out + end, t->data(), t->size());
      end += static_cast<std::uint32_t>(t->size());
      end_of[field++] = end;
    }
  }
  block_ = counted_handle<block>(b);
  form_ = form::block;
}

namespace {

// Where `service`'s host, name and namespace sit in `name` (begin and size of each), or nullopt
// when one is not part of it, or `name` is longer than one-byte offsets reach.
std::optional<std::array<std::uint8_t, 6>> offsets_in(const istio_service& service, std::string_view name) {
  constexpr std::size_t reach = std::numeric_limits<std::uint8_t>::max();
  if (name.size() > reach) return std::nullopt;
  std::array<std::uint8_t, 6> out{};
  std::size_t field = 0;
  for (const std::string* t : {&service.host, &service.name, &service.namespace_}) {
    const std::size_t at = name.find(*t);  // 0 for an empty text
    if (at == std::string_view::npos) return std::nullopt;
    out[field++] = static_cast<std::uint8_t>(at);
    out[field++] = static_cast<std::uint8_t>(t->size());
  }
  return out;
}

}  // namespace

istio_service_list::istio_service_list(const std::vector<istio_service>& services, const shared_string& cluster_name)
    : block_() {
  if (services.size() == 1) {
    if (auto offsets = offsets_in(services[0], cluster_name.view())) {
      block_.~counted_handle();  // empty: the name takes its place
      new (&name_) shared_string(cluster_name);
      form_ = form::name;
      offsets_ = *offsets;
      return;
    }
  }
  *this = istio_service_list(services);
}

bool istio_service_list::operator==(const istio_service_list& other) const {
  if (shares_with(other)) return true;
  const std::size_t n = size();
  if (n != other.size()) return false;
  for (std::size_t i = 0; i < n; ++i) {
    if (!((*this)[i] == other[i])) return false;
  }
  return true;
}

}  // namespace ewgw::xds
