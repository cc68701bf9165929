#include "kuiper/base/buffer.h"

#include "kuiper/base/allocator.h"

namespace kuiper {

Buffer::Buffer(void* data, size_t bytes, Device device, Allocator* allocator,
               std::shared_ptr<const void> keep_alive)
    : data_(data), bytes_(bytes), device_(device), allocator_(allocator),
      keep_alive_(std::move(keep_alive)) {}

std::shared_ptr<Buffer> Buffer::allocate(size_t bytes, Device device) {
  Allocator& allocator = allocator_for(device);
  void* data = allocator.allocate(bytes);
  return std::shared_ptr<Buffer>(new Buffer(data, bytes, device, &allocator, nullptr));
}

std::shared_ptr<Buffer> Buffer::view(void* data, size_t bytes, Device device,
                                     std::shared_ptr<const void> keep_alive) {
  return std::shared_ptr<Buffer>(new Buffer(data, bytes, device, nullptr, std::move(keep_alive)));
}

Buffer::~Buffer() {
  if (allocator_ != nullptr) allocator_->deallocate(data_, bytes_);
}

}  // namespace kuiper
