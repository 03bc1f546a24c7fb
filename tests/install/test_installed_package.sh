#!/usr/bin/env bash
# The installed package as an outside user sees it: `cmake --install` into a temporary prefix,
# every installed header's setdet includes resolve inside the prefix, examples/ configured and
# built as an outside project with find_package(setdet), then examples/detect_image and the
# installed `setdet infer --json` run on a real photo with the same small trained model (4
# iterations of the demo FCOS on synthetic shapes) and must give the same detections.
# Usage: test_installed_package.sh SOURCE_DIR BUILD_DIR
set -euo pipefail
src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
photo=/usr/share/darknet/data/dog.jpg
[ -f "$photo" ] || { echo "$photo missing: install Debian's darknet (scripts/install_deps.sh)" >&2; exit 1; }

tmp=$(mktemp -d -t setdet_install_XXXXXX)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix

cmake --install "$build" --prefix "$prefix" > "$tmp/install.log"
for f in bin/setdet lib/libsetdet.a lib/libsetdet_core.a lib/libsetdet_ops.so include/setdet/setdet.h \
         lib/cmake/setdet/setdetConfig.cmake lib/cmake/setdet/setdetConfigVersion.cmake \
         lib/cmake/setdet/setdetTargets.cmake share/setdet/configs/fcos/fcos_r18h_fpn64_256_demo.yaml; do
  [ -e "$prefix/$f" ] || { echo "not installed: $f" >&2; exit 1; }
done
# a coherent header set: each "setdet/..." include of an installed header is installed
missing=$(cd "$prefix/include" && grep -rhoE '#include "setdet/[^"]+"' setdet | sort -u |
          sed -E 's/#include "([^"]+)"/\1/' | while read -r h; do [ -f "$h" ] || echo "$h"; done)
[ -z "$missing" ] || { echo "installed headers include headers that are not installed: $missing" >&2; exit 1; }

cmake -S "$src/examples" -B "$tmp/example" -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH="$prefix" > "$tmp/configure.log" || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/example" > "$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }

# a small trained model, made with the installed CLI and the installed config
setdet=$prefix/bin/setdet
config=$prefix/share/setdet/configs/fcos/fcos_r18h_fpn64_256_demo.yaml
"$setdet" --threads 2 data synth --out "$tmp/data" --num-train 8 --num-val 2 --seed 3 --size 128 > /dev/null
overrides=(--set "data.train.dataset.data_root=$tmp/data/" --set "data.val.dataset.data_root=$tmp/data/"
           --set data.train.batch_size=4 --set data.val.batch_size=2 --set runner.max_seconds=100000
           --set runner.max_iters=4 --set runner.eval_interval=0
           --set "lr_schedule={type: Cosine, warmup: linear, warmup_iters: 2}")
"$setdet" --threads 2 train "$config" --work-dir "$tmp/work" "${overrides[@]}" > "$tmp/train.log" 2>&1 ||
  { tail -n 30 "$tmp/train.log"; exit 1; }

"$setdet" --threads 2 infer --config "$config" --checkpoint "$tmp/work/latest.pt" \
  --json "$tmp/infer.json" "${overrides[@]}" "$photo" > /dev/null
# the example reads class names from the config's dataset: point it at the synthetic data
sed "s#work_dirs/demo/data/#$tmp/data/#" "$config" > "$tmp/config.yaml"
OMP_NUM_THREADS=2 "$tmp/example/detect_image" "$tmp/config.yaml" "$tmp/work/latest.pt" "$photo" \
  > "$tmp/example.txt"

/usr/bin/python3 - "$tmp/infer.json" "$tmp/example.txt" <<'PY'
import json, sys
ref = json.load(open(sys.argv[1]))[0]["detections"]
got = [line.split() for line in open(sys.argv[2]) if line.strip()]
assert len(ref) >= 5, f"setdet infer found only {len(ref)} detections: the comparison would be vacuous"
assert len(got) == len(ref), f"detect_image: {len(got)} detections, setdet infer: {len(ref)}"
worst = 0.0
for k, (r, g) in enumerate(zip(ref, got)):
    name, score, box, label = g[0], float(g[1]), [float(v) for v in g[2:6]], int(g[6])
    assert (name, label) == (r["name"], r["label"]), f"detection {k}: {name} {label} vs {r['name']} {r['label']}"
    assert abs(score - r["score"]) <= 1e-5, f"detection {k}: score {score} vs {r['score']}"
    err = max(abs(a - b) for a, b in zip(box, r["box_xyxy"]))
    assert err <= 1e-3, f"detection {k}: box {box} vs {r['box_xyxy']}"
    worst = max(worst, err)
names = sorted({r["name"] for r in ref})
print(f"detect_image = setdet infer on {sys.argv[1].split('/')[-1]}: {len(ref)} detections "
      f"(classes {', '.join(names)}), max |box| diff {worst:.1e} px")
PY
