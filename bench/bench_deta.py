"""DETA R50 (5 scales, 900 queries; configs/deta/deta_r50_5scale_12ep.yaml) inference latency in
setdet beside the authors' Python code on CPU.

Run as /usr/bin/python3 bench/bench_deta.py with SETDET_BIN=build/bin/setdet (scripts/bench.sh
does this). Rows, each a median over --repeats runs after one warm-up, same thread count on both
sides (--threads, default 2):

* network: the model on one fixed [1, 3, 800, 1216] tensor (backbone, input projections,
  encoder, proposals + query selection, decoder, heads; no post-processing):
  `setdet bench --mode network` vs the authors' DeformableDETR.forward on the same tensor.
* end to end: decode darknet's dog.jpg -> detections (resize to 800, normalise, network, top
  10000 (query, class) pairs, class-aware NMS 0.7, 100 kept): `setdet bench --mode e2e` vs PIL +
  the authors' transforms + model + NMSPostProcess.

The authors' side runs when DETA_REPO (or --deta-repo) names a checkout of jozhang97/DETA; this
script neither fetches nor builds it. Their multi-scale deformable attention is a CUDA extension,
so on CPU it runs their own pure-PyTorch reference of the op (`ms_deform_attn_core_pytorch`, the
only CPU path their code has); their Swin backbone's `timm` import is stubbed (unused here) and
their ResNet-50 is built without downloading ImageNet weights. Both sides then run the same
weights: the authors' randomly initialised model, saved as their checkpoints are
({'model': state_dict}) and loaded by setdet, and the end-to-end row compares the detections.
Without the checkout, setdet's rows are printed alone.
"""
import argparse
import importlib.util
import os
import sys
import types

import torch

from process_timing import median_seconds, run_json

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
CONFIG = os.path.join(ROOT, "configs", "deta", "deta_r50_5scale_12ep.yaml")
PHOTO = "/usr/share/darknet/data/dog.jpg"


def import_authors_code(repo):
    """Imports jozhang97/DETA's model code from `repo` for CPU inference (see the module doc)."""
    if not os.path.isfile(os.path.join(repo, "models", "deformable_detr.py")):
        raise RuntimeError(f"{repo}: not a checkout of jozhang97/DETA "
                           "(models/deformable_detr.py missing)")
    sys.path.insert(0, repo)
    for name in ("timm", "timm.models", "timm.models.layers"):
        sys.modules.setdefault(name, types.ModuleType(name))
    layers = sys.modules["timm.models.layers"]
    layers.DropPath = layers.to_2tuple = layers.trunc_normal_ = None
    msda = types.ModuleType("MultiScaleDeformableAttention")
    sys.modules["MultiScaleDeformableAttention"] = msda
    from models.ops.functions import ms_deform_attn_func
    msda.ms_deform_attn_forward = lambda value, shapes, start, loc, weights, step: \
        ms_deform_attn_func.ms_deform_attn_core_pytorch(value, shapes, loc, weights)
    import models.backbone
    models.backbone.is_main_process = lambda: False  # their Backbone downloads weights on rank 0
    from models.deformable_detr import build
    from util.misc import nested_tensor_from_tensor_list
    # their transforms without datasets/__init__.py, which imports pycocotools
    spec = importlib.util.spec_from_file_location("deta_transforms",
                                                  os.path.join(repo, "datasets", "transforms.py"))
    T = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(T)
    return build, nested_tensor_from_tensor_list, T


def authors_args():
    """configs/deta.sh at f47e50e (and main.py's defaults for the rest)."""
    return argparse.Namespace(
        dataset_file="coco", device="cpu", num_queries=900, num_feature_levels=5, aux_loss=True,
        with_box_refine=True, two_stage=True, masks=False, frozen_weights=None,
        cls_loss_coef=1.0, bbox_loss_coef=5.0, giou_loss_coef=2.0, mask_loss_coef=1.0,
        dice_loss_coef=1.0, dec_layers=6, enc_layers=6, focal_alpha=0.25,
        assign_first_stage=True, assign_second_stage=True, hidden_dim=256, nheads=8,
        dim_feedforward=2048, dropout=0.0, dec_n_points=4, enc_n_points=4, lr_backbone=2e-5,
        backbone="resnet50", dilation=False, position_embedding="sine", set_cost_class=2,
        set_cost_bbox=5, set_cost_giou=2, bigger=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--deta-repo", default=os.environ.get("DETA_REPO", ""),
                        help="checkout of jozhang97/DETA (default: $DETA_REPO)")
    parser.add_argument("--work-dir", default=os.path.join(ROOT, "build", "bench_deta"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.work_dir, exist_ok=True)
    if not os.path.exists(PHOTO):
        sys.exit(f"bench_deta: {PHOTO} is missing (install Debian's darknet package)")

    authors, why = None, "set DETA_REPO to a checkout of jozhang97/DETA"
    if args.deta_repo:
        try:
            authors = import_authors_code(os.path.abspath(args.deta_repo))
        except Exception as e:  # the setdet rows still run
            why = f"{args.deta_repo}: {e}"
    ckpt = []
    if authors:
        build, nested, T = authors
        torch.manual_seed(0)
        model, _, post = build(authors_args())
        model.eval()
        pth = os.path.join(args.work_dir, "deta_r50_random.pth")
        torch.save({"model": model.state_dict()}, pth)
        ckpt = ["--checkpoint", pth]

    load_before = os.getloadavg()[0]
    setdet = [os.environ.get("SETDET_BIN", os.path.join(ROOT, "build", "bin", "setdet")),
              "--threads", str(args.threads), "bench", "--config", CONFIG, "--repeats",
              str(args.repeats)] + ckpt
    rows = []
    net = run_json(setdet + ["--mode", "network", "--height", "800", "--width", "1216"],
                   timeout=7200)
    e2e = run_json(setdet + ["--mode", "e2e", "--image", PHOTO], timeout=7200)
    t_net = t_e2e = None
    note_e2e = f"setdet {e2e['num_detections']} detections"
    if authors:
        from PIL import Image
        g = torch.Generator().manual_seed(0)
        x = torch.randn((1, 3, 800, 1216), generator=g)
        samples = nested([x[0]])
        with torch.no_grad():
            t_net = median_seconds(lambda: model(samples), args.repeats)
        transform = T.Compose([T.RandomResize([800], max_size=1333), T.ToTensor(),
                               T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])

        def authors_e2e():
            img = Image.open(PHOTO).convert("RGB")
            tensor, _ = transform(img, None)
            with torch.no_grad():
                out = model(nested([tensor]))
                return post["bbox"](out, torch.tensor([[img.height, img.width]]))[0]

        t_e2e = median_seconds(authors_e2e, args.repeats)
        ref = authors_e2e()
        note_e2e += f", authors' code {int(ref['scores'].numel())} (same weights)"
    peer = "jozhang97/DETA (PyTorch, CPU attention)" if authors else f"authors' code: {why}"
    rows.append(("network, 1x3x800x1216", net["median_s"], t_net, "BN folded"))
    rows.append((f"end to end, dog.jpg (input {e2e['input'][2]}x{e2e['input'][3]})",
                 e2e["median_s"], t_e2e, note_e2e))

    print(f"DETA R50 5-scale, 900 queries; {args.threads} threads on both sides; torch "
          f"{torch.__version__}; setdet LibTorch 1.13; medians of {args.repeats}; 1-min load "
          f"average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after, "
          f"{os.cpu_count()} cores")
    print()
    print("| case | setdet median (s) | peer | peer median (s) | setdet / peer | notes |")
    print("|---|---:|---|---:|---:|---|")
    for case, ours, theirs, note in rows:
        t = "-" if theirs is None else f"{theirs:.3f}"
        ratio = "-" if theirs is None else f"{ours / theirs:.2f}x"
        print(f"| DETA R50 {case} | {ours:.3f} | {peer} | {t} | {ratio} | {note} |")


if __name__ == "__main__":
    main()
