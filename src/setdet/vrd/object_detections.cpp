#include "setdet/vrd/object_detections.h"

#include <ATen/ATen.h>
#include <torch/csrc/autograd/grad_mode.h>

#include <algorithm>
#include <chrono>
#include <map>

#include "setdet/config/config.h"
#include "setdet/core/error.h"
#include "setdet/data/dataset.h"
#include "setdet/data/loader.h"
#include "setdet/data/transforms.h"
#include "setdet/io/state_dict.h"
#include "setdet/layers/fused_conv_norm.h"
#include "setdet/models/detector.h"

namespace setdet {
namespace {

// The images of a split run through a detector's test-time pipeline.
class ImageListDataset : public Dataset {
 public:
  ImageListDataset(const std::vector<VrdImageRecord>& images,
                   std::vector<std::shared_ptr<Transform>> pipeline)
      : images_(images), pipeline_(std::move(pipeline)) {}
  int64_t size() const override { return static_cast<int64_t>(images_.size()); }
  Sample get(int64_t index, Rng& rng) const override {
    Sample s = image_sample(images_[static_cast<size_t>(index)].path);
    s.meta.image_id = index;
    apply_pipeline(pipeline_, s, rng);
    return s;
  }
  const std::vector<std::string>& class_names() const override { return none_; }
  const std::vector<int64_t>& label_to_category() const override { return no_ids_; }
  std::shared_ptr<const CocoDataset> ground_truth() const override { return nullptr; }

 private:
  const std::vector<VrdImageRecord>& images_;
  std::vector<std::shared_ptr<Transform>> pipeline_;
  std::vector<std::string> none_;
  std::vector<int64_t> no_ids_;
};

}  // namespace

DetectorRun run_detector(const VrdDetectorSpec& spec, const std::vector<VrdImageRecord>& images,
                         int64_t batch_size,
                         const std::function<void(int64_t, int64_t)>& progress) {
  const auto start = std::chrono::steady_clock::now();
  const Config cfg = Config::load(spec.config);
  const Config data = cfg["data"];
  SETDET_CHECK(data.has("test") || data.has("val"), spec.config,
               ": a stage-1 detector needs data.test or data.val (the test-time pipeline and the "
               "class names)");
  const Config dataset = (data.has("test") ? data["test"] : data["val"])["dataset"];
  std::vector<std::shared_ptr<Transform>> pipeline = build_pipeline(dataset["pipeline"]);
  for (const auto& t : pipeline) {
    SETDET_CHECK(dynamic_cast<const RandomFlip*>(t.get()) == nullptr, dataset.where(),
                 ".pipeline: a test-time pipeline must not flip randomly");
  }
  DetectorRun run;
  run.class_names = DatasetRegistry().build(dataset)->class_names();

  auto model = DetectorRegistry().build(cfg["model"]);
  SETDET_CHECK(model->num_classes() == static_cast<int64_t>(run.class_names.size()), spec.config,
               ": the model predicts ", model->num_classes(), " classes, its dataset has ",
               run.class_names.size());
  load_model_weights(spec.checkpoint, *model, cfg);
  model->eval();
  fuse_for_inference(*model);

  run.images.resize(images.size());
  if (images.empty()) return run;
  LoaderOptions lo;
  lo.batch_size = batch_size;
  lo.num_workers = 2;
  lo.shuffle = false;
  DataLoader loader(std::make_shared<ImageListDataset>(images, std::move(pipeline)), lo);
  loader.start_epoch(0);
  torch::NoGradGuard no_grad;
  int64_t done = 0;
  while (auto batch = loader.next()) {
    const std::vector<Detections> dets = model->predict(*batch);
    for (int64_t b = 0; b < batch->size(); ++b) {
      const ImageMeta& meta = batch->metas[static_cast<size_t>(b)];
      const VrdImageRecord& im = images[static_cast<size_t>(meta.image_id)];
      const Detections& d = dets[static_cast<size_t>(b)];
      const at::Tensor boxes = d.boxes.to(at::kFloat).contiguous();
      const at::Tensor scores = d.scores.to(at::kFloat).contiguous();
      const at::Tensor labels = d.labels.to(at::kLong).contiguous();
      const float w = static_cast<float>(im.width), h = static_cast<float>(im.height);
      auto& out = run.images[static_cast<size_t>(meta.image_id)];
      for (int64_t k = 0; k < scores.size(0); ++k) {
        const float* bx = boxes.data_ptr<float>() + 4 * k;
        VrdDetection det;
        det.box = {std::clamp(bx[0] / w, 0.0f, 1.0f), std::clamp(bx[1] / h, 0.0f, 1.0f),
                   std::clamp(bx[2] / w, 0.0f, 1.0f), std::clamp(bx[3] / h, 0.0f, 1.0f)};
        if (det.box[2] <= det.box[0] || det.box[3] <= det.box[1]) continue;
        det.score = scores.data_ptr<float>()[k];
        det.label = static_cast<int32_t>(labels.data_ptr<int64_t>()[k]);
        out.push_back(det);
      }
    }
    done += batch->size();
    if (progress) progress(done, static_cast<int64_t>(images.size()));
  }
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return run;
}

std::pair<std::string, std::string> split_class_name(const std::string& name,
                                                     const std::string& separator) {
  const size_t at = separator.empty() ? std::string::npos : name.find(separator);
  if (at == std::string::npos) return {name, ""};
  return {name.substr(0, at), name.substr(at + separator.size())};
}

std::vector<std::vector<VrdObject>> objects_from_detections(const std::vector<DetectorRun>& runs,
                                                            const std::vector<double>& weights,
                                                            const WbfOptions& fusion,
                                                            const std::vector<std::string>& classes,
                                                            const std::string& separator) {
  SETDET_CHECK(!runs.empty(), "stage 1: no object detector");
  std::vector<std::vector<int32_t>> to_class(runs.size());
  for (size_t r = 0; r < runs.size(); ++r) {
    for (const auto& name : runs[r].class_names) {
      const std::string cls = split_class_name(name, separator).first;
      const auto it = std::find(classes.begin(), classes.end(), cls);
      SETDET_CHECK(it != classes.end(), "stage 1: detector ", r, "'s class '", name,
                   "' is not an object class of the relationship data");
      to_class[r].push_back(static_cast<int32_t>(it - classes.begin()));
    }
    SETDET_CHECK(runs[r].images.size() == runs[0].images.size(), "stage 1: detector ", r,
                 " ran on ", runs[r].images.size(), " images, detector 0 on ",
                 runs[0].images.size());
  }
  std::vector<std::vector<VrdObject>> out(runs[0].images.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (runs.size() == 1) {
      for (const auto& d : runs[0].images[i])
        out[i].push_back({to_class[0][d.label], d.box, d.score});
      continue;
    }
    std::vector<std::vector<float>> boxes(runs.size()), scores(runs.size());
    std::vector<std::vector<int64_t>> labels(runs.size());
    std::vector<WbfInput<float>> inputs(runs.size());
    for (size_t r = 0; r < runs.size(); ++r) {
      for (const auto& d : runs[r].images[i]) {
        boxes[r].insert(boxes[r].end(), d.box.begin(), d.box.end());
        scores[r].push_back(d.score);
        labels[r].push_back(to_class[r][d.label]);
      }
      inputs[r] = {boxes[r].data(), scores[r].data(), labels[r].data(), scores[r].size()};
    }
    const WbfResult<float> fused = weighted_boxes_fusion(inputs, weights, fusion);
    for (size_t k = 0; k < fused.scores.size(); ++k) {
      out[i].push_back({static_cast<int32_t>(fused.labels[k]),
                        {fused.boxes[4 * k], fused.boxes[4 * k + 1], fused.boxes[4 * k + 2],
                         fused.boxes[4 * k + 3]},
                        fused.scores[k]});
    }
  }
  return out;
}

}  // namespace setdet
