// "FCOS + ATSS" of Zhang et al. 2020: the FCOS detector (point head with centre-ness, l, t, r, b
// regression) trained with ATSSAssigner targets. Registered in DetectorRegistry as "ATSS"; the
// config keys are FCOS's (see build_fcos), and `assigner` defaults to {type: ATSSAssigner}
// (topk 9, anchor_scale 8).
#include <yaml-cpp/yaml.h>

#include "setdet/models/detectors/fcos.h"

namespace setdet {
namespace {

std::shared_ptr<DetectorModel> build_atss(const Config& cfg) {
  SETDET_CHECK(cfg.is_map(), cfg.where(), ": expected a map for the ATSS model, got '", cfg.dump(),
               "'");
  if (cfg.has("assigner")) return build_fcos(cfg);
  YAML::Node node = YAML::Clone(cfg.node());
  node["assigner"] = YAML::Load("{type: ATSSAssigner}");
  return build_fcos(Config(node, cfg.file(), cfg.path()));
}

}  // namespace

SETDET_REGISTER(DetectorRegistry, "ATSS", build_atss);

}  // namespace setdet
