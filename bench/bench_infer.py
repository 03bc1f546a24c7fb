"""Inference latency of setdet's FCOS / RetinaNet / Faster R-CNN R50-FPN beside torchvision and
ONNX Runtime.

Run as /usr/bin/python3 bench/bench_infer.py with SETDET_BIN=build/bin/setdet (scripts/bench.sh
does this). Two kinds of rows, each a median over --repeats runs after one warm-up, with the same
thread count (--threads, default 2) on every side:

* network: the detector network (backbone + FPN + head, no pre- or post-processing; for Faster
  R-CNN backbone + FPN + RPN head, as the RoI stage depends on the proposals) on one fixed
  [1, 3, 800, 1216] tensor: `setdet bench --mode network` (BatchNorm folded, channels-last),
  torchvision's eager model.backbone + model.head, and ONNX Runtime (npm's onnxruntime-node, in
  build/ort) on the torch.onnx export of that same torchvision network, checked against it.
* end to end: decode the photo -> detections: `setdet bench --mode e2e` (what `setdet infer`
  runs) against torchvision.io.read_image + model([image]) (its transform, network and
  postprocess_detections).

Every side runs with glibc's mmap and trim thresholds fixed (MALLOC_MMAP_THRESHOLD_ and
MALLOC_TRIM_THRESHOLD_, see MALLOC_FIXED below; --glibc-malloc default leaves glibc's moving
ones), and the ONNX Runtime rows run after all the others: its export and node process changed the
timing of the rows that followed them.

Weights: when the .pth importer is there (`setdet bench --checkpoint X.pth`), both sides run the
same torchvision state_dict (head shifted so that the random model detects things, as in
tests/python/test_torchvision_parity.py) and the end-to-end rows compare detection counts;
otherwise both run random initialisations, which does not change network times. ONNX Runtime is
reported as unavailable (and the rest still runs) when node or onnxruntime-node is missing and
`npm install` fails.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import torch
import torchvision
from torchvision.models.detection import (fasterrcnn_resnet50_fpn, fcos_resnet50_fpn,
                                          retinanet_resnet50_fpn)

from process_timing import median_seconds, run_json

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))

PHOTOS = ["/usr/share/darknet/data/dog.jpg",
          "/usr/share/matplotlib/mpl-data/sample_data/grace_hopper.jpg"]
MODELS = {
    "fcos": dict(title="FCOS R50-FPN", builder=fcos_resnet50_fpn,
                 config="configs/torchvision/fcos_resnet50_fpn.yaml", cls_bias=-2.0,
                 cls_std=0.03, reg_bias_std=1.0),
    "retinanet": dict(title="RetinaNet R50-FPN", builder=retinanet_resnet50_fpn,
                      config="configs/torchvision/retinanet_resnet50_fpn.yaml", cls_bias=-4.0,
                      cls_std=0.03, reg_bias_std=0.3),
    # shift_head's Faster R-CNN branch: cls_bias is the std of the class-score biases
    "fasterrcnn": dict(title="Faster R-CNN R50-FPN", builder=fasterrcnn_resnet50_fpn,
                       config="configs/torchvision/fasterrcnn_resnet50_fpn.yaml", cls_bias=2.0,
                       cls_std=0.05, reg_bias_std=0.01),
}


class Network(torch.nn.Module):
    """torchvision detector network without transform and postprocessing: tensors in, the
    head's outputs (in a fixed order) out."""

    def __init__(self, model):
        super().__init__()
        self.backbone = model.backbone
        self.two_stage = hasattr(model, "rpn")
        self.head = model.rpn.head if self.two_stage else model.head

    def forward(self, x):
        features = list(self.backbone(x).values())
        if self.two_stage:  # the pyramid and the RPN head's maps, as setdet's forward_network
            objectness, deltas = self.head(features)
            return tuple(features + objectness + deltas)
        out = self.head(features)
        return tuple(out[k] for k in sorted(out))


def ensure_ort(work):
    """node + onnxruntime-node under build/ort; returns (env, version) or (None, reason)."""
    node = shutil.which("node")
    if node is None:
        return None, "node not found"
    ort_dir = os.path.join(ROOT, "build", "ort")
    module = os.path.join(ort_dir, "node_modules", "onnxruntime-node", "package.json")
    if not os.path.exists(module):
        npm = shutil.which("npm")
        if npm is None:
            return None, "npm not found"
        os.makedirs(ort_dir, exist_ok=True)
        shutil.copy(os.path.join(ROOT, "bench", "package.json"), ort_dir)
        # --ignore-scripts: the CPU library ships in the package; the postinstall script only
        # downloads CUDA binaries (from nuget.org, unreachable offline).
        try:
            r = subprocess.run([npm, "install", "--ignore-scripts", "--no-audit", "--no-fund"],
                               cwd=ort_dir, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            return None, "npm install timed out"
        if r.returncode != 0 or not os.path.exists(module):
            return None, "npm install onnxruntime-node failed: " + r.stderr.strip()[-200:]
    with open(module) as f:
        version = json.load(f)["version"]
    env = dict(os.environ, NODE_PATH=os.path.join(ort_dir, "node_modules"))
    return env, version


# glibc serves an allocation above its mmap threshold with a fresh mmap, whose pages fault in on
# first touch, and frees it with munmap. The threshold starts at 128 KiB and rises to the size of
# the largest mmapped block freed so far, up to 32 MiB, so it moves in the middle of a run: after
# torch.onnx.export (or any burst of large allocations) torchvision's eager Faster R-CNN network
# ran 1.32 s instead of 1.79 s on the same input (2 threads, 2026-12-05), and its rows timed after
# the ONNX Runtime row looked faster than those timed before it. Below the threshold, glibc gives
# the free top of its heap back to the system beyond its trim threshold, and those pages fault in
# again at the next large allocation: with the mmap threshold fixed alone, setdet's FCOS network
# took 1.73-1.82 s, with the trim threshold raised too 0.85 s (2026-12-05). Both fixed keep every
# side in one regime, the one in which freed memory is reused (ONNX Runtime keeps its own arena).
MALLOC_FIXED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}


def native_bfloat16():
    """Whether this CPU multiplies bfloat16 natively (Linux /proc/cpuinfo flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def build_torchvision(spec, image, equal_weights):
    torch.manual_seed(0)
    model = spec["builder"](weights=None, weights_backbone=None, num_classes=91)
    if equal_weights:
        from test_torchvision_parity import calibrate_batch_norm, shift_head
        calibrate_batch_norm(model, image)
        shift_head(model, torch.Generator().manual_seed(1), spec["cls_bias"], spec["cls_std"],
                   spec["reg_bias_std"])
    return model.eval()


def bench_model(name, spec, args, work, ort_env, photo, equal_weights):
    rows = []
    config = os.path.join(ROOT, spec["config"])
    image = torchvision.io.read_image(photo).float() / 255
    model = build_torchvision(spec, image, equal_weights)
    ckpt = []
    if equal_weights:
        pth = os.path.join(work, f"{name}.pth")
        torch.save(model.state_dict(), pth)
        ckpt = ["--checkpoint", pth]
    setdet = [os.environ.get("SETDET_BIN", os.path.join(ROOT, "build", "bin", "setdet")),
              "--threads", str(args.threads), "bench", "--config", config,
              "--repeats", str(args.repeats)]
    h, w = args.height, args.width
    shape = f"1x3x{h}x{w}"

    # -- network only
    net = Network(model).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.randn((1, 3, h, w), generator=g)
    with torch.no_grad():
        t_tv = median_seconds(lambda: net(x), args.repeats)
        ref = net(x)
    network = setdet + ["--mode", "network", "--height", str(h), "--width", str(w)] + ckpt
    ours = run_json(network)
    direct = run_json(network + ["--no-winograd"])
    bf16 = run_json(network + ["--precision", "bfloat16"]) if args.bfloat16 else None
    unfused = run_json(network + ["--no-fuse"]) if args.unfused else None
    case = f"{spec['title']} network, {shape}"
    rows.append(dict(case=case, ours=ours["median_s"], peer="torchvision eager", t_peer=t_tv,
                     note="setdet: BN folded, channels-last, prepacked oneDNN convolutions, "
                          "Winograd"))
    rows.append(dict(case=case + " (setdet without Winograd)", ours=direct["median_s"],
                     peer="torchvision eager", t_peer=t_tv,
                     note="setdet: oneDNN's direct kernels only (--no-winograd)"))
    if unfused:
        rows.append(dict(case=case + " (setdet unfused)", ours=unfused["median_s"],
                         peer="torchvision eager", t_peer=t_tv,
                         note="setdet: BN unfolded, at::conv2d"))

    # -- ONNX Runtime: run by main() after every other row, whose timings its export and node
    # process changed when they came first
    def ort_rows():
        if not isinstance(ort_env, dict):
            return [dict(case=case, ours=ours["median_s"], peer="ONNX Runtime", t_peer=None,
                         note=f"unavailable: {ort_env}")]
        onnx_path = os.path.join(work, f"{name}_{h}x{w}.onnx")
        torch.onnx.export(net, (x,), onnx_path, opset_version=13, input_names=["images"],
                          output_names=[f"out{i}" for i in range(len(ref))])
        x_bin = os.path.join(work, f"input_{h}x{w}.bin")
        x.numpy().astype(np.float32).tofile(x_bin)
        dump = os.path.join(work, f"{name}_ort_out")
        ort = run_json(["node", os.path.join(ROOT, "bench", "ort_run.js"), onnx_path, x_bin,
                        f"1,3,{h},{w}", "--threads", str(args.threads), "--repeats",
                        str(args.repeats), "--dump", dump], env=ort_env)
        with open(os.path.join(dump, "outputs.json")) as f:
            metas = json.load(f)
        diff = 0.0
        for i, m in enumerate(metas):
            got = np.fromfile(os.path.join(dump, m["name"] + ".bin"), dtype=np.float32)
            diff = max(diff, float(np.abs(got - ref[i].numpy().reshape(-1)).max()))
        peer = f"ONNX Runtime {ort['onnxruntime_node']} (float32)"
        out = [dict(case=case, ours=ours["median_s"], peer=peer, t_peer=ort["median_s"],
                    goal="<= 1.0x", note=f"ORT vs torchvision outputs: max |diff| {diff:.1e}")]
        if bf16:
            out.append(dict(case=case + " (setdet bfloat16)", ours=bf16["median_s"], peer=peer,
                            t_peer=ort["median_s"],
                            note="setdet --precision bfloat16: backbone, neck and head in "
                                 "bfloat16 (AVX512-BF16)"))
        return out

    rows.append(ort_rows)  # a function: main() calls it after every other row

    # -- end to end: decode -> detections
    def tv_e2e():
        img = torchvision.io.read_image(photo).float() / 255
        with torch.no_grad():
            return model([img])[0]

    t_tv_e2e = median_seconds(tv_e2e, args.repeats)
    n_tv = int(tv_e2e()["scores"].numel())
    e2e = run_json(setdet + ["--mode", "e2e", "--image", photo] + ckpt)
    note = (f"detections: setdet {e2e['num_detections']}, torchvision {n_tv}"
            + ("" if equal_weights else " (random weights, not equal)"))
    if "unfused_num_detections" in e2e:
        note += (f"; setdet BN-folded vs unfolded: {e2e['unfused_num_detections']} detections, "
                 f"labels {'equal' if e2e['unfused_same_labels'] else 'DIFFERENT'}, max |box "
                 f"diff| {e2e['unfused_max_box_diff']:.1e} px, max |score diff| "
                 f"{e2e['unfused_max_score_diff']:.1e}")
    rows.append(dict(case=f"{spec['title']} end to end, {os.path.basename(photo)} "
                          f"(input {e2e['input'][2]}x{e2e['input'][3]})",
                     ours=e2e["median_s"], peer="torchvision model(image)", t_peer=t_tv_e2e,
                     goal="<= 0.9x", note=note))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1216)
    parser.add_argument("--models", default="fcos,retinanet,fasterrcnn",
                        help="comma-separated subset of: " + ", ".join(MODELS))
    parser.add_argument("--unfused", action="store_true",
                        help="also time setdet with BatchNorm unfolded")
    parser.add_argument("--no-ort", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--bfloat16", choices=["auto", "on", "off"], default="auto",
                        help="also time setdet --precision bfloat16 (auto: when the CPU has "
                             "avx512_bf16 or amx_bf16)")
    parser.add_argument("--work-dir", default=os.path.join(ROOT, "build", "bench_infer"))
    parser.add_argument("--glibc-malloc", choices=["fixed", "default"], default="fixed",
                        help="fixed: run every side with " +
                             " ".join(f"{k}={v}" for k, v in MALLOC_FIXED.items()) +
                             " (one allocation regime for the whole run); default: glibc's "
                             "dynamic thresholds")
    args = parser.parse_args()
    if args.glibc_malloc == "fixed" and any(os.environ.get(k) != v
                                            for k, v in MALLOC_FIXED.items()):
        # glibc reads it at start-up: start again with it (setdet and node inherit it)
        os.execve(sys.executable, [sys.executable] + sys.argv,
                  dict(os.environ, **MALLOC_FIXED))
    torch.set_num_threads(args.threads)
    os.makedirs(args.work_dir, exist_ok=True)
    args.bfloat16 = args.bfloat16 == "on" or (args.bfloat16 == "auto" and native_bfloat16())

    photo = next((p for p in PHOTOS if os.path.exists(p)), None)
    if photo is None:
        sys.exit("bench_infer: no photo found (install Debian's darknet package): "
                 + ", ".join(PHOTOS))
    # Both sides run the same weights: torchvision's state_dict, imported by setdet from the .pth.
    equal_weights = True
    ort_env, ort_version = ensure_ort(args.work_dir) if not args.no_ort else (None, "--no-ort")
    ort = ort_env if ort_env is not None else ort_version

    load_before = os.getloadavg()[0]
    rows = []
    gn = run_json([os.environ.get("SETDET_BIN", os.path.join(ROOT, "build", "bin", "setdet")),
                   "--threads", str(args.threads), "bench", "--mode", "group-norm", "--height",
                   str(args.height), "--width", str(args.width), "--repeats", str(args.repeats)])
    for name in [m for m in args.models.split(",") if m]:
        if name not in MODELS:
            sys.exit(f"bench_infer: --models: unknown model '{name}', expected one of "
                     + ", ".join(MODELS))
        rows += bench_model(name, MODELS[name], args, args.work_dir, ort, photo, equal_weights)
    # the ONNX Runtime rows, after all others
    rows = [row for r in rows for row in (r() if callable(r) else [r])]

    print(f"{args.threads} threads on every side; torch {torch.__version__} / torchvision "
          f"{torchvision.__version__} eager (no pretrained weights: BatchNorm2d in eval mode); "
          f"setdet LibTorch 1.13, BatchNorm folded, channels-last, convolutions on oneDNN "
          f"with prepacked weights (Winograd for 3x3 stride-1 layers); weights "
          f"{'equal (torchvision state_dict imported)' if equal_weights else 'random on each side'}"
          f"; glibc malloc: "
          + " ".join(f"{k}={os.environ.get(k, 'unset')}" for k in MALLOC_FIXED)
          + " on every side"
          f"; 1-min load average {load_before:.2f} before / {os.getloadavg()[0]:.2f} after, "
          f"{os.cpu_count()} cores")
    print()
    print("| case | setdet median (s) | peer | peer median (s) | setdet / peer | goal | notes |")
    print("|---|---:|---|---:|---:|---:|---|")
    for r in rows:
        peer = "-" if r["t_peer"] is None else f"{r['t_peer']:.3f}"
        ratio = "-" if r["t_peer"] is None else f"{r['ours'] / r['t_peer']:.2f}x"
        print(f"| {r['case']} | {r['ours']:.3f} | {r['peer']} | {peer} | {ratio} | "
              f"{r.get('goal', '-')} | {r['note']} |")
    print(f"| GroupNorm(32)+ReLU, the 8 of FCOS's towers on P3-P7 of {args.height}x{args.width}"
          f", channels-last | {gn['setdet_median_s']:.3f} | at::group_norm + relu_ | "
          f"{gn['aten_median_s']:.3f} | {gn['setdet_median_s'] / gn['aten_median_s']:.2f}x | - "
          f"| max |diff| {gn['max_abs_diff']:.1e} |")


if __name__ == "__main__":
    main()
