// Stage 1 of the VRD pipeline at inference: trained setdet detectors run over a split's images;
// their boxes become the candidate objects of the relationship models (several detectors fused by
// weighted boxes fusion, the Open Images 2019 winner's ensembling), and the detections of the
// attribute detector ("is" classes "<class><separator><attribute>") become "is" relationships.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "setdet/core/dedup/wbf.h"
#include "setdet/vrd/vrd_split.h"

namespace setdet {

struct VrdDetectorSpec {
  std::string config;      // the detector's training config (model, test-time pipeline)
  std::string checkpoint;  // its weights
  double weight = 1.0;     // weight in the fusion
};

// One detection in normalised xyxy, with the detector's own label.
struct VrdDetection {
  std::array<float, 4> box{};
  float score = 0.0f;
  int32_t label = 0;
};

struct DetectorRun {
  std::vector<std::string> class_names;           // the detector's classes, label order
  std::vector<std::vector<VrdDetection>> images;  // per image of the split
  double seconds = 0.0;
};

// Runs `spec`'s detector (test-time pipeline of its data.test, else data.val; class names from that
// split's dataset) over `images`, `batch_size` images per batch; `progress(done, total)` after each
// batch. Boxes are clipped to the image.
DetectorRun run_detector(const VrdDetectorSpec& spec, const std::vector<VrdImageRecord>& images,
                         int64_t batch_size,
                         const std::function<void(int64_t, int64_t)>& progress = {});

// A detector class name split at the first `separator`: (class, attribute); attribute "" when the
// name has no separator.
std::pair<std::string, std::string> split_class_name(const std::string& name,
                                                     const std::string& separator);

// Per image, the candidate objects from one or several detector runs: each detection's class is
// the part of its class name before `separator` (an error if it is not in `classes`); one run is
// taken as it is, several are fused per image with weighted_boxes_fusion (`weights`, `fusion`).
std::vector<std::vector<VrdObject>> objects_from_detections(const std::vector<DetectorRun>& runs,
                                                            const std::vector<double>& weights,
                                                            const WbfOptions& fusion,
                                                            const std::vector<std::string>& classes,
                                                            const std::string& separator);

}  // namespace setdet
