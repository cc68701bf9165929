#include "kuiper/tensor/tensor.h"

#include <algorithm>
#include <sstream>

#include "kuiper/base/allocator.h"

namespace kuiper {

Shape::Shape(std::initializer_list<int64_t> dims) : Shape(std::span(dims.begin(), dims.size())) {}

Shape::Shape(std::span<const int64_t> dims) {
  KUIPER_CHECK(dims.size() <= size_t(kMaxDims), "tensors have at most ", kMaxDims,
               " dimensions, got ", dims.size());
  for (int64_t d : dims) KUIPER_CHECK(d >= 0, "negative dimension ", d);
  std::copy(dims.begin(), dims.end(), dims_.begin());
  ndim_ = int(dims.size());
}

int64_t Shape::numel() const {
  int64_t n = 1;
  for (int64_t d : *this) n *= d;
  return n;
}

bool Shape::operator==(const Shape& other) const {
  return std::equal(begin(), end(), other.begin(), other.end());
}

std::string Shape::str() const {
  std::ostringstream os;
  os << '[';
  for (int i = 0; i < ndim_; ++i) os << (i ? ", " : "") << dims_[i];
  os << ']';
  return os.str();
}

Tensor::Tensor(DType dtype, Shape shape, Device device)
    : buffer_(Buffer::allocate(storage_bytes(dtype, shape.numel()), device)),
      dtype_(dtype),
      shape_(shape) {}

Tensor Tensor::view(std::shared_ptr<Buffer> buffer, size_t byte_offset, DType dtype, Shape shape) {
  KUIPER_CHECK(buffer != nullptr, "tensor view of a null buffer");
  const size_t need = storage_bytes(dtype, shape.numel());
  KUIPER_CHECK(byte_offset <= buffer->bytes() && need <= buffer->bytes() - byte_offset,
               "tensor view ", dtype_name(dtype), shape.str(), " at byte ", byte_offset,
               " overruns its buffer of ", buffer->bytes(), " bytes");
  Tensor t;
  t.buffer_ = std::move(buffer);
  t.offset_ = byte_offset;
  t.dtype_ = dtype;
  t.shape_ = shape;
  return t;
}

int64_t Tensor::dim(int i) const {
  if (i < 0) i += ndim();
  KUIPER_CHECK(i >= 0 && i < ndim(), "dimension ", i, " of a ", ndim(), "-d tensor");
  return shape_[i];
}

int64_t Tensor::stride(int i) const {
  if (i < 0) i += ndim();
  KUIPER_CHECK(i >= 0 && i < ndim(), "stride ", i, " of a ", ndim(), "-d tensor");
  int64_t s = 1;
  for (int j = i + 1; j < ndim(); ++j) s *= shape_[j];
  return s;
}

void* Tensor::raw_data() const {
  return buffer_ ? static_cast<char*>(buffer_->data()) + offset_ : nullptr;
}

Tensor Tensor::rows(int64_t begin, int64_t end) const {
  KUIPER_CHECK(ndim() >= 1 && 0 <= begin && begin <= end && end <= shape_[0], "rows [", begin,
               ", ", end, ") of ", describe());
  std::array<int64_t, Shape::kMaxDims> dims{};
  std::copy(shape_.begin(), shape_.end(), dims.begin());
  dims[0] = end - begin;
  Tensor t = *this;
  t.offset_ += storage_bytes(dtype_, begin * stride(0));
  t.shape_ = Shape(std::span(dims.data(), size_t(ndim())));
  return t;
}

Tensor Tensor::reshape(Shape shape) const {
  KUIPER_CHECK(shape.numel() == numel(), "cannot reshape ", describe(), " to ", shape.str());
  Tensor t = *this;
  t.shape_ = shape;
  return t;
}

Tensor Tensor::to(Device device, const DeviceContext* ctx) const {
  Tensor out(dtype_, shape_, device);
  out.copy_from(*this, ctx);
  return out;
}

void Tensor::copy_from(const Tensor& src, const DeviceContext* ctx) const {
  KUIPER_CHECK(src.dtype_ == dtype_ && src.numel() == numel(), "copy from ", src.describe(),
               " into ", describe());
  copy_bytes(raw_data(), device(), src.raw_data(), src.device(), bytes(), ctx);
}

std::string Tensor::describe() const {
  return str_cat(dtype_name(dtype_), shape_.str(), " on ", device_name(device()));
}

}  // namespace kuiper
