// Point-set helpers shared by the point-assigner tests (FCOS, ATSS).
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "setdet/assign/fcos_assigner.h"

namespace setdet::test_util {

// Square grids of `sides[l]` cells with strides[l], points at cell centres (offset 0.5).
inline PointSet grid(const std::vector<int64_t>& strides, const std::vector<int64_t>& sides) {
  PointSet ps;
  std::vector<at::Tensor> pts;
  for (size_t l = 0; l < strides.size(); ++l) {
    const auto c = (torch::arange(sides[l], torch::kFloat) + 0.5) * strides[l];
    const auto g = torch::meshgrid({c, c}, "ij");
    pts.push_back(torch::stack({g[1].reshape(-1), g[0].reshape(-1)}, 1));
    ps.strides.push_back(strides[l]);
    ps.num_points.push_back(sides[l] * sides[l]);
  }
  ps.points = torch::cat(pts, 0);
  return ps;
}

// Indices of the points of `image` assigned to some GT.
inline std::vector<int64_t> positive_indices(const PointTargets& t, int64_t image,
                                             int64_t num_classes) {
  const auto idx = (t.labels[image] != num_classes).nonzero().reshape(-1);
  return std::vector<int64_t>(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
}

// Index of the point at exactly (x, y), -1 if there is none.
inline int64_t point_index(const PointSet& ps, float x, float y) {
  const auto hit = ((ps.points.select(1, 0) == x) & (ps.points.select(1, 1) == y)).nonzero();
  return hit.numel() == 1 ? hit.item<int64_t>() : -1;
}

}  // namespace setdet::test_util
