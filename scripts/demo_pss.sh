#!/usr/bin/env bash
# `make demo-pss`: trains the NMS-free FCOS_PSS on the synthetic shapes of `make demo` within the
# time budget of its config, tests the one checkpoint two ways (`setdet test` evaluates every
# output mode: PSS score without NMS, and FCOS's one-to-many output with NMS) and writes
# $work/metrics.json with "AP_without_nms", "AP_with_nms" (and the other COCO stats of both,
# suffixed the same way) and "total_seconds".
#   usage: scripts/demo_pss.sh [BUILD_DIR] [CONFIG] [WORK_DIR]
set -euo pipefail
build_dir=${1:-build}
config=${2:-configs/pss/fcos_pss_r18h_fpn64_256_demo.yaml}
work=${3:-work_dirs/demo_pss}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="$build_dir/bin/setdet"
start=$(date +%s.%N)

echo "== 1/3 synthetic dataset: 2000 train + 200 val images, 256 px, 8 shape classes"
bash scripts/demo_data.sh "$bin"

echo "== 2/3 training $(basename "$config" .yaml) for the time budget in $config"
mkdir -p "$work"
rm -f "$work"/latest.pt "$work"/epoch_*.pt "$work"/metrics.json "$work"/test.json
"$bin" train "$config" --work-dir "$work"

echo "== 3/3 one checkpoint, two outputs: PSS without NMS, one-to-many with NMS"
"$bin" test "$config" "$work/latest.pt" --json "$work/test.json"

end=$(date +%s.%N)
/usr/bin/python3 - "$work" "$start" "$end" <<'PY'
import json, os, sys
work, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
with open(os.path.join(work, "metrics.json")) as f:
    train = json.load(f)
with open(os.path.join(work, "test.json")) as f:
    test = json.load(f)
metrics = {k: v for k, v in test.items() if k.endswith("_without_nms") or k.endswith("_with_nms")}
for key in ("iters", "epochs", "images", "train_seconds", "images_per_second", "final_losses",
            "seed", "threads"):
    if key in train:
        metrics[key] = train[key]
metrics["total_seconds"] = end - start
path = os.path.join(work, "metrics.json")
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(metrics, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
print(f"AP_without_nms {metrics['AP_without_nms']:.3f}  AP_with_nms {metrics['AP_with_nms']:.3f}  "
      f"(AP50 {metrics['AP50_without_nms']:.3f} / {metrics['AP50_with_nms']:.3f}), trained "
      f"{metrics.get('images', 0)} images at {metrics.get('images_per_second', 0):.1f} img/s, "
      f"total {metrics['total_seconds']:.0f} s -> {path}")
PY
