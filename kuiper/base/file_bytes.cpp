#include "kuiper/base/file_bytes.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "kuiper/base/error.h"

namespace kuiper {
namespace {

constexpr size_t kHugePage = size_t(2) << 20;

// Closes the descriptor on every path out.
struct Fd {
  int fd;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::byte* read_all(int fd, size_t size, const std::filesystem::path& path) {
  const size_t rounded = (size + kHugePage - 1) / kHugePage * kHugePage;
  auto* data = static_cast<std::byte*>(std::aligned_alloc(kHugePage, rounded));
  KUIPER_CHECK(data != nullptr, "out of host memory: cannot hold the ", size, " bytes of ",
               path.string());
  ::madvise(data, rounded, MADV_HUGEPAGE);  // a hint; without THP the read still works
  for (size_t done = 0; done < size;) {
    const ssize_t n = ::read(fd, data + done, size - done);
    if (n <= 0) {
      const int err = errno;
      std::free(data);
      fail("cannot read ", path.string(), ": ", n == 0 ? "unexpected end of file" : std::strerror(err));
    }
    done += size_t(n);
  }
  return data;
}

}  // namespace

std::shared_ptr<const FileBytes> FileBytes::open(const std::filesystem::path& path, Mode mode) {
  const Fd file{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  KUIPER_CHECK(file.fd >= 0, "cannot open ", path.string(), ": ", std::strerror(errno));
  struct stat st {};
  KUIPER_CHECK(::fstat(file.fd, &st) == 0 && S_ISREG(st.st_mode), path.string(),
               " is not a regular file");
  KUIPER_CHECK(st.st_size > 0, path.string(), " is empty");
  const auto size = size_t(st.st_size);
  std::byte* data = nullptr;
  if (mode == Mode::kRead) {
    data = read_all(file.fd, size, path);
  } else {
    void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, file.fd, 0);
    KUIPER_CHECK(p != MAP_FAILED, "cannot map ", path.string(), ": ", std::strerror(errno));
    data = static_cast<std::byte*>(p);
  }
  return std::shared_ptr<const FileBytes>(new FileBytes(path, data, size, mode));
}

FileBytes::FileBytes(std::filesystem::path path, std::byte* data, size_t size, Mode mode)
    : path_(std::move(path)), data_(data), size_(size), mode_(mode) {}

FileBytes::~FileBytes() {
  if (mode_ == Mode::kMap) ::munmap(data_, size_);
  else std::free(data_);
}

}  // namespace kuiper
