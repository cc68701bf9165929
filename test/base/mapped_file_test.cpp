#include "kuiper/base/mapped_file.h"

#include <fstream>

#include "kuiper/base/error.h"
#include "test/test_util.h"

namespace kuiper::test {
namespace {

TEST(MappedFile, MapsTheWholeFile) {
  const auto path = scratch_dir() / "mapped.txt";
  std::ofstream(path) << "hello";
  const auto f = MappedFile::open(path);
  ASSERT_EQ(f->bytes().size(), 5u);
  EXPECT_EQ(char(f->bytes()[4]), 'o');
}

TEST(MappedFile, MissingAndEmptyFilesAreClearErrors) {
  EXPECT_THROW(MappedFile::open(scratch_dir() / "no-such-file"), Error);
  const auto empty = scratch_dir() / "empty";
  std::ofstream{empty};
  try {
    MappedFile::open(empty);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("empty"), std::string::npos);
  }
  EXPECT_THROW(MappedFile::open(scratch_dir()), Error) << "a directory";
}

}  // namespace
}  // namespace kuiper::test
