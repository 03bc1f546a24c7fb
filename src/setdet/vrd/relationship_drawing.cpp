#include "setdet/vrd/relationship_drawing.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/data/image_io.h"

namespace setdet {
namespace {

constexpr int kSide = 512;
constexpr int kLine = 22;  // text line height of the list under each image
constexpr int kAttributesPerImage = 3;

cv::Scalar colour(size_t k) {
  static const cv::Scalar kPalette[] = {
      {0, 255, 0},   {255, 0, 255}, {0, 200, 255}, {255, 128, 0},   {0, 0, 255},
      {255, 255, 0}, {128, 0, 255}, {0, 128, 255}, {255, 255, 255}, {128, 255, 128}};
  return kPalette[k % std::size(kPalette)];
}

}  // namespace

void draw_relationships(const std::vector<std::string>& image_paths,
                        const std::vector<DrawnRelationship>& relationships, const std::string& png,
                        int per_image) {
  SETDET_CHECK(!image_paths.empty(), "draw_relationships: no images");
  const int panel = kLine * (per_image + 1);
  cv::Mat canvas(kSide + panel, kSide * static_cast<int>(image_paths.size()), CV_8UC3,
                 cv::Scalar(32, 32, 32));
  for (size_t i = 0; i < image_paths.size(); ++i) {
    const cv::Mat image = read_image(image_paths[i]);
    const double scale = static_cast<double>(kSide) / std::max(image.cols, image.rows);
    cv::Mat tile;
    cv::resize(image, tile, cv::Size(), scale, scale, cv::INTER_NEAREST);
    const int x0 = kSide * static_cast<int>(i);
    tile.copyTo(canvas(cv::Rect(x0, 0, tile.cols, tile.rows)));

    // the best pair relationships, then the best "is" rows
    std::vector<const DrawnRelationship*> pairs, attributes;
    for (const auto& r : relationships) {
      if (r.image == static_cast<int32_t>(i))
        (r.predicate == "is" ? attributes : pairs).push_back(&r);
    }
    const auto best = [](std::vector<const DrawnRelationship*>& v, size_t n) {
      std::stable_sort(v.begin(), v.end(),
                       [](const auto* a, const auto* b) { return a->score > b->score; });
      if (v.size() > n) v.resize(n);
    };
    best(attributes, static_cast<size_t>(kAttributesPerImage));
    best(pairs, static_cast<size_t>(per_image) - attributes.size());
    std::vector<const DrawnRelationship*> mine = pairs;
    mine.insert(mine.end(), attributes.begin(), attributes.end());
    const auto pt = [&](float x, float y) {
      return cv::Point(x0 + static_cast<int>(std::lround(x * tile.cols)),
                       static_cast<int>(std::lround(y * tile.rows)));
    };
    for (size_t k = 0; k < mine.size(); ++k) {
      const DrawnRelationship& r = *mine[k];
      const cv::Scalar c = colour(k);
      cv::rectangle(canvas, pt(r.box1[0], r.box1[1]), pt(r.box1[2], r.box1[3]), c, 2);
      const cv::Point a = pt(0.5f * (r.box1[0] + r.box1[2]), 0.5f * (r.box1[1] + r.box1[3]));
      cv::Point label_at = a;
      if (r.predicate != "is") {
        cv::rectangle(canvas, pt(r.box2[0], r.box2[1]), pt(r.box2[2], r.box2[3]), c, 1);
        const cv::Point b = pt(0.5f * (r.box2[0] + r.box2[2]), 0.5f * (r.box2[1] + r.box2[3]));
        cv::arrowedLine(canvas, a, b, c, 2, cv::LINE_AA, 0, 0.05);
        label_at = (a + b) / 2;
      }
      const std::string number = std::to_string(k + 1);
      cv::putText(canvas, number, label_at + cv::Point(1, 1), cv::FONT_HERSHEY_SIMPLEX, 0.6,
                  cv::Scalar(0, 0, 0), 3, cv::LINE_AA);
      cv::putText(canvas, number, label_at, cv::FONT_HERSHEY_SIMPLEX, 0.6, c, 2, cv::LINE_AA);
      const std::string text =
          fmt::format("{} {} {} {} {:.2f}", number, r.label1, r.predicate, r.label2, r.score);
      cv::putText(canvas, text, cv::Point(x0 + 8, kSide + kLine * static_cast<int>(k + 1)),
                  cv::FONT_HERSHEY_SIMPLEX, 0.55, c, 1, cv::LINE_AA);
    }
  }
  std::vector<uchar> bytes;
  SETDET_CHECK(cv::imencode(".png", canvas, bytes), png, ": PNG encoding failed");
  write_file_atomic(png,
                    std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
}

}  // namespace setdet
