#pragma once
#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <span>
#include <string>

#include "kuiper/base/buffer.h"
#include "kuiper/base/dtype.h"
#include "kuiper/base/error.h"

namespace kuiper {

class DeviceContext;

// Up to four dimensions held inline, so that copying a Tensor never touches the heap.
class Shape {
 public:
  static constexpr int kMaxDims = 4;
  Shape() = default;
  Shape(std::initializer_list<int64_t> dims);
  explicit Shape(std::span<const int64_t> dims);

  int ndim() const { return ndim_; }
  int64_t operator[](int i) const { return dims_[i]; }
  int64_t numel() const;
  const int64_t* begin() const { return dims_.data(); }
  const int64_t* end() const { return dims_.data() + ndim_; }
  bool operator==(const Shape& other) const;
  std::string str() const;  // "[2, 3]"

 private:
  std::array<int64_t, kMaxDims> dims_{};
  int ndim_ = 0;
};

// A typed, shaped view of a Buffer on one device. Tensors are handles: copies share memory,
// and const-ness protects the view (shape, dtype), not the elements. Always row-major
// contiguous; views along the first dimension (rows) stay contiguous.
class Tensor {
 public:
  Tensor() = default;
  // Allocates uninitialised memory on `device`.
  Tensor(DType dtype, Shape shape, Device device = Device::kCPU);
  // A view into `buffer` starting `byte_offset` bytes in; checks that it fits.
  static Tensor view(std::shared_ptr<Buffer> buffer, size_t byte_offset, DType dtype, Shape shape);

  bool empty() const { return buffer_ == nullptr; }
  DType dtype() const { return dtype_; }
  Device device() const { return buffer_ ? buffer_->device() : Device::kCPU; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return shape_.ndim(); }
  int64_t dim(int i) const;  // negative i counts from the end
  int64_t stride(int i) const;
  int64_t numel() const { return shape_.numel(); }
  size_t bytes() const { return storage_bytes(dtype_, numel()); }
  const std::shared_ptr<Buffer>& buffer() const { return buffer_; }

  void* raw_data() const;
  template <class T>
  T* data() const {
    KUIPER_CHECK(dtype_of<T>() == dtype_, "tensor holds ", dtype_name(dtype_), ", accessed as ",
                 dtype_name(dtype_of<T>()));
    return static_cast<T*>(raw_data());
  }
  // Host-side element access for tests and small tools; the tensor must be on the CPU.
  template <class T>
  std::span<T> span() const {
    KUIPER_CHECK(device() == Device::kCPU, "span() of a tensor on ", device_name(device()));
    return {data<T>(), size_t(numel())};
  }

  // Rows [begin, end) of the first dimension, sharing memory.
  Tensor rows(int64_t begin, int64_t end) const;
  // The same elements with another shape of equal element count, sharing memory.
  Tensor reshape(Shape shape) const;

  // A copy on `device` (queued on ctx's stream when given).
  Tensor to(Device device, const DeviceContext* ctx = nullptr) const;
  // Copies src's elements into this tensor (same dtype and element count, any devices).
  void copy_from(const Tensor& src, const DeviceContext* ctx = nullptr) const;

  std::string describe() const;  // "fp32[2, 3] on cpu"

 private:
  std::shared_ptr<Buffer> buffer_;
  size_t offset_ = 0;  // bytes into buffer_
  DType dtype_ = DType::kF32;
  Shape shape_;
};

}  // namespace kuiper
