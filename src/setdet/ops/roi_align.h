// torch.ops.setdet.roi_align / _roi_align_backward called through the c10 dispatcher (header
// only: the caller must have libsetdet_ops loaded, which registers them). Schemas and semantics:
// src/setdet/ops/registration.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <cstdint>

namespace setdet::ops {

inline at::Tensor call_roi_align(const at::Tensor& input, const at::Tensor& rois,
                                 double spatial_scale, int64_t pooled_height, int64_t pooled_width,
                                 int64_t sampling_ratio, bool aligned) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("setdet::roi_align", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double,
                                               int64_t, int64_t, int64_t, bool)>();
  return op.call(input, rois, spatial_scale, pooled_height, pooled_width, sampling_ratio, aligned);
}

inline at::Tensor call_roi_align_backward(const at::Tensor& grad, const at::Tensor& rois,
                                          double spatial_scale, int64_t pooled_height,
                                          int64_t pooled_width, int64_t batch_size,
                                          int64_t channels, int64_t height, int64_t width,
                                          int64_t sampling_ratio, bool aligned) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("setdet::_roi_align_backward", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, double, int64_t, int64_t, int64_t,
                            int64_t, int64_t, int64_t, int64_t, bool)>();
  return op.call(grad, rois, spatial_scale, pooled_height, pooled_width, batch_size, channels,
                 height, width, sampling_ratio, aligned);
}

}  // namespace setdet::ops
