#include "setdet/core/io/score_threshold_file.h"

#include <simdjson.h>

#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string_view>

#include "setdet/core/error.h"
#include "setdet/core/io/atomic_file.h"
#include "setdet/core/io/json_text.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;

struct FileState {
  int64_t bytes = 0;
  int64_t mtime_ns = 0;
};

FileState file_state(const std::string& path) {
  struct stat st {};
  SETDET_CHECK(::stat(path.c_str(), &st) == 0, path, ": cannot stat it (", std::strerror(errno),
               ")");
  return {static_cast<int64_t>(st.st_size),
          static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

}  // namespace

std::string score_threshold_path(const std::string& checkpoint) {
  fs::path p(checkpoint);
  return (p.parent_path() / (p.stem().string() + ".score_threshold.json")).string();
}

void write_score_threshold(const std::string& checkpoint, const CocoOperatingPoint& point,
                           const std::string& split, int64_t images) {
  const FileState state = file_state(checkpoint);
  std::string out = "{\n";
  const auto field = [&](const char* key, const std::string& value) {
    out += std::string("  \"") + key + "\": " + value + ",\n";
  };
  field("checkpoint", json_string(fs::path(checkpoint).filename().string()));
  field("checkpoint_bytes", std::to_string(state.bytes));
  field("checkpoint_mtime_ns", std::to_string(state.mtime_ns));
  field("split", json_string(split));
  field("images", std::to_string(images));
  field("iou_threshold", json_number(point.iou_threshold));
  field("precision", json_number(point.precision));
  field("recall", json_number(point.recall));
  field("f1", json_number(point.f1));
  field("true_positives", std::to_string(point.true_positives));
  field("false_positives", std::to_string(point.false_positives));
  field("ground_truth", std::to_string(point.ground_truth));
  out += "  \"score_threshold\": " + json_number(point.score_threshold) + "\n}\n";
  write_file_atomic(score_threshold_path(checkpoint), out);
}

std::optional<StoredScoreThreshold> read_score_threshold(const std::string& checkpoint) {
  const std::string path = score_threshold_path(checkpoint);
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) return std::nullopt;
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  const auto error = parser.load(path).get(doc);
  SETDET_CHECK(!error, path, ": not valid JSON (", simdjson::error_message(error), ")");
  const auto number = [&](const char* key) {
    double v = 0.0;  // DOM get_double() reads integers too
    SETDET_CHECK(!doc[key].get_double().get(v), path, ": \"", key,
                 "\" is missing or not a number");
    SETDET_CHECK(std::isfinite(v), path, ": \"", key, "\" must be finite");
    return v;
  };
  const auto integer = [&](const char* key) {
    int64_t v = 0;
    SETDET_CHECK(!doc[key].get_int64().get(v), path, ": \"", key,
                 "\" is missing or not an integer");
    return v;
  };
  const FileState state = file_state(checkpoint);
  if (integer("checkpoint_bytes") != state.bytes ||
      integer("checkpoint_mtime_ns") != state.mtime_ns) {
    return std::nullopt;
  }
  StoredScoreThreshold s;
  s.path = path;
  s.point.score_threshold = number("score_threshold");
  SETDET_CHECK(s.point.score_threshold >= 0.0 && s.point.score_threshold <= 1.0, path,
               ": \"score_threshold\" must be in [0, 1], got ", s.point.score_threshold);
  s.point.iou_threshold = number("iou_threshold");
  s.point.precision = number("precision");
  s.point.recall = number("recall");
  s.point.f1 = number("f1");
  s.point.true_positives = integer("true_positives");
  s.point.false_positives = integer("false_positives");
  s.point.ground_truth = integer("ground_truth");
  s.images = integer("images");
  std::string_view split;
  SETDET_CHECK(!doc["split"].get_string().get(split), path, ": \"split\" must be a string");
  s.split = std::string(split);
  return s;
}

}  // namespace setdet
