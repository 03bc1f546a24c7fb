#!/usr/bin/env bash
# `make demo-relation`: Relation Networks' tables in miniature on the `make demo` data. Trains, with
# the same backbone, data, schedule and seed:
#   2fc      Faster R-CNN FPN with the shared 2fc head                   -> AP_2fc_nms
#   2fc+RM   the same with a relation module after each fc (Table 1)     -> AP_2fc_rm_nms,
#            (one checkpoint, three duplicate removals: NMS, Soft-NMS,      AP_2fc_rm_softnms,
#             the learned network trained on the frozen detector, Table 4)  AP_2fc_rm_learned
#   e2e      2fc+RM and the duplicate-removal network trained together    -> AP_2fc_rm_e2e
# and writes $work/metrics.json with those COCO APs (0..1, the same 200 val images), each row's
# details and "total_seconds".
#   usage: scripts/demo_relation.sh [BUILD_DIR] [WORK_DIR] [SEED]
# REUSE=1 keeps every row whose training finished (its metrics.json exists) and trains the rest.
# The rows train in two lanes at once, THREADS threads each (default: half the cores): lane 1 the
# end-to-end row, lane 2 the 2fc, 2fc+RM and learned rows (the learned row needs the 2fc+RM
# checkpoint). On 2 cores two 1-thread trainings give ~1.4x the images/s of one 2-thread training
# after another: these models' many small operators leave a second thread idle a third of the
# time. Lane 1's output goes to $work/lane1.log.
set -euo pipefail
build_dir=${1:-build}
work=${2:-work_dirs/demo_relation}
seed=${3:-0}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
bin="$build_dir/bin/setdet"
cfg=configs/relation
softnms="soft_nms:method=gaussian,sigma=0.5,min_score=0.001"
cores=$(nproc)
threads=${THREADS:-$(( cores / 2 > 1 ? cores / 2 : 1 ))}
start=$(date +%s.%N)

echo "== 1/6 synthetic dataset: 2000 train + 200 val images, 256 px, 8 shape classes"
bash scripts/demo_data.sh "$bin"
mkdir -p "$work"
rm -f "$work"/metrics.json

train() {  # name config [extra args...]
  local name=$1 config=$2
  shift 2
  if [[ "${REUSE:-0}" == 1 && -f "$work/$name/metrics.json" ]]; then
    echo "   reusing $work/$name (REUSE=1)"
    return
  fi
  rm -rf "${work:?}/$name"
  "$bin" --threads "$threads" train "$config" --work-dir "$work/$name" --set runner.seed="$seed" "$@"
}

lane1() {  # the end-to-end row
  echo "== 5/6 2fc+RM and duplicate removal trained end to end"
  train 2fc_rm_e2e "$cfg/relation_rm_e2e_r18h_fpn64_256_demo.yaml"
  "$bin" --threads "$threads" test "$cfg/relation_rm_e2e_r18h_fpn64_256_demo.yaml" \
    "$work/2fc_rm_e2e/latest.pt" --json "$work/2fc_rm_e2e/test.json" --dedup nms --dedup learned
}
echo "== lane 1 (in the background, $threads thread(s), log $work/lane1.log): the end-to-end row"
lane1 > "$work/lane1.log" 2>&1 &
lane1_pid=$!
trap 'pkill -P "$lane1_pid" 2>/dev/null; kill "$lane1_pid" 2>/dev/null || true' EXIT

echo "== lane 2 ($threads thread(s))"
echo "== 2/6 2fc: Faster R-CNN FPN, shared 2fc head, NMS"
train 2fc "$cfg/faster_rcnn_r18h_fpn64_256_demo.yaml"
"$bin" --threads "$threads" test "$cfg/faster_rcnn_r18h_fpn64_256_demo.yaml" "$work/2fc/latest.pt" \
  --json "$work/2fc/test.json" --dedup "$softnms"

echo "== 3/6 2fc+RM: relation modules after fc6 and fc7"
train 2fc_rm "$cfg/relation_rm_r18h_fpn64_256_demo.yaml"

echo "== 4/6 learned duplicate removal on the frozen 2fc+RM detector"
train 2fc_rm_learned "$cfg/relation_rm_learned_nms_r18h_fpn64_256_demo.yaml" \
  --load-from "$work/2fc_rm/latest.pt"

echo "== 6/6 the 2fc+RM checkpoint with NMS, Soft-NMS and the learned network"
"$bin" --threads "$threads" test "$cfg/relation_rm_learned_nms_r18h_fpn64_256_demo.yaml" \
  "$work/2fc_rm_learned/latest.pt" --json "$work/2fc_rm_learned/test.json" \
  --dedup nms --dedup "$softnms" --dedup learned

echo "== waiting for lane 1 (the end-to-end row)"
if ! wait "$lane1_pid"; then
  trap - EXIT
  echo "demo_relation: lane 1 (the end-to-end row) failed; its output:" >&2
  tail -n 30 "$work/lane1.log" >&2
  exit 1
fi
trap - EXIT
tail -n 12 "$work/lane1.log"

end=$(date +%s.%N)
/usr/bin/python3 - "$work" "$start" "$end" "$seed" <<'PY'
import json, os, sys
work, start, end, seed = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
tag_soft = "soft_nms_method_gaussian_sigma_0.5_min_score_0.001"

def load(name, file):
    with open(os.path.join(work, name, file)) as f:
        return json.load(f)

rows = {
    "AP_2fc_nms": ("2fc", "AP"),
    "AP_2fc_softnms": ("2fc", "AP_" + tag_soft),
    "AP_2fc_rm_nms": ("2fc_rm_learned", "AP_nms"),
    "AP_2fc_rm_softnms": ("2fc_rm_learned", "AP_" + tag_soft),
    "AP_2fc_rm_learned": ("2fc_rm_learned", "AP_learned"),
    "AP_2fc_rm_e2e": ("2fc_rm_e2e", "AP_learned"),
    "AP_2fc_rm_e2e_nms": ("2fc_rm_e2e", "AP_nms"),
}
metrics = {}
for key, (name, stat) in rows.items():
    test = load(name, "test.json")
    metrics[key] = test[stat]
    for extra in ("AP50", "AP75"):
        metrics[key.replace("AP_", extra + "_", 1)] = test[stat.replace("AP", extra, 1)]
details = {}
for name in ("2fc", "2fc_rm", "2fc_rm_learned", "2fc_rm_e2e"):
    train = load(name, "metrics.json")
    details[name] = {k: train[k] for k in ("iters", "images", "train_seconds", "images_per_second",
                                           "final_losses") if k in train}
metrics["training"] = details
metrics["seed"] = seed
metrics["total_seconds"] = end - start
path = os.path.join(work, "metrics.json")
tmp = path + ".tmp"
with open(tmp, "w") as f:
    json.dump(metrics, f, indent=2)
    f.write("\n")
os.replace(tmp, path)
print(f"{'row':<28} {'AP':>6} {'AP50':>6} {'AP75':>6}")
for key in rows:
    print(f"{key:<28} {metrics[key]:>6.3f} {metrics[key.replace('AP_', 'AP50_', 1)]:>6.3f} "
          f"{metrics[key.replace('AP_', 'AP75_', 1)]:>6.3f}")
print(f"total {metrics['total_seconds']:.0f} s -> {path}")
PY
