// Mixed-precision training (autocast): convolutions and matrix products run in a 16-bit float
// type while parameters, optimiser state, normalisation statistics and losses stay float32.
// On CPUs with bfloat16 matrix units (Intel AMX-BF16 or AVX512-BF16) LibTorch's oneDNN
// convolutions run several times faster in bfloat16; elsewhere bfloat16 is emulated and slower.
//
// Config: `runner.autocast`: off (default) | bfloat16 | float16 (CUDA only) | auto (bfloat16 when
// the device has native bfloat16 matrix support, else off).
#pragma once

#include <c10/core/DeviceType.h>
#include <c10/core/ScalarType.h>

#include <optional>
#include <string>

namespace setdet {

// Whether this CPU multiplies bfloat16 matrices natively (Linux /proc/cpuinfo flags amx_bf16 or
// avx512_bf16).
bool cpu_has_native_bfloat16();

// Resolves a `runner.autocast` value; `where` names it in errors. nullopt: no autocast.
std::optional<c10::ScalarType> parse_autocast(const std::string& value, const std::string& where);

// Resolves an inference precision (`--precision`, DetectorOptions.precision): float32 -> nullopt,
// bfloat16 -> kBFloat16 (DetectorModel::set_inference_dtype); `where` names it in errors.
std::optional<c10::ScalarType> parse_precision(const std::string& value, const std::string& where);

// Turns autocast on for `device` with `dtype` while alive (nullopt: does nothing); on
// destruction restores the previous state and, at the outermost level, drops the cast cache.
class AutocastGuard {
 public:
  AutocastGuard(std::optional<c10::ScalarType> dtype, c10::DeviceType device);
  ~AutocastGuard();
  AutocastGuard(const AutocastGuard&) = delete;
  AutocastGuard& operator=(const AutocastGuard&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool was_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Undefined;
};

}  // namespace setdet
