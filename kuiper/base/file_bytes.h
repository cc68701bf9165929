#pragma once
#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>

namespace kuiper {

// The bytes of a whole file, read-only, held in memory one of two ways:
// - kMap: mapped (the default): nothing is read up front and the pages are shared with the page
//   cache, but the kernel may drop them under pressure and read them again later;
// - kRead: read into private memory (huge pages where the kernel allows): the load costs a full
//   read, then the bytes stay in RAM and stream with fewer TLB misses.
class FileBytes {
 public:
  enum class Mode { kMap, kRead };
  // Throws kuiper::Error naming the file when it is missing, unreadable or empty.
  static std::shared_ptr<const FileBytes> open(const std::filesystem::path& path,
                                               Mode mode = Mode::kMap);
  ~FileBytes();
  FileBytes(const FileBytes&) = delete;
  FileBytes& operator=(const FileBytes&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  FileBytes(std::filesystem::path path, std::byte* data, size_t size, Mode mode);
  std::filesystem::path path_;
  std::byte* data_;
  size_t size_;
  Mode mode_;
};

}  // namespace kuiper
