#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <memory>

#include "setdet/config/config.h"
#include "setdet/config/registry.h"
#include "testing.h"

namespace setdet {
namespace {

namespace fs = std::filesystem;

using test_util::error_of;

struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("setdet_config_" + std::to_string(::getpid()));
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(path / name) << text;
    return path / name;
  }
};

TEST(Config, BaseInheritanceMergesMapsAndReplacesScalars) {
  TempDir dir;
  dir.write("base.yaml",
            "model:\n  head: {num_convs: 4, channels: 256}\n  neck: {type: FPN}\nlr: 0.01\n");
  const auto child =
      dir.write("child.yaml", "_base_: base.yaml\nmodel:\n  head: {num_convs: 2}\nlr: 0.002\n");
  const Config cfg = Config::load(child.string());
  EXPECT_EQ(cfg["model"]["head"].get<int>("num_convs"), 2);
  EXPECT_EQ(cfg["model"]["head"].get<int>("channels"), 256);
  EXPECT_EQ(cfg["model"]["neck"].get<std::string>("type"), "FPN");
  EXPECT_DOUBLE_EQ(cfg.get<double>("lr"), 0.002);
  EXPECT_FALSE(cfg.has("_base_"));
}

TEST(Config, DeleteMarkerRemovesInheritedKey) {
  TempDir dir;
  dir.write("base.yaml", "a: {b: 1, c: 2}\n");
  const auto child = dir.write("child.yaml", "_base_: [base.yaml]\na: {c: _delete_}\n");
  const Config cfg = Config::load(child.string());
  EXPECT_TRUE(cfg["a"].has("b"));
  EXPECT_FALSE(cfg["a"].has("c"));
}

TEST(Config, DeleteTrueReplacesTheInheritedMap) {
  TempDir dir;
  dir.write("base.yaml",
            "model: {assigner: {type: FCOSAssigner, regress_ranges: [[-1, 8]]}, k: 1}\n");
  const auto child = dir.write(
      "child.yaml", "_base_: base.yaml\nmodel: {assigner: {_delete_: true, type: ATSSAssigner}}\n");
  const Config cfg = Config::load(child.string());
  EXPECT_EQ(cfg["model"]["assigner"].get<std::string>("type"), "ATSSAssigner");
  EXPECT_FALSE(cfg["model"]["assigner"].has("regress_ranges"));
  EXPECT_FALSE(cfg["model"]["assigner"].has("_delete_"));
  EXPECT_EQ(cfg["model"].get<int>("k"), 1);  // only the marked map is replaced
  const auto off = dir.write(
      "off.yaml", "_base_: base.yaml\nmodel: {assigner: {_delete_: false, type: ATSSAssigner}}\n");
  EXPECT_TRUE(Config::load(off.string())["model"]["assigner"].has("regress_ranges"));
  const auto bad = dir.write("bad.yaml", "_base_: base.yaml\nmodel: {assigner: {_delete_: 3}}\n");
  EXPECT_NE(
      error_of([&] { Config::load(bad.string()); }).find("_delete_ inside a map must be true"),
      std::string::npos);
}

TEST(Config, InheritanceCycleIsAnError) {
  TempDir dir;
  dir.write("a.yaml", "_base_: b.yaml\n");
  const auto b = dir.write("b.yaml", "_base_: a.yaml\n");
  EXPECT_NE(error_of([&] { Config::load(b.string()); }).find("cycle"), std::string::npos);
}

TEST(Config, OverridesParseYamlValuesAndCreateMaps) {
  Config cfg = Config::parse("model: {head: {num_convs: 4}}\n", "t.yaml");
  cfg.set_override("model.head.num_convs=2");
  cfg.set_override("optimizer.lr=0.5");
  cfg.set_override("data.scales=[128, 256]");
  EXPECT_EQ(cfg["model"]["head"].get<int>("num_convs"), 2);
  EXPECT_DOUBLE_EQ(cfg["optimizer"].get<double>("lr"), 0.5);
  EXPECT_EQ(cfg["data"]["scales"].as<std::vector<int>>(), (std::vector<int>{128, 256}));
  EXPECT_NE(error_of([&] { cfg.set_override("novalue"); }).find("expected key.path=value"),
            std::string::npos);
  EXPECT_NE(error_of([&] { cfg.set_override("model.head.num_convs.x=1"); }).find("is not a map"),
            std::string::npos);
}

TEST(Config, OverridesIndexSequences) {
  Config cfg = Config::parse("pipeline: [{type: Resize, size: 800}, {type: Pad}]\n", "t.yaml");
  cfg.set_override("pipeline.0.size=320");
  cfg.set_override("pipeline.1={type: Pad, size_divisor: 64}");
  EXPECT_EQ(cfg["pipeline"].at(0).get<int>("size"), 320);
  EXPECT_EQ(cfg["pipeline"].at(1).get<int>("size_divisor"), 64);
  EXPECT_NE(error_of([&] {
              cfg.set_override("pipeline.2.size=1");
            }).find("'2' is not an index of a sequence of 2"),
            std::string::npos);
  EXPECT_NE(error_of([&] { cfg.set_override("pipeline.first.size=1"); }).find("not an index"),
            std::string::npos);
  cfg.set_override("pipeline.1.size_divisor=_delete_");
  EXPECT_FALSE(cfg["pipeline"].at(1).has("size_divisor"));
  EXPECT_TRUE(cfg["pipeline"].at(1).has("type"));
}

TEST(Config, ErrorsNameFileAndKeyPath) {
  const Config cfg = Config::parse("model: {head: {num_convs: four}}\n", "fcos.yaml");
  EXPECT_EQ(error_of([&] { cfg["model"]["neck"]; }), "fcos.yaml: missing key 'model.neck'");
  EXPECT_EQ(error_of([&] { cfg["model"]["head"].get<int>("num_convs"); }),
            "fcos.yaml: model.head.num_convs: expected an integer, got 'four'");
  EXPECT_EQ(error_of([&] { cfg["model"]["head"].check_keys({"channels"}); }),
            "fcos.yaml: unknown key 'model.head.num_convs' (known: channels)");
}

SETDET_DEFINE_REGISTRY(TestShapeRegistry, std::shared_ptr<int>, "shape")
SETDET_REGISTER(TestShapeRegistry, "Square", [](const Config& cfg) {
  return std::make_shared<int>(cfg.get<int>("side", 1) * cfg.get<int>("side", 1));
});

TEST(Registry, BuildsRegisteredTypeAndNamesKnownChoicesOtherwise) {
  const Config cfg =
      Config::parse("a: {type: Square, side: 3}\nb: {type: Circle}\nc: {side: 1}\n", "shapes.yaml");
  EXPECT_EQ(*TestShapeRegistry().build(cfg["a"]), 9);
  EXPECT_EQ(error_of([&] { TestShapeRegistry().build(cfg["b"]); }),
            "shapes.yaml: b.type: unknown shape 'Circle' (known: Square)");
  EXPECT_EQ(error_of([&] { TestShapeRegistry().build(cfg["c"]); }),
            "shapes.yaml: c: a shape needs a 'type' key (known: Square)");
  EXPECT_NE(error_of([] { TestShapeRegistry().add("Square", nullptr); }).find("registered twice"),
            std::string::npos);
}

}  // namespace
}  // namespace setdet
