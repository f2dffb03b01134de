#include "xds/config_dump.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/util/field_mask_util.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>
#include <google/protobuf/wire_format_lite.h>

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <mutex>
#include <new>

#include "envoy/admin/v3/config_dump.pb.h"
#include "envoy/config/bootstrap/v3/bootstrap.pb.h"
#include "envoy/config/cluster/v3/cluster.pb.h"
#include "envoy/config/endpoint/v3/endpoint.pb.h"
#include "envoy/config/listener/v3/listener.pb.h"
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
// listener chain), and with a std::map node, a shared_ptr'd string and a version string per
// resource it was the largest single item of the gateway's memory (~1.8 KB per cluster).
//
// istiod's resources of one kind differ mostly by names, addresses and a few numbers, so each
// resource is kept deflated (raw deflate, RFC 1951: no zlib header or checksum, 6 bytes less per
// resource) against a preset dictionary per kind (RFC 1950 section 2.2's FDICT idea; zlib's
// deflateSetDictionary): the first resource of that kind the store receives (capped), followed
// by the resource's own name, which is stored in the clear anyway and appears in the resource
// once or more (name, EDS service name, SNI): those become back-references of a few bytes. A
// cluster then takes a few tens of bytes. One deflate and one inflate stream
// are reused (deflateReset + deflateSetDictionary) instead of being set up per resource, which
// would cost a few hundred KB of allocation each time.
//
// What is compressed is a record: the resource's version (varint length, bytes) followed by its
// serialized bytes. A state-of-the-world version is the same for the whole response and is, for
// most resources, a back-reference of a few bytes; Delta's per-resource versions are short.
// The name stays in the clear (lookups, sorting for the dump) but is not copied: the block holds
// a shared_string referencing the name the ADS state keeps for the resource (an istiod Cluster
// and its ClusterLoadAssignment have the same name, held once for the cluster's index, its EDS
// service, its chain and here), 16 bytes instead of ~55 characters per resource. The reference
// counts are atomic (shared_ptr): the admin thread renders under the store's mutex while the
// xDS thread changes the state, and a resource the state dropped keeps its name alive here.
// The reference sits in the same allocation as the compressed record and the update time: one
// heap block per resource, plus an 8-byte slot in a flat vector of block pointers indexed by an
// open-addressing hash table of 32-bit positions.
//
// The "unchanged bytes keep their version and time" check is exact: same length, then the
// stored record is inflated and compared byte for byte (a hash alone could report a changed
// resource as unchanged, and the dump would show stale configuration).

// deflateSetDictionary costs time in proportion to the dictionary (it indexes every byte), for
// every resource: 8 KiB holds an istiod Cluster or ClusterLoadAssignment several times over.
// The window is as large: deflate never looks further back.
constexpr int window_bits = 13;
constexpr std::size_t max_dictionary = std::size_t{1} << window_bits;

void put_varint(std::string& out, std::size_t v) {
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
}

// Splits a record into version and bytes; false if malformed.
bool split_record(std::string_view record, std::string_view& version, std::string_view& bytes) {
  std::size_t len = 0, i = 0;
  for (int shift = 0; shift < 35; shift += 7) {
    if (i >= record.size()) return false;
    const auto b = static_cast<unsigned char>(record[i++]);
    len |= static_cast<std::size_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) {
      if (len > record.size() - i) return false;
      version = record.substr(i, len);
      bytes = record.substr(i + len);
      return true;
    }
  }
  return false;
}

// One deflate and one inflate stream, reset for every resource, with a dictionary per kind.
class codec {
 public:
  codec() = default;
  ~codec() {
    if (deflate_ready_) deflateEnd(&deflater_);
    if (inflate_ready_) inflateEnd(&inflater_);
  }
  codec(const codec&) = delete;
  codec& operator=(const codec&) = delete;

  // `out` = `head` then `body` deflated against `dictionary`, without joining them first (a
  // listener of several MB is not copied to be compressed); false if zlib failed (out of
  // memory) or the output would not be smaller than the input (then it is kept as is).
  bool deflate(std::string_view dictionary, std::string_view head, std::string_view body, std::string& out) {
    if (!deflate_ready_) {
      // Raw deflate with an 8 KiB window (the dictionary's cap) and a small hash table: the
      // per-resource reset clears the hash table, which at zlib's defaults (memLevel 8, 64 KB)
      // costs more than compressing a 1 KB resource. Level 3 (the fast matcher): measured with
      // xds_scale_bench at 10,000 clusters, the store fills in ~170 ms against ~265 ms at
      // level 6 / window 32 KiB / memLevel 8, and takes 338 instead of 352 bytes per cluster.
      if (deflateInit2(&deflater_, 3, Z_DEFLATED, -window_bits, 3, Z_DEFAULT_STRATEGY) != Z_OK) return false;
      deflate_ready_ = true;
    } else if (deflateReset(&deflater_) != Z_OK) {
      return false;
    }
    if (!dictionary.empty() &&
        deflateSetDictionary(&deflater_, reinterpret_cast<const Bytef*>(dictionary.data()),
                             static_cast<uInt>(dictionary.size())) != Z_OK) {
      return false;
    }
    const std::size_t limit = head.size() + body.size();
    // istiod's resources shrink ~10x; start there and double (never beyond the input's size).
    out.resize(std::min(limit, std::max<std::size_t>(256, limit / 8)));
    deflater_.next_out = reinterpret_cast<Bytef*>(out.data());
    deflater_.avail_out = static_cast<uInt>(out.size());
    const auto feed = [&](std::string_view in, int flush) {
      deflater_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
      deflater_.avail_in = static_cast<uInt>(in.size());
      for (;;) {
        if (deflater_.avail_out == 0) {
          const std::size_t used = out.size();
          if (used >= limit) return false;
          out.resize(std::min(limit, used * 2));
          deflater_.next_out = reinterpret_cast<Bytef*>(out.data() + used);
          deflater_.avail_out = static_cast<uInt>(out.size() - used);
        }
        const int rc = ::deflate(&deflater_, flush);
        if (flush == Z_FINISH && rc == Z_STREAM_END) return true;
        if (flush != Z_FINISH && rc == Z_OK && deflater_.avail_in == 0) return true;
        // No progress with room to write: a zlib error, not a full buffer.
        if ((rc != Z_OK && rc != Z_BUF_ERROR) || (rc == Z_BUF_ERROR && deflater_.avail_out != 0)) return false;
      }
    };
    if (!feed(head, Z_NO_FLUSH) || !feed(body, Z_FINISH)) return false;
    out.resize(out.size() - deflater_.avail_out);
    return true;
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
  bool start_inflate(std::string_view dictionary) {
    if (!inflate_ready_) {
      if (inflateInit2(&inflater_, -window_bits) != Z_OK) return false;
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

// Reads a varint written by put_varint at `p`, advancing it (blocks are written by this file).
std::size_t get_varint(const char*& p) {
  std::size_t v = 0;
  for (int shift = 0;; shift += 7) {
    const auto b = static_cast<unsigned char>(*p++);
    v |= static_cast<std::size_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return v;
  }
}

// One stored resource: a single heap block (the slot is just its pointer, 8 bytes) holding the
// resource's name (a shared_string, constructed in place), the update time (system_clock
// ticks), varints for the kept record's size and the inflated record's size * 2 + 1 if kept raw
// (zlib failed or it did not compress), then the kept record.
struct slot {
  static_assert(alignof(shared_string) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  static_assert(sizeof(shared_string) % alignof(config_store::time::rep) == 0);

  // Ends the name's reference, then frees the block.
  struct block_deleter {
    void operator()(char* block) const noexcept {
      std::launder(reinterpret_cast<shared_string*>(block))->~shared_string();
      ::operator delete(block);
    }
  };
  std::unique_ptr<char, block_deleter> block;

  struct view {
    config_store::time updated;
    std::string_view name;
    std::string_view stored;
    std::size_t size;  // of the record inflated
    bool raw;
  };

  const shared_string& shared_name() const { return *std::launder(reinterpret_cast<shared_string*>(block.get())); }
  std::string_view name() const { return shared_name().view(); }

  view read() const {
    config_store::time::rep ticks = 0;
    const char* p = block.get() + sizeof(shared_string);
    std::memcpy(&ticks, p, sizeof ticks);
    p += sizeof ticks;
    const std::size_t stored_size = get_varint(p);
    const std::size_t size_raw = get_varint(p);
    return {config_store::time(config_store::time::duration(ticks)), name(), {p, stored_size}, size_raw >> 1,
            (size_raw & 1) != 0};
  }

  // Takes `other`'s block for the name when it is the same text (a resource stored under a
  // copy of its name while the ADS state had none, sent again once the state holds it).
  void share_name(const shared_string& other) {
    std::launder(reinterpret_cast<shared_string*>(block.get()))->share_if_equal(other);
  }

  // `stored` is `part1` followed by `part2` (a raw record is kept without joining it first).
  static slot make(config_store::time updated, const shared_string& name, std::string_view part1,
                   std::string_view part2, std::size_t size, bool raw) {
    std::string header;
    put_varint(header, part1.size() + part2.size());
    put_varint(header, size * 2 + (raw ? 1 : 0));
    const config_store::time::rep ticks = updated.time_since_epoch().count();
    char* p = static_cast<char*>(
        ::operator new(sizeof(shared_string) + sizeof ticks + header.size() + part1.size() + part2.size()));
    ::new (p) shared_string(name);  // no-throw from here: a copy of a shared_ptr
    slot s;
    s.block.reset(p);
    p += sizeof(shared_string);
    std::memcpy(p, &ticks, sizeof ticks);
    p += sizeof ticks;
    std::memcpy(p, header.data(), header.size());
    p += header.size();
    // (memcpy from an empty view's null data() is undefined, even for zero bytes)
    if (!part1.empty()) std::memcpy(p, part1.data(), part1.size());
    if (!part2.empty()) std::memcpy(p + part1.size(), part2.data(), part2.size());
    return s;
  }
};

std::uint32_t name_hash(std::string_view name) {
  return static_cast<std::uint32_t>(std::hash<std::string_view>{}(name));
}

// The resources of one kind: slots in a flat vector (unordered; the dump sorts by name) and an
// open-addressing table (linear probing) of slot positions + 1, 0 for empty, at most half full.
class resource_table {
 public:
  // The dictionary this kind's records are deflated against; fixed once the first record came
  // (every stored record depends on it).
  std::string dictionary;
  bool dictionary_set = false;

  std::size_t size() const { return slots_.size(); }
  const slot& at(std::size_t i) const { return slots_[i]; }
  slot& at(std::size_t i) { return slots_[i]; }

  // Position of `name`, or npos.
  std::size_t find(std::string_view name) const {
    if (index_.empty()) return npos;
    const std::uint32_t h = name_hash(name);
    for (std::size_t i = h & mask(); index_[i] != 0; i = (i + 1) & mask()) {
      if (slots_[index_[i] - 1].name() == name) return index_[i] - 1;
    }
    return npos;
  }

  // Appends a slot (its name must not be present); returns its position.
  std::size_t add(slot s) {
    if ((slots_.size() + 1) * 2 > index_.size()) grow();
    slots_.push_back(std::move(s));
    place(slots_.size() - 1);
    return slots_.size() - 1;
  }

  // Removes the slot at `pos`; the last slot takes its position.
  void erase(std::size_t pos) {
    unplace(pos);
    const std::size_t last = slots_.size() - 1;
    if (pos != last) {
      unplace(last);
      slots_[pos] = std::move(slots_[last]);
      slots_.pop_back();
      place(pos);
    } else {
      slots_.pop_back();
    }
    if (slots_.empty()) {
      std::vector<std::uint32_t>().swap(index_);
      std::vector<slot>().swap(slots_);
    }
  }

  // The slot vector and the index (not the blocks).
  std::size_t overhead_bytes() const {
    return slots_.capacity() * sizeof(slot) + index_.capacity() * sizeof(std::uint32_t);
  }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

 private:
  std::size_t mask() const { return index_.size() - 1; }

  void place(std::size_t pos) {
    std::size_t i = name_hash(slots_[pos].name()) & mask();
    while (index_[i] != 0) i = (i + 1) & mask();
    index_[i] = static_cast<std::uint32_t>(pos + 1);
  }

  // Takes slot `pos` out of the index (backward-shift deletion keeps probe runs unbroken).
  void unplace(std::size_t pos) {
    std::size_t i = name_hash(slots_[pos].name()) & mask();
    while (index_[i] != pos + 1) i = (i + 1) & mask();
    for (std::size_t j = (i + 1) & mask(); index_[j] != 0; j = (j + 1) & mask()) {
      const std::size_t home = name_hash(slots_[index_[j] - 1].name()) & mask();
      // Move j's entry into the hole at i unless its home lies cyclically in (i, j].
      const bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
      if (!stays) {
        index_[i] = index_[j];
        i = j;
      }
    }
    index_[i] = 0;
  }

  void grow() {
    index_.assign(std::max<std::size_t>(16, index_.size() * 2), 0);
    for (std::size_t p = 0; p < slots_.size(); ++p) place(p);
  }

  std::vector<slot> slots_;
  std::vector<std::uint32_t> index_;
};

}  // namespace

struct config_store::impl {
  mutable std::mutex mu;
  std::shared_ptr<const std::string> bootstrap;
  time bootstrap_loaded{};
  resource_table resources[3];
  std::string sotw_version[3];  // the last state-of-the-world version_info per kind
  std::set<std::string> warming_clusters;
  std::set<std::string> waiting_listeners;
  // Reused for every resource (under mu; render is const but decompresses).
  mutable codec zlib;
  mutable std::string record, packed, unpacked, dictionary, chunk;

  // Scratch buffers grow to the largest resource (a listener with 10,000 chains is several MB):
  // let go of them after such a one instead of keeping them for the store's lifetime.
  void trim_scratch() const {
    constexpr std::size_t keep = 64 * 1024;
    for (std::string* b : {&record, &packed, &unpacked, &dictionary, &chunk}) {
      if (b->capacity() > keep) std::string().swap(*b);
    }
  }

  // The dictionary a resource named `name` of `table` is deflated against.
  std::string_view dictionary_for(const resource_table& table, std::string_view name) const {
    dictionary.assign(table.dictionary);
    dictionary.append(name);
    return dictionary;
  }

  resource_table& of(kind k) { return resources[static_cast<int>(k)]; }
  const resource_table& of(kind k) const { return resources[static_cast<int>(k)]; }

  // The record of slot `s` into `unpacked`; false if it does not inflate (a bug, not input).
  bool unpack(const resource_table& table, const slot::view& s) const {
    if (s.raw) {
      unpacked.assign(s.stored);
      return true;
    }
    return zlib.inflate(dictionary_for(table, s.name), s.stored, s.size, unpacked);
  }

  // True if slot `s` holds exactly `bytes` (its version is not compared). Requires
  // s.size > bytes.size(). Inflated in pieces: an unchanged listener of several MB (resent with
  // every state-of-the-world LDS push) is compared without being inflated whole.
  bool same_bytes(const resource_table& table, const slot::view& s, const std::string& bytes) const {
    if (s.raw) {
      std::string_view version, stored_bytes;
      return split_record(s.stored, version, stored_bytes) && stored_bytes == bytes;
    }
    // The record is varint(version size), version, bytes: with equal bytes, the first
    // `prefix` bytes are exactly the varint and the version.
    const std::size_t prefix = s.size - bytes.size();
    std::size_t at = 0;  // offset in the record of the piece
    return zlib.inflate_pieces(dictionary_for(table, s.name), s.stored, s.size, chunk, [&](std::string_view piece) {
      std::size_t i = 0;
      if (at == 0) {
        std::size_t version_size = 0, k = 0;
        for (int shift = 0;; shift += 7, ++k) {
          if (k >= piece.size() || shift > 28) return false;
          const auto b = static_cast<unsigned char>(piece[k]);
          version_size |= static_cast<std::size_t>(b & 0x7f) << shift;
          if ((b & 0x80) == 0) break;
        }
        if (k + 1 + version_size != prefix) return false;
      }
      // A piece wholly inside the version (one longer than a piece) has nothing to compare.
      if (at + piece.size() <= prefix) {
        at += piece.size();
        return true;
      }
      if (at < prefix) i = prefix - at;
      const std::size_t from = at + i - prefix;  // where the piece's bytes start in `bytes`
      if (from > bytes.size()) return false;  // the record inflates longer than it claims
      const bool equal = piece.substr(i) == std::string_view(bytes).substr(from, piece.size() - i);
      at += piece.size();
      return equal;
    });
  }

  slot make_slot(resource_table& table, const shared_string& name, const std::string& version,
                 const std::string& bytes, time now) {
    // The record, varint(version size) + version + bytes, in two parts: the bytes are not copied.
    record.clear();
    put_varint(record, version.size());
    record += version;
    const std::size_t size = record.size() + bytes.size();
    if (!table.dictionary_set) {
      table.dictionary.assign(record, 0, std::min(record.size(), max_dictionary));
      table.dictionary.append(bytes, 0, max_dictionary - table.dictionary.size());
      table.dictionary.shrink_to_fit();
      table.dictionary_set = true;
    }
    // Kept as is if zlib failed (out of memory) or the record does not compress.
    if (zlib.deflate(dictionary_for(table, name), record, bytes, packed)) {
      return slot::make(now, name, packed, {}, size, false);
    }
    return slot::make(now, name, record, bytes, size, true);
  }

  // Records `bytes` under `name` unless it holds them already; returns the slot's position.
  std::size_t put(kind k, const shared_string& name, const std::string& version, const std::string& bytes,
                  time now) {
    auto& table = of(k);
    const std::size_t pos = table.find(name);
    if (pos != resource_table::npos) {
      const slot::view s = table.at(pos).read();
      // Unchanged only if the stored bytes are the same length and, inflated, equal.
      // (the record is the version's length and text, then the bytes: never shorter than them).
      if (s.size > bytes.size() && same_bytes(table, s, bytes)) {
        table.at(pos).share_name(name);
        return pos;
      }
      table.at(pos) = make_slot(table, name, version, bytes, now);
      return pos;
    }
    return table.add(make_slot(table, name, version, bytes, now));
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

void config_store::remove(kind k, const std::string& name) {
  std::lock_guard lock(impl_->mu);
  auto& table = impl_->of(k);
  if (const std::size_t pos = table.find(name); pos != resource_table::npos) table.erase(pos);
}

void config_store::replace_all(kind k, const std::vector<std::pair<shared_string, const std::string*>>& resources,
                               const std::string& version, time now) {
  std::lock_guard lock(impl_->mu);
  auto& table = impl_->of(k);
  // Which slots the response holds; a name given twice keeps its first bytes (as the map's
  // emplace did before).
  std::vector<bool> in_response(table.size() + resources.size(), false);
  for (const auto& [name, bytes] : resources) {
    const std::size_t known = table.find(name);
    if (known != resource_table::npos && in_response[known]) continue;
    in_response[impl_->put(k, name, version, *bytes, now)] = true;
  }
  impl_->trim_scratch();
  // Erasing moves the last slot into the hole: walk down so every moved slot was seen already.
  for (std::size_t i = table.size(); i-- > 0;) {
    if (!in_response[i]) table.erase(i);
  }
  impl_->sotw_version[static_cast<int>(k)] = version;
}

void config_store::retain(kind k, const std::set<std::string>& names) {
  std::lock_guard lock(impl_->mu);
  auto& table = impl_->of(k);
  std::string key;  // one buffer for the lookups: no allocation per stored resource
  for (std::size_t i = table.size(); i-- > 0;) {
    key.assign(table.at(i).name());
    if (!names.contains(key)) table.erase(i);
  }
}

void config_store::set_pending(std::set<std::string> warming_clusters, std::set<std::string> waiting_listeners) {
  std::lock_guard lock(impl_->mu);
  impl_->warming_clusters = std::move(warming_clusters);
  impl_->waiting_listeners = std::move(waiting_listeners);
}

std::size_t config_store::stored_bytes(kind k) const {
  std::lock_guard lock(impl_->mu);
  const auto& table = impl_->of(k);
  std::size_t n = table.dictionary.capacity() + table.overhead_bytes();
  for (std::size_t i = 0; i < table.size(); ++i) {
    const auto s = table.at(i).read();
    n += sizeof(shared_string) + sizeof(time::rep) + 2 + s.stored.size();
  }
  return n;
}

std::string config_store::missing_cluster_note(std::string_view cluster) const {
  std::lock_guard lock(impl_->mu);
  const std::string name(cluster);
  if (impl_->warming_clusters.contains(name)) {
    return "it is warming: received over CDS but still waiting for its first EDS assignment";
  }
  if (impl_->of(kind::cluster).find(name) != resource_table::npos) return "it was received over CDS but is not in force";
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
    // one does not inflate (a bug in this store, not bad input).
    const auto each = [&](kind k, const auto& visit) {
      const auto& table = impl_->of(k);
      std::vector<slot::view> sorted;
      sorted.reserve(table.size());
      for (std::size_t i = 0; i < table.size(); ++i) sorted.push_back(table.at(i).read());
      std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
      for (const auto& s : sorted) {
        std::string_view version, bytes;
        if (!impl_->unpack(table, s) || !split_record(impl_->unpacked, version, bytes)) return false;
        visit(std::string(s.name), version, bytes, s.updated);
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
    if (!intact) return {500, bad("a stored resource does not decompress")};
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
