#include "setdet/assign/atss_assigner.h"

#include <algorithm>

namespace setdet {

ATSSAssigner::ATSSAssigner(ATSSAssignerOptions options) : options_(std::move(options)) {
  TORCH_CHECK(options_.topk() >= 1, "ATSSAssigner: topk must be >= 1, got ", options_.topk());
  TORCH_CHECK(options_.anchor_scale() > 0, "ATSSAssigner: anchor_scale must be positive, got ",
              options_.anchor_scale());
}

PointTargets ATSSAssigner::assign(const PointSet& ps, const std::vector<at::Tensor>& gt_boxes,
                                  const std::vector<at::Tensor>& gt_labels,
                                  int64_t num_classes) const {
  const size_t num_levels = ps.strides.size();
  TORCH_CHECK(ps.num_points.size() == num_levels, "ATSSAssigner: ", num_levels, " strides but ",
              ps.num_points.size(), " point counts");
  TORCH_CHECK(gt_boxes.size() == gt_labels.size(), "ATSSAssigner: ", gt_boxes.size(),
              " box tensors but ", gt_labels.size(), " label tensors");
  TORCH_CHECK(ps.points.dim() == 2 && ps.points.size(1) == 2,
              "ATSSAssigner: points must be [P, 2], got ", ps.points.sizes());
  const int64_t num_images = static_cast<int64_t>(gt_boxes.size());
  const int64_t num_points = ps.points.size(0);
  const auto fopts = ps.points.options().dtype(at::kFloat);
  const auto lopts = fopts.dtype(at::kLong);

  // Half the anchor side of every point, [P].
  std::vector<float> half_v;
  half_v.reserve(num_points);
  for (size_t l = 0; l < num_levels; ++l) {
    TORCH_CHECK(ps.strides[l] > 0 && ps.num_points[l] >= 0, "ATSSAssigner: level ", l,
                " has stride ", ps.strides[l], " and ", ps.num_points[l], " points");
    half_v.insert(half_v.end(), ps.num_points[l],
                  static_cast<float>(0.5 * options_.anchor_scale() * ps.strides[l]));
  }
  TORCH_CHECK(static_cast<int64_t>(half_v.size()) == num_points,
              "ATSSAssigner: point counts sum to ", half_v.size(), " but points has ", num_points,
              " rows");

  int64_t max_gt = 0;
  for (int64_t i = 0; i < num_images; ++i) {
    const auto& b = gt_boxes[i];
    TORCH_CHECK(b.dim() == 2 && b.size(1) == 4, "ATSSAssigner: gt_boxes[", i,
                "] must be [N, 4], got ", b.sizes());
    TORCH_CHECK(gt_labels[i].dim() == 1 && gt_labels[i].size(0) == b.size(0),
                "ATSSAssigner: gt_labels[", i, "] must be [", b.size(0), "], got ",
                gt_labels[i].sizes());
    max_gt = std::max(max_gt, b.size(0));
  }

  PointTargets out;
  out.labels = at::full({num_images, num_points}, num_classes, lopts);
  out.distances = at::zeros({num_images, num_points, 4}, fopts);
  out.centerness = at::zeros({num_images, num_points}, fopts);
  out.matched = at::full({num_images, num_points}, -1, lopts);
  if (num_images == 0 || num_points == 0 || max_gt == 0) return out;

  // GTs padded to [B, M]; padding is masked out by `valid`.
  at::Tensor boxes = at::zeros({num_images, max_gt, 4}, fopts);
  at::Tensor labels = at::full({num_images, max_gt}, num_classes, lopts);
  at::Tensor valid = at::zeros({num_images, max_gt}, fopts.dtype(at::kBool));
  for (int64_t i = 0; i < num_images; ++i) {
    const int64_t n = gt_boxes[i].size(0);
    if (n == 0) continue;
    const at::Tensor li = gt_labels[i];
    TORCH_CHECK(li.min().item<int64_t>() >= 0 && li.max().item<int64_t>() < num_classes,
                "ATSSAssigner: gt_labels[", i, "] must be in [0, ", num_classes, ")");
    TORCH_CHECK(at::isfinite(gt_boxes[i]).all().item<bool>(), "ATSSAssigner: gt_boxes[", i,
                "] has non-finite coordinates");
    boxes[i].narrow(0, 0, n).copy_(gt_boxes[i]);
    labels[i].narrow(0, 0, n).copy_(li);
    valid[i].narrow(0, 0, n).fill_(true);
  }

  const at::Tensor pts = ps.points.to(at::kFloat);
  const at::Tensor px = pts.select(1, 0).contiguous(), py = pts.select(1, 1).contiguous();  // [P]
  const at::Tensor half = at::from_blob(half_v.data(), {num_points}, at::kFloat).to(fopts);
  const auto g = boxes.unsqueeze(2).unbind(3);  // each [B, M, 1]
  const at::Tensor cx = (g[0] + g[2]) * 0.5f, cy = (g[1] + g[3]) * 0.5f;

  // Candidates: per level, the topk points nearest the GT centre. [B, M, K]
  const at::Tensor d2 = (px.view({1, 1, num_points}) - cx)
                            .square_()
                            .add_((py.view({1, 1, num_points}) - cy).square_());  // [B, M, P]
  std::vector<at::Tensor> per_level;
  int64_t start = 0;
  for (size_t l = 0; l < num_levels; ++l) {
    const int64_t n = ps.num_points[l];
    if (n > 0) {
      const int64_t k = std::min(options_.topk(), n);
      per_level.push_back(std::get<1>(d2.narrow(2, start, n).topk(k, 2, false, false)) + start);
    }
    start += n;
  }
  const at::Tensor cand = at::cat(per_level, 2);
  const int64_t num_cand = cand.size(2);
  const auto gather = [&](const at::Tensor& v) {
    return v.index_select(0, cand.reshape(-1)).view(cand.sizes());
  };
  const at::Tensor cpx = gather(px), cpy = gather(py), ch = gather(half);

  // IoU of each candidate's square anchor with its GT (mmdet's BboxOverlaps2D, eps 1e-6).
  const at::Tensor iw = (at::minimum(cpx + ch, g[2]) - at::maximum(cpx - ch, g[0])).clamp_min_(0);
  const at::Tensor ih = (at::minimum(cpy + ch, g[3]) - at::maximum(cpy - ch, g[1])).clamp_min_(0);
  const at::Tensor inter = iw * ih;
  const at::Tensor gt_area = (g[2] - g[0]) * (g[3] - g[1]);
  const at::Tensor iou = inter / (ch.square() * 4.0f + gt_area - inter).clamp_min_(1e-6f);

  at::Tensor thr = iou.mean({2}, true);
  if (num_cand > 1) thr = thr + iou.std({2}, /*unbiased=*/true, /*keepdim=*/true);
  const at::Tensor inside =
      at::minimum(at::minimum(cpx - g[0], cpy - g[1]), at::minimum(g[2] - cpx, g[3] - cpy)) > 0.01f;
  const at::Tensor pos = (iou >= thr) & inside & valid.unsqueeze(2);

  // Positive (image, GT, candidate) triples; a point positive for several GTs keeps the highest
  // IoU, then the lowest GT index. Candidates of one GT are distinct points.
  const at::Tensor triples = pos.nonzero();  // [Q, 3], ordered by image, GT, candidate
  const at::Tensor q_img = triples.select(1, 0), q_gt = triples.select(1, 1);
  const at::Tensor flat = (q_img * max_gt + q_gt) * num_cand + triples.select(1, 2);
  const at::Tensor q_iou = iou.reshape(-1).index_select(0, flat);
  const at::Tensor key = q_img * num_points + cand.reshape(-1).index_select(0, flat);  // b * P + p
  // Order by point, then IoU descending, then GT ascending (stable sorts of the ordered triples);
  // the first triple of each point wins.
  const at::Tensor by_iou =
      std::get<1>(q_iou.sort(c10::optional<bool>(true), 0, /*descending=*/true));
  const at::Tensor order = by_iou.index_select(
      0, std::get<1>(key.index_select(0, by_iou).sort(c10::optional<bool>(true), 0)));
  const at::Tensor sorted_key = key.index_select(0, order);
  at::Tensor first = at::ones_like(sorted_key, fopts.dtype(at::kBool));
  const int64_t num_pos = sorted_key.numel();
  if (num_pos > 1) {
    first.narrow(0, 1, num_pos - 1)
        .copy_(sorted_key.narrow(0, 1, num_pos - 1) != sorted_key.narrow(0, 0, num_pos - 1));
  }
  const at::Tensor winners = order.masked_select(first);
  const at::Tensor gt_of =
      at::full({num_images * num_points}, max_gt, lopts)
          .index_put_({key.index_select(0, winners)}, q_gt.index_select(0, winners))
          .view({num_images, num_points});
  const at::Tensor positive = gt_of < max_gt;                               // [B, P]
  const at::Tensor idx = at::where(positive, gt_of, at::zeros({}, lopts));  // [B, P]

  const at::Tensor mb = boxes.gather(1, idx.unsqueeze(2).expand({num_images, num_points, 4}));
  const auto m = mb.unbind(2);  // each [B, P]
  const at::Tensor x = px.view({1, num_points}), y = py.view({1, num_points});
  out.distances = at::stack({x - m[0], y - m[1], m[2] - x, m[3] - y}, 2) * positive.unsqueeze(2);
  out.labels = at::where(positive, labels.gather(1, idx), out.labels);
  out.matched = at::where(positive, idx, out.matched);
  const auto d = out.distances.unbind(2);
  const at::Tensor ctr = (at::minimum(d[0], d[2]) / at::maximum(d[0], d[2]).clamp_min(1e-12f)) *
                         (at::minimum(d[1], d[3]) / at::maximum(d[1], d[3]).clamp_min(1e-12f));
  out.centerness = ctr.sqrt() * positive;
  out.num_positives = positive.sum().item<int64_t>();
  return out;
}

namespace {

std::shared_ptr<PointAssigner> build_atss_assigner(const Config& cfg) {
  cfg.check_keys({"type", "topk", "anchor_scale"});
  ATSSAssignerOptions opts;
  opts.topk(cfg.get<int64_t>("topk", 9)).anchor_scale(cfg.get<double>("anchor_scale", 8.0));
  SETDET_CHECK(opts.topk() >= 1, cfg.where(), ".topk: expected an integer >= 1, got ", opts.topk());
  SETDET_CHECK(opts.anchor_scale() > 0, cfg.where(), ".anchor_scale: expected > 0, got ",
               opts.anchor_scale());
  return std::make_shared<ATSSAssigner>(opts);
}

}  // namespace

SETDET_REGISTER(PointAssignerRegistry, "ATSSAssigner", build_atss_assigner);

}  // namespace setdet
