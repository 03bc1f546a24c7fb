// Precision-recall curves drawn with OpenCV and written as a PNG.
#pragma once

#include <string>
#include <vector>

#include "setdet/core/eval/coco_eval.h"

namespace setdet::cli {

struct PrCurve {
  std::string label;              // legend text
  std::vector<double> recall;     // x in [0, 1], ascending
  std::vector<double> precision;  // y in [0, 1], one per recall
};

struct PrPlotOptions {
  int width = 960;   // pixels
  int height = 720;  // pixels
  std::string title;
};

// One curve per IoU threshold of a COCO evaluation: precision at the recall thresholds, averaged
// over the categories that have ground truth (area range "all" if present, else the first; the
// last maxDets), as pycocotools' eval['precision'][t, :, k, a, m] averaged over k. The label
// carries the threshold and the area under the sampled curve (the AP pycocotools reports).
std::vector<PrCurve> coco_pr_curves(const CocoEvalResult& result);

// PNG bytes of the plot: axes, 0.1 grid, tick labels, axis labels, title, one anti-aliased
// polyline per curve, legend.
std::string render_pr_plot_png(const std::vector<PrCurve>& curves, const PrPlotOptions& opts);

// render_pr_plot_png written atomically to `path`.
void write_pr_plot_png(const std::string& path, const std::vector<PrCurve>& curves,
                       const PrPlotOptions& opts);

}  // namespace setdet::cli
