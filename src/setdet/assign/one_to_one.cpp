#include "setdet/assign/one_to_one.h"

#include <torch/types.h>
#include <torch/utils.h>

#include "setdet/core/boxes.h"
#include "setdet/core/error.h"
#include "setdet/core/match/lsa.h"

namespace setdet {

OneToOneMatcher parse_one_to_one_matcher(const std::string& name, const std::string& where) {
  if (name == "hungarian") return OneToOneMatcher::kHungarian;
  if (name == "top1") return OneToOneMatcher::kTop1;
  throw Error(where + ": expected 'hungarian' or 'top1', got '" + name + "'");
}

at::Tensor matching_quality(const at::Tensor& prob, const at::Tensor& iou,
                            const at::Tensor& candidates, double alpha) {
  TORCH_CHECK(prob.dim() == 2 && iou.sizes() == prob.sizes() && candidates.sizes() == prob.sizes(),
              "matching_quality: prob, iou and candidates must be the same [P, N], got ",
              prob.sizes(), ", ", iou.sizes(), " and ", candidates.sizes());
  TORCH_CHECK(candidates.scalar_type() == at::kBool,
              "matching_quality: candidates must be bool, got ", candidates.scalar_type());
  TORCH_CHECK(alpha >= 0 && alpha <= 1, "matching_quality: alpha must be in [0, 1], got ", alpha);
  const at::Tensor p = prob.detach().to(at::kDouble).clamp(0, 1);
  const at::Tensor u = iou.detach().to(at::kDouble).clamp(0, 1);
  return p.pow(1.0 - alpha) * u.pow(alpha) * candidates.to(at::kDouble);
}

at::Tensor match_one_to_one(const at::Tensor& quality, const at::Tensor& candidates,
                            OneToOneMatcher matcher) {
  TORCH_CHECK(quality.dim() == 2 && candidates.sizes() == quality.sizes(),
              "match_one_to_one: quality and candidates must be the same [P, N], got ",
              quality.sizes(), " and ", candidates.sizes());
  TORCH_CHECK(candidates.scalar_type() == at::kBool,
              "match_one_to_one: candidates must be bool, got ", candidates.scalar_type());
  const int64_t n = quality.size(1);
  at::Tensor result = at::full({n}, -1, at::kLong);
  if (n == 0 || quality.size(0) == 0) return result;
  const at::Tensor q = quality.detach().to(at::kCPU, at::kDouble).contiguous();
  const at::Tensor cand = candidates.to(at::kCPU).contiguous();
  TORCH_CHECK(at::isfinite(q).all().item<bool>(),
              "match_one_to_one: quality has non-finite entries");
  const at::Tensor has_cand = cand.any(0);  // [N]

  if (matcher == OneToOneMatcher::kTop1) {
    const at::Tensor masked = at::where(cand, q, at::full({}, -1.0, q.options()));
    const at::Tensor best = masked.argmax(0);
    return at::where(has_cand, best, result);
  }

  // Only rows and columns with a candidate take part; the rest could only join forbidden pairs.
  const at::Tensor rows = cand.any(1).nonzero().squeeze(1);
  const at::Tensor cols = has_cand.nonzero().squeeze(1);
  if (rows.numel() == 0) return result;
  const at::Tensor sub_cand = cand.index_select(0, rows).index_select(1, cols);
  const double forbidden = -static_cast<double>(cols.numel() + 1);
  const at::Tensor cost = at::where(sub_cand, q.index_select(0, rows).index_select(1, cols),
                                    at::full({}, forbidden, q.options()))
                              .contiguous();
  const Assignment a =
      linear_sum_assignment(cost.data_ptr<double>(), static_cast<size_t>(cost.size(0)),
                            static_cast<size_t>(cost.size(1)), /*maximize=*/true);
  const auto cand_a = sub_cand.accessor<bool, 2>();
  const auto rows_a = rows.accessor<int64_t, 1>();
  const auto cols_a = cols.accessor<int64_t, 1>();
  auto out = result.accessor<int64_t, 1>();
  for (size_t k = 0; k < a.rows.size(); ++k) {
    if (cand_a[a.rows[k]][a.cols[k]]) out[cols_a[a.cols[k]]] = rows_a[a.rows[k]];
  }
  return result;
}

OneToOneTargets assign_one_to_one(const at::Tensor& prob, const at::Tensor& pred_boxes,
                                  const at::Tensor& matched,
                                  const std::vector<at::Tensor>& gt_boxes,
                                  const std::vector<at::Tensor>& gt_labels,
                                  const OneToOneOptions& options) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(prob.dim() == 3, "assign_one_to_one: prob must be [B, P, C], got ", prob.sizes());
  const int64_t b = prob.size(0), p = prob.size(1), c = prob.size(2);
  TORCH_CHECK(pred_boxes.dim() == 3 && pred_boxes.size(0) == b && pred_boxes.size(1) == p &&
                  pred_boxes.size(2) == 4,
              "assign_one_to_one: pred_boxes must be [", b, ", ", p, ", 4], got ",
              pred_boxes.sizes());
  TORCH_CHECK(matched.dim() == 2 && matched.size(0) == b && matched.size(1) == p,
              "assign_one_to_one: matched must be [", b, ", ", p, "], got ", matched.sizes());
  TORCH_CHECK(
      static_cast<int64_t>(gt_boxes.size()) == b && static_cast<int64_t>(gt_labels.size()) == b,
      "assign_one_to_one: ", b, " images but ", gt_boxes.size(), " box tensors and ",
      gt_labels.size(), " label tensors");
  OneToOneTargets out;
  out.labels = at::zeros({b, p, c}, prob.options().dtype(at::kFloat));
  const at::Tensor prob_cpu = prob.to(at::kCPU, at::kFloat);
  const at::Tensor boxes_cpu = pred_boxes.to(at::kCPU, at::kFloat);
  const at::Tensor matched_cpu = matched.to(at::kCPU, at::kLong);
  for (int64_t i = 0; i < b; ++i) {
    const at::Tensor gtb = gt_boxes[i].to(at::kCPU, at::kFloat).reshape({-1, 4}).contiguous();
    const at::Tensor gtl = gt_labels[i].to(at::kCPU, at::kLong).reshape(-1);
    const int64_t n = gtb.size(0);
    TORCH_CHECK(gtl.size(0) == n, "assign_one_to_one: image ", i, " has ", n, " boxes but ",
                gtl.size(0), " labels");
    TORCH_CHECK(n == 0 || (gtl.min().item<int64_t>() >= 0 && gtl.max().item<int64_t>() < c),
                "assign_one_to_one: image ", i, " has labels outside [0, ", c, ")");
    at::Tensor assigned = at::full({n}, -1, at::kLong);
    const at::Tensor rows = (matched_cpu[i] >= 0).nonzero().squeeze(1);  // union of the Omega_j
    if (n > 0 && rows.numel() > 0) {
      const at::Tensor m = matched_cpu[i].index_select(0, rows);
      TORCH_CHECK(m.max().item<int64_t>() < n, "assign_one_to_one: image ", i,
                  " has a point matched to GT ", m.max().item<int64_t>(), " of ", n);
      const at::Tensor cand = m.unsqueeze(1) == at::arange(n, at::kLong).unsqueeze(0);  // [K, N]
      const at::Tensor pr = prob_cpu[i].index_select(0, rows).index_select(1, gtl);     // [K, N]
      const at::Tensor pb = boxes_cpu[i].index_select(0, rows).contiguous();
      at::Tensor iou = at::empty({rows.numel(), n}, at::kFloat);
      box_iou_matrix(pb.data_ptr<float>(), static_cast<size_t>(pb.size(0)), gtb.data_ptr<float>(),
                     static_cast<size_t>(n), iou.data_ptr<float>());
      const at::Tensor q = matching_quality(pr, iou, cand, options.alpha);
      const at::Tensor pick = match_one_to_one(q, cand, options.matcher);  // [N] rows of q or -1
      const at::Tensor ok = pick >= 0;
      assigned = at::where(ok, rows.index_select(0, pick.clamp_min(0)), assigned);
      const at::Tensor js = ok.nonzero().squeeze(1);
      if (js.numel() > 0) {
        const at::Tensor pts = assigned.index_select(0, js).to(out.labels.device());
        const at::Tensor cls = gtl.index_select(0, js).to(out.labels.device());
        out.labels[i].index_put_({pts, cls}, 1.0);
        out.num_positives += js.numel();
      }
    }
    out.assigned.push_back(assigned);
  }
  return out;
}

}  // namespace setdet
