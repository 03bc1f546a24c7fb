#include "setdet/structures/anchors.h"

#include <cmath>

#include "setdet/core/error.h"

namespace setdet {

std::vector<std::vector<double>> octave_anchor_sizes(const std::vector<double>& base_sizes,
                                                     int64_t scales_per_octave, bool truncate) {
  TORCH_CHECK(scales_per_octave > 0, "octave_anchor_sizes: scales_per_octave must be > 0, got ",
              scales_per_octave);
  std::vector<std::vector<double>> out;
  for (const double x : base_sizes) {
    std::vector<double> level;
    for (int64_t k = 0; k < scales_per_octave; ++k) {
      const double s =
          x * std::pow(2.0, static_cast<double>(k) / static_cast<double>(scales_per_octave));
      level.push_back(truncate ? std::trunc(s) : s);
    }
    out.push_back(std::move(level));
  }
  return out;
}

AnchorGenerator::AnchorGenerator(AnchorGeneratorOptions options) : options_(std::move(options)) {
  TORCH_CHECK(!options_.sizes().empty(), "AnchorGenerator: needs sizes for at least one level");
  TORCH_CHECK(!options_.aspect_ratios().empty(),
              "AnchorGenerator: needs at least one aspect ratio");
  for (const double r : options_.aspect_ratios()) {
    TORCH_CHECK(r > 0, "AnchorGenerator: aspect ratios must be positive, got ", r);
  }
  const size_t per_level = options_.sizes().front().size();
  for (const auto& level : options_.sizes()) {
    TORCH_CHECK(level.size() == per_level && !level.empty(),
                "AnchorGenerator: every level needs the same (non-zero) number of sizes");
    for (const double s : level)
      TORCH_CHECK(s > 0, "AnchorGenerator: sizes must be positive, got ", s);
  }
  // As torchvision's generate_anchors, in float32: h_ratio = sqrt(r), w_ratio = 1 / h_ratio,
  // ws = w_ratio * size, base = [-ws, -hs, ws, hs] / 2, optionally rounded.
  const at::Tensor ratios = at::tensor(options_.aspect_ratios(), at::kDouble).to(at::kFloat);
  const at::Tensor h_ratios = ratios.sqrt();
  const at::Tensor w_ratios = 1 / h_ratios;
  for (const auto& level : options_.sizes()) {
    const at::Tensor scales = at::tensor(level, at::kDouble).to(at::kFloat);
    const at::Tensor ws = (w_ratios.unsqueeze(1) * scales.unsqueeze(0)).reshape(-1);
    const at::Tensor hs = (h_ratios.unsqueeze(1) * scales.unsqueeze(0)).reshape(-1);
    at::Tensor base = at::stack({-ws, -hs, ws, hs}, 1) / 2;
    if (options_.round_base()) base = base.round();
    base_.push_back(base.contiguous());
  }
}

int64_t AnchorGenerator::num_anchors() const {
  return static_cast<int64_t>(options_.sizes().front().size() * options_.aspect_ratios().size());
}

std::vector<at::Tensor> AnchorGenerator::grid_anchors(
    const std::vector<std::array<int64_t, 2>>& grid_hw, const std::array<int64_t, 2>& padded_hw,
    const std::vector<int64_t>& nominal_strides) const {
  TORCH_CHECK(static_cast<int64_t>(grid_hw.size()) == num_levels(),
              "AnchorGenerator: ", grid_hw.size(), " feature maps but anchors for ", num_levels(),
              " levels");
  TORCH_CHECK(options_.image_over_grid_stride() || nominal_strides.size() == grid_hw.size(),
              "AnchorGenerator: ", nominal_strides.size(), " strides for ", grid_hw.size(),
              " levels");
  std::vector<at::Tensor> out;
  for (size_t l = 0; l < grid_hw.size(); ++l) {
    const int64_t h = grid_hw[l][0], w = grid_hw[l][1];
    TORCH_CHECK(h > 0 && w > 0, "AnchorGenerator: empty feature map ", h, "x", w, " at level ", l);
    int64_t sy = 0, sx = 0;
    if (options_.image_over_grid_stride()) {
      sy = padded_hw[0] / h;
      sx = padded_hw[1] / w;
    } else {
      sy = sx = nominal_strides[l];
    }
    const double off = options_.center_offset();
    const at::Tensor xs = (at::arange(w, at::kDouble) + off) * static_cast<double>(sx);
    const at::Tensor ys = (at::arange(h, at::kDouble) + off) * static_cast<double>(sy);
    const auto grid = at::meshgrid({ys, xs}, "ij");
    const at::Tensor gx = grid[1].reshape(-1), gy = grid[0].reshape(-1);
    const at::Tensor shifts = at::stack({gx, gy, gx, gy}, 1).to(at::kFloat);  // [HW, 4]
    out.push_back((shifts.unsqueeze(1) + base_[l].unsqueeze(0)).reshape({-1, 4}));
  }
  return out;
}

std::vector<at::Tensor> image_over_grid_points(const std::vector<std::array<int64_t, 2>>& grid_hw,
                                               const std::array<int64_t, 2>& padded_hw,
                                               double center_offset) {
  std::vector<at::Tensor> out;
  for (const auto& hw : grid_hw) {
    TORCH_CHECK(hw[0] > 0 && hw[1] > 0, "image_over_grid_points: empty feature map ", hw[0], "x",
                hw[1]);
    const auto sy = static_cast<double>(padded_hw[0] / hw[0]);
    const auto sx = static_cast<double>(padded_hw[1] / hw[1]);
    const at::Tensor xs = (at::arange(hw[1], at::kDouble) + center_offset) * sx;
    const at::Tensor ys = (at::arange(hw[0], at::kDouble) + center_offset) * sy;
    const auto grid = at::meshgrid({ys, xs}, "ij");
    out.push_back(at::stack({grid[1].reshape(-1), grid[0].reshape(-1)}, 1).to(at::kFloat));
  }
  return out;
}

namespace {

std::vector<double> read_doubles(const Config& node) {
  SETDET_CHECK(node.is_sequence() && node.size() > 0, node.where(),
               ": expected a non-empty list of numbers, got '", node.dump(), "'");
  std::vector<double> out;
  for (size_t i = 0; i < node.size(); ++i) out.push_back(node.at(i).as<double>());
  return out;
}

}  // namespace

AnchorGeneratorOptions anchor_generator_options_from_config(const Config& cfg) {
  cfg.check_keys({"type", "sizes", "base_sizes", "scales_per_octave", "truncate_sizes",
                  "aspect_ratios", "round_base", "image_over_grid_stride", "center_offset"});
  SETDET_CHECK(!(cfg.has("sizes") && (cfg.has("base_sizes") || cfg.has("scales_per_octave"))),
               cfg.where(), ": give either 'sizes' or 'base_sizes' / 'scales_per_octave'");
  AnchorGeneratorOptions o;
  if (cfg.has("sizes")) {
    const Config s = cfg["sizes"];
    SETDET_CHECK(s.is_sequence() && s.size() > 0, s.where(),
                 ": expected a list of per-level size lists, got '", s.dump(), "'");
    std::vector<std::vector<double>> sizes;
    for (size_t i = 0; i < s.size(); ++i) sizes.push_back(read_doubles(s.at(i)));
    for (const auto& level : sizes) {
      SETDET_CHECK(level.size() == sizes.front().size(), s.where(),
                   ": every level needs the same number of sizes");
      for (const double v : level) SETDET_CHECK(v > 0, s.where(), ": sizes must be > 0, got ", v);
    }
    o.sizes(sizes);
  } else {
    const std::vector<double> base = cfg.has("base_sizes")
                                         ? read_doubles(cfg["base_sizes"])
                                         : std::vector<double>{32, 64, 128, 256, 512};
    for (const double v : base) {
      SETDET_CHECK(v > 0, cfg.where(), ".base_sizes: expected positive sizes, got ", v);
    }
    const auto per_octave = cfg.get<int64_t>("scales_per_octave", 3);
    SETDET_CHECK(per_octave > 0, cfg.where(), ".scales_per_octave: expected > 0, got ", per_octave);
    o.sizes(octave_anchor_sizes(base, per_octave, cfg.get<bool>("truncate_sizes", true)));
  }
  if (cfg.has("aspect_ratios")) {
    const auto ratios = read_doubles(cfg["aspect_ratios"]);
    for (const double r : ratios) {
      SETDET_CHECK(r > 0, cfg["aspect_ratios"].where(), ": expected positive ratios, got ", r);
    }
    o.aspect_ratios(ratios);
  }
  o.round_base(cfg.get<bool>("round_base", true))
      .image_over_grid_stride(cfg.get<bool>("image_over_grid_stride", true))
      .center_offset(cfg.get<double>("center_offset", 0.0));
  return o;
}

at::Tensor flatten_anchor_level(const at::Tensor& m, int64_t k) {
  const int64_t b = m.size(0), h = m.size(2), w = m.size(3);
  return m.reshape({b, -1, k, h, w}).permute({0, 3, 4, 1, 2}).reshape({b, -1, k});
}

at::Tensor flatten_anchor_levels(const std::vector<at::Tensor>& maps, int64_t k) {
  std::vector<at::Tensor> flat;
  flat.reserve(maps.size());
  for (const auto& m : maps) flat.push_back(flatten_anchor_level(m, k));
  return at::cat(flat, 1);
}

}  // namespace setdet
