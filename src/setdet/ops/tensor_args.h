// Argument checks and conversions shared by the torch.ops.setdet kernels. Every failed check
// raises c10::Error (RuntimeError in Python) whose message starts with the operator name, then
// names the argument, what was expected and what was received.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "setdet/core/error.h"

namespace setdet::ops {

// Python-style dtype names ("float32") for messages.
inline std::string dtype_name(at::ScalarType t) {
  switch (t) {
    case at::kFloat:
      return "float32";
    case at::kDouble:
      return "float64";
    case at::kHalf:
      return "float16";
    case at::kBFloat16:
      return "bfloat16";
    case at::kLong:
      return "int64";
    case at::kInt:
      return "int32";
    case at::kShort:
      return "int16";
    case at::kChar:
      return "int8";
    case at::kByte:
      return "uint8";
    case at::kBool:
      return "bool";
    case at::kComplexFloat:
      return "complex64";
    case at::kComplexDouble:
      return "complex128";
    default:
      return c10::toString(t);
  }
}

inline void check_floating(const at::Tensor& t, const char* op, const char* arg) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", arg,
              " must be float32 or float64, got ", dtype_name(t.scalar_type()));
}

// [N, 4] xyxy boxes, float32 or float64.
inline void check_boxes(const at::Tensor& boxes, const char* op, const char* arg) {
  TORCH_CHECK(boxes.defined(), op, ": ", arg, " must be a tensor, got None");
  TORCH_CHECK(boxes.dim() == 2 && boxes.size(1) == 4, op, ": ", arg,
              " must be a 2-D tensor of shape [N, 4], got shape ", boxes.sizes());
  check_floating(boxes, op, arg);
}

// A 1-D tensor with one entry per box, on the boxes' device.
inline void check_per_box(const at::Tensor& t, const at::Tensor& boxes, const char* op,
                          const char* arg, const char* boxes_arg) {
  TORCH_CHECK(t.defined(), op, ": ", arg, " must be a tensor, got None");
  TORCH_CHECK(t.dim() == 1, op, ": ", arg, " must be a 1-D tensor, got shape ", t.sizes());
  TORCH_CHECK(t.size(0) == boxes.size(0), op, ": ", arg, " must have one entry per box (",
              boxes_arg, " has ", boxes.size(0), "), got ", t.size(0));
  TORCH_CHECK(t.device() == boxes.device(), op, ": ", arg, " must be on the same device as ",
              boxes_arg, " (", boxes.device(), "), got ", t.device());
}

// Scores: one per box, same floating dtype as the boxes.
inline void check_scores(const at::Tensor& scores, const at::Tensor& boxes, const char* op,
                         const char* arg = "scores", const char* boxes_arg = "boxes") {
  check_per_box(scores, boxes, op, arg, boxes_arg);
  TORCH_CHECK(scores.scalar_type() == boxes.scalar_type(), op, ": ", arg,
              " must have the same dtype as ", boxes_arg, " (", dtype_name(boxes.scalar_type()),
              "), got ", dtype_name(scores.scalar_type()));
}

// Integer class labels: one per box, any integer dtype (converted to int64).
inline void check_labels(const at::Tensor& labels, const at::Tensor& boxes, const char* op,
                         const char* arg, const char* boxes_arg = "boxes") {
  check_per_box(labels, boxes, op, arg, boxes_arg);
  TORCH_CHECK(at::isIntegralType(labels.scalar_type(), /*includeBool=*/false), op, ": ", arg,
              " must be an integer tensor, got ", dtype_name(labels.scalar_type()));
}

inline void check_in_range(double v, double lo, double hi, const char* op, const char* arg) {
  TORCH_CHECK(v >= lo && v <= hi, op, ": ", arg, " must be in [", lo, ", ", hi, "], got ", v);
}

inline void check_finite_value(double v, const char* op, const char* arg) {
  TORCH_CHECK(std::isfinite(v), op, ": ", arg, " must be finite, got ", v);
}

// A contiguous CPU tensor with the same values (no copy when already one).
inline at::Tensor cpu_contiguous(const at::Tensor& t) {
  return t.device().is_cpu() ? t.contiguous() : t.to(at::kCPU).contiguous();
}

// t: contiguous CPU tensor of T. Names the first non-finite entry by its index.
template <typename T>
void check_finite(const at::Tensor& t, const char* op, const char* arg) {
  const T* p = t.data_ptr<T>();
  const int64_t numel = t.numel();
  for (int64_t i = 0; i < numel; ++i) {
    if (!std::isfinite(p[i])) {
      std::string where;
      int64_t rest = i;
      for (int64_t d = t.dim() - 1; d >= 0; --d) {
        where = std::to_string(rest % t.size(d)) + (where.empty() ? "" : ", ") + where;
        rest /= t.size(d);
      }
      TORCH_CHECK(false, op, ": ", arg, " must be finite, got ", p[i], " at ", arg, "[", where,
                  "]");
    }
  }
}

// Copies a result vector into a new tensor on `device`.
template <typename T>
at::Tensor to_tensor(const std::vector<T>& v, at::ScalarType dtype, const at::Device& device) {
  at::Tensor out = at::empty({static_cast<int64_t>(v.size())}, at::TensorOptions().dtype(dtype));
  TORCH_INTERNAL_ASSERT(out.element_size() == sizeof(T));
  if (!v.empty()) std::memcpy(out.data_ptr(), v.data(), v.size() * sizeof(T));
  return out.to(device);
}

inline at::Tensor empty_indices(const at::Device& device) {
  return at::empty({0}, at::TensorOptions().dtype(at::kLong).device(device));
}

// Runs a setdet_core call, turning setdet::Error into c10::Error prefixed with the op name.
template <typename Fn>
auto call_core(const char* op, Fn&& fn) -> decltype(fn()) {
  try {
    return std::forward<Fn>(fn)();
  } catch (const setdet::Error& e) {
    TORCH_CHECK(false, op, ": ", e.what());
  }
}

}  // namespace setdet::ops
