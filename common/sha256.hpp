// SHA-256 (FIPS 180-4), written in-tree so the cache key needs no crypto dependency.
// A cryptographic hash (not FNV or the like) because the key names a cubin on disk: two
// different manifests must never share a key, even when someone tries to make them.
#pragma once
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace plx {

// Incremental hasher: update() any number of times, then digest() / hex_digest() once.
// After digest() the object is finished; call reset() to hash another message.
class Sha256 {
 public:
  using Digest = std::array<std::uint8_t, 32>;

  Sha256() { reset(); }
  void reset();
  Sha256& update(std::string_view bytes);
  Sha256& update(const void* data, std::size_t size);
  Digest digest();
  std::string hex_digest();

 private:
  void compress(const std::uint8_t* block);

  std::array<std::uint32_t, 8> state_{};
  std::array<std::uint8_t, 64> buffer_{};
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
};

// Lower-case hex SHA-256 of `bytes` (64 characters).
std::string sha256_hex(std::string_view bytes);

// Lower-case hex of arbitrary bytes.
std::string to_hex(const std::uint8_t* data, std::size_t size);

}  // namespace plx
