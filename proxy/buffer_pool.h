// Per-worker pool of fixed-size relay buffers. A connection holds a buffer only while bytes are
// in flight in one direction; an idle connection holds none, so idle connections cost only
// their session object and kernel socket state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace ewgw::proxy {

class buffer_pool {
 public:
  // One TLS record (2^14 bytes of plaintext plus overhead) fits; larger buffers gain little for
  // a relay and cost memory per busy connection.
  static constexpr std::size_t block_size = 16 * 1024;
  using block = std::unique_ptr<std::uint8_t[]>;

  explicit buffer_pool(std::size_t max_idle_blocks = 512) : max_idle_(max_idle_blocks) {}

  block acquire() {
    if (free_.empty()) return block(new std::uint8_t[block_size]);
    block b = std::move(free_.back());
    free_.pop_back();
    return b;
  }

  void release(block b) {
    if (b && free_.size() < max_idle_) free_.push_back(std::move(b));
  }

  std::size_t idle_blocks() const { return free_.size(); }

 private:
  std::size_t max_idle_;
  std::vector<block> free_;
};

}  // namespace ewgw::proxy
