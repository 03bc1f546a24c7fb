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

// `levels` + 1 anchored lists of `width` items, each item an alias of the previous list:
// width^levels leaves when expanded. Block style ("a0: &a0 [...]" lines) or one flow map.
std::string alias_bomb(int levels, int width, bool flow) {
  std::string y = flow ? "{" : "";
  for (int k = 0; k <= levels; ++k) {
    const std::string name = "a" + std::to_string(k);
    const std::string item = k == 0 ? "lol" : "*a" + std::to_string(k - 1);
    y += (flow && k > 0 ? ", " : "") + name + ": &" + name + " [" + item;
    for (int j = 1; j < width; ++j) y += ", " + item;
    y += flow ? "]" : "]\n";
  }
  return flow ? y + "}" : y;
}

TEST(Config, AliasBombsAreRefusedWithAndWithoutBase) {
  TempDir dir;
  const auto bomb = dir.write("bomb.yaml", alias_bomb(9, 9, false));
  const auto child = dir.write("child.yaml", "_base_: bomb.yaml\nlr: 1\n");
  const auto parent = dir.write("parent.yaml", "a: 1\n");
  const auto bomb_child =
      dir.write("bomb_child.yaml", "_base_: parent.yaml\n" + alias_bomb(9, 9, false));
  for (const auto& [file, named] :
       {std::pair{bomb, bomb}, {child, bomb}, {bomb_child, bomb_child}}) {
    const std::string e = error_of([&] { Config::load(file.string()); });
    EXPECT_NE(e.find(named.string() + ": the config expands to more than 100000 YAML nodes"),
              std::string::npos)
        << file << ": " << e;
  }
  Config cfg = Config::parse("a: 1");
  const std::string e = error_of([&] { cfg.set_override("a=" + alias_bomb(5, 10, true)); });
  EXPECT_NE(e.find("--set 'a={a0: &a0 [lol"), std::string::npos) << e;
  EXPECT_NE(e.find("expands to more than 100000 YAML nodes"), std::string::npos) << e;
}

// Found by fuzz_config: an anchor whose list holds an alias of itself is a cycle; walking it
// used to build ever longer key paths until memory ran out.
TEST(Config, SelfReferentialAliasIsRefused) {
  TempDir dir;
  const auto cyclic = dir.write("cyclic.yaml", "_base_: [base.yaml]\nx: &x [1, *x]\n");
  dir.write("base.yaml", "y: 1\n");
  const std::string e = error_of([&] { Config::load(cyclic.string()); });
  EXPECT_NE(e.find("cyclic.yaml: the config expands to more than 100000 YAML nodes (aliases of "
                   "aliases?); stopped under 'x[1][1][1]"),
            std::string::npos)
      << e;
  const std::string p = error_of([] { Config::parse("a: {b: &b {c: *b}}", "p.yaml"); });
  EXPECT_NE(p.find("p.yaml: the config expands to more than 100000 YAML nodes"), std::string::npos)
      << p;
}

TEST(Config, BaseMustNameFiles) {
  TempDir dir;
  fs::create_directories(dir.path / "sub");
  const auto as_map = dir.write("map.yaml", "_base_: {file: a.yaml}\n");
  std::string e = error_of([&] { Config::load(as_map.string()); });
  EXPECT_NE(e.find("map.yaml: _base_: expected a file name or a list of file names, got a map "
                   "{file: a.yaml}"),
            std::string::npos)
      << e;
  const auto as_dir = dir.write("dir.yaml", "_base_: sub\n");
  e = error_of([&] { Config::load(as_dir.string()); });
  EXPECT_NE(e.find("dir.yaml: _base_: 'sub' (" + (dir.path / "sub").string() +
                   ") is a directory, expected a YAML file"),
            std::string::npos)
      << e;
  const auto missing = dir.write("missing.yaml", "_base_: [sub/none.yaml]\n");
  e = error_of([&] { Config::load(missing.string()); });
  EXPECT_NE(e.find("missing.yaml: _base_: 'sub/none.yaml': file not found"), std::string::npos)
      << e;
  const auto nested = dir.write("nested.yaml", "_base_: [[a.yaml]]\n");
  e = error_of([&] { Config::load(nested.string()); });
  EXPECT_NE(e.find("nested.yaml: _base_: expected a file name or a list of file names, got a "
                   "list [a.yaml]"),
            std::string::npos)
      << e;
}

TEST(Config, NonScalarKeysAndValuesAreNamed) {
  std::string e = error_of([] { Config::parse("model:\n  ? [a, b]\n  : 1\n", "k.yaml"); });
  EXPECT_NE(e.find("k.yaml: a key under 'model' is a list [a, b], expected a string"),
            std::string::npos)
      << e;
  e = error_of([] { Config::parse("? {a: 1}\n: 1\n", "k.yaml"); });
  EXPECT_NE(e.find("k.yaml: a key under '<root>' is a map {a: 1}, expected a string"),
            std::string::npos)
      << e;
  const Config cfg =
      Config::parse("optimizer: {lr: [1, 2], eps: {a: 1}, wd: .inf, b: [0.9, .nan]}", "c.yaml");
  e = error_of([&] { cfg["optimizer"].get<double>("lr"); });
  EXPECT_NE(e.find("c.yaml: optimizer.lr: expected a number, got a list [1, 2]"), std::string::npos)
      << e;
  e = error_of([&] { cfg["optimizer"].get<std::string>("eps"); });
  EXPECT_NE(e.find("c.yaml: optimizer.eps: expected a string, got a map {a: 1}"), std::string::npos)
      << e;
  e = error_of([&] { cfg["optimizer"].get<double>("wd"); });
  EXPECT_NE(e.find("c.yaml: optimizer.wd: expected a finite number, got '.inf'"), std::string::npos)
      << e;
  e = error_of([&] { cfg["optimizer"].get<std::vector<double>>("b"); });
  EXPECT_NE(e.find("c.yaml: optimizer.b: expected a finite number, got a list [0.9, .nan]"),
            std::string::npos)
      << e;
  e = error_of([&] { cfg["optimizer"].get<std::vector<int64_t>>("eps"); });
  EXPECT_NE(e.find("optimizer.eps: expected a list of integers, got a map {a: 1}"),
            std::string::npos)
      << e;
  e = error_of([] { Config::parse(std::string(600, '[') + std::string(600, ']'), "d.yaml"); });
  EXPECT_NE(e.find("d.yaml: invalid YAML: nested more than"), std::string::npos) << e;
}

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
