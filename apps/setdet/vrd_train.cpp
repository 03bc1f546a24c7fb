// `setdet vrd train CONFIG [--work-dir DIR] [--resume] [--set key=value ...]`: trains stages 2
// and 3 of the VRD pipeline (vrd/pipeline.h) with the stage-1 detectors the config names, showing
// each stage's progress; the models land in the work directory.
#include <memory>
#include <string>
#include <vector>

#include "command.h"
#include "setdet/vrd/pipeline.h"

namespace setdet::cli {
namespace {

struct VrdTrainCliOptions {
  std::string config, work_dir;
  bool resume = false;
  std::vector<std::string> overrides;
};

const RegisterSubcommand kVrdTrain{
    "vrd", "train",
    "train the relationship models: per-predicate XGBoost on spatio-semantic features and a CNN "
    "on masked union crops (stage 2), a per-predicate XGBoost combining them (stage 3)",
    [](CLI::App& app) {
      auto o = std::make_shared<VrdTrainCliOptions>();
      app.add_option("config", o->config, "VRD pipeline config (configs/vrd/)")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("--work-dir", o->work_dir,
                     "output directory (default: the config's work_dir)");
      app.add_flag("--resume", o->resume,
                   "load the models already in the work directory instead of training them again");
      app.add_option("--set", o->overrides, "config override key.path=value (repeatable)")
          ->allow_extra_args(false);
      return [o] {
        VrdTrainOptions t;
        t.resume = o->resume;
        train_vrd_pipeline(VrdPipelineConfig::load(o->config, o->overrides, o->work_dir), t);
        return 0;
      };
    }};

}  // namespace
}  // namespace setdet::cli
