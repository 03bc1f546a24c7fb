"""Prints the golden values of tests/lib/test_roi_extractors.cpp (paste them there).

References: torchvision.ops.MultiScaleRoIAlign of torchvision 0.14.1, and MMDetection's
SingleRoIExtractor rebuilt from its definition (mmdet 2.x / 3.x map_roi_levels: level =
floor(log2(sqrt(area) / finest_scale + 1e-6)) clamped to [0, L - 1], pooled with mmcv's
RoIAlign(sampling_ratio=0, aligned=True), which computes what torchvision.ops.roi_align(...,
aligned=True) computes).

Inputs (rebuilt identically by the C++ test): 2 images of at most 200 x 304 px; maps P2..P6 of
3 channels, sizes 50x76, 25x38, 13x19, 7x10, 4x5, level l holding
sin(0.37 x + 0.21 y + 1.3 c + 0.5 n + 0.7 l) (float64, cast to float32); the boxes below.
Per RoI k and channel c the test compares sum(out[k, c]) and sum((1 + i * W + j) * out[k, c, i, j]).

Run: /usr/bin/python3 tests/python/gen_roi_extractor_goldens.py
"""
from collections import OrderedDict

import torch
import torchvision

MAP_SIZES = ((50, 76), (25, 38), (13, 19), (7, 10), (4, 5))
IMAGE_SHAPES = [(200, 304), (190, 300)]
BOXES = [
    torch.tensor([[10.0, 12.0, 30.0, 40.0], [0.0, 0.0, 112.0, 112.0], [50.0, 40.0, 106.0, 96.0],
                  [20.0, 30.0, 244.0, 254.0], [0.0, 0.0, 304.0, 200.0],
                  [-20.0, -30.0, 460.0, 420.0], [100.0, 100.0, 100.5, 100.5]]),
    torch.tensor([[5.0, 5.0, 6.0, 6.0], [150.0, 80.0, 290.0, 185.0],
                  [-50.0, -50.0, -10.0, -10.0], [0.0, 0.0, 1000.0, 800.0],
                  [30.0, 40.0, 141.9, 151.9]]),
]


def feature_maps(batch=2, channels=3):
    maps = []
    for level, (h, w) in enumerate(MAP_SIZES):
        n = torch.arange(batch, dtype=torch.float64).view(-1, 1, 1, 1)
        c = torch.arange(channels, dtype=torch.float64).view(1, -1, 1, 1)
        y = torch.arange(h, dtype=torch.float64).view(1, 1, -1, 1)
        x = torch.arange(w, dtype=torch.float64).view(1, 1, 1, -1)
        maps.append(torch.sin(0.37 * x + 0.21 * y + 1.3 * c + 0.5 * n + 0.7 * level).float())
    return maps


def rois_of(boxes):
    return torch.cat([torch.cat([torch.full((len(b), 1), float(i)), b], 1)
                      for i, b in enumerate(boxes)])


def checksums(out):
    k, c, h, w = out.shape
    weight = (1 + torch.arange(h * w, dtype=torch.float64)).view(h, w)
    out = out.double()
    return out.sum((2, 3)).flatten(), (out * weight).sum((2, 3)).flatten()


def mmdet_single_roi_extractor(maps, rois, strides, finest_scale=56.0, output_size=7):
    scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
    levels = torch.floor(torch.log2(scale / finest_scale + 1e-6)).clamp(0, len(strides) - 1).long()
    out = maps[0].new_zeros((rois.shape[0], maps[0].shape[1], output_size, output_size))
    for level, stride in enumerate(strides):
        idx = torch.where(levels == level)[0]
        if idx.numel() > 0:
            out[idx] = torchvision.ops.roi_align(maps[level], rois[idx], output_size, 1.0 / stride,
                                                 0, True)
    return levels, out


def print_array(name, values, fmt, ctype="double"):
    items = [fmt(v) for v in values.tolist()]
    lines, line = [], "   "
    for item in items:
        if len(line) + len(item) + 2 > 98:
            lines.append(line)
            line = "   "
        line += " " + item + ","
    lines.append(line)
    print(f"const std::vector<{ctype}> {name} = {{")
    print("\n".join(lines))
    print("};")


def main():
    maps = feature_maps()
    named = OrderedDict((str(i), m) for i, m in enumerate(maps))
    rois = rois_of(BOXES)

    tv = torchvision.ops.MultiScaleRoIAlign(["0", "1", "2", "3"], 7, 2)
    out = tv(named, BOXES, IMAGE_SHAPES)
    levels = tv.map_levels(BOXES)
    print("// torchvision 0.14.1 MultiScaleRoIAlign(['0', '1', '2', '3'], 7, 2)")
    print_array("kTorchvisionLevels", levels, str, "int64_t")
    s, ws = checksums(out)
    print_array("kTorchvisionSums", s, lambda v: f"{v:.9g}")
    print_array("kTorchvisionWeightedSums", ws, lambda v: f"{v:.9g}")

    single = torchvision.ops.MultiScaleRoIAlign(["0"], (5, 3), 1)
    s, ws = checksums(single(named, BOXES, IMAGE_SHAPES))
    print("// torchvision 0.14.1 MultiScaleRoIAlign(['0'], (5, 3), 1)")
    print_array("kSingleLevelSums", s, lambda v: f"{v:.9g}")
    print_array("kSingleLevelWeightedSums", ws, lambda v: f"{v:.9g}")

    levels, out = mmdet_single_roi_extractor(maps, rois, (4, 8, 16, 32))
    print("// MMDetection SingleRoIExtractor(RoIAlign(7, sampling_ratio=0, aligned=True),")
    print("// featmap_strides=[4, 8, 16, 32], finest_scale=56), rebuilt as described in the script")
    print_array("kMmdetLevels", levels, str, "int64_t")
    s, ws = checksums(out)
    print_array("kMmdetSums", s, lambda v: f"{v:.9g}")
    print_array("kMmdetWeightedSums", ws, lambda v: f"{v:.9g}")


if __name__ == "__main__":
    main()
