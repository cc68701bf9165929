#pragma once
#include <cstddef>
#include <memory>

#include "kuiper/base/device.h"

namespace kuiper {

class Allocator;

// A contiguous block of device memory. Either owns it (taken from an Allocator, returned on
// destruction) or views memory owned elsewhere, e.g. a read-only mmap of a model file, kept
// alive by `keep_alive` for as long as the view exists.
class Buffer {
 public:
  static std::shared_ptr<Buffer> allocate(size_t bytes, Device device);
  static std::shared_ptr<Buffer> view(void* data, size_t bytes, Device device,
                                      std::shared_ptr<const void> keep_alive);

  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer();

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }
  bool owns_memory() const { return allocator_ != nullptr; }

 private:
  Buffer(void* data, size_t bytes, Device device, Allocator* allocator,
         std::shared_ptr<const void> keep_alive);

  void* data_;
  size_t bytes_;
  Device device_;
  Allocator* allocator_;
  std::shared_ptr<const void> keep_alive_;
};

}  // namespace kuiper
