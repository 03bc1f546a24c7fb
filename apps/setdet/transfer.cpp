// `setdet transfer --map MAP.yaml SRC DST`: partial weight transfer (io/weight_transfer.h). Builds
// the detector of the map's target_config (initialised with the map's seed), copies every tensor
// of SRC (a setdet checkpoint or a torch.save state_dict) it can, classifier rows by the map's
// class mapping, and writes DST as a setdet checkpoint (atomically) for `setdet train --load-from`.
#include <torch/utils.h>

#include <iostream>
#include <memory>
#include <string>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/engine/checkpoint.h"
#include "setdet/io/pth.h"
#include "setdet/io/weight_transfer.h"
#include "setdet/models/detector.h"

namespace setdet::cli {
namespace {

struct TransferOptions {
  std::string map, source, destination;
};

int run_transfer(const TransferOptions& o) {
  const Config map = Config::load(o.map);
  const WeightTransferPlan plan = WeightTransferPlan::from_config(map);
  const std::string target_file = map["target_config"].as<std::string>();
  const Config target_cfg = Config::load(target_file);
  torch::manual_seed(map.get<uint64_t>("seed", 0));
  auto model = DetectorRegistry().build(target_cfg["model"]);
  SETDET_CHECK(model->num_classes() == static_cast<int64_t>(plan.target_to_source.size()),
               map["target_classes"].where(), ": ", plan.target_to_source.size(),
               " target classes, but the model of ", target_file, " predicts ",
               model->num_classes());
  const NamedTensors source = is_torchscript_archive(o.source) ? checkpoint_model_tensors(o.source)
                                                               : load_pth_state_dict(o.source);
  const WeightTransferReport r = transfer_weights(o.source, source, *model, plan);
  YAML::Emitter yaml;
  yaml << target_cfg.node();
  save_checkpoint(o.destination, *model, nullptr, TrainState{}, {"", yaml.c_str()});
  std::cout << "transferred " << o.source << " -> " << o.destination << ": " << r.copied.size()
            << " tensors copied, " << r.class_rows.size() << " class tensors with "
            << r.mapped_classes << " of " << plan.target_to_source.size() << " classes mapped, "
            << r.initialised.size() << " tensors as initialised\n";
  for (const auto& name : r.class_rows) std::cout << "  class rows: " << name << "\n";
  for (const auto& name : r.initialised) std::cout << "  initialised: " << name << "\n";
  return 0;
}

const RegisterCommand kTransfer{
    "transfer",
    "partial weight transfer: initialise a detector for new classes from a trained one (backbone, "
    "neck, head; classifier rows by a class mapping)",
    [](CLI::App& app) {
      auto o = std::make_shared<TransferOptions>();
      app.add_option("--map", o->map,
                     "YAML: target_config, seed, source_classes, target_classes, classes "
                     "(target: source), class_tensors, keep_initialised")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("source", o->source, "trained weights: a setdet checkpoint or a .pth")
          ->required()
          ->check(CLI::ExistingFile);
      app.add_option("destination", o->destination, "the setdet checkpoint to write")->required();
      return [o] { return run_transfer(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
