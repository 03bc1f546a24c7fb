#include "setdet/data/synthetic_draw.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

namespace setdet::synthetic {
namespace {

std::vector<cv::Point2d> regular_polygon(int n, double radius, double phase) {
  std::vector<cv::Point2d> pts(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const double t = phase + 2.0 * kPi * i / n;
    pts[i] = {radius * std::cos(t), radius * std::sin(t)};
  }
  return pts;
}

}  // namespace

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

namespace {

Texture::Style random_style(Rng& rng) {
  Texture::Style style;
  const double u = rng.uniform();
  style.kind =
      u < 0.2 ? Texture::kSolid : static_cast<int>(1 + (u - 0.2) / 0.8 * (Texture::kNumKinds - 1));
  style.kind = std::min<int>(style.kind, Texture::kNumKinds - 1);
  style.theta = rng.uniform(0.0, kPi);
  style.period = rng.uniform(3.0, 12.0);
  style.duty = rng.uniform(0.3, 0.7);
  return style;
}

}  // namespace

Texture::Texture(const Style& style, int width, int height)
    : kind_(style.kind),
      c_(std::cos(style.theta)),
      s_(std::sin(style.theta)),
      period_(style.period),
      duty_(style.duty),
      extent_(std::max(1, std::max(width, height))),
      cx_(width / 2.0),
      cy_(height / 2.0) {}

Texture::Texture(Rng& rng, int width, int height) : Texture(random_style(rng), width, height) {
  if (kind_ == kBlotches) {
    const int g = static_cast<int>(rng.randint(3, 6));
    cv::Mat grid(g, g, CV_32F);
    for (int i = 0; i < g * g; ++i) grid.at<float>(i) = static_cast<float>(rng.uniform());
    cv::resize(grid, field_, cv::Size(width, height), 0, 0, cv::INTER_LINEAR);
  }
}

float Texture::at(int x, int y) const {
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

cv::Vec3b mix(const cv::Vec3b& a, const cv::Vec3b& b, float t) {
  auto channel = [t](uchar x, uchar y) {
    return static_cast<uchar>(static_cast<float>(x) + static_cast<float>(y - x) * t + 0.5f);
  };
  return {channel(a[0], b[0]), channel(a[1], b[1]), channel(a[2], b[2])};
}

cv::Mat render_background(Rng& rng, int size, int max_strokes) {
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
  const int64_t strokes = rng.randint(0, max_strokes);
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

// Irwin-Hall: a sum of 4 uniform bytes.
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

double colour_distance(const cv::Vec3b& a, const cv::Vec3b& b) {
  return std::abs(a[0] - b[0]) + std::abs(a[1] - b[1]) + std::abs(a[2] - b[2]);
}

void paint_shape(cv::Mat& image, cv::Mat& owner, const ShapeMask& shape, cv::Point origin,
                 const Texture& texture, const cv::Vec3b& a, const cv::Vec3b& b, int16_t id) {
  const cv::Rect& sb = shape.box;
  for (int y = 0; y < sb.height; ++y) {
    const uchar* m = shape.mask.ptr<uchar>(sb.y + y) + sb.x;
    auto* o = owner.ptr<int16_t>(origin.y + y) + origin.x;
    auto* px = image.ptr<cv::Vec3b>(origin.y + y) + origin.x;
    for (int x = 0; x < sb.width; ++x) {
      if (!m[x]) continue;
      o[x] = id;
      px[x] = mix(a, b, texture.at(x, y));
    }
  }
}

}  // namespace setdet::synthetic
