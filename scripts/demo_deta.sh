#!/usr/bin/env bash
# `make demo-deta`: "NMS Strikes Back" (DETA) Table 1 / Table 8 in miniature on the `make demo`
# data. Trains configs/deta/deta_r18h_256_demo.yaml three times with the same schedule, seed and
# data, switching only the assignment:
#   hungarian        Deformable DETR's one-to-one matching, top-k queries, top 100 without NMS
#   deta             DETA's IoU assignment with object balancing (K = 4), per-level NMS query
#                    selection, class-aware NMS 0.7 at test time
#   deta_no_balance  the same without object balancing (max_k: null)
# Each run is keyed to MAX_ITERS iterations (the cosine schedule spans them) with MAX_SECONDS of
# training as a guard, and is evaluated on the same 200 val images every EVAL_ITERS iterations
# and at the end. Writes $work/metrics.json ("AP_hungarian", "AP_deta", "AP_deta_no_balance",
# COCO AP 0..1, their AP50 / AP75, the curves, "total_seconds") and $work/ap_curves.png (AP
# against images seen).
#   usage: scripts/demo_deta.sh [BUILD_DIR] [WORK_DIR] [SEED]
#   environment: MAX_ITERS (900), EVAL_ITERS (300), MAX_SECONDS (840: on this 2-core machine, quiet,
#   ~830 iterations fit, so the three runs hold 45 minutes), THREADS (2; the ThreadGovernorHook
#   drops to fewer whenever other processes hold cores, instead of spinning in OpenMP barriers),
#   REUSE (run names, e.g. "hungarian": keep that finished run of $work instead of retraining;
#   total_seconds then counts its training + evaluation seconds from its metrics.json)
set -euo pipefail
build_dir=${1:-build}
work=${2:-work_dirs/demo_deta}
seed=${3:-0}
max_iters=${MAX_ITERS:-900}
eval_iters=${EVAL_ITERS:-300}
max_seconds=${MAX_SECONDS:-840}
threads=${THREADS:-2}
reuse=" ${REUSE:-} "
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="$build_dir/bin/setdet"
config=configs/deta/deta_r18h_256_demo.yaml
start=$(date +%s.%N)

echo "== 1/4 synthetic dataset: 2000 train + 200 val images, 256 px, 8 shape classes"
bash scripts/demo_data.sh "$bin"
mkdir -p "$work"
rm -f "$work"/metrics.json "$work"/ap_curves.png

train() {  # name assigner
  local name=$1 assigner=$2
  if [[ $reuse == *" $name "* ]]; then
    [[ -f $work/$name/metrics.json ]] || { echo "REUSE: $work/$name/metrics.json missing" >&2; exit 1; }
    echo "reusing $work/$name"
    return
  fi
  rm -rf "${work:?}/$name"
  "$bin" --threads "$threads" train "$config" --work-dir "$work/$name" \
    --set "model.assigner=$assigner" --set runner.seed="$seed" \
    --set runner.max_iters="$max_iters" --set runner.max_seconds="$max_seconds" \
    --set runner.eval_interval=0 --set runner.checkpoint_interval=0 \
    --set "hooks=[{type: EvalHook, interval_iters: $eval_iters}, {type: CheckpointHook, interval_iters: $eval_iters}, {type: ThreadGovernorHook, interval_seconds: 5}]"
}

echo "== 2/4 Hungarian matching ($max_iters iterations, guard ${max_seconds} s)"
train hungarian hungarian
echo "== 3/4 DETA: IoU assignment + object balancing (K = 4)"
train deta deta
echo "== 4/4 DETA without object balancing"
train deta_no_balance "{type: deta, max_k: null}"

end=$(date +%s.%N)
/usr/bin/python3 - "$work" "$start" "$end" "$seed" "$reuse" <<'PY'
import json, os, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

work, start, end, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
reused = sys.argv[5].split()
total = end - start
runs = {"hungarian": "Hungarian", "deta": "DETA (K = 4)", "deta_no_balance": "DETA, no balancing"}
metrics, curves = {}, {}
for name in runs:
    with open(os.path.join(work, name, "metrics.json")) as f:
        train = json.load(f)
    images_per_iter = train["images"] / max(train["iters"], 1)
    curve = []
    with open(os.path.join(work, name, "log.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            if row.get("mode") == "val":
                curve.append([row["iter"] * images_per_iter, row["AP"]])
    curves[name] = curve
    for stat in ("AP", "AP50", "AP75"):
        metrics[f"{stat}_{name}"] = train[stat]
    metrics[f"training_{name}"] = {k: train[k] for k in ("iters", "images", "train_seconds",
                                                          "images_per_second") if k in train}
    if name in reused:
        total += train["train_seconds"] + train.get("eval_seconds", 0.0)
metrics["curves"] = curves
metrics["seed"] = seed
metrics["reused"] = reused
metrics["total_seconds"] = total

plt.figure(figsize=(5.5, 3.6))
for name, label in runs.items():
    xs, ys = zip(*curves[name]) if curves[name] else ((), ())
    plt.plot(xs, ys, marker="o", label=label)
plt.xlabel("training images seen")
plt.ylabel("COCO AP (200 val images)")
plt.title("two-stage Deformable DETR, same model and schedule")
plt.grid(alpha=0.3)
plt.legend()
plt.tight_layout()
png = os.path.join(work, "ap_curves.png")
plt.savefig(png + ".tmp.png", dpi=110)
os.replace(png + ".tmp.png", png)

path = os.path.join(work, "metrics.json")
with open(path + ".tmp", "w") as f:
    json.dump(metrics, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)
print(f"{'assigner':<18} {'AP':>6} {'AP50':>6} {'AP75':>6}  images  train s")
for name in runs:
    t = metrics[f"training_{name}"]
    print(f"{name:<18} {metrics['AP_' + name]:>6.3f} {metrics['AP50_' + name]:>6.3f} "
          f"{metrics['AP75_' + name]:>6.3f}  {t.get('images', 0):>6} {t.get('train_seconds', 0):>8.0f}")
print(f"total {metrics['total_seconds']:.0f} s -> {path}, {png}")
PY
