#pragma once
#include <cstdint>
#include <optional>
#include <string_view>

namespace kuiper {

enum class Device : uint8_t { kCPU, kCUDA };
inline constexpr int kNumDevices = 2;

constexpr std::string_view device_name(Device d) { return d == Device::kCPU ? "cpu" : "cuda"; }
std::optional<Device> device_from_name(std::string_view name);

// True when this build contains the CUDA backend.
bool cuda_compiled();
// Number of usable CUDA devices; 0 when CUDA is not compiled in or no driver/GPU is present.
int cuda_device_count();
// Throws kuiper::Error naming why CUDA cannot be used (not compiled in, no driver, no device).
void require_cuda();
// Makes GPU `index` the calling thread's CUDA device (cudaSetDevice): memory, streams and kernels
// the thread creates from then on are that GPU's. Throws without CUDA or such a GPU.
void bind_thread_to_cuda_device(int index);

}  // namespace kuiper
