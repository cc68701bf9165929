#pragma once
// Internal bridge between the device-neutral base code and the CUDA runtime. Only defined in
// builds with the CUDA backend; callers check the device first.
#include <cstddef>

#include "kuiper/base/device.h"

namespace kuiper {
class DeviceContext;

void cuda_copy_bytes(void* dst, Device dst_device, const void* src, Device src_device, size_t bytes,
                     const DeviceContext* ctx);
}  // namespace kuiper
