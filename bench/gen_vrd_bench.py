"""Deterministic synthetic Open Images VRD evaluation set: ground-truth relationships, image-level
labels and detections in the challenge's CSV format, shaped like the challenge data (57 classes
+ 5 attributes, 10 predicates including "is" with box 2 = box 1, a few relationships per image).

What it exercises: detections that are jittered copies of the ground truth (IoU on both sides of
0.5), wrong classes / predicates, random pairs, classes that are neither labelled nor in the
ground truth (dropped by the metric), verified-absent labels (sure false positives), images with
more than 50 detections (Recall@50 truncation), images that are only in the labels file and
detections on images in neither file. Scores are distinct multiples of 1e-6, so no two
detections tie (the reference orders ties arbitrarily).

    python3 bench/gen_vrd_bench.py OUT_DIR [NUM_IMAGES] [SEED]   # gt.csv labels.csv dt.csv

bench_vrd_eval.py imports write(); tests/data/vrd/random200 was made with
`gen_vrd_bench.py tests/data/vrd/random200 200 13 --small`."""
import os
import sys

import numpy as np

VERSION = 1  # bump when the generator changes; part of the bench cache key

PREDICATES = ["at", "contain", "hits", "holds", "inside_of", "interacts_with", "is", "on",
              "plays", "wears"]
PREDICATE_FREQ = np.array([4, 3, 1, 6, 2, 5, 8, 6, 1, 4], dtype=float)
NUM_CLASSES = 57
ATTRIBUTES = ["/m/attr_wooden", "/m/attr_plastic", "/m/attr_transparent", "/m/attr_leather",
              "/m/attr_textile"]
GT_HEADER = ["ImageID", "LabelName1", "LabelName2", "XMin1", "XMax1", "YMin1", "YMax1", "XMin2",
             "XMax2", "YMin2", "YMax2", "RelationshipLabel"]


def _class(k):
    return f"/m/cls_{k:02d}"


def _box(rng):
    """[xmin, ymin, xmax, ymax] inside [0, 1]; sides 0.05-0.8."""
    w, h = rng.uniform(0.05, 0.8, 2)
    x, y = rng.uniform(0.0, 1.0 - w), rng.uniform(0.0, 1.0 - h)
    return np.array([x, y, x + w, y + h])


def _jitter(rng, box, noise):
    w, h = box[2] - box[0], box[3] - box[1]
    b = box + rng.normal(0.0, noise, 4) * np.array([w, h, w, h])
    b = np.clip(b, 0.0, 1.0)
    return np.array([min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])])


def _fmt(v):
    return f"{v:.5f}".rstrip("0").rstrip(".") if v not in (0.0, 1.0) else str(int(v))


def _row(image, l1, l2, b1, b2, predicate):
    return [image, l1, l2, _fmt(b1[0]), _fmt(b1[2]), _fmt(b1[1]), _fmt(b1[3]), _fmt(b2[0]),
            _fmt(b2[2]), _fmt(b2[1]), _fmt(b2[3]), predicate]


def generate(num_images=10000, seed=2019, small=False):
    """Returns (gt rows, label rows, detection rows) as lists of string lists (no headers)."""
    rng = np.random.default_rng(seed)
    class_freq = 1.0 / np.arange(1, NUM_CLASSES + 1) ** 0.8
    class_freq /= class_freq.sum()
    pred_freq = PREDICATE_FREQ / PREDICATE_FREQ.sum()
    gt, labels, dets = [], [], []
    for i in range(num_images):
        image = f"{(seed * 1000003 + i * 7919) % 16 ** 8:08x}{i:08x}"  # 16 hex digits
        if rng.random() < 0.03:  # only image-level labels, no relationships
            for k in rng.choice(NUM_CLASSES, 3, replace=False, p=class_freq):
                labels.append([image, _class(k), str(int(rng.random() < 0.5))])
            for _ in range(rng.integers(1, 4)):
                k1, k2 = rng.choice(NUM_CLASSES, 2, p=class_freq)
                dets.append(_row(image, _class(k1), _class(k2), _box(rng), _box(rng),
                                 PREDICATES[rng.choice(10, p=pred_freq)]) + [None])
            continue
        n_obj = int(rng.integers(2, 7))
        objs = [(int(rng.choice(NUM_CLASSES, p=class_freq)), _box(rng)) for _ in range(n_obj)]
        image_gt = []
        for _ in range(int(rng.integers(1, 7))):
            p = PREDICATES[rng.choice(10, p=pred_freq)]
            a = int(rng.integers(n_obj))
            if p == "is":
                attr = ATTRIBUTES[rng.integers(len(ATTRIBUTES))]
                image_gt.append((_class(objs[a][0]), attr, objs[a][1], objs[a][1], p))
            else:
                b = int(rng.integers(n_obj - 1))
                b += b >= a
                image_gt.append((_class(objs[a][0]), _class(objs[b][0]), objs[a][1], objs[b][1],
                                 p))
        if rng.random() < 0.05:  # an identical ground-truth row listed twice
            image_gt.append(image_gt[0])
        for l1, l2, b1, b2, p in image_gt:
            gt.append(_row(image, l1, l2, b1, b2, p))
        present = {c for g in image_gt for c in g[:2]}
        for c in sorted(present):
            if rng.random() < 0.7:
                labels.append([image, c, "1"])
        absent = [k for k in rng.choice(NUM_CLASSES, 4, replace=False) if _class(k) not in present]
        for k in absent[:2]:  # verified absent: detections of these are sure false positives
            labels.append([image, _class(k), "0"])

        image_dets = []
        for l1, l2, b1, b2, p in image_gt:
            if rng.random() < 0.15:
                continue  # missed
            for _ in range(1 + rng.poisson(0.8 if small else 1.5)):
                noise = rng.uniform(0.0, 0.35)
                d1 = _jitter(rng, b1, noise)
                d2 = d1 if p == "is" else _jitter(rng, b2, noise)
                pp = p if rng.random() < 0.85 else PREDICATES[rng.choice(10, p=pred_freq)]
                c1 = l1 if rng.random() < 0.95 else _class(rng.choice(NUM_CLASSES, p=class_freq))
                image_dets.append((c1, l2, d1, d2, pp, 1.0 - noise / 0.35))
        many = rng.random() < 0.05
        n_fp = int(rng.poisson(60 if many else (4 if small else 25)))
        for _ in range(n_fp):
            a, b = rng.integers(n_obj, size=2)
            c1 = _class(objs[a][0]) if rng.random() < 0.8 else _class(rng.choice(NUM_CLASSES))
            if rng.random() < 0.2:
                c2, p, b2 = ATTRIBUTES[rng.integers(len(ATTRIBUTES))], "is", None
            else:
                c2 = _class(objs[b][0]) if rng.random() < 0.8 else _class(rng.choice(NUM_CLASSES))
                p, b2 = PREDICATES[rng.choice(10, p=pred_freq)], _jitter(rng, objs[b][1], 0.3)
            b1 = _jitter(rng, objs[a][1], 0.3)
            image_dets.append((c1, c2, b1, b1 if b2 is None else b2, p, 0.0))
        for c1, c2, d1, d2, p, quality in image_dets:
            dets.append(_row(image, c1, c2, d1, d2, p) + [quality])
        if rng.random() < 0.01:  # an image in neither file
            other = f"ffffffff{i:08x}"
            dets.append(_row(other, _class(0), _class(1), _box(rng), _box(rng), "on") + [None])

    # distinct scores, multiples of 1e-6, higher for better-matching detections
    ticks = np.sort(rng.choice(10 ** 6, len(dets), replace=False))
    raw = np.array([0.6 * rng.random() + 0.4 * (q if q is not None else 0.0)
                    for *_, q in dets])
    order = np.argsort(raw, kind="stable")
    score = np.empty(len(dets), dtype=np.int64)
    score[order] = ticks
    dets = [row[:-1] + [f"{s / 1e6:.6f}"] for row, s in zip(dets, score)]
    perm = rng.permutation(len(dets))  # rows of an image need not be adjacent
    dets = [dets[k] for k in perm]
    return gt, labels, dets


def write(out_dir, num_images=10000, seed=2019, small=False):
    """Writes gt.csv, labels.csv and dt.csv into out_dir; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    gt, labels, dets = generate(num_images, seed, small)
    paths = []
    for name, header, rows in (("gt.csv", GT_HEADER, gt),
                               ("labels.csv", ["ImageID", "LabelName", "Confidence"], labels),
                               ("dt.csv", GT_HEADER + ["Score"], dets)):
        path = os.path.join(out_dir, name)
        with open(path + ".tmp", "w") as f:
            f.write(",".join(header) + "\n")
            for row in rows:
                f.write(",".join(row) + "\n")
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    args = [a for a in sys.argv[1:] if a != "--small"]
    out = args[0] if args else "."
    n = int(args[1]) if len(args) > 1 else 10000
    s = int(args[2]) if len(args) > 2 else 2019
    print(*write(out, n, s, small="--small" in sys.argv))
