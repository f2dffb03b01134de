#include "xds/config_dump.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/util/field_mask_util.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <google/protobuf/wire_format_lite.h>

#include <zlib.h>

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstring>
#include <mutex>

#include "envoy/admin/v3/config_dump.pb.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
#include "stats/log.h"
#include "xds/ads_state.h"
#include "xds/type/v3/typed_struct.pb.h"

namespace ewgw::xds {

namespace pb = google::protobuf;
namespace admin = envoy::admin::v3;

namespace {

constexpr const char* cluster_url = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
constexpr const char* endpoint_url = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
constexpr const char* listener_url = "type.googleapis.com/envoy.config.listener.v3.Listener";

pb::Timestamp timestamp(config_store::time t) {
  return pb::util::TimeUtil::NanosecondsToTimestamp(
      std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
}

void pack_raw(pb::Any* any, const char* url, std::string_view bytes) {
  any->set_type_url(url);
  any->set_value(bytes.data(), bytes.size());
}

// ---- compact storage of the accepted resources ------------------------------------------------
//
// The store holds every accepted resource for as long as it is in force: at 10,000 istiod
// clusters that is ~1.3 KB of wire bytes per cluster (Cluster, ClusterLoadAssignment and its
// listener chain). Kept as received (a std::map node, a shared_ptr'd string and a version
// string per resource) it was the largest single item of the gateway's memory (~1.8 KB per
// cluster); as laid out below it is ~130 bytes (heaptrack of the gateway following the test
// control plane over Delta, 10,000 clusters).
//
// Deflated records. istiod's resources of one kind differ mostly by names, addresses and a few
// numbers, so each resource is kept deflated (raw deflate, RFC 1951: no zlib header or
// checksum) against a preset dictionary (RFC 1950 section 2.2's FDICT idea; zlib's
// deflateSetDictionary): an earlier resource of the same kind, followed by the resource's own
// name, which appears in it once or more (name, EDS service name, SNI, Istio's service host):
// those become back-references of a few bytes. The earlier resource is one of the same size
// when there is one (each kind keeps up to 16 such "bases", one per size seen first; they are
// never refreshed, as stored records refer to them, so a kind whose resources change shape keeps
// bases that resemble them less: that costs bytes per record, never correctness): protobuf
// writes a length before every nested message and string, so a resource whose name is one
// character longer differs from the base in each enclosing length byte, and every such byte
// breaks a deflate match (a literal plus a new match, ~4 bytes). Against a base of its own size
// an istiod Cluster takes ~35 bytes instead of ~70. One deflate and one inflate stream are
// reused (deflateReset + deflateSetDictionary) instead of being set up per resource, which
// would cost a few hundred KB of allocation each time.
//
// Versions and times. A state-of-the-world response gives all its resources one version and
// one time, and a Delta response one time: both are kept once per response in an "epoch"
// table (time, reference count, the version when its records share one), and a record holds
// the epoch's number (a byte or two) and, when its version is not the epoch's (Delta's
// per-resource versions), the version inline, as packed nibbles when it is lowercase hex (a
// hash, as most control planes send; deflate cannot shrink random hex digits). At worst (every
// resource updated at its own time) an epoch costs 16 bytes more than a time in the record.
//
// One entry per name. An istiod Cluster and its ClusterLoadAssignment have the same name, so
// the store keeps one entry per name for all three kinds, in an xds::dense_index (the name, a
// block pointer and ~7 bytes of hash table): the name is a shared_string referencing the one
// the ADS state keeps for the resource (held once for the cluster's index, its EDS service, its
// chain and here: 8 bytes instead of ~55 characters per resource; the reference counts are
// atomic, as the admin thread renders under the store's mutex while the xDS thread
// changes the state, and a resource the state dropped keeps its name alive here). The entry's
// one heap block holds the name's records of each kind, back to back.
//
// The "unchanged bytes keep their version and time" check is exact: same length, then the
// stored record is inflated and compared byte for byte (a hash alone could report a changed
// resource as unchanged, and the dump would show stale configuration).

// deflateSetDictionary costs time in proportion to the dictionary (it indexes every byte), for
// every resource: 8 KiB holds an istiod Cluster or ClusterLoadAssignment many times over.
// Deflate with this window never looks further back than 8 KiB, so it sees the whole dictionary
// only while the renamed base plus the name fit in 8 KiB; of a longer one (a renamed base grows
// when the name's tokens are longer, up to max_renamed) it uses the last 8 KiB, which costs
// compression, not correctness (inflate's 32 KiB window holds the same bytes).
constexpr int small_window_bits = 13;
constexpr std::size_t max_base = std::size_t{1} << small_window_bits;
constexpr std::size_t max_bases = 16;
// A renamed base (see kind_bases::renamed) larger than this is not made: twice the largest base
// leaves room for names that grow a base's matches, and keeps rebuilding it cheap.
constexpr std::size_t max_renamed = 2 * max_base;
// Resources larger than this (a listener with a chain per cluster, several MB at 10,000
// clusters) are deflated without a base, with zlib's full 32 KiB window and default hash table
// (memLevel 8): 11.5 instead of 20 bytes per chain at the same level and in no more time (level
// 6 would take 10 bytes, in four times as long). Their deflate state (~270 KB) is set up for each
// and freed after.
constexpr std::size_t large_resource = 64 * 1024;
constexpr int large_window_bits = 15;

void put_varint(std::string& out, std::size_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Reads a varint written by put_varint at `p`, advancing it (blocks are written by this file).
std::size_t get_varint(const char*& p) {
  std::size_t v = 0;
  for (int shift = 0;; shift += 7) {
    const auto b = static_cast<unsigned char>(*p++);
    v |= static_cast<std::size_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
}

// One deflate and one inflate stream, reset for every resource.
class codec {
 public:
  codec() = default;
  ~codec() {
    if (deflate_ready_) deflateEnd(&deflater_);
    if (inflate_ready_) inflateEnd(&inflater_);
  }
  codec(const codec&) = delete;
  codec& operator=(const codec&) = delete;

  // `out` = `in` deflated against `dictionary`; false if zlib failed (out of memory) or the
  // output would be larger than the input (then it is kept as is; an output of exactly the
  // input's size is kept deflated).
  bool deflate(std::string_view dictionary, std::string_view in, std::string& out) {
    if (in.size() > large_resource) {
      z_stream large{};
      if (deflateInit2(&large, 3, Z_DEFLATED, -large_window_bits, 8, Z_DEFAULT_STRATEGY) != Z_OK) return false;
      const bool ok = run_deflate(large, dictionary, in, out);
      deflateEnd(&large);
      return ok;
    }
    if (!deflate_ready_) {
      // Raw deflate with an 8 KiB window (the bases' cap) and a small hash table: the
      // per-resource reset clears the hash table, which at zlib's defaults (memLevel 8, 64 KB)
      // costs more than compressing a 1 KB resource. Level 3 (the fast matcher): measured with
      // xds_scale_bench at 10,000 clusters, the store filled in ~170 ms against ~265 ms at
      // level 6 / window 32 KiB / memLevel 8, for a few bytes more per cluster.
      if (deflateInit2(&deflater_, 3, Z_DEFLATED, -small_window_bits, 3, Z_DEFAULT_STRATEGY) != Z_OK) return false;
      deflate_ready_ = true;
    } else if (deflateReset(&deflater_) != Z_OK) {
      return false;
    }
    return run_deflate(deflater_, dictionary, in, out);
  }

  // Inflates `in` against `dictionary` in pieces of up to `chunk` bytes, passing each to
  // `piece` (which returns false to stop); true if `in` inflates to exactly `size` bytes and
  // `piece` never stopped it.
  template <class Piece>
  bool inflate_pieces(std::string_view dictionary, std::string_view in, std::size_t size, std::string& chunk,
                      Piece piece) {
    if (!start_inflate(dictionary)) return false;
    chunk.resize(64 * 1024);
    inflater_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    inflater_.avail_in = static_cast<uInt>(in.size());
    std::size_t produced = 0;
    for (;;) {
      inflater_.next_out = reinterpret_cast<Bytef*>(chunk.data());
      inflater_.avail_out = static_cast<uInt>(chunk.size());
      const int rc = ::inflate(&inflater_, Z_NO_FLUSH);
      if (rc != Z_OK && rc != Z_STREAM_END) return false;
      const std::size_t n = chunk.size() - inflater_.avail_out;
      produced += n;
      if (produced > size) return false;
      if (n > 0 && !piece(std::string_view(chunk.data(), n))) return false;
      if (rc == Z_STREAM_END) return produced == size;
      if (n == 0 && inflater_.avail_in == 0) return false;  // truncated
    }
  }

  // `out` = `in` inflated against `dictionary`, expected to be `size` bytes; false if `in` is
  // not such a stream.
  bool inflate(std::string_view dictionary, std::string_view in, std::size_t size, std::string& out) {
    if (!start_inflate(dictionary)) return false;
    out.resize(size);
    inflater_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    inflater_.avail_in = static_cast<uInt>(in.size());
    inflater_.next_out = reinterpret_cast<Bytef*>(out.data());
    inflater_.avail_out = static_cast<uInt>(out.size());
    return ::inflate(&inflater_, Z_FINISH) == Z_STREAM_END && inflater_.avail_out == 0;
  }

 private:
  static bool run_deflate(z_stream& z, std::string_view dictionary, std::string_view in, std::string& out) {
    if (!dictionary.empty() &&
        deflateSetDictionary(&z, reinterpret_cast<const Bytef*>(dictionary.data()),
                             static_cast<uInt>(dictionary.size())) != Z_OK) {
      return false;
    }
    const std::size_t limit = in.size();
    // istiod's resources shrink ~10x; start there and double (never beyond the input's size).
    out.resize(std::min(limit, std::max<std::size_t>(256, limit / 8)));
    z.next_out = reinterpret_cast<Bytef*>(out.data());
    z.avail_out = static_cast<uInt>(out.size());
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
    z.avail_in = static_cast<uInt>(in.size());
    for (;;) {
      if (z.avail_out == 0) {
        const std::size_t used = out.size();
        if (used >= limit) return false;
        out.resize(std::min(limit, used * 2));
        z.next_out = reinterpret_cast<Bytef*>(out.data() + used);
        z.avail_out = static_cast<uInt>(out.size() - used);
      }
      const int rc = ::deflate(&z, Z_FINISH);
      if (rc == Z_STREAM_END) break;
      // No progress with room to write: a zlib error, not a full buffer.
      if ((rc != Z_OK && rc != Z_BUF_ERROR) || (rc == Z_BUF_ERROR && z.avail_out != 0)) return false;
    }
    out.resize(out.size() - z.avail_out);
    return true;
  }

  bool start_inflate(std::string_view dictionary) {
    if (!inflate_ready_) {
      // The largest window any record was deflated with; it inflates the smaller ones too.
      if (inflateInit2(&inflater_, -large_window_bits) != Z_OK) return false;
      inflate_ready_ = true;
    } else if (inflateReset(&inflater_) != Z_OK) {
      return false;
    }
    // Raw inflate takes the dictionary before any input (there is no header asking for it).
    return dictionary.empty() ||
           inflateSetDictionary(&inflater_, reinterpret_cast<const Bytef*>(dictionary.data()),
                                static_cast<uInt>(dictionary.size())) == Z_OK;
  }

  z_stream deflater_{};
  z_stream inflater_{};
  bool deflate_ready_ = false;
  bool inflate_ready_ = false;
};

// Times and versions shared by the records of one response (see above). Numbers are reused
// once no record refers to them; the last one handed out is tried first (the records of a
// response come one after the other with the same time).
class epoch_table {
 public:
  struct epoch {
    config_store::time::rep ticks = 0;
    std::uint32_t uses = 0;
    // The version its records share, set by the second record of the same version (none for a
    // Delta response's epoch, whose records carry their own): an epoch costs 24 bytes, and a
    // resource updated alone (an EDS push for one service) has one to itself.
    std::unique_ptr<const std::string> version;
  };

  std::size_t acquire(config_store::time t) {
    const auto ticks = t.time_since_epoch().count();
    if (last_ < epochs_.size() && epochs_[last_].uses > 0 && epochs_[last_].ticks == ticks) {
      ++epochs_[last_].uses;
      return last_;
    }
    if (free_.empty()) {
      epochs_.emplace_back();
      last_ = epochs_.size() - 1;
    } else {
      last_ = free_.back();
      free_.pop_back();
    }
    epochs_[last_].ticks = ticks;
    epochs_[last_].uses = 1;
    return last_;
  }

  // Epoch `id`'s records without a version of their own have `version` (only while it has none).
  void share_version(std::size_t id, const std::string& version) {
    epochs_[id].version = std::make_unique<const std::string>(version);
  }

  void release(std::size_t id) {
    epoch& e = epochs_[id];
    if (--e.uses > 0) return;
    e.version.reset();
    free_.push_back(static_cast<std::uint32_t>(id));
  }

  const epoch& at(std::size_t id) const { return epochs_[id]; }

  std::size_t heap_bytes() const {
    std::size_t n = epochs_.capacity() * sizeof(epoch) + free_.capacity() * sizeof(std::uint32_t);
    for (const auto& e : epochs_) {
      if (e.version) n += sizeof(std::string) + (e.version->capacity() > std::string().capacity() ? e.version->capacity() + 1 : 0);
    }
    return n;
  }

 private:
  std::vector<epoch> epochs_;
  std::vector<std::uint32_t> free_;
  std::size_t last_ = static_cast<std::size_t>(-1);
};

// A version of lowercase hex digits is kept as packed nibbles (two digits a byte).
bool is_lower_hex(std::string_view v) {
  return !v.empty() && std::all_of(v.begin(), v.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
int nibble(char c) { return c <= '9' ? c - '0' : c - 'a' + 10; }
constexpr char hex_digits[] = "0123456789abcdef";

// How a record's bytes are kept.
enum class packing : std::uint8_t {
  raw = 0,        // as received (zlib failed or they did not compress)
  name_only = 1,  // deflated against the name alone (a large resource)
  // 2 + i: deflated against base i of the kind, then the name
};

// One record (a resource of one kind) inside an entry's block:
//   varint epoch number
//   varint version: 0 = the epoch's; else 1 + (length * 2 + packed hex), then the version
//   varint packing (above)
//   varint the bytes' size as received; deflated against a base, as its difference from the
//     base's size (zigzag: most resources have a base of their own size, 1 byte instead of 2)
//   varint the stored size, then the stored bytes
struct record_view {
  std::size_t epoch = 0;
  bool own_version = false;
  bool hex_version = false;
  std::size_t version_length = 0;
  const char* version = nullptr;
  std::size_t packing = 0;
  std::size_t size_field = 0;  // see size_of()
  std::string_view stored;
  std::string_view whole;  // the record's bytes in the block

  static record_view parse(const char* p) {
    record_view r;
    const char* start = p;
    r.epoch = get_varint(p);
    if (const std::size_t v = get_varint(p); v != 0) {
      r.own_version = true;
      r.hex_version = ((v - 1) & 1) != 0;
      r.version_length = (v - 1) >> 1;
      r.version = p;
      p += r.hex_version ? (r.version_length + 1) / 2 : r.version_length;
    }
    r.packing = get_varint(p);
    r.size_field = get_varint(p);
    const std::size_t stored_size = get_varint(p);
    r.stored = {p, stored_size};
    r.whole = {start, static_cast<std::size_t>(p + stored_size - start)};
    return r;
  }

  void version_into(const epoch_table& epochs, std::string& out) const {
    if (!own_version) {
      // A record is written without a version of its own only once its epoch holds one
      // (make_record), and an epoch lets go of its version only when no record uses it.
      assert(epochs.at(epoch).version != nullptr);
      out = *epochs.at(epoch).version;
    } else if (!hex_version) {
      out.assign(version, version_length);
    } else {
      out.resize(version_length);
      for (std::size_t i = 0; i < version_length; ++i) {
        const auto b = static_cast<unsigned char>(version[i / 2]);
        out[i] = hex_digits[i % 2 == 0 ? b >> 4 : b & 15];
      }
    }
  }
};

constexpr int kind_count = 3;

// The resource type of kind k, for messages.
std::string_view kind_name(int k) {
  constexpr std::string_view names[kind_count] = {"Cluster", "ClusterLoadAssignment", "Listener"};
  return names[k];
}

// An entry's heap block: a byte with a bit per kind present, then those kinds' records in kind
// order.
struct entry_block {
  std::unique_ptr<char[]> data;

  unsigned mask() const { return data ? static_cast<unsigned char>(data[0]) : 0u; }
  bool has(int k) const { return (mask() >> k) & 1u; }

  // The record of kind k (present).
  record_view record(int k) const {
    const char* p = data.get() + 1;
    for (int i = 0; i < k; ++i) {
      if (has(i)) p += record_view::parse(p).whole.size();
    }
    return record_view::parse(p);
  }

  // A new block with kind k's record replaced by `with` (added if absent, removed if `with` is
  // null); empty if no record remains.
  entry_block with_record(int k, const std::string* with) const {
    std::string_view parts[kind_count];
    unsigned new_mask = 0;
    std::size_t total = 1;
    const char* p = data ? data.get() + 1 : nullptr;
    for (int i = 0; i < kind_count; ++i) {
      std::string_view part;
      if (has(i)) {
        part = record_view::parse(p).whole;
        p += part.size();
      }
      if (i == k) part = with != nullptr ? std::string_view(*with) : std::string_view();
      if (!part.empty()) {
        parts[i] = part;
        new_mask |= 1u << i;
        total += part.size();
      }
    }
    entry_block b;
    if (new_mask == 0) return b;
    b.data.reset(new char[total]);
    char* out = b.data.get();
    *out++ = static_cast<char>(new_mask);
    for (const auto& part : parts) {
      if (part.empty()) continue;
      std::memcpy(out, part.data(), part.size());
      out += part.size();
    }
    return b;
  }
};

bool is_name_separator(char c) {
  return c == '.' || c == '_' || c == '|' || c == '~' || c == ':' || c == '/' || c == ',' || c == ';';
}

// The tokens of `text` between separators (empty ones included) into `out`.
void split_tokens(std::string_view text, std::vector<std::string_view>& out) {
  out.clear();
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || is_name_separator(text[i])) {
      out.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
}

// Rewriting a base as if it were named otherwise (see kind_bases::renamed): where in the base
// the tokens of its name occur, found once per base. At each position the longest token that
// matches is taken; tokens shorter than 3 bytes (a digit, the empty ones between "_.") would
// match unrelated bytes and are not looked for.
struct rename_plan {
  static constexpr std::size_t min_token = 3;
  struct hit {
    std::uint32_t at;
    std::uint32_t length;
    std::uint32_t token;  // its number among the name's tokens
  };
  std::size_t token_count = 0;
  std::vector<hit> hits;

  void make(std::string_view base, std::string_view name) {
    std::vector<std::string_view> tokens;
    split_tokens(name, tokens);
    token_count = tokens.size();
    std::vector<std::size_t> candidates;  // distinct tokens worth looking for, longest first
    for (std::size_t t = 0; t < tokens.size(); ++t) {
      if (tokens[t].size() < min_token) continue;
      if (std::none_of(candidates.begin(), candidates.end(), [&](std::size_t c) { return tokens[c] == tokens[t]; })) {
        candidates.push_back(t);
      }
    }
    std::stable_sort(candidates.begin(), candidates.end(),
                     [&](std::size_t x, std::size_t y) { return tokens[x].size() > tokens[y].size(); });
    hits.clear();
    for (std::size_t i = 0; i < base.size();) {
      const auto match = std::find_if(candidates.begin(), candidates.end(),
                                      [&](std::size_t c) { return base.substr(i, tokens[c].size()) == tokens[c]; });
      if (match == candidates.end()) {
        ++i;
        continue;
      }
      hits.push_back({static_cast<std::uint32_t>(i), static_cast<std::uint32_t>(tokens[*match].size()),
                      static_cast<std::uint32_t>(*match)});
      i += tokens[*match].size();
    }
    hits.shrink_to_fit();
  }
};

// The bases a kind's records are deflated against (see above): kept for the store's lifetime,
// since stored records refer to them by number. Never refreshed: a kind keeps the first
// max_bases sizes it sees, even once no record of those sizes remains; a stale base costs only
// bytes (records deflated against it compress less).
struct kind_bases {
  struct base {
    std::string bytes;
    std::string name;  // of the resource it was
    rename_plan plan;
  };
  std::vector<base> bases;

  // Base i rewritten as if it were named `name`, into `out`: each token of the base's name
  // (between separators) is replaced throughout by the corresponding token of `name`, when
  // the two split into as many tokens. istiod's names carry the service's host
  // (outbound_.8080_._.svc-42.ns-7.svc.cluster.local), which the resource repeats in pieces
  // (EDS service name, istio metadata host, service name, namespace): rewritten, those pieces
  // match the resource whole instead of costing a back-reference to the name each, and a
  // deflated istiod Cluster takes ~21 bytes instead of ~35. Only a dictionary: a poor rewrite
  // costs compression, never correctness (inflating rebuilds the same dictionary from the same
  // base and name).
  //
  // The rewrite is bounded: a base whose name's token occurs thousands of times, renamed to a
  // name with a token of thousands of characters, would make a dictionary of megabytes, rebuilt
  // for every put, unchanged-resend check and rendered record, of which zlib uses only the last
  // 8 KiB (deflate's window here) or 32 KiB (inflate's). Its size is known from the plan before
  // it is built; beyond max_renamed the base is used as it is. The choice depends only on the
  // base and the name, so deflating and inflating make the same dictionary.
  void renamed(std::size_t i, std::string_view name, std::string& out, std::vector<std::string_view>& tokens) const {
    const base& b = bases[i];
    split_tokens(name, tokens);
    if (name == b.name || tokens.size() != b.plan.token_count || renamed_size(b, tokens) > max_renamed) {
      out.append(b.bytes);
      return;
    }
    std::size_t done = 0;
    for (const auto& hit : b.plan.hits) {
      out.append(b.bytes, done, hit.at - done);
      out.append(tokens[hit.token]);
      done = hit.at + hit.length;
    }
    out.append(b.bytes, done);
  }

  // The size of base `b` renamed to `tokens` (as many as its name's): each hit takes its new
  // token's length instead of its own.
  static std::size_t renamed_size(const base& b, const std::vector<std::string_view>& tokens) {
    std::size_t size = b.bytes.size();
    for (const auto& hit : b.plan.hits) size = size - hit.length + tokens[hit.token].size();
    return size;
  }

  // The base for a resource of `bytes` named `name` (possibly that resource itself, made a
  // new base), or npos.
  std::size_t choose(const std::string& bytes, std::string_view name) {
    if (bytes.size() > max_base) return npos;
    std::size_t nearest = npos;
    const auto distance = [&](std::size_t j) {
      const std::size_t size = bases[j].bytes.size();
      return size > bytes.size() ? size - bytes.size() : bytes.size() - size;
    };
    for (std::size_t i = 0; i < bases.size(); ++i) {
      if (bases[i].bytes.size() == bytes.size()) return i;
      if (nearest == npos || distance(i) < distance(nearest)) nearest = i;
    }
    if (bases.size() < max_bases) {
      bases.push_back({bytes, std::string(name), {}});
      bases.back().bytes.shrink_to_fit();
      bases.back().plan.make(bases.back().bytes, bases.back().name);
      return bases.size() - 1;
    }
    return nearest;
  }

  std::size_t heap_bytes() const {
    std::size_t n = bases.capacity() * sizeof(base);
    for (const auto& b : bases) {
      for (const std::string* s : {&b.bytes, &b.name}) {
        if (s->capacity() > std::string().capacity()) n += s->capacity() + 1;
      }
      n += b.plan.hits.capacity() * sizeof(rename_plan::hit);
    }
    return n;
  }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
};

}  // namespace

struct config_store::impl {
  mutable std::mutex mu;
  std::shared_ptr<const std::string> bootstrap;
  time bootstrap_loaded{};
  dense_index<entry_block> entries;
  std::size_t count[kind_count] = {};  // entries holding a record of each kind
  kind_bases bases[kind_count];
  epoch_table epochs;
  std::string sotw_version[kind_count];  // the last state-of-the-world version_info per kind
  sorted_names warming_clusters;
  sorted_names waiting_listeners;
  // Reused for every resource (under mu; render is const but decompresses).
  mutable codec zlib;
  mutable std::string packed, unpacked, dictionary, chunk, record;
  // The epoch and version of the last record made, to tell when an epoch's records share one.
  std::size_t last_epoch = static_cast<std::size_t>(-1);
  mutable std::string last_version;
  mutable std::vector<std::string_view> tokens;
  mutable std::size_t largest_dictionary = 0;  // see config_store::largest_dictionary()

  // Scratch buffers grow to the largest resource (a listener with 10,000 chains is several MB):
  // let go of them after such a one instead of keeping them for the store's lifetime.
  void trim_scratch() const {
    constexpr std::size_t keep = 64 * 1024;
    for (std::string* b : {&packed, &unpacked, &dictionary, &chunk, &record, &last_version}) {
      if (b->capacity() > keep) std::string().swap(*b);
    }
  }

  // The dictionary a record of kind k named `name` with `packing` is deflated against: the
  // base renamed, then the name.
  std::string_view dictionary_for(int k, std::size_t how, std::string_view name) const {
    dictionary.clear();
    if (how >= 2) bases[k].renamed(how - 2, name, dictionary, tokens);
    dictionary.append(name);
    largest_dictionary = std::max(largest_dictionary, dictionary.size());
    return dictionary;
  }

  // The size of record `r`'s bytes (of kind k) as received.
  std::size_t size_of(int k, const record_view& r) const {
    if (r.packing < 2) return r.size_field;
    const auto base_size = static_cast<std::int64_t>(bases[k].bases[r.packing - 2].bytes.size());
    const auto zigzag = static_cast<std::int64_t>(r.size_field);
    return static_cast<std::size_t>(base_size + ((zigzag & 1) != 0 ? -(zigzag + 1) / 2 : zigzag / 2));
  }

  // The bytes of record `r` (kind k, named `name`) into `unpacked`; false if it does not
  // inflate (a bug, not input).
  bool unpack(int k, std::string_view name, const record_view& r) const {
    if (r.packing == static_cast<std::size_t>(packing::raw)) {
      unpacked.assign(r.stored);
      return true;
    }
    return zlib.inflate(dictionary_for(k, r.packing, name), r.stored, size_of(k, r), unpacked);
  }

  // True if record `r` holds exactly `bytes`. Inflated in pieces: an unchanged listener of
  // several MB (resent with every state-of-the-world LDS push) is compared without being
  // inflated whole.
  //
  // A stored record that does not inflate (a bug in this store, not input) counts as changed,
  // so the new bytes replace it, and is logged: silently it would hide the bug.
  bool same_bytes(int k, std::string_view name, const record_view& r, const std::string& bytes) const {
    const std::size_t size = size_of(k, r);
    if (size != bytes.size()) return false;
    if (r.packing == static_cast<std::size_t>(packing::raw)) return r.stored == bytes;
    std::size_t at = 0;
    bool differs = false;
    const bool same =
        zlib.inflate_pieces(dictionary_for(k, r.packing, name), r.stored, size, chunk, [&](std::string_view piece) {
          differs = piece != std::string_view(bytes).substr(at, piece.size());
          at += piece.size();
          return !differs;
        });
    if (!same && !differs) {
      EWGW_LOG(warn, "config_dump", "a stored resource does not decompress; replacing it with the bytes received",
               {{"kind", kind_name(k)}, {"resource", name}});
    }
    return same;
  }

  // The record of `bytes` into `record` (for kind k, under `name`), holding an epoch.
  void make_record(int k, std::string_view name, const std::string& version, const std::string& bytes, time now) {
    const std::size_t epoch = epochs.acquire(now);
    record.clear();
    put_varint(record, epoch);
    const auto& shared = epochs.at(epoch).version;
    bool same_as_epoch = shared && *shared == version;
    if (!shared && epoch == last_epoch && version == last_version) {
      // The second record of this epoch with the previous one's version (a state-of-the-world
      // response): the epoch takes it (the first record keeps its own copy).
      epochs.share_version(epoch, version);
      same_as_epoch = true;
    }
    last_epoch = epoch;
    last_version = version;
    if (same_as_epoch) {
      put_varint(record, 0);
    } else if (is_lower_hex(version)) {
      put_varint(record, 1 + (version.size() * 2 + 1));
      for (std::size_t i = 0; i < version.size(); i += 2) {
        const int high = nibble(version[i]);
        const int low = i + 1 < version.size() ? nibble(version[i + 1]) : 0;
        record.push_back(static_cast<char>(high << 4 | low));
      }
    } else {
      put_varint(record, 1 + version.size() * 2);
      record += version;
    }
    const std::size_t base = bases[k].choose(bytes, name);
    const std::size_t how = base == kind_bases::npos ? static_cast<std::size_t>(packing::name_only) : 2 + base;
    // Kept as is if zlib failed (out of memory) or the bytes do not compress.
    const bool deflated = zlib.deflate(dictionary_for(k, how, name), bytes, packed);
    put_varint(record, deflated ? how : static_cast<std::size_t>(packing::raw));
    if (deflated && how >= 2) {
      const auto difference = static_cast<std::int64_t>(bytes.size()) - static_cast<std::int64_t>(bases[k].bases[how - 2].bytes.size());
      put_varint(record, static_cast<std::size_t>(difference < 0 ? -2 * difference - 1 : 2 * difference));
    } else {
      put_varint(record, bytes.size());
    }
    const std::string_view stored = deflated ? std::string_view(packed) : std::string_view(bytes);
    put_varint(record, stored.size());
    record.append(stored);
  }

  // Records `bytes` under `name` unless it holds them already; returns the entry's position.
  std::size_t put(kind which, const shared_string& name, const std::string& version, const std::string& bytes,
                  time now) {
    const int k = static_cast<int>(which);
    auto it = entries.find(name.view());
    if (it != entries.end() && it->second.has(k)) {
      const record_view r = it->second.record(k);
      if (same_bytes(k, name.view(), r, bytes)) {
        // A resource stored under a copy of its name (the ADS state had none) takes the
        // state's string once it holds one.
        it->first.share_if_equal(name);
        return static_cast<std::size_t>(it - entries.begin());
      }
    }
    make_record(k, name.view(), version, bytes, now);
    if (it == entries.end()) {
      entries.insert_or_assign(name, entry_block{}.with_record(k, &record));
      ++count[k];
      return entries.size() - 1;
    }
    if (it->second.has(k)) {
      epochs.release(it->second.record(k).epoch);
    } else {
      ++count[k];
    }
    it->first.share_if_equal(name);
    it->second = it->second.with_record(k, &record);
    return static_cast<std::size_t>(it - entries.begin());
  }

  // Drops the record of kind k at entry `pos` (the entry too when it was the last); the last
  // entry may take the position.
  void drop(int k, std::size_t pos) {
    auto it = entries.begin() + pos;
    epochs.release(it->second.record(k).epoch);
    --count[k];
    it->second = it->second.with_record(k, nullptr);
    if (it->second.mask() == 0) entries.erase(it);
  }
};

config_store::config_store() : impl_(std::make_unique<impl>()) {}
config_store::~config_store() = default;

void config_store::set_bootstrap(std::shared_ptr<const std::string> serialized, time loaded) {
  std::lock_guard lock(impl_->mu);
  impl_->bootstrap = std::move(serialized);
  impl_->bootstrap_loaded = loaded;
}

void config_store::put(kind k, const shared_string& name, const std::string& version, const std::string& bytes,
                       time now) {
  std::lock_guard lock(impl_->mu);
  impl_->put(k, name, version, bytes, now);
  impl_->trim_scratch();
}

void config_store::remove(kind k, std::string_view name) {
  std::lock_guard lock(impl_->mu);
  const int which = static_cast<int>(k);
  if (auto it = impl_->entries.find(name); it != impl_->entries.end() && it->second.has(which)) {
    impl_->drop(which, static_cast<std::size_t>(it - impl_->entries.begin()));
  }
}

void config_store::replace_all(kind k, const std::vector<std::pair<shared_string, const std::string*>>& resources,
                               const std::string& version, time now) {
  std::lock_guard lock(impl_->mu);
  const int which = static_cast<int>(k);
  auto& entries = impl_->entries;
  // Which entries the response holds; a name given twice keeps its first bytes (as the map's
  // emplace did before).
  std::vector<bool> in_response(entries.size() + resources.size(), false);
  for (const auto& [name, bytes] : resources) {
    if (auto known = entries.find(name.view());
        known != entries.end() && in_response[static_cast<std::size_t>(known - entries.begin())]) {
      continue;
    }
    in_response[impl_->put(k, name, version, *bytes, now)] = true;
  }
  impl_->trim_scratch();
  // Dropping an entry's last record moves the last entry into the hole: walk down so every
  // moved entry was seen already.
  for (std::size_t i = entries.size(); i-- > 0;) {
    if (!in_response[i] && entries.begin()[i].second.has(which)) impl_->drop(which, i);
  }
  impl_->sotw_version[which] = version;
}

void config_store::retain(kind k, const sorted_names& names) {
  std::lock_guard lock(impl_->mu);
  const int which = static_cast<int>(k);
  for (std::size_t i = impl_->entries.size(); i-- > 0;) {
    const auto& [name, block] = impl_->entries.begin()[i];
    if (block.has(which) && !names.contains(name.view())) impl_->drop(which, i);
  }
}

void config_store::set_pending(sorted_names warming_clusters, sorted_names waiting_listeners) {
  std::lock_guard lock(impl_->mu);
  impl_->warming_clusters = std::move(warming_clusters);
  impl_->waiting_listeners = std::move(waiting_listeners);
}

std::size_t config_store::stored_bytes(kind k) const {
  std::lock_guard lock(impl_->mu);
  const int which = static_cast<int>(k);
  // The kind's bases and records; the entries (name reference, block pointer, hash slot, the
  // block's kind byte) and the epochs are shared by the kinds and counted in equal parts.
  std::size_t n = impl_->bases[which].heap_bytes() + impl_->epochs.heap_bytes() / kind_count;
  using entry = std::pair<shared_string, entry_block>;
  for (const auto& [name, block] : impl_->entries) {
    if (!block.has(which)) continue;
    n += block.record(which).whole.size() + (sizeof(entry) + 2 * sizeof(std::uint32_t) + 1) / std::popcount(block.mask());
  }
  return n;
}

std::size_t config_store::largest_dictionary() const {
  std::lock_guard lock(impl_->mu);
  return impl_->largest_dictionary;
}

std::string config_store::missing_cluster_note(std::string_view cluster) const {
  std::lock_guard lock(impl_->mu);
  if (impl_->warming_clusters.contains(cluster)) {
    return "it is warming: received over CDS but still waiting for its first EDS assignment";
  }
  if (auto it = impl_->entries.find(cluster);
      it != impl_->entries.end() && it->second.has(static_cast<int>(kind::cluster))) {
    return "it was received over CDS but is not in force";
  }
  return "no cluster of that name was received from the control plane or configured statically";
}

std::string config_store::resource_name(const std::string& bytes) {
  pb::io::CodedInputStream in(reinterpret_cast<const std::uint8_t*>(bytes.data()), static_cast<int>(bytes.size()));
  for (;;) {
    const std::uint32_t tag = in.ReadTag();
    if (tag == 0) return {};
    if (tag == pb::internal::WireFormatLite::MakeTag(1, pb::internal::WireFormatLite::WIRETYPE_LENGTH_DELIMITED)) {
      std::uint32_t size = 0;
      std::string name;
      if (!in.ReadVarint32(&size) || !in.ReadString(&name, static_cast<int>(size))) return {};
      return name;
    }
    if (!pb::internal::WireFormatLite::SkipField(&in, tag)) return {};
  }
}

namespace {

std::string bad(std::string message) { return message + "\n"; }

bool replace_unknown_any(pb::Message& m);

// An Any whose type this binary has no descriptor for (Istio's istio.stats filter config,
// type.googleapis.com/stats.PluginConfig) cannot be printed as JSON. It becomes an
// xds.type.v3.TypedStruct carrying the original type_url, Envoy's own way of naming a config
// type it cannot print (the payload is left out). Returns true if anything changed.
bool fix_any(pb::Any& any) {
  const std::string& url = any.type_url();
  const std::string type = url.substr(url.rfind('/') + 1);
  const pb::Descriptor* d = pb::DescriptorPool::generated_pool()->FindMessageTypeByName(type);
  if (d == nullptr) {
    ::xds::type::v3::TypedStruct unknown;
    unknown.set_type_url(url);
    any.PackFrom(unknown);
    return true;
  }
  std::unique_ptr<pb::Message> inner(pb::MessageFactory::generated_factory()->GetPrototype(d)->New());
  if (!inner->ParseFromString(any.value()) || !replace_unknown_any(*inner)) return false;
  any.PackFrom(*inner);
  return true;
}

bool replace_unknown_any(pb::Message& m) {
  const pb::Reflection* r = m.GetReflection();
  std::vector<const pb::FieldDescriptor*> fields;
  r->ListFields(m, &fields);
  bool changed = false;
  const auto visit = [&](pb::Message* child) {
    if (auto* any = dynamic_cast<pb::Any*>(child)) {
      changed = fix_any(*any) || changed;
    } else {
      changed = replace_unknown_any(*child) || changed;
    }
  };
  for (const pb::FieldDescriptor* f : fields) {
    if (f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    if (f->is_repeated()) {
      for (int i = 0; i < r->FieldSize(m, f); ++i) visit(r->MutableRepeatedMessage(&m, f, i));
    } else {
      visit(r->MutableMessage(&m, f));
    }
  }
  return changed;
}

}  // namespace

std::pair<unsigned, std::string> config_store::render(const std::map<std::string, std::string>& query) const {
  bool include_eds = false;
  std::string resource, mask_text;
  bool has_mask = false;
  for (const auto& [key, value] : query) {
    if (key == "include_eds") {
      include_eds = true;
    } else if (key == "resource") {
      resource = value;
      if (resource.empty()) return {400, bad("parameter 'resource' needs a field name, e.g. dynamic_active_clusters")};
    } else if (key == "mask") {
      mask_text = value;
      has_mask = true;
    } else {
      return {400, bad("unknown query parameter '" + key + "' for /config_dump; accepted: include_eds, resource, mask")};
    }
  }

  // Build the typed dumps under the lock (inflated copies of the stored resources), print outside it.
  admin::BootstrapConfigDump bootstrap_dump;
  admin::ClustersConfigDump clusters;
  admin::EndpointsConfigDump endpoints;
  admin::ListenersConfigDump listeners;
  {
    std::lock_guard lock(impl_->mu);
    const auto loaded = timestamp(impl_->bootstrap_loaded);
    if (impl_->bootstrap && !bootstrap_dump.mutable_bootstrap()->ParseFromString(*impl_->bootstrap)) {
      return {500, bad("the stored bootstrap does not parse")};
    }
    *bootstrap_dump.mutable_last_updated() = loaded;
    const auto& statics = bootstrap_dump.bootstrap().static_resources();
    for (const auto& c : statics.clusters()) {
      auto* s = clusters.add_static_clusters();
      s->mutable_cluster()->PackFrom(c);
      *s->mutable_last_updated() = loaded;
      if (include_eds && c.has_load_assignment()) {
        auto* e = endpoints.add_static_endpoint_configs();
        e->mutable_endpoint_config()->PackFrom(c.load_assignment());
        *e->mutable_last_updated() = loaded;
      }
    }
    for (const auto& l : statics.listeners()) {
      auto* s = listeners.add_static_listeners();
      s->mutable_listener()->PackFrom(l);
      *s->mutable_last_updated() = loaded;
    }
    // Each stored resource in name order (the order the dump always had), inflated; false if
    // one does not inflate (a bug in this store, not bad input), named in `broken`.
    std::string broken;
    const auto each = [&](kind k, const auto& visit) {
      const int which = static_cast<int>(k);
      struct stored {
        std::string_view name;
        record_view record;
      };
      std::vector<stored> sorted;
      sorted.reserve(impl_->count[which]);
      for (const auto& [name, block] : impl_->entries) {
        if (block.has(which)) sorted.push_back({name.view(), block.record(which)});
      }
      std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
      std::string version;
      for (const auto& s : sorted) {
        if (!impl_->unpack(which, s.name, s.record)) {
          broken = std::string(kind_name(which)) + " '" + std::string(s.name) + "'";
          return false;
        }
        s.record.version_into(impl_->epochs, version);
        const time updated{time::duration(impl_->epochs.at(s.record.epoch).ticks)};
        visit(std::string(s.name), std::string_view(version), std::string_view(impl_->unpacked), updated);
      }
      return true;
    };
    bool intact = true;
    clusters.set_version_info(impl_->sotw_version[static_cast<int>(kind::cluster)]);
    intact = intact && each(kind::cluster, [&](const std::string& name, std::string_view version,
                                              std::string_view bytes, time updated) {
      auto* d = impl_->warming_clusters.contains(name) ? clusters.add_dynamic_warming_clusters()
                                                       : clusters.add_dynamic_active_clusters();
      d->set_version_info(version.data(), version.size());
      pack_raw(d->mutable_cluster(), cluster_url, bytes);
      *d->mutable_last_updated() = timestamp(updated);
      d->set_client_status(admin::ACKED);
    });
    if (include_eds) {
      intact = intact && each(kind::endpoint, [&](const std::string&, std::string_view version, std::string_view bytes,
                                                  time updated) {
        auto* d = endpoints.add_dynamic_endpoint_configs();
        d->set_version_info(version.data(), version.size());
        pack_raw(d->mutable_endpoint_config(), endpoint_url, bytes);
        *d->mutable_last_updated() = timestamp(updated);
        d->set_client_status(admin::ACKED);
      });
    }
    listeners.set_version_info(impl_->sotw_version[static_cast<int>(kind::listener)]);
    intact = intact && each(kind::listener, [&](const std::string& name, std::string_view version,
                                               std::string_view bytes, time updated) {
      auto* d = listeners.add_dynamic_listeners();
      d->set_name(name);
      auto* state = impl_->waiting_listeners.contains(name) ? d->mutable_warming_state() : d->mutable_active_state();
      state->set_version_info(version.data(), version.size());
      pack_raw(state->mutable_listener(), listener_url, bytes);
      *state->mutable_last_updated() = timestamp(updated);
      d->set_client_status(admin::ACKED);
    });
    impl_->trim_scratch();
    if (!intact) return {500, bad("the stored " + broken + " does not decompress (a bug in the config_dump store)")};
  }

  // Envoy's order: bootstrap, clusters, endpoints (only with include_eds), listeners.
  std::vector<const pb::Message*> configs = {&bootstrap_dump, &clusters};
  if (include_eds) configs.push_back(&endpoints);
  configs.push_back(&listeners);

  pb::FieldMask mask;
  if (has_mask) pb::util::FieldMaskUtil::FromString(mask_text, &mask);

  admin::ConfigDump dump;
  if (!resource.empty()) {
    bool found = false;
    for (const pb::Message* config : configs) {
      const pb::Descriptor* d = config->GetDescriptor();
      const pb::FieldDescriptor* f = d->FindFieldByName(resource);
      if (f == nullptr || !f->is_repeated() || f->cpp_type() != pb::FieldDescriptor::CPPTYPE_MESSAGE) continue;
      found = true;
      const pb::Reflection* reflection = config->GetReflection();
      for (int i = 0; i < reflection->FieldSize(*config, f); ++i) {
        const pb::Message& element = reflection->GetRepeatedMessage(*config, f, i);
        if (has_mask) {
          for (const auto& path : mask.paths()) {
            if (!pb::util::FieldMaskUtil::GetFieldDescriptors(element.GetDescriptor(), path, nullptr)) {
              return {400, bad("parameter 'mask': '" + path + "' is not a field path of " + element.GetDescriptor()->full_name())};
            }
          }
          std::unique_ptr<pb::Message> trimmed(element.New());
          trimmed->CopyFrom(element);
          pb::util::FieldMaskUtil::TrimMessage(mask, trimmed.get());
          dump.add_configs()->PackFrom(*trimmed);
        } else {
          dump.add_configs()->PackFrom(element);
        }
      }
    }
    if (!found) {
      return {400, bad("parameter 'resource': no config dump has a repeated field '" + resource +
                       "' (e.g. static_clusters, dynamic_active_clusters, dynamic_listeners" +
                       std::string(include_eds ? ", dynamic_endpoint_configs" : "") + ")")};
    }
  } else {
    for (const pb::Message* config : configs) {
      if (has_mask) {
        bool valid = true;
        for (const auto& path : mask.paths()) {
          valid = valid && pb::util::FieldMaskUtil::GetFieldDescriptors(config->GetDescriptor(), path, nullptr);
        }
        // As Envoy: a mask applies to the configs it fits; the others are left out.
        if (!valid) continue;
        std::unique_ptr<pb::Message> trimmed(config->New());
        trimmed->CopyFrom(*config);
        pb::util::FieldMaskUtil::TrimMessage(mask, trimmed.get());
        dump.add_configs()->PackFrom(*trimmed);
      } else {
        dump.add_configs()->PackFrom(*config);
      }
    }
    if (has_mask && dump.configs_size() == 0) {
      return {400, bad("parameter 'mask': '" + mask_text + "' names no field of any config dump")};
    }
  }

  pb::util::JsonPrintOptions options;
  options.add_whitespace = true;
  options.preserve_proto_field_names = true;
  // Istio's resources nearly always hold a type this binary does not know (istio.stats), and a
  // failed print costs as much as the walk: name unknown types first, then print once.
  replace_unknown_any(dump);
  std::string out;
  const auto status = pb::util::MessageToJsonString(dump, &out, options);
  if (!status.ok()) return {500, bad("cannot print the configuration: " + std::string(status.message()))};
  return {200, std::move(out)};
}

}  // namespace ewgw::xds
