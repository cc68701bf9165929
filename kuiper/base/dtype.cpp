#include "kuiper/base/dtype.h"

#include "kuiper/base/device.h"

namespace kuiper {

std::optional<DType> dtype_from_name(std::string_view name) {
  for (int i = 0; i < kNumDTypes; ++i) {
    if (dtype_name(DType(i)) == name) return DType(i);
  }
  if (name == "f32" || name == "float32") return DType::kF32;
  if (name == "f16" || name == "float16") return DType::kF16;
  if (name == "bfloat16") return DType::kBF16;
  return std::nullopt;
}

std::optional<Device> device_from_name(std::string_view name) {
  if (name == "cpu") return Device::kCPU;
  if (name == "cuda" || name == "gpu") return Device::kCUDA;
  return std::nullopt;
}

}  // namespace kuiper
