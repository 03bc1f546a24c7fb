// The objects of a VRD split relabelled as (class, attribute) pairs, for the "is" detector of the
// Open Images 2019 VRD winner (Sec. 3.1: object-attribute pairs as detection classes):
//
//   {type: VrdAttributeDataset, data_root: DIR, ann_file: annotations/instances_train.json,
//    vrd_file: annotations/vrd_train.csv, img_dir: train/, pipeline: [...], filter_empty: true,
//    attributes: [striped, dotted, checkered], plain: plain, separator: ':'}
//
// Classes, in label order: for each object category (by id) "<class><separator><plain>" (objects
// without an "is" row), then "<class><separator><attribute>" for each attribute (the config's
// list, else the "is" rows' attributes sorted by name). An "is" row (RelationshipLabel "is",
// LabelName2 the attribute, box 2 = box 1) belongs to the object of the image whose file name stem
// is its ImageID, with class LabelName1 and the same box (within 1e-4 of the image size). Errors
// name the row: an "is" row matching no object, an object with two attributes, an attribute not
// in the list.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "setdet/core/eval/vrd_eval.h"
#include "setdet/core/io/coco.h"

namespace setdet {

struct VrdAttributeClasses {
  std::vector<std::string> attributes;  // empty: the "is" rows' attributes, sorted
  std::string plain = "plain";
  std::string separator = ":";
};

// `objects` with every annotation's category replaced by its (class, attribute) category (ids
// 1..C(A + 1) in the order above). `vrd` holds the split's ground truth (read_vrd_ground_truth);
// `origin` names it in errors.
CocoDataset vrd_attribute_instances(const CocoDataset& objects, const VrdData& vrd,
                                    const std::string& origin, VrdAttributeClasses classes);

}  // namespace setdet
