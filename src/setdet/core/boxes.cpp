#include "setdet/core/boxes.h"

#include <algorithm>
#include <vector>

#include "setdet/core/error.h"
#include "setdet/core/parallel.h"

namespace setdet {

BoxFormat parse_box_format(const std::string& s, const char* arg) {
  if (s == "xyxy") return BoxFormat::kXYXY;
  if (s == "xywh") return BoxFormat::kXYWH;
  if (s == "cxcywh") return BoxFormat::kCXCYWH;
  throw Error(
      detail::concat(arg, ": expected one of \"xyxy\", \"xywh\", \"cxcywh\", got \"", s, "\""));
}

namespace {

// Row grain so that each parallel chunk does at least ~16k pair evaluations.
int64_t row_grain(size_t m) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, m)); }

template <typename T>
void to_xyxy(const T* b, BoxFormat from, T* o) {
  if (from == BoxFormat::kXYWH) {
    o[0] = b[0], o[1] = b[1], o[2] = b[0] + b[2], o[3] = b[1] + b[3];
  } else if (from == BoxFormat::kCXCYWH) {
    const T hw = T(0.5) * b[2], hh = T(0.5) * b[3];
    o[0] = b[0] - hw, o[1] = b[1] - hh, o[2] = b[0] + hw, o[3] = b[1] + hh;
  } else {
    o[0] = b[0], o[1] = b[1], o[2] = b[2], o[3] = b[3];
  }
}

template <typename T>
void from_xyxy(const T* b, BoxFormat to, T* o) {
  if (to == BoxFormat::kXYWH) {
    o[0] = b[0], o[1] = b[1], o[2] = b[2] - b[0], o[3] = b[3] - b[1];
  } else if (to == BoxFormat::kCXCYWH) {
    o[0] = (b[0] + b[2]) / T(2), o[1] = (b[1] + b[3]) / T(2);
    o[2] = b[2] - b[0], o[3] = b[3] - b[1];
  } else {
    o[0] = b[0], o[1] = b[1], o[2] = b[2], o[3] = b[3];
  }
}

}  // namespace

// Same arithmetic as torchvision.ops.box_convert (conversions between two non-xyxy formats go
// through xyxy).
template <typename T>
void convert_boxes(const T* in, T* out, size_t n, BoxFormat from, BoxFormat to) {
  for (size_t i = 0; i < n; ++i) {
    T xyxy[4], res[4];
    to_xyxy(in + 4 * i, from, xyxy);
    from_xyxy(xyxy, to, res);
    std::copy(res, res + 4, out + 4 * i);
  }
}

template <typename T>
void box_area_all(const T* boxes, size_t n, T* out) {
  for (size_t i = 0; i < n; ++i) out[i] = box_area(boxes + 4 * i);
}

template <typename T>
void box_iou_matrix(const T* a, size_t n, const T* b, size_t m, T* out) {
  std::vector<T> area_b(m);
  box_area_all(b, m, area_b.data());
  parallel_for(0, static_cast<int64_t>(n), row_grain(m), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const T* p = a + 4 * i;
      const T area_a = box_area(p);
      T* row = out + static_cast<size_t>(i) * m;
      for (size_t j = 0; j < m; ++j) {
        const T* q = b + 4 * j;
        const T iw = std::min(p[2], q[2]) - std::max(p[0], q[0]);
        const T ih = std::min(p[3], q[3]) - std::max(p[1], q[1]);
        if (iw <= T(0) || ih <= T(0)) {
          row[j] = T(0);
          continue;
        }
        const T inter = iw * ih;
        const T uni = area_a + area_b[j] - inter;
        row[j] = uni > T(0) ? inter / uni : T(0);
      }
    }
  });
}

// GIoU = IoU - (C - U) / C with C the smallest enclosing box's area (torchvision's formula).
// When C is 0 (both boxes the same point or segment) the penalty is taken as 0.
template <typename T>
void generalized_box_iou_matrix(const T* a, size_t n, const T* b, size_t m, T* out) {
  std::vector<T> area_b(m);
  box_area_all(b, m, area_b.data());
  parallel_for(0, static_cast<int64_t>(n), row_grain(m), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const T* p = a + 4 * i;
      const T area_a = box_area(p);
      T* row = out + static_cast<size_t>(i) * m;
      for (size_t j = 0; j < m; ++j) {
        const T* q = b + 4 * j;
        const T iw = std::max(T(0), std::min(p[2], q[2]) - std::max(p[0], q[0]));
        const T ih = std::max(T(0), std::min(p[3], q[3]) - std::max(p[1], q[1]));
        const T inter = iw * ih;
        const T uni = area_a + area_b[j] - inter;
        const T iou = (inter > T(0) && uni > T(0)) ? inter / uni : T(0);
        const T cw = std::max(T(0), std::max(p[2], q[2]) - std::min(p[0], q[0]));
        const T ch = std::max(T(0), std::max(p[3], q[3]) - std::min(p[1], q[1]));
        const T enclosing = cw * ch;
        row[j] = enclosing > T(0) ? iou - (enclosing - uni) / enclosing : iou;
      }
    }
  });
}

// DIoU = IoU - d^2 / (c^2 + eps): d the distance between the centres, c the diagonal of the
// smallest enclosing box, eps = 1e-7 (torchvision.ops.distance_box_iou).
template <typename T>
void distance_box_iou_matrix(const T* a, size_t n, const T* b, size_t m, T* out) {
  const T eps = T(1e-7);
  std::vector<T> area_b(m);
  box_area_all(b, m, area_b.data());
  parallel_for(0, static_cast<int64_t>(n), row_grain(m), [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const T* p = a + 4 * i;
      const T area_a = box_area(p);
      const T pcx = (p[0] + p[2]) / T(2), pcy = (p[1] + p[3]) / T(2);
      T* row = out + static_cast<size_t>(i) * m;
      for (size_t j = 0; j < m; ++j) {
        const T* q = b + 4 * j;
        const T iw = std::max(T(0), std::min(p[2], q[2]) - std::max(p[0], q[0]));
        const T ih = std::max(T(0), std::min(p[3], q[3]) - std::max(p[1], q[1]));
        const T inter = iw * ih;
        const T uni = area_a + area_b[j] - inter;
        const T iou = (inter > T(0) && uni > T(0)) ? inter / uni : T(0);
        const T cw = std::max(T(0), std::max(p[2], q[2]) - std::min(p[0], q[0]));
        const T ch = std::max(T(0), std::max(p[3], q[3]) - std::min(p[1], q[1]));
        const T diag2 = cw * cw + ch * ch + eps;
        const T dx = pcx - (q[0] + q[2]) / T(2), dy = pcy - (q[1] + q[3]) / T(2);
        row[j] = iou - (dx * dx + dy * dy) / diag2;
      }
    }
  });
}

#define SETDET_INSTANTIATE_BOXES(T)                                                    \
  template void convert_boxes<T>(const T*, T*, size_t, BoxFormat, BoxFormat);          \
  template void box_area_all<T>(const T*, size_t, T*);                                 \
  template void box_iou_matrix<T>(const T*, size_t, const T*, size_t, T*);             \
  template void generalized_box_iou_matrix<T>(const T*, size_t, const T*, size_t, T*); \
  template void distance_box_iou_matrix<T>(const T*, size_t, const T*, size_t, T*);

SETDET_INSTANTIATE_BOXES(float)
SETDET_INSTANTIATE_BOXES(double)
#undef SETDET_INSTANTIATE_BOXES

}  // namespace setdet
