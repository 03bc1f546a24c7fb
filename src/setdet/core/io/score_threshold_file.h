// The drawing threshold of a checkpoint: `setdet test` finds the score that maximises F1 on the
// split it evaluates (CocoOperatingPoint) and stores it beside the checkpoint, as
// CKPT_DIR/<stem>.score_threshold.json; `setdet infer` and setdet::Detector read it back. The
// file records the checkpoint's size and modification time: a checkpoint written again (training
// went on) no longer matches its old threshold, which is then not used.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "setdet/core/eval/coco_eval.h"

namespace setdet {

struct StoredScoreThreshold {
  CocoOperatingPoint point;
  std::string split;  // the split it was found on ("val", "test")
  int64_t images = 0;
  std::string path;   // the file read
};

// CKPT_DIR/<stem of checkpoint>.score_threshold.json
std::string score_threshold_path(const std::string& checkpoint);

// Writes the file of `checkpoint` (atomically). Throws setdet::Error naming the file on failure.
void write_score_threshold(const std::string& checkpoint, const CocoOperatingPoint& point,
                           const std::string& split, int64_t images);

// The stored threshold of `checkpoint`, or nothing when there is no file or it belongs to another
// state of the checkpoint (size or modification time differ). A file that is not such JSON is an
// error naming it.
std::optional<StoredScoreThreshold> read_score_threshold(const std::string& checkpoint);

}  // namespace setdet
