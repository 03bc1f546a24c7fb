#include "pr_plot.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"

namespace setdet::cli {
namespace {

// matplotlib's "tab10" colours, BGR.
const std::array<cv::Scalar, 10> kPalette{cv::Scalar(180, 119, 31),  cv::Scalar(14, 127, 255),
                                          cv::Scalar(44, 160, 44),   cv::Scalar(40, 39, 214),
                                          cv::Scalar(189, 103, 148), cv::Scalar(75, 86, 140),
                                          cv::Scalar(194, 119, 227), cv::Scalar(127, 127, 127),
                                          cv::Scalar(34, 189, 188),  cv::Scalar(207, 190, 23)};

const cv::Scalar kBlack(0, 0, 0);
const cv::Scalar kWhite(255, 255, 255);
const cv::Scalar kGrid(225, 225, 225);
constexpr int kFont = cv::FONT_HERSHEY_SIMPLEX;
constexpr int kShift = 4;  // sub-pixel bits for anti-aliased polylines

std::string format_fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// Draws `text` centred at (cx, cy).
void put_text_centred(cv::Mat& img, const std::string& text, int cx, int cy, double scale,
                      int thickness) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, kFont, scale, thickness, &baseline);
  cv::putText(img, text, cv::Point(cx - size.width / 2, cy + size.height / 2), kFont, scale, kBlack,
              thickness, cv::LINE_AA);
}

// Draws `text` rotated 90 degrees counter-clockwise, centred at (cx, cy).
void put_text_vertical(cv::Mat& img, const std::string& text, int cx, int cy, double scale,
                       int thickness) {
  int baseline = 0;
  const cv::Size size = cv::getTextSize(text, kFont, scale, thickness, &baseline);
  cv::Mat strip(size.height + baseline + 4, size.width + 4, img.type(), kWhite);
  cv::putText(strip, text, cv::Point(2, size.height + 2), kFont, scale, kBlack, thickness,
              cv::LINE_AA);
  cv::Mat rotated;
  cv::rotate(strip, rotated, cv::ROTATE_90_COUNTERCLOCKWISE);
  cv::Rect dst(cx - rotated.cols / 2, cy - rotated.rows / 2, rotated.cols, rotated.rows);
  dst &= cv::Rect(0, 0, img.cols, img.rows);
  if (dst.area() == 0) return;
  rotated(cv::Rect(dst.x - (cx - rotated.cols / 2), dst.y - (cy - rotated.rows / 2), dst.width,
                   dst.height))
      .copyTo(img(dst));
}

}  // namespace

std::vector<PrCurve> coco_pr_curves(const CocoEvalResult& result) {
  std::vector<PrCurve> curves;
  if (result.num_t == 0 || result.num_r == 0 || result.num_a == 0 || result.num_m == 0) {
    return curves;
  }
  size_t a = 0;
  for (size_t i = 0; i < result.params.area_labels.size() && i < result.num_a; ++i) {
    if (result.params.area_labels[i] == "all") {
      a = i;
      break;
    }
  }
  const size_t m = result.num_m - 1;
  for (size_t t = 0; t < result.num_t; ++t) {
    PrCurve curve;
    double area_sum = 0.0;
    for (size_t r = 0; r < result.num_r; ++r) {
      double sum = 0.0;
      size_t count = 0;
      for (size_t k = 0; k < result.num_k; ++k) {
        const double p = result.precision_at(t, r, k, a, m);
        if (p > -1.0) {
          sum += p;
          ++count;
        }
      }
      if (count == 0) break;
      curve.recall.push_back(r < result.params.recall_thresholds.size()
                                 ? result.params.recall_thresholds[r]
                                 : static_cast<double>(r) / static_cast<double>(result.num_r - 1));
      curve.precision.push_back(sum / static_cast<double>(count));
      area_sum += curve.precision.back();
    }
    if (curve.recall.empty()) continue;  // no category has ground truth
    const double ap = area_sum / static_cast<double>(curve.precision.size());
    // beyond the largest recall reached, precision is 0 by definition: keep one point of the drop
    size_t last = 0;
    for (size_t i = 0; i < curve.precision.size(); ++i) {
      if (curve.precision[i] > 0.0) last = i;
    }
    const size_t keep = std::min(curve.precision.size(), last + 2);
    curve.recall.resize(keep);
    curve.precision.resize(keep);
    const double iou =
        t < result.params.iou_thresholds.size() ? result.params.iou_thresholds[t] : std::nan("");
    curve.label = "IoU=" + format_fixed(iou, 2) + "  AP=" + format_fixed(ap, 3);
    curves.push_back(std::move(curve));
  }
  return curves;
}

std::string render_pr_plot_png(const std::vector<PrCurve>& curves, const PrPlotOptions& opts) {
  SETDET_CHECK(opts.width >= 320 && opts.height >= 240,
               "PR plot size must be at least 320x240 pixels, got ", opts.width, "x", opts.height);
  cv::Mat img(opts.height, opts.width, CV_8UC3, kWhite);
  const int left = 90, right = 30, top = 60, bottom = 75;
  const cv::Rect plot(left, top, opts.width - left - right, opts.height - top - bottom);
  auto to_px = [&](double recall, double precision) {
    const double x = plot.x + std::clamp(recall, 0.0, 1.0) * plot.width;
    const double y = plot.y + (1.0 - std::clamp(precision, 0.0, 1.0)) * plot.height;
    return cv::Point(static_cast<int>(std::lround(x * (1 << kShift))),
                     static_cast<int>(std::lround(y * (1 << kShift))));
  };
  auto x_px = [&](double v) { return plot.x + static_cast<int>(std::lround(v * plot.width)); };
  auto y_px = [&](double v) {
    return plot.y + static_cast<int>(std::lround((1.0 - v) * plot.height));
  };

  // grid and ticks every 0.1
  for (int i = 0; i <= 10; ++i) {
    const double v = i / 10.0;
    const int x = x_px(v), y = y_px(v);
    cv::line(img, {x, plot.y}, {x, plot.y + plot.height}, kGrid, 1);
    cv::line(img, {plot.x, y}, {plot.x + plot.width, y}, kGrid, 1);
    cv::line(img, {x, plot.y + plot.height}, {x, plot.y + plot.height + 5}, kBlack, 1);
    cv::line(img, {plot.x - 5, y}, {plot.x, y}, kBlack, 1);
    put_text_centred(img, format_fixed(v, 1), x, plot.y + plot.height + 18, 0.45, 1);
    put_text_centred(img, format_fixed(v, 1), plot.x - 28, y, 0.45, 1);
  }
  cv::rectangle(img, plot, kBlack, 1);
  put_text_centred(img, "Recall", plot.x + plot.width / 2, opts.height - 25, 0.65, 1);
  put_text_vertical(img, "Precision", 22, plot.y + plot.height / 2, 0.65, 1);
  if (!opts.title.empty()) {
    put_text_centred(img, opts.title, opts.width / 2, top / 2, 0.65, 1);
  }

  for (size_t c = 0; c < curves.size(); ++c) {
    const PrCurve& curve = curves[c];
    SETDET_CHECK(curve.recall.size() == curve.precision.size(), "PR curve '", curve.label, "' has ",
                 curve.recall.size(), " recall values but ", curve.precision.size(),
                 " precision values");
    std::vector<cv::Point> points;
    points.reserve(curve.recall.size());
    for (size_t i = 0; i < curve.recall.size(); ++i) {
      if (!std::isfinite(curve.recall[i]) || !std::isfinite(curve.precision[i])) continue;
      points.push_back(to_px(curve.recall[i], curve.precision[i]));
    }
    const cv::Scalar colour = kPalette[c % kPalette.size()];
    if (points.size() == 1) {
      cv::circle(img, points[0], 3 << kShift, colour, cv::FILLED, cv::LINE_AA, kShift);
    } else if (points.size() > 1) {
      cv::polylines(img, std::vector<std::vector<cv::Point>>{points}, false, colour, 2, cv::LINE_AA,
                    kShift);
    }
  }

  if (curves.empty()) {
    put_text_centred(img, "no ground truth to evaluate", plot.x + plot.width / 2,
                     plot.y + plot.height / 2, 0.7, 1);
  } else {
    const double scale = 0.5;
    const int row = 22, sample = 30, pad = 10;
    int text_width = 0;
    for (const auto& curve : curves) {
      int baseline = 0;
      text_width =
          std::max(text_width, cv::getTextSize(curve.label, kFont, scale, 1, &baseline).width);
    }
    const int box_w = pad * 3 + sample + text_width;
    const int box_h = pad * 2 + row * static_cast<int>(curves.size()) - (row - 14);
    // legend in the plot corner that the curves cross least
    const int inset = 12;
    const std::array<cv::Rect, 4> corners{
        cv::Rect(plot.x + plot.width - inset - box_w, plot.y + inset, box_w, box_h),
        cv::Rect(plot.x + plot.width - inset - box_w, plot.y + plot.height - inset - box_h, box_w,
                 box_h),
        cv::Rect(plot.x + inset, plot.y + plot.height - inset - box_h, box_w, box_h),
        cv::Rect(plot.x + inset, plot.y + inset, box_w, box_h)};
    std::array<int64_t, 4> crossings{};
    for (const auto& curve : curves) {
      for (size_t i = 0; i < curve.recall.size(); ++i) {
        // sample each segment densely enough to catch vertical drops
        const size_t j = i + 1 < curve.recall.size() ? i + 1 : i;
        for (int s = 0; s < 16; ++s) {
          const double f = s / 16.0;
          const double r = curve.recall[i] + f * (curve.recall[j] - curve.recall[i]);
          const double p = curve.precision[i] + f * (curve.precision[j] - curve.precision[i]);
          const cv::Point pt(x_px(std::clamp(r, 0.0, 1.0)), y_px(std::clamp(p, 0.0, 1.0)));
          for (size_t c = 0; c < corners.size(); ++c) crossings[c] += corners[c].contains(pt);
        }
      }
    }
    const cv::Rect box = corners[static_cast<size_t>(
        std::min_element(crossings.begin(), crossings.end()) - crossings.begin())];
    cv::Mat region = img(box & cv::Rect(0, 0, img.cols, img.rows));
    cv::Mat white(region.size(), region.type(), kWhite);
    cv::addWeighted(region, 0.15, white, 0.85, 0.0, region);
    cv::rectangle(img, box, cv::Scalar(160, 160, 160), 1);
    for (size_t c = 0; c < curves.size(); ++c) {
      const int y = box.y + pad + 7 + row * static_cast<int>(c);
      const cv::Scalar colour = kPalette[c % kPalette.size()];
      cv::line(img, {box.x + pad, y}, {box.x + pad + sample, y}, colour, 2, cv::LINE_AA);
      cv::putText(img, curves[c].label, cv::Point(box.x + 2 * pad + sample, y + 5), kFont, scale,
                  kBlack, 1, cv::LINE_AA);
    }
  }

  std::vector<unsigned char> png;
  SETDET_CHECK(cv::imencode(".png", img, png), "PR plot: OpenCV could not encode the PNG");
  return std::string(png.begin(), png.end());
}

void write_pr_plot_png(const std::string& path, const std::vector<PrCurve>& curves,
                       const PrPlotOptions& opts) {
  write_file_atomic(path, render_pr_plot_png(curves, opts));
}

}  // namespace setdet::cli
