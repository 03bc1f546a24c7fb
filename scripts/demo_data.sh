#!/usr/bin/env bash
# The `make demo` dataset for the demos that reuse it (demo-pss, demo-relation, ...): 2000 train +
# 200 val synthetic shape images of 256 px, 8 classes, seed 0, in work_dirs/demo/data (the demo
# configs read it there). `setdet data synth` is deterministic for given arguments: an existing
# copy is reused when it holds exactly what these arguments produce, else it is (re)generated.
#   usage: scripts/demo_data.sh SETDET_BIN
set -euo pipefail
bin=$1
data=work_dirs/demo/data
if /usr/bin/python3 - "$data" <<'PY'
import json, os, sys
root = sys.argv[1]
try:
    for split, n in (("train", 2000), ("val", 200)):
        with open(os.path.join(root, "annotations", f"instances_{split}.json")) as f:
            images = json.load(f)["images"]
        if len(images) != n or any(max(i["width"], i["height"]) != 256 for i in images):
            sys.exit(1)
        if any(not os.path.isfile(os.path.join(root, split, i["file_name"])) for i in images):
            sys.exit(1)
except (OSError, ValueError, KeyError):
    sys.exit(1)
PY
then
  echo "reusing $data"
else
  "$bin" data synth --out "$data" --num-train 2000 --num-val 200 --size 256 --seed 0
fi
