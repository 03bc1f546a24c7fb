// The synthetic relationship dataset: every ground-truth relationship checked against what the
// boxes or the rendered pixels show, with the predicate definitions written out again here.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <opencv2/imgproc.hpp>
#include <set>
#include <tuple>

#include "setdet/core/eval/vrd_eval.h"
#include "setdet/core/io/coco.h"
#include "setdet/core/io/csv.h"
#include "setdet/data/synthetic_vrd.h"
#include "testing.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;
using Triple = std::tuple<int, std::string, int>;  // subject, predicate, object

std::set<Triple> relations_of(const SyntheticVrdImage& img, const std::set<std::string>& which) {
  std::set<Triple> out;
  for (const auto& r : img.relations) {
    const std::string& p = synthetic_vrd_predicate_names()[r.predicate];
    if (which.count(p)) out.insert({r.subject, p, r.object});
  }
  return out;
}

double cx(const cv::Rect& r) { return r.x + r.width / 2.0; }
double cy(const cv::Rect& r) { return r.y + r.height / 2.0; }

// The header's definitions, u = size / 128.
std::set<Triple> geometric_truth(const SyntheticVrdImage& img, double u) {
  std::set<Triple> out;
  const auto n = static_cast<int>(img.objects.size());
  for (int i = 0; i < n; ++i) {
    for (int j = 0; j < n; ++j) {
      if (i == j) continue;
      const cv::Rect a = img.objects[i].box, b = img.objects[j].box;
      const bool x_within = b.x <= cx(a) && cx(a) <= b.x + b.width;
      if (a.x >= b.x + u && a.y >= b.y + u && a.x + a.width <= b.x + b.width - u &&
          a.y + a.height <= b.y + b.height - u) {
        out.insert({i, "inside_of", j});
      }
      if (x_within && a.width < b.width && a.y + a.height >= b.y - u &&
          a.y + a.height <= b.y + b.height / 4.0 && a.y < b.y) {
        out.insert({i, "on", j});
      }
      const double below = a.y - (b.y + b.height);
      if (x_within && below >= 2 * u && below <= 0.6 * b.height) out.insert({i, "under", j});
      const double gap = b.x - (a.x + a.width);
      if (gap >= u && gap <= std::min(a.width, b.width) / 2.0 &&
          std::abs(cy(a) - cy(b)) <= std::max(a.height, b.height) / 5.0) {
        out.insert({i, "next_to", j});
      }
    }
  }
  return out;
}

std::pair<int, int> left_first(const SyntheticVrdImage& img, int i, int j) {
  const auto key = [&](int k) {
    return std::make_tuple(cx(img.objects[k].box), cy(img.objects[k].box), k);
  };
  return key(i) < key(j) ? std::make_pair(i, j) : std::make_pair(j, i);
}

// A connected set of visible mark pixels and the objects it touches (8-neighbourhood).
struct InkPart {
  std::vector<cv::Point> pixels;
  std::set<int> touches;
};

std::vector<InkPart> ink_parts(const SyntheticVrdImage& img) {
  cv::Mat labels;
  const int count = cv::connectedComponents(img.ink >= 0, labels, 8, CV_32S);
  std::vector<InkPart> parts(static_cast<size_t>(count));
  for (int y = 0; y < labels.rows; ++y) {
    for (int x = 0; x < labels.cols; ++x) {
      const int l = labels.at<int>(y, x);
      if (l == 0) continue;
      parts[l].pixels.emplace_back(x, y);
      for (int dy = -1; dy <= 1; ++dy) {
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if (yy < 0 || xx < 0 || yy >= labels.rows || xx >= labels.cols) continue;
          const int16_t o = img.owner.at<int16_t>(yy, xx);
          if (o >= 0) parts[l].touches.insert(o);
        }
      }
    }
  }
  parts.erase(parts.begin());  // background
  return parts;
}

// The first box hit by the ray from p along d (slab test), -1 if none.
int first_box_hit(const SyntheticVrdImage& img, cv::Point2d p, cv::Point2d d) {
  int best = -1;
  double best_t = 1e18;
  for (size_t i = 0; i < img.objects.size(); ++i) {
    const cv::Rect& r = img.objects[i].box;
    double t0 = 0, t1 = 1e18;
    const double lo[2] = {double(r.x), double(r.y)}, hi[2] = {double(r.br().x), double(r.br().y)};
    const double o[2] = {p.x, p.y}, v[2] = {d.x, d.y};
    bool miss = false;
    for (int k = 0; k < 2; ++k) {
      if (std::abs(v[k]) < 1e-12) {
        miss = miss || o[k] < lo[k] || o[k] > hi[k];
        continue;
      }
      double a = (lo[k] - o[k]) / v[k], b = (hi[k] - o[k]) / v[k];
      if (a > b) std::swap(a, b);
      t0 = std::max(t0, a);
      t1 = std::min(t1, b);
    }
    if (!miss && t0 <= t1 && t0 < best_t) {
      best_t = t0;
      best = static_cast<int>(i);
    }
  }
  return best;
}

// Distinct colours of object i's visible pixels in the noise-free render.
std::set<std::array<uchar, 3>> colours_of(const SyntheticVrdImage& img, int i) {
  std::set<std::array<uchar, 3>> out;
  for (int y = 0; y < img.owner.rows; ++y) {
    for (int x = 0; x < img.owner.cols; ++x) {
      if (img.owner.at<int16_t>(y, x) != i) continue;
      const auto& c = img.clean.at<cv::Vec3b>(y, x);
      out.insert({c[0], c[1], c[2]});
    }
  }
  return out;
}

// The texture seen in object i's visible pixels: "plain" (one colour), "dotted" (the minority
// colour under 35%), "striped" (the colour is a function of the position along one direction),
// "checkered" (otherwise).
std::string texture_of(const SyntheticVrdImage& img, int i) {
  const auto colours = colours_of(img, i);
  if (colours.size() == 1) return "plain";
  if (colours.size() != 2) return "unexpected colours";
  const cv::Vec3b first(colours.begin()->data());
  const cv::Mat mine = img.owner == i;
  int64_t total = 0, of_first = 0;
  for (int y = 0; y < mine.rows; ++y) {
    for (int x = 0; x < mine.cols; ++x) {
      if (!mine.at<uchar>(y, x)) continue;
      ++total;
      of_first += img.clean.at<cv::Vec3b>(y, x) == first;
    }
  }
  if (std::min(of_first, total - of_first) < 0.35 * total) return "dotted";
  // Stripes are a function of x cos(t) + y sin(t) for one angle t: binned by that projection
  // (0.25 px bins), the colours separate; a checkerboard's do not at any angle.
  std::vector<std::pair<cv::Point, bool>> px;
  for (int y = 0; y < mine.rows; ++y) {
    for (int x = 0; x < mine.cols; ++x) {
      if (mine.at<uchar>(y, x)) px.push_back({{x, y}, img.clean.at<cv::Vec3b>(y, x) == first});
    }
  }
  double least_mixed = 1.0;
  for (int step = 0; step < 720; ++step) {
    const double t = step * CV_PI / 720, c = std::cos(t), s = std::sin(t);
    std::vector<std::array<int64_t, 2>> bins(static_cast<size_t>(4 * 2 * 1.5 * img.clean.cols));
    for (const auto& [p, is_first] : px) {
      const double v = (p.x * c + p.y * s + 1.5 * img.clean.cols) * 4;
      ++bins[static_cast<size_t>(v)][is_first];
    }
    int64_t mixed = 0;
    for (const auto& counts : bins) mixed += std::min(counts[0], counts[1]);
    least_mixed = std::min(least_mixed, mixed / static_cast<double>(px.size()));
  }
  return least_mixed < 0.05 ? "striped" : "checkered";
}

constexpr int kImages = 160;
constexpr int kSize = 256;

TEST(SyntheticVrd, RenderIsAPureFunctionOfSeedSplitAndIndex) {
  const SyntheticVrdImage a = render_synthetic_vrd_image(5, SyntheticVrdSplit::kTrain, 7, kSize);
  const SyntheticVrdImage b = render_synthetic_vrd_image(5, SyntheticVrdSplit::kTrain, 7, kSize);
  const SyntheticVrdImage c = render_synthetic_vrd_image(5, SyntheticVrdSplit::kVal, 7, kSize);
  const SyntheticVrdImage d = render_synthetic_vrd_image(6, SyntheticVrdSplit::kTrain, 7, kSize);
  EXPECT_EQ(cv::norm(a.image, b.image, cv::NORM_INF), 0.0);
  EXPECT_EQ(relations_of(a, {"on", "is", "pointing_at"}),
            relations_of(b, {"on", "is", "pointing_at"}));
  EXPECT_GT(cv::norm(a.image, c.image, cv::NORM_L1), 0.0);
  EXPECT_GT(cv::norm(a.image, d.image, cv::NORM_L1), 0.0);
}

TEST(SyntheticVrd, GeometricPredicatesAreExactlyWhatTheBoxesSay) {
  std::map<std::string, int> counts;
  for (int index = 0; index < kImages; ++index) {
    const SyntheticVrdImage img =
        render_synthetic_vrd_image(1, SyntheticVrdSplit::kTrain, index, kSize);
    ASSERT_GE(img.objects.size(), 2u) << index;
    ASSERT_LE(img.objects.size(), 8u) << index;
    const auto truth = geometric_truth(img, kSize / 128.0);
    EXPECT_EQ(relations_of(img, {"on", "under", "inside_of", "next_to"}), truth) << index;
    for (const auto& [s, p, o] : truth) ++counts[p];
    for (const auto& obj : img.objects) {
      EXPECT_GE(obj.box.x, 0);
      EXPECT_GE(obj.box.y, 0);
      EXPECT_LE(obj.box.br().x, kSize);
      EXPECT_LE(obj.box.br().y, kSize);
      EXPECT_GT(obj.visible_pixels, 0.5 * obj.full_pixels);
    }
  }
  for (const char* p : {"on", "under", "inside_of", "next_to"}) {
    EXPECT_GT(counts[p], kImages / 4) << p;  // each one common
  }
}

// connected_to: a mark touching exactly the two objects; pointing_at: a mark touching one object
// whose direction (principal axis of its pixels, from the end at the object to the far end) hits
// the other's box first. Dangling lines and stray arrows hit no box.
TEST(SyntheticVrd, MarksShowConnectedToAndPointingAtInThePixels) {
  int lines = 0, arrows = 0, stray = 0;
  for (int index = 0; index < kImages; ++index) {
    const SyntheticVrdImage img =
        render_synthetic_vrd_image(2, SyntheticVrdSplit::kTrain, index, kSize);
    std::set<Triple> seen;
    for (const InkPart& part : ink_parts(img)) {
      ASSERT_GE(part.touches.size(), 1u) << index;
      ASSERT_LE(part.touches.size(), 2u) << index;
      if (part.touches.size() == 2) {
        const auto [s, o] = left_first(img, *part.touches.begin(), *part.touches.rbegin());
        seen.insert({s, "connected_to", o});
        ++lines;
        continue;
      }
      const int from = *part.touches.begin();
      const cv::Point2d c(cx(img.objects[from].box), cy(img.objects[from].box));
      cv::Vec4f axis;
      cv::fitLine(part.pixels, axis, cv::DIST_L2, 0, 0.01, 0.01);
      cv::Point2d d(axis[0], axis[1]);
      const auto far =
          *std::max_element(part.pixels.begin(), part.pixels.end(), [&](cv::Point a, cv::Point b) {
            return cv::norm(cv::Point2d(a) - c) < cv::norm(cv::Point2d(b) - c);
          });
      const auto near =
          *std::min_element(part.pixels.begin(), part.pixels.end(), [&](cv::Point a, cv::Point b) {
            return cv::norm(cv::Point2d(a) - c) < cv::norm(cv::Point2d(b) - c);
          });
      if (d.dot(cv::Point2d(far - near)) < 0) d = -d;
      const int hit = first_box_hit(img, cv::Point2d(far) + 2.0 * d, d);
      if (hit >= 0) {
        seen.insert({from, "pointing_at", hit});
        ++arrows;
      } else {
        ++stray;
      }
    }
    EXPECT_EQ(relations_of(img, {"connected_to", "pointing_at"}), seen) << index;
  }
  EXPECT_GT(lines, kImages / 5);
  EXPECT_GT(arrows, kImages / 5);
  EXPECT_GT(stray, kImages / 5);  // dangling lines and arrows that point at nothing
}

// same_texture_as: the two objects show the same colours; no other pair of objects shares one.
// is: the texture read from the pixels.
TEST(SyntheticVrd, TexturesShowSameTextureAsAndAttributesInThePixels) {
  std::map<std::string, int> attributes;
  int same = 0;
  for (int index = 0; index < kImages; ++index) {
    const SyntheticVrdImage img =
        render_synthetic_vrd_image(3, SyntheticVrdSplit::kTest, index, kSize);
    const auto n = static_cast<int>(img.objects.size());
    std::vector<std::set<std::array<uchar, 3>>> colours;
    for (int i = 0; i < n; ++i) colours.push_back(colours_of(img, i));
    std::set<Triple> seen;
    for (int i = 0; i < n; ++i) {
      for (int j = i + 1; j < n; ++j) {
        std::vector<std::array<uchar, 3>> shared;
        std::set_intersection(colours[i].begin(), colours[i].end(), colours[j].begin(),
                              colours[j].end(), std::back_inserter(shared));
        if (shared.empty()) continue;
        EXPECT_EQ(colours[i], colours[j]) << index << ": objects " << i << ", " << j;
        const auto [s, o] = left_first(img, i, j);
        seen.insert({s, "same_texture_as", o});
        ++same;
      }
    }
    EXPECT_EQ(relations_of(img, {"same_texture_as"}), seen) << index;

    std::set<Triple> is_rows;
    for (const auto& r : img.relations) {
      if (synthetic_vrd_predicate_names()[r.predicate] != "is") continue;
      EXPECT_EQ(r.subject, r.object);
      is_rows.insert({r.subject, synthetic_vrd_attribute_names()[r.attribute], r.object});
    }
    for (int i = 0; i < n; ++i) {
      const std::string texture = texture_of(img, i);
      ++attributes[texture];
      EXPECT_EQ(is_rows.count({i, texture, i}), texture == "plain" ? 0u : 1u)
          << index << ": object " << i << " looks " << texture;
    }
    EXPECT_EQ(
        is_rows.size(),
        static_cast<size_t>(n - std::count_if(img.objects.begin(), img.objects.end(),
                                              [](const auto& o) { return o.attribute < 0; })));
  }
  EXPECT_GT(same, kImages / 3);
  for (const char* t : {"plain", "striped", "dotted", "checkered"}) {
    EXPECT_GT(attributes[t], kImages / 2) << t;
  }
}

// For the pixel predicates the boxes say nothing: pairs with the same geometry (centre distance
// and size ratio, binned) occur both with and without the predicate.
TEST(SyntheticVrd, PixelPredicatesHaveDistractorPairsOfTheSameGeometry) {
  std::map<std::string, std::map<std::pair<int, int>, std::array<int, 2>>> bins;
  for (int index = 0; index < kImages; ++index) {
    const SyntheticVrdImage img =
        render_synthetic_vrd_image(4, SyntheticVrdSplit::kTrain, index, kSize);
    const auto truth = relations_of(img, {"pointing_at", "connected_to", "same_texture_as"});
    const auto n = static_cast<int>(img.objects.size());
    for (int i = 0; i < n; ++i) {
      for (int j = 0; j < n; ++j) {
        const cv::Rect a = img.objects[i].box, b = img.objects[j].box;
        if (i == j || (a & b).area() > 0) continue;
        const std::pair<int, int> bin{
            static_cast<int>(std::hypot(cx(a) - cx(b), cy(a) - cy(b)) / kSize * 8),
            static_cast<int>(std::log2(double(a.area()) / b.area()) + 8)};
        for (const char* p : {"pointing_at", "connected_to", "same_texture_as"}) {
          ++bins[p][bin][truth.count({i, p, j}) ? 1 : 0];
        }
      }
    }
  }
  for (const auto& [p, by_bin] : bins) {
    int positives = 0, covered = 0;
    for (const auto& [bin, counts] : by_bin) {
      positives += counts[1];
      if (counts[0] >= 2 * counts[1]) covered += counts[1];
    }
    EXPECT_GT(positives, 20) << p;
    EXPECT_GE(covered, 0.9 * positives) << p;  // nearly every positive has >= 2 negatives alike
  }
}

using test_util::read_bytes;
using test_util::TempDir;

TEST(SyntheticVrd, DatasetFilesAreDeterministicReadableAndScoreOneAgainstThemselves) {
  TempDir a("synth_vrd_a"), b("synth_vrd_b");
  SyntheticVrdOptions o;
  o.num_train = 5;
  o.num_val = 3;
  o.num_test = 4;
  o.seed = 9;
  o.size = 128;
  o.format = "png";
  o.out_dir = a.path.string();
  const SyntheticVrdSummary summary = generate_synthetic_vrd_dataset(o);
  o.out_dir = b.path.string();
  generate_synthetic_vrd_dataset(o);
  EXPECT_EQ(summary.images, 12);
  int files = 0;
  for (const auto& entry : fs::recursive_directory_iterator(a.path)) {
    if (!entry.is_regular_file()) continue;
    ++files;
    const fs::path other = b.path / fs::relative(entry.path(), a.path);
    EXPECT_EQ(read_bytes(entry.path()), read_bytes(other)) << entry.path();
  }
  EXPECT_EQ(files, 12 + 3 * 3 + 1);  // images, (COCO, VRD, labels) per split, descriptions

  const fs::path ann = a.path / "annotations";
  CsvReader descriptions = CsvReader::open((ann / "class_descriptions.csv").string());
  CsvRecord row;
  int described = 0;
  while (descriptions.next(row)) ++described;
  EXPECT_EQ(described, 9);

  for (const char* split : {"train", "val", "test"}) {
    SCOPED_TRACE(split);
    const std::string vrd = (ann / (std::string("vrd_") + split + ".csv")).string();
    const std::string labels = (ann / (std::string("labels_") + split + ".csv")).string();
    // the ground truth as detections with score 1
    std::ifstream in(vrd);
    std::string line, dt;
    std::getline(in, line);
    dt = line + ",Score\n";
    int rows = 0;
    while (std::getline(in, line)) {
      dt += line + ",1\n";
      ++rows;
    }
    EXPECT_GT(rows, 0);
    VrdData data;
    read_vrd_ground_truth(vrd, data);
    read_vrd_image_labels(labels, data);
    CsvReader dt_csv = CsvReader::from_string(dt, "dt.csv");
    read_vrd_detections(dt_csv, data);
    const VrdEvalResult r = evaluate_vrd(data);
    EXPECT_EQ(r.num_kept_detections, rows);
    EXPECT_DOUBLE_EQ(r.relationship.mean_ap, 1.0);
    EXPECT_DOUBLE_EQ(r.phrase.mean_ap, 1.0);
    EXPECT_DOUBLE_EQ(r.challenge_score(), 1.0);
    EXPECT_EQ(data.image_labels.size(), 9 * data.images.size());  // every class and attribute

    const CocoDataset coco =
        load_coco_instances((ann / (std::string("instances_") + split + ".json")).string());
    EXPECT_EQ(coco.categories.size(), synthetic_vrd_class_names().size());
    for (const auto& im : coco.images) {
      EXPECT_TRUE(fs::exists(a.path / split / im.file_name)) << im.file_name;
    }
  }
}

}  // namespace
}  // namespace setdet
