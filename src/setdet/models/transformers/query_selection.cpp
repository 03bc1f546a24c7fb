#include "setdet/models/transformers/query_selection.h"

#include <ATen/ATen.h>

#include <algorithm>
#include <vector>

#include "setdet/core/dedup/nms.h"

namespace setdet {

at::Tensor topk_query_selection(const at::Tensor& logits, int64_t k) {
  TORCH_CHECK(logits.dim() == 2, "topk_query_selection: logits must be [N, S], got ",
              logits.sizes());
  TORCH_CHECK(k > 0 && k <= logits.size(1), "topk_query_selection: k must be in [1, ",
              logits.size(1), "] (the number of positions), got ", k);
  return std::get<1>(logits.topk(k, 1));
}

at::Tensor deta_query_selection(const at::Tensor& logits, const at::Tensor& boxes,
                                const at::Tensor& level_ids, int64_t num_levels, int64_t k,
                                const DetaQuerySelectionOptions& options) {
  TORCH_CHECK(logits.dim() == 2 && boxes.dim() == 3 && boxes.size(0) == logits.size(0) &&
                  boxes.size(1) == logits.size(1) && boxes.size(2) == 4,
              "deta_query_selection: logits must be [N, S] and boxes [N, S, 4], got ",
              logits.sizes(), " and ", boxes.sizes());
  TORCH_CHECK(level_ids.dim() == 1 && level_ids.size(0) == logits.size(1),
              "deta_query_selection: level_ids must be [S] = [", logits.size(1), "], got ",
              level_ids.sizes());
  TORCH_CHECK(num_levels > 0 && k > 0 && k <= logits.size(1),
              "deta_query_selection: k must be in [1, ", logits.size(1),
              "] and num_levels > 0, got k ", k, ", num_levels ", num_levels);
  TORCH_CHECK(options.pre_nms_top_k > 0,
              "deta_query_selection: pre_nms_top_k must be positive, got ", options.pre_nms_top_k);
  const at::Tensor lvl = level_ids.to(at::kCPU, at::kLong).contiguous();
  const at::Tensor all_logits = logits.detach().to(at::kCPU, at::kFloat).contiguous();
  const at::Tensor all_boxes = boxes.detach().to(at::kCPU, at::kFloat).contiguous();
  std::vector<at::Tensor> level_pos;
  for (int64_t l = 0; l < num_levels; ++l) level_pos.push_back((lvl == l).nonzero().squeeze(1));
  const int64_t per_level = k / num_levels;
  NmsOptions nms_opts;
  nms_opts.iou_threshold = options.nms_iou_threshold;

  std::vector<at::Tensor> out;
  for (int64_t b = 0; b < logits.size(0); ++b) {
    const at::Tensor lg = all_logits[b];
    std::vector<at::Tensor> pre;
    for (const at::Tensor& pos : level_pos) {
      if (pos.numel() == 0) continue;
      const int64_t n = std::min<int64_t>(options.pre_nms_top_k, pos.numel());
      pre.push_back(pos.index_select(0, std::get<1>(lg.index_select(0, pos).sigmoid().topk(n))));
    }
    const at::Tensor cand = at::cat(pre);
    const at::Tensor cb = all_boxes[b].index_select(0, cand).contiguous();
    const at::Tensor cs = lg.index_select(0, cand).contiguous();
    const at::Tensor cl = lvl.index_select(0, cand).contiguous();
    const std::vector<int64_t> kept =
        batched_nms(cb.data_ptr<float>(), cs.data_ptr<float>(), cl.data_ptr<int64_t>(),
                    static_cast<size_t>(cand.numel()), nms_opts);
    at::Tensor order;  // survivors, descending score
    if (static_cast<int64_t>(kept.size()) < k) {
      order = std::get<1>(lg.topk(k));
    } else {
      order = cand.index_select(0, at::tensor(kept, at::kLong));
    }
    const int64_t* o = order.data_ptr<int64_t>();
    const int64_t* lv = lvl.data_ptr<int64_t>();
    const int64_t n = order.numel();
    std::vector<char> chosen(static_cast<size_t>(n), 0);
    std::vector<int64_t> count(static_cast<size_t>(num_levels), 0);
    int64_t total = 0;
    for (int64_t i = 0; i < n; ++i) {
      int64_t& c = count[static_cast<size_t>(lv[o[i]])];
      if (c < per_level) {
        ++c;
        chosen[static_cast<size_t>(i)] = 1;
        ++total;
      }
    }
    for (int64_t i = 0; i < n && total < k; ++i) {
      if (!chosen[static_cast<size_t>(i)]) {
        chosen[static_cast<size_t>(i)] = 1;
        ++total;
      }
    }
    std::vector<int64_t> sel;
    sel.reserve(static_cast<size_t>(k));
    for (int64_t i = 0; i < n; ++i) {
      if (chosen[static_cast<size_t>(i)]) sel.push_back(o[i]);
    }
    out.push_back(at::tensor(sel, at::kLong));
  }
  return at::stack(out).to(logits.device());
}

}  // namespace setdet
