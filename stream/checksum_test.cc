#include "stream/checksum.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "stream/test_util.h"

namespace backupfs {
namespace {

// RFC 1950's definition, byte by byte: the reference the fast implementation must match.
uint32_t TextbookAdler32(std::span<const uint8_t> bytes) {
  constexpr uint32_t kMod = 65521;
  uint32_t a = 1, b = 0;
  for (uint8_t byte : bytes) {
    a = (a + byte) % kMod;
    b = (b + a) % kMod;
  }
  return (b << 16) | a;
}

TEST(Adler32Test, KnownValue) {
  const std::string text = "Wikipedia";
  Adler32 sum;
  sum.Update({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  EXPECT_EQ(sum.value(), 0x11E60398u);
}

TEST(Adler32Test, EmptyInputKeepsTheRunningValue) {
  Adler32 sum;
  sum.Update({});
  EXPECT_EQ(sum.value(), 1u);
  const std::string text = "Wikipedia";
  sum.Update({reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  sum.Update(std::span<const uint8_t>());  // null data: libdeflate would return 1
  sum.Update(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), 0));
  EXPECT_EQ(sum.value(), 0x11E60398u);
}

// All-0xff input is where the sums grow fastest: it catches a missed modulo in vector code.
TEST(Adler32Test, MatchesTheDefinitionOverUnevenPieces) {
  for (uint8_t fill : {uint8_t{0xff}, uint8_t{0}}) {
    std::vector<uint8_t> data = testing::RandomBytes(3 << 20, 7);
    std::fill(data.begin() + (1 << 20), data.begin() + (2 << 20), fill);
    Adler32 sum;
    size_t at = 0;
    for (size_t piece : {size_t{1}, size_t{31}, size_t{4097}, size_t{65536}, size_t{1} << 20}) {
      sum.Update(std::span(data).subspan(at, piece));
      at += piece;
    }
    sum.Update(std::span(data).subspan(at));
    EXPECT_EQ(sum.value(), TextbookAdler32(data)) << "fill " << int{fill};
  }
}

}  // namespace
}  // namespace backupfs
