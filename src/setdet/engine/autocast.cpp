#include "setdet/engine/autocast.h"

#include <ATen/autocast_mode.h>

#include <fstream>
#include <sstream>

#include "setdet/core/error.h"

namespace setdet {

bool cpu_has_native_bfloat16() {
  static const bool has = [] {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line)) {
      if (line.rfind("flags", 0) != 0) continue;
      std::istringstream words(line);
      std::string w;
      while (words >> w) {
        if (w == "amx_bf16" || w == "avx512_bf16") return true;
      }
      return false;
    }
    return false;
  }();
  return has;
}

std::optional<c10::ScalarType> parse_autocast(const std::string& value, const std::string& where) {
  if (value == "off") return std::nullopt;
  if (value == "bfloat16") return c10::ScalarType::BFloat16;
  if (value == "float16") return c10::ScalarType::Half;
  if (value == "auto") {
    return cpu_has_native_bfloat16() ? std::optional<c10::ScalarType>(c10::ScalarType::BFloat16)
                                     : std::nullopt;
  }
  SETDET_CHECK(false, where, ": unknown autocast '", value,
               "' (known: off, bfloat16, float16, auto)");
  return std::nullopt;
}

std::optional<c10::ScalarType> parse_precision(const std::string& value, const std::string& where) {
  if (value == "float32") return std::nullopt;
  if (value == "bfloat16") return c10::ScalarType::BFloat16;
  SETDET_CHECK(false, where, ": unknown precision '", value, "' (known: float32, bfloat16)");
  return std::nullopt;
}

AutocastGuard::AutocastGuard(std::optional<c10::ScalarType> dtype, c10::DeviceType device) {
  if (!dtype) return;
  cuda_ = device == c10::DeviceType::CUDA;
  SETDET_CHECK(cuda_ || device == c10::DeviceType::CPU, "autocast: device ",
               c10::DeviceTypeName(device), " is not supported (CPU or CUDA)");
  SETDET_CHECK(cuda_ || *dtype == c10::ScalarType::BFloat16,
               "autocast: float16 runs on CUDA only; use bfloat16 on the CPU");
  active_ = true;
  if (cuda_) {
    was_enabled_ = at::autocast::is_enabled();
    previous_dtype_ = at::autocast::get_autocast_gpu_dtype();
    at::autocast::set_autocast_gpu_dtype(*dtype);
    at::autocast::set_enabled(true);
  } else {
    was_enabled_ = at::autocast::is_cpu_enabled();
    previous_dtype_ = at::autocast::get_autocast_cpu_dtype();
    at::autocast::set_autocast_cpu_dtype(*dtype);
    at::autocast::set_cpu_enabled(true);
  }
  at::autocast::increment_nesting();
}

AutocastGuard::~AutocastGuard() {
  if (!active_) return;
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  if (cuda_) {
    at::autocast::set_enabled(was_enabled_);
    at::autocast::set_autocast_gpu_dtype(previous_dtype_);
  } else {
    at::autocast::set_cpu_enabled(was_enabled_);
    at::autocast::set_autocast_cpu_dtype(previous_dtype_);
  }
}

}  // namespace setdet
