// `setdet data synth`: writes the synthetic shapes dataset in COCO format.
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
    "data", "datasets: generate the synthetic shapes dataset, benchmark the loader",
    [](CLI::App& app) -> Action {
      app.require_subcommand(1);
      auto synth_opts = std::make_shared<SyntheticOptions>();
      CLI::App* synth =
          app.add_subcommand("synth", "write the synthetic shapes dataset (COCO format) to --out");
      synth->add_option("--out", synth_opts->out_dir, "output directory")->required();
      synth->add_option("--num-train", synth_opts->num_train, "training images")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      synth->add_option("--num-val", synth_opts->num_val, "validation images")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      synth->add_option("--seed", synth_opts->seed, "random seed")->capture_default_str();
      synth->add_option("--size", synth_opts->size, "image width and height, pixels")
          ->capture_default_str()
          ->check(CLI::Range(64, 4096));
      synth->add_option("--format", synth_opts->format, "image format")
          ->capture_default_str()
          ->check(CLI::IsMember({"jpg", "png"}));
      synth->add_option("--jpeg-quality", synth_opts->jpeg_quality, "JPEG quality")
          ->capture_default_str()
          ->check(CLI::Range(1, 100));

      auto bench_opts = std::make_shared<BenchOptions>();
      CLI::App* bench = app.add_subcommand(
          "bench",
          "time the data loader: --config FILE [--key data.train], or --ann-file and "
          "--img-dir with the default 256 px training pipeline");
      bench->add_option("--config", bench_opts->config, "YAML config holding a loader node");
      bench->add_option("--key", bench_opts->key, "key path of the loader node in --config")
          ->capture_default_str();
      bench->add_option("--ann-file", bench_opts->ann_file, "COCO instances JSON");
      bench->add_option("--img-dir", bench_opts->img_dir, "image directory");
      bench->add_option("--size", bench_opts->size, "Resize scale, pixels")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      bench->add_option("--batch-size", bench_opts->batch_size, "images per batch")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      bench->add_option("--workers", bench_opts->num_workers, "loader worker threads")
          ->capture_default_str()
          ->check(CLI::NonNegativeNumber);
      bench->add_option("--batches", bench_opts->batches, "batches to time")
          ->capture_default_str()
          ->check(CLI::PositiveNumber);
      bench->add_option("--seed", bench_opts->seed, "loader seed")->capture_default_str();

      return [synth, bench, synth_opts, bench_opts]() -> int {
        if (synth->parsed()) return run_synth(*synth_opts);
        if (bench->parsed()) return run_bench(*bench_opts);
        return 1;
      };
    }};

}  // namespace
}  // namespace setdet::cli
