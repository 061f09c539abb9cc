#include "common/secure_memory.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace rngmux {
namespace {

// ASan and TSan intercept mlock() and return success without locking anything,
// so the kernel's "lo" flag can only be checked in builds without them.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kMlockIsReal = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kMlockIsReal = false;
#else
constexpr bool kMlockIsReal = true;
#endif
#else
constexpr bool kMlockIsReal = true;
#endif

// The VmFlags line of the /proc/self/smaps mapping that contains `address`.
std::string VmFlagsOf(const void* address) {
  const auto target = reinterpret_cast<std::uintptr_t>(address);
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  while (std::getline(smaps, line)) {
    std::uintptr_t start = 0, end = 0;
    char dash = 0;
    std::istringstream range(line);
    if (range >> std::hex >> start >> dash >> end && dash == '-') {
      inside = start <= target && target < end;
      continue;
    }
    if (inside && line.rfind("VmFlags:", 0) == 0) return line;
  }
  return "";
}

TEST(SecureBufferTest, IsZeroedPageAlignedAndExcludedFromCoreDumps) {
  SecureBuffer buffer(10000);
  ASSERT_EQ(buffer.size(), 10000u);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(buffer.data()) % sysconf(_SC_PAGESIZE), 0u);
  for (std::uint8_t b : buffer.span()) ASSERT_EQ(b, 0);
  EXPECT_TRUE(buffer.dump_excluded());
  const std::string flags = VmFlagsOf(buffer.data());
  ASSERT_FALSE(flags.empty()) << "mapping not found in /proc/self/smaps";
  EXPECT_NE(flags.find(" dd"), std::string::npos) << flags;
  if (buffer.locked() && kMlockIsReal) {
    EXPECT_NE(flags.find(" lo"), std::string::npos) << flags;
  }
}

TEST(SecureBufferTest, DumpExcludedBlocksAreExcludedAndReused) {
  std::uint8_t* block = AllocateDumpExcluded(5000);
  ASSERT_NE(block, nullptr);
  for (std::size_t i = 0; i < 5000; ++i) ASSERT_EQ(block[i], 0);
  const std::string flags = VmFlagsOf(block);
  ASSERT_FALSE(flags.empty()) << "mapping not found in /proc/self/smaps";
  EXPECT_NE(flags.find(" dd"), std::string::npos) << flags;
  block[4999] = 7;  // the whole rounded-up block is usable
  block[4999] = 0;  // and the caller wipes before freeing
  FreeDumpExcluded(block, 5000);
  // The same size class comes back from the cache rather than a new mapping.
  std::uint8_t* again = AllocateDumpExcluded(8000);
  EXPECT_EQ(again, block);
  FreeDumpExcluded(again, 8000);
}

TEST(SecureBufferTest, SmallBlocksAreDumpExcludedSlotsReusedWithoutNewMappings) {
  // More than one chunk's worth of 64-byte slots, all live at once (a thousand
  // guests, each with a reply in flight).
  constexpr std::size_t kBlocks = 1500;
  constexpr std::size_t kSize = 64;
  std::vector<std::uint8_t*> blocks;
  for (std::size_t i = 0; i < kBlocks; ++i) {
    std::uint8_t* block = AllocateDumpExcluded(kSize);
    ASSERT_NE(block, nullptr);
    for (std::size_t k = 0; k < kSize; ++k) ASSERT_EQ(block[k], 0) << "block " << i;
    std::memset(block, static_cast<int>(i % 251) + 1, kSize);
    blocks.push_back(block);
  }
  // No two blocks overlap: each still holds its own pattern.
  for (std::size_t i = 0; i < kBlocks; ++i) {
    for (std::size_t k = 0; k < kSize; ++k) {
      ASSERT_EQ(blocks[i][k], static_cast<std::uint8_t>(i % 251 + 1)) << "block " << i;
    }
  }
  const std::string flags = VmFlagsOf(blocks[kBlocks - 1]);
  ASSERT_FALSE(flags.empty()) << "mapping not found in /proc/self/smaps";
  EXPECT_NE(flags.find(" dd"), std::string::npos) << flags;
  for (std::uint8_t* block : blocks) {
    SecureWipe(block, kSize);
    FreeDumpExcluded(block, kSize);
  }
  // The same number again, twice over: from the free slots, not from new mappings.
  const std::size_t mappings = DumpExcludedMappingsMade();
  for (int round = 0; round < 2; ++round) {
    for (std::size_t i = 0; i < kBlocks; ++i) blocks[i] = AllocateDumpExcluded(kSize);
    for (std::uint8_t* block : blocks) {
      for (std::size_t k = 0; k < kSize; ++k) ASSERT_EQ(block[k], 0);
      FreeDumpExcluded(block, kSize);
    }
  }
  EXPECT_EQ(DumpExcludedMappingsMade(), mappings);
}

TEST(SecureBufferTest, SlotSizesCoverWhatWasAskedAndLargerBlocksArePages) {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  for (std::size_t size : {1u, 64u, 65u, 1000u, 2048u}) {
    std::uint8_t* block = AllocateDumpExcluded(size);
    std::memset(block, 0x5A, size);  // the whole size is usable (ASan has no view here)
    SecureWipe(block, size);
    FreeDumpExcluded(block, size);
  }
  std::uint8_t* block = AllocateDumpExcluded(page / 2 + 1);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(block) % page, 0u);
  FreeDumpExcluded(block, page / 2 + 1);
}

TEST(SecureBufferTest, SecureWipeZeroesExactlyTheRange) {
  std::uint8_t bytes[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  SecureWipe(bytes + 2, 4);
  const std::uint8_t expected[8] = {1, 2, 0, 0, 0, 0, 7, 8};
  EXPECT_EQ(0, std::memcmp(bytes, expected, sizeof bytes));
}

}  // namespace
}  // namespace rngmux
