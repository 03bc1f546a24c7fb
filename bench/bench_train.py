"""Training throughput of setdet's FCOS against torchvision's Python FCOS, side by side.

Both sides train the identical network (the `make demo` model: half-width ResNet-18 with widths
32/64/128/256 and trainable BatchNorm, FPN 64 with P6/P7 from P5, FCOS head with 2 x 64-channel
GroupNorm(32) towers, 8 classes) on the same synthetic images (`setdet data synth`, 256 px),
with the same batch, AdamW with weight decay on weights only, gradient clipping, random
horizontal flip and the same number of threads. setdet runs `setdet train` (threaded data
loading from disk); torchvision gets its images already decoded in memory, so its side pays no
decoding at all. Each side reports the median wall time of an iteration (forward, loss,
backward, optimiser step) after warm-up; images/s = batch / median.

Each side runs twice: in float32, and in bfloat16 mixed precision (setdet `runner.autocast:
bfloat16`; torchvision under torch.autocast("cpu", bfloat16)). Mixed precision is set up the same
way on both sides: convolutions compute in bfloat16, GroupNorm normalises in float32 (LibTorch 1.13
rejects a bfloat16 input next to float32 weights on either side, so torchvision's nn.GroupNorm is
patched as setdet's Float32GroupNorm does), and the head outputs are cast to float32 before the
losses. Each precision is compared with torchvision at the same precision. The FCOS assigner uses
FCOS's / torchvision's regression ranges (0-64-128-256-512-inf) on both sides.

Run as /usr/bin/python3 bench/bench_train.py with SETDET_BIN=build/bin/setdet (scripts/bench.sh
does this). Options: --iters, --batch, --threads, --keep DIR (keep the work directory).
"""
import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile

import process_timing
import time

CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "fcos",
                      "fcos_r18h_fpn64_256_demo.yaml")
NUM_CLASSES = 8
GOAL = 1.2
PRECISIONS = ("float32", "bfloat16")


def native_bfloat16():
    """True when /proc/cpuinfo lists amx_bf16 or avx512_bf16 (as setdet's `autocast: auto`)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def setdet_bin():
    return process_timing.setdet_bin("bench_train")


def make_data(work, num_images):
    data = os.path.join(work, "data")
    subprocess.run([setdet_bin(), "data", "synth", "--out", data, "--num-train", str(num_images),
                    "--num-val", "8", "--seed", "0"], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return data


def run_setdet(work, data, iters, batch, threads, warmup, precision):
    """`setdet train` logging every iteration; returns (median iteration seconds, peak RSS MiB)."""
    out = os.path.join(work, f"setdet_{precision}")
    cmd = [setdet_bin(), "--threads", str(threads), "train", CONFIG, "--work-dir", out,
           "--set", f"data.train.dataset.data_root={data}/",
           "--set", f"data.train.batch_size={batch}",
           "--set", "model.head.gn_groups=32",
           "--set", "model.assigner.regress_ranges=[[-1, 64], [64, 128], [128, 256], [256, 512], "
                    "[512, 100000000]]",
           "--set", f"runner.autocast={'bfloat16' if precision == 'bfloat16' else 'off'}",
           "--set", "runner.max_seconds=0", "--set", f"runner.max_iters={iters}",
           "--set", "lr_schedule.by_time=false", "--set", "runner.log_interval=1",
           "--set", "runner.checkpoint_interval=0", "--set", "runner.eval_interval=0"]
    # os.wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would be the maximum over every
    # child so far, torchvision's included).
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            err.seek(0)
            sys.exit(f"bench_train: {' '.join(cmd)} failed:\n{err.read()}")
    times = []
    with open(os.path.join(out, "log.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("mode") == "train" and rec["iter"] > warmup:
                times.append(rec["time"])
    if not times:
        sys.exit(f"bench_train: no per-iteration times in {out}/log.jsonl")
    return statistics.median(times), usage.ru_maxrss / 1024.0


TORCHVISION_CHILD = r"""
import json, random, statistics, sys, time, resource
import torch, torchvision
from torch import nn
from torchvision.io import read_image
from torchvision.models.resnet import BasicBlock, ResNet
from torchvision.models.detection import FCOS
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

data, iters, batch, threads, warmup, channels_last, num_classes, precision = sys.argv[1:9]
iters, batch, threads, warmup = int(iters), int(batch), int(threads), int(warmup)
num_classes = int(num_classes)
torch.set_num_threads(threads)
torch.manual_seed(0)
random.seed(0)


class HalfWidthResNet18(ResNet):
    def __init__(self):
        super().__init__(BasicBlock, [2, 2, 2, 2])
        self.inplanes = 32
        self.conv1 = nn.Conv2d(3, 32, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.layer1 = self._make_layer(BasicBlock, 32, 2)
        self.layer2 = self._make_layer(BasicBlock, 64, 2, stride=2)
        self.layer3 = self._make_layer(BasicBlock, 128, 2, stride=2)
        self.layer4 = self._make_layer(BasicBlock, 256, 2, stride=2)


backbone = BackboneWithFPN(HalfWidthResNet18(), {"layer2": "0", "layer3": "1", "layer4": "2"},
                           [64, 128, 256], 64, extra_blocks=LastLevelP6P7(64, 64))
model = FCOS(backbone, num_classes=num_classes, min_size=256, max_size=256,
             head=FCOSHead(64, 1, num_classes, num_convs=2))
if channels_last == "1":
    model = model.to(memory_format=torch.channels_last)
if precision == "bfloat16":
    # As setdet's Float32GroupNorm: normalise in float32 (torch 1.13 rejects bfloat16 input with
    # float32 weights), and hand the losses float32 head outputs.
    def group_norm_float32(self, x):
        return nn.functional.group_norm(x.float(), self.num_groups, self.weight, self.bias,
                                        self.eps)
    nn.GroupNorm.forward = group_norm_float32
    head_forward = model.head.forward
    model.head.forward = lambda x: {k: v.float() for k, v in head_forward(x).items()}
model.train()
decay = [p for p in model.parameters() if p.ndim > 1]
no_decay = [p for p in model.parameters() if p.ndim <= 1]
opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                         {"params": no_decay, "weight_decay": 0.0}], lr=1e-3)

ann = json.load(open(f"{data}/annotations/instances_train.json"))
by_image = {}
for a in ann["annotations"]:
    by_image.setdefault(a["image_id"], []).append(a)
images = []
for im in ann["images"]:
    objs = by_image.get(im["id"], [])
    boxes = torch.tensor([[o["bbox"][0], o["bbox"][1], o["bbox"][0] + o["bbox"][2],
                           o["bbox"][1] + o["bbox"][3]] for o in objs],
                         dtype=torch.float32).reshape(-1, 4)
    labels = torch.tensor([o["category_id"] - 1 for o in objs], dtype=torch.int64)
    images.append((read_image(f"{data}/train/{im['file_name']}"), boxes, labels))

times = []
order = []
for it in range(iters):
    if len(order) < batch:
        order = list(range(len(images)))
        random.shuffle(order)
    chosen, order = order[:batch], order[batch:]
    start = time.perf_counter()
    imgs, targets = [], []
    for i in chosen:
        img, boxes, labels = images[i]
        img = img.float() / 255
        if random.random() < 0.5:
            w = img.shape[-1]
            img = img.flip(-1)
            boxes = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], 1)
        imgs.append(img)
        targets.append({"boxes": boxes, "labels": labels})
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
        losses = model(imgs, targets)
    loss = sum(losses.values())
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 35)
    opt.step()
    if it >= warmup:
        times.append(time.perf_counter() - start)
print(json.dumps({"median": statistics.median(times),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                  "torch": torch.__version__, "torchvision": torchvision.__version__}))
"""


def run_torchvision(data, iters, batch, threads, warmup, channels_last, precision):
    proc = subprocess.run([sys.executable, "-c", TORCHVISION_CHILD, data, str(iters), str(batch),
                           str(threads), str(warmup), "1" if channels_last else "0",
                           str(NUM_CLASSES), precision], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"bench_train: torchvision ({precision}, channels_last={channels_last}) failed:\n"
                 f"{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--iters", type=int, default=24, help="iterations per side")
    parser.add_argument("--warmup", type=int, default=4, help="iterations not timed")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--keep", help="work directory to keep (default: a temporary one)")
    args = parser.parse_args()
    if args.iters <= args.warmup:
        sys.exit("bench_train: --iters must exceed --warmup")

    work = args.keep or tempfile.mkdtemp(prefix="setdet_bench_train_")
    os.makedirs(work, exist_ok=True)
    results = {}
    try:
        data = make_data(work, max(64, 2 * args.batch))
        for precision in PRECISIONS:
            ours = run_setdet(work, data, args.iters, args.batch, args.threads, args.warmup,
                              precision)
            peers = [(f"torchvision FCOS, {layout}",
                      run_torchvision(data, args.iters, args.batch, args.threads, args.warmup,
                                      layout == "channels_last", precision))
                     for layout in ("NCHW", "channels_last")]
            results[precision] = (ours, peers)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    versions = results[PRECISIONS[0]][1][0][1]
    print(f"FCOS training throughput, half-width ResNet-18 + FPN 64 + 2x64 GN head, 256 px, "
          f"batch {args.batch}, {args.threads} threads, median of {args.iters - args.warmup} "
          f"iterations (torch {versions['torch']}, torchvision {versions['torchvision']}); CPU "
          f"bfloat16 {'native (amx_bf16 / avx512_bf16)' if native_bfloat16() else 'EMULATED'}")
    print()
    print("| precision | trainer | s / iteration | images/s | setdet speed-up | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|")
    for precision, ((ours, ours_rss), peers) in results.items():
        print(f"| {precision} | setdet train (channels_last, threaded loader) | {ours:.3f} | "
              f"{args.batch / ours:.1f} | 1.00x | {ours_rss:.0f} |")
        for name, r in peers:
            print(f"| {precision} | {name} | {r['median']:.3f} | {args.batch / r['median']:.1f} | "
                  f"{r['median'] / ours:.2f}x | {r['rss_mib']:.0f} |")
    print()
    for precision, ((ours, _), peers) in results.items():
        best = min(r["median"] for _, r in peers)
        print(f"{precision}: setdet vs the faster torchvision variant: {best / ours:.2f}x "
              f"(goal >= {GOAL}x)")


if __name__ == "__main__":
    main()
