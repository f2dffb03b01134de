// Randomness for host selection and outlier enforcement, injected so tests are deterministic.
#pragma once

#include <cstdint>

namespace ewgw::lb {

// A source of 64-bit pseudo-random values. Every pick and every enforcement decision draws from
// one passed in by the caller: each worker owns one (never shared across threads), the cold half
// owns another. Implementations must not allocate or lock in next().
class random_source {
 public:
  virtual ~random_source() = default;
  virtual std::uint64_t next() = 0;
};

// splitmix64: small, fast, passes BigCrush; good enough for load balancing (not for secrets).
class fast_random final : public random_source {
 public:
  explicit fast_random(std::uint64_t seed = 0) : state_(seed) {}
  std::uint64_t next() override { return mix(state_ += 0x9e3779b97f4a7c15ull); }

  // The splitmix64 finalizer: a bijective mix of one word, also used to derive per-worker
  // starting points from a seed.
  static std::uint64_t mix(std::uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }

 private:
  std::uint64_t state_;
};

}  // namespace ewgw::lb
