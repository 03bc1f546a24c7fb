#include "setdet/data/synthetic.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <opencv2/imgproc.hpp>

#include "setdet/core/error.h"
#include "setdet/core/io/coco.h"
#include "setdet/core/parallel.h"
#include "setdet/data/image_io.h"
#include "setdet/data/random.h"

namespace setdet {
namespace {

using Limits = SyntheticLimits;
constexpr double kPi = 3.14159265358979323846;

enum Shape : int {
  kCircle,
  kEllipse,
  kSquare,
  kTriangle,
  kStar,
  kCross,
  kRing,
  kHexagon,
  kNumShapes
};

// A shape's outline in unit coordinates (about the origin, rotated); a ring also has a hole.
struct Outline {
  std::vector<cv::Point2d> outer;
  std::vector<cv::Point2d> hole;
};

std::vector<cv::Point2d> regular_polygon(int n, double radius, double phase) {
  std::vector<cv::Point2d> pts(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double t = phase + 2.0 * kPi * i / n;
    pts[i] = {radius * std::cos(t), radius * std::sin(t)};
  }
  return pts;
}

Outline unit_outline(int shape, Rng& rng) {
  Outline o;
  switch (shape) {
    case kCircle:
      o.outer = regular_polygon(96, 1.0, 0.0);
      break;
    case kEllipse: {
      const double minor = rng.uniform(0.4, 0.65);
      o.outer = regular_polygon(96, 1.0, 0.0);
      for (auto& p : o.outer) p.y *= minor;
      break;
    }
    case kSquare:
      o.outer = regular_polygon(4, 1.0, kPi / 4);
      break;
    case kTriangle:
      o.outer = regular_polygon(3, 1.0, -kPi / 2);
      for (auto& p : o.outer) {
        const double r = 1.0 + rng.uniform(-0.12, 0.12);
        const double t = std::atan2(p.y, p.x) + rng.uniform(-0.12, 0.12);
        p = {r * std::cos(t), r * std::sin(t)};
      }
      break;
    case kStar: {
      const double inner = rng.uniform(0.38, 0.5);
      for (int i = 0; i < 10; ++i) {
        const double r = i % 2 == 0 ? 1.0 : inner;
        const double t = -kPi / 2 + kPi * i / 5;
        o.outer.emplace_back(r * std::cos(t), r * std::sin(t));
      }
      break;
    }
    case kCross: {
      const double w = rng.uniform(0.2, 0.34);
      o.outer = {{w, 1},   {w, w},   {1, w},   {1, -w}, {w, -w}, {w, -1},
                 {-w, -1}, {-w, -w}, {-1, -w}, {-1, w}, {-w, w}, {-w, 1}};
      break;
    }
    case kRing:
      o.outer = regular_polygon(96, 1.0, 0.0);
      o.hole = regular_polygon(96, rng.uniform(0.45, 0.7), 0.0);
      break;
    case kHexagon:
      o.outer = regular_polygon(6, 1.0, 0.0);
      break;
  }
  const double theta = rng.uniform(0.0, 2.0 * kPi);
  const double c = std::cos(theta), s = std::sin(theta);
  for (auto* ring : {&o.outer, &o.hole}) {
    for (auto& p : *ring) p = {c * p.x - s * p.y, s * p.x + c * p.y};
  }
  return o;
}

// min / max of the outer outline.
std::array<double, 4> extent(const Outline& o) {
  std::array<double, 4> e{1e9, 1e9, -1e9, -1e9};
  for (const auto& p : o.outer) {
    e[0] = std::min(e[0], p.x);
    e[1] = std::min(e[1], p.y);
    e[2] = std::max(e[2], p.x);
    e[3] = std::max(e[3], p.y);
  }
  return e;
}

struct ShapeMask {
  cv::Mat mask;  // CV_8UC1, 255 inside the shape
  cv::Rect box;  // tight box of the nonzero pixels of `mask`
  int64_t pixels = 0;
};

// Rasterises the outline scaled so that its longer extent is `long_side` pixels (no
// anti-aliasing: the mask is exactly the shape's pixel set).
ShapeMask rasterise(const Outline& o, double long_side) {
  const auto e = extent(o);
  const double scale = long_side / std::max(e[2] - e[0], e[3] - e[1]);
  constexpr int kShift = 4;  // fillPoly's fixed-point fraction bits
  auto to_fixed = [&](const std::vector<cv::Point2d>& ring) {
    std::vector<cv::Point> pts;
    pts.reserve(ring.size());
    for (const auto& p : ring) {
      pts.emplace_back(static_cast<int>(std::lround(((p.x - e[0]) * scale + 2.0) * (1 << kShift))),
                       static_cast<int>(std::lround(((p.y - e[1]) * scale + 2.0) * (1 << kShift))));
    }
    return pts;
  };
  ShapeMask m;
  const int w = static_cast<int>(std::ceil((e[2] - e[0]) * scale)) + 5;
  const int h = static_cast<int>(std::ceil((e[3] - e[1]) * scale)) + 5;
  m.mask = cv::Mat::zeros(h, w, CV_8UC1);
  std::vector<std::vector<cv::Point>> outer{to_fixed(o.outer)};
  cv::fillPoly(m.mask, outer, cv::Scalar(255), cv::LINE_8, kShift);
  if (!o.hole.empty()) {
    std::vector<std::vector<cv::Point>> hole{to_fixed(o.hole)};
    cv::fillPoly(m.mask, hole, cv::Scalar(0), cv::LINE_8, kShift);
  }
  m.box = cv::boundingRect(m.mask);
  m.pixels = cv::countNonZero(m.mask);
  return m;
}

cv::Vec3b random_colour(Rng& rng) {
  return {static_cast<uchar>(rng.randint(0, 255)), static_cast<uchar>(rng.randint(0, 255)),
          static_cast<uchar>(rng.randint(0, 255))};
}

uchar clamp_u8(double v) { return static_cast<uchar>(std::clamp(v, 0.0, 255.0) + 0.5); }

// A two-colour texture: t(x, y) in [0, 1] mixes colour a (t = 0) and colour b (t = 1).
class Texture {
 public:
  enum Kind : int { kSolid, kStripes, kChecker, kGradient, kBlotches, kDots, kNumKinds };

  Texture(Rng& rng, int width, int height) {
    const double u = rng.uniform();
    kind_ = u < 0.2 ? kSolid : static_cast<int>(1 + (u - 0.2) / 0.8 * (kNumKinds - 1));
    kind_ = std::min<int>(kind_, kNumKinds - 1);
    const double theta = rng.uniform(0.0, kPi);
    c_ = std::cos(theta);
    s_ = std::sin(theta);
    period_ = rng.uniform(3.0, 12.0);
    duty_ = rng.uniform(0.3, 0.7);
    extent_ = std::max(1, std::max(width, height));
    cx_ = width / 2.0;
    cy_ = height / 2.0;
    if (kind_ == kBlotches) {
      const int g = static_cast<int>(rng.randint(3, 6));
      cv::Mat grid(g, g, CV_32F);
      for (int i = 0; i < g * g; ++i) grid.at<float>(i) = static_cast<float>(rng.uniform());
      cv::resize(grid, field_, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);
    }
  }

  float at(int x, int y) const {
    switch (kind_) {
      case kStripes: {
        const double v = (x * c_ + y * s_) / period_;
        return v - std::floor(v) < duty_ ? 0.f : 1.f;
      }
      case kChecker: {
        const auto u = static_cast<int64_t>(std::floor((x * c_ + y * s_) / period_));
        const auto v = static_cast<int64_t>(std::floor((-x * s_ + y * c_) / period_));
        return ((u + v) & 1) ? 1.f : 0.f;
      }
      case kGradient:
        return static_cast<float>(
            std::clamp(((x - cx_) * c_ + (y - cy_) * s_) / extent_ + 0.5, 0.0, 1.0));
      case kBlotches:
        return field_.at<float>(y, x);
      case kDots: {
        const double u = (x * c_ + y * s_) / period_, v = (-x * s_ + y * c_) / period_;
        const double du = u - std::floor(u) - 0.5, dv = v - std::floor(v) - 0.5;
        return du * du + dv * dv < duty_ * duty_ * 0.5 ? 1.f : 0.f;
      }
      default:
        return 0.f;
    }
  }

 private:
  int kind_ = kSolid;
  double c_ = 1, s_ = 0, period_ = 8, duty_ = 0.5, extent_ = 1, cx_ = 0, cy_ = 0;
  cv::Mat field_;
};

// t in [0, 1], so the result lies between a and b and needs no clamping.
cv::Vec3b mix(const cv::Vec3b& a, const cv::Vec3b& b, float t) {
  auto channel = [t](uchar x, uchar y) {
    return static_cast<uchar>(static_cast<float>(x) + static_cast<float>(y - x) * t + 0.5f);
  };
  return {channel(a[0], b[0]), channel(a[1], b[1]), channel(a[2], b[2])};
}

// Low-frequency colour field + optional faint texture + thin clutter strokes.
cv::Mat render_background(Rng& rng, int size) {
  const int g = static_cast<int>(rng.randint(2, 5));
  const cv::Vec3b base = random_colour(rng);
  cv::Mat grid(g, g, CV_8UC3);
  for (int i = 0; i < g * g; ++i) {
    auto& px = grid.at<cv::Vec3b>(i);
    for (int ch = 0; ch < 3; ++ch) px[ch] = clamp_u8(base[ch] + rng.randint(-70, 70));
  }
  cv::Mat bg;
  cv::resize(grid, bg, cv::Size(size, size), 0, 0, cv::INTER_LINEAR);
  if (rng.bernoulli(0.5)) {
    const Texture texture(rng, size, size);
    const cv::Vec3b a = random_colour(rng), b = random_colour(rng);
    const float alpha = static_cast<float>(rng.uniform(0.1, 0.3));
    for (int y = 0; y < size; ++y) {
      auto* row = bg.ptr<cv::Vec3b>(y);
      for (int x = 0; x < size; ++x) {
        const cv::Vec3b t = mix(a, b, texture.at(x, y));
        for (int ch = 0; ch < 3; ++ch)
          row[x][ch] = clamp_u8(row[x][ch] * (1 - alpha) + t[ch] * alpha);
      }
    }
  }
  const int64_t strokes = rng.randint(0, 6);
  for (int64_t i = 0; i < strokes; ++i) {
    const cv::Vec3b c = random_colour(rng);
    const cv::Scalar colour(c[0], c[1], c[2]);
    const int thickness = static_cast<int>(rng.randint(1, 2));
    const cv::Point p(static_cast<int>(rng.randint(0, size - 1)),
                      static_cast<int>(rng.randint(0, size - 1)));
    if (rng.bernoulli(0.5)) {
      const cv::Point q(static_cast<int>(rng.randint(0, size - 1)),
                        static_cast<int>(rng.randint(0, size - 1)));
      cv::line(bg, p, q, colour, thickness, cv::LINE_AA);
    } else {
      const int r = static_cast<int>(rng.randint(8, size / 3));
      const double start = rng.uniform(0, 360);
      cv::ellipse(bg, p, cv::Size(r, r), 0, start, start + rng.uniform(40, 200), colour, thickness,
                  cv::LINE_AA);
    }
  }
  return bg;
}

// Per-pixel noise (Irwin-Hall approximation of a Gaussian: a sum of 4 uniform bytes) and a
// linear illumination ramp.
void add_noise_and_light(cv::Mat& image, Rng& rng) {
  const float sigma = static_cast<float>(rng.uniform(3.0, 12.0));
  const bool ramp = rng.bernoulli(0.5);
  const double gx = ramp ? rng.uniform(-0.35, 0.35) : 0.0;
  const double gy = ramp ? rng.uniform(-0.35, 0.35) : 0.0;
  const float scale = sigma * 1.7320508f / 255.f;  // sd of a sum of 4 U{0..255} is 255 / sqrt(3)
  const int w = image.cols, h = image.rows;
  std::vector<float> col_gain(static_cast<size_t>(3 * w));
  for (int x = 0; x < w; ++x) {
    const auto g = static_cast<float>(gx * (x / static_cast<double>(w) - 0.5));
    col_gain[3 * x] = col_gain[3 * x + 1] = col_gain[3 * x + 2] = g;
  }
  std::vector<float> noise(static_cast<size_t>(3 * w) + 1);
  for (int y = 0; y < h; ++y) {
    const auto row_gain = static_cast<float>(1.0 + gy * (y / static_cast<double>(h) - 0.5));
    for (int i = 0; i < 3 * w; i += 2) {
      const uint64_t r = rng.next();
      const auto byte_sum = [](uint64_t v) {
        return static_cast<int>((v & 0xff) + ((v >> 8) & 0xff) + ((v >> 16) & 0xff) +
                                ((v >> 24) & 0xff));
      };
      noise[i] = static_cast<float>(byte_sum(r) - 510) * scale;
      noise[i + 1] = static_cast<float>(byte_sum(r >> 32) - 510) * scale;
    }
    uchar* row = image.ptr<uchar>(y);
    for (int i = 0; i < 3 * w; ++i) {
      const float v = row[i] * (row_gain + col_gain[i]) + noise[i];
      row[i] = static_cast<uchar>(std::clamp(v, 0.f, 255.f) + 0.5f);
    }
  }
}

double box_iou(const cv::Rect& a, const cv::Rect& b) {
  const double inter = (a & b).area();
  return inter <= 0 ? 0.0 : inter / (a.area() + b.area() - inter);
}

}  // namespace

const std::vector<std::string>& synthetic_class_names() {
  static const std::vector<std::string> names{"circle", "ellipse", "square", "triangle",
                                              "star",   "cross",   "ring",   "hexagon"};
  return names;
}

SyntheticImage render_synthetic_image(uint64_t seed, SyntheticSplit split, int64_t index,
                                      int size) {
  SETDET_CHECK(size >= 64, "synthetic image size must be >= 64, got ", size);
  SETDET_CHECK(index >= 0, "synthetic image index must be >= 0, got ", index);
  Rng rng({seed, static_cast<uint64_t>(split), static_cast<uint64_t>(index)});
  SyntheticImage out;
  out.image = render_background(rng, size);
  cv::Mat& image = out.image;

  const int max_side = std::min(Limits::kMaxSide, 5 * size / 8);
  out.owner = cv::Mat(size, size, CV_16SC1, cv::Scalar(-1));
  CV_Assert(out.owner.isContinuous());
  int16_t* owner = out.owner.ptr<int16_t>();
  std::vector<cv::Rect> boxes;
  std::vector<int64_t> hidden;

  const auto target = rng.randint(Limits::kMinObjects, Limits::kMaxObjects);
  constexpr int kAttempts = 60;
  for (int64_t k = 0; k < target; ++k) {
    for (int attempt = 0; attempt < kAttempts; ++attempt) {
      const int shape = static_cast<int>(rng.randint(0, kNumShapes - 1));
      const Outline outline = unit_outline(shape, rng);
      const auto e = extent(outline);
      const double aspect = std::min(e[2] - e[0], e[3] - e[1]) / std::max(e[2] - e[0], e[3] - e[1]);
      const double lo = (Limits::kMinSide + 1.0) / aspect;
      // later attempts draw smaller shapes, which fit more easily
      const double hi = std::max(lo + 1.0, (max_side - 2.0) * std::pow(0.93, attempt));
      const ShapeMask shape_mask = rasterise(outline, rng.log_uniform(lo, hi));
      const cv::Rect& sb = shape_mask.box;
      if (sb.width < Limits::kMinSide || sb.height < Limits::kMinSide || sb.width > max_side ||
          sb.height > max_side) {
        continue;
      }
      // image position of the shape's box
      int x0 = static_cast<int>(rng.randint(0, size - sb.width));
      int y0 = static_cast<int>(rng.randint(0, size - sb.height));
      if (!boxes.empty() && rng.bernoulli(0.35)) {  // seek overlap with an earlier shape
        const cv::Rect& other = boxes[rng.randint(0, static_cast<int64_t>(boxes.size()) - 1)];
        const double cx =
            other.x + other.width / 2.0 + rng.uniform(-0.5, 0.5) * 0.7 * (other.width + sb.width);
        const double cy = other.y + other.height / 2.0 +
                          rng.uniform(-0.5, 0.5) * 0.7 * (other.height + sb.height);
        x0 = std::clamp(static_cast<int>(std::lround(cx - sb.width / 2.0)), 0, size - sb.width);
        y0 = std::clamp(static_cast<int>(std::lround(cy - sb.height / 2.0)), 0, size - sb.height);
      }
      const cv::Rect box(x0, y0, sb.width, sb.height);
      bool ok = true;
      for (const auto& b : boxes) {
        if (box_iou(box, b) > Limits::kMaxPairIou) {
          ok = false;
          break;
        }
      }
      if (!ok) continue;
      // pixels of each earlier shape this one would cover
      std::vector<int64_t> covered(boxes.size(), 0);
      for (int y = 0; y < sb.height; ++y) {
        const uchar* m = shape_mask.mask.ptr<uchar>(sb.y + y) + sb.x;
        const int16_t* o = owner + static_cast<size_t>(y0 + y) * size + x0;
        for (int x = 0; x < sb.width; ++x) {
          if (m[x] && o[x] >= 0) ++covered[o[x]];
        }
      }
      for (size_t j = 0; j < boxes.size() && ok; ++j) {
        const auto& obj = out.objects[j];
        const int64_t visible = obj.full_pixels - hidden[j] - covered[j];
        ok = visible >= Limits::kMinVisibleFraction * obj.full_pixels;
      }
      if (!ok) continue;

      // accepted: colours that stand out from what lies beneath, then paint
      const cv::Mat mask_roi = shape_mask.mask(sb);
      const cv::Scalar under = cv::mean(image(box), mask_roi);
      cv::Vec3b a = random_colour(rng);
      for (int tries = 0; tries < 16; ++tries) {
        const double d =
            std::abs(a[0] - under[0]) + std::abs(a[1] - under[1]) + std::abs(a[2] - under[2]);
        if (d >= 120) break;
        a = random_colour(rng);
      }
      const cv::Vec3b b = mix(a, random_colour(rng), static_cast<float>(rng.uniform(0.4, 1.0)));
      const Texture texture(rng, sb.width, sb.height);
      const auto id = static_cast<int16_t>(boxes.size());
      for (int y = 0; y < sb.height; ++y) {
        const uchar* m = mask_roi.ptr<uchar>(y);
        int16_t* o = owner + static_cast<size_t>(y0 + y) * size + x0;
        auto* px = image.ptr<cv::Vec3b>(y0 + y) + x0;
        for (int x = 0; x < sb.width; ++x) {
          if (!m[x]) continue;
          o[x] = id;
          px[x] = mix(a, b, texture.at(x, y));
        }
      }
      for (size_t j = 0; j < boxes.size(); ++j) hidden[j] += covered[j];
      boxes.push_back(box);
      hidden.push_back(0);
      SyntheticObject obj;
      obj.category_id = shape + 1;
      obj.bbox = {static_cast<double>(box.x), static_cast<double>(box.y),
                  static_cast<double>(box.width), static_cast<double>(box.height)};
      obj.full_pixels = shape_mask.pixels;
      out.objects.push_back(obj);
      break;
    }
  }
  for (size_t j = 0; j < out.objects.size(); ++j) {
    out.objects[j].visible_pixels = out.objects[j].full_pixels - hidden[j];
  }

  if (rng.bernoulli(0.25)) cv::GaussianBlur(image, image, cv::Size(3, 3), rng.uniform(0.5, 1.0));
  add_noise_and_light(image, rng);
  return out;
}

SyntheticSummary generate_synthetic_dataset(const SyntheticOptions& options) {
  namespace fs = std::filesystem;
  SETDET_CHECK(!options.out_dir.empty(), "synthetic dataset: --out must name a directory");
  SETDET_CHECK(options.num_train >= 0 && options.num_val >= 0,
               "synthetic dataset: image counts must be >= 0, got num_train=", options.num_train,
               " num_val=", options.num_val);
  SETDET_CHECK(options.num_train + options.num_val > 0,
               "synthetic dataset: nothing to generate (num_train = num_val = 0)");
  SETDET_CHECK(options.size >= 64 && options.size <= 4096,
               "synthetic dataset: size must be in [64, 4096], got ", options.size);
  SETDET_CHECK(options.format == "jpg" || options.format == "png",
               "synthetic dataset: format must be 'jpg' or 'png', got '", options.format, "'");
  SETDET_CHECK(options.jpeg_quality >= 1 && options.jpeg_quality <= 100,
               "synthetic dataset: jpeg quality must be in [1, 100], got ", options.jpeg_quality);

  const auto start = std::chrono::steady_clock::now();
  const fs::path root(options.out_dir);
  std::error_code ec;
  for (const char* sub : {"train", "val", "annotations"}) {
    fs::create_directories(root / sub, ec);
    SETDET_CHECK(!ec, (root / sub).string(), ": cannot create directory (", ec.message(), ")");
  }

  ScopedOpenCvSerial serial;
  SyntheticSummary summary;
  const struct {
    const char* name;
    SyntheticSplit split;
    int64_t count;
  } splits[] = {{"train", SyntheticSplit::kTrain, options.num_train},
                {"val", SyntheticSplit::kVal, options.num_val}};
  for (const auto& sp : splits) {
    std::vector<std::vector<SyntheticObject>> objects(static_cast<size_t>(sp.count));
    std::vector<std::string> names(static_cast<size_t>(sp.count));
    parallel_for(0, sp.count, 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        char name[32];
        std::snprintf(name, sizeof(name), "%06lld.%s", static_cast<long long>(i),
                      options.format.c_str());
        SyntheticImage img = render_synthetic_image(options.seed, sp.split, i, options.size);
        write_image((root / sp.name / name).string(), img.image, options.jpeg_quality);
        objects[i] = std::move(img.objects);
        names[i] = name;
      }
    });

    CocoDataset ds;
    const auto& classes = synthetic_class_names();
    for (size_t c = 0; c < classes.size(); ++c) {
      ds.categories.push_back({static_cast<int64_t>(c + 1), classes[c], "shape"});
    }
    int64_t ann_id = 1;
    for (int64_t i = 0; i < sp.count; ++i) {
      CocoImage im;
      im.id = i + 1;
      im.file_name = names[i];
      im.width = options.size;
      im.height = options.size;
      ds.images.push_back(im);
      for (const auto& obj : objects[i]) {
        CocoAnnotation ann;
        ann.id = ann_id++;
        ann.image_id = im.id;
        ann.category_id = obj.category_id;
        ann.bbox = obj.bbox;
        ann.area = static_cast<double>(obj.visible_pixels);
        ds.annotations.push_back(ann);
      }
    }
    summary.images += sp.count;
    summary.annotations += static_cast<int64_t>(ds.annotations.size());
    write_coco_instances(
        (root / "annotations" / (std::string("instances_") + sp.name + ".json")).string(), ds);
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace setdet
