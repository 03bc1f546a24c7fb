// Partial weight transfer: class rows copied per mapping (one source class to many targets),
// unmapped rows and source-less tensors as initialised, whole tensors copied, the class layouts
// (anchor groups, background first / last, rows per class), the map file and the errors.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>

#include "setdet/io/weight_transfer.h"
#include "testing.h"

namespace setdet {
namespace {

using test_util::error_of;

// A module holding the given parameters (and buffers) under their own names.
struct Holder : torch::nn::Module {
  Holder(const std::vector<std::pair<std::string, at::Tensor>>& params,
         const std::vector<std::pair<std::string, at::Tensor>>& buffers = {}) {
    for (const auto& [n, t] : params) register_parameter(n, t);
    for (const auto& [n, t] : buffers) register_buffer(n, t);
  }
};

// A toy detector: a shared trunk, a one-stage classifier with `anchors` groups of C classes, a
// two-stage predictor with the background last (logits and 4 box rows per class), and a head
// layer the source does not have.
struct ToyDetector : torch::nn::Module {
  ToyDetector(int64_t classes, int64_t anchors, bool with_extra) {
    register_module(
        "trunk",
        std::make_shared<Holder>(
            std::vector<std::pair<std::string, at::Tensor>>{{"weight", torch::randn({6, 3})}},
            std::vector<std::pair<std::string, at::Tensor>>{{"running_mean", torch::randn({6})}}));
    auto head = std::make_shared<torch::nn::Module>();
    head->register_module("cls_logits",
                          std::make_shared<Holder>(std::vector<std::pair<std::string, at::Tensor>>{
                              {"weight", torch::randn({anchors * classes, 6, 3, 3})},
                              {"bias", torch::randn({anchors * classes})}}));
    if (with_extra) {
      head->register_module(
          "extra", std::make_shared<Holder>(std::vector<std::pair<std::string, at::Tensor>>{
                       {"weight", torch::randn({5})}}));
    }
    register_module("head", head);
    auto roi = std::make_shared<torch::nn::Module>();
    roi->register_module("cls_score",
                         std::make_shared<Holder>(std::vector<std::pair<std::string, at::Tensor>>{
                             {"weight", torch::randn({classes + 1, 6})}}));
    roi->register_module("bbox_pred",
                         std::make_shared<Holder>(std::vector<std::pair<std::string, at::Tensor>>{
                             {"weight", torch::randn({(classes + 1) * 4, 6})}}));
    register_module("roi", roi);
  }
  at::Tensor get(const std::string& name) const {
    for (const auto& p : named_parameters()) {
      if (p.key() == name) return p.value();
    }
    for (const auto& b : named_buffers()) {
      if (b.key() == name) return b.value();
    }
    throw std::runtime_error("no tensor " + name);
  }
  NamedTensors tensors() const {
    NamedTensors out;
    for (const auto& p : named_parameters()) out.emplace_back(p.key(), p.value().detach().clone());
    for (const auto& b : named_buffers()) out.emplace_back(b.key(), b.value().detach().clone());
    return out;
  }
};

// source classes: person, car; target: man, woman, car, dog (dog unmapped)
const char* kMap = R"(
target_config: unused.yaml
source_classes: [person, car]
target_classes: [man, woman, car, dog]
classes: {man: person, woman: person, car: car}
class_tensors:
  - {name: 'head\.cls_logits\.(weight|bias)'}
  - {name: 'roi\.cls_score\.weight', background: last}
  - {name: 'roi\.bbox_pred\.weight', background: last, rows_per_class: 4}
)";

TEST(WeightTransfer, CopiesClassRowsByTheMapping) {
  torch::manual_seed(0);
  const ToyDetector src(2, /*anchors=*/3, false);
  ToyDetector dst(4, 3, true);
  const NamedTensors before = dst.tensors();
  const WeightTransferPlan plan = WeightTransferPlan::from_config(Config::parse(kMap, "map.yaml"));
  EXPECT_EQ(plan.target_to_source, (std::vector<int64_t>{0, 0, 1, -1}));
  const WeightTransferReport r = transfer_weights("src.pt", src.tensors(), dst, plan);
  EXPECT_EQ(r.mapped_classes, 3);
  EXPECT_EQ(r.copied, (std::vector<std::string>{"trunk.weight", "trunk.running_mean"}));
  EXPECT_EQ(r.class_rows.size(), 4u);
  EXPECT_EQ(r.initialised, std::vector<std::string>{"head.extra.weight"});

  EXPECT_TRUE(dst.get("trunk.weight").equal(src.get("trunk.weight")));
  EXPECT_TRUE(dst.get("trunk.running_mean").equal(src.get("trunk.running_mean")));
  const auto initial = [&](const std::string& name) {
    for (const auto& [n, t] : before) {
      if (n == name) return t;
    }
    throw std::runtime_error(name);
  };
  EXPECT_TRUE(dst.get("head.extra.weight").equal(initial("head.extra.weight")));

  // one-stage logits: anchor a, class c at row a * C + c
  const std::vector<int64_t> g{0, 0, 1, -1};
  for (const std::string name : {"head.cls_logits.weight", "head.cls_logits.bias"}) {
    const at::Tensor d = dst.get(name), s = src.get(name), d0 = initial(name);
    for (int64_t a = 0; a < 3; ++a) {
      for (int64_t k = 0; k < 4; ++k) {
        const at::Tensor row = d[a * 4 + k];
        if (g[k] >= 0) {
          EXPECT_TRUE(row.equal(s[a * 2 + g[k]])) << name << " a" << a << " k" << k;
        } else {
          EXPECT_TRUE(row.equal(d0[a * 4 + k])) << name << " a" << a << " k" << k;
        }
      }
    }
  }
  // two-stage: background last (row C), 4 box rows per class
  const at::Tensor cls = dst.get("roi.cls_score.weight"), scls = src.get("roi.cls_score.weight");
  EXPECT_TRUE(cls[0].equal(scls[0]));
  EXPECT_TRUE(cls[1].equal(scls[0]));
  EXPECT_TRUE(cls[2].equal(scls[1]));
  EXPECT_TRUE(cls[3].equal(initial("roi.cls_score.weight")[3]));
  EXPECT_TRUE(cls[4].equal(scls[2]));  // background
  const at::Tensor box = dst.get("roi.bbox_pred.weight"), sbox = src.get("roi.bbox_pred.weight");
  EXPECT_TRUE(box.narrow(0, 4, 4).equal(sbox.narrow(0, 0, 4)));   // woman <- person
  EXPECT_TRUE(box.narrow(0, 8, 4).equal(sbox.narrow(0, 4, 4)));   // car <- car
  EXPECT_TRUE(box.narrow(0, 16, 4).equal(sbox.narrow(0, 8, 4)));  // background
  EXPECT_TRUE(box.narrow(0, 12, 4).equal(initial("roi.bbox_pred.weight").narrow(0, 12, 4)));
}

TEST(WeightTransfer, BackgroundFirstAndKeepInitialised) {
  torch::manual_seed(1);
  const ToyDetector src(2, 1, false);
  ToyDetector dst(3, 1, false);
  const NamedTensors before = dst.tensors();
  const WeightTransferPlan plan = WeightTransferPlan::from_config(Config::parse(R"(
source_classes: [a, b]
target_classes: [x, y, z]
classes: {x: b, z: b}
class_tensors:
  - {name: 'head\.cls_logits\..*'}
  - {name: 'roi\.cls_score\.weight', background: first}
  - {name: 'roi\.bbox_pred\.weight', background: first, rows_per_class: 4}
keep_initialised: ['trunk\..*']
)"));
  const WeightTransferReport r = transfer_weights("src", src.tensors(), dst, plan);
  EXPECT_EQ(r.copied.size(), 0u);
  EXPECT_EQ(r.initialised, (std::vector<std::string>{"trunk.weight", "trunk.running_mean"}));
  EXPECT_TRUE(dst.get("trunk.weight").equal(before[0].second));
  const at::Tensor cls = dst.get("roi.cls_score.weight"), scls = src.get("roi.cls_score.weight");
  EXPECT_TRUE(cls[0].equal(scls[0]));  // background
  EXPECT_TRUE(cls[1].equal(scls[2]));  // x <- b
  EXPECT_TRUE(cls[3].equal(scls[2]));  // z <- b
  const at::Tensor box = dst.get("roi.bbox_pred.weight"), sbox = src.get("roi.bbox_pred.weight");
  EXPECT_TRUE(box.narrow(0, 0, 4).equal(sbox.narrow(0, 0, 4)));
  EXPECT_TRUE(box.narrow(0, 12, 4).equal(sbox.narrow(0, 8, 4)));
}

TEST(WeightTransfer, ErrorsNameTheTensorAndLeaveTheTargetUntouched) {
  torch::manual_seed(2);
  const WeightTransferPlan plan = WeightTransferPlan::from_config(Config::parse(kMap, "map.yaml"));
  ToyDetector dst(4, 3, false);
  const NamedTensors before = dst.tensors();
  const auto unchanged = [&] {
    const NamedTensors now = dst.tensors();
    for (size_t i = 0; i < now.size(); ++i) {
      if (!now[i].second.equal(before[i].second)) return false;
    }
    return true;
  };

  // a shared tensor of another shape
  ToyDetector wide(2, 3, false);
  NamedTensors src = wide.tensors();
  src[0].second = torch::zeros({7, 3});
  std::string e = error_of([&] { transfer_weights("src.pt", src, dst, plan); });
  EXPECT_NE(e.find("src.pt: tensor 'trunk.weight' has shape [7, 3] in the source and [6, 3] in "
                   "the target (list it in class_tensors or keep_initialised)"),
            std::string::npos)
      << e;
  EXPECT_TRUE(unchanged());

  // a class tensor whose rows are not groups of the source's classes (3 anchors x 2 classes = 6)
  src = wide.tensors();
  for (auto& [n, t] : src) {
    if (n == "head.cls_logits.bias") t = torch::zeros({5});
  }
  e = error_of([&] { transfer_weights("src.pt", src, dst, plan); });
  EXPECT_NE(
      e.find("class tensor 'head.cls_logits.bias' has 5 rows, not a multiple of 2 (2 classes)"),
      std::string::npos)
      << e;
  // anchors differ
  const ToyDetector one_anchor(2, 1, false);
  e = error_of([&] { transfer_weights("src.pt", one_anchor.tensors(), dst, plan); });
  EXPECT_NE(e.find("class tensor 'head.cls_logits.weight' has 1 groups of classes in the source "
                   "and 3 in the target"),
            std::string::npos)
      << e;
  // other dims differ
  src = wide.tensors();
  for (auto& [n, t] : src) {
    if (n == "roi.cls_score.weight") t = torch::zeros({3, 9});
  }
  e = error_of([&] { transfer_weights("src.pt", src, dst, plan); });
  EXPECT_NE(e.find("'roi.cls_score.weight' has shape [3, 9] in the source and [5, 6] in the "
                   "target: only dim 0 (classes) may differ"),
            std::string::npos)
      << e;
  // a class tensor the source lacks
  src = wide.tensors();
  src.erase(std::find_if(src.begin(), src.end(),
                         [](const auto& nt) { return nt.first == "head.cls_logits.weight"; }));
  e = error_of([&] { transfer_weights("src.pt", src, dst, plan); });
  EXPECT_NE(
      e.find("class tensor 'head.cls_logits.weight' (rule 'head\\.cls_logits\\.(weight|bias)') "
             "is not in the source"),
      std::string::npos)
      << e;
  EXPECT_TRUE(unchanged());

  // the map
  e = error_of([] {
    WeightTransferPlan::from_config(Config::parse(
        "{source_classes: [a], target_classes: [x], classes: {x: q}, class_tensors: [{name: w}]}",
        "m.yaml"));
  });
  EXPECT_NE(e.find("m.yaml: classes.x: 'q' is not a source class (a)"), std::string::npos) << e;
  e = error_of([] {
    WeightTransferPlan::from_config(Config::parse(
        "{source_classes: [a], target_classes: [x], classes: {y: a}, class_tensors: [{name: w}]}",
        "m.yaml"));
  });
  EXPECT_NE(e.find("'y' is not a target class (x)"), std::string::npos) << e;
  e = error_of([] {
    WeightTransferPlan::from_config(Config::parse(
        "{source_classes: [a, a], target_classes: [x], class_tensors: [{name: w}]}", "m.yaml"));
  });
  EXPECT_NE(e.find("source_classes[1]: class 'a' is listed twice"), std::string::npos) << e;
  e = error_of([] {
    WeightTransferPlan::from_config(Config::parse(
        "{source_classes: [a], target_classes: [x], class_tensors: [{name: w, background: "
        "middle}]}",
        "m.yaml"));
  });
  EXPECT_NE(e.find("background: expected none, first or last, got 'middle'"), std::string::npos)
      << e;
  e = error_of([] {
    WeightTransferPlan::from_config(Config::parse(
        "{source_classes: [a], target_classes: [x], class_tensors: [{name: '(w'}]}", "m.yaml"));
  });
  EXPECT_NE(e.find("invalid regular expression '(w'"), std::string::npos) << e;
  e = error_of([] {
    WeightTransferPlan::from_config(Config::parse(
        "{source_classes: [a], target_classes: [x], class_tensors: [{name: w}], colour: red}",
        "m.yaml"));
  });
  EXPECT_NE(e.find("unknown key 'colour'"), std::string::npos) << e;
}

}  // namespace
}  // namespace setdet
