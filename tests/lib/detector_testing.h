// Fixtures shared by the detector tests (FCOS, FCOS_PSS, RetinaNet): image metas, a tiny
// two-image batch a detector can overfit, and the error message of building a detector.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <torch/optim/sgd.h>

#include <cmath>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "setdet/config/config.h"
#include "setdet/structures/batch.h"
#include "setdet/engine/autocast.h"
#include "setdet/models/detector.h"
#include "testing.h"

namespace setdet::test_util {

// Meta of an unresized, unpadded h x w image.
inline ImageMeta meta(int64_t h, int64_t w) {
  ImageMeta m;
  m.original_hw = m.input_hw = m.padded_hw = {h, w};
  return m;
}

// Two 128 x 128 noise images (at::randn, so the global seed decides them) with three objects:
// image 0 holds {16, 24, 80, 96} labelled 2 and {90, 10, 120, 40} labelled `second_label`,
// image 1 holds {30, 30, 110, 70} labelled 0. Each object's box is brightened (+2) in colour
// channel label % 3, so the images carry the signal a detector can learn.
inline Batch two_image_batch(int64_t second_label = 1) {
  Batch b;
  b.images = at::randn({2, 3, 128, 128}) * 0.5;
  b.boxes = {at::tensor({16.f, 24.f, 80.f, 96.f, 90.f, 10.f, 120.f, 40.f}).view({2, 4}),
             at::tensor({30.f, 30.f, 110.f, 70.f}).view({1, 4})};
  b.labels = {at::tensor({int64_t{2}, second_label}), at::tensor({int64_t{0}})};
  for (int64_t i = 0; i < 2; ++i) {
    for (int64_t j = 0; j < b.boxes[i].size(0); ++j) {
      const at::Tensor bx = b.boxes[i][j].to(at::kLong);
      const int64_t x1 = bx[0].item<int64_t>(), y1 = bx[1].item<int64_t>();
      const int64_t x2 = bx[2].item<int64_t>(), y2 = bx[3].item<int64_t>();
      b.images[i]
          .select(0, b.labels[i][j].item<int64_t>() % 3)
          .narrow(0, y1, y2 - y1)
          .narrow(1, x1, x2 - x1) += 2.0;
    }
    b.metas.push_back(meta(128, 128));
  }
  return b;
}

// The message of the error building the detector described by `yaml` (file "m.yaml") raises;
// "" if it builds.
inline std::string build_error(const std::string& yaml) {
  return error_of([&] { DetectorRegistry().build(Config::parse(yaml, "m.yaml")); });
}

// Trains `model` for `steps` SGD steps (lr 0.01, momentum 0.9) on `batch`, minimising the sum of
// the losses named in `names`; returns that sum at every step. Each step's losses must contain
// every name and at least `min_pos` positives ("num_pos"), and their sum must be finite. With
// `autocast`, losses() runs under it (as the runner does).
inline std::vector<double> sgd_loss_totals(
    DetectorModel& model, const Batch& batch, int steps, const std::vector<std::string>& names,
    double min_pos, std::optional<c10::ScalarType> autocast = std::nullopt) {
  model.train();
  torch::optim::SGD opt(model.parameters(), torch::optim::SGDOptions(0.01).momentum(0.9));
  std::vector<double> totals;
  for (int it = 0; it < steps; ++it) {
    std::map<std::string, at::Tensor> losses;
    {
      const AutocastGuard guard(autocast, batch.images.device().type());
      losses = model.losses(batch);
    }
    at::Tensor total = at::zeros({});
    for (const auto& name : names) {
      if (losses.count(name) == 0) {
        ADD_FAILURE() << "step " << it << ": no loss '" << name << "'";
        return totals;
      }
      total = total + losses.at(name);
    }
    EXPECT_GE(losses.at("num_pos").item<double>(), min_pos) << "step " << it;
    totals.push_back(total.item<double>());
    if (!std::isfinite(totals.back())) {
      ADD_FAILURE() << "step " << it << ": loss " << totals.back();
      return totals;
    }
    opt.zero_grad();
    total.backward();
    opt.step();
  }
  return totals;
}

}  // namespace setdet::test_util
