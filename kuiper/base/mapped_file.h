#pragma once
#include <cstddef>
#include <filesystem>
#include <memory>
#include <span>

namespace kuiper {

// A whole file mapped read-only into memory; unmapped when the last owner lets go.
class MappedFile {
 public:
  // Throws kuiper::Error naming the file when it is missing, unreadable or empty.
  static std::shared_ptr<const MappedFile> open(const std::filesystem::path& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const std::byte> bytes() const { return {data_, size_}; }
  const std::filesystem::path& path() const { return path_; }

 private:
  MappedFile(std::filesystem::path path, const std::byte* data, size_t size);
  std::filesystem::path path_;
  const std::byte* data_;
  size_t size_;
};

}  // namespace kuiper
