#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>

#include "setdet/core/malloc_tuning.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace setdet {
namespace {

#if defined(__GLIBC__)
TEST(KeepFreedMemoryForReuse, TheEnvironmentsChoiceWinsThenLargeBlocksStayInTheHeap) {
  ASSERT_EQ(std::getenv("MALLOC_MMAP_THRESHOLD_"), nullptr) << "run the test without it";
  ASSERT_EQ(std::getenv("MALLOC_TRIM_THRESHOLD_"), nullptr) << "run the test without it";
  ::setenv("MALLOC_TRIM_THRESHOLD_", "1", 1);
  EXPECT_EQ(keep_freed_memory_for_reuse(), "glibc malloc thresholds from the environment");
  ::unsetenv("MALLOC_TRIM_THRESHOLD_");

  EXPECT_EQ(keep_freed_memory_for_reuse(), "glibc malloc keeps freed memory for reuse");
  constexpr size_t kBlock = 64u << 20;  // above glibc's largest automatic mmap threshold (32 MiB)
  const size_t mapped_before = mallinfo2().hblkhd;
  char* block = static_cast<char*>(std::malloc(kBlock));
  ASSERT_NE(block, nullptr);
  std::memset(block, 1, kBlock);
  EXPECT_EQ(mallinfo2().hblkhd, mapped_before) << "the block was mmapped";
  std::free(block);
  // freed, not trimmed: the heap keeps the block's bytes for the next allocation
  EXPECT_GE(mallinfo2().fordblks, kBlock);
}
#endif

}  // namespace
}  // namespace setdet
