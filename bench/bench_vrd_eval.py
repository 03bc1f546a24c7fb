"""Open Images VRD challenge metric, whole processes side by side: `setdet vrd eval` vs the
reference, TensorFlow object_detection's metrics/oid_vrd_challenge_evaluation.py, on a synthetic
10,000-image set (bench/gen_vrd_bench.py: ~34k ground-truth relationships, ~44k image-level
labels, ~330k detections), cached under $SETDET_BENCH_CACHE (default /tmp/setdet_bench).

The reference is not vendored: point SETDET_BENCH_TF_OD at a local copy of tensorflow/models'
research/object_detection that runs under /usr/bin/python3 with numpy + pandas (its metric files
are metrics/oid_vrd_challenge_evaluation{,_utils}.py, utils/vrd_evaluation.py,
per_image_vrd_evaluation.py, metrics.py, np_box_ops.py, np_box_list{,_ops}.py; upstream
vrd_evaluation.py still uses Python 2's dict.iteritems()). Without it the reference row reads
"n/a (reference not available)". The bench writes the class and relationship label maps the
script needs (pbtxt, ids in sorted name order) and runs
  python3 $SETDET_BENCH_TF_OD/metrics/oid_vrd_challenge_evaluation.py --input_annotations_boxes ...
with PYTHONPATH set to its parent directory.

The table gives the median wall time of each process (reading the CSVs included), the ratio to
setdet, peak resident memory, and the largest difference of mAP / Recall@50 / per-predicate AP
(both tasks) and the challenge score from the reference's. Environment: SETDET_BIN,
SETDET_BENCH_REPEATS (setdet runs, default 5), SETDET_BENCH_TF_OD_REPEATS (reference runs,
default 1: it takes about a minute)."""
import csv
import json
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_vrd_bench  # noqa: E402
from process_timing import measure  # noqa: E402


def dataset(cache_root):
    out_dir = os.path.join(cache_root, f"vrd_synth_v{gen_vrd_bench.VERSION}")
    paths = [os.path.join(out_dir, n) for n in ("gt.csv", "labels.csv", "dt.csv")]
    if not all(os.path.exists(p) for p in paths):
        print(f"generating {out_dir} (once) ...", flush=True)
        # in a child process: a large parent would inflate every child's peak RSS (fork copies it)
        subprocess.run([sys.executable, gen_vrd_bench.__file__, out_dir, "10000", "2019"],
                       check=True, stdout=subprocess.DEVNULL)
    return paths


def label_maps(gt, labels, dt, out_dir):
    """Writes class / relationship label maps (pbtxt) for the reference; returns their paths and
    the relationship id -> name map."""
    classes, predicates = set(), set()
    for path, class_cols in ((gt, ("LabelName1", "LabelName2")), (labels, ("LabelName",)),
                             (dt, ("LabelName1", "LabelName2"))):
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                classes.update(row[c] for c in class_cols)
                if "RelationshipLabel" in row:
                    predicates.add(row["RelationshipLabel"])
    paths = []
    for name, items in (("classes.pbtxt", classes), ("relationships.pbtxt", predicates)):
        path = os.path.join(out_dir, name)
        with open(path, "w") as f:
            for i, item in enumerate(sorted(items)):
                f.write(f'item {{\n  name: "{item}"\n  id: {i + 1}\n}}\n')
        paths.append(path)
    return paths, {str(i + 1): p for i, p in enumerate(sorted(predicates))}


def reference_metrics(path, predicate_names):
    """The reference's metrics CSV as setdet's --json keys."""
    raw = {}
    with open(path, newline="") as f:
        for name, value in csv.reader(f):
            raw[name] = float(value)
    out = {}
    for task, prefix in (("relationship", "VRDMetric_Relationships_"),
                         ("phrase", "VRDMetric_Phrases_")):
        out["mAP_" + task] = raw[prefix + "mAP@0.5IOU"]
        out["recall50_" + task] = raw[prefix + "Recall@50@0.5IOU"]
        per = {}
        for name, value in raw.items():
            if name.startswith(prefix + "AP@0.5IOU/"):
                key = name.split("/", 1)[1]
                per[predicate_names.get(key, key)] = value
        out[f"AP_{task}_per_predicate"] = per
    out["score"] = (0.4 * out["mAP_relationship"] + 0.2 * out["recall50_relationship"] +
                    0.4 * out["mAP_phrase"])
    return out


def max_difference(a, b):
    worst = 0.0
    for key, value in b.items():
        if isinstance(value, dict):
            if set(value) != set(a[key]):
                return float("inf")
            worst = max([worst] + [abs(a[key][p] - v) for p, v in value.items()])
        else:
            worst = max(worst, abs(a[key] - value))
    return worst


def main():
    setdet_bin = os.environ.get("SETDET_BIN", "build/bin/setdet")
    if not os.access(setdet_bin, os.X_OK):
        print(f"bench_vrd_eval: SETDET_BIN={setdet_bin} is not an executable; build setdet first")
        return 1
    repeats = int(os.environ.get("SETDET_BENCH_REPEATS", "5"))
    ref_repeats = int(os.environ.get("SETDET_BENCH_TF_OD_REPEATS", "1"))
    cache = os.environ.get("SETDET_BENCH_CACHE",
                           os.path.join(tempfile.gettempdir(), "setdet_bench"))
    gt, labels, dt = dataset(cache)
    counts = []
    for path in (gt, labels, dt):
        with open(path) as f:
            counts.append(sum(1 for _ in f) - 1)
    print(f"data: 10000 images, {counts[0]} ground-truth relationships, {counts[1]} image-level "
          f"labels, {counts[2]} detections ({os.path.dirname(dt)})")

    env = dict(os.environ)
    ncores = os.cpu_count() or 1
    results = []
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "metrics.json")

        def parse_json(path):
            with open(path) as f:
                return json.load(f)

        for threads in (ncores, 1):
            name = f"setdet vrd eval ({threads} thread{'s' if threads > 1 else ''})"
            cmd = [setdet_bin, "--threads", str(threads), "vrd", "eval", "--gt", gt, "--labels",
                   labels, "--dt", dt, "--json", out]
            results.append((name, "this build") +
                           measure(name, cmd, out, repeats, env, work, parse_json))

        ref_root = os.environ.get("SETDET_BENCH_TF_OD", "")
        script = os.path.join(ref_root, "metrics", "oid_vrd_challenge_evaluation.py")
        if ref_root and os.path.exists(script):
            (class_map, rel_map), predicate_names = label_maps(gt, labels, dt, work)
            ref_out = os.path.join(work, "reference_metrics.csv")
            ref_env = dict(env, PYTHONPATH=os.path.dirname(os.path.abspath(ref_root)))
            cmd = ["/usr/bin/python3", script, "--input_annotations_boxes", gt,
                   "--input_annotations_labels", labels, "--input_predictions", dt,
                   "--input_class_labelmap", class_map, "--input_relationship_labelmap", rel_map,
                   "--output_metrics", ref_out]
            results.append(("object_detection oid_vrd_challenge_evaluation.py", ref_root) +
                           measure("reference", cmd, ref_out, ref_repeats, ref_env, work,
                                   lambda p: reference_metrics(p, predicate_names)))
            reference = results[-1]
        else:
            reference = None

    ref_metrics = reference[4] if reference is not None else None
    base = results[0][2]
    print()
    print("| tool | version | median s | vs setdet | peak MiB | max abs diff of the metrics vs "
          "the reference |")
    print("|---|---|---:|---:|---:|---:|")
    for name, version, seconds, peak, metrics, error in results:
        if error is not None:
            print(f"| {name} | {version} | {error.splitlines()[0]} | | | |")
            continue
        ratio = f"{seconds / base:.2f}x" if base else "n/a"
        diff = ("n/a (reference not available)" if ref_metrics is None
                else f"{max_difference(metrics, ref_metrics):.3g}")
        print(f"| {name} | {version} | {seconds:.3f} | {ratio} | {peak:.0f} | {diff} |")
    if reference is None:
        print("| object_detection oid_vrd_challenge_evaluation.py | n/a (reference not "
              "available: set SETDET_BENCH_TF_OD) | | | | |")
    elif ref_metrics is not None:
        print()
        print("reference: " + ", ".join(f"{k}={ref_metrics[k]:.4f}" for k in
                                        ("mAP_relationship", "recall50_relationship",
                                         "mAP_phrase", "recall50_phrase", "score")))
    for name, version, seconds, peak, metrics, error in results:
        if error is not None:
            print(f"\n{name} failed:\n{error}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
