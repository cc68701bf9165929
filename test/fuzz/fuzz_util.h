#pragma once
// What the fuzz targets share: the input as a file for parsers that open paths, test data
// locations, and the rule that kuiper::Error is the only acceptable way to refuse an input.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>

#include "kuiper/base/error.h"

namespace kuiper::fuzz {

// The bytes as an anonymous in-memory file (memfd), opened by path through /proc/self/fd, so the
// path-taking loaders (mmap included) read them exactly as they would read a file on disk.
class MemoryFile {
 public:
  explicit MemoryFile(std::span<const uint8_t> bytes) : fd_(::memfd_create("kuiper-fuzz", MFD_CLOEXEC)) {
    KUIPER_CHECK(fd_ >= 0, "memfd_create failed");
    for (size_t done = 0; done < bytes.size();) {
      const ssize_t n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n <= 0) std::abort();
      done += size_t(n);
    }
  }
  ~MemoryFile() { ::close(fd_); }
  MemoryFile(const MemoryFile&) = delete;
  MemoryFile& operator=(const MemoryFile&) = delete;

  std::filesystem::path path() const { return "/proc/self/fd/" + std::to_string(fd_); }

 private:
  int fd_;
};

// Runs f; a kuiper::Error is a clean refusal. Any other exception escapes to libFuzzer, which
// reports it as a crash: a parser must never throw std::out_of_range, json errors and the like.
// KUIPER_FUZZ_VERBOSE=1 prints the refusals (to see what a seed reaches).
template <class F>
void refusals_allowed(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    static const bool verbose = std::getenv("KUIPER_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::fprintf(stderr, "refused: %s\n", e.what());
  }
}

// A file of the test data: under the source tree (KUIPER_SOURCE_DIR) or ../shared
// (KUIPER_SHARED_DIR); empty when it is missing.
inline std::filesystem::path data_file(std::string_view env_name, const char* built_in,
                                       std::string_view relative) {
  const char* env = std::getenv(std::string(env_name).c_str());
  std::filesystem::path p = std::filesystem::path(env != nullptr && *env ? env : built_in) / relative;
  return std::filesystem::exists(p) ? p : std::filesystem::path();
}
inline std::filesystem::path source_file(std::string_view relative) {
  return data_file("KUIPER_SOURCE_DIR", KUIPER_SOURCE_DIR, relative);
}
inline std::filesystem::path shared_file(std::string_view relative) {
  return data_file("KUIPER_SHARED_DIR", KUIPER_DEFAULT_SHARED_DIR, relative);
}

// Splits a fuzz input into pieces: one byte, or the text up to the next separator byte.
class InputReader {
 public:
  explicit InputReader(std::span<const uint8_t> bytes) : rest_(bytes) {}

  bool empty() const { return rest_.empty(); }
  uint8_t byte() {
    if (rest_.empty()) return 0;
    const uint8_t b = rest_[0];
    rest_ = rest_.subspan(1);
    return b;
  }
  std::string text_until(uint8_t separator) {
    size_t n = 0;
    while (n < rest_.size() && rest_[n] != separator) ++n;
    std::string out(reinterpret_cast<const char*>(rest_.data()), n);
    rest_ = rest_.subspan(n < rest_.size() ? n + 1 : n);
    return out;
  }
  std::string rest() {
    std::string out(reinterpret_cast<const char*>(rest_.data()), rest_.size());
    rest_ = {};
    return out;
  }

 private:
  std::span<const uint8_t> rest_;
};

}  // namespace kuiper::fuzz
