// Box geometry on row-major [N, 4] arrays (float or double). No LibTorch.
// Conventions: xyxy = [x1, y1, x2, y2]; xywh = [x, y, w, h] (COCO); cxcywh = [cx, cy, w, h].
// Width and height are x2 - x1 and y2 - y1 (no "+1"). A box with zero or negative width or
// height has area 0 and IoU / GIoU / DIoU terms computed with 0 intersection: IoU is 0 with
// every box, never NaN.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace setdet {

enum class BoxFormat { kXYXY, kXYWH, kCXCYWH };

// "xyxy", "xywh", "cxcywh"; throws setdet::Error naming `arg` for anything else.
BoxFormat parse_box_format(const std::string& s, const char* arg = "format");

// out may alias in.
template <typename T>
void convert_boxes(const T* in, T* out, size_t n, BoxFormat from, BoxFormat to);

template <typename T>
inline T box_area(const T* b) {
  const T w = b[2] - b[0], h = b[3] - b[1];
  return (w > T(0) && h > T(0)) ? w * h : T(0);
}

template <typename T>
inline T box_iou(const T* a, const T* b) {
  const T iw = (a[2] < b[2] ? a[2] : b[2]) - (a[0] > b[0] ? a[0] : b[0]);
  const T ih = (a[3] < b[3] ? a[3] : b[3]) - (a[1] > b[1] ? a[1] : b[1]);
  if (iw <= T(0) || ih <= T(0)) return T(0);
  const T inter = iw * ih;
  const T uni = box_area(a) + box_area(b) - inter;
  return uni > T(0) ? inter / uni : T(0);
}

// Pairwise matrices, out is [n, m] row-major. Multi-threaded over rows (setdet::num_threads()).
template <typename T>
void box_area_all(const T* boxes, size_t n, T* out);
template <typename T>
void box_iou_matrix(const T* a, size_t n, const T* b, size_t m, T* out);
// Generalized IoU (Rezatofighi et al. 2019), as torchvision.ops.generalized_box_iou.
template <typename T>
void generalized_box_iou_matrix(const T* a, size_t n, const T* b, size_t m, T* out);
// Distance IoU (Zheng et al. 2020), as torchvision.ops.distance_box_iou (eps 1e-7).
template <typename T>
void distance_box_iou_matrix(const T* a, size_t n, const T* b, size_t m, T* out);

}  // namespace setdet
