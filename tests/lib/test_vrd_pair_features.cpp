// The VRD pipeline's data side: reading a split (COCO objects + VRD relationships), candidate
// pairs, matching detections to ground truth and pair labels, the class-pair statistics and the
// spatio-semantic features of hand-made pairs.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <map>

#include "setdet/vrd/pair_features.h"
#include "setdet/vrd/vrd_split.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

VrdObject obj(int32_t label, float x0, float y0, float x1, float y1, float score = 1.0f) {
  return {label, {x0, y0, x1, y1}, score};
}

// Two classes (a, b), predicates (on, under).
//   image 0: a0 on b1
//   image 1: a0, b1, b2 with b1 under a0
VrdSplit hand_made_split() {
  VrdSplit s;
  s.classes = {"a", "b"};
  s.predicates = {"on", "under"};
  VrdImageRecord i0;
  i0.id = "i0";
  i0.objects = {obj(0, 0.4f, 0.1f, 0.6f, 0.3f), obj(1, 0.2f, 0.3f, 0.8f, 0.9f)};
  i0.relations = {{0, 1, 0}};
  VrdImageRecord i1;
  i1.id = "i1";
  i1.objects = {obj(0, 0.1f, 0.1f, 0.3f, 0.3f), obj(1, 0.1f, 0.5f, 0.3f, 0.7f),
                obj(1, 0.6f, 0.6f, 0.9f, 0.9f)};
  i1.relations = {{1, 0, 1}};
  s.images = {i0, i1};
  return s;
}

std::map<std::string, float> named(const std::vector<VrdObject>& objects, int32_t s, int32_t o,
                                   const PairStatistics& st,
                                   const std::vector<std::string>& preds) {
  const auto names = pair_feature_names(preds);
  std::vector<float> f(names.size());
  pair_features(objects, s, o, st, f.data());
  std::map<std::string, float> out;
  for (size_t i = 0; i < names.size(); ++i) out[names[i]] = f[i];
  EXPECT_EQ(out.size(), names.size()) << "feature names must be unique";
  return out;
}

TEST(VrdPairFeatures, StatisticsCountTrainingPairs) {
  const PairStatistics st = PairStatistics::from_split(hand_made_split());
  ASSERT_EQ(st.num_classes, 2);
  ASSERT_EQ(st.num_predicates, 2);
  // 8 ordered pairs in all (2 + 6); 'on' and 'under' once each: prior 1/8.
  // (a, b): 1 pair in image 0 + 2 in image 1 = 3, one 'on': (1 + 1/8) / (3 + 1)
  const auto pair_rate = [&](int a, int b, int p) {
    return st.predicate_given_pair[(a * 2 + b) * 2 + p];
  };
  EXPECT_FLOAT_EQ(pair_rate(0, 1, 0), 1.125f / 4);
  EXPECT_FLOAT_EQ(pair_rate(0, 1, 1), 0.125f / 4);
  EXPECT_FLOAT_EQ(pair_rate(1, 0, 1), 1.125f / 4);  // (b, a): 3 pairs, one 'under'
  EXPECT_FLOAT_EQ(pair_rate(1, 1, 0), 0.125f / 3);  // (b, b): 2 pairs in image 1
  EXPECT_FLOAT_EQ(pair_rate(0, 0, 0), 0.125f / 1);  // never seen: the prior
  // subject a: 3 pairs (all with b), one 'on'; object a: 3 pairs, one 'under'
  EXPECT_FLOAT_EQ(st.predicate_given_subject[0 * 2 + 0], 1.125f / 4);
  EXPECT_FLOAT_EQ(st.predicate_given_object[0 * 2 + 1], 1.125f / 4);
  // subject b: (b, a) 3 + (b, b) 2 = 5 pairs, one 'under'
  EXPECT_FLOAT_EQ(st.predicate_given_subject[1 * 2 + 1], 1.125f / 6);
  // both images with a also hold b; one of the two images with b holds a second b
  EXPECT_FLOAT_EQ(st.cooccurrence[0 * 2 + 1], 1.0f);
  EXPECT_FLOAT_EQ(st.cooccurrence[1 * 2 + 1], 0.5f);
  EXPECT_FLOAT_EQ(st.cooccurrence[0 * 2 + 0], 0.0f);

  const PairStatistics back = PairStatistics::from_json(st.to_json(), "stats.json");
  EXPECT_EQ(back.predicate_given_pair, st.predicate_given_pair);
  EXPECT_EQ(back.predicate_given_subject, st.predicate_given_subject);
  EXPECT_EQ(back.predicate_given_object, st.predicate_given_object);
  EXPECT_EQ(back.cooccurrence, st.cooccurrence);
  EXPECT_NE(error_of([] {
              PairStatistics::from_json(
                  "{num_classes: 2, num_predicates: 1, predicate_given_pair: [1], "
                  "predicate_given_subject: [1, 1], predicate_given_object: [1, 1], "
                  "cooccurrence: [1, 1, 1, 1]}",
                  "stats.json");
            }).find("stats.json: predicate_given_pair: expected 4 numbers, got 1"),
            std::string::npos);
}

TEST(VrdPairFeatures, HandMadePairs) {
  const VrdSplit split = hand_made_split();
  const PairStatistics st = PairStatistics::from_split(split);
  // A above B, apart: A = [0.1, 0.1, 0.3, 0.2] (a), B = [0.1, 0.25, 0.5, 0.45] (b)
  const std::vector<VrdObject> apart{obj(0, 0.1f, 0.1f, 0.3f, 0.2f),
                                     obj(1, 0.1f, 0.25f, 0.5f, 0.45f)};
  auto f = named(apart, 0, 1, st, split.predicates);
  EXPECT_FLOAT_EQ(f["subject_cx"], 0.2f);
  EXPECT_FLOAT_EQ(f["object_w"], 0.4f);
  EXPECT_FLOAT_EQ(f["object_class"], 1.0f);
  EXPECT_NEAR(f["subject_log_aspect"], std::log(2.0f), 1e-4);
  EXPECT_NEAR(f["dx"], 0.1f, 1e-6);  // centres 0.2 -> 0.3
  EXPECT_NEAR(f["dy"], 0.2f, 1e-6);  // 0.15 -> 0.35
  EXPECT_NEAR(f["dx_by_subject_w"], 0.5f, 1e-4);
  EXPECT_NEAR(f["dy_by_object_h"], 1.0f, 1e-4);
  EXPECT_NEAR(f["log_w_ratio"], std::log(2.0f), 1e-4);
  EXPECT_NEAR(f["log_area_ratio"], std::log(0.08f / 0.02f), 1e-4);
  EXPECT_EQ(f["iou"], 0.0f);
  EXPECT_EQ(f["overlap_of_subject"], 0.0f);
  EXPECT_NEAR(f["distance"], std::hypot(0.1f, 0.2f), 1e-6);
  EXPECT_NEAR(f["angle"], std::atan2(0.2f, 0.1f), 1e-5);
  EXPECT_NEAR(f["gap_below"], 0.05f, 1e-6);   // B's top - A's bottom
  EXPECT_NEAR(f["gap_above"], -0.35f, 1e-6);  // A's top - B's bottom
  EXPECT_NEAR(f["gap_right"], -0.2f, 1e-6);
  EXPECT_NEAR(f["subject_bottom_to_object_top_by_object_h"], -0.25f, 1e-4);
  EXPECT_NEAR(f["subject_cx_in_object_by_object_w"], 0.25f, 1e-4);
  EXPECT_NEAR(f["union_w"], 0.4f, 1e-6);
  EXPECT_NEAR(f["union_h"], 0.35f, 1e-6);
  EXPECT_FLOAT_EQ(f["rate_pair_on"], 1.125f / 4);
  EXPECT_FLOAT_EQ(f["rate_subject_on"], 1.125f / 4);
  EXPECT_FLOAT_EQ(f["rate_object_under"], 0.125f / 6);  // object b: 5 pairs, no 'under'
  EXPECT_FLOAT_EQ(f["cooccurrence_subject_object"], 1.0f);
  EXPECT_FLOAT_EQ(f["num_objects"], 2.0f);
  // swapping subject and object flips the relative position
  auto g = named(apart, 1, 0, st, split.predicates);
  EXPECT_NEAR(g["dx"], -0.1f, 1e-6);
  EXPECT_FLOAT_EQ(g["subject_class"], 1.0f);
  EXPECT_FLOAT_EQ(g["rate_pair_under"], 1.125f / 4);

  // overlapping: A = [0, 0, 0.2, 0.2], B = [0.1, 0.1, 0.3, 0.3]: intersection 0.01, union 0.07
  const std::vector<VrdObject> overlap{obj(0, 0, 0, 0.2f, 0.2f), obj(0, 0.1f, 0.1f, 0.3f, 0.3f)};
  f = named(overlap, 0, 1, st, split.predicates);
  EXPECT_NEAR(f["iou"], 1.0f / 7, 1e-6);
  EXPECT_NEAR(f["overlap_of_subject"], 0.25f, 1e-5);
  EXPECT_NEAR(f["overlap_of_object"], 0.25f, 1e-5);
  // nested: A inside B
  const std::vector<VrdObject> nested{obj(1, 0.4f, 0.4f, 0.5f, 0.5f),
                                      obj(0, 0.2f, 0.2f, 0.8f, 0.8f)};
  f = named(nested, 0, 1, st, split.predicates);
  EXPECT_NEAR(f["overlap_of_subject"], 1.0f, 1e-5);
  EXPECT_NEAR(f["iou"], 0.01f / 0.36f, 1e-5);

  EXPECT_NE(error_of([&] {
              std::vector<float> out(200);
              pair_features({obj(5, 0, 0, 1, 1), obj(0, 0, 0, 1, 1)}, 0, 1, st, out.data());
            }).find("object classes 5, 0 outside 0..1"),
            std::string::npos);
}

TEST(VrdPairFeatures, CandidatesMatchingAndLabels) {
  const std::vector<VrdObject> dets{obj(0, 0, 0, 0.1f, 0.1f, 0.9f), obj(1, 0, 0, 0.1f, 0.1f, 0.2f),
                                    obj(1, 0, 0, 0.1f, 0.1f, 0.7f), obj(0, 0, 0, 0.1f, 0.1f, 0.8f)};
  // score >= 0.5: objects 0, 2, 3; at most 2: the two best (0 and 3)
  auto pairs = candidate_pairs(dets, 0.5f, 10);
  EXPECT_EQ(pairs.size(), 6u);
  pairs = candidate_pairs(dets, 0.5f, 2);
  ASSERT_EQ(pairs.size(), 2u);
  EXPECT_EQ(pairs[0], (std::array<int32_t, 2>{0, 3}));
  EXPECT_EQ(pairs[1], (std::array<int32_t, 2>{3, 0}));

  const VrdSplit split = hand_made_split();
  const VrdImageRecord& im = split.images[1];  // b1 under a0
  // detections: a shifted a0 (IoU 0.6), b1 exactly, a wrongly classified copy of b2
  const std::vector<VrdObject> found{obj(0, 0.12f, 0.1f, 0.32f, 0.3f),
                                     obj(1, 0.1f, 0.5f, 0.3f, 0.7f),
                                     obj(0, 0.6f, 0.6f, 0.9f, 0.9f)};
  const auto matches = match_to_ground_truth(found, im);
  EXPECT_EQ(matches[0], std::vector<int32_t>{0});
  EXPECT_EQ(matches[1], std::vector<int32_t>{1});
  EXPECT_TRUE(matches[2].empty());
  EXPECT_NEAR(box_iou(found[0].box, im.objects[0].box), 0.18f / 0.22f, 1e-5);
  const auto all = candidate_pairs(found, 0.0f, 10);  // (0,1) (0,2) (1,0) (1,2) (2,0) (2,1)
  const auto labels = pair_labels(im, all, matches, 2);
  for (size_t k = 0; k < all.size(); ++k) {
    const bool under = all[k] == std::array<int32_t, 2>{1, 0};
    EXPECT_EQ(labels[k * 2 + 0], 0) << k;
    EXPECT_EQ(labels[k * 2 + 1], under ? 1 : 0) << k;
  }
  // ground-truth objects themselves: no matches needed
  const auto gt_labels = pair_labels(im, {{1, 0}, {0, 1}}, {}, 2);
  EXPECT_EQ(gt_labels, (std::vector<uint8_t>{0, 1, 0, 0}));
}

// A two-image split on disk: instances JSON + VRD CSV.
struct SplitOnDisk {
  test_util::TempDir dir{"vrd_split"};
  VrdSplitFiles files;
  explicit SplitOnDisk(const std::string& extra_rows = "") {
    files.instances = (dir.path / "instances.json").string();
    files.images = dir.path.string();
    files.relationships = (dir.path / "vrd.csv").string();
    std::ofstream(files.instances) << R"({"images": [
      {"id": 1, "file_name": "im_a.jpg", "width": 100, "height": 50},
      {"id": 2, "file_name": "im_b.jpg", "width": 200, "height": 100}],
     "categories": [{"id": 2, "name": "square"}, {"id": 1, "name": "circle"}],
     "annotations": [
      {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 20, 10], "area": 200},
      {"id": 2, "image_id": 1, "category_id": 2, "bbox": [50, 20, 40, 20], "area": 800},
      {"id": 3, "image_id": 2, "category_id": 2, "bbox": [0, 0, 100, 50], "area": 5000}]})";
    std::ofstream(files.relationships)
        << "ImageID,LabelName1,LabelName2,XMin1,XMax1,YMin1,YMax1,XMin2,XMax2,YMin2,YMax2,"
           "RelationshipLabel\n"
           "im_a,circle,square,0.1,0.3,0.1,0.3,0.5,0.9,0.4,0.8,next_to\n"
           "im_a,circle,striped,0.1,0.3,0.1,0.3,0.1,0.3,0.1,0.3,is\n"
        << extra_rows;
  }
};

TEST(VrdSplitReading, ObjectsRelationsAndAttributes) {
  const SplitOnDisk disk;
  const VrdSplit s = read_vrd_split(disk.files);
  EXPECT_EQ(s.classes, (std::vector<std::string>{"circle", "square"}));
  EXPECT_EQ(s.predicates, std::vector<std::string>{"next_to"});
  ASSERT_EQ(s.images.size(), 2u);
  EXPECT_EQ(s.images[0].id, "im_a");
  EXPECT_EQ(s.images[0].path, (disk.dir.path / "im_a.jpg").string());
  ASSERT_EQ(s.images[0].objects.size(), 2u);
  EXPECT_EQ(s.images[0].objects[0].label, 0);
  EXPECT_FLOAT_EQ(s.images[0].objects[1].box[2], 0.9f);
  ASSERT_EQ(s.images[0].relations.size(), 1u);
  EXPECT_EQ(s.images[0].relations[0].subject, 0);
  EXPECT_EQ(s.images[0].relations[0].object, 1);
  ASSERT_EQ(s.images[0].attributes.size(), 1u);
  EXPECT_EQ(s.images[0].attributes[0].attribute, "striped");
  EXPECT_TRUE(s.images[1].relations.empty());

  // the pipeline's predicate list (from the training split) may hold more predicates
  const VrdSplit t = read_vrd_split(disk.files, {"next_to", "on"});
  EXPECT_EQ(t.predicates, (std::vector<std::string>{"next_to", "on"}));
  EXPECT_NE(error_of([&] { read_vrd_split(disk.files, {"on"}); })
                .find("relationship 1 (im_a, circle next_to square): predicate 'next_to' is not "
                      "one of the pipeline's predicates"),
            std::string::npos);

  const SplitOnDisk bad_box("im_b,square,square,0,0.5,0,0.5,0,0.4,0,0.5,on\n");
  EXPECT_NE(error_of([&] { read_vrd_split(bad_box.files); })
                .find("relationship 3 (im_b, square on square): no square of " +
                      bad_box.files.instances + " has the box [0, 0, 0.4, 0.5]"),
            std::string::npos);
  const SplitOnDisk bad_image("im_c,square,square,0,0.5,0,0.5,0,0.5,0,0.5,on\n");
  EXPECT_NE(error_of([&] { read_vrd_split(bad_image.files); }).find("image 'im_c' is not in"),
            std::string::npos);
  const SplitOnDisk bad_class("im_b,star,square,0,0.5,0,0.5,0,0.5,0,0.5,on\n");
  EXPECT_NE(
      error_of([&] { read_vrd_split(bad_class.files); }).find("class 'star' is not a category of"),
      std::string::npos);
}

}  // namespace
}  // namespace setdet
