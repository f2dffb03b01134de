// The gateway's configuration model: plain structs decoded from Envoy v3 resources
// (Bootstrap static_resources and resources received over xDS). This is the edge of the xds module:
// nothing here depends on protobuf, so lb/ and proxy/ never see a generated type.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <compare>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <iosfwd>
#include <limits>
#include <map>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "accesslog/config.h"

namespace ewgw::xds {

using std::chrono::milliseconds;

// Identifies one exact content of a listener or cluster, so that applying a configuration can
// keep what did not change (routing objects, their counters and balancer state) without
// comparing it field by field. The ADS client gives every new content a new revision; 0 means
// "unknown" (static configuration): always rebuilt. It never takes part in equality: two
// configurations are equal when their contents are.
struct revision_tag {
  std::uint64_t value = 0;
  bool operator==(const revision_tag&) const { return true; }
};

// The reference count behind the shared types below: an 8-byte handle to a heap block that
// starts with an atomic count (`refs`); `Block::destroy` frees a block whose count reached zero.
// A std::shared_ptr is a 16-byte handle and its make_shared block adds a 16-byte control block;
// these handles sit in every copy of every cluster, endpoint and chain (10,000 clusters hold
// tens of thousands). Copies are made and dropped on several threads (the xDS thread builds, the
// admin thread renders, workers drop snapshots), so taking a reference is a relaxed increment
// (the taker already holds one) and dropping one an acq_rel decrement, so that every holder's
// reads happen before the last holder destroys the block.
template <class Block>
class counted_handle {
 public:
  counted_handle() = default;
  // Takes over the first reference of a block made with a count of one.
  explicit counted_handle(Block* made) noexcept : block_(made) {}
  counted_handle(const counted_handle& other) noexcept : block_(other.block_) { acquire(block_); }
  counted_handle(counted_handle&& other) noexcept : block_(std::exchange(other.block_, nullptr)) {}
  counted_handle& operator=(const counted_handle& other) noexcept {
    acquire(other.block_);  // first, so that assigning a handle to itself keeps its block alive
    release(std::exchange(block_, other.block_));
    return *this;
  }
  counted_handle& operator=(counted_handle&& other) noexcept {
    if (this != &other) release(std::exchange(block_, std::exchange(other.block_, nullptr)));
    return *this;
  }
  ~counted_handle() { release(block_); }
  void swap(counted_handle& other) noexcept { std::swap(block_, other.block_); }
  Block* get() const { return block_; }
  // A relaxed read, like std::shared_ptr::use_count: 0 when empty.
  long use_count() const { return block_ ? static_cast<long>(block_->refs.load(std::memory_order_relaxed)) : 0; }
  // This handle is the block's only holder. An acquire read: when another thread has just
  // dropped its reference, its reads of the block happen before the caller changes it.
  bool unique() const { return block_ != nullptr && block_->refs.load(std::memory_order_acquire) == 1; }
  friend bool operator==(const counted_handle& a, const counted_handle& b) { return a.block_ == b.block_; }

 private:
  static void acquire(Block* b) noexcept {
    if (b) b->refs.fetch_add(1, std::memory_order_relaxed);
  }
  static void release(Block* b) noexcept {
    if (b && b->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) Block::destroy(b);
  }
  Block* block_ = nullptr;
};

// One heap block holding the count and a value: the storage of shared_value, shared_vector,
// shared_optional and shared_map.
template <class T>
class counted_ref {
 public:
  counted_ref() = default;
  template <class... Args>
  static counted_ref make(Args&&... args) {
    counted_ref r;
    r.handle_ = counted_handle<block>(new block(std::forward<Args>(args)...));
    return r;
  }
  void reset() noexcept { handle_ = counted_handle<block>(); }
  T* get() const { return handle_.get() ? &handle_.get()->value : nullptr; }
  explicit operator bool() const { return handle_.get() != nullptr; }
  long use_count() const { return handle_.use_count(); }
  bool unique() const { return handle_.unique(); }
  friend bool operator==(const counted_ref& a, const counted_ref& b) { return a.handle_ == b.handle_; }

 private:
  struct block {
    template <class... Args>
    explicit block(Args&&... args) : value(std::forward<Args>(args)...) {}
    static void destroy(block* b) { delete b; }
    std::atomic<std::uint32_t> refs{1};
    T value;
  };
  counted_handle<block> handle_;
};

// An optional value kept out of line, for members that most configurations leave unset: an
// unset one costs a pointer instead of the value's full size in every copy (10,000
// clusters carry an outlier_detection_config slot each). Copies share the immutable value;
// equality compares contents, as std::optional's does.
template <class T>
class shared_optional {
 public:
  shared_optional() = default;
  shared_optional(T value) : value_(counted_ref<const T>::make(std::move(value))) {}  // NOLINT: like optional
  shared_optional& operator=(T value) {
    value_ = counted_ref<const T>::make(std::move(value));
    return *this;
  }
  bool has_value() const { return static_cast<bool>(value_); }
  explicit operator bool() const { return has_value(); }
  const T& operator*() const { return *value_.get(); }
  const T* operator->() const { return value_.get(); }
  void reset() { value_.reset(); }
  bool operator==(const shared_optional& other) const {
    if (!value_ || !other.value_) return !value_ && !other.value_;
    return value_ == other.value_ || *value_.get() == *other.value_.get();
  }

 private:
  counted_ref<const T> value_;
};

// An immutable value whose copies share one allocation, for values that repeat across many
// resources (every endpoint group of a mesh names one of a few localities; istiod gives all its
// SNI-DNAT clusters the same settings): 8 bytes per holder, and ads_state hands equal values one
// copy. Never null: an unset holder reads as a default-constructed T. Reads like a const T;
// equality compares contents. Builders (the decoder, tests) change it through edit().
template <class T>
class shared_value {
 public:
  shared_value() = default;
  // The block holds a non-const T, so that edit() may change it while this holder is its only
  // one.
  shared_value(T value) : value_(counted_ref<T>::make(std::move(value))) {}  // NOLINT: built from a T
  const T& get() const { return value_ ? *value_.get() : default_value(); }
  operator const T&() const { return get(); }  // NOLINT: reads as the value
  const T& operator*() const { return get(); }
  const T* operator->() const { return &get(); }
  // The value to change, copied first unless this holder is its only one (a published value,
  // shared with others, is never changed). Repeated edits of a fresh value copy nothing.
  // Builders only (the decoder, ads_state while staging).
  T& edit() {
    if (!value_.unique()) value_ = counted_ref<T>::make(get());
    return *value_.get();
  }
  bool shares_with(const shared_value& other) const { return value_ == other.value_; }
  friend bool operator==(const shared_value& a, const shared_value& b) {
    return a.value_ == b.value_ || a.get() == b.get();
  }

 private:
  static const T& default_value() {
    static const T value{};
    return value;
  }
  counted_ref<T> value_;
};

// An immutable list whose copies share one allocation, for lists that repeat across many
// resources (Istio puts the same five ALPNs on each of a listener's thousands of chains; the
// decoder hands equal lists one shared copy). Reads like a const std::vector; equality compares
// contents.
template <class T>
class shared_vector {
 public:
  shared_vector() = default;
  shared_vector(std::vector<T> items)  // NOLINT: built from a vector like one
      : items_(items.empty() ? counted_ref<const std::vector<T>>()
                             : counted_ref<const std::vector<T>>::make(std::move(items))) {}
  shared_vector(std::initializer_list<T> items) : shared_vector(std::vector<T>(items)) {}
  const std::vector<T>& get() const { return items_ ? *items_.get() : empty_; }
  operator const std::vector<T>&() const { return get(); }  // NOLINT: reads as the vector
  auto begin() const { return get().begin(); }
  auto end() const { return get().end(); }
  std::size_t size() const { return get().size(); }
  bool empty() const { return get().empty(); }
  const T& operator[](std::size_t i) const { return get()[i]; }
  bool shares_with(const shared_vector& other) const { return items_ == other.items_; }
  bool operator==(const shared_vector& other) const { return items_ == other.items_ || get() == other.get(); }

 private:
  static inline const std::vector<T> empty_{};
  counted_ref<const std::vector<T>> items_;
};

// ASCII lower case: server names compare without regard to case (RFC 6066 section 3; DNS,
// RFC 4343), so the decoder stores them lower-cased and lookups lower-case what they look up.
inline std::string ascii_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// An immutable string whose copies share one heap block, for the names an Istio SNI-DNAT
// configuration repeats: istiod gives a cluster, its EDS service, the chain's server name and the
// chain's tcp_proxy cluster and stat_prefix the same ~50-character name, and the decoder and
// ads_state indexes hand all of them one copy. The block is intrusive, one allocation holding
// the reference count, the length and the text (NUL-terminated, so c_str() needs no copy), and a
// reference is one pointer: 8 bytes per reference, and one ~64-byte request (an 80-byte malloc
// chunk) per name, where a std::shared_ptr<const std::string> took 16 bytes per reference, a
// 64-byte chunk for make_shared's control block and string, and another for a text longer than
// the string's inline buffer. Empty is a null handle with no block. Reads like a const string
// (view(), data(), size(), c_str(), conversion to std::string_view); build a std::string with
// std::string(s.view()) where one is needed. Equality and order compare contents. Copies are
// made and dropped on several threads: the count is counted_handle's.
class shared_string {
 public:
  shared_string() = default;
  explicit shared_string(std::string_view s) : block_(make_block(s)) {}
  shared_string(const std::string& s) : block_(make_block(s)) {}  // NOLINT: built from a string like one
  shared_string(const char* s) : block_(s == nullptr ? counted_handle<block>() : make_block(s)) {}  // NOLINT: null is empty
  void swap(shared_string& other) noexcept { block_.swap(other.block_); }
  friend void swap(shared_string& a, shared_string& b) noexcept { a.swap(b); }

  std::string_view view() const {
    const block* b = block_.get();
    return b ? std::string_view(text_of(b), b->size) : std::string_view();
  }
  operator std::string_view() const { return view(); }  // NOLINT: reads as the string
  const char* c_str() const { return block_.get() ? text_of(block_.get()) : ""; }
  const char* data() const { return c_str(); }
  std::size_t size() const { return block_.get() ? block_.get()->size : 0; }
  std::size_t length() const { return size(); }
  bool empty() const { return block_.get() == nullptr; }
  const char* begin() const { return data(); }
  const char* end() const { return data() + size(); }
  char operator[](std::size_t i) const { return data()[i]; }
  bool shares_with(const shared_string& other) const { return block_ == other.block_; }
  // How many shared_strings reference this one's block (0 when empty): for tests that a holder
  // shares a name instead of copying it, and keeps it alive. A relaxed read, like
  // std::shared_ptr::use_count.
  long use_count() const { return block_.use_count(); }
  // Takes `other`'s block when the contents are equal, so this copy costs no heap of its own.
  void share_if_equal(const shared_string& other) {
    if (!(block_ == other.block_) && view() == other.view()) *this = other;
  }

  friend bool operator==(const shared_string& a, const shared_string& b) {
    return a.block_ == b.block_ || a.view() == b.view();
  }
  friend bool operator==(const shared_string& a, const std::string& b) { return a.view() == b; }
  friend bool operator==(const shared_string& a, std::string_view b) { return a.view() == b; }
  friend bool operator==(const shared_string& a, const char* b) { return a.view() == std::string_view(b); }
  friend auto operator<=>(const shared_string& a, const shared_string& b) { return a.view() <=> b.view(); }
  friend auto operator<=>(const shared_string& a, const std::string& b) { return a.view() <=> std::string_view(b); }
  friend auto operator<=>(const shared_string& a, std::string_view b) { return a.view() <=> b; }
  friend auto operator<=>(const shared_string& a, const char* b) { return a.view() <=> std::string_view(b); }
  friend std::string operator+(const shared_string& a, std::string_view b) {
    std::string out;
    out.reserve(a.size() + b.size());
    return out.append(a.view()).append(b);
  }
  friend std::string operator+(const shared_string& a, const std::string& b) { return a + std::string_view(b); }
  friend std::string operator+(const shared_string& a, const char* b) { return a + std::string_view(b); }
  friend std::string operator+(const std::string& a, const shared_string& b) { return std::string(a).append(b.view()); }
  friend std::string operator+(std::string&& a, const shared_string& b) { return std::move(a.append(b.view())); }
  friend std::string operator+(const char* a, const shared_string& b) { return std::string(a).append(b.view()); }
  template <class Char, class Traits>
  friend std::basic_ostream<Char, Traits>& operator<<(std::basic_ostream<Char, Traits>& os, const shared_string& s) {
    return os << s.view();
  }

 private:
  // The text follows the header in the same allocation.
  struct block {
    std::atomic<std::uint32_t> refs;
    std::uint32_t size;
    static void destroy(block* b) {
      b->~block();
      ::operator delete(b);
    }
  };
  static const char* text_of(const block* b) { return reinterpret_cast<const char*>(b + 1); }
  static counted_handle<block> make_block(std::string_view s) {
    if (s.empty()) return {};
    // A name is at most a few hundred bytes; the 32-bit length keeps the header at 8 bytes.
    if (s.size() >= std::numeric_limits<std::uint32_t>::max()) throw std::length_error("shared_string: text too long");
    void* memory = ::operator new(sizeof(block) + s.size() + 1);
    block* b = ::new (memory) block{{1}, static_cast<std::uint32_t>(s.size())};
    char* text = reinterpret_cast<char*>(b + 1);
    std::memcpy(text, s.data(), s.size());
    text[s.size()] = '\0';
    return counted_handle<block>(b);
  }
  counted_handle<block> block_;
};

// An immutable map whose copies share one allocation, for metadata that repeats across many
// resources (every istiod SNI-DNAT cluster carries filter_metadata["istio"]
// {default_original_port: ...}; ads_state hands equal maps one copy). Reads like a const
// std::map; equality compares contents.
template <class K, class V>
class shared_map {
 public:
  using map_type = std::map<K, V>;
  shared_map() = default;
  shared_map(map_type items)  // NOLINT: built from a map like one
      : items_(items.empty() ? counted_ref<const map_type>() : counted_ref<const map_type>::make(std::move(items))) {}
  const map_type& get() const { return items_ ? *items_.get() : empty_; }
  operator const map_type&() const { return get(); }  // NOLINT: reads as the map
  auto begin() const { return get().begin(); }
  auto end() const { return get().end(); }
  auto find(const K& key) const { return get().find(key); }
  const V& at(const K& key) const { return get().at(key); }
  bool contains(const K& key) const { return get().contains(key); }
  std::size_t size() const { return get().size(); }
  bool empty() const { return get().empty(); }
  bool shares_with(const shared_map& other) const { return items_ == other.items_; }
  bool operator==(const shared_map& other) const { return items_ == other.items_ || get() == other.get(); }

 private:
  static inline const map_type empty_{};
  counted_ref<const map_type> items_;
};

// Heterogeneous hashing for indexes keyed by shared_string (lookups by std::string or
// string_view without building a key).
struct shared_string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  std::size_t operator()(const shared_string& s) const { return std::hash<std::string_view>{}(s.view()); }
  std::size_t operator()(const std::string& s) const { return std::hash<std::string_view>{}(s); }
};

struct socket_address {
  std::string address;  // numeric IPv4 or IPv6 literal
  std::uint16_t port = 0;
  // For an IPv6 listener address: also accept IPv4 (Envoy binds IPv6-only unless set).
  bool ipv4_compat = false;
  bool operator==(const socket_address&) const = default;
};

// envoy.config.listener.v3.FilterChainMatch, the criteria we support other than server_names
// (which filter_chain_config holds itself, see there). Empty means "any".
struct filter_chain_match {
  std::optional<std::uint16_t> destination_port;
  // "tls" or "raw_buffer" as set by tls_inspector; empty matches both. Shared: the decoder hands
  // every chain one copy of each of the two values.
  shared_string transport_protocol;
  // Shared: chains of a listener whose settings differ still share equal lists.
  shared_vector<std::string> application_protocols;
  bool operator==(const filter_chain_match&) const = default;
};

// A short list of shared_strings, in order, whose usual length is one: that one is held inline
// and costs no heap block; a list of more keeps them all in a vector out of line (`more_`, null
// otherwise). Reads like a const vector of shared_string. Copies copy the names (references).
// Used where 10,000 istiod resources each hold one name: a chain's server names (its cluster's
// name) and the clusters using an EDS service (ads_state).
class shared_string_list {
 public:
  shared_string_list() = default;
  shared_string_list(std::initializer_list<shared_string> names) {
    for (const shared_string& n : names) push_back(n);
  }
  shared_string_list(const shared_string_list& other) { *this = other; }
  shared_string_list& operator=(const shared_string_list& other) {
    if (this != &other) {
      one_ = other.one_;
      more_ = other.more_ ? std::make_unique<std::vector<shared_string>>(*other.more_) : nullptr;
    }
    return *this;
  }
  shared_string_list(shared_string_list&&) noexcept = default;
  shared_string_list& operator=(shared_string_list&&) noexcept = default;
  const shared_string* begin() const { return more_ ? more_->data() : &one_; }
  const shared_string* end() const { return begin() + size(); }
  std::size_t size() const { return more_ ? more_->size() : (one_.empty() ? 0 : 1); }
  bool empty() const { return size() == 0; }
  const shared_string& operator[](std::size_t i) const { return begin()[i]; }
  bool contains(std::string_view name) const {
    return std::find_if(begin(), end(), [&](const shared_string& n) { return n.view() == name; }) != end();
  }
  // An empty `one_` means "no name inline", so an empty name goes to the vector: the list still
  // holds exactly what was pushed.
  void push_back(shared_string name) {
    if (!more_ && one_.empty() && !name.empty()) {
      one_ = std::move(name);
      return;
    }
    if (!more_) {
      more_ = std::make_unique<std::vector<shared_string>>();
      if (!one_.empty()) more_->push_back(std::move(one_));
      one_ = shared_string();
    }
    more_->push_back(std::move(name));
  }
  // Removes the first name equal to `name`, if any; a list left with one non-empty name holds it
  // inline again.
  void remove(std::string_view name) {
    if (!more_) {
      if (!one_.empty() && one_.view() == name) one_ = shared_string();
      return;
    }
    auto it = std::find_if(more_->begin(), more_->end(), [&](const shared_string& n) { return n.view() == name; });
    if (it != more_->end()) more_->erase(it);
    if (more_->size() == 1 && !more_->front().empty()) {
      one_ = std::move(more_->front());
      more_.reset();
    } else if (more_->empty()) {
      more_.reset();
    }
  }
  // The names, to replace one in place by an equal copy (sharing another holder's block).
  shared_string* begin() { return more_ ? more_->data() : &one_; }
  shared_string* end() { return begin() + size(); }
  void clear() {
    one_ = shared_string();
    more_.reset();
  }
  friend bool operator==(const shared_string_list& a, const shared_string_list& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end());
  }

 private:
  shared_string one_;
  std::unique_ptr<std::vector<shared_string>> more_;
};

// FilterChainMatch.server_names of one chain: exact names and "*.suffix" wildcards,
// lower-cased. An istiod chain has exactly one, its cluster's name (shared with it).
using server_name_list = shared_string_list;

struct weighted_cluster {
  std::string name;
  std::uint32_t weight = 0;
  bool operator==(const weighted_cluster&) const = default;
};

// envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy (+ sni_cluster in front of it), the
// settings other than cluster and stat_prefix (which filter_chain_config holds itself, see
// there).
struct tcp_proxy_config {
  std::vector<weighted_cluster> weighted_clusters;  // set instead of a cluster
  // Envoy default 1h; zero disables the idle timeout.
  milliseconds idle_timeout{std::chrono::hours(1)};
  // Zero: no limit.
  milliseconds max_downstream_connection_duration{0};
  // Envoy default 1, minimum 1.
  std::uint32_t max_connect_attempts = 1;
  // An envoy.filters.network.sni_cluster filter precedes tcp_proxy: a non-empty SNI names the
  // cluster; an empty SNI falls back to `cluster` / `weighted_clusters`. (Declared after the
  // 4-byte field: no padding hole.)
  bool cluster_from_sni = false;
  // access_log: one line per connection when it closes.
  accesslog::logger_list access_logs;
  bool operator==(const tcp_proxy_config&) const = default;
};

// What a chain shares with the other chains of its listener: its match criteria other than the
// server names, and its tcp_proxy settings other than the cluster and stat_prefix. An istiod
// east-west listener has a chain per service (10,000) and these are equal on all of them, so
// they sit in one immutable block that equal chains share (the decoder hands the chains of a
// listener one copy, see decode_listener): a chain holds an 8-byte reference instead of ~130
// bytes of equal values.
struct filter_chain_settings {
  filter_chain_match match;
  tcp_proxy_config tcp_proxy;
  bool operator==(const filter_chain_settings&) const = default;
};

// One FilterChain: inline only what differs from chain to chain (an istiod chain's server name,
// tcp_proxy cluster and stat_prefix, all three its cluster's name and sharing one string with it,
// and the chain's name, which Envoy wants unique on a listener), the rest in the shared
// `settings` block. Read as chain.settings->tcp_proxy.idle_timeout; builders change it as
// chain.settings.edit().tcp_proxy.idle_timeout = ...
struct filter_chain_config {
  shared_string name;  // a reference, not a string per chain: istiod's SNI chains leave it empty
  // FilterChainMatch.server_names (see server_name_list).
  server_name_list server_names;
  // TcpProxy.cluster: set when not weighted.
  shared_string cluster;
  // TcpProxy.stat_prefix: istiod sets it to the chain's cluster name.
  shared_string stat_prefix;
  shared_value<filter_chain_settings> settings;
  bool operator==(const filter_chain_config&) const = default;
};

struct listener_config {
  std::string name;
  socket_address address;
  bool tls_inspector = false;
  // Envoy default 15s; zero disables the timeout.
  milliseconds listener_filters_timeout{15000};
  // On timeout, route with what is known (no SNI) instead of closing.
  bool continue_on_listener_filters_timeout = false;
  std::vector<filter_chain_config> filter_chains;
  std::optional<filter_chain_config> default_filter_chain;
  // Listener.access_log: every connection the listener accepted, including those closed before
  // a filter chain took them (no chain matched: response flag NR; ClientHello failures).
  accesslog::logger_list access_logs;
  // Listeners received over xDS only: non-empty when the listener uses filters or settings ewgw
  // does not implement (e.g. an http_connection_manager for an HTTP Gateway server bound to the
  // same pods). Such a listener is accepted, so that the rest of the LDS update applies, but it
  // is not part of the assembled configuration and so is never bound (its port refuses
  // connections). The text says why; it has no chains.
  std::string unsupported;
  revision_tag revision;
  bool operator==(const listener_config&) const = default;
};

// envoy.config.core.v3.HealthStatus, numbered as in the proto.
enum class health_status : std::uint8_t {
  unknown = 0,
  healthy = 1,
  unhealthy = 2,
  draining = 3,
  timeout = 4,
  degraded = 5,
};

struct locality {
  shared_string region;
  shared_string zone;
  shared_string sub_zone;
  auto operator<=>(const locality&) const = default;
};

// A numeric IP address as its 16 bytes (network order; IPv4 in the first 4), not as text: the
// decoder accepts only numeric literals for endpoints, so an endpoint needs no 32-byte
// std::string (30,000 of them in a 10,000-cluster mesh). 17 bytes and byte-aligned, so that
// endpoint_config packs its small fields next to it.
struct ip_address {
  std::array<std::uint8_t, 16> bytes{};
  bool ipv6 = false;

  // A numeric IPv4 or IPv6 literal (inet_pton); nullopt when `text` is not one.
  static std::optional<ip_address> parse(const std::string& text);
  // The canonical text (inet_ntop): the parsed text itself for dotted-quad IPv4 and for IPv6 in
  // its canonical form (RFC 5952: lower case, longest zero run as "::"); other IPv6 spellings
  // come back canonical ("2001:DB8:0:0::1" as "2001:db8::1").
  std::string str() const;
  bool operator==(const ip_address&) const = default;
};

struct endpoint_config {
  // The fields are ordered to leave no padding: 40 bytes (10,000 clusters x 3 endpoints stay
  // in ads_state for as long as their assignment stands).
  ip_address ip;
  health_status health = health_status::unknown;
  std::uint16_t port = 0;
  std::uint32_t weight = 1;  // load_balancing_weight, default 1
  // metadata.filter_metadata["envoy.transport_socket_match"] string fields (e.g. Istio's
  // tlsMode: istio). Kept only for clusters that select transports by it.
  // Shared: one pointer (unset for most clusters) instead of a vector per endpoint; the
  // decoder hands equal lists of one assignment one copy.
  shared_vector<std::pair<std::string, std::string>> transport_socket_match;

  // For builders (tests, benchmarks): an endpoint at a numeric address; an empty address (0.0.0.0)
  // when `ip` is not one.
  static endpoint_config at(const std::string& ip, std::uint16_t port) {
    endpoint_config e;
    e.ip = ip_address::parse(ip).value_or(ip_address{});
    e.port = port;
    return e;
  }
  bool operator==(const endpoint_config&) const = default;
};

struct locality_endpoints_config {
  // Shared: every endpoint group of a 10,000-cluster mesh names one of a few localities, and
  // ads_state hands equal ones one copy (8 bytes per group instead of three shared_strings).
  shared_value<locality> where;
  std::uint32_t priority = 0;
  std::uint32_t weight = 0;  // locality load_balancing_weight; 0 when unset
  std::vector<endpoint_config> endpoints;
  bool operator==(const locality_endpoints_config&) const = default;
};

// envoy.config.endpoint.v3.ClusterLoadAssignment
// Its cluster_name is not kept: a cluster's own name or eds_service_name says whose it is, and
// nothing reads it (16 bytes less per cluster in force).
struct load_assignment_config {
  std::vector<locality_endpoints_config> localities;
  std::uint32_t overprovisioning_factor = 140;
  bool operator==(const load_assignment_config&) const = default;
};

enum class lb_policy : std::uint8_t { round_robin, least_request, random };

enum class discovery_type : std::uint8_t { static_, eds };

// envoy.config.cluster.v3.Cluster.TransportSocketMatch: endpoints whose
// envoy.transport_socket_match metadata has every `match` entry use its transport socket.
// ewgw relays bytes and originates no TLS, so it can only use endpoints whose selected
// transport is plaintext (raw_buffer).
struct transport_socket_match_config {
  std::string name;
  std::vector<std::pair<std::string, std::string>> match;
  bool plaintext = false;  // raw_buffer; otherwise (TLS) its endpoints are not used
  bool operator==(const transport_socket_match_config&) const = default;
};

// envoy.config.cluster.v3.OutlierDetection with Envoy's defaults (outlier_detection.proto).
// Decoded from xDS so the outlier detector (lb/) can be wired to it; not applied yet.
struct outlier_detection_config {
  std::uint32_t consecutive_5xx = 5;
  milliseconds interval{10000};
  milliseconds base_ejection_time{30000};
  std::uint32_t max_ejection_percent = 10;
  std::uint32_t enforcing_consecutive_5xx = 100;
  std::uint32_t enforcing_success_rate = 100;
  std::uint32_t success_rate_minimum_hosts = 5;
  std::uint32_t success_rate_request_volume = 100;
  std::uint32_t success_rate_stdev_factor = 1900;
  std::uint32_t consecutive_gateway_failure = 5;
  std::uint32_t enforcing_consecutive_gateway_failure = 0;
  bool split_external_local_origin_errors = false;
  std::uint32_t consecutive_local_origin_failure = 5;
  std::uint32_t enforcing_consecutive_local_origin_failure = 100;
  std::uint32_t enforcing_local_origin_success_rate = 100;
  std::uint32_t failure_percentage_threshold = 85;
  std::uint32_t enforcing_failure_percentage = 0;
  std::uint32_t enforcing_failure_percentage_local_origin = 0;
  std::uint32_t failure_percentage_minimum_hosts = 5;
  std::uint32_t failure_percentage_request_volume = 50;
  milliseconds max_ejection_time{300000};
  milliseconds max_ejection_time_jitter{0};
  bool successful_active_health_check_uneject_host = true;
  bool operator==(const outlier_detection_config&) const = default;
};

// One entry of the `services` list istiod puts in a cluster's filter_metadata["istio"]: the
// Kubernetes service (or ServiceEntry host) the cluster leads to. Istio's stats filter takes the
// first one for its destination_service* labels.
struct istio_service {
  std::string host;        // e.g. "helloworld.sample.svc.cluster.local"
  std::string name;        // e.g. "helloworld"
  std::string namespace_;  // e.g. "sample"
  bool operator==(const istio_service&) const = default;
};

// A cluster's Istio services, immutable, shared by its copies (the cluster's versions, warming
// and in force with each new assignment, and the routing snapshot's telemetry labels). Two forms,
// equal when their texts are equal:
// - Name-derived, for istiod's clusters: their one service's texts are parts of the cluster's own
//   name (cluster "outbound_.8080_._.svc-42.ns-7.svc.cluster.local" has {host
//   "svc-42.ns-7.svc.cluster.local", name "svc-42", namespace "ns-7"}), so the list holds a
//   reference to that name (a shared_string copy: a reference count, no new block) and the
//   offsets of the three texts in it. No heap block of its own: a block cost ~107 bytes per
//   istiod cluster.
// - A block otherwise (several services, or texts that are not parts of the name, as a
//   ServiceEntry's may be): one allocation holding an atomic reference count, the count, the end
//   offsets of each text and then the texts.
// Size: sizeof(shared_string) + 8 (the form and six one-byte offsets), static_asserted below: 16
// bytes with an 8-byte shared_string handle. A name longer than 255 characters, which the
// one-byte offsets cannot address, takes the block form.
class istio_service_list {
 public:
  struct view {
    std::string_view host;
    std::string_view name;
    std::string_view namespace_;
    bool operator==(const view&) const = default;
    friend bool operator==(const view& v, const istio_service& s) {
      return v.host == s.host && v.name == s.name && v.namespace_ == s.namespace_;
    }
    template <class Char, class Traits>
    friend std::basic_ostream<Char, Traits>& operator<<(std::basic_ostream<Char, Traits>& os, const view& v) {
      return os << "{" << v.host << ", " << v.name << ", " << v.namespace_ << "}";
    }
  };

  istio_service_list() noexcept : block_() {}
  // Always the block form. Offsets are 32-bit: a cluster's texts come from one protobuf message,
  // which is under 2 GiB.
  explicit istio_service_list(const std::vector<istio_service>& services);
  // The name-derived form when `services` is one service whose texts are all parts of
  // `cluster_name` (then this list keeps `cluster_name`'s block alive, so pass the name the
  // cluster keeps), else the block form.
  istio_service_list(const std::vector<istio_service>& services, const shared_string& cluster_name);
  istio_service_list(std::initializer_list<istio_service> services)
      : istio_service_list(std::vector<istio_service>(services)) {}
  istio_service_list(const istio_service_list& other) noexcept : form_(other.form_), offsets_(other.offsets_) {
    copy_reference(other);
  }
  istio_service_list(istio_service_list&& other) noexcept : form_(other.form_), offsets_(other.offsets_) {
    move_reference(other);
  }
  istio_service_list& operator=(const istio_service_list& other) noexcept {
    if (this != &other) {
      end_reference();
      form_ = other.form_;
      offsets_ = other.offsets_;
      copy_reference(other);
    }
    return *this;
  }
  istio_service_list& operator=(istio_service_list&& other) noexcept {
    if (this != &other) {
      end_reference();
      form_ = other.form_;
      offsets_ = other.offsets_;
      move_reference(other);
    }
    return *this;
  }
  ~istio_service_list() { end_reference(); }

  std::size_t size() const {
    switch (form_) {
      case form::block: return block_.get()->count;
      case form::name: return 1;
      case form::empty: break;
    }
    return 0;
  }
  bool empty() const { return form_ == form::empty; }
  // The views stay valid as long as this list (or a copy) lives: the texts are immutable.
  view operator[](std::size_t i) const {
    if (form_ == form::name) {
      const char* text = name_.data();
      return {{text + offsets_[0], offsets_[1]}, {text + offsets_[2], offsets_[3]}, {text + offsets_[4], offsets_[5]}};
    }
    return {block_text(3 * i), block_text(3 * i + 1), block_text(3 * i + 2)};
  }
  // Whether the two hold the same texts by reference (copies of one list).
  bool shares_with(const istio_service_list& other) const {
    if (form_ != other.form_) return false;
    if (form_ == form::name) return name_.shares_with(other.name_) && offsets_ == other.offsets_;
    return block_ == other.block_;
  }
  // Whether this list takes its texts from `cluster_name`'s block (the name-derived form), for
  // tests that a cluster's list costs no copy of its name.
  bool derived_from(const shared_string& cluster_name) const {
    return form_ == form::name && name_.shares_with(cluster_name);
  }
  bool operator==(const istio_service_list& other) const;
  // A name-derived list takes its texts from `cluster_name` instead when it holds an equal name
  // in another block (ads_state hands a changed version of a cluster the name its index keeps).
  void rebase(const shared_string& cluster_name) {
    if (form_ == form::name && !name_.shares_with(cluster_name) && name_.view() == cluster_name.view()) {
      name_ = cluster_name;
    }
  }

 private:
  // The block form's allocation: this header, then 3 * count end offsets (32-bit, after the
  // header's 8 bytes: aligned), then the texts. Released by its last list on any thread
  // (counted_handle).
  struct block {
    std::atomic<std::uint32_t> refs;
    std::uint32_t count;
    static void destroy(block* b) {
      b->~block();
      ::operator delete(b);
    }
  };
  enum class form : std::uint8_t { empty, name, block };

  std::string_view block_text(std::size_t k) const {
    const auto* ends = reinterpret_cast<const std::uint32_t*>(block_.get() + 1);
    const char* texts = reinterpret_cast<const char*>(ends + 3 * block_.get()->count);
    const std::uint32_t begin = k == 0 ? 0 : ends[k - 1];
    return {texts + begin, ends[k] - begin};
  }
  // Each starts the member of form_ (none is alive before).
  void copy_reference(const istio_service_list& other) noexcept {
    if (form_ == form::name) {
      new (&name_) shared_string(other.name_);
    } else {
      new (&block_) counted_handle<block>(other.block_);
    }
  }
  // Takes `other`'s reference and leaves it empty.
  void move_reference(istio_service_list& other) noexcept {
    if (form_ == form::name) {
      new (&name_) shared_string(std::move(other.name_));
    } else {
      new (&block_) counted_handle<block>(std::move(other.block_));
    }
    other.end_reference();
    new (&other.block_) counted_handle<block>();
    other.form_ = form::empty;
  }
  // Ends the life of the member of form_ (dropping its reference); the caller starts one again
  // or the list is gone.
  void end_reference() noexcept {
    if (form_ == form::name) {
      name_.~shared_string();
    } else {
      block_.~counted_handle();
    }
  }

  union {
    shared_string name_;           // form::name
    counted_handle<block> block_;  // form::block (non-null) and form::empty (null)
  };
  form form_ = form::empty;
  // form::name: begin and size of host, name and namespace in name_.
  std::array<std::uint8_t, 6> offsets_{};
};
static_assert(sizeof(istio_service_list) == sizeof(shared_string) + 8, "held by every copy of a cluster");

// The settings of a cluster that a control plane gives all its clusters of one kind alike:
// istiod's 10,000 SNI-DNAT clusters differ only by name (and endpoints and services). They sit in
// one immutable block that ads_state interns (see shared_value), so that each cluster holds an
// 8-byte reference instead of ~100 bytes of equal values. The four-byte and one-byte fields are
// declared together: no padding holes.
struct cluster_settings {
  lb_policy policy = lb_policy::round_robin;
  bool locality_weighted = false;
  std::uint32_t least_request_choice_count = 2;
  milliseconds connect_timeout{5000};  // Envoy default 5s
  // least_request_lb_config.active_request_bias.default_value (Envoy default 1.0): a weighted
  // least-request host's effective weight is weight / (active + 1)^bias.
  double least_request_active_request_bias = 1.0;
  std::uint32_t healthy_panic_threshold_percent = 50;
  // circuit_breakers.thresholds (default priority) max_connections; Envoy default 1024.
  std::uint32_t max_connections = 1024;
  // filter_metadata["istio"] string fields (e.g. default_original_port). Shared: equal across
  // istiod's clusters.
  shared_map<std::string, std::string> istio_metadata;
  // Rarely set (Istio sets it only from a DestinationRule): kept out of line.
  shared_optional<outlier_detection_config> outlier_detection;
  // Clusters received over xDS only (Istio's auto mTLS: tlsMode-istio -> TLS, else plaintext).
  // An endpoint matching none uses the cluster's own transport, plaintext.
  std::vector<transport_socket_match_config> transport_socket_matches;
  // Clusters received over xDS only: non-empty when the cluster uses settings ewgw does not
  // implement (e.g. Istio's ordinary outbound|port||host clusters with transport_socket_matches).
  // Such a cluster is accepted so that the rest of the CDS update applies, but connections
  // routed to it are closed and counted (upstream_cx_unsupported_config). The text says why.
  shared_string unsupported;
  bool operator==(const cluster_settings&) const = default;
};

struct cluster_config {
  // Shared with the chains and indexes that name the cluster (see shared_string).
  shared_string name;
  shared_string eds_service_name;  // for EDS: the name to subscribe to (defaults to `name`), shared with it
  load_assignment_config load_assignment;
  // filter_metadata["istio"].services, in order (Istio's telemetry uses the first). Shared: the
  // cluster's versions (warming, in force with each new assignment) and the routing snapshot's
  // telemetry labels hold one copy, not one each (~150 bytes per istiod cluster). For istiod's
  // clusters it references `name`'s block (see istio_service_list): code that replaces `name`
  // with an equal string of another block should rebuild the list on the new one, or the list
  // keeps the old block alive.
  istio_service_list istio_services;
  // Everything else the cluster sets; read as settings->x, changed (by builders) as
  // settings.edit().x.
  shared_value<cluster_settings> settings;
  revision_tag revision;
  discovery_type type = discovery_type::static_;
  // Received over xDS (CDS) rather than from the bootstrap (admin /clusters: added_via_api).
  bool added_via_api = false;
  bool operator==(const cluster_config&) const = default;
};

struct node_config {
  std::string id;
  std::string cluster;
  locality where;
  // node.metadata (a google.protobuf.Struct) in its JSON form, sent to the control plane as
  // is; empty when unset.
  std::string metadata_json;
  // The metadata Istio's stats filter reads to describe the proxy itself (its source_* labels
  // on a gateway): WORKLOAD_NAME, NAMESPACE, CLUSTER_ID, and LABELS app, version,
  // service.istio.io/canonical-name and canonical-revision. Empty when absent.
  struct istio_identity {
    std::string workload_name;
    std::string namespace_;
    std::string cluster_id;
    std::string app;
    std::string version;
    std::string canonical_name;
    std::string canonical_revision;
  } istio;
};

// One gRPC metadata entry sent on the xDS stream (GrpcService.initial_metadata).
struct grpc_header {
  std::string key;  // lower-case, as HTTP/2 requires
  std::string value;
  bool operator==(const grpc_header&) const = default;
};

// The xDS transport: Envoy's ApiConfigSource api_type.
enum class xds_api : std::uint8_t {
  sotw,   // GRPC: StreamAggregatedResources (state of the world)
  delta,  // DELTA_GRPC: DeltaAggregatedResources (incremental)
};

// dynamic_resources.ads_config: how to reach the ADS server.
struct ads_config {
  xds_api api = xds_api::sotw;
  // gRPC target: "host:port", "ipv4:1.2.3.4:15012", "unix:/path", "dns:///host:port".
  std::string target;
  bool tls = false;
  // TLS: PEM trust anchors the server's chain must verify against. Empty: gRPC's default roots.
  std::string root_cert_file;
  // TLS: the name sent as SNI and verified in the server certificate (gRPC's
  // ssl_target_name_override); empty means the host part of `target`.
  std::string server_name;
  // TLS: a client certificate presented to the control plane (mTLS), PEM files read on every
  // new stream, so a rotated certificate is used from the next reconnect. Both or neither.
  std::string client_cert_chain_file;
  std::string client_private_key_file;
  // Call credentials read from a file on every new stream (and when it changes): the header
  // `token_header: token_prefix + <file contents, trailing whitespace removed>`.
  std::string token_file;
  std::string token_header = "authorization";
  std::string token_prefix = "Bearer ";
  std::vector<grpc_header> initial_metadata;
  // State of the world: send the node only on a stream's first request (Delta always does).
  bool node_on_first_message_only = false;
  // Subscriptions (cds_config / lds_config set to `ads`).
  bool cds = true;
  bool lds = true;
  // envoy_grpc: the static cluster naming the control plane. It is only used to reach the
  // control plane and is not part of the routing configuration.
  std::string control_plane_cluster;
  bool operator==(const ads_config&) const = default;
};

struct bootstrap_config {
  node_config node;
  std::optional<socket_address> admin_address;
  std::vector<listener_config> listeners;
  std::vector<cluster_config> clusters;
  // dynamic_resources: set when listeners and clusters also come from an ADS server.
  std::optional<ads_config> ads;
};

}  // namespace ewgw::xds
