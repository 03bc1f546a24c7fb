#include "setdet/data/synthetic_vrd.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <opencv2/imgproc.hpp>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"
#include "setdet/core/parallel.h"
#include "setdet/data/image_io.h"
#include "setdet/data/random.h"
#include "setdet/data/synthetic_draw.h"

namespace setdet {
namespace {

using namespace synthetic;

enum Predicate : int {
  kOn,
  kUnder,
  kInsideOf,
  kNextTo,
  kConnectedTo,
  kPointingAt,
  kSameTextureAs,
  kIs,
  kNumPredicates
};
enum Attribute : int { kPlain = -1, kStriped = 0, kDotted = 1, kCheckered = 2 };

constexpr int kClassShapes[] = {kCircle, kSquare, kTriangle, kStar, kHexagon, kCross};
constexpr uint64_t kStreamTag = 0x56524453594e54ULL;  // "VRDSYNT": apart from `data synth`
constexpr double kDeg = kPi / 180.0;

double cx(const cv::Rect& r) { return r.x + r.width / 2.0; }
double cy(const cv::Rect& r) { return r.y + r.height / 2.0; }
cv::Point2d centre(const cv::Rect& r) { return {cx(r), cy(r)}; }

// ---- the geometric predicates (header definitions), u = size / 128 ----

bool inside_of(const cv::Rect& a, const cv::Rect& b, double u) {
  return a.x >= b.x + u && a.y >= b.y + u && a.br().x <= b.br().x - u && a.br().y <= b.br().y - u;
}
bool on(const cv::Rect& a, const cv::Rect& b, double u) {
  return b.x <= cx(a) && cx(a) <= b.br().x && a.width < b.width && a.br().y >= b.y - u &&
         a.br().y <= b.y + b.height / 4.0 && a.y < b.y;
}
bool under(const cv::Rect& a, const cv::Rect& b, double u) {
  const double gap = a.y - b.br().y;
  return b.x <= cx(a) && cx(a) <= b.br().x && gap >= 2 * u && gap <= 0.6 * b.height;
}
bool next_to(const cv::Rect& a, const cv::Rect& b, double u) {
  const double gap = b.x - a.br().x;
  return gap >= u && gap <= std::min(a.width, b.width) / 2.0 &&
         std::abs(cy(a) - cy(b)) <= std::max(a.height, b.height) / 5.0;
}

// ---- rays and segments against boxes ----

// Entry parameter t >= 0 of the ray p + t d into box r, or -1 if it misses.
double ray_entry(const cv::Rect& r, cv::Point2d p, cv::Point2d d) {
  double t0 = 0.0, t1 = 1e18;
  const double lo[2] = {static_cast<double>(r.x), static_cast<double>(r.y)};
  const double hi[2] = {static_cast<double>(r.br().x), static_cast<double>(r.br().y)};
  const double o[2] = {p.x, p.y}, v[2] = {d.x, d.y};
  for (int k = 0; k < 2; ++k) {
    if (std::abs(v[k]) < 1e-12) {
      if (o[k] < lo[k] || o[k] > hi[k]) return -1.0;
      continue;
    }
    double a = (lo[k] - o[k]) / v[k], b = (hi[k] - o[k]) / v[k];
    if (a > b) std::swap(a, b);
    t0 = std::max(t0, a);
    t1 = std::min(t1, b);
  }
  return t0 <= t1 ? t0 : -1.0;
}

cv::Rect dilate(const cv::Rect& r, int pad) {
  return {r.x - pad, r.y - pad, r.width + 2 * pad, r.height + 2 * pad};
}

bool segment_hits(const cv::Rect& r, cv::Point2d p, cv::Point2d q) {
  const double t = ray_entry(r, p, q - p);
  return t >= 0.0 && t <= 1.0;
}

double segment_distance(cv::Point2d p, cv::Point2d q, cv::Point2d a, cv::Point2d b) {
  const auto point_segment = [](cv::Point2d x, cv::Point2d s, cv::Point2d e) {
    const cv::Point2d d = e - s;
    const double len2 = d.dot(d);
    const double t = len2 > 0 ? std::clamp((x - s).dot(d) / len2, 0.0, 1.0) : 0.0;
    return cv::norm(x - (s + t * d));
  };
  const auto cross = [](cv::Point2d a, cv::Point2d b) { return a.x * b.y - a.y * b.x; };
  const double d1 = cross(q - p, a - p), d2 = cross(q - p, b - p);
  const double d3 = cross(b - a, p - a), d4 = cross(b - a, q - a);
  if (((d1 > 0) != (d2 > 0)) && ((d3 > 0) != (d4 > 0))) return 0.0;  // they cross
  return std::min({point_segment(p, a, b), point_segment(q, a, b), point_segment(a, p, q),
                   point_segment(b, p, q)});
}

cv::Point2d rotate(cv::Point2d d, double angle) {
  const double c = std::cos(angle), s = std::sin(angle);
  return {c * d.x - s * d.y, s * d.x + c * d.y};
}

// ---- layout ----

struct Placed {
  int cls = 0;
  ShapeMask shape;
  cv::Point origin;  // image position of shape.box's top-left corner
  cv::Rect box() const { return {origin.x, origin.y, shape.box.width, shape.box.height}; }
  bool covers(cv::Point2d p) const {
    const int x = static_cast<int>(std::floor(p.x)) - origin.x + shape.box.x;
    const int y = static_cast<int>(std::floor(p.y)) - origin.y + shape.box.y;
    return x >= 0 && y >= 0 && x < shape.mask.cols && y < shape.mask.rows &&
           shape.mask.at<uchar>(y, x) != 0;
  }
};

Placed make_object(Rng& rng, double long_side) {
  Placed p;
  p.cls = static_cast<int>(rng.randint(0, 5));
  p.shape = rasterise(unit_outline(kClassShapes[p.cls], rng), long_side);
  return p;
}

enum GroupKind : int { kSingle, kOnPair, kUnderPair, kInsidePair, kSidePair };

// One group's objects in paint order, at group-local positions (top-left of the group at 0, 0);
// empty when the draw does not fit the rules.
std::vector<Placed> make_group(Rng& rng, GroupKind kind, double k, double u) {
  std::vector<Placed> g;
  switch (kind) {
    case kSingle:
      g.push_back(make_object(rng, rng.log_uniform(30 * k, 72 * k)));
      g[0].origin = {0, 0};
      break;
    case kOnPair: {
      Placed b = make_object(rng, rng.log_uniform(52 * k, 96 * k));
      const cv::Rect bb(0, 0, b.shape.box.width, b.shape.box.height);
      if (0.7 * bb.width < 22 * k) return {};
      Placed a = make_object(rng, rng.uniform(22 * k, 0.7 * bb.width));
      const int aw = a.shape.box.width, ah = a.shape.box.height;
      const double shift = rng.uniform(-0.3, 0.3) * (bb.width - aw);
      const int ax = static_cast<int>(std::lround((bb.width - aw) / 2.0 + shift));
      const auto max_sink = static_cast<int64_t>(std::min(0.15 * bb.height, 0.5 * ah));
      const int sink = static_cast<int>(rng.randint(0, std::max<int64_t>(0, max_sink)));
      a.origin = {ax, sink - ah};  // A's bottom edge at B's top + sink
      b.origin = {0, 0};
      g = {b, a};
      break;
    }
    case kUnderPair: {
      Placed b = make_object(rng, rng.log_uniform(44 * k, 90 * k));
      const int bw = b.shape.box.width, bh = b.shape.box.height;
      if (0.5 * bh < 2 * u + 1) return {};
      Placed a = make_object(rng, rng.log_uniform(26 * k, 60 * k));
      const int gap =
          static_cast<int>(std::lround(rng.uniform(2 * u + 1, std::min(0.5 * bh, 18 * k))));
      const double acx = bw / 2.0 + rng.uniform(-0.35, 0.35) * bw;
      a.origin = {static_cast<int>(std::lround(acx - a.shape.box.width / 2.0)), bh + gap};
      b.origin = {0, 0};
      g = {b, a};
      break;
    }
    case kInsidePair: {
      Placed b = make_object(rng, rng.uniform(96 * k, 150 * k));
      const int bw = b.shape.box.width, bh = b.shape.box.height;
      const double inner = rng.uniform(0.22, 0.38) * std::min(bw, bh);
      if (inner < 16 * k) return {};
      Placed a = make_object(rng, inner);
      const cv::Moments m = cv::moments(b.shape.mask, true);
      const double mx = m.m10 / m.m00 - b.shape.box.x, my = m.m01 / m.m00 - b.shape.box.y;
      const int aw = a.shape.box.width, ah = a.shape.box.height;
      const int margin = static_cast<int>(std::ceil(u)) + 1;
      if (bw - aw - margin < margin || bh - ah - margin < margin) return {};
      const int ax =
          std::clamp(static_cast<int>(std::lround(mx - aw / 2.0 + rng.uniform(-0.1, 0.1) * bw)),
                     margin, bw - aw - margin);
      const int ay =
          std::clamp(static_cast<int>(std::lround(my - ah / 2.0 + rng.uniform(-0.1, 0.1) * bh)),
                     margin, bh - ah - margin);
      a.origin = {ax, ay};
      b.origin = {0, 0};
      g = {b, a};
      break;
    }
    case kSidePair: {
      Placed a = make_object(rng, rng.log_uniform(30 * k, 70 * k));
      Placed b = make_object(rng, rng.log_uniform(30 * k, 70 * k));
      const int aw = a.shape.box.width, ah = a.shape.box.height;
      const int bw = b.shape.box.width, bh = b.shape.box.height;
      const double max_gap = 0.45 * std::min(aw, bw);
      if (max_gap < u + 1) return {};
      const int gap = static_cast<int>(std::lround(rng.uniform(u + 1, max_gap)));
      const double dy = rng.uniform(-0.12, 0.12) * std::max(ah, bh);
      a.origin = {0, 0};
      b.origin = {aw + gap, static_cast<int>(std::lround(ah / 2.0 - bh / 2.0 + dy))};
      g = {a, b};
      break;
    }
  }
  // shift so that the group's box starts at (0, 0)
  cv::Rect all = g[0].box();
  for (const auto& p : g) all |= p.box();
  for (auto& p : g) p.origin -= all.tl();
  return g;
}

// ---- textures ----

struct Look {
  int attribute = kPlain;
  Texture::Style style;
  cv::Vec3b a, b;
};

Look random_look(Rng& rng, const cv::Rect& box, double k) {
  Look look;
  const double u = rng.uniform();
  look.attribute = u < 0.4 ? kPlain : u < 0.6 ? kStriped : u < 0.8 ? kDotted : kCheckered;
  const double small = std::min(box.width, box.height);
  look.style.theta = rng.uniform(0.0, kPi);
  switch (look.attribute) {
    case kPlain:
      look.style.kind = Texture::kSolid;
      break;
    case kStriped:
      look.style.kind = Texture::kStripes;
      look.style.period = std::min(rng.uniform(5.0, 9.0) * k, small / 3.0);
      look.style.duty = rng.uniform(0.4, 0.6);
      break;
    case kDotted:
      look.style.kind = Texture::kDots;
      look.style.period = std::min(rng.uniform(6.0, 10.0) * k, small / 3.0);
      look.style.duty = rng.uniform(0.32, 0.42);
      break;
    case kCheckered:
      look.style.kind = Texture::kChecker;
      look.style.period = std::min(rng.uniform(5.0, 9.0) * k, small / 3.0);
      break;
  }
  return look;
}

double min_colour_distance(const Look& x, const Look& y) {
  return std::min({colour_distance(x.a, y.a), colour_distance(x.a, y.b), colour_distance(x.b, y.a),
                   colour_distance(x.b, y.b)});
}

// ---- marks ----

struct MarkPlan {
  SyntheticVrdMark mark;
  int target = -1;                // connected_to / pointing_at partner
  std::vector<cv::Point2d> head;  // arrowhead triangle
};

class Scene {
 public:
  Scene(std::vector<Placed> objects, int size, double k, double u)
      : objects_(std::move(objects)), size_(size), k_(k), u_(u) {
    for (const auto& p : objects_) boxes_.push_back(p.box());
  }

  const std::vector<Placed>& objects() const { return objects_; }
  const std::vector<cv::Rect>& boxes() const { return boxes_; }
  const std::vector<MarkPlan>& marks() const { return marks_; }

  // The segment p-q, padded by `pad`, misses every box except `skip_a`, `skip_b`, and stays
  // 4u away from earlier marks.
  bool clear(cv::Point2d p, cv::Point2d q, int skip_a, int skip_b, int pad) const {
    for (size_t i = 0; i < boxes_.size(); ++i) {
      if (static_cast<int>(i) == skip_a || static_cast<int>(i) == skip_b) continue;
      if (segment_hits(dilate(boxes_[i], pad), p, q)) return false;
    }
    for (const auto& m : marks_) {
      if (segment_distance(p, q, m.mark.from, m.mark.to) < 4 * u_) return false;
    }
    return true;
  }

  bool inside_image(cv::Point2d p, double margin) const {
    return p.x >= margin && p.y >= margin && p.x <= size_ - margin && p.y <= size_ - margin;
  }

  // Where the ray from object i's centre along d last covers its shape (+0.5 px): an arrow drawn
  // from there overlaps the outline.
  cv::Point2d exit_point(int i, cv::Point2d d) const {
    const cv::Point2d c = centre(boxes_[i]);
    double last = 0.0;
    const double reach = boxes_[i].width + boxes_[i].height;
    for (double t = 0.0; t <= reach; t += 0.5) {
      if (objects_[i].covers(c + t * d)) last = t;
    }
    return c + (last + 0.5) * d;
  }

  // First box the ray from p along d enters (its index and t), or (-1, inf).
  std::pair<int, double> first_hit(cv::Point2d p, cv::Point2d d) const {
    std::pair<int, double> best{-1, 1e18};
    for (size_t i = 0; i < boxes_.size(); ++i) {
      const double t = ray_entry(boxes_[i], p, d);
      if (t >= 0.0 && t < best.second) best = {static_cast<int>(i), t};
    }
    return best;
  }

  // Every ray within +-15 degrees of d from the tip hits `target` first (or nothing when
  // target = -1), and those within +-10 degrees hit it.
  bool cone_ok(cv::Point2d tip, cv::Point2d d, int target) const {
    for (int deg = -15; deg <= 15; ++deg) {
      const auto [hit, t] = first_hit(tip, rotate(d, deg * kDeg));
      if (target < 0 ? hit >= 0 : (hit >= 0 && hit != target)) return false;
      if (target >= 0 && std::abs(deg) <= 10 && hit != target) return false;
    }
    return true;
  }

  bool add_line(Rng& rng) {
    std::vector<std::pair<int, int>> candidates;
    for (size_t i = 0; i < boxes_.size(); ++i) {
      for (size_t j = i + 1; j < boxes_.size(); ++j) {
        if ((dilate(boxes_[i], static_cast<int>(u_)) & boxes_[j]).area() > 0) continue;
        const auto [p, q] = outline_to_outline(static_cast<int>(i), static_cast<int>(j));
        if (cv::norm(q - p) < 6 * u_) continue;  // too short to see
        if (!clear(p, q, static_cast<int>(i), static_cast<int>(j), static_cast<int>(3 * u_))) {
          continue;
        }
        candidates.emplace_back(static_cast<int>(i), static_cast<int>(j));
      }
    }
    if (candidates.empty()) return false;
    const auto [i, j] = candidates[rng.randint(0, static_cast<int64_t>(candidates.size()) - 1)];
    const auto [p, q] = outline_to_outline(i, j);
    MarkPlan m;
    m.mark = {false, p, q, i};
    m.target = j;
    marks_.push_back(m);
    return true;
  }

  // The segment between objects i and j along their centres' line, outline to outline.
  std::pair<cv::Point2d, cv::Point2d> outline_to_outline(int i, int j) const {
    cv::Point2d d = centre(boxes_[j]) - centre(boxes_[i]);
    d /= cv::norm(d);
    return {exit_point(i, d), exit_point(j, -d)};
  }

  bool add_dangling_line(Rng& rng) {
    for (int attempt = 0; attempt < 20; ++attempt) {
      const int i = static_cast<int>(rng.randint(0, static_cast<int64_t>(boxes_.size()) - 1));
      const cv::Point2d d = rotate({1.0, 0.0}, rng.uniform(0.0, 2 * kPi));
      const cv::Point2d from = exit_point(i, d);
      const cv::Point2d end = from + rng.uniform(16 * k_, 50 * k_) * d;
      if (!inside_image(end, 4 * u_)) continue;
      if (!clear(from, end, i, -1, static_cast<int>(4 * u_))) continue;
      if (!cone_ok(end, d, -1)) continue;
      MarkPlan m;
      m.mark = {false, from, end, i};
      marks_.push_back(m);
      return true;
    }
    return false;
  }

  // An arrow from object i's outline along d with length len; target j or -1.
  bool add_arrow(int i, int j, cv::Point2d d, double len) {
    const cv::Point2d from = exit_point(i, d);
    const cv::Point2d tip = from + len * d;
    const double head = 6 * k_;
    if (!inside_image(tip, head + u_)) return false;
    if (!clear(from, tip, i, -1, static_cast<int>(3 * u_))) return false;
    if (!cone_ok(tip, d, j)) return false;
    MarkPlan m;
    m.mark = {true, from, tip, i};
    m.target = j;
    const cv::Point2d n(-d.y, d.x);
    m.head = {tip, tip - head * d + 0.7 * head * n, tip - head * d - 0.7 * head * n};
    marks_.push_back(m);
    return true;
  }

  bool add_pointing_arrow(Rng& rng) {
    std::vector<std::pair<int, int>> candidates;
    for (size_t i = 0; i < boxes_.size(); ++i) {
      for (size_t j = 0; j < boxes_.size(); ++j) {
        if (i == j || (dilate(boxes_[i], static_cast<int>(u_)) & boxes_[j]).area() > 0) continue;
        candidates.emplace_back(static_cast<int>(i), static_cast<int>(j));
      }
    }
    while (!candidates.empty()) {
      const size_t pick =
          static_cast<size_t>(rng.randint(0, static_cast<int64_t>(candidates.size()) - 1));
      const auto [i, j] = candidates[pick];
      candidates.erase(candidates.begin() + static_cast<std::ptrdiff_t>(pick));
      cv::Point2d d = centre(boxes_[j]) - centre(boxes_[i]);
      d /= cv::norm(d);
      const cv::Point2d from = exit_point(i, d);
      const double gap = ray_entry(boxes_[j], from, d);
      if (gap < 24 * k_) continue;
      const double len = std::clamp(0.45 * gap, 14 * k_, 40 * k_);
      if (add_arrow(i, j, d, len)) return true;
    }
    return false;
  }

  bool add_stray_arrow(Rng& rng) {
    for (int attempt = 0; attempt < 20; ++attempt) {
      const int i = static_cast<int>(rng.randint(0, static_cast<int64_t>(boxes_.size()) - 1));
      const cv::Point2d d = rotate({1.0, 0.0}, rng.uniform(0.0, 2 * kPi));
      if (add_arrow(i, -1, d, rng.uniform(14 * k_, 36 * k_))) return true;
    }
    return false;
  }

 private:
  std::vector<Placed> objects_;
  std::vector<cv::Rect> boxes_;
  std::vector<MarkPlan> marks_;
  int size_;
  double k_, u_;
};

// Stamps a mark (2 px line, arrows with a filled head) into `mask` (CV_8UC1).
void stamp(cv::Mat& mask, const MarkPlan& m, int thickness) {
  constexpr int kShift = 4;
  const auto fixed = [](cv::Point2d p) {
    return cv::Point(static_cast<int>(std::lround(p.x * (1 << kShift))),
                     static_cast<int>(std::lround(p.y * (1 << kShift))));
  };
  cv::line(mask, fixed(m.mark.from),
           fixed(m.head.empty() ? m.mark.to : (m.head[1] + m.head[2]) / 2), cv::Scalar(255),
           thickness, cv::LINE_8, kShift);
  if (!m.head.empty()) {
    std::vector<std::vector<cv::Point>> tri{{fixed(m.head[0]), fixed(m.head[1]), fixed(m.head[2])}};
    cv::fillPoly(mask, tri, cv::Scalar(255), cv::LINE_8, kShift);
  }
}

// Paints the mark's pixels in `colour` and records it in `ink`.
void paint_mark(cv::Mat& image, cv::Mat& ink, const MarkPlan& m, int16_t id,
                const cv::Vec3b& colour, int thickness) {
  cv::Mat mask = cv::Mat::zeros(image.size(), CV_8UC1);
  stamp(mask, m, thickness);
  image.setTo(cv::Scalar(colour[0], colour[1], colour[2]), mask);
  ink.setTo(cv::Scalar(id), mask);
}

void add_relation(std::vector<SyntheticVrdRelation>& out, int s, int o, int predicate,
                  int attribute = -1) {
  out.push_back({s, o, predicate, attribute});
}

// (left, right) by box centre x, then y, then index: the subject of a symmetric predicate first.
std::pair<int, int> canonical(const std::vector<cv::Rect>& boxes, int i, int j) {
  const auto key = [&](int n) { return std::make_tuple(cx(boxes[n]), cy(boxes[n]), n); };
  return key(i) < key(j) ? std::make_pair(i, j) : std::make_pair(j, i);
}

}  // namespace

const std::vector<std::string>& synthetic_vrd_class_names() {
  static const std::vector<std::string> names{"circle", "square",  "triangle",
                                              "star",   "hexagon", "cross"};
  return names;
}

const std::vector<std::string>& synthetic_vrd_attribute_names() {
  static const std::vector<std::string> names{"striped", "dotted", "checkered"};
  return names;
}

const std::vector<std::string>& synthetic_vrd_predicate_names() {
  static const std::vector<std::string> names{
      "on",           "under",       "inside_of",       "next_to",
      "connected_to", "pointing_at", "same_texture_as", "is"};
  return names;
}

bool synthetic_vrd_predicate_is_geometric(const std::string& predicate) {
  return predicate == "on" || predicate == "under" || predicate == "inside_of" ||
         predicate == "next_to";
}

SyntheticVrdImage render_synthetic_vrd_image(uint64_t seed, SyntheticVrdSplit split, int64_t index,
                                             int size) {
  SETDET_CHECK(size >= 128, "synthetic VRD image size must be >= 128, got ", size);
  SETDET_CHECK(index >= 0, "synthetic VRD image index must be >= 0, got ", index);
  Rng rng({kStreamTag, seed, static_cast<uint64_t>(split), static_cast<uint64_t>(index)});
  const double k = size / 256.0;  // object sizes scale with the image
  const double u = size / 128.0;  // the predicates' unit
  SyntheticVrdImage out;
  cv::Mat image = render_background(rng, size, 0);

  // groups of objects, never touching each other
  std::vector<Placed> objects;
  std::vector<cv::Rect> group_boxes;
  const int margin = static_cast<int>(std::ceil(5 * u));
  const int64_t num_groups = rng.randint(2, 4);
  for (int64_t attempt = 0;
       attempt < 3 * num_groups && static_cast<int64_t>(group_boxes.size()) < num_groups;
       ++attempt) {
    const double pick = rng.uniform();
    const GroupKind kind = pick < 0.2    ? kSingle
                           : pick < 0.4  ? kOnPair
                           : pick < 0.55 ? kUnderPair
                           : pick < 0.75 ? kInsidePair
                                         : kSidePair;
    std::vector<Placed> group = make_group(rng, kind, k, u);
    if (group.empty()) continue;
    cv::Rect extent = group[0].box();
    for (const auto& p : group) extent |= p.box();
    if (extent.width > size - 2 * margin || extent.height > size - 2 * margin) continue;
    for (int tries = 0; tries < 40; ++tries) {
      const cv::Point at(static_cast<int>(rng.randint(margin, size - margin - extent.width)),
                         static_cast<int>(rng.randint(margin, size - margin - extent.height)));
      const cv::Rect placed(at, extent.size());
      bool free = true;
      for (const auto& other : group_boxes)
        free = free && (dilate(other, margin) & placed).area() == 0;
      if (!free) continue;
      for (auto& p : group) {
        p.origin += at;
        objects.push_back(std::move(p));
      }
      group_boxes.push_back(placed);
      break;
    }
  }
  Scene scene(std::move(objects), size, k, u);
  const auto& boxes = scene.boxes();
  const int n = static_cast<int>(boxes.size());

  // looks: distinct colours that stand out from the background beneath
  std::vector<Look> looks(static_cast<size_t>(n));
  std::vector<cv::Vec3b> beneath(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const cv::Scalar bg = cv::mean(image(boxes[i]));
    beneath[i] = {static_cast<uchar>(bg[0]), static_cast<uchar>(bg[1]), static_cast<uchar>(bg[2])};
  }
  for (int i = 0; i < n; ++i) {
    const cv::Vec3b& ground = beneath[i];
    Look look = random_look(rng, boxes[i], k);
    for (int tries = 0; tries < 64; ++tries) {
      look.a = random_colour(rng);
      look.b = look.a;
      if (look.attribute != kPlain) {
        do {
          look.b = random_colour(rng);
        } while (colour_distance(look.a, look.b) < 180);
      }
      bool ok = colour_distance(look.a, ground) >= 120;
      for (int j = 0; j < i && ok; ++j) ok = min_colour_distance(look, looks[j]) >= 90;
      if (ok) break;
    }
    looks[i] = look;
  }
  // same_texture_as: one pair (boxes apart) shares a look
  int same_a = -1, same_b = -1;
  if (n >= 2 && rng.bernoulli(0.6)) {
    std::vector<std::pair<int, int>> pairs;
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        if (i != j && (boxes[i] & boxes[j]).area() == 0 &&
            colour_distance(looks[i].a, beneath[j]) >= 90) {
          pairs.emplace_back(i, j);
        }
      }
    }
    if (!pairs.empty()) {
      std::tie(same_a, same_b) = pairs[rng.randint(0, static_cast<int64_t>(pairs.size()) - 1)];
      looks[same_b] = looks[same_a];
    }
  }

  // marks
  if (n >= 2 && rng.bernoulli(0.5)) scene.add_line(rng);
  if (rng.bernoulli(0.4)) scene.add_dangling_line(rng);
  if (n >= 2 && rng.bernoulli(0.6)) scene.add_pointing_arrow(rng);
  if (rng.bernoulli(0.5)) scene.add_stray_arrow(rng);
  cv::Vec3b ink_colour = random_colour(rng);
  const cv::Scalar bg_mean = cv::mean(image);
  for (int tries = 0; tries < 32; ++tries) {
    const cv::Vec3b m(static_cast<uchar>(bg_mean[0]), static_cast<uchar>(bg_mean[1]),
                      static_cast<uchar>(bg_mean[2]));
    if (colour_distance(ink_colour, m) >= 200) break;
    ink_colour = random_colour(rng);
  }
  const int thickness = std::max(2, static_cast<int>(std::lround(2 * k)));

  // paint: objects, then the marks on top
  out.owner = cv::Mat(size, size, CV_16SC1, cv::Scalar(-1));
  out.ink = cv::Mat(size, size, CV_16SC1, cv::Scalar(-1));
  const auto& marks = scene.marks();
  for (int i = 0; i < n; ++i) {
    const Placed& p = scene.objects()[i];
    const Texture texture(looks[i].style, p.shape.box.width, p.shape.box.height);
    paint_shape(image, out.owner, p.shape, p.origin, texture, looks[i].a, looks[i].b,
                static_cast<int16_t>(i));
  }
  for (size_t m = 0; m < marks.size(); ++m) {
    paint_mark(image, out.ink, marks[m], static_cast<int16_t>(m), ink_colour, thickness);
  }
  out.owner.setTo(cv::Scalar(-1), out.ink >= 0);

  for (int i = 0; i < n; ++i) {
    SyntheticVrdObject obj;
    obj.class_index = scene.objects()[i].cls;
    obj.attribute = looks[i].attribute;
    obj.box = boxes[i];
    obj.full_pixels = scene.objects()[i].shape.pixels;
    obj.visible_pixels = cv::countNonZero(out.owner == i);
    obj.colour_a = looks[i].a;
    obj.colour_b = looks[i].b;
    out.objects.push_back(obj);
  }
  for (const auto& m : marks) out.marks.push_back(m.mark);

  // ground truth
  std::vector<SyntheticVrdRelation> rel;
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (i == j) continue;
      if (on(boxes[i], boxes[j], u)) add_relation(rel, i, j, kOn);
      if (under(boxes[i], boxes[j], u)) add_relation(rel, i, j, kUnder);
      if (inside_of(boxes[i], boxes[j], u)) add_relation(rel, i, j, kInsideOf);
      if (next_to(boxes[i], boxes[j], u)) add_relation(rel, i, j, kNextTo);
    }
    if (looks[i].attribute != kPlain) add_relation(rel, i, i, kIs, looks[i].attribute);
  }
  for (const auto& m : marks) {
    if (m.target < 0) continue;
    if (m.mark.arrow) {
      add_relation(rel, m.mark.object, m.target, kPointingAt);
    } else {
      const auto [s, o] = canonical(boxes, m.mark.object, m.target);
      add_relation(rel, s, o, kConnectedTo);
    }
  }
  if (same_a >= 0) {
    const auto [s, o] = canonical(boxes, same_a, same_b);
    add_relation(rel, s, o, kSameTextureAs);
  }
  std::sort(rel.begin(), rel.end(), [](const auto& a, const auto& b) {
    return std::tie(a.subject, a.predicate, a.object) < std::tie(b.subject, b.predicate, b.object);
  });
  out.relations = std::move(rel);

  out.clean = image.clone();
  add_noise_and_light(image, rng);
  out.image = image;
  return out;
}

SyntheticVrdSummary generate_synthetic_vrd_dataset(const SyntheticVrdOptions& options) {
  SETDET_CHECK(!options.out_dir.empty(), "synthetic VRD dataset: --out must name a directory");
  SETDET_CHECK(options.num_train >= 0 && options.num_val >= 0 && options.num_test >= 0,
               "synthetic VRD dataset: image counts must be >= 0, got num_train=",
               options.num_train, " num_val=", options.num_val, " num_test=", options.num_test);
  SETDET_CHECK(options.num_train + options.num_val + options.num_test > 0,
               "synthetic VRD dataset: nothing to generate (all image counts are 0)");
  SETDET_CHECK(options.size >= 128, "synthetic VRD dataset: size must be >= 128, got ",
               options.size);
  check_synthetic_image_options("synthetic VRD dataset", options.size, options.format,
                                options.jpeg_quality);
  const auto start = std::chrono::steady_clock::now();
  const std::filesystem::path root(options.out_dir);
  create_directories(root, {"train", "val", "test", "annotations"});
  const auto& classes = synthetic_vrd_class_names();
  const auto& attributes = synthetic_vrd_attribute_names();
  const auto& predicates = synthetic_vrd_predicate_names();

  std::string descriptions = "LabelName,DisplayName\n";
  for (const auto* names : {&classes, &attributes}) {
    for (const auto& name : *names) {
      std::string display = name;
      display[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(display[0])));
      descriptions += name + "," + display + "\n";
    }
  }
  write_file_atomic((root / "annotations" / "class_descriptions.csv").string(), descriptions);

  ScopedOpenCvSerial serial;
  SyntheticVrdSummary summary;
  summary.per_predicate.assign(predicates.size(), 0);
  const struct {
    const char* name;
    SyntheticVrdSplit split;
    int64_t count;
  } splits[] = {{"train", SyntheticVrdSplit::kTrain, options.num_train},
                {"val", SyntheticVrdSplit::kVal, options.num_val},
                {"test", SyntheticVrdSplit::kTest, options.num_test}};
  for (const auto& sp : splits) {
    const auto count = static_cast<size_t>(sp.count);
    std::vector<std::vector<SyntheticObject>> objects(count);
    std::vector<std::string> files(count), vrd_rows(count), label_rows(count);
    std::vector<std::vector<int64_t>> per_predicate(count);
    parallel_for(0, sp.count, 4, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) {
        char id[48];
        std::snprintf(id, sizeof(id), "%s_%06lld", sp.name, static_cast<long long>(i));
        const SyntheticVrdImage img =
            render_synthetic_vrd_image(options.seed, sp.split, i, options.size);
        files[i] = std::string(id) + "." + options.format;
        write_image((root / sp.name / files[i]).string(), img.image, options.jpeg_quality);
        const auto coord = [&](int v) {
          return json_number(v / static_cast<double>(options.size));
        };
        const auto box_text = [&](const cv::Rect& r) {  // XMin, XMax, YMin, YMax
          return coord(r.x) + "," + coord(r.br().x) + "," + coord(r.y) + "," + coord(r.br().y);
        };
        std::vector<bool> present(classes.size() + attributes.size(), false);
        for (const auto& o : img.objects) {
          objects[i].push_back(
              {o.class_index + 1,
               {static_cast<double>(o.box.x), static_cast<double>(o.box.y),
                static_cast<double>(o.box.width), static_cast<double>(o.box.height)},
               o.full_pixels,
               o.visible_pixels});
          present[o.class_index] = true;
          if (o.attribute >= 0) present[classes.size() + o.attribute] = true;
        }
        per_predicate[i].assign(predicates.size(), 0);
        for (const auto& r : img.relations) {
          const auto& s = img.objects[r.subject];
          const auto& o = img.objects[r.object];
          const std::string& label2 =
              r.predicate == kIs ? attributes[r.attribute] : classes[o.class_index];
          vrd_rows[i] += std::string(id) + "," + classes[s.class_index] + "," + label2 + "," +
                         box_text(s.box) + "," + box_text(o.box) + "," + predicates[r.predicate] +
                         "\n";
          ++per_predicate[i][r.predicate];
        }
        for (size_t c = 0; c < present.size(); ++c) {
          const std::string& name =
              c < classes.size() ? classes[c] : attributes[c - classes.size()];
          label_rows[i] += std::string(id) + "," + name + "," + (present[c] ? "1" : "0") + "\n";
        }
      }
    });
    const CocoDataset ds = synthetic_coco_split(classes, files, objects, options.size);
    write_coco_instances(
        (root / "annotations" / (std::string("instances_") + sp.name + ".json")).string(), ds);
    std::string vrd =
        "ImageID,LabelName1,LabelName2,XMin1,XMax1,YMin1,YMax1,XMin2,XMax2,YMin2,YMax2,"
        "RelationshipLabel\n";
    std::string labels = "ImageID,LabelName,Confidence\n";
    for (size_t i = 0; i < count; ++i) {
      vrd += vrd_rows[i];
      labels += label_rows[i];
      for (size_t p = 0; p < predicates.size(); ++p) {
        summary.per_predicate[p] += per_predicate[i][p];
        summary.relations += per_predicate[i][p];
      }
    }
    write_file_atomic((root / "annotations" / (std::string("vrd_") + sp.name + ".csv")).string(),
                      vrd);
    write_file_atomic((root / "annotations" / (std::string("labels_") + sp.name + ".csv")).string(),
                      labels);
    summary.images += sp.count;
    summary.objects += static_cast<int64_t>(ds.annotations.size());
  }
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

}  // namespace setdet
