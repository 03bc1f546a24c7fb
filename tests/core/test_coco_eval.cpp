#include <gtest/gtest.h>
#include <simdjson.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "setdet/core/error.h"
#include "setdet/core/eval/coco_eval.h"
#include "setdet/core/io/coco.h"
#include "setdet/core/parallel.h"

// Golden values below come from pycocotools 2.0.11 (github.com/ppwwyyxx/cocoapi, commit
// ac87f5077ad6b8864c2dc5e93d14cae62d1db05a, built locally with Debian 12's numpy 1.24.2 and
// cython3), COCOeval(gt, gt.loadRes(dt), 'bbox') on tests/data/coco/eval_gt.json and
// eval_dt.json; stats printed with repr(). tests/data/coco/pycocotools_expected.json holds
// eval['recall'] and slices of eval['precision'] / eval['scores'] from the same runs.

namespace setdet {
namespace {

const std::string kDataDir = std::string(SETDET_TEST_DATA_DIR) + "/coco";

using Stats = std::array<double, 12>;

class CocoEval : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    gt_ = new CocoDataset(load_coco_instances(kDataDir + "/eval_gt.json"));
    dets_ = new std::vector<CocoDetection>(load_coco_results(kDataDir + "/eval_dt.json", gt_));
  }
  static void TearDownTestSuite() {
    delete gt_;
    delete dets_;
    gt_ = nullptr;
    dets_ = nullptr;
  }
  void TearDown() override { set_num_threads(0); }

  static CocoDataset* gt_;
  static std::vector<CocoDetection>* dets_;
};
CocoDataset* CocoEval::gt_ = nullptr;
std::vector<CocoDetection>* CocoEval::dets_ = nullptr;

void expect_stats(const Stats& got, const Stats& want) {
  for (size_t i = 0; i < 12; ++i) {
    EXPECT_EQ(got[i], want[i]) << "stat " << i << " (" << coco_stat_names()[i] << ")";
  }
}

CocoEvalParams custom_a() {
  CocoEvalParams p;
  p.iou_thresholds = {0.5, 0.6, 0.75, 0.9};
  p.max_dets = {200, 1, 5, 100};  // sorted by the evaluator, as pycocotools does
  p.recall_thresholds = numpy_linspace(0.0, 1.0, 11);
  p.area_ranges = {{0, 1e10}, {0, 400}, {400, 2500}, {2500, 1e10}};
  return p;
}

CocoEvalParams custom_b() {
  CocoEvalParams p;
  p.iou_thresholds = numpy_linspace(0.55, 0.8, 6);
  p.max_dets = {1, 5, 50};
  return p;
}

TEST_F(CocoEval, DefaultMatchesPycocotools) {
  const CocoEvalResult r = evaluate_coco(*gt_, *dets_);
  expect_stats(r.stats,
               {0.2002895418848585, 0.43320632317960495, 0.14172448571926946, 0.2639846229001962,
                0.2529054422530222, 0.2339358552830413, 0.16771516590021263, 0.3150602779013994,
                0.3983209217227909, 0.5004701500050338, 0.424921568627451, 0.41876767676767684});
  EXPECT_EQ(r.num_t, 10u);
  EXPECT_EQ(r.num_r, 101u);
  EXPECT_EQ(r.num_k, 6u);
  EXPECT_EQ(r.num_a, 4u);
  EXPECT_EQ(r.num_m, 3u);
  EXPECT_EQ(r.params.category_ids, (std::vector<int64_t>{1, 2, 3, 5, 7, 9}));
  EXPECT_EQ(r.params.image_ids.size(), 38u);
}

TEST_F(CocoEval, ClassAgnosticMatchesPycocotools) {
  CocoEvalParams p;
  p.use_cats = false;
  const CocoEvalResult r = evaluate_coco(*gt_, *dets_, p);
  expect_stats(r.stats,
               {0.13325120400526583, 0.3492264557733278, 0.06766253060103661, 0.10323179160184674,
                0.2925426771050314, 0.20096595967617448, 0.0314410480349345, 0.1390829694323144,
                0.24585152838427948, 0.1764705882352941, 0.45942028985507255, 0.44901960784313727});
  EXPECT_EQ(r.num_k, 1u);
}

TEST_F(CocoEval, ClassAgnosticKeepsTheCategoryOrderGiven) {
  // useCats = 0 concatenates the ground truth / detections over catIds in the given order
  CocoEvalParams p;
  p.use_cats = false;
  p.category_ids = {7, 1, 3, 2};
  const CocoEvalResult r = evaluate_coco(*gt_, *dets_, p);
  expect_stats(r.stats,
               {0.13256874510031708, 0.352279190111962, 0.0658294535520953, 0.10384384108687916,
                0.3065785521789254, 0.22120292330217034, 0.030715935334872983, 0.12494226327944573,
                0.23648960739030023, 0.17566765578635013, 0.4807017543859649, 0.4341463414634147});
}

TEST_F(CocoEval, CustomThresholdsMaxDetsAreasMatchPycocotools) {
  const CocoEvalResult r = evaluate_coco(*gt_, *dets_, custom_a());
  expect_stats(r.stats,
               {0.24539926142356605, 0.4365199683349198, 0.1579548287588681, 0.18244949494949494,
                0.32412758339845116, 0.271738709751057, 0.1914225386935667, 0.340759061464669,
                0.43771821688176826, 0.3333333333333333, 0.4921933144118575, 0.46669859745517633});
  EXPECT_EQ(r.params.max_dets, (std::vector<int64_t>{1, 5, 100, 200}));
}

TEST_F(CocoEval, MissingSummaryEntriesAreMinusOneAsInPycocotools) {
  // no 0.5 among the IoU thresholds and no maxDets of 100: those stats are -1
  const CocoEvalResult r = evaluate_coco(*gt_, *dets_, custom_b());
  expect_stats(r.stats,
               {-1.0, -1.0, 0.13124534081353212, 0.27477988283735494, 0.3191951354262505,
                0.2895561431504631, 0.21466803474591642, 0.3952893075541051, 0.46778959600454934,
                0.5376287794892446, 0.5392483660130719, 0.5346801346801348});
}

TEST_F(CocoEval, CategoryAndImageSubsetsMatchPycocotools) {
  CocoEvalParams p;
  p.category_ids = {5, 1, 9};
  p.image_ids = {1, 2, 3, 5, 6, 7, 1099511627779LL};
  for (int64_t id = 100; id < 145; id += 3) p.image_ids.push_back(id);
  const CocoEvalResult r = evaluate_coco(*gt_, *dets_, p);
  expect_stats(r.stats,
               {0.2143242062331769, 0.40567844238965156, 0.18181793318235695, 0.20714126288906484,
                0.16784653465346533, 0.31968411126826973, 0.16085271317829458, 0.2798449612403101,
                0.4821705426356589, 0.4696969696969697, 0.275, 0.45999999999999996});
  EXPECT_EQ(r.params.category_ids, (std::vector<int64_t>{1, 5, 9}));
  // category 9 has detections but no ground truth: -1 everywhere
  for (size_t t = 0; t < r.num_t; ++t) EXPECT_EQ(r.recall_at(t, 2, 0, 2), -1.0);
  EXPECT_EQ(r.category_ap(2), -1.0);
}

// eval['recall'], eval['precision'][:, :, :, 0, -1] and eval['scores'][:, :, :, 0, -1].
void expect_arrays_match(const CocoEvalResult& r, const char* case_name) {
  simdjson::dom::parser parser;
  simdjson::dom::element root;
  ASSERT_EQ(parser.load(kDataDir + "/pycocotools_expected.json").get(root), simdjson::SUCCESS);
  simdjson::dom::element c;
  ASSERT_EQ(root[case_name].get(c), simdjson::SUCCESS) << case_name;
  std::vector<double> recall, precision, scores;
  for (double v : c["recall"].get_array()) recall.push_back(v);
  for (double v : c["precision_area0_lastm"].get_array()) precision.push_back(v);
  for (double v : c["scores_area0_lastm"].get_array()) scores.push_back(v);
  ASSERT_EQ(recall, r.recall) << case_name;
  ASSERT_EQ(precision.size(), r.num_t * r.num_r * r.num_k);
  size_t i = 0, mismatches = 0;
  for (size_t t = 0; t < r.num_t; ++t) {
    for (size_t rr = 0; rr < r.num_r; ++rr) {
      for (size_t k = 0; k < r.num_k; ++k, ++i) {
        const size_t idx =
            (((t * r.num_r + rr) * r.num_k + k) * r.num_a + 0) * r.num_m + (r.num_m - 1);
        mismatches += r.precision[idx] != precision[i];
        mismatches += r.scores[idx] != scores[i];
      }
    }
  }
  EXPECT_EQ(mismatches, 0u) << case_name;
}

TEST_F(CocoEval, PrecisionRecallScoresArraysMatchPycocotools) {
  expect_arrays_match(evaluate_coco(*gt_, *dets_), "default");
  CocoEvalParams p;
  p.use_cats = false;
  expect_arrays_match(evaluate_coco(*gt_, *dets_, p), "use_cats_0");
  expect_arrays_match(evaluate_coco(*gt_, *dets_, custom_a()), "custom_a");
}

TEST_F(CocoEval, SummaryTextMatchesPycocotools) {
  EXPECT_EQ(format_coco_summary(evaluate_coco(*gt_, *dets_)),
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.200\n"
            " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.433\n"
            " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 0.142\n"
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.264\n"
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.253\n"
            " Average Precision  (AP) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.234\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=  1 ] = 0.168\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets= 10 ] = 0.315\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.398\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area= small | maxDets=100 ] = 0.500\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area=medium | maxDets=100 ] = 0.425\n"
            " Average Recall     (AR) @[ IoU=0.50:0.95 | area= large | maxDets=100 ] = 0.419\n");
  EXPECT_EQ(format_coco_summary(evaluate_coco(*gt_, *dets_, custom_a())),
            " Average Precision  (AP) @[ IoU=0.50:0.90 | area=   all | maxDets=100 ] = 0.245\n"
            " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets=100 ] = 0.437\n"
            " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets=100 ] = 0.158\n"
            " Average Precision  (AP) @[ IoU=0.50:0.90 | area= small | maxDets=100 ] = 0.182\n"
            " Average Precision  (AP) @[ IoU=0.50:0.90 | area=medium | maxDets=100 ] = 0.324\n"
            " Average Precision  (AP) @[ IoU=0.50:0.90 | area= large | maxDets=100 ] = 0.272\n"
            " Average Recall     (AR) @[ IoU=0.50:0.90 | area=   all | maxDets=  1 ] = 0.191\n"
            " Average Recall     (AR) @[ IoU=0.50:0.90 | area=   all | maxDets=  5 ] = 0.341\n"
            " Average Recall     (AR) @[ IoU=0.50:0.90 | area=   all | maxDets=100 ] = 0.438\n"
            " Average Recall     (AR) @[ IoU=0.50:0.90 | area= small | maxDets=100 ] = 0.333\n"
            " Average Recall     (AR) @[ IoU=0.50:0.90 | area=medium | maxDets=100 ] = 0.492\n"
            " Average Recall     (AR) @[ IoU=0.50:0.90 | area= large | maxDets=100 ] = 0.467\n");
  EXPECT_EQ(format_coco_summary(evaluate_coco(*gt_, *dets_, custom_b())),
            " Average Precision  (AP) @[ IoU=0.55:0.80 | area=   all | maxDets=100 ] = -1.000\n"
            " Average Precision  (AP) @[ IoU=0.50      | area=   all | maxDets= 50 ] = -1.000\n"
            " Average Precision  (AP) @[ IoU=0.75      | area=   all | maxDets= 50 ] = 0.131\n"
            " Average Precision  (AP) @[ IoU=0.55:0.80 | area= small | maxDets= 50 ] = 0.275\n"
            " Average Precision  (AP) @[ IoU=0.55:0.80 | area=medium | maxDets= 50 ] = 0.319\n"
            " Average Precision  (AP) @[ IoU=0.55:0.80 | area= large | maxDets= 50 ] = 0.290\n"
            " Average Recall     (AR) @[ IoU=0.55:0.80 | area=   all | maxDets=  1 ] = 0.215\n"
            " Average Recall     (AR) @[ IoU=0.55:0.80 | area=   all | maxDets=  5 ] = 0.395\n"
            " Average Recall     (AR) @[ IoU=0.55:0.80 | area=   all | maxDets= 50 ] = 0.468\n"
            " Average Recall     (AR) @[ IoU=0.55:0.80 | area= small | maxDets= 50 ] = 0.538\n"
            " Average Recall     (AR) @[ IoU=0.55:0.80 | area=medium | maxDets= 50 ] = 0.539\n"
            " Average Recall     (AR) @[ IoU=0.55:0.80 | area= large | maxDets= 50 ] = 0.535\n");
}

TEST_F(CocoEval, IdenticalResultsWhateverTheThreadCount) {
  for (const bool use_cats : {true, false}) {
    CocoEvalParams p;
    p.use_cats = use_cats;
    set_num_threads(1);
    const CocoEvalResult one = evaluate_coco(*gt_, *dets_, p);
    for (int threads : {2, 7}) {
      set_num_threads(threads);
      const CocoEvalResult many = evaluate_coco(*gt_, *dets_, p);
      EXPECT_EQ(many.stats, one.stats) << threads;
      EXPECT_EQ(many.precision, one.precision) << threads;
      EXPECT_EQ(many.recall, one.recall) << threads;
      EXPECT_EQ(many.scores, one.scores) << threads;
    }
  }
}

TEST(CocoEvalParamsTest, DefaultThresholdsAreNumpyLinspace) {
  // np.linspace(.5, .95, 10) and np.linspace(0, 1, 101) as numpy 1.24.2 computes them
  const CocoEvalParams p;
  EXPECT_EQ(p.iou_thresholds, (std::vector<double>{0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85,
                                                   0.8999999999999999, 0.95}));
  ASSERT_EQ(p.recall_thresholds.size(), 101u);
  EXPECT_EQ(p.recall_thresholds[0], 0.0);
  EXPECT_EQ(p.recall_thresholds[1], 0.01);
  EXPECT_EQ(p.recall_thresholds[35], 0.35000000000000003);
  EXPECT_EQ(p.recall_thresholds[57], 0.5700000000000001);
  EXPECT_EQ(p.recall_thresholds[70], 0.7000000000000001);
  EXPECT_EQ(p.recall_thresholds[95], 0.9500000000000001);
  EXPECT_EQ(p.recall_thresholds[100], 1.0);
  EXPECT_EQ(numpy_linspace(0.55, 0.8, 6),
            (std::vector<double>{0.55, 0.6000000000000001, 0.65, 0.7000000000000001, 0.75, 0.8}));
  EXPECT_EQ(numpy_linspace(3.0, 4.0, 1), (std::vector<double>{3.0}));
  EXPECT_TRUE(numpy_linspace(0.0, 1.0, 0).empty());
}

// ---- hand-computed cases: each item of the reference semantics on its own ----

CocoDataset one_image_gt(const std::vector<CocoAnnotation>& anns) {
  CocoDataset gt;
  gt.images = {{1, "a.jpg", 100, 100}, {2, "b.jpg", 100, 100}};
  gt.categories = {{1, "a", ""}, {2, "b", ""}};
  gt.annotations = anns;
  gt.index();
  return gt;
}

CocoAnnotation ann(int64_t id, std::array<double, 4> box, bool crowd = false, double area = -1,
                   int64_t cat = 1, int64_t image = 1) {
  return {id, image, cat, box, area < 0 ? box[2] * box[3] : area, crowd};
}

CocoDetection det(std::array<double, 4> box, double score, int64_t cat = 1, int64_t image = 1) {
  return {image, cat, box, score};
}

TEST(CocoEvalSemantics, IouExactlyAtTheThresholdMatches) {
  const CocoDataset gt = one_image_gt({ann(1, {0, 0, 10, 10})});
  // IoU 50 / 100 = 0.5 exactly: a TP at 0.5, an FP from 0.55 on
  const CocoEvalResult r = evaluate_coco(gt, {det({0, 0, 10, 5}, 0.9)});
  EXPECT_DOUBLE_EQ(r.stats[1], 1.0);  // AP50
  EXPECT_EQ(r.stats[2], 0.0);         // AP75
  EXPECT_DOUBLE_EQ(r.stats[0], 0.1);  // one threshold of ten
  EXPECT_DOUBLE_EQ(r.recall_at(0, 0, 0, 2), 1.0);
  EXPECT_EQ(r.recall_at(1, 0, 0, 2), 0.0);
  EXPECT_DOUBLE_EQ(r.category_ap(0, 0.5), 1.0);
  EXPECT_EQ(r.category_ap(1), -1.0);  // category 2 has no ground truth
}

TEST(CocoOperatingPoint, F1BestThresholdByHand) {
  // image 1: two GT of class 1 and a crowd region; image 2: one GT of class 2
  const CocoDataset gt = one_image_gt({ann(1, {0, 0, 10, 10}), ann(2, {50, 0, 10, 10}),
                                       ann(3, {0, 50, 40, 40}, true),
                                       ann(4, {0, 0, 20, 20}, false, -1, 2, 2)});
  const std::vector<CocoDetection> dets{
      det({0, 0, 10, 10}, 0.9),              // TP
      det({10, 60, 10, 10}, 0.85),           // inside the crowd: ignored, counts nowhere
      det({70, 70, 10, 10}, 0.8),            // FP
      det({0, 0, 20, 20}, 0.7, 2, 2),        // TP (class 2)
      det({50, 0, 10, 10}, 0.4),             // TP
      det({80, 0, 10, 10}, 0.3),             // FP
      det({0, 0, 10, 10}, 0.3),              // duplicate of GT 1: FP, tied with the one above
  };
  CocoEvalParams p;
  p.operating_point = true;
  const CocoOperatingPoint op = evaluate_coco(gt, dets, p).operating_point;
  // F1 = 2 TP / (TP + FP + 3) at 0.9: 2/4; 0.8: 2/5; 0.7: 4/6; 0.4: 6/7 (best); 0.3: 6/9
  EXPECT_EQ(op.iou_threshold, 0.5);
  EXPECT_EQ(op.score_threshold, 0.4);
  EXPECT_DOUBLE_EQ(op.f1, 6.0 / 7.0);
  EXPECT_EQ(op.true_positives, 3);
  EXPECT_EQ(op.false_positives, 1);
  EXPECT_EQ(op.ground_truth, 3);
  EXPECT_DOUBLE_EQ(op.precision, 0.75);
  EXPECT_DOUBLE_EQ(op.recall, 1.0);
  // off by default: pycocotools computes nothing of the kind
  EXPECT_EQ(evaluate_coco(gt, dets).operating_point.f1, 0.0);
}

TEST(CocoOperatingPoint, MatchesEvaluatingEveryThresholdAgain) {
  // no crowds and area "all": every kept detection is a TP or an FP, and TP = recall x GT count
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  CocoDataset gt;
  gt.categories = {{1, "a", ""}, {2, "b", ""}, {3, "c", ""}};
  std::vector<CocoDetection> dets;
  std::vector<int64_t> per_category(3, 0);
  int64_t id = 1;
  for (int64_t im = 1; im <= 12; ++im) {
    gt.images.push_back({im, "x.jpg", 200, 200});
    for (int g = 0; g < 4; ++g) {
      const int64_t cat = 1 + static_cast<int64_t>(u(rng) * 3);
      const std::array<double, 4> box{u(rng) * 150, u(rng) * 150, 10 + u(rng) * 40,
                                      10 + u(rng) * 40};
      gt.annotations.push_back({id++, im, cat, box, box[2] * box[3], false});
      ++per_category[static_cast<size_t>(cat - 1)];
      for (int d = 0; d < 3; ++d) {  // jittered copies: TPs, duplicates and misses
        const std::array<double, 4> jit{box[0] + (u(rng) - 0.5) * 12, box[1] + (u(rng) - 0.5) * 12,
                                        box[2], box[3]};
        dets.push_back({im, cat, jit, std::round(u(rng) * 20) / 20});  // ties on purpose
      }
    }
  }
  gt.index();
  CocoEvalParams p;
  p.operating_point = true;
  const CocoOperatingPoint op = evaluate_coco(gt, dets, p).operating_point;
  std::vector<double> thresholds;
  for (const auto& d : dets) thresholds.push_back(d.score);
  std::sort(thresholds.begin(), thresholds.end(), std::greater<>());
  thresholds.erase(std::unique(thresholds.begin(), thresholds.end()), thresholds.end());
  double best_f1 = 0.0, best_thr = 0.0;
  for (double thr : thresholds) {
    std::vector<CocoDetection> kept;
    for (const auto& d : dets) {
      if (d.score >= thr) kept.push_back(d);
    }
    const CocoEvalResult r = evaluate_coco(gt, kept);
    double tp = 0.0;
    for (size_t k = 0; k < 3; ++k) tp += std::round(r.recall_at(0, k, 0, 2) * per_category[k]);
    const double f1 = 2 * tp / (static_cast<double>(kept.size()) + gt.annotations.size());
    if (f1 > best_f1) {
      best_f1 = f1;
      best_thr = thr;
    }
  }
  EXPECT_GT(best_f1, 0.0);
  EXPECT_DOUBLE_EQ(op.f1, best_f1);
  EXPECT_EQ(op.score_threshold, best_thr);
  EXPECT_EQ(op.ground_truth, static_cast<int64_t>(gt.annotations.size()));
}

TEST(CocoEvalSemantics, CrowdIouIsOverTheDetectionAndAbsorbsManyDetections) {
  // a crowd region 100x100 and one regular GT; detections inside the crowd are ignored
  const CocoDataset gt = one_image_gt({ann(1, {0, 0, 100, 100}, true), ann(2, {0, 0, 10, 10})});
  const CocoEvalResult r = evaluate_coco(
      gt, {det({50, 50, 20, 20}, 0.9), det({60, 60, 20, 20}, 0.8), det({0, 0, 10, 10}, 0.7)});
  // without the crowd rule the two high-scoring boxes would be FPs and AP would be 1/3-ish
  EXPECT_DOUBLE_EQ(r.stats[1], 1.0);
  EXPECT_DOUBLE_EQ(r.stats[8], 1.0);
}

TEST(CocoEvalSemantics, AreaRangesAreInclusiveAndUseTheAnnotationArea) {
  // a 32x32 box (area 1024) counts as small and medium; a 10x10 box whose annotation area is
  // 5000 is medium, not small
  const CocoDataset gt =
      one_image_gt({ann(1, {0, 0, 32, 32}), ann(2, {50, 50, 10, 10}, false, 5000)});
  const CocoEvalResult r =
      evaluate_coco(gt, {det({0, 0, 32, 32}, 0.9), det({50, 50, 10, 10}, 0.8)});
  EXPECT_DOUBLE_EQ(r.stats[9], 1.0);   // ARs: the 1024 box
  EXPECT_DOUBLE_EQ(r.stats[10], 1.0);  // ARm: both
  EXPECT_EQ(r.stats[11], -1.0);        // no large GT
  // small: the 10x10 detection matched to an ignored (medium) GT is ignored, not an FP
  EXPECT_DOUBLE_EQ(r.stats[3], 1.0);
}

TEST(CocoEvalSemantics, GroundTruthIdZeroMakesItsMatchAFalsePositive) {
  const std::vector<CocoDetection> dets{det({0, 0, 10, 10}, 0.9)};
  const CocoEvalResult normal = evaluate_coco(one_image_gt({ann(1, {0, 0, 10, 10})}), dets);
  testing::internal::CaptureStderr();
  const CocoEvalResult quirk = evaluate_coco(one_image_gt({ann(0, {0, 0, 10, 10})}), dets);
  const std::string warning = testing::internal::GetCapturedStderr();
  EXPECT_DOUBLE_EQ(normal.stats[0], 1.0);
  EXPECT_EQ(quirk.stats[0], 0.0);  // pycocotools: dtMatches holds the id, 0 means unmatched
  EXPECT_NE(warning.find("annotations[0] has id 0"), std::string::npos) << warning;
}

TEST(CocoEvalSemantics, ScoreTiesKeepInputOrder) {
  // two equal-score detections, only the second is a TP; stable order puts the FP first
  const CocoDataset gt = one_image_gt({ann(1, {0, 0, 10, 10})});
  const CocoEvalResult r =
      evaluate_coco(gt, {det({50, 50, 10, 10}, 0.5), det({0, 0, 10, 10}, 0.5)});
  // precision 1/2 at recall 1 (the running max from the right gives 0.5 everywhere)
  EXPECT_EQ(r.precision_at(0, 0, 0, 0, 2), 1.0 / (2.0 + 2.220446049250313e-16));
  const CocoEvalResult swapped =
      evaluate_coco(gt, {det({0, 0, 10, 10}, 0.5), det({50, 50, 10, 10}, 0.5)});
  EXPECT_EQ(swapped.precision_at(0, 0, 0, 0, 2), 1.0 / (1.0 + 2.220446049250313e-16));
}

TEST(CocoEvalSemantics, MaxDetsCutsPerImageAndCategory) {
  // 3 detections in one image, the TP last: found with maxDets 10, not with 1
  const CocoDataset gt = one_image_gt({ann(1, {0, 0, 10, 10})});
  const CocoEvalResult r = evaluate_coco(
      gt, {det({50, 50, 10, 10}, 0.9), det({60, 60, 10, 10}, 0.8), det({0, 0, 10, 10}, 0.7)});
  EXPECT_EQ(r.stats[6], 0.0);         // AR1
  EXPECT_DOUBLE_EQ(r.stats[7], 1.0);  // AR10
}

TEST(CocoEvalSemantics, NoDetectionsGivesZeroAndNoGroundTruthGivesMinusOne) {
  const CocoDataset gt = one_image_gt({ann(1, {0, 0, 10, 10})});
  const CocoEvalResult r = evaluate_coco(gt, {});
  EXPECT_EQ(r.stats[0], 0.0);
  EXPECT_EQ(r.stats[8], 0.0);
  EXPECT_EQ(r.stats[3], 0.0);   // the 10x10 GT is small
  EXPECT_EQ(r.stats[4], -1.0);  // no medium GT
  const CocoEvalResult empty = evaluate_coco(one_image_gt({}), {det({0, 0, 1, 1}, 0.5)});
  for (double s : empty.stats) EXPECT_EQ(s, -1.0);
}

TEST(CocoEvalSemantics, RejectsBadParameters) {
  const CocoDataset gt = one_image_gt({ann(1, {0, 0, 10, 10})});
  CocoEvalParams p;
  p.image_ids = {1, 3};
  EXPECT_THROW(
      {
        try {
          evaluate_coco(gt, {}, p);
        } catch (const Error& e) {
          EXPECT_NE(std::string(e.what()).find("image_ids: image 3 is not in the ground truth"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      Error);
  p = CocoEvalParams();
  p.category_ids = {4};
  EXPECT_THROW(evaluate_coco(gt, {}, p), Error);
  p = CocoEvalParams();
  p.max_dets = {10, 10};
  EXPECT_THROW(evaluate_coco(gt, {}, p), Error);
  p = CocoEvalParams();
  p.area_labels = {"all"};
  EXPECT_THROW(evaluate_coco(gt, {}, p), Error);
  p = CocoEvalParams();
  p.iou_thresholds.clear();
  EXPECT_THROW(evaluate_coco(gt, {}, p), Error);
  // a detection for an image absent from the ground truth, as pycocotools' loadRes refuses
  EXPECT_THROW(evaluate_coco(gt, {det({0, 0, 1, 1}, 0.5, 1, 9)}), Error);
}

// ---- a literal transcription of COCOeval.evaluate() / accumulate() (per-image dicts, full
// cumsum arrays, running max over every position, searchsorted) against the optimised evaluator,
// over random data with ties, crowds, id 0, zero sizes and random parameters ----

struct NaiveEvalImg {
  std::vector<double> dt_scores;
  std::vector<std::vector<int64_t>> dt_matches;  // [T][D], GT id or 0
  std::vector<std::vector<bool>> dt_ignore;      // [T][D]
  std::vector<bool> gt_ignore;
};

double naive_iou(const std::array<double, 4>& d, const std::array<double, 4>& g, bool crowd) {
  const double w = std::min(d[0] + d[2], g[0] + g[2]) - std::max(d[0], g[0]);
  const double h = std::min(d[1] + d[3], g[1] + g[3]) - std::max(d[1], g[1]);
  if (w <= 0 || h <= 0) return 0.0;
  const double i = w * h, da = d[2] * d[3], ga = g[2] * g[3];
  return i / (crowd ? da : da + ga - i);
}

CocoEvalResult naive_coco_eval(const CocoDataset& gt, const std::vector<CocoDetection>& dets,
                               const CocoEvalParams& p) {  // p already resolved
  const size_t T = p.iou_thresholds.size(), R = p.recall_thresholds.size();
  const size_t K = p.use_cats ? p.category_ids.size() : 1, A = p.area_ranges.size();
  const size_t M = p.max_dets.size(), I = p.image_ids.size();
  const std::vector<int64_t> cat_loop = p.use_cats ? p.category_ids : std::vector<int64_t>{-1};
  auto gts_of = [&](int64_t img, int64_t cat) {
    std::vector<const CocoAnnotation*> out;
    for (int64_t c : (cat == -1 ? p.category_ids : std::vector<int64_t>{cat})) {
      for (const auto& a : gt.annotations) {
        if (a.image_id == img && a.category_id == c) out.push_back(&a);
      }
    }
    return out;
  };
  auto dts_of = [&](int64_t img, int64_t cat) {
    std::vector<const CocoDetection*> out;
    for (int64_t c : (cat == -1 ? p.category_ids : std::vector<int64_t>{cat})) {
      for (const auto& d : dets) {
        if (d.image_id == img && d.category_id == c) out.push_back(&d);
      }
    }
    return out;
  };
  const size_t max_det = static_cast<size_t>(p.max_dets.back());
  std::vector<std::optional<NaiveEvalImg>> eval_imgs;  // [K][A][I]
  for (int64_t cat : cat_loop) {
    for (size_t a = 0; a < A; ++a) {
      for (int64_t img : p.image_ids) {
        auto g = gts_of(img, cat);
        auto d = dts_of(img, cat);
        if (g.empty() && d.empty()) {
          eval_imgs.emplace_back();
          continue;
        }
        std::vector<bool> ig(g.size());
        for (size_t j = 0; j < g.size(); ++j) {
          ig[j] =
              g[j]->iscrowd || g[j]->area < p.area_ranges[a][0] || g[j]->area > p.area_ranges[a][1];
        }
        std::vector<size_t> gi(g.size());
        std::iota(gi.begin(), gi.end(), 0);
        std::stable_sort(gi.begin(), gi.end(), [&](size_t x, size_t y) { return ig[x] < ig[y]; });
        std::stable_sort(d.begin(), d.end(), [](auto x, auto y) { return x->score > y->score; });
        if (d.size() > max_det) d.resize(max_det);
        NaiveEvalImg e;
        for (size_t j : gi) e.gt_ignore.push_back(ig[j]);
        for (auto x : d) e.dt_scores.push_back(x->score);
        e.dt_matches.assign(T, std::vector<int64_t>(d.size(), 0));
        e.dt_ignore.assign(T, std::vector<bool>(d.size(), false));
        for (size_t t = 0; t < T; ++t) {
          std::vector<bool> gtm(g.size(), false);
          for (size_t di = 0; di < d.size(); ++di) {
            double iou = std::min(p.iou_thresholds[t], 1 - 1e-10);
            int64_t m = -1;
            for (size_t s = 0; s < gi.size(); ++s) {
              const CocoAnnotation& ga = *g[gi[s]];
              if (gtm[s] && !ga.iscrowd) continue;
              if (m > -1 && !e.gt_ignore[static_cast<size_t>(m)] && e.gt_ignore[s]) break;
              const double v = naive_iou(d[di]->bbox, ga.bbox, ga.iscrowd);
              if (v < iou) continue;
              iou = v;
              m = static_cast<int64_t>(s);
            }
            if (m == -1) continue;
            e.dt_ignore[t][di] = e.gt_ignore[static_cast<size_t>(m)];
            e.dt_matches[t][di] = g[gi[static_cast<size_t>(m)]]->id;
            gtm[static_cast<size_t>(m)] = true;
          }
          for (size_t di = 0; di < d.size(); ++di) {
            const double area = d[di]->bbox[2] * d[di]->bbox[3];
            const bool out = area < p.area_ranges[a][0] || area > p.area_ranges[a][1];
            e.dt_ignore[t][di] = e.dt_ignore[t][di] || (e.dt_matches[t][di] == 0 && out);
          }
        }
        eval_imgs.push_back(std::move(e));
      }
    }
  }
  CocoEvalResult r;
  r.num_t = T, r.num_r = R, r.num_k = K, r.num_a = A, r.num_m = M;
  r.precision.assign(T * R * K * A * M, -1.0);
  r.scores.assign(T * R * K * A * M, -1.0);
  r.recall.assign(T * K * A * M, -1.0);
  for (size_t k = 0; k < K; ++k) {
    for (size_t a = 0; a < A; ++a) {
      for (size_t m = 0; m < M; ++m) {
        const size_t md = static_cast<size_t>(p.max_dets[m]);
        std::vector<double> sc;
        std::vector<std::vector<int64_t>> dtm(T);
        std::vector<std::vector<bool>> dtig(T);
        size_t npig = 0, n_e = 0;
        for (size_t i = 0; i < I; ++i) {
          const auto& e = eval_imgs[(k * A + a) * I + i];
          if (!e) continue;
          ++n_e;
          const size_t n = std::min(md, e->dt_scores.size());
          sc.insert(sc.end(), e->dt_scores.begin(), e->dt_scores.begin() + n);
          for (size_t t = 0; t < T; ++t) {
            dtm[t].insert(dtm[t].end(), e->dt_matches[t].begin(), e->dt_matches[t].begin() + n);
            dtig[t].insert(dtig[t].end(), e->dt_ignore[t].begin(), e->dt_ignore[t].begin() + n);
          }
          for (bool g : e->gt_ignore) npig += !g;
        }
        if (n_e == 0 || npig == 0) continue;
        std::vector<size_t> inds(sc.size());
        std::iota(inds.begin(), inds.end(), 0);
        std::stable_sort(inds.begin(), inds.end(),
                         [&](size_t x, size_t y) { return sc[x] > sc[y]; });
        const size_t nd = inds.size();
        for (size_t t = 0; t < T; ++t) {
          std::vector<double> rc(nd), pr(nd);
          int64_t tp = 0, fp = 0;
          for (size_t i = 0; i < nd; ++i) {
            const size_t j = inds[i];
            tp += dtm[t][j] != 0 && !dtig[t][j];
            fp += dtm[t][j] == 0 && !dtig[t][j];
            rc[i] = static_cast<double>(tp) / static_cast<double>(npig);
            pr[i] = static_cast<double>(tp) /
                    (static_cast<double>(fp) + static_cast<double>(tp) + 2.220446049250313e-16);
          }
          r.recall[((t * K + k) * A + a) * M + m] = nd ? rc[nd - 1] : 0.0;
          for (size_t i = nd; i-- > 1;) pr[i - 1] = std::max(pr[i - 1], pr[i]);
          for (size_t ri = 0; ri < R; ++ri) {
            const size_t idx = (((t * R + ri) * K + k) * A + a) * M + m;
            r.precision[idx] = 0.0;
            r.scores[idx] = 0.0;
          }
          for (size_t ri = 0; ri < R; ++ri) {
            const size_t pi = static_cast<size_t>(
                std::lower_bound(rc.begin(), rc.end(), p.recall_thresholds[ri]) - rc.begin());
            if (pi >= nd) break;
            const size_t idx = (((t * R + ri) * K + k) * A + a) * M + m;
            r.precision[idx] = pr[pi];
            r.scores[idx] = sc[inds[pi]];
          }
        }
      }
    }
  }
  return r;
}

TEST(CocoEvalReference, OptimisedMatchesLiteralTranscriptionOverRandomData) {
  for (uint32_t seed = 0; seed < 40; ++seed) {
    std::mt19937 rng(seed);
    auto uni = [&](double lo, double hi) {
      return std::uniform_real_distribution<double>(lo, hi)(rng);
    };
    auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
    CocoDataset gt;
    const size_t n_img = 1 + pick(8), n_cat = 1 + pick(4);
    for (size_t i = 0; i < n_img; ++i)
      gt.images.push_back({static_cast<int64_t>(i * 3 + pick(3)), "", 0, 0});
    for (size_t c = 0; c < n_cat; ++c)
      gt.categories.push_back({static_cast<int64_t>(c * 2 + 1), "", ""});
    std::vector<CocoDetection> dets;
    int64_t next_id = static_cast<int64_t>(pick(2));  // sometimes an annotation with id 0
    const double sizes[] = {0, 8, 10, 32, 96, 40.5};
    for (const CocoImage& img : gt.images) {
      for (size_t n = pick(12); n-- > 0;) {
        CocoAnnotation a;
        a.id = next_id++;
        a.image_id = img.id;
        a.category_id = gt.categories[pick(n_cat)].id;
        a.bbox = {std::round(uni(0, 60)), std::round(uni(0, 60)),
                  sizes[pick(6)] + pick(2) * uni(0, 50), sizes[1 + pick(5)]};
        a.area = pick(3) == 0 ? uni(0, 12000) : a.bbox[2] * a.bbox[3];
        a.iscrowd = pick(8) == 0;
        gt.annotations.push_back(a);
        for (size_t k = pick(4); k-- > 0;) {
          CocoDetection d{img.id, pick(5) == 0 ? gt.categories[pick(n_cat)].id : a.category_id,
                          a.bbox, std::round(uni(0, 10)) / 10};
          d.bbox[0] += pick(2) ? 0.0 : uni(-5, 5);
          d.bbox[2] *= pick(2) ? 1.0 : 0.5 + 0.25 * static_cast<double>(pick(3));
          dets.push_back(d);
        }
      }
      for (size_t n = pick(3) == 0 ? 30 : pick(3); n-- > 0;) {
        dets.push_back({img.id,
                        gt.categories[pick(n_cat)].id,
                        {uni(0, 80), uni(0, 80), uni(0, 60), uni(0, 60)},
                        std::round(uni(0, 4)) / 4});
      }
    }
    gt.index();
    CocoEvalParams p;
    p.use_cats = pick(3) != 0;
    if (pick(2)) p.max_dets = {1 + static_cast<int64_t>(pick(3)), 5, 12};
    if (pick(2)) p.iou_thresholds = {0.25, 0.5, 0.75, 1.0};
    if (pick(2)) p.recall_thresholds = {0.0, 0.3, 0.5, 0.9, 1.0};
    if (pick(2) && n_cat > 1) p.category_ids = {gt.categories[n_cat - 1].id, gt.categories[0].id};
    if (pick(3) == 0) p.image_ids = {gt.images[0].id};
    testing::internal::CaptureStderr();  // the id-0 warning
    const CocoEvalResult fast = evaluate_coco(gt, dets, p);
    testing::internal::GetCapturedStderr();
    const CocoEvalResult slow = naive_coco_eval(gt, dets, fast.params);
    ASSERT_EQ(fast.num_k, slow.num_k) << seed;
    EXPECT_EQ(fast.precision, slow.precision) << "seed " << seed;
    EXPECT_EQ(fast.recall, slow.recall) << "seed " << seed;
    EXPECT_EQ(fast.scores, slow.scores) << "seed " << seed;
  }
}

}  // namespace
}  // namespace setdet
