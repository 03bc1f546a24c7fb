// Partial weight transfer (Open Images 2019 VRD winner, Sec. 2.1, Eq. 1): a model for a new set
// of classes starts from a trained one. Every target tensor the source has with the same shape is
// copied (backbone, neck, shared head layers, box regression); in the tensors whose rows are
// classes (classifier logits), target class k gets the rows of source class g(k), and keeps its
// fresh initialisation when g(k) is unset:
//
//   z_k = w_src[g(k)] . x + b_src[g(k)]   if g(k) is set,   w_task[k] . x + b_task[k]   otherwise.
//
// One source class may feed many target classes ("person" -> "man", "woman", "boy").
//
// The map file of `setdet transfer --map MAP.yaml SRC DST`:
//
//   target_config: configs/vrd/fcos_attributes_demo.yaml  # its `model` node builds the target
//   seed: 0                                 # seeds the target's initialisation (default 0)
//   source_classes: [circle, square]        # the source model's classes, in label order
//   target_classes: [circle:plain, circle:striped, square:plain, square:striped]
//   classes: {circle:plain: circle, circle:striped: circle, square:plain: square}
//                                           # target -> source; unlisted targets stay as built
//   class_tensors:                          # tensors whose dim 0 is classes
//     - {name: 'head\.classification_head\.cls_logits\.(weight|bias)'}
//     - {name: 'roi_head\.box_predictor\.cls_score\.(weight|bias)', background: last}
//     - {name: 'roi_head\.box_predictor\.bbox_pred\.(weight|bias)', background: last,
//        rows_per_class: 4}
//   keep_initialised: ['head\.centerness\..*']  # target tensors never copied (optional)
//
// Dim 0 of a class tensor is A groups (anchors) of (C + background) classes of rows_per_class
// rows: row = (a (C + bg) + slot(c)) rows_per_class + r, slot(c) = c (+1 when the background
// comes first); background rows are copied as they are. Names are whole-name regexes
// (std::regex_match, ECMAScript). Relative target_config paths are relative to the working
// directory, as every config path in setdet.
#pragma once

#include <torch/nn/module.h>

#include <cstdint>
#include <regex>
#include <string>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/io/pth.h"

namespace setdet {

struct ClassTensorRule {
  enum class Background { kNone, kFirst, kLast };
  std::string name_text;
  std::regex name;
  Background background = Background::kNone;
  int64_t rows_per_class = 1;
};

struct WeightTransferPlan {
  int64_t source_classes = 0;
  std::vector<int64_t> target_to_source;  // per target class: a source class, or -1 (as built)
  std::vector<ClassTensorRule> class_tensors;
  std::vector<std::string> keep_initialised_text;
  std::vector<std::regex> keep_initialised;

  // From a map file's node (class names resolved to indices). Unknown keys, unknown class names,
  // duplicates and bad regexes are errors naming the key path.
  static WeightTransferPlan from_config(const Config& map);
};

struct WeightTransferReport {
  std::vector<std::string> copied;       // whole tensors copied from the source
  std::vector<std::string> class_rows;   // class tensors: mapped rows copied, others as built
  std::vector<std::string> initialised;  // left as built (not in the source, or keep_initialised)
  int64_t mapped_classes = 0;            // target classes with a source class
};

// Applies `plan` to `target` (its parameters and buffers, in place) from `source` (named CPU
// tensors, e.g. a checkpoint's). Errors, naming `origin` and the tensor: a class tensor missing
// from the source or whose dim 0 is not A (C + bg) rows_per_class on both sides with the same A, a
// class tensor whose other dims differ, any other tensor whose shape differs from the source's.
// Nothing is modified when an error is thrown.
WeightTransferReport transfer_weights(const std::string& origin, const NamedTensors& source,
                                      torch::nn::Module& target, const WeightTransferPlan& plan);

}  // namespace setdet
