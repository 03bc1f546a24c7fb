// The Open Images VRD CSV readers and the metric: the first input byte chooses which of the three
// files (ground truth, image labels, detections) the rest of the input replaces; the other two
// are a small valid set. Any input either evaluates or is a setdet::Error.
#include <cstddef>
#include <cstdint>
#include <string>

#include "setdet/core/error.h"
#include "setdet/core/eval/vrd_eval.h"
#include "setdet/core/io/csv.h"

namespace {

const char* const kGroundTruth =
    "ImageID,LabelName1,LabelName2,XMin1,XMax1,YMin1,YMax1,XMin2,XMax2,YMin2,YMax2,"
    "RelationshipLabel\n"
    "img1,man,horse,0.1,0.5,0.1,0.5,0.4,0.9,0.3,0.9,rides\n"
    "img1,horse,brown,0.4,0.9,0.3,0.9,0.4,0.9,0.3,0.9,is\n";
const char* const kLabels = "ImageID,LabelName,Confidence\nimg1,brown,1\nimg1,man,1\n";
const char* const kDetections =
    "ImageID,LabelName1,LabelName2,XMin1,XMax1,YMin1,YMax1,XMin2,XMax2,YMin2,YMax2,"
    "RelationshipLabel,Score\n"
    "img1,man,horse,0.1,0.5,0.1,0.5,0.4,0.9,0.3,0.9,rides,0.9\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace setdet;
  if (size == 0) return 0;
  const int which = data[0] % 3;
  const std::string fuzzed(reinterpret_cast<const char*>(data) + 1, size - 1);
  try {
    VrdData vrd;
    auto gt = CsvReader::from_string(which == 0 ? fuzzed : kGroundTruth, "gt.csv");
    read_vrd_ground_truth(gt, vrd);
    auto labels = CsvReader::from_string(which == 1 ? fuzzed : kLabels, "labels.csv");
    read_vrd_image_labels(labels, vrd);
    auto dt = CsvReader::from_string(which == 2 ? fuzzed : kDetections, "dt.csv");
    read_vrd_detections(dt, vrd);
    const VrdEvalResult r = evaluate_vrd(vrd);
    (void)r.challenge_score();
  } catch (const Error&) {
  }
  return 0;
}
