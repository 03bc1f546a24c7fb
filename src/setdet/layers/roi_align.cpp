#include "setdet/layers/roi_align.h"

#include "setdet/ops/roi_align.h"

namespace setdet {

at::Tensor roi_align(const at::Tensor& input, const at::Tensor& rois, double spatial_scale,
                     int64_t pooled_height, int64_t pooled_width, int64_t sampling_ratio,
                     bool aligned) {
  return ops::call_roi_align(input, rois, spatial_scale, pooled_height, pooled_width,
                             sampling_ratio, aligned);
}

at::Tensor boxes_to_rois(const std::vector<at::Tensor>& boxes) {
  TORCH_CHECK(!boxes.empty(), "boxes_to_rois: boxes must hold one tensor per image, got none");
  std::vector<at::Tensor> rois;
  rois.reserve(boxes.size());
  const at::TensorOptions options = boxes.front().options();
  for (size_t i = 0; i < boxes.size(); ++i) {
    const at::Tensor& b = boxes[i];
    TORCH_CHECK(b.dim() == 2 && b.size(1) == 4, "boxes_to_rois: boxes[", i,
                "] must be a 2-D tensor of shape [N, 4], got shape ", b.sizes());
    const at::Tensor index = at::full({b.size(0), 1}, static_cast<double>(i), options);
    rois.push_back(at::cat({index, b.to(options)}, 1));
  }
  return at::cat(rois, 0);
}

}  // namespace setdet
