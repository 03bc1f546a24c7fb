// VrdAttributeDataset: the objects of a `setdet data synth-vrd` split relabelled (class,
// attribute), class order, agreement with the "is" rows, use by a loader, and errors.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include "setdet/data/dataset.h"
#include "setdet/data/synthetic_vrd.h"
#include "setdet/data/vrd_attribute_dataset.h"
#include "setdet/vrd/vrd_split.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

class VrdAttributeDatasetTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new test_util::TempDir("vrd_attribute_dataset");
    SyntheticVrdOptions o;
    o.out_dir = dir_->path.string();
    o.num_train = 12;
    o.num_val = 1;
    o.num_test = 1;
    o.size = 128;
    generate_synthetic_vrd_dataset(o);
  }
  static void TearDownTestSuite() { delete dir_; }

  static std::string yaml(const std::string& vrd_file, const std::string& extra = "") {
    return "{type: VrdAttributeDataset, data_root: '" + dir_->path.string() +
           "', ann_file: annotations/instances_train.json, vrd_file: " + vrd_file +
           ", img_dir: train/" + extra + "}";
  }
  static test_util::TempDir* dir_;
};
test_util::TempDir* VrdAttributeDatasetTest::dir_ = nullptr;

TEST_F(VrdAttributeDatasetTest, RelabelsEveryObjectByItsIsRow) {
  const auto ds = DatasetRegistry().build(Config::parse(
      yaml("annotations/vrd_train.csv", ", attributes: [striped, dotted, checkered]")));
  const auto& names = ds->class_names();
  ASSERT_EQ(names.size(), 24u);
  EXPECT_EQ(names[0], "circle:plain");
  EXPECT_EQ(names[1], "circle:striped");
  EXPECT_EQ(names[3], "circle:checkered");
  EXPECT_EQ(names[4], "square:plain");
  EXPECT_EQ(names[23], "cross:checkered");

  // the same objects, read as the VRD pipeline reads them
  VrdSplitFiles files;
  files.instances = (dir_->path / "annotations/instances_train.json").string();
  files.images = (dir_->path / "train").string();
  files.relationships = (dir_->path / "annotations/vrd_train.csv").string();
  const VrdSplit split = read_vrd_split(files);
  const std::vector<std::string> attributes{"plain", "striped", "dotted", "checkered"};
  ASSERT_EQ(ds->size(), static_cast<int64_t>(split.images.size()));
  int64_t with_attribute = 0, total = 0;
  for (int64_t i = 0; i < ds->size(); ++i) {
    const auto& im = split.images[static_cast<size_t>(i)];
    const auto labels = ds->target_labels(i);
    ASSERT_EQ(labels.size(), im.objects.size());
    for (size_t k = 0; k < labels.size(); ++k) {
      std::string attribute = "plain";
      for (const auto& a : im.attributes) {
        if (a.object == static_cast<int32_t>(k)) attribute = a.attribute;
      }
      EXPECT_EQ(names[static_cast<size_t>(labels[k])],
                split.classes[static_cast<size_t>(im.objects[k].label)] + ":" + attribute);
      with_attribute += attribute != "plain";
      ++total;
    }
  }
  EXPECT_GT(with_attribute, 0);
  EXPECT_LT(with_attribute, total);
  // the evaluation ground truth carries the new categories
  EXPECT_EQ(ds->ground_truth()->categories.size(), 24u);
  Rng rng({0});
  const Sample s = ds->get(0, rng);
  EXPECT_EQ(s.labels, ds->target_labels(0));

  // attributes sorted by name when not listed; other plain name and separator
  const auto sorted = DatasetRegistry().build(
      Config::parse(yaml("annotations/vrd_train.csv", ", plain: none, separator: ' is '")));
  EXPECT_EQ(sorted->class_names()[0], "circle is none");
  EXPECT_EQ(sorted->class_names()[1], "circle is checkered");
  EXPECT_EQ(sorted->class_names()[3], "circle is striped");
}

TEST_F(VrdAttributeDatasetTest, Errors) {
  const auto bad = (dir_->path / "bad.csv").string();
  std::ofstream(bad) << "ImageID,LabelName1,LabelName2,XMin1,XMax1,YMin1,YMax1,XMin2,XMax2,YMin2,"
                        "YMax2,RelationshipLabel\n"
                        "train_000000,circle,striped,0,0.01,0,0.01,0,0.01,0,0.01,is\n";
  std::string e = error_of([&] { DatasetRegistry().build(Config::parse(yaml(bad))); });
  EXPECT_NE(e.find(bad + ": 'is' row 1 (train_000000, circle is striped, box"), std::string::npos)
      << e;
  EXPECT_NE(e.find("matches no circle of"), std::string::npos) << e;
  e = error_of([&] {
    DatasetRegistry().build(
        Config::parse(yaml("annotations/vrd_train.csv", ", attributes: [striped, dotted]")));
  });
  EXPECT_NE(e.find("attribute 'checkered' is not among the attributes (striped, dotted)"),
            std::string::npos)
      << e;
  e = error_of([&] {
    DatasetRegistry().build(Config::parse(yaml("annotations/vrd_train.csv", ", colour: red")));
  });
  EXPECT_NE(e.find("unknown key 'colour'"), std::string::npos) << e;
}

}  // namespace
}  // namespace setdet
