// Drawing primitives of the synthetic datasets (`setdet data synth`, `setdet data synth-vrd`):
// shape outlines rasterised without anti-aliasing (a mask is exactly the shape's pixel set),
// two-colour textures, noisy backgrounds, per-pixel noise and lighting. All randomness comes from
// the caller's Rng, so an image is a pure function of its Rng's keys.
#pragma once

#include <array>
#include <cstdint>
#include <opencv2/core.hpp>
#include <vector>

#include "setdet/data/random.h"

namespace setdet::synthetic {

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

// A random instance of `shape` (proportions, rotation) from rng.
Outline unit_outline(int shape, Rng& rng);

// min x, min y, max x, max y of the outer outline.
std::array<double, 4> extent(const Outline& o);

struct ShapeMask {
  cv::Mat mask;  // CV_8UC1, 255 inside the shape
  cv::Rect box;  // tight box of the nonzero pixels of `mask`
  int64_t pixels = 0;
};

// Rasterises the outline scaled so that its longer extent is `long_side` pixels.
ShapeMask rasterise(const Outline& o, double long_side);

cv::Vec3b random_colour(Rng& rng);
uchar clamp_u8(double v);
// a + (b - a) t per channel, rounded; t in [0, 1].
cv::Vec3b mix(const cv::Vec3b& a, const cv::Vec3b& b, float t);

// Sum of absolute channel differences.
double colour_distance(const cv::Vec3b& a, const cv::Vec3b& b);

// A two-colour texture: t(x, y) in [0, 1] mixes colour a (t = 0) and colour b (t = 1), in the
// painted shape's box coordinates.
class Texture {
 public:
  enum Kind : int { kSolid, kStripes, kChecker, kGradient, kBlotches, kDots, kNumKinds };

  struct Style {
    int kind = kSolid;
    double theta = 0.0;   // pattern orientation, radians
    double period = 8.0;  // pixels
    double duty = 0.5;    // stripe fraction in colour a; dot radius factor
  };

  // A random kind (20% solid, the rest uniform) and style from rng.
  Texture(Rng& rng, int width, int height);
  // A given style (not kBlotches, whose field is random) over a width x height box.
  Texture(const Style& style, int width, int height);

  float at(int x, int y) const;

 private:
  int kind_ = kSolid;
  double c_ = 1, s_ = 0, period_ = 8, duty_ = 0.5, extent_ = 1, cx_ = 0, cy_ = 0;
  cv::Mat field_;
};

// Paints the shape's pixels at `origin` (image position of mask.box's top-left corner) with
// mix(a, b, texture) and records `id` in `owner` (CV_16SC1, same size as image).
void paint_shape(cv::Mat& image, cv::Mat& owner, const ShapeMask& shape, cv::Point origin,
                 const Texture& texture, const cv::Vec3b& a, const cv::Vec3b& b, int16_t id);

// Low-frequency colour field + optional faint texture + 0..max_strokes thin clutter strokes,
// size x size BGR.
cv::Mat render_background(Rng& rng, int size, int max_strokes = 6);

// Per-pixel noise (Irwin-Hall approximation of a Gaussian) and a linear illumination ramp.
void add_noise_and_light(cv::Mat& image, Rng& rng);

}  // namespace setdet::synthetic
