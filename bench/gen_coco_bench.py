"""Deterministic synthetic COCO bbox benchmark set, sized like COCO val2017: 5,000 images, 80
categories (COCO's category ids), ~36k ground truth (about 1% crowd, mask-like "area" smaller than
w*h), ~250k detections (jittered copies of the ground truth, some with the wrong category, plus
false positives; at most 100 per image; float32 scores).

    python3 bench/gen_coco_bench.py [OUT_DIR]      # writes gt.json and dt.json

bench_eval.py imports generate() and caches the files under $SETDET_BENCH_CACHE
(default /tmp/setdet_bench)."""
import json
import os
import sys

import numpy as np

VERSION = 1  # bump when the generator changes; part of the cache key

# The 80 category ids used by COCO 2017 (1..90 with gaps).
COCO_CATEGORY_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
    28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
    54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
    81, 82, 84, 85, 86, 87, 88, 89, 90]


def _boxes(rng, n, width, height):
    """n boxes [x, y, w, h] inside the image; sqrt(area) log-normal around 48 px, which gives
    roughly COCO's small / medium / large mix."""
    side = np.exp(rng.normal(np.log(48.0), 1.0, n))
    aspect = np.exp(rng.normal(0.0, 0.5, n))
    w = np.clip(side * np.sqrt(aspect), 2.0, width)
    h = np.clip(side / np.sqrt(aspect), 2.0, height)
    x = rng.uniform(0.0, 1.0, n) * (width - w)
    y = rng.uniform(0.0, 1.0, n) * (height - h)
    return np.stack([x, y, w, h], axis=1)


def generate(num_images=5000, num_categories=80, gt_per_image=7.3, fp_per_image=34.0,
             max_dets=100, seed=2019):
    rng = np.random.default_rng(seed)
    cat_ids = COCO_CATEGORY_IDS[:num_categories]
    # Zipf-like category frequencies (COCO is dominated by "person")
    freq = 1.0 / np.arange(1, num_categories + 1) ** 0.9
    freq /= freq.sum()
    sizes = [(640, 480), (640, 427), (480, 640), (640, 426), (640, 360), (500, 375), (640, 512),
             (427, 640), (640, 640)]
    images, annotations, detections = [], [], []
    ann_id = 1
    for i in range(num_images):
        image_id = 100000 + 7 * i  # sparse, unsorted-looking ids like COCO's
        width, height = sizes[rng.integers(len(sizes))]
        images.append({"id": image_id, "file_name": f"{image_id:012d}.jpg", "width": width,
                       "height": height})
        n_gt = min(int(rng.negative_binomial(1.3, 1.3 / (1.3 + gt_per_image))), 60)
        gt_boxes = _boxes(rng, n_gt, width, height)
        gt_cats = rng.choice(num_categories, n_gt, p=freq)
        crowd = rng.random(n_gt) < 0.01
        image_dets = []
        for b, c, is_crowd in zip(gt_boxes, gt_cats, crowd):
            if is_crowd:  # crowd regions are large
                b = b.copy()
                b[2], b[3] = min(width, b[2] * 3.0), min(height, b[3] * 3.0)
                b[0], b[1] = min(b[0], width - b[2]), min(b[1], height - b[3])
            area = float(b[2] * b[3] * rng.uniform(0.45, 0.85))
            annotations.append({"id": ann_id, "image_id": image_id,
                                "category_id": cat_ids[c], "bbox": [round(float(v), 2) for v in b],
                                "area": round(area, 2), "iscrowd": int(is_crowd)})
            ann_id += 1
            if rng.random() < 0.1:
                continue  # missed object
            for _ in range(1 + rng.poisson(1.5)):
                noise = rng.uniform(0.02, 0.3)
                jitter = rng.normal(0.0, noise, 4) * np.array([b[2], b[3], b[2], b[3]])
                d = np.array([b[0] + jitter[0], b[1] + jitter[1],
                              max(1.0, b[2] + jitter[2]), max(1.0, b[3] + jitter[3])])
                cat = c if rng.random() < 0.92 else rng.choice(num_categories, p=freq)
                score = 0.55 * rng.random() + 0.45 * (1.0 - noise / 0.3) * rng.random()
                image_dets.append((d, cat, score))
        n_fp = int(rng.poisson(fp_per_image))
        fp_boxes = _boxes(rng, n_fp, width, height)
        present = np.unique(gt_cats) if n_gt else np.arange(num_categories)
        for b in fp_boxes:
            cat = rng.choice(present) if rng.random() < 0.6 else rng.choice(num_categories, p=freq)
            image_dets.append((b, cat, 0.6 * rng.random()))
        image_dets.sort(key=lambda t: -t[2])
        for d, c, s in image_dets[:max_dets]:
            detections.append({"image_id": image_id, "category_id": cat_ids[c],
                               "bbox": [round(float(v), 2) for v in d],
                               "score": float(np.float32(s))})
    categories = [{"id": c, "name": f"category_{c}", "supercategory": "thing"} for c in cat_ids]
    gt = {"info": {"description": f"setdet synthetic COCO benchmark v{VERSION}"},
          "images": images, "annotations": annotations, "categories": categories}
    return gt, detections


def write(out_dir, **kwargs):
    """Writes gt.json and dt.json into out_dir (each via a temporary file + rename)."""
    os.makedirs(out_dir, exist_ok=True)
    gt, dets = generate(**kwargs)
    paths = []
    for name, obj in (("gt.json", gt), ("dt.json", dets)):
        path = os.path.join(out_dir, name)
        with open(path + ".tmp", "w") as f:
            json.dump(obj, f)
        os.replace(path + ".tmp", path)
        paths.append(path)
    return paths


if __name__ == "__main__":
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    gt_path, dt_path = write(out)
    print(gt_path, dt_path)
