#include "setdet/assign/fcos_assigner.h"

#include <limits>

namespace setdet {

FCOSAssigner::FCOSAssigner(FCOSAssignerOptions options) : options_(std::move(options)) {
  TORCH_CHECK(options_.center_sample_radius() > 0,
              "FCOSAssigner: center_sample_radius must be positive, got ",
              options_.center_sample_radius());
  for (const auto& r : options_.regress_ranges()) {
    TORCH_CHECK(r.first < r.second, "FCOSAssigner: regress range [", r.first, ", ", r.second,
                "] must have lo < hi");
  }
}

PointTargets FCOSAssigner::assign(const PointSet& ps, const std::vector<at::Tensor>& gt_boxes,
                                  const std::vector<at::Tensor>& gt_labels,
                                  int64_t num_classes) const {
  const auto& ranges = options_.regress_ranges();
  const size_t num_levels = ps.strides.size();
  TORCH_CHECK(ps.num_points.size() == num_levels, "FCOSAssigner: ", num_levels, " strides but ",
              ps.num_points.size(), " point counts");
  TORCH_CHECK(ranges.size() == num_levels, "FCOSAssigner: ", ranges.size(), " regress_ranges for ",
              num_levels, " feature levels");
  TORCH_CHECK(gt_boxes.size() == gt_labels.size(), "FCOSAssigner: ", gt_boxes.size(),
              " box tensors but ", gt_labels.size(), " label tensors");
  TORCH_CHECK(ps.points.dim() == 2 && ps.points.size(1) == 2,
              "FCOSAssigner: points must be [P, 2], got ", ps.points.sizes());
  const int64_t num_images = static_cast<int64_t>(gt_boxes.size());
  const int64_t num_points = ps.points.size(0);
  const auto fopts = ps.points.options().dtype(at::kFloat);

  // Per-point stride and range, [P].
  std::vector<float> stride_v, lo_v, hi_v;
  stride_v.reserve(num_points);
  for (size_t l = 0; l < num_levels; ++l) {
    stride_v.insert(stride_v.end(), ps.num_points[l], static_cast<float>(ps.strides[l]));
    lo_v.insert(lo_v.end(), ps.num_points[l], static_cast<float>(ranges[l].first));
    hi_v.insert(hi_v.end(), ps.num_points[l], static_cast<float>(ranges[l].second));
  }
  TORCH_CHECK(static_cast<int64_t>(stride_v.size()) == num_points,
              "FCOSAssigner: point counts sum to ", stride_v.size(), " but points has ", num_points,
              " rows");

  int64_t max_gt = 0;
  for (int64_t i = 0; i < num_images; ++i) {
    const auto& b = gt_boxes[i];
    TORCH_CHECK(b.dim() == 2 && b.size(1) == 4, "FCOSAssigner: gt_boxes[", i,
                "] must be [N, 4], got ", b.sizes());
    TORCH_CHECK(gt_labels[i].dim() == 1 && gt_labels[i].size(0) == b.size(0),
                "FCOSAssigner: gt_labels[", i, "] must be [", b.size(0), "], got ",
                gt_labels[i].sizes());
    max_gt = std::max(max_gt, b.size(0));
  }

  PointTargets out;
  out.labels = at::full({num_images, num_points}, num_classes, fopts.dtype(at::kLong));
  out.distances = at::zeros({num_images, num_points, 4}, fopts);
  out.centerness = at::zeros({num_images, num_points}, fopts);
  out.matched = at::full({num_images, num_points}, -1, fopts.dtype(at::kLong));
  if (num_images == 0 || num_points == 0 || max_gt == 0) return out;

  // Pad GTs to [B, M, 4] with a far-away zero-area box that no point lies strictly inside.
  at::Tensor boxes = at::full({num_images, max_gt, 4}, -1e8f, fopts);
  at::Tensor labels = at::full({num_images, max_gt}, num_classes, fopts.dtype(at::kLong));
  for (int64_t i = 0; i < num_images; ++i) {
    const int64_t n = gt_boxes[i].size(0);
    if (n == 0) continue;
    boxes[i].narrow(0, 0, n).copy_(gt_boxes[i]);
    labels[i].narrow(0, 0, n).copy_(gt_labels[i]);
    const at::Tensor li = gt_labels[i];
    TORCH_CHECK(li.min().item<int64_t>() >= 0 && li.max().item<int64_t>() < num_classes,
                "FCOSAssigner: gt_labels[", i, "] must be in [0, ", num_classes, ")");
  }

  const at::Tensor stride = at::from_blob(stride_v.data(), {num_points}, at::kFloat).to(fopts);
  const at::Tensor lo = at::from_blob(lo_v.data(), {num_points}, at::kFloat).to(fopts);
  const at::Tensor hi = at::from_blob(hi_v.data(), {num_points}, at::kFloat).to(fopts);

  const at::Tensor px = ps.points.select(1, 0).to(at::kFloat).view({1, num_points, 1});
  const at::Tensor py = ps.points.select(1, 1).to(at::kFloat).view({1, num_points, 1});
  const auto g = boxes.unsqueeze(1).unbind(3);                                  // each [B, 1, M]
  const at::Tensor l = px - g[0], t = py - g[1], r = g[2] - px, b = g[3] - py;  // [B, P, M]
  const at::Tensor dist = at::stack({l, t, r, b}, 3);                           // [B, P, M, 4]

  at::Tensor candidate = std::get<0>(dist.min(3)) > 0;
  if (options_.center_sampling()) {
    const at::Tensor radius = (stride * options_.center_sample_radius()).view({1, num_points, 1});
    const at::Tensor cx = (g[0] + g[2]) * 0.5f, cy = (g[1] + g[3]) * 0.5f;
    candidate &= ((px - cx).abs() < radius) & ((py - cy).abs() < radius);
  }
  const at::Tensor max_dist = std::get<0>(dist.max(3));
  candidate &=
      (max_dist >= lo.view({1, num_points, 1})) & (max_dist <= hi.view({1, num_points, 1}));

  const at::Tensor area = ((g[2] - g[0]) * (g[3] - g[1]));  // [B, 1, M]
  const at::Tensor masked_area =
      at::where(candidate, area.expand_as(candidate),
                at::full({}, std::numeric_limits<float>::infinity(), fopts));
  const auto [min_area, idx] = masked_area.min(2);  // [B, P]
  const at::Tensor positive = min_area.isfinite();

  const at::Tensor matched_dist =
      dist.gather(2,
                  idx.view({num_images, num_points, 1, 1}).expand({num_images, num_points, 1, 4}))
          .squeeze(2);  // [B, P, 4]
  out.distances = matched_dist * positive.unsqueeze(2);
  out.labels = at::where(positive, labels.gather(1, idx), out.labels);
  out.matched = at::where(positive, idx, out.matched);
  const at::Tensor lr = out.distances.index_select(2, at::tensor({0, 2}, fopts.dtype(at::kLong)));
  const at::Tensor tb = out.distances.index_select(2, at::tensor({1, 3}, fopts.dtype(at::kLong)));
  const at::Tensor ctr = (std::get<0>(lr.min(2)) / std::get<0>(lr.max(2)).clamp_min(1e-12f)) *
                         (std::get<0>(tb.min(2)) / std::get<0>(tb.max(2)).clamp_min(1e-12f));
  out.centerness = ctr.sqrt() * positive;
  out.num_positives = positive.sum().item<int64_t>();
  return out;
}

namespace {

// A range's upper end may be YAML's +infinity (MMDetection's INF: the last level takes every
// larger object); any other value must be finite.
double range_end(const Config& c) {
  static const char* const kInfinity[] = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"};
  if (c.node().IsScalar()) {
    for (const char* text : kInfinity) {
      if (c.node().Scalar() == text) return std::numeric_limits<double>::infinity();
    }
  }
  return c.as<double>();
}

std::shared_ptr<PointAssigner> build_fcos_assigner(const Config& cfg) {
  cfg.check_keys({"type", "regress_ranges", "center_sampling", "center_sample_radius"});
  FCOSAssignerOptions opts;
  opts.center_sampling(cfg.get<bool>("center_sampling", true))
      .center_sample_radius(cfg.get<double>("center_sample_radius", 1.5));
  SETDET_CHECK(opts.center_sample_radius() > 0, cfg.where(),
               ".center_sample_radius: expected > 0, got ", opts.center_sample_radius());
  if (cfg.has("regress_ranges")) {
    const Config rr = cfg["regress_ranges"];
    SETDET_CHECK(rr.is_sequence() && rr.size() > 0, rr.where(),
                 ": expected a list of [lo, hi] pairs, got '", rr.dump(), "'");
    RegressRanges ranges;
    for (size_t i = 0; i < rr.size(); ++i) {
      const Config pair = rr.at(i);
      SETDET_CHECK(pair.is_sequence() && pair.size() == 2, pair.where(),
                   ": expected [lo, hi], got '", pair.dump(), "'");
      const double lo = pair.at(0).as<double>(), hi = range_end(pair.at(1));
      SETDET_CHECK(lo < hi, pair.where(), ": expected lo < hi, got [", lo, ", ", hi, "]");
      ranges.emplace_back(lo, hi);
    }
    opts.regress_ranges(ranges);
  }
  return std::make_shared<FCOSAssigner>(opts);
}

}  // namespace

SETDET_REGISTER(PointAssignerRegistry, "FCOSAssigner", build_fcos_assigner);

}  // namespace setdet
