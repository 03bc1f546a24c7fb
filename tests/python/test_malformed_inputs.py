"""Hostile and malformed input through every subcommand of the CLI: each case must end with a
non-zero exit (no signal, no crash or abort text), a message naming the file / key / argument and
the bad value, and no output file left behind (nor a temporary one).

The inputs are made here: configs, COCO JSON, images with doctored headers, and `.pth` archives
whose pickles are written byte by byte (1,000,000 nested lists, code-execution globals, tensors
of 2^40 elements, ...). One tiny FCOS is trained for one iteration to have a checkpoint."""
import os
import shutil
import struct
import tempfile
import unittest
import zipfile
import zlib

from cli_testing import TINY_FCOS, make_tiny_setup, run_setdet

WORK = tempfile.mkdtemp(prefix="setdet_malformed_")
DATA = os.path.join(WORK, "data")
CKPT = os.path.join(WORK, "trained", "latest.pt")
MARKER = os.path.join(WORK, "pwned")  # a code-execution payload would create it


def path(*parts):
    return os.path.join(WORK, *parts)


def write(name, content):
    p = path(name)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb" if isinstance(content, bytes) else "w") as f:
        f.write(content)
    return p


run = run_setdet




def config(name, text="", base="tiny.yaml"):
    """A config file inheriting the tiny FCOS, with `text` merged over it."""
    return write(name, f"_base_: {base}\n{text}")


# ---- pickle and zip bytes, written by hand ----

def p_str(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def p_int(v):
    return b"\x8a\x08" + struct.pack("<q", v)  # LONG1, 8 bytes


def p_global(module, name):
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def p_tensor(numel, offset, sizes, strides):
    """torch._utils._rebuild_tensor_v2(storage 'data/0' of `numel` floats, offset, sizes, ...)."""
    storage = (b"(" + p_str("storage") + p_global("torch", "FloatStorage") + p_str("0") +
               p_str("cpu") + p_int(numel) + b"tQ")
    return (p_global("torch._utils", "_rebuild_tensor_v2") + b"(" + storage + p_int(offset) +
            b"(" + b"".join(p_int(s) for s in sizes) + b"t(" +
            b"".join(p_int(s) for s in strides) + b"t\x89" +
            p_global("collections", "OrderedDict") + b")RtR")


def state_dict_pickle(entries):
    """{'state_dict': {name: value_bytes, ...}} at protocol 2."""
    inner = b"}(" + b"".join(p_str(k) + v for k, v in entries) + b"u"
    return b"\x80\x02}" + p_str("state_dict") + inner + b"s."


def pth(name, pickle_bytes, storage=struct.pack("<6f", 0, 1, 2, 3, 4, 5)):
    p = path(name)
    with zipfile.ZipFile(p, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle_bytes)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/data/0", storage)
        z.writestr("archive/version", "3\n")
    return p


def patched(name, source, offset_of, new_bytes):
    with open(source, "rb") as f:
        data = bytearray(f.read())
    at = offset_of(bytes(data))
    data[at:at + len(new_bytes)] = new_bytes
    return write(name, bytes(data))


def png_bytes(width, height):
    raw = b"".join(b"\x00" + b"\x80\x40\x20" * width for _ in range(height))

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0,
                                                              0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def huge_png():
    b = bytearray(png_bytes(8, 8))
    b[16:24] = struct.pack(">II", 100000, 100000)
    return bytes(b)


def alias_bomb(levels=9, width=9):
    lines = ["a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for k in range(1, levels + 1):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * width) + "]")
    return "\n".join(lines) + "\n"


def coco_gt(annotations=None, images=None):
    import json
    images = images if images is not None else [{"id": 1, "file_name": "a.jpg", "width": 64,
                                                 "height": 64}]
    annotations = annotations if annotations is not None else [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "area": 100,
         "iscrowd": 0}]
    return json.dumps({"images": images, "annotations": annotations,
                       "categories": [{"id": 1, "name": "thing"}]})


def make_inputs():
    make_tiny_setup(WORK)
    r = run("train", path("tiny.yaml"), "--work-dir", path("trained"))
    assert r.returncode == 0, r.stderr
    os.makedirs(path("out"), exist_ok=True)
    os.makedirs(path("a_directory"), exist_ok=True)
    # the data with one training image replaced by a PNG header declaring 100000 x 100000 px
    shutil.copytree(DATA, path("data_huge"))
    write("data_huge/train/000002.jpg", huge_png())
    write("huge_data.yaml", TINY_FCOS.format(data=path("data_huge")))
    # the trained checkpoint (a TorchScript archive) with a hostile data.pkl, and with a flipped
    # byte in a storage (LibTorch itself checks neither)
    with zipfile.ZipFile(CKPT) as zin, zipfile.ZipFile(path("deep.pt"), "w") as zout:
        for name in zin.namelist():
            hostile = b"\x80\x02" + b"(" * 1000000 + b"]" + b"l" * 1000000 + b"."
            zout.writestr(name, hostile if name.endswith("/data.pkl") else zin.read(name))
    with zipfile.ZipFile(CKPT) as z:
        first_storage = z.read("archive/data/0")
    patched("crc.pt", CKPT, lambda b: b.index(first_storage) + 3, b"\x7f")


# ---- the cases: (name, args, fragments the message must hold, outputs that must not exist) ----

def out(name):
    return path("out", name)


def cases():
    G = os.path.join(DATA, "annotations", "instances_val.json")
    VAL0 = os.path.join(DATA, "val", "000000.jpg")
    tiny = path("tiny.yaml")
    c = []

    def add(name, args, fragments, outputs=()):
        c.append((name, list(args), list(fragments), list(outputs)))

    def train(name, cfg, fragments, *extra):
        work = out("work_" + name)
        add(name, ["train", cfg, "--work-dir", work, *extra], fragments,
            [os.path.join(work, "latest.pt"), os.path.join(work, "metrics.json")])

    def infer(name, args, fragments, config=tiny, checkpoint=CKPT):
        o = out(name + ".json")
        add(name, ["infer", "--config", config, "--checkpoint", checkpoint, "--json", o, *args],
            fragments, [o])

    def inspect(name, file, fragments):
        o = out(name + ".json")
        add(name, ["inspect-weights", file, "--json", o], [file, *fragments], [o])

    # -- the command line --
    add("unknown_subcommand", ["frobnicate"], ["unknown subcommand 'frobnicate'",
                                               "known: bench, bench-allreduce, convert, data, dedup"])
    add("threads_negative", ["--threads", "-4", "data", "synth", "--out", out("t")],
        ["--threads", "-4"], [out("t")])
    add("threads_text", ["--threads", "many", "data", "synth", "--out", out("t2")],
        ["--threads", "many"], [out("t2")])
    infer("infer_score_thr_nan", ["--score-thr", "nan", VAL0],
          ["--score-thr: expected a finite number, got 'nan'"])
    infer("infer_score_thr_inf", ["--score-thr", "inf", VAL0],
          ["--score-thr: expected a finite number, got 'inf'"])
    infer("infer_score_thr_range", ["--score-thr", "1.5", VAL0], ["--score-thr", "1.5"])
    infer("infer_missing_image", [path("none.jpg")], ["images", path("none.jpg")])
    for opt, value in (("--iou-thr", "nan"), ("--score-thr", "-inf"), ("--sigma", "NaN"),
                       ("--min-score", "inf"), ("--weights", "1,nan")):
        o = out("dedup" + opt + ".json")
        add("dedup" + opt.replace("-", "_"),
            ["dedup", "--dt", write("dt_ok.json", "[]"), "--method", "wbf", "--gt", G, "--out",
             o, opt, value], [f"{opt}: expected a finite number, got '{value.split(',')[-1]}'"],
            [o])
    o = out("eval_iou.json")
    add("eval_iou_thrs_inf", ["eval", "--gt", G, "--dt", write("dt_ok.json", "[]"), "--json", o,
                              "--iou-thrs", "0.5,inf"],
        ["--iou-thrs: expected a finite number, got 'inf'"], [o])
    add("eval_iou_thrs_range", ["eval", "--gt", G, "--dt", path("dt_ok.json"), "--json", o,
                                "--iou-thrs", "1.5"], ["--iou-thrs", "1.5"], [o])
    add("eval_max_dets_zero", ["eval", "--gt", G, "--dt", path("dt_ok.json"), "--json", o,
                               "--max-dets", "0"], ["--max-dets", "0"], [o])
    add("eval_area_range_reversed", ["eval", "--gt", G, "--dt", path("dt_ok.json"), "--json", o,
                                     "--area-rngs", "small=5:1"], ["--area-rngs", "small=5:1"],
        [o])
    add("eval_unknown_category", ["eval", "--gt", G, "--dt", path("dt_ok.json"), "--json", o,
                                  "--cat-ids", "999"], ["--cat-ids", "999"], [o])
    add("synth_size_huge", ["data", "synth", "--out", out("synth1"), "--size", "100000"],
        ["--size", "100000"], [out("synth1")])
    add("synth_negative_count", ["data", "synth", "--out", out("synth2"), "--num-train", "-5"],
        ["--num-train", "-5"], [out("synth2")])
    add("bench_bad_mode", ["bench", "--config", tiny, "--mode", "warp"], ["--mode", "warp"])
    add("train_missing_config", ["train", path("nothing.yaml")], ["config", path("nothing.yaml")])

    # -- configs: (case, file, YAML merged over tiny.yaml, fragments of the message) --
    for name, file, text, fragments in [
        ("lr_inf", "lr_inf.yaml", "optimizer: {lr: .inf}",
         ["optimizer.lr: expected a finite number, got '.inf'"]),
        ("lr_nan", "lr_nan.yaml", "optimizer: {lr: .nan}",
         ["optimizer.lr: expected a finite number, got '.nan'"]),
        ("lr_negative", "lr_neg.yaml", "optimizer: {lr: -0.1}",
         ["optimizer.lr: expected > 0, got -0.1"]),
        ("lr_list", "lr_list.yaml", "optimizer: {lr: [1, 2]}",
         ["lr_list.yaml: optimizer.lr: expected a number, got a list [1, 2]"]),
        ("lr_map", "lr_map.yaml", "optimizer: {lr: {a: 1}}",
         ["optimizer.lr: expected a number, got a map {a: 1}"]),
        ("betas_nan", "betas.yaml", "optimizer: {type: AdamW, lr: 0.001, betas: [0.9, .nan]}",
         ["optimizer.betas: expected a finite number, got a list [0.9, .nan]"]),
        ("max_seconds_nan", "maxsec.yaml", "runner: {max_seconds: .nan}",
         ["runner.max_seconds: expected a finite number, got '.nan'"]),
        ("max_iters_negative", "maxit.yaml", "runner: {max_iters: -3}",
         ["runner.max_iters: expected >= 0, got -3"]),
        ("nonfinite_mode", "nf.yaml", "runner: {nonfinite: ignore}",
         ["runner.nonfinite: expected 'stop' or 'skip', got 'ignore'"]),
        ("grad_clip_inf", "clip.yaml", "grad_clip: {max_norm: .inf}",
         ["grad_clip.max_norm: expected a finite number, got '.inf'"]),
        ("warmup_ratio_nan", "warm.yaml", "lr_schedule: {type: Constant, warmup_iters: 2, warmup_ratio: .nan}",
         ["lr_schedule.warmup_ratio: expected a finite number, got '.nan'"]),
        ("num_workers_negative", "nw.yaml", "data: {train: {num_workers: -1}}",
         ["data.train.num_workers: expected an integer >= 0, got -1"]),
        ("batch_size_zero", "bs.yaml", "data: {train: {batch_size: 0}}",
         ["data.train.batch_size: expected an integer >= 1, got 0"]),
        ("resize_huge", "resize.yaml", "data: {train: {dataset: {pipeline: [{type: Resize, scale: [100000, 100000]}]}}}",
         ["data.train.dataset.pipeline[0].scale: expected sizes of at most 32768 px", "got '[100000, 100000]'"]),
        ("flip_prob", "flip.yaml", "data: {train: {dataset: {pipeline: [{type: RandomFlip, prob: 1.5}]}}}",
         ["pipeline[0].prob: expected a probability in [0, 1], got 1.5"]),
        ("normalize_std_zero", "std.yaml", "data: {train: {dataset: {pipeline: [{type: Normalize, mean: [0, 0, 0], std: [0, 1, 1]}]}}}",
         ["pipeline[0].std: expected positive values"]),
        ("alias_cycle", "cycle.yaml", "x: &x [1, *x]",
         ["cycle.yaml: the config expands to more than 100000 YAML nodes"]),
        ("loss_weight_negative", "lw.yaml", "model: {loss_cls: {type: FocalLoss, loss_weight: -1}}",
         ["model.loss_cls.loss_weight: expected >= 0, got -1"]),
        ("focal_alpha", "alpha.yaml", "model: {loss_cls: {type: FocalLoss, alpha: 2}}",
         ["model.loss_cls.alpha: expected a value in [0, 1]", "got 2"]),
    ]:
        train(name, config(file, text), fragments)
    train("base_is_map", write("base_map.yaml", "_base_: {file: tiny.yaml}\n"),
          ["base_map.yaml: _base_: expected a file name or a list of file names, got a map "
           "{file: tiny.yaml}"])
    train("base_is_directory", write("base_dir.yaml", "_base_: a_directory\n"),
          ["base_dir.yaml: _base_: 'a_directory'", "is a directory, expected a YAML file"])
    train("base_missing", write("base_missing.yaml", "_base_: [tiny.yaml, gone.yaml]\n"),
          ["base_missing.yaml: _base_: 'gone.yaml': file not found"])
    write("cycle_a.yaml", "_base_: cycle_b.yaml\n")
    train("base_cycle", write("cycle_b.yaml", "_base_: cycle_a.yaml\n"),
          ["_base_ inheritance cycle"])
    write("bomb.yaml", alias_bomb())
    train("alias_bomb_as_base", config("bomb_child.yaml", "", base="bomb.yaml"),
          ["bomb.yaml: the config expands to more than 100000 YAML nodes"])
    train("alias_bomb_with_base", config("bomb_over.yaml", alias_bomb()),
          ["bomb_over.yaml: the config expands to more than 100000 YAML nodes"])
    train("sequence_key", config("seqkey.yaml", "model:\n  ? [a, b]\n  : 1\n"),
          ["seqkey.yaml: a key under 'model' is a list [a, b], expected a string"])
    train("invalid_yaml", write("broken.yaml", "model: [\n"), ["broken.yaml: invalid YAML"])
    train("top_level_list", write("list.yaml", "- 1\n- 2\n"),
          ["list.yaml: a config must be a YAML map at the top level, got a list [1, 2]"])
    train("unknown_key", config("unknown.yaml", "model: {head: {colour: red}}"),
          ["unknown key 'model.head.colour'"])
    train("deep_yaml", write("deep.yaml", "a: " + "[" * 600 + "]" * 600 + "\n"),
          ["deep.yaml: invalid YAML: nested more than"])
    train("set_alias_bomb", tiny,
          ["--set 'data.train.x=", "expands to more than 100000 YAML nodes"], "--set",
          "data.train.x={" + ", ".join(
              f"a{k}: &a{k} [" + ", ".join(["1" if k == 0 else f"*a{k - 1}"] * 10) + "]"
              for k in range(6)) + "}")
    train("set_without_value", tiny, ["--set 'runner.max_iters': expected key.path=value"],
          "--set", "runner.max_iters")
    train("num_workers_is_text", config("nwt.yaml", "data: {train: {num_workers: lots}}"),
          ["data.train.num_workers: expected an integer, got 'lots'"])
    infer("test_time_resize_huge", ["--set", "data.val.dataset.pipeline=[{type: Resize, scale: "
                                    "[100000, 100000]}]", VAL0],
          ["data.val.dataset.pipeline[0].scale: expected sizes of at most 32768 px"])

    # -- .pth files --
    valid = pth("valid.pth", state_dict_pickle([("w", p_tensor(6, 0, [2, 3], [3, 1]))]))
    inspect("pth_not_zip", write("text.pth", "just text\n"), ["not a zip archive"])
    inspect("pth_empty", write("empty.pth", b""), ["not a zip archive (0 bytes"])
    with open(valid, "rb") as f:
        whole = f.read()
    inspect("pth_truncated", write("truncated.pth", whole[:len(whole) // 2]),
            ["truncated zip archive"])
    six_floats = struct.pack("<6f", 0, 1, 2, 3, 4, 5)
    inspect("pth_crc_mismatch",
            patched("crc.pth", valid, lambda b: b.index(six_floats) + 4, b"\x00\x00\x00\x40"),
            ["record 'archive/data/0' is corrupt: its bytes have CRC-32 0x",
             "the archive declares 0x"])
    # the central directory entry of archive/data/0: its compressed and uncompressed sizes
    sizes_of_data_0 = lambda b: b.rindex(b"PK\x01\x02", 0, b.rindex(b"archive/data/0")) + 20
    inspect("pth_record_larger_than_file",
            patched("bigrecord.pth", valid, sizes_of_data_0, b"\xf0\xff\xff\x7f" * 2),
            ["record 'archive/data/0' declares 2147483632 bytes", "truncated?"])
    inspect("pth_nested_lists", pth("lists.pth", b"\x80\x02" + b"(" * 1000000 + b"]" +
                                    b"l" * 1000000 + b"."),
            ["data.pkl: objects nested more than 1000 levels deep at byte"])
    inspect("pth_nested_tuples", pth("tuples.pth", b"\x80\x02)" + b"\x85" * 1000000 + b"."),
            ["data.pkl: objects nested more than 1000 levels deep at byte"])
    inspect("pth_deep_dict_key", pth("deepkey.pth", b"\x80\x02})" + b"\x85" * 200000 +
                                     b"K\x01s."),
            ["objects nested more than 1000 levels deep"])
    touch = p_str(f"touch {MARKER}")
    payloads = {
        "os_system": p_global("os", "system") + b"(" + touch + b"tR",
        "posix_system": p_global("posix", "system") + b"(" + touch + b"tR",
        "eval": p_global("builtins", "eval") + b"(" + p_str(f"open('{MARKER}', 'w')") + b"tR",
        "exec": p_global("builtins", "exec") + b"(" + p_str(f"open('{MARKER}', 'w')") + b"tR",
        "getattr_chain": (p_global("builtins", "getattr") + b"(" +
                          p_global("builtins", "__import__") + b"(" + p_str("os") + b"tR" +
                          p_str("system") + b"tR(" + touch + b"tR"),
        "subprocess": p_global("subprocess", "Popen") + b"((" + p_str("touch") + p_str(MARKER) +
                      b"ltR",
    }
    for name, value in payloads.items():
        inspect("pth_payload_" + name, pth(name + ".pth", state_dict_pickle(
            [("w", p_tensor(6, 0, [6], [1])), ("x", value)])),
            ["entry 'x' of the top-level dict's 'state_dict' entry is a", "object (unsupported "
             "global", "expected a tensor"])
    inspect("pth_stride0_2pow40", pth("stride0.pth", state_dict_pickle(
        [("big", p_tensor(6, 0, [1 << 40], [0]))])),
        ["tensor 'big': size [1099511627776] holds 1099511627776 elements, more than the 6 of "
         "its storage data/0"])
    inspect("pth_negative_shape", pth("negative.pth", state_dict_pickle(
        [("neg", p_tensor(6, 0, [3, -2], [2, 1]))])),
        ["tensor 'neg': size [3, -2] has the negative dimension -2"])
    inspect("pth_shape_overflow", pth("overflow.pth", state_dict_pickle(
        [("ovf", p_tensor(6, 0, [1 << 62, 4], [4, 1]))])),
        ["tensor 'ovf': size [4611686018427387904, 4] holds more than 2^63 elements"])
    inspect("pth_stride_overflow", pth("strideovf.pth", state_dict_pickle(
        [("s", p_tensor(6, 5, [2], [(1 << 63) - 1]))])),
        ["tensor 's': a view at offset 5 with size [2] and stride [9223372036854775807] "
         "overflows 64-bit element indices"])
    inspect("pth_view_past_storage", pth("past.pth", state_dict_pickle(
        [("p", p_tensor(6, 3, [2, 2], [2, 1]))])),
        ["tensor 'p': a view at offset 3 with size [2, 2] and stride [2, 1] reaches element 6 "
         "of storage data/0, which holds 6"])
    inspect("pth_truncated_storage", pth("shortstore.pth", state_dict_pickle(
        [("t", p_tensor(6, 0, [6], [1]))]), storage=b"\x00" * 10),
        ["tensor 't': truncated storage data/0: it holds 10 bytes, the pickle declares 6 elements"])
    inspect("pth_bad_opcode", pth("opcode.pth", b"\x80\x02}(i"),
            ["data.pkl: unsupported pickle opcode 0x69 ('i') at byte 4"])
    o = out("converted.pt")
    add("convert_bad_pth", ["convert", "--config", tiny, path("crc.pth"), o],
        [path("crc.pth"), "is corrupt"], [o])
    infer("infer_bad_checkpoint", [VAL0], [path("stride0.pth"), "tensor 'big'"],
          checkpoint=path("stride0.pth"))
    o = out("test_dets.json")
    add("test_bad_checkpoint", ["test", tiny, path("lists.pth"), "--out", o],
        [path("lists.pth"), "nested more than 1000 levels"], [o])

    inspect("pt_deep_nesting", path("deep.pt"),
            ["data.pkl: objects nested more than 1000 levels deep"])
    inspect("pt_crc_mismatch", path("crc.pt"), ["record 'archive/data/0' is corrupt"])
    infer("infer_pt_crc_mismatch", [VAL0], [path("crc.pt"), "record 'archive/data/0' is corrupt"],
          checkpoint=path("crc.pt"))
    train("resume_from_deep_pt", tiny, [path("deep.pt"), "nested more than 1000 levels"],
          "--resume-from", path("deep.pt"))

    # -- images --
    infer("image_header_huge", [write("huge.png", huge_png())],
          [path("huge.png") + ": the PNG header declares 100000 x 100000 px; setdet decodes "
                              "images of at most 32768 px a side"])
    infer("image_not_an_image", [write("text.jpg", "<html></html>")],
          [path("text.jpg") + ": cannot decode image: not a JPEG, PNG, BMP, PNM, WebP or TIFF "
                              "file (bytes 3c 68 74 6d 6c 3e 3c 2f)"])
    infer("image_empty", [write("empty.jpg", b"")],
          [path("empty.jpg") + ": cannot decode image", "the file is empty"])
    infer("image_truncated_png", [write("cut.png", png_bytes(8, 8)[:20])],
          [path("cut.png") + ": cannot decode image: truncated PNG header (20 bytes)"])
    infer("image_corrupt_png_data", [write("corrupt.png", png_bytes(8, 8)[:40] + b"\x00" * 60)],
          [path("corrupt.png") + ": cannot decode image: the PNG data is corrupt or truncated"])
    train("train_image_header_huge", path("huge_data.yaml"),
          [path("data_huge", "train", "000002.jpg") + ": the PNG header declares 100000 x "
                                                      "100000 px"])

    # -- COCO JSON --
    o = out("eval.json")
    add("gt_not_json", ["eval", "--gt", write("gt_bad.json", "{not json"), "--dt",
                        path("dt_ok.json"), "--json", o], [path("gt_bad.json"), "invalid JSON"],
        [o])
    add("gt_negative_width", ["eval", "--gt", write("gt_neg.json", coco_gt(annotations=[
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, -3, 4], "area": 1}])), "--dt",
        path("dt_ok.json"), "--json", o],
        [path("gt_neg.json") + ": annotations[0].bbox[2]: width must be >= 0, got -3"], [o])
    add("gt_duplicate_image_ids", ["eval", "--gt", write("gt_dup.json", coco_gt(images=[
        {"id": 1, "file_name": "a.jpg"}, {"id": 1, "file_name": "b.jpg"}])), "--dt",
        path("dt_ok.json"), "--json", o], [path("gt_dup.json"), "1"], [o])
    add("dt_nan_score", ["eval", "--gt", G, "--dt", write("dt_nan.json",
                                                          '[{"image_id": 1, "category_id": 1, '
                                                          '"bbox": [0, 0, 1, 1], "score": NaN}]'),
                         "--json", o], [path("dt_nan.json"), "[0].score", "NaN"], [o])
    add("dt_unknown_image", ["eval", "--gt", G, "--dt", write("dt_img.json",
                                                              '[{"image_id": 999, "category_id": 1, '
                                                              '"bbox": [0, 0, 1, 1], "score": 0.5}]'),
                             "--json", o], [path("dt_img.json"), "[0].image_id", "999"], [o])
    o2 = out("dedup.json")
    add("dedup_dt_not_list", ["dedup", "--dt", write("dt_obj.json", '{"a": 1}'), "--method",
                              "nms", "--out", o2], [path("dt_obj.json"), "expected an array"],
        [o2])
    add("dedup_wbf_without_gt", ["dedup", "--dt", path("dt_ok.json"), "--method", "wbf",
                                 "--out", o2], ["--gt"], [o2])
    train("train_ann_file_missing", config("noann.yaml",
                                           "data: {train: {dataset: {ann_file: gone.json}}}"),
          ["gone.json"])
    return c


def setUpModule():
    make_inputs()


def tearDownModule():
    shutil.rmtree(WORK, ignore_errors=True)


class MalformedInputTest(unittest.TestCase):
    def check(self, name, args, fragments, outputs):
        r = run(*args)
        where = f"{name}: setdet {' '.join(a[:80] for a in args)}\nstderr: {r.stderr[-2000:]}"
        self.assertGreaterEqual(r.returncode, 0, f"killed by signal {-r.returncode}: {where}")
        self.assertNotEqual(r.returncode, 0, where)
        for bad in ("terminate called", "Segmentation fault", "Aborted", "Traceback",
                    "AddressSanitizer", "bad conversion"):
            self.assertNotIn(bad, r.stderr, where)
        for fragment in fragments:
            self.assertIn(fragment, r.stderr, where)
        for o in outputs:
            self.assertFalse(os.path.exists(o), f"{name}: {o} was written")
        leftovers = [f for f in os.listdir(path("out")) if ".tmp." in f]
        self.assertEqual(leftovers, [], f"{name}: temporary files left behind")
        self.assertFalse(os.path.exists(MARKER), f"{name}: a payload was executed")


def _make_test(case):
    def test(self):
        self.check(*case)
    return test


# Built at import (writing the hand-made files under WORK) so that unittest sees one test per
# case; the synthetic data and the checkpoint they refer to are made in setUpModule.
CASES = cases()
for _case in CASES:
    setattr(MalformedInputTest, "test_" + _case[0], _make_test(_case))


class MatrixSizeTest(unittest.TestCase):
    def test_at_least_sixty_cases_over_every_subcommand(self):
        self.assertGreaterEqual(len(CASES), 60)
        self.assertEqual(len({name for name, _, _, _ in CASES}), len(CASES))
        used = {args[0] for _, args, _, _ in CASES}
        for sub in ("train", "test", "infer", "eval", "dedup", "convert", "inspect-weights",
                    "data", "bench"):
            self.assertIn(sub, used)


if __name__ == "__main__":
    unittest.main()
