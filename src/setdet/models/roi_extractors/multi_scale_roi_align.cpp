#include "setdet/models/roi_extractors/multi_scale_roi_align.h"

#include <cmath>

#include "setdet/core/error.h"
#include "setdet/layers/roi_align.h"

namespace setdet {

at::Tensor RoIExtractor::forward(const std::vector<at::Tensor>& feats,
                                 const std::vector<at::Tensor>& boxes,
                                 const std::array<int64_t, 2>& image_hw) const {
  return forward(feats, boxes_to_rois(boxes), image_hw);
}

MultiScaleRoIAlign::MultiScaleRoIAlign(MultiScaleRoIAlignOptions options)
    : options_(std::move(options)) {
  const auto& o = options_;
  TORCH_CHECK(o.output_size()[0] > 0 && o.output_size()[1] > 0,
              "MultiScaleRoIAlign: output_size must be positive, got [", o.output_size()[0], ", ",
              o.output_size()[1], "]");
  TORCH_CHECK(o.level_mapping() == "torchvision" || o.level_mapping() == "mmdet",
              "MultiScaleRoIAlign: level_mapping must be 'torchvision' or 'mmdet', got '",
              o.level_mapping(), "'");
  TORCH_CHECK(o.canonical_scale() > 0, "MultiScaleRoIAlign: canonical_scale must be > 0, got ",
              o.canonical_scale());
  TORCH_CHECK(o.finest_scale() > 0, "MultiScaleRoIAlign: finest_scale must be > 0, got ",
              o.finest_scale());
  TORCH_CHECK(o.num_levels() >= 0, "MultiScaleRoIAlign: num_levels must be >= 0, got ",
              o.num_levels());
  for (double s : o.featmap_strides()) {
    TORCH_CHECK(std::isfinite(s) && s > 0,
                "MultiScaleRoIAlign: featmap_strides must be finite and > 0, got ", s);
  }
  TORCH_CHECK(o.featmap_strides().empty() || o.num_levels() == 0 ||
                  o.num_levels() == static_cast<int64_t>(o.featmap_strides().size()),
              "MultiScaleRoIAlign: num_levels (", o.num_levels(), ") and featmap_strides (",
              o.featmap_strides().size(), " strides) disagree");
}

int64_t MultiScaleRoIAlign::used_levels(size_t num_maps) const {
  if (options_.num_levels() > 0) return options_.num_levels();
  if (!options_.featmap_strides().empty()) {
    return static_cast<int64_t>(options_.featmap_strides().size());
  }
  return static_cast<int64_t>(num_maps);
}

std::vector<double> MultiScaleRoIAlign::scales(const std::vector<at::Tensor>& feats,
                                               const std::array<int64_t, 2>& image_hw) const {
  const int64_t levels = used_levels(feats.size());
  std::vector<double> out;
  if (!options_.featmap_strides().empty()) {
    for (double s : options_.featmap_strides()) out.push_back(1.0 / s);
    return out;
  }
  TORCH_CHECK(image_hw[0] > 0 && image_hw[1] > 0,
              "MultiScaleRoIAlign: image_hw must be positive to infer the maps' scales, got [",
              image_hw[0], ", ", image_hw[1], "]");
  TORCH_CHECK(static_cast<int64_t>(feats.size()) >= levels, "MultiScaleRoIAlign: expected ", levels,
              " feature maps, got ", feats.size());
  for (int64_t l = 0; l < levels; ++l) {
    TORCH_CHECK(feats[l].dim() == 4, "MultiScaleRoIAlign: feats[", l,
                "] must be a 4-D tensor [B, C, H, W], got shape ", feats[l].sizes());
    // torchvision's _infer_scale: from the height, log2 in float32, rounded half to even.
    const double approx = static_cast<double>(feats[l].size(2)) / static_cast<double>(image_hw[0]);
    const float e = at::scalar_tensor(approx, at::kFloat).log2().round().item<float>();
    out.push_back(std::pow(2.0, static_cast<double>(e)));
  }
  return out;
}

at::Tensor MultiScaleRoIAlign::map_levels(const at::Tensor& rois,
                                          const std::vector<double>& scales) const {
  TORCH_CHECK(rois.dim() == 2 && rois.size(1) == 5,
              "MultiScaleRoIAlign: rois must be a 2-D tensor of shape [K, 5], got shape ",
              rois.sizes());
  TORCH_CHECK(!scales.empty(), "MultiScaleRoIAlign: no levels to map RoIs to");
  const at::Tensor area =
      (rois.select(1, 3) - rois.select(1, 1)) * (rois.select(1, 4) - rois.select(1, 2));
  const at::Tensor size = area.sqrt();
  if (options_.level_mapping() == "mmdet") {
    const auto last = static_cast<double>(scales.size() - 1);
    return (size / options_.finest_scale() + 1e-6).log2().floor().clamp(0.0, last).to(at::kLong);
  }
  // torchvision's LevelMapper: k_min / k_max from the finest / coarsest scale, eps as a tensor
  // of the boxes' dtype.
  auto level_of = [](double scale) {
    return static_cast<int64_t>(-at::scalar_tensor(scale, at::kFloat).log2().item<float>());
  };
  const int64_t k_min = level_of(scales.front()), k_max = level_of(scales.back());
  const at::Tensor eps = at::scalar_tensor(1e-6, size.options());
  const at::Tensor k =
      ((size / options_.canonical_scale()).log2() + options_.canonical_level() + eps).floor();
  return k.clamp(static_cast<double>(k_min), static_cast<double>(k_max)).to(at::kLong) - k_min;
}

at::Tensor MultiScaleRoIAlign::forward(const std::vector<at::Tensor>& feats, const at::Tensor& rois,
                                       const std::array<int64_t, 2>& image_hw) const {
  const int64_t levels = used_levels(feats.size());
  TORCH_CHECK(levels > 0 && static_cast<int64_t>(feats.size()) >= levels,
              "MultiScaleRoIAlign: expected ", levels, " feature maps (finest first), got ",
              feats.size());
  const at::Tensor& first = feats.front();
  for (int64_t l = 0; l < levels; ++l) {
    const at::Tensor& f = feats[l];
    TORCH_CHECK(f.dim() == 4, "MultiScaleRoIAlign: feats[", l,
                "] must be a 4-D tensor [B, C, H, W], got shape ", f.sizes());
    TORCH_CHECK(f.size(0) == first.size(0) && f.size(1) == first.size(1),
                "MultiScaleRoIAlign: "
                "feats[",
                l, "] must have the batch size and channels of feats[0] (", first.size(0), ", ",
                first.size(1), "), got ", f.size(0), ", ", f.size(1));
    TORCH_CHECK(f.scalar_type() == first.scalar_type() && f.device() == first.device(),
                "MultiScaleRoIAlign: feats[", l, "] must have the dtype and device of feats[0]");
  }
  TORCH_CHECK(options_.out_channels() == 0 || first.size(1) == options_.out_channels(),
              "MultiScaleRoIAlign: feature maps must have out_channels = ", options_.out_channels(),
              " channels, got ", first.size(1));
  const auto [oh, ow] = options_.output_size();
  const int64_t sr = options_.sampling_ratio();
  const bool aligned = options_.aligned();
  const std::vector<double> sc = scales(feats, image_hw);
  if (levels == 1) return roi_align(first, rois, sc[0], oh, ow, sr, aligned);

  const at::Tensor level = map_levels(rois, sc);
  at::Tensor result = at::zeros({rois.size(0), first.size(1), oh, ow}, first.options());
  for (int64_t l = 0; l < levels; ++l) {
    const at::Tensor idx = (level == l).nonzero().squeeze(1);
    if (idx.numel() == 0) continue;
    result.index_put_({idx},
                      roi_align(feats[l], rois.index_select(0, idx), sc[l], oh, ow, sr, aligned));
  }
  return result;
}

namespace {

std::array<int64_t, 2> read_output_size(const Config& node) {
  if (!node.is_sequence()) {
    const auto n = node.as<int64_t>();
    return {n, n};
  }
  SETDET_CHECK(node.size() == 2, node.where(), ": expected n or [height, width], got '",
               node.dump(), "'");
  return {node.at(0).as<int64_t>(), node.at(1).as<int64_t>()};
}

// Runs the options' own checks, naming the config node on failure.
std::shared_ptr<RoIExtractor> make_extractor(const Config& cfg, MultiScaleRoIAlignOptions opts) {
  try {
    return std::make_shared<MultiScaleRoIAlign>(std::move(opts));
  } catch (const c10::Error& e) {
    SETDET_CHECK(false, cfg.where(), ": ", e.what_without_backtrace());
  }
  return nullptr;
}

}  // namespace

SETDET_REGISTER(RoIExtractorRegistry, "MultiScaleRoIAlign",
                [](const Config& cfg) -> std::shared_ptr<RoIExtractor> {
                  cfg.check_keys({"type", "output_size", "sampling_ratio", "aligned", "num_levels",
                                  "featmap_strides", "level_mapping", "canonical_scale",
                                  "canonical_level", "finest_scale", "out_channels"});
                  MultiScaleRoIAlignOptions o;
                  if (cfg.has("output_size")) o.output_size(read_output_size(cfg["output_size"]));
                  o.sampling_ratio(cfg.get<int64_t>("sampling_ratio", o.sampling_ratio()));
                  o.aligned(cfg.get<bool>("aligned", o.aligned()));
                  o.num_levels(cfg.get<int64_t>("num_levels", o.num_levels()));
                  o.featmap_strides(cfg.get<std::vector<double>>("featmap_strides", {}));
                  o.level_mapping(cfg.get<std::string>("level_mapping", o.level_mapping()));
                  o.canonical_scale(cfg.get<double>("canonical_scale", o.canonical_scale()));
                  o.canonical_level(cfg.get<int64_t>("canonical_level", o.canonical_level()));
                  o.finest_scale(cfg.get<double>("finest_scale", o.finest_scale()));
                  o.out_channels(cfg.get<int64_t>("out_channels", 0));
                  return make_extractor(cfg, std::move(o));
                });

SETDET_REGISTER(
    RoIExtractorRegistry, "SingleRoIExtractor",
    [](const Config& cfg) -> std::shared_ptr<RoIExtractor> {
      cfg.check_keys({"type", "roi_layer", "out_channels", "featmap_strides", "finest_scale"});
      MultiScaleRoIAlignOptions o;
      o.level_mapping("mmdet").sampling_ratio(0).aligned(true);
      if (cfg.has("roi_layer")) {
        const Config layer = cfg["roi_layer"];
        layer.check_keys({"type", "output_size", "sampling_ratio", "aligned"});
        const auto type = layer.get<std::string>("type", "RoIAlign");
        SETDET_CHECK(type == "RoIAlign", layer["type"].where(),
                     ": only RoIAlign is supported, got '", type, "'");
        if (layer.has("output_size")) {
          o.output_size(read_output_size(layer["output_size"]));
        }
        o.sampling_ratio(layer.get<int64_t>("sampling_ratio", 0));
        o.aligned(layer.get<bool>("aligned", true));
      }
      o.featmap_strides(cfg.get<std::vector<double>>("featmap_strides"));
      o.finest_scale(cfg.get<double>("finest_scale", o.finest_scale()));
      o.out_channels(cfg.get<int64_t>("out_channels", 0));
      return make_extractor(cfg, std::move(o));
    });

}  // namespace setdet
