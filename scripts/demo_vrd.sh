#!/usr/bin/env bash
# `make demo-vrd`: the Open Images 2019 VRD winner's Table 3 in miniature (seed 003). Generates the
# relationship dataset (`setdet data synth-vrd`: 3000 train / 600 val / 600 test images), then
#   stage 1  FCOS on the objects; the attribute ("is") detector by partial weight transfer from it
#            (`setdet transfer`) and fine-tuning with class-balanced sampling;
#   stage 2  per-predicate XGBoost (dart) on spatio-semantic features + a CNN on masked union crops;
#   stage 3  per-predicate XGBoost (gbtree) combining them, trained on the held-apart val split;
# predicts the test split with each variant (spatial, visual, their average, stage 3), evaluates
# each with the challenge metric and writes $work/metrics.json ("score_spatial", "score_visual",
# "score_average", "score_stage3", per-predicate APs, stage times, "total_seconds") and
# $work/relationships.png (test images with the stage-3 relationships drawn).
#   usage: scripts/demo_vrd.sh [BUILD_DIR] [WORK_DIR] [SEED]
set -euo pipefail
build_dir=${1:-build}
work=${2:-work_dirs/demo_vrd}
seed=${3:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="$build_dir/bin/setdet"
data=work_dirs/demo_vrd/data  # the configs read it there; the same for every seed
start=$(date +%s.%N)
stamp() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(stamp)" 'BEGIN { printf "%.1f", b - a }'; }
times=()

echo "== 1/7 relationship dataset: 3000 train + 600 val + 600 test images, 256 px"
t=$(stamp)
if [ -f "$data/annotations/vrd_test.csv" ] && [ "$(ls "$data/train" | wc -l)" -eq 3000 ]; then
  echo "reusing $data"
else
  "$bin" data synth-vrd --out "$data" --num-train 3000 --num-val 600 --num-test 600 --seed 0
fi
times+=("data=$(elapsed "$t")")
mkdir -p "$work"
rm -f "$work/metrics.json"

echo "== 2/7 stage 1: FCOS on the 6 object classes"
t=$(stamp)
rm -rf "${work:?}/objects"
"$bin" train configs/vrd/fcos_objects_demo.yaml --work-dir "$work/objects" --set runner.seed="$seed"
times+=("objects=$(elapsed "$t")")

echo "== 3/7 stage 1: 'is' detector (24 class x attribute classes) by partial weight transfer"
t=$(stamp)
"$bin" transfer --map configs/vrd/attribute_transfer_demo.yaml "$work/objects/latest.pt" \
  "$work/attributes_init.pt"
rm -rf "${work:?}/attributes"
"$bin" train configs/vrd/fcos_attributes_demo.yaml --work-dir "$work/attributes" \
  --load-from "$work/attributes_init.pt" --set runner.seed="$seed"
times+=("attributes=$(elapsed "$t")")

echo "== 4/7 stages 2 and 3: spatio-semantic XGBoost, visual CNN, stage-3 XGBoost"
t=$(stamp)
pipeline=(configs/vrd/vrd_demo.yaml --work-dir "$work/pipeline"
  --set "stage1.objects.0.checkpoint=$work/objects/latest.pt"
  --set "stage1.attributes.checkpoint=$work/attributes/latest.pt"
  --set "stage2.visual.init_backbone.checkpoint=$work/objects/latest.pt"
  --set "stage2.seed=$seed" --set "stage3.seed=$seed")
rm -rf "${work:?}/pipeline"
"$bin" vrd train "${pipeline[@]}"
times+=("relationships=$(elapsed "$t")")

echo "== 5/7 the test split with every variant"
t=$(stamp)
"$bin" vrd predict "${pipeline[@]}" --split test --variants-dir "$work/predictions" \
  --vis "$work/relationships.png" --vis-images 4
times+=("predict=$(elapsed "$t")")

echo "== 6/7 the challenge metric of each variant"
t=$(stamp)
for v in spatial visual average stage3; do
  "$bin" vrd eval --gt "$data/annotations/vrd_test.csv" --labels "$data/annotations/labels_test.csv" \
    --dt "$work/predictions/dt_$v.csv" --json "$work/predictions/eval_$v.json" | tail -1
done
times+=("eval=$(elapsed "$t")")

echo "== 7/7 metrics"
end=$(stamp)
/usr/bin/python3 - "$work" "$start" "$end" "$seed" "${times[@]}" <<'PY'
import json, os, sys
work, start, end, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
stage_seconds = {k: float(v) for k, v in (a.split("=") for a in sys.argv[5:])}
variants = ["spatial", "visual", "average", "stage3"]
evals = {}
for v in variants:
    with open(os.path.join(work, "predictions", f"eval_{v}.json")) as f:
        evals[v] = json.load(f)
metrics = {}
for v in variants:
    e = evals[v]
    metrics[f"score_{v}"] = e["score"]
    for k in ("mAP_relationship", "recall50_relationship", "mAP_phrase"):
        metrics[f"{k}_{v}"] = e[k]
predicates = sorted(evals["stage3"]["AP_relationship_per_predicate"])
per_predicate = {}
for p in predicates:
    row = {v: evals[v]["AP_relationship_per_predicate"][p] for v in variants}
    row["phrase"] = {v: evals[v]["AP_phrase_per_predicate"][p] for v in variants}
    row["best_stage2"] = max(("spatial", "visual"), key=lambda v: row[v])
    per_predicate[p] = row
metrics["AP_relationship_per_predicate"] = per_predicate


def train_info(name):
    with open(os.path.join(work, name, "metrics.json")) as f:
        m = json.load(f)
    return {k: m[k] for k in ("iters", "images", "train_seconds", "images_per_second") if k in m}


metrics["detectors"] = {"objects": train_info("objects"), "attributes": train_info("attributes")}
metrics["stage_seconds"] = stage_seconds
metrics["seed"] = seed
metrics["total_seconds"] = end - start
path = os.path.join(work, "metrics.json")
with open(path + ".tmp", "w") as f:
    json.dump(metrics, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)
print(f"{'predicate':<16}" + "".join(f"{v:>9}" for v in variants) + "   best stage 2")
for p in predicates:
    r = per_predicate[p]
    print(f"{p:<16}" + "".join(f"{r[v]:>9.3f}" for v in variants) + f"   {r['best_stage2']}")
print(f"{'score':<16}" + "".join(f"{metrics['score_' + v]:>9.3f}" for v in variants))
best = max(metrics["score_spatial"], metrics["score_visual"])
print(f"stage 3 - best single model: {metrics['score_stage3'] - best:+.3f} (goal >= +0.02)")
print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in stage_seconds.items()))
print(f"total {metrics['total_seconds']:.0f} s -> {path}")
PY
