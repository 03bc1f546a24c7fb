// The Open Images VRD metric against golden values from the reference, TensorFlow's
// object_detection at these commits of tensorflow/models (research/object_detection), run locally
// under Python 3 with numpy 1.24.2 and pandas 1.5.3:
//   metrics/oid_vrd_challenge_evaluation.py @ 1161ef509440f5b8e4426f119cbcafa6c5ef6998
//   metrics/oid_vrd_challenge_evaluation_utils.py @ d318246cb23c77a401624f85a7607fba964769c1
//   utils/vrd_evaluation.py @ 0a207ff74ac894888652d4a2a60ff395bed869c0
//   utils/per_image_vrd_evaluation.py @ 417e1f53a0af96571be117b334b70b59b23bc439
//   utils/metrics.py @ 5eba85bc881d6859d92fa0281c661a51cf1719da
//   utils/np_box_ops.py @ 4238b81e61cacaaa72e27ea3e18561e3fd5a3726
// ("the reference" below). Inputs are tests/data/vrd/<case>/{gt,labels,dt}.csv.
#include <gtest/gtest.h>
#include <simdjson.h>

#include <cmath>
#include <map>
#include <string>

#include "core_testing.h"
#include "setdet/core/error.h"
#include "setdet/core/eval/vrd_eval.h"
#include "setdet/core/io/csv.h"
#include "setdet/core/parallel.h"

namespace setdet {
namespace {

const std::string kDataDir = std::string(SETDET_TEST_DATA_DIR) + "/vrd/";
const std::string kHeader =
    "ImageID,LabelName1,LabelName2,XMin1,XMax1,YMin1,YMax1,XMin2,XMax2,YMin2,YMax2,"
    "RelationshipLabel";

VrdEvalResult evaluate_case(const std::string& name) {
  VrdData data;
  read_vrd_ground_truth(kDataDir + name + "/gt.csv", data);
  read_vrd_image_labels(kDataDir + name + "/labels.csv", data);
  read_vrd_detections(kDataDir + name + "/dt.csv", data);
  return evaluate_vrd(data);
}

// From CSV text: gt rows, label rows ("ImageID,LabelName,Confidence" lines), detection rows.
VrdEvalResult evaluate_text(const std::string& gt, const std::string& labels,
                            const std::string& dt) {
  VrdData data;
  CsvReader g = CsvReader::from_string(kHeader + "\n" + gt, "gt.csv");
  CsvReader l = CsvReader::from_string("ImageID,LabelName,Confidence\n" + labels, "labels.csv");
  CsvReader d = CsvReader::from_string(kHeader + ",Score\n" + dt, "dt.csv");
  read_vrd_ground_truth(g, data);
  read_vrd_image_labels(l, data);
  read_vrd_detections(d, data);
  return evaluate_vrd(data);
}

struct Golden {
  double map, recall50, recall100, weighted_ap;
  std::map<std::string, double> ap;
};

void expect_task(const VrdEvalResult& r, const VrdTaskResult& task, const Golden& g) {
  EXPECT_DOUBLE_EQ(task.mean_ap, g.map);
  ASSERT_EQ(r.params.recall_at, (std::vector<int64_t>{50, 100}));
  EXPECT_DOUBLE_EQ(task.recall_at[0], g.recall50);
  EXPECT_DOUBLE_EQ(task.recall_at[1], g.recall100);
  EXPECT_DOUBLE_EQ(task.weighted_ap, g.weighted_ap);
  ASSERT_EQ(task.ap_per_predicate.size(), g.ap.size());
  for (const auto& [predicate, ap] : g.ap) {
    ASSERT_TRUE(task.ap_per_predicate.count(predicate)) << predicate;
    EXPECT_DOUBLE_EQ(task.ap_per_predicate.at(predicate), ap) << predicate;
  }
}

using testing::error_of;

// Negative classes (dog labelled 0, cat labelled 1: Confidence is not read; both are absent from
// img1's ground truth), a detection with an unevaluable class (horse) dropped, an image only in
// the labels (img2), an image in neither file (img3), an image without labels (img4), a
// predicate only in detections (under: no AP, but in weighted AP).
TEST(VrdEval, NegativeClassesAndDroppedDetectionsMatchTheReference) {
  const VrdEvalResult r = evaluate_case("filter");
  // golden: the reference, filter/ (commits in the file header)
  const Golden rel{0.6666666666666666,
                   1.0,
                   1.0,
                   0.3333333333333333,
                   {{"at", 0.3333333333333333}, {"wears", 1.0}}};
  expect_task(r, r.relationship, rel);
  expect_task(r, r.phrase, rel);
  EXPECT_DOUBLE_EQ(r.challenge_score(), 0.7333333333333334);
  EXPECT_EQ(r.num_images, 3);  // img1, img2, img4
  EXPECT_EQ(r.num_detections, 13);
  EXPECT_EQ(r.num_kept_detections, 9);  // horse, car-car, img3, woman-dog dropped
}

// Two identical ground-truth rows (only the first can match), the highest-IoU ground truth taken
// without fall-back, and a zero-width subject box (IoU 0 / 0 = NaN: never a match, but its phrase
// box has an area and matches).
TEST(VrdEval, IdenticalRowsNoFallBackAndNanIouMatchTheReference) {
  const VrdEvalResult r = evaluate_case("matching");
  // golden: the reference, matching/
  expect_task(r, r.relationship,
              {0.2777777777777778, 0.5, 0.5, 0.375, {{"on", 0.5555555555555556}, {"near", 0.0}}});
  expect_task(r, r.phrase,
              {0.7777777777777778, 0.75, 0.75, 0.625, {{"on", 0.5555555555555556}, {"near", 1.0}}});
  EXPECT_DOUBLE_EQ(r.challenge_score(), 0.5222222222222223);
}

// The 0.5 boundary in float32: p1's boxes have IoU exactly 1/2 in decimal but below 0.5 in the
// reference's arithmetic (false positive); p2's exactly 0.5 (true positive); p3's IoU is below
// 1/2 in decimal and in float64 but reaches 0.5 in float32 (true positive).
TEST(VrdEval, IouAtHalfDecidedInFloat32AsTheReference) {
  const VrdEvalResult r = evaluate_case("boundary");
  // golden: the reference, boundary/
  expect_task(r, r.relationship,
              {0.6666666666666666,
               0.6666666666666666,
               0.6666666666666666,
               0.6666666666666666,
               {{"p1", 0.0}, {"p2", 1.0}, {"p3", 1.0}}});
  expect_task(r, r.phrase, {1.0, 1.0, 1.0, 1.0, {{"p1", 1.0}, {"p2", 1.0}, {"p3", 1.0}}});
  EXPECT_DOUBLE_EQ(r.challenge_score(), 0.8);
}

// Recall@50 truncation: image r1 has 5 dropped detections on top (they take no slot), 48 false
// positives, its 3 true positives at ranks 49-51 and 9 more false positives; image r2 one hit.
TEST(VrdEval, RecallAt50CountsTheFirst50KeptDetectionsPerImage) {
  const VrdEvalResult r = evaluate_case("recall");
  // golden: the reference, recall/
  const Golden g{
      0.06557377049180328, 0.75, 1.0, 0.06557377049180328, {{"near", 0.06557377049180328}}};
  expect_task(r, r.relationship, g);
  expect_task(r, r.phrase, g);
  EXPECT_DOUBLE_EQ(r.challenge_score(), 0.20245901639344266);
}

// Phrase boxes: swapped subject / object boxes miss as a relationship but hit as a phrase;
// "is" attributes (box 2 = box 1) with a verified attribute label (white: a sure false positive).
TEST(VrdEval, PhraseBoxesAndIsAttributesMatchTheReference) {
  const VrdEvalResult r = evaluate_case("phrase");
  // golden: the reference, phrase/
  expect_task(r, r.relationship,
              {0.6666666666666666, 1.0, 1.0, 0.7, {{"is", 1.0}, {"rides", 0.3333333333333333}}});
  expect_task(r, r.phrase, {1.0, 1.0, 1.0, 1.0, {{"is", 1.0}, {"rides", 1.0}}});
  EXPECT_DOUBLE_EQ(r.challenge_score(), 0.8666666666666667);
}

// 200 random images (bench/gen_vrd_bench.py OUT 200 13 --small), compared with the reference's
// output stored beside them in expected.json; the result does not depend on the thread count.
TEST(VrdEval, Random200ImagesMatchTheReferenceOnEveryThreadCount) {
  simdjson::dom::parser parser;
  const simdjson::dom::element expected = parser.load(kDataDir + "random200/expected.json");
  for (const int threads : {1, 2, 3}) {
    set_num_threads(threads);
    const VrdEvalResult r = evaluate_case("random200");
    for (const auto& [name, task] :
         {std::pair<std::string, const VrdTaskResult*>{"relationship", &r.relationship},
          {"phrase", &r.phrase}}) {
      SCOPED_TRACE(name + ", " + std::to_string(threads) + " threads");
      Golden g{double(expected["mAP_" + name]),
               double(expected["recall50_" + name]),
               double(expected["recall100_" + name]),
               double(expected["weightedAP_" + name]),
               {}};
      for (auto [predicate, ap] : expected["AP_" + name + "_per_predicate"].get_object()) {
        g.ap[std::string(predicate)] = double(ap);
      }
      EXPECT_EQ(g.ap.size(), 10u);
      expect_task(r, *task, g);
    }
    EXPECT_DOUBLE_EQ(r.challenge_score(), double(expected["score"]));
  }
  set_num_threads(0);
}

// setdet's rule where the reference is undefined: tied scores rank by input position. Two
// detections of one ground truth with equal scores: the first listed is the true positive. With a
// false positive listed first at the same score, AP is 1/2 (FP ranked first), listed second 1.
TEST(VrdEval, TiedScoresRankByInputPosition) {
  const std::string gt = "i,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on\n";
  const std::string hit = "i,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on,0.5\n";
  const std::string miss = "i,a,b,0.6,0.9,0.1,0.5,0.5,0.9,0.5,0.9,on,0.5\n";
  EXPECT_DOUBLE_EQ(evaluate_text(gt, "", hit + miss).relationship.mean_ap, 1.0);
  EXPECT_DOUBLE_EQ(evaluate_text(gt, "", miss + hit).relationship.mean_ap, 0.5);
  // the same rule across images in the pooled ranking
  const std::string gt2 = gt + "j,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on\n";
  const std::string miss_j = "j,a,b,0.6,0.9,0.1,0.5,0.5,0.9,0.5,0.9,on,0.5\n";
  EXPECT_DOUBLE_EQ(evaluate_text(gt2, "", miss_j + hit).relationship.mean_ap, 0.25);
  EXPECT_DOUBLE_EQ(evaluate_text(gt2, "", hit + miss_j).relationship.mean_ap, 0.5);
}

// Where the reference crashes (no detections) or gives NaN (no ground truth).
TEST(VrdEval, NoDetectionsGiveZeroAndNoGroundTruthGivesZero) {
  const VrdEvalResult empty = evaluate_text(
      "i,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on\ni,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,under\n", "",
      "");
  EXPECT_EQ(empty.relationship.ap_per_predicate,
            (std::map<std::string, double>{{"on", 0.0}, {"under", 0.0}}));
  EXPECT_EQ(empty.relationship.mean_ap, 0.0);
  EXPECT_EQ(empty.phrase.recall_at, (std::vector<double>{0.0, 0.0}));
  EXPECT_EQ(empty.challenge_score(), 0.0);

  const VrdEvalResult no_gt =
      evaluate_text("", "i,a,1\n", "i,a,a,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on,0.5\n");
  EXPECT_EQ(no_gt.num_ground_truth, 0);
  EXPECT_EQ(no_gt.num_kept_detections, 1);  // a is a negative class of i
  EXPECT_TRUE(no_gt.relationship.ap_per_predicate.empty());
  EXPECT_EQ(no_gt.relationship.mean_ap, 0.0);
  EXPECT_EQ(no_gt.relationship.weighted_ap, 0.0);
  EXPECT_EQ(no_gt.relationship.recall_at, (std::vector<double>{0.0, 0.0}));
  EXPECT_EQ(no_gt.challenge_score(), 0.0);
}

TEST(VrdEval, InMemoryRowsEqualCsvRows) {
  VrdData data;
  data.add_ground_truth("i", "a", "b", "on", {0.1, 0.1, 0.5, 0.5}, {0.5, 0.5, 0.9, 0.9});
  data.add_image_label("i", "c");
  data.add_detection("i", "a", "b", "on", {0.1, 0.1, 0.5, 0.5}, {0.5, 0.5, 0.9, 0.9}, 0.9);
  data.add_detection("i", "c", "b", "on", {0.1, 0.1, 0.5, 0.5}, {0.5, 0.5, 0.9, 0.9}, 0.95);
  const VrdEvalResult r = evaluate_vrd(data);
  const VrdEvalResult csv = evaluate_text("i,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on\n", "i,c,1\n",
                                          "i,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on,0.9\n"
                                          "i,c,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on,0.95\n");
  EXPECT_DOUBLE_EQ(r.relationship.mean_ap, 0.5);  // the negative-class FP ranks first
  EXPECT_EQ(r.relationship.mean_ap, csv.relationship.mean_ap);
  EXPECT_EQ(r.phrase.mean_ap, csv.phrase.mean_ap);
  EXPECT_EQ(r.num_kept_detections, 2);

  EXPECT_EQ(error_of([&] {
              data.add_detection("i", "a", "b", "on", {0.5, 0.1, 0.4, 0.5}, {0, 0, 1, 1}, 0.5);
            }),
            "detection row 2: box 1: box is inverted: xmin 0.5 > xmax 0.4");
  EXPECT_EQ(error_of([&] {
              data.add_ground_truth("i", "a", "b", "on", {0, 0, 1, 1}, {0, 0, 1, 1.5});
            }),
            "ground truth row 1: box 2: expected a normalised coordinate in [0, 1], got 1.5");
  EXPECT_EQ(error_of([&] {
              data.add_detection("i", "a", "b", "on", {0, 0, 1, 1}, {0, 0, 1, 1}, std::nan(""));
            }),
            "detection row 2: expected a finite score, got nan");
  EXPECT_EQ(error_of([&] {
              data.add_ground_truth("", "a", "b", "on", {0, 0, 1, 1}, {0, 0, 1, 1});
            }),
            "ground truth row 1: image id, labels and predicate must be non-empty");
  VrdEvalParams params;
  params.recall_at = {100};
  EXPECT_EQ(error_of([&] { evaluate_vrd(data, params).challenge_score(); }),
            "challenge score: Recall@50 was not computed (recall_at lacks 50)");
}

using Reader = void (*)(CsvReader&, VrdData&);

// The error from reading `text` as the file `name` with `read`.
std::string read_error(Reader read, const std::string& text, const std::string& name) {
  return error_of([&] {
    VrdData data;
    CsvReader csv = CsvReader::from_string(text, name);
    read(csv, data);
  });
}

TEST(VrdEval, CsvErrorsNameFileLineAndColumn) {
  const auto gt_error = [](const std::string& rows, const std::string& header = kHeader) {
    return read_error(read_vrd_ground_truth, header + "\n" + rows, "gt.csv");
  };
  EXPECT_EQ(gt_error("i,a,b,0.7,0.3,0.1,0.5,0.5,0.9,0.5,0.9,on\n"),
            "gt.csv:2: column 'XMin1' (4): box is inverted: xmin 0.7 > xmax 0.3");
  EXPECT_EQ(gt_error("i,a,b,0.1,0.3,0.1,0.5,0.5,0.9,0.6,0.55,on\n"),
            "gt.csv:2: column 'YMin2' (10): box is inverted: ymin 0.6 > ymax 0.55");
  EXPECT_EQ(gt_error("i,a,b,0.1,0.3,0.1,0.5,0.5,0.9,0.5,0.9,on\ni,a,b,0.1,1.2,0.1,0.5,0.5,0.9,"
                     "0.5,0.9,on\n"),
            "gt.csv:3: column 'XMax1' (5): expected a normalised coordinate in [0, 1], got 1.2");
  EXPECT_EQ(gt_error("i,a,b,-0.1,0.3,0.1,0.5,0.5,0.9,0.5,0.9,on\n"),
            "gt.csv:2: column 'XMin1' (4): expected a normalised coordinate in [0, 1], got -0.1");
  EXPECT_EQ(gt_error("i,a,b,nan,0.3,0.1,0.5,0.5,0.9,0.5,0.9,on\n"),
            "gt.csv:2: column 'XMin1' (4): expected a normalised coordinate in [0, 1], got nan");
  EXPECT_EQ(gt_error("i,a,b,0.1,0.3,0.1,0.5,0.5,0.9,0.5,x,on\n"),
            "gt.csv:2: column 'YMax2' (11): expected a number, got 'x'");
  EXPECT_EQ(gt_error("i,,b,0.1,0.3,0.1,0.5,0.5,0.9,0.5,0.9,on\n"),
            "gt.csv:2: column 'LabelName1' (2): expected a non-empty value, got an empty field");
  EXPECT_EQ(gt_error("", "ImageID,LabelName1,LabelName2,RelationshipLabel"),
            "gt.csv: missing column 'XMin1' (header: ImageID, LabelName1, LabelName2, "
            "RelationshipLabel)");

  const auto dt_error = [](const std::string& rows) {
    return read_error(read_vrd_detections, kHeader + ",Score\n" + rows, "dt.csv");
  };
  EXPECT_EQ(dt_error("i,a,b,0.1,0.3,0.1,0.5,0.5,0.9,0.5,0.9,on,inf\n"),
            "dt.csv:2: column 'Score' (13): expected a finite score");
  EXPECT_EQ(dt_error("i,a,b,0.1,0.3,0.1,0.5,0.5,0.9,0.5,0.9,on\n"),
            "dt.csv:2: expected 13 fields as in the header, got 12");
  EXPECT_EQ(read_error(read_vrd_detections, kHeader + "\n", "dt.csv"),
            "dt.csv: missing column 'Score' (header: ImageID, LabelName1, LabelName2, XMin1, "
            "XMax1, YMin1, YMax1, XMin2, XMax2, YMin2, YMax2, RelationshipLabel)");
  EXPECT_EQ(read_error(read_vrd_image_labels, "ImageID,Confidence\n", "labels.csv"),
            "labels.csv: missing column 'LabelName' (header: ImageID, Confidence)");
}

}  // namespace
}  // namespace setdet
