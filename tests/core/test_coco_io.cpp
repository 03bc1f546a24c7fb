#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/coco.h"
#include "setdet/core/io/json_text.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;

const std::string kDataDir = std::string(SETDET_TEST_DATA_DIR) + "/coco";

class CocoIo : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("setdet_coco_io_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) const {
    const std::string path = (dir_ / name).string();
    std::ofstream(path) << text;
    return path;
  }

  // A valid two-image ground truth; `annotations` replaces the annotation list.
  std::string gt_json(const std::string& annotations =
                          R"([{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                               "area": 100, "iscrowd": 0}])",
                      const std::string& images = R"([{"id": 1}, {"id": 2}])",
                      const std::string& categories = R"([{"id": 1, "name": "a"}])") const {
    return R"({"images": )" + images + R"(, "annotations": )" + annotations +
           R"(, "categories": )" + categories + "}";
  }

  std::string load_gt_error(const std::string& text) {
    const std::string path = write("gt.json", text);
    try {
      load_coco_instances(path);
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error for " << text;
    return "";
  }

  std::string load_dt_error(const std::string& text) {
    const CocoDataset gt = load_coco_instances(write("gt.json", gt_json()));
    const std::string path = write("dt.json", text);
    try {
      load_coco_results(path, &gt);
    } catch (const Error& e) {
      return e.what();
    }
    ADD_FAILURE() << "no error for " << text;
    return "";
  }

  fs::path dir_;
};

// A detection list with a valid record before the one under test (index 1).
std::string dets_with(const std::string& second) {
  return R"([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}, )" + second +
         "]";
}

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "'" << text << "' does not contain '" << part << "'";
}

TEST_F(CocoIo, ReadsTheEdgeCaseSet) {
  const CocoDataset gt = load_coco_instances(kDataDir + "/eval_gt.json");
  EXPECT_EQ(gt.images.size(), 38u);
  EXPECT_EQ(gt.annotations.size(), 464u);
  ASSERT_EQ(gt.categories.size(), 6u);
  EXPECT_EQ(gt.categories[5].id, 9);
  EXPECT_EQ(gt.categories[5].name, "c9");
  EXPECT_EQ(gt.images[0].file_name, "1.jpg");
  EXPECT_EQ(gt.images[0].width, 640);
  EXPECT_TRUE(gt.image_index.count(1099511627779LL));
  // {"id": 3, ..., "bbox": [200, 0, 10, 10], "area": 100, "iscrowd": 0}
  EXPECT_EQ(gt.annotations[2].bbox[0], 200.0);
  EXPECT_EQ(gt.annotations[2].area, 100.0);
  // the crowd annotation of image 3 with a given area
  const auto crowd = std::find_if(gt.annotations.begin(), gt.annotations.end(),
                                  [](const CocoAnnotation& a) { return a.iscrowd; });
  ASSERT_NE(crowd, gt.annotations.end());
  EXPECT_EQ(crowd->image_id, 3);
  EXPECT_EQ(crowd->area, 30000.0);
  const std::vector<CocoDetection> dets = load_coco_results(kDataDir + "/eval_dt.json", &gt);
  EXPECT_EQ(dets.size(), 646u);
  EXPECT_EQ(dets[1].bbox[3], 7.5);
  EXPECT_EQ(dets[1].score, 0.8);
}

TEST_F(CocoIo, ResultsRoundTripExactly) {
  std::vector<CocoDetection> dets(4);
  dets[0] = {1, 3, {0.1, 1.0 / 3.0, 1e-300, 123456789.125}, 0.30000000000000004};
  dets[1] = {9007199254740993LL, -2, {-5.5, 0, 0, 7}, 1.0};
  dets[2] = {2, 3, {1e300, 2.5e-308, 5e-324, 0.7}, 0.0};
  dets[3] = {2, 3, {3, 4, 5, 6}, std::nextafter(0.5, 1.0)};
  const std::string path = (dir_ / "out.json").string();
  write_coco_results(path, dets);
  const std::vector<CocoDetection> back = load_coco_results(path);
  ASSERT_EQ(back.size(), dets.size());
  for (size_t i = 0; i < dets.size(); ++i) {
    EXPECT_EQ(back[i].image_id, dets[i].image_id);
    EXPECT_EQ(back[i].category_id, dets[i].category_id);
    for (size_t j = 0; j < 4; ++j) EXPECT_EQ(back[i].bbox[j], dets[i].bbox[j]) << i << "," << j;
    EXPECT_EQ(back[i].score, dets[i].score);
  }
}

TEST_F(CocoIo, InstancesRoundTripExactly) {
  CocoDataset ds;
  ds.images = {{7, "a \"quoted\"\\name\n.jpg", 640, 480}, {8, "b.jpg", 1, 2}};
  ds.categories = {{3, "tab\there", "s"}, {4, "", ""}};
  ds.annotations = {{0, 7, 3, {0.1, 0.2, 10.5, 1.0 / 7.0}, 1.0 / 3.0, true},
                    {5, 8, 4, {1, 2, 3, 4}, 12, false}};
  const std::string path = (dir_ / "gt_out.json").string();
  write_coco_instances(path, ds);
  const CocoDataset back = load_coco_instances(path);
  ASSERT_EQ(back.images.size(), 2u);
  EXPECT_EQ(back.images[0].file_name, ds.images[0].file_name);
  EXPECT_EQ(back.images[1].height, 2);
  EXPECT_EQ(back.categories[0].name, "tab\there");
  ASSERT_EQ(back.annotations.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(back.annotations[i].id, ds.annotations[i].id);
    EXPECT_EQ(back.annotations[i].image_id, ds.annotations[i].image_id);
    EXPECT_EQ(back.annotations[i].category_id, ds.annotations[i].category_id);
    EXPECT_EQ(back.annotations[i].bbox, ds.annotations[i].bbox);
    EXPECT_EQ(back.annotations[i].area, ds.annotations[i].area);
    EXPECT_EQ(back.annotations[i].iscrowd, ds.annotations[i].iscrowd);
  }
  EXPECT_EQ(back.path, path);
  EXPECT_EQ(back.image_index.at(8), 1u);
}

TEST_F(CocoIo, AcceptsPycocotoolsLenientInput) {
  // float ids with integral values, booleans for iscrowd, missing iscrowd (read as 0), extra
  // keys (segmentation, info, licenses), an empty result list
  const std::string gt_path = write(
      "gt.json",
      R"({"info": {"x": [1, 2]}, "licenses": [], "images": [{"id": 1.0, "extra": null}, {"id": 2}],
          "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10],
                           "area": 100.0, "iscrowd": true, "segmentation": [[1, 2, 3]]},
                          {"id": 2, "image_id": 2, "category_id": 1, "bbox": [0.5, 0, 1e1, 10],
                           "area": 1E2}],
          "categories": [{"id": 1}]})");
  const CocoDataset gt = load_coco_instances(gt_path);
  ASSERT_EQ(gt.annotations.size(), 2u);
  EXPECT_TRUE(gt.annotations[0].iscrowd);
  EXPECT_FALSE(gt.annotations[1].iscrowd);
  EXPECT_EQ(gt.annotations[1].bbox[2], 10.0);
  EXPECT_EQ(gt.images[0].id, 1);
  const auto dets = load_coco_results(
      write("dt.json", R"([{"image_id": 2.0, "category_id": 1, "bbox": [1, 2, 3, 4],
                            "score": 1, "segmentation": {"counts": "abc"}, "id": 99}])"),
      &gt);
  ASSERT_EQ(dets.size(), 1u);
  EXPECT_EQ(dets[0].image_id, 2);
  EXPECT_EQ(dets[0].score, 1.0);
  EXPECT_TRUE(load_coco_results(write("empty.json", " [ ] "), &gt).empty());
}

TEST_F(CocoIo, WritesAtomicallyAndReplaces) {
  const std::string path = (dir_ / "x.json").string();
  write_file_atomic(path, "old");
  write_file_atomic(path, "new content");
  std::ifstream in(path);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(text, "new content");
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir_)) {
    (void)entry;
    ++files;
  }
  EXPECT_EQ(files, 1u);  // no temporary left behind
}

TEST_F(CocoIo, AtomicWriteNamesTheTargetOnFailure) {
  const std::string path = (dir_ / "missing_dir" / "x.json").string();
  try {
    write_file_atomic(path, "data");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), path + ": cannot create temporary file"));
  }
}

TEST_F(CocoIo, WriteRejectsNonFiniteNumbers) {
  std::vector<CocoDetection> dets(1);
  dets[0].score = std::numeric_limits<double>::quiet_NaN();
  const std::string path = (dir_ / "bad.json").string();
  try {
    write_coco_results(path, dets);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "bad.json: [0]: cannot write score nan"));
  }
  EXPECT_FALSE(fs::exists(path));
}

// ---- one test per error: results files ----

TEST_F(CocoIo, ErrorMissingFile) {
  try {
    load_coco_results((dir_ / "nope.json").string());
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "nope.json: cannot read file"));
  }
}

TEST_F(CocoIo, ErrorInvalidJson) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1 "category_id": 1})")),
                       "dt.json: [1]: invalid JSON ("));
}

TEST_F(CocoIo, ErrorTrailingContent) {
  EXPECT_TRUE(
      contains(load_dt_error("[] []"),
               "dt.json: top level: invalid JSON (unexpected content after the top value)"));
}

TEST_F(CocoIo, ErrorResultsNotAnArray) {
  EXPECT_TRUE(contains(load_dt_error(R"({"annotations": []})"),
                       "dt.json: top level: expected an array of results {image_id, category_id, "
                       "bbox, score}, got an object"));
}

TEST_F(CocoIo, ErrorResultNotAnObject) {
  EXPECT_TRUE(contains(load_dt_error(dets_with("[1, 2]")),
                       "dt.json: [1]: expected an object, got an array"));
}

TEST_F(CocoIo, ErrorResultMissingScore) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 5, 5]})")),
                       "dt.json: [1]: missing field \"score\""));
}

TEST_F(CocoIo, ErrorResultMissingBbox) {
  EXPECT_TRUE(
      contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1, "score": 0.1})")),
               "dt.json: [1]: missing field \"bbox\""));
}

TEST_F(CocoIo, ErrorImageIdWrongType) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": "1", "category_id": 1,
                                                  "bbox": [0, 0, 5, 5], "score": 0.1})")),
                       "dt.json: [1].image_id: expected an integer, got a string"));
}

TEST_F(CocoIo, ErrorImageIdNotIntegral) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1.5, "category_id": 1,
                                                  "bbox": [0, 0, 5, 5], "score": 0.1})")),
                       "dt.json: [1].image_id: expected an integer, got 1.5"));
}

TEST_F(CocoIo, ErrorImageIdOutOfRange) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 18446744073709551615,
                                                  "category_id": 1, "bbox": [0, 0, 5, 5],
                                                  "score": 0.1})")),
                       "dt.json: [1].image_id: expected an integer in the int64 range, got "
                       "18446744073709551615"));
}

TEST_F(CocoIo, ErrorNegativeWidth) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, -3, 5], "score": 0.1})")),
                       "dt.json: [1].bbox[2]: width must be >= 0, got -3"));
}

TEST_F(CocoIo, ErrorNegativeHeight) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 3, -0.25], "score": 0.1})")),
                       "dt.json: [1].bbox[3]: height must be >= 0, got -0.25"));
}

TEST_F(CocoIo, ErrorBboxWrongLength) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 3], "score": 0.1})")),
                       "dt.json: [1].bbox: expected 4 numbers [x, y, w, h], got 3"));
}

TEST_F(CocoIo, ErrorBboxNotAnArray) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1,
                                                  "bbox": "0 0 3 3", "score": 0.1})")),
                       "dt.json: [1].bbox: expected an array [x, y, w, h], got a string"));
}

TEST_F(CocoIo, ErrorBboxValueWrongType) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1,
                                                  "bbox": [0, null, 3, 3], "score": 0.1})")),
                       "dt.json: [1].bbox[1]: expected a number, got null"));
}

TEST_F(CocoIo, ErrorScoreNaN) {
  // Python's json.dump writes NaN for float('nan'); pycocotools would read it
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 3, 3], "score": NaN})")),
                       "dt.json: [1].score: expected a finite number, got NaN"));
}

TEST_F(CocoIo, ErrorBboxInfinity) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1,
                                                  "bbox": [0, -Infinity, 3, 3], "score": 1})")),
                       "dt.json: [1].bbox[1]: expected a finite number, got -Infinity"));
}

TEST_F(CocoIo, ErrorNumberOverflow) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 3, 3], "score": 1e400})")),
                       "dt.json: [1].score: expected a finite number, got 1e400"));
}

TEST_F(CocoIo, ErrorResultImageNotInGroundTruth) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 42, "category_id": 1,
                                                  "bbox": [0, 0, 3, 3], "score": 1})")),
                       "dt.json: [1].image_id: image 42 is not in the ground truth"));
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 42, "category_id": 1,
                                                  "bbox": [0, 0, 3, 3], "score": 1})")),
                       "(pycocotools: Results do not correspond to current coco set)"));
}

TEST_F(CocoIo, ErrorResultCategoryNotInGroundTruth) {
  EXPECT_TRUE(contains(load_dt_error(dets_with(R"({"image_id": 2, "category_id": 91,
                                                  "bbox": [0, 0, 3, 3], "score": 1})")),
                       "dt.json: [1].category_id: category 91 is not in the ground truth"));
}

// ---- one test per error: instances files ----

TEST_F(CocoIo, ErrorInstancesNotAnObject) {
  EXPECT_TRUE(contains(load_gt_error("[]"),
                       "gt.json: top level: expected an object with \"images\", \"annotations\" "
                       "and \"categories\", got an array"));
}

TEST_F(CocoIo, ErrorInstancesMissingImages) {
  EXPECT_TRUE(contains(load_gt_error(R"({"annotations": [], "categories": []})"),
                       "gt.json: top level: missing field \"images\""));
}

TEST_F(CocoIo, ErrorInstancesMissingAnnotations) {
  EXPECT_TRUE(contains(load_gt_error(R"({"images": [], "categories": []})"),
                       "gt.json: top level: missing field \"annotations\""));
}

TEST_F(CocoIo, ErrorImagesNotAnArray) {
  EXPECT_TRUE(contains(load_gt_error(gt_json("[]", R"({"id": 1})")),
                       "gt.json: images: expected an array of images, got an object"));
}

TEST_F(CocoIo, ErrorImageMissingId) {
  EXPECT_TRUE(contains(load_gt_error(gt_json("[]", R"([{"id": 1}, {"file_name": "x.jpg"}])")),
                       "gt.json: images[1]: missing field \"id\""));
}

TEST_F(CocoIo, ErrorImageFileNameWrongType) {
  EXPECT_TRUE(contains(load_gt_error(gt_json("[]", R"([{"id": 1, "file_name": 3}])")),
                       "gt.json: images[0].file_name: expected a string, got a number"));
}

TEST_F(CocoIo, ErrorAnnotationMissingArea) {
  // pycocotools compares ann['area'] with the area ranges: a KeyError there
  EXPECT_TRUE(contains(load_gt_error(gt_json(R"([{"id": 1, "image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 1, 1], "area": 1},
                                                 {"id": 2, "image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 1, 1]}])")),
                       "gt.json: annotations[1]: missing field \"area\""));
}

TEST_F(CocoIo, ErrorAnnotationMissingBbox) {
  EXPECT_TRUE(contains(load_gt_error(gt_json(R"([{"id": 1, "image_id": 1, "category_id": 1,
                                                  "area": 1}])")),
                       "gt.json: annotations[0]: missing field \"bbox\""));
}

TEST_F(CocoIo, ErrorAnnotationMissingId) {
  EXPECT_TRUE(contains(load_gt_error(gt_json(R"([{"image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 1, 1], "area": 1}])")),
                       "gt.json: annotations[0]: missing field \"id\""));
}

TEST_F(CocoIo, ErrorAnnotationNegativeArea) {
  EXPECT_TRUE(contains(load_gt_error(gt_json(R"([{"id": 1, "image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 1, 1], "area": -2.5}])")),
                       "gt.json: annotations[0].area: area must be >= 0, got -2.5"));
}

TEST_F(CocoIo, ErrorAnnotationNegativeWidth) {
  EXPECT_TRUE(contains(load_gt_error(gt_json(R"([{"id": 1, "image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, -1, 1], "area": 1}])")),
                       "gt.json: annotations[0].bbox[2]: width must be >= 0, got -1"));
}

TEST_F(CocoIo, ErrorAnnotationIscrowdNotAFlag) {
  EXPECT_TRUE(contains(load_gt_error(gt_json(R"([{"id": 1, "image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 1, 1], "area": 1,
                                                  "iscrowd": 2}])")),
                       "gt.json: annotations[0].iscrowd: expected 0 or 1, got 2"));
}

TEST_F(CocoIo, ErrorAnnotationImageNotInImages) {
  EXPECT_TRUE(contains(load_gt_error(gt_json(R"([{"id": 1, "image_id": 5, "category_id": 1,
                                                  "bbox": [0, 0, 1, 1], "area": 1}])")),
                       "gt.json: annotations[0].image_id: image 5 is not in \"images\""));
}

TEST_F(CocoIo, ErrorAnnotationCategoryNotInCategories) {
  EXPECT_TRUE(contains(load_gt_error(gt_json(R"([{"id": 1, "image_id": 1, "category_id": 4,
                                                  "bbox": [0, 0, 1, 1], "area": 1}])")),
                       "gt.json: annotations[0].category_id: category 4 is not in "
                       "\"categories\""));
}

TEST_F(CocoIo, ErrorDuplicateImageId) {
  EXPECT_TRUE(contains(load_gt_error(gt_json("[]", R"([{"id": 1}, {"id": 2}, {"id": 1}])")),
                       "gt.json: images[2].id: duplicate id 1 (also images[0].id)"));
}

TEST_F(CocoIo, ErrorDuplicateAnnotationId) {
  EXPECT_TRUE(contains(load_gt_error(gt_json(R"([{"id": 7, "image_id": 1, "category_id": 1,
                                                  "bbox": [0, 0, 1, 1], "area": 1},
                                                 {"id": 7, "image_id": 2, "category_id": 1,
                                                  "bbox": [0, 0, 1, 1], "area": 1}])")),
                       "gt.json: annotations[1].id: duplicate id 7 (also annotations[0].id)"));
}

TEST_F(CocoIo, ErrorDuplicateCategoryId) {
  EXPECT_TRUE(contains(
      load_gt_error(gt_json("[]", R"([{"id": 1}])", R"([{"id": 3}, {"id": 3, "name": "b"}])")),
      "gt.json: categories[1].id: duplicate id 3 (also categories[0].id)"));
}

TEST(JsonText, EscapesQuotesBackslashesAndControlCharactersOnly) {
  EXPECT_EQ(json_string("plain"), "\"plain\"");
  EXPECT_EQ(json_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
  EXPECT_EQ(json_string("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
  EXPECT_EQ(json_string(std::string("x\x01y\x1f", 4)), "\"x\\u0001y\\u001f\"");
  EXPECT_EQ(json_string("caf\xc3\xa9.jpg"), "\"caf\xc3\xa9.jpg\"");  // UTF-8 bytes unchanged
  std::string out = "[";
  append_json_string(out, "");
  EXPECT_EQ(out, "[\"\"");
}

}  // namespace
}  // namespace setdet
