// `setdet vrd predict CONFIG --out DT.csv [--split test] [--variant stage3] [--variants-dir DIR]
// [--vis OUT.png --vis-images 4] [--work-dir DIR] [--set key=value ...]`: runs the trained VRD
// pipeline on a split and writes Open Images VRD detections (the ground-truth columns + Score)
// for `setdet vrd eval`.
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/vrd/pipeline.h"

namespace setdet::cli {
namespace {

struct VrdPredictCliOptions {
  std::string config, work_dir;
  VrdPredictOptions predict;
  std::vector<std::string> overrides;
};

const RegisterSubcommand kVrdPredict{
    "vrd", "predict",
    "run the trained VRD pipeline on a split: relationships and 'is' attributes as an Open Images "
    "VRD detections CSV",
    [](CLI::App& app) {
      auto o = std::make_shared<VrdPredictCliOptions>();
      app.add_option("config", o->config, "VRD pipeline config (the one trained)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--out", o->predict.out, "detections CSV of --variant");
      app.add_option("--split", o->predict.split, "train | val | test");
      app.add_option("--variant", o->predict.variant,
                     "spatial | visual | average | stage3");
      app.add_option("--variants-dir", o->predict.variants_dir,
                     "also write dt_<variant>.csv for every variant into this directory");
      app.add_option("--vis", o->predict.vis,
                     "PNG of the split's first images with --variant's relationships drawn");
      app.add_option("--vis-images", o->predict.vis_images, "images in the PNG")
          ->check(CLI::PositiveNumber);
      app.add_option("--vis-min-score", o->predict.vis_min_score,
                     "relationships drawn from this score");
      app.add_option("--work-dir", o->work_dir,
                     "the trained pipeline's directory (default: the config's work_dir)");
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      return [o] {
        predict_vrd_pipeline(VrdPipelineConfig::load(o->config, o->overrides, o->work_dir),
                             o->predict);
        return 0;
      };
    }};

}  // namespace
}  // namespace setdet::cli
