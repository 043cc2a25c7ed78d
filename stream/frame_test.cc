#include "stream/frame.h"

#include <gtest/gtest.h>

#include <string>

namespace backupfs {
namespace {

std::span<const uint8_t> Bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

TEST(FrameTest, EncodesLikeVirtnbdbackup) {
  auto bytes = EncodeFrameHeader({FrameKind::kData, 0x100000, 0xabc});
  EXPECT_EQ(std::string(bytes.begin(), bytes.end()), "data 0000000000100000 0000000000000abc\r\n");
}

TEST(FrameTest, RoundTripsEveryKind) {
  for (FrameKind k :
       {FrameKind::kMeta, FrameKind::kData, FrameKind::kZero, FrameKind::kStop, FrameKind::kComp}) {
    FrameHeader h{k, 0x0123456789abcdefull, 0x10};
    auto bytes = EncodeFrameHeader(h);
    auto back = DecodeFrameHeader(bytes, "f", 0);
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, h);
  }
}

TEST(FrameTest, AcceptsUppercaseHex) {
  auto h = DecodeFrameHeader(Bytes("zero 00000000000ABCDE 0000000000000010\r\n"), "f", 0);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->start, 0xabcdeu);
}

TEST(FrameTest, TruncatedHeaderNamesFileAndOffset) {
  auto h = DecodeFrameHeader(Bytes("data 0000000000000000 00000"), "vda.full.data", 4096);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), StatusCode::kCorruption);
  EXPECT_NE(h.status().message().find("vda.full.data: offset 4096"), std::string::npos);
  EXPECT_NE(h.status().message().find("truncated"), std::string::npos);
}

TEST(FrameTest, RejectsUnknownKind) {
  auto h = DecodeFrameHeader(Bytes("dbta 0000000000000000 0000000000000010\r\n"), "f", 80);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("unknown kind 'dbta'"), std::string::npos);
  EXPECT_NE(h.status().message().find("offset 80"), std::string::npos);
}

TEST(FrameTest, RejectsNonHexDigitWithItsOffset) {
  auto h = DecodeFrameHeader(Bytes("data 00000000000000g0 0000000000000010\r\n"), "f", 100);
  ASSERT_FALSE(h.ok());
  // The bad digit is byte 19 of the header.
  EXPECT_NE(h.status().message().find("offset 119"), std::string::npos) << h.status().message();
}

TEST(FrameTest, RejectsSignsAndSpacesInNumbers) {
  EXPECT_FALSE(DecodeFrameHeader(Bytes("data -000000000000010 0000000000000010\r\n"), "f", 0).ok());
  EXPECT_FALSE(DecodeFrameHeader(Bytes("data  000000000000010 0000000000000010\r\n"), "f", 0).ok());
}

TEST(FrameTest, RejectsBadSeparatorsAndTerminator) {
  EXPECT_FALSE(DecodeFrameHeader(Bytes("data_0000000000000000 0000000000000010\r\n"), "f", 0).ok());
  EXPECT_FALSE(DecodeFrameHeader(Bytes("data 0000000000000000_0000000000000010\r\n"), "f", 0).ok());
  EXPECT_FALSE(DecodeFrameHeader(Bytes("data 0000000000000000 0000000000000010\n\n"), "f", 0).ok());
  EXPECT_FALSE(DecodeFrameHeader(Bytes("data 0000000000000000 0000000000000010\r\r"), "f", 0).ok());
}

TEST(FrameTest, RejectsStartPlusLengthOverflow) {
  auto h = DecodeFrameHeader(Bytes("data ffffffffffffff00 0000000000000100\r\n"), "f", 0);
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.status().message().find("overflows"), std::string::npos);
  EXPECT_TRUE(DecodeFrameHeader(Bytes("data ffffffffffffff00 00000000000000ff\r\n"), "f", 0).ok());
}

}  // namespace
}  // namespace backupfs
