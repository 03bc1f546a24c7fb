#!/usr/bin/env bash
# `make demo`: generates the synthetic shapes dataset, trains the demo FCOS on this machine's cores
# within a fixed time budget, evaluates it (COCO summary), finds the F1-best drawing threshold on
# the val split (`setdet test`), draws ground truth | detections on a few validation images
# (work_dirs/demo/vis/*.png and one sheet.png) and writes work_dirs/demo/metrics.json with AP, AP50,
# AP75 and total_seconds.
set -euo pipefail
build_dir=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="$build_dir/bin/setdet"
config=configs/fcos/fcos_r18h_fpn64_256_demo.yaml
work=work_dirs/demo
start=$(date +%s.%N)

echo "== 1/4 synthetic dataset: 2000 train + 200 val images, 256 px, 8 shape classes"
"$bin" data synth --out "$work/data" --num-train 2000 --num-val 200 --size 256 --seed 0

echo "== 2/4 training FCOS (half-width ResNet-18, FPN 64, 2x64 head) for the time budget in $config"
rm -f "$work"/latest.pt "$work"/epoch_*.pt "$work"/metrics.json
"$bin" train "$config" --work-dir "$work"

echo "== 3/4 the F1-best drawing threshold on the val split; ground truth | detections -> $work/vis/"
"$bin" test "$config" "$work/latest.pt" | tail -2
images=()
for i in 000000 000001 000002 000003 000004 000005; do images+=("$work/data/val/$i.jpg"); done
"$bin" infer --config "$config" --checkpoint "$work/latest.pt" --out-dir "$work/vis" \
  --sheet "$work/vis/sheet.png" --gt "$work/data/annotations/instances_val.json" \
  --json "$work/vis/detections.json" "${images[@]}"

echo "== 4/4 metrics"
end=$(date +%s.%N)
/usr/bin/python3 - "$work/metrics.json" "$start" "$end" <<'PY'
import json, os, sys
path, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
with open(path) as f:
    metrics = json.load(f)
metrics["total_seconds"] = end - start
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(metrics, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
print(f"AP {metrics['AP']:.3f}  AP50 {metrics['AP50']:.3f}  AP75 {metrics['AP75']:.3f}  "
      f"trained {metrics['images']} images at {metrics['images_per_second']:.1f} img/s, "
      f"total {metrics['total_seconds']:.0f} s -> {path}")
PY
