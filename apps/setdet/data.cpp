// `setdet data synth`: writes the synthetic shapes dataset in COCO format.
// `setdet data synth-vrd`: writes the synthetic relationship dataset (Open Images VRD CSVs + COCO).
// `setdet data bench`: measures the loader (decode + transforms + collation) on a COCO dataset.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "command.h"
#include "setdet/config/config.h"
#include "setdet/core/error.h"
#include "setdet/data/loader.h"
#include "setdet/data/synthetic.h"
#include "setdet/data/synthetic_vrd.h"

namespace setdet::cli {
namespace {

int run_synth(const SyntheticOptions& options) {
  const SyntheticSummary s = generate_synthetic_dataset(options);
  std::printf(
      "wrote %lld images (%lld train, %lld val) with %lld objects to %s in %.2f s (%.0f "
      "images/s)\n",
      static_cast<long long>(s.images), static_cast<long long>(options.num_train),
      static_cast<long long>(options.num_val), static_cast<long long>(s.annotations),
      options.out_dir.c_str(), s.seconds, s.images / std::max(s.seconds, 1e-9));
  return 0;
}

int run_synth_vrd(const SyntheticVrdOptions& options) {
  const SyntheticVrdSummary s = generate_synthetic_vrd_dataset(options);
  std::printf(
      "wrote %lld images (%lld train, %lld val, %lld test) with %lld objects and %lld "
      "relationships to %s in %.2f s (%.0f images/s)\n",
      static_cast<long long>(s.images), static_cast<long long>(options.num_train),
      static_cast<long long>(options.num_val), static_cast<long long>(options.num_test),
      static_cast<long long>(s.objects), static_cast<long long>(s.relations),
      options.out_dir.c_str(), s.seconds, s.images / std::max(s.seconds, 1e-9));
  const auto& names = synthetic_vrd_predicate_names();
  for (size_t p = 0; p < names.size(); ++p) {
    std::printf("  %-16s %8lld\n", names[p].c_str(), static_cast<long long>(s.per_predicate[p]));
  }
  return 0;
}

struct BenchOptions {
  std::string config;
  std::string key = "data.train";
  std::string ann_file;
  std::string img_dir;
  int64_t size = 256;
  int64_t batch_size = 16;
  int64_t num_workers = 2;
  int64_t batches = 50;
  uint64_t seed = 0;
};

// A training pipeline at `size` px, as in the demo recipe.
std::string default_loader_yaml(const BenchOptions& o) {
  return "batch_size: " + std::to_string(o.batch_size) +
         "\nnum_workers: " + std::to_string(o.num_workers) + "\nseed: " + std::to_string(o.seed) +
         "\ndataset:\n  type: CocoDataset\n  ann_file: '" + o.ann_file + "'\n  img_dir: '" +
         o.img_dir + "'\n  pipeline:\n    - {type: Resize, scale: [" + std::to_string(o.size) +
         ", " + std::to_string(o.size) +
         "], keep_ratio: true}\n    - {type: RandomFlip, prob: 0.5}\n"
         "    - {type: Normalize, mean: [123.675, 116.28, 103.53], std: [58.395, 57.12, 57.375], "
         "to_rgb: true}\n    - {type: Pad, size_divisor: 32}\n";
}

int run_bench(const BenchOptions& o) {
  std::unique_ptr<DataLoader> loader;
  if (!o.config.empty()) {
    Config node = Config::load(o.config);
    std::string rest = o.key;
    while (!rest.empty()) {
      const auto dot = rest.find('.');
      node = node[rest.substr(0, dot)];
      rest = dot == std::string::npos ? "" : rest.substr(dot + 1);
    }
    loader = DataLoader::from_config(node, o.seed);
  } else {
    SETDET_CHECK(!o.ann_file.empty() && !o.img_dir.empty(),
                 "data bench: give --config, or --ann-file and --img-dir");
    loader = DataLoader::from_config(Config::parse(default_loader_yaml(o), "<data bench>"), o.seed);
  }
  const int64_t per_epoch = loader->batches_per_epoch();
  int64_t done = 0, images = 0, epoch = 0;
  const auto start = std::chrono::steady_clock::now();
  while (done < o.batches) {
    loader->start_epoch(epoch++);
    while (done < o.batches) {
      auto batch = loader->next();
      if (!batch) break;
      images += batch->size();
      ++done;
    }
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf(
      "%lld batches (%lld images, %lld batches per epoch, %lld workers) in %.2f s: "
      "%.1f batches/s, %.0f images/s\n",
      static_cast<long long>(done), static_cast<long long>(images),
      static_cast<long long>(per_epoch), static_cast<long long>(loader->options().num_workers),
      seconds, done / seconds, images / seconds);
  return 0;
}

const RegisterCommand kData{
    "data", "datasets: generate the synthetic shapes / relationship datasets, benchmark the loader",
    [](CLI::App& app) { return add_subcommands(app, "data"); }};

// --seed, --size, --format, --jpeg-quality of the synthetic generators.
template <typename Options>
void add_image_options(CLI::App& app, Options& o, int min_size) {
  app.add_option("--seed", o.seed, "random seed")->capture_default_str();
  app.add_option("--size", o.size, "image width and height, pixels")
      ->capture_default_str()
      ->check(CLI::Range(min_size, 4096));
  app.add_option("--format", o.format, "image format")
      ->capture_default_str()
      ->check(CLI::IsMember({"jpg", "png"}));
  app.add_option("--jpeg-quality", o.jpeg_quality, "JPEG quality")
      ->capture_default_str()
      ->check(CLI::Range(1, 100));
}

const RegisterSubcommand kSynth{
    "data", "synth", "write the synthetic shapes dataset (COCO format) to --out",
    [](CLI::App& app) {
      auto o = std::make_shared<SyntheticOptions>();
      app.add_option("--out", o->out_dir, "output directory")->required();
      app.add_option("--num-train", o->num_train, "training images")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      app.add_option("--num-val", o->num_val, "validation images")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      add_image_options(app, *o, 64);
      return [o] { return run_synth(*o); };
    }};

const RegisterSubcommand kSynthVrd{
    "data", "synth-vrd",
    "write the synthetic relationship dataset (Open Images VRD CSVs + COCO objects) to --out",
    [](CLI::App& app) {
      auto o = std::make_shared<SyntheticVrdOptions>();
      app.add_option("--out", o->out_dir, "output directory")->required();
      app.add_option("--num-train", o->num_train, "training images")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      app.add_option("--num-val", o->num_val, "validation images (held apart for stage 3)")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      app.add_option("--num-test", o->num_test, "test images")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      add_image_options(app, *o, 128);
      return [o] { return run_synth_vrd(*o); };
    }};

const RegisterSubcommand kDataBench{
    "data", "bench",
    "time the data loader: --config FILE [--key data.train], or --ann-file and --img-dir with "
    "the default 256 px training pipeline",
    [](CLI::App& app) {
      auto o = std::make_shared<BenchOptions>();
      app.add_option("--config", o->config, "YAML config holding a loader node");
      app.add_option("--key", o->key, "key path of the loader node in --config")
          ->capture_default_str();
      app.add_option("--ann-file", o->ann_file, "COCO instances JSON");
      app.add_option("--img-dir", o->img_dir, "image directory");
      app.add_option("--size", o->size, "Resize scale, pixels")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      app.add_option("--batch-size", o->batch_size, "images per batch")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      app.add_option("--workers", o->num_workers, "loader worker threads")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      app.add_option("--batches", o->batches, "batches to time")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      app.add_option("--seed", o->seed, "loader seed")->capture_default_str();
      return [o] { return run_bench(*o); };
    }};

}  // namespace
}  // namespace setdet::cli
