"""Detection-list comparison shared by the parity tests (setdet vs torchvision, setdet vs DETA's
authors' code): same count, and every reference detection has a setdet twin with the same label,
a box within BOX_TOL px and a score within SCORE_TOL, in the same order."""
import os

import torch
from PIL import Image

BOX_TOL = 1e-2
SCORE_TOL = 1e-4
# darknet's data/dog.jpg (Debian package `darknet`), 768 x 576
PHOTO = "/usr/share/darknet/data/dog.jpg"


def photo_as_png(directory):
    """Writes PHOTO decoded once by PIL as directory/dog.png, which OpenCV (setdet) and PIL (the
    references) then decode to identical pixels; returns its path."""
    if not os.path.exists(PHOTO):
        raise RuntimeError(f"{PHOTO} is missing: install Debian's darknet package "
                           "(scripts/install_deps.sh does)")
    png = os.path.join(directory, "dog.png")
    Image.open(PHOTO).convert("RGB").save(png)
    return png


def compare_detections(test, name, ref, dets, min_count, label_offset=0, max_unmatched=0):
    """`ref` holds tensors "boxes" [n, 4] (xyxy px), "scores" [n], "labels" [n]; `dets` is
    `setdet infer --json`'s list for the image. `max_unmatched` (each way) allows for detections
    that the two sides rank differently at a top-n boundary whose scores tie to within float32
    rounding. Returns (max |box| difference, max |score| difference) over the matched pairs."""
    n = ref["scores"].numel()
    # a vacuous comparison proves nothing: the randomised model must detect things
    test.assertGreaterEqual(n, min_count, f"{name}: the reference found only {n} detections")
    test.assertEqual(len(dets), n, f"{name}: setdet {len(dets)} detections, the reference {n}")
    unmatched = []
    boxes = torch.tensor([d["box_xyxy"] for d in dets], dtype=torch.float64).reshape(-1, 4)
    scores = torch.tensor([d["score"] for d in dets], dtype=torch.float64)
    labels = torch.tensor([d["label"] for d in dets], dtype=torch.int64) + label_offset
    ref_boxes = ref["boxes"].double()
    ref_scores = ref["scores"].double()
    # Reference detection k must be setdet's detection k, except that detections whose scores
    # tie within the tolerance may come in either order: match within such runs.
    used = torch.zeros(n, dtype=torch.bool)
    max_box, max_score = 0.0, 0.0
    for k in range(n):
        cand = ((scores - ref_scores[k]).abs() <= SCORE_TOL) & ~used & \
               (labels == ref["labels"][k])
        box_err = (boxes - ref_boxes[k]).abs().max(dim=1).values
        cand &= box_err <= BOX_TOL
        idx = torch.nonzero(cand).flatten()
        if idx.numel() == 0:
            unmatched.append(f"reference detection {k} (label {int(ref['labels'][k])}, "
                             f"score {float(ref_scores[k]):.6f}, box {ref_boxes[k].tolist()})")
            test.assertLessEqual(len(unmatched), max_unmatched,
                                 f"{name}: no setdet match for " + "; ".join(unmatched))
            continue
        j = int(idx[(idx - k - len(unmatched)).abs().argmin()])
        used[j] = True
        max_box = max(max_box, float(box_err[j]))
        max_score = max(max_score, float((scores[j] - ref_scores[k]).abs()))
    print(f"\n{name}: {n} detections, {n - len(unmatched)} matched, max |box| diff "
          f"{max_box:.2e} px, max |score| diff {max_score:.2e}")
    return max_box, max_score
