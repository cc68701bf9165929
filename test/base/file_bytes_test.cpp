#include "kuiper/base/file_bytes.h"

#include <fstream>

#include "kuiper/base/error.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

TEST(FileBytes, MapsOrReadsTheWholeFile) {
  const auto path = scratch_dir() / "bytes.txt";
  std::ofstream(path) << "hello";
  for (const auto mode : {FileBytes::Mode::kMap, FileBytes::Mode::kRead}) {
    const auto f = FileBytes::open(path, mode);
    ASSERT_EQ(f->bytes().size(), 5u);
    EXPECT_EQ(char(f->bytes()[4]), 'o');
  }
}

TEST(FileBytes, MissingAndEmptyFilesAreClearErrors) {
  for (const auto mode : {FileBytes::Mode::kMap, FileBytes::Mode::kRead}) {
    EXPECT_THROW(FileBytes::open(scratch_dir() / "no-such-file", mode), Error);
    const auto empty = scratch_dir() / "empty";
    std::ofstream{empty};
    try {
      FileBytes::open(empty, mode);
      FAIL();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos);
    }
    EXPECT_THROW(FileBytes::open(scratch_dir(), mode), Error) << "a directory";
  }
}

}  // namespace
}  // namespace kuiper::test
