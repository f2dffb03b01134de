// A table of entries found by a name, built once and then only read, for the tables of tens of
// thousands of names an istiod east-west gateway has (a server name per chain in the chain
// matcher, a cluster per service in the routing snapshot): a node-based map costs a heap block
// per name plus a bucket (and often a copy of the name for its key to view), more than the
// entry itself. Here the entries sit in one vector, found through an open-addressing table
// (linear probing, at most 3/4 full) of 32-bit slots. A slot holds the entry's position + 1
// (0: empty) in its low bits and bits of the name's hash above them, so a probe past another
// name rarely reads that name.
//
// The key is read from the entry (KeyOf{}(entry), from `key_offset` on: the matcher's wildcard
// "*.example.com" is found as ".example.com"), so the table keeps no copy of any name; the text
// must stay put while the entry lives (a shared block, as xds::shared_string, not an inline
// std::string).
//
// Not xds's dense_index (ads_state.h): that one is kept up to date by insert and erase, reads
// the name on every probe, and lives in a header that brings protobuf into proxy; this one is
// built once and is on the per-connection path (find() is allocation-free).
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>
#include <vector>

namespace ewgw::proxy {

template <class Entry, class KeyOf>
class flat_name_table {
 public:
  explicit flat_name_table(std::uint8_t key_offset = 0) : key_offset_(key_offset) {}
  flat_name_table(flat_name_table&&) noexcept = default;
  flat_name_table& operator=(flat_name_table&&) noexcept = default;

  // Room for `count` names, so that adding them neither moves entries nor rehashes.
  void reserve(std::size_t count) {
    if (count == 0) return;
    entries_.reserve(count);
    if (const std::size_t slot_count = slots_for(count); slot_count > slots_.size()) rehash(slot_count);
  }
  // Adds `e` unless an entry with its key is there already. Returns the position of the entry
  // with that key (a reference would not survive the next add) and whether `e` was added.
  std::pair<std::size_t, bool> add(Entry e) {
    const std::string_view k = key(e);
    const std::size_t hash = std::hash<std::string_view>{}(k);
    if (!slots_.empty()) {
      if (const std::uint32_t slot = slots_[probe(k, hash)]; slot != 0) return {position_of(slot), false};
    }
    if (entries_.size() == entries_.capacity()) entries_.reserve(std::max<std::size_t>(8, entries_.size() * 2));
    reserve(entries_.size() + 1);
    const std::size_t position = entries_.size();
    entries_.push_back(std::move(e));  // `k` views text the entry points at, which stays
    slots_[probe(k, hash)] = (tag_of(hash) << position_bits_) | static_cast<std::uint32_t>(position + 1);
    return {position, true};
  }
  // The entry at `position` (from add()). Replacing it must keep its key.
  Entry& at(std::size_t position) { return entries_[position]; }
  // Drops the room reserved for names that turned out to be repeated.
  void shrink() {
    entries_.shrink_to_fit();
    if (const std::size_t slot_count = slots_for(entries_.size()); slot_count < slots_.size()) rehash(slot_count);
  }

  // The entry whose key is `key`, or null. Allocation-free.
  const Entry* find(std::string_view key) const {
    if (entries_.empty()) return nullptr;
    const std::uint32_t slot = slots_[probe(key, std::hash<std::string_view>{}(key))];
    return slot == 0 ? nullptr : &entries_[position_of(slot)];
  }
  std::string_view key(const Entry& e) const { return KeyOf{}(e).substr(key_offset_); }
  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  // In the order added.
  const Entry* begin() const { return entries_.data(); }
  const Entry* end() const { return entries_.data() + entries_.size(); }

 private:
  std::size_t position_of(std::uint32_t slot) const { return (slot & ((std::uint32_t{1} << position_bits_) - 1)) - 1; }
  std::uint32_t tag_of(std::size_t hash) const {
    // The hash's upper half (the home slot comes from the lower bits), as many of its bits as
    // fit above the position.
    return static_cast<std::uint32_t>(static_cast<std::uint64_t>(hash) >> 32) >> position_bits_;
  }
  // The slot of `key`, or the empty one where it would go.
  std::size_t probe(std::string_view key, std::size_t hash) const {
    const std::size_t mask = slots_.size() - 1;
    const std::uint32_t tag = tag_of(hash);
    std::size_t s = hash & mask;
    for (; slots_[s] != 0; s = (s + 1) & mask) {
      const std::uint32_t slot = slots_[s];
      if ((slot >> position_bits_) == tag && this->key(entries_[position_of(slot)]) == key) break;
    }
    return s;
  }
  static std::size_t slots_for(std::size_t count) {
    // At most 3/4 full, so that a probe soon ends at an empty slot.
    std::size_t slot_count = 16;
    while (count * 4 > slot_count * 3) slot_count *= 2;
    return slot_count;
  }
  void rehash(std::size_t slot_count) {
    slots_.assign(slot_count, 0);
    // Positions + 1 stay below 3/4 of the slot count, so log2(slot count) bits hold them.
    position_bits_ = static_cast<std::uint8_t>(std::countr_zero(slot_count));
    const std::size_t mask = slot_count - 1;
    for (std::size_t i = 0; i < entries_.size(); ++i) {
      const std::size_t hash = std::hash<std::string_view>{}(key(entries_[i]));
      std::size_t s = hash & mask;
      while (slots_[s] != 0) s = (s + 1) & mask;
      slots_[s] = (tag_of(hash) << position_bits_) | static_cast<std::uint32_t>(i + 1);
    }
  }

  std::vector<Entry> entries_;
  std::vector<std::uint32_t> slots_;  // a power of two in size, or empty
  std::uint8_t position_bits_ = 0;    // log2(slots_.size()): positions + 1 are below it
  std::uint8_t key_offset_ = 0;
};

}  // namespace ewgw::proxy
