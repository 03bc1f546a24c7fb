"""PyTorch state_dicts (.pth written by torch.save) read by setdet without Python: every tensor
must come out with the same name, order, dtype, shape and bytes (CRC-32 as zlib.crc32) as PyTorch
has it, through `setdet inspect-weights`; imported into the demo FCOS with checkpoint_import rules
(`convert`, `infer`, `test`); and every broken file must give an error naming the file."""
import collections
import json
import os
import shutil
import tempfile
import unittest
import zlib

import torch

from setdet_testing import run_cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_CONFIG = os.path.join(ROOT, "configs", "fcos", "fcos_r18h_fpn64_256_demo.yaml")


class Opaque:
    """A class the unpickler does not know: it must only fail where a tensor is expected."""

    def __init__(self):
        self.value = 3


def dtype_name(t):
    return str(t.dtype).replace("torch.", "")


def crc32(t):
    flat = t.detach().contiguous().reshape(-1)
    if flat.numel() == 0:
        return zlib.crc32(b"")
    return zlib.crc32(flat.view(torch.uint8).numpy().tobytes())


def small_module():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                            torch.nn.Flatten(), torch.nn.Linear(4, 2))
    m(torch.randn(2, 3, 3, 3))  # updates the BatchNorm statistics and num_batches_tracked
    return m


class Workspace(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="setdet_pth_")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def inspect(self, *args):
        out = self.path("inspect.json")
        r = run_cli("inspect-weights", *args, "--json", out)
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(out) as f:
            return json.load(f)

    def assert_entries_equal(self, entries, expected):
        """`entries` from inspect-weights against the name -> tensor mapping `expected`."""
        self.assertEqual([e["name"] for e in entries], list(expected))
        for e, (name, t) in zip(entries, expected.items()):
            with self.subTest(name=name):
                self.assertEqual(e["dtype"], dtype_name(t))
                self.assertEqual(e["shape"], list(t.shape))
                self.assertEqual(e["crc32"], crc32(t))
                self.assertAlmostEqual(e["sum"], float(t.detach().double().sum()),
                                       delta=1e-9 * (1 + float(t.detach().double().abs().sum())))

    def check_file(self, obj, expected, name, **save_kwargs):
        path = self.path(name)
        torch.save(obj, path, **save_kwargs)
        self.assert_entries_equal(self.inspect(path), expected)


class PthReadTest(Workspace):
    def test_plain_dict_every_dtype_zero_dim_and_empty(self):
        g = torch.Generator().manual_seed(1)
        sd = {
            "f32": torch.randn(3, 4, generator=g),
            "f64": torch.randn(5, generator=g, dtype=torch.float64),
            "f16": torch.randn(2, 3, generator=g).half(),
            "bf16": torch.randn(7, generator=g).bfloat16(),
            "i64": torch.randint(-2**40, 2**40, (4,), generator=g),
            "i32": torch.randint(-2**20, 2**20, (2, 2), generator=g, dtype=torch.int32),
            "i16": torch.tensor([-300, 300], dtype=torch.int16),
            "i8": torch.tensor([-128, 5, 127], dtype=torch.int8),
            "u8": torch.tensor([0, 200, 255], dtype=torch.uint8),
            "bool": torch.tensor([True, False, True]),
            "scalar": torch.tensor(3.25, dtype=torch.float64),
            "empty": torch.zeros(0, 3),
        }
        self.check_file(sd, sd, "plain.pth")

    def test_ordered_dict_of_a_module_with_metadata(self):
        sd = small_module().state_dict()
        self.assertIsInstance(sd, collections.OrderedDict)
        self.assertTrue(hasattr(sd, "_metadata"))
        self.assertIn("1.num_batches_tracked", sd)
        self.check_file(sd, sd, "module.pth")

    def test_views_sharing_one_storage_and_non_contiguous_tensors(self):
        base = torch.arange(24, dtype=torch.float32) * 1.5
        sd = collections.OrderedDict([
            ("slice", base[2:8].view(2, 3)),
            ("transposed", base.view(4, 6).t()),
            ("strided", base[1::5]),
            ("whole", base),
            ("element", base[7]),
            ("expanded_copy", base[:3].unsqueeze(0).expand(2, 3)),
        ])
        self.assertFalse(sd["transposed"].is_contiguous())
        self.check_file(sd, sd, "views.pth")

    def test_mmdetection_style_state_dict_entry_with_meta_and_optimizer(self):
        m = small_module()
        opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
        m(torch.randn(2, 3, 3, 3)).sum().backward()
        opt.step()
        ckpt = {
            "meta": {"mmdet_version": "2.28.2", "CLASSES": ("person", "car"), "epoch": 12,
                     "lr": 0.02, "big": 2**70, "negative": -123456789012, "blob": b"\x00\x01",
                     "tags": {"a", "b"}, "nothing": None, "flag": True, "obj": Opaque(),
                     "hook_msgs": {"last_ckpt": "work_dirs/epoch_12.pth"}},
            "state_dict": m.state_dict(),
            "optimizer": opt.state_dict(),
        }
        self.check_file(ckpt, m.state_dict(), "mmdet.pth")

    def test_detectron2_style_model_entry(self):
        m = small_module()
        ckpt = {"model": m.state_dict(), "scheduler": {"last_epoch": 90}, "iteration": 89999}
        self.check_file(ckpt, m.state_dict(), "d2.pth")

    def test_parameters_and_more_than_256_memo_entries(self):
        g = torch.Generator().manual_seed(2)
        sd = collections.OrderedDict(
            (f"layer{i}.weight", torch.nn.Parameter(torch.randn(2, i % 3 + 1, generator=g)))
            for i in range(300))
        self.check_file(sd, sd, "params.pth")

    def test_every_pickle_protocol_torch_save_accepts(self):
        sd = small_module().state_dict()
        for protocol in (1, 2, 3, 4, 5):
            with self.subTest(protocol=protocol):
                self.check_file(sd, sd, f"protocol{protocol}.pth", pickle_protocol=protocol)


class PthErrorTest(Workspace):
    def assert_fails_naming(self, path, *fragments, args=()):
        r = run_cli("inspect-weights", path, *args)
        self.assertNotEqual(r.returncode, 0, r.stdout)
        self.assertIn("setdet: error: " + path, r.stderr)
        for fragment in fragments:
            self.assertIn(fragment, r.stderr)
        self.assertNotIn("Traceback", r.stderr)

    def test_not_a_zip(self):
        path = self.path("text.pth")
        with open(path, "w") as f:
            f.write("not a checkpoint\n")
        self.assert_fails_naming(path, "not a zip archive")

    def test_legacy_non_zip_format(self):
        path = self.path("legacy.pth")
        torch.save({"w": torch.ones(2)}, path, _use_new_zipfile_serialization=False)
        self.assert_fails_naming(path, "not a zip archive", "_use_new_zipfile_serialization=False")

    def test_truncated_file(self):
        path = self.path("truncated.pth")
        torch.save(small_module().state_dict(), path)
        with open(path, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data[: len(data) // 2])
        self.assert_fails_naming(path, "truncated")

    def test_unsupported_global_where_a_tensor_is_expected(self):
        path = self.path("opaque.pth")
        torch.save({"w": torch.ones(2), "obj": Opaque()}, path)
        self.assert_fails_naming(path, "entry 'obj' of the top-level dict", "unsupported global test_pth_import.Opaque",
                                 "expected a tensor")

    def test_pickled_module_instead_of_state_dict(self):
        path = self.path("whole_module.pth")
        torch.save(torch.nn.Linear(2, 2), path)
        self.assert_fails_naming(path, "unsupported global torch.nn.modules.linear.Linear",
                                 "expected a dict")

    def test_no_dict_of_tensors(self):
        path = self.path("meta_only.pth")
        torch.save({"epoch": 3, "meta": {"x": 1}}, path)
        self.assert_fails_naming(path, "no dict of tensors found", "'epoch': an int")


def write_ppm(path, size, seed):
    """A binary PPM (read by OpenCV) with a few bright rectangles on noise."""
    g = torch.Generator().manual_seed(seed)
    img = (torch.rand(size, size, 3, generator=g) * 60).to(torch.uint8)
    for k in range(4):
        x, y = 10 + 25 * k, 15 + 20 * k
        img[y:y + 30, x:x + 40] = torch.tensor([200 - 30 * k, 60 * k, 250], dtype=torch.uint8)
    with open(path, "wb") as f:
        f.write(f"P6 {size} {size} 255\n".encode() + img.numpy().tobytes())


class PthIntoModelTest(Workspace):
    """A state_dict for the demo FCOS as a DataParallel-wrapped PyTorch model would save it
    ('module.' prefixes, float64 for one tensor, no head.scales, one extra entry)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        out = os.path.join(cls.tmp, "model.json")
        r = run_cli("inspect-weights", "--config", DEMO_CONFIG, "--json", out)
        assert r.returncode == 0, r.stderr
        with open(out) as f:
            cls.model_entries = json.load(f)
        g = torch.Generator().manual_seed(5)
        cls.expected = collections.OrderedDict()  # setdet name -> value as the model holds it
        sd = collections.OrderedDict()
        for e in cls.model_entries:
            name, shape = e["name"], e["shape"]
            if name == "head.scales":
                continue
            if e["dtype"] == "int64":
                value = torch.randint(0, 1000, shape, generator=g)
            else:
                value = torch.randn(shape, generator=g) * 0.05
                if name.endswith("running_var"):
                    value = value.abs() + 0.5
            if name == "backbone.body.conv1.weight" or len(sd) == 3:
                value = value.double()
            sd["module." + name] = value
            cls.expected[name] = value.to(getattr(torch, e["dtype"]))
        sd["module.extra.step"] = torch.tensor(7)
        sd._metadata = collections.OrderedDict([("", {"version": 1})])
        cls.pth = os.path.join(cls.tmp, "fcos_dp.pth")
        torch.save({"state_dict": sd, "meta": {"epoch": 1}}, cls.pth)
        cls.config = os.path.join(cls.tmp, "fcos_import.yaml")
        with open(cls.config, "w") as f:
            f.write(f"_base_: {DEMO_CONFIG}\n"
                    "checkpoint_import:\n"
                    "  rename: [{from: '^module\\.', to: ''}]\n"
                    "  ignore_missing: ['head\\.scales']\n"
                    "  ignore_unexpected: ['extra\\..*']\n")
        cls.image = os.path.join(cls.tmp, "shapes.ppm")
        write_ppm(cls.image, 160, 3)

    def test_convert_writes_a_checkpoint_with_the_same_values(self):
        self.assertIn("head.scales", [e["name"] for e in self.model_entries])
        out = self.path("fcos_converted.pt")
        r = run_cli("convert", "--config", self.config, self.pth, out)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(f"{len(self.expected)} tensors imported, 1 kept as built (ignore_missing), "
                      "1 dropped (ignore_unexpected)", r.stdout)
        entries = {e["name"]: e for e in self.inspect(out)}
        self.assertEqual(set(entries), set(self.expected) | {"head.scales"})
        for name, value in self.expected.items():
            with self.subTest(name=name):
                self.assertEqual(entries[name]["dtype"], dtype_name(value))
                self.assertEqual(entries[name]["crc32"], crc32(value))
        # kept as the model builds it: one scale per FPN level, all 1
        self.assertEqual(entries["head.scales"]["crc32"], crc32(torch.ones(5)))

        # importing straight into the model gives the same tensors
        direct = {e["name"]: e["crc32"] for e in self.inspect("--config", self.config, self.pth)}
        self.assertEqual(direct, {n: e["crc32"] for n, e in entries.items()})

    def test_infer_from_pth_equals_infer_from_converted_checkpoint(self):
        converted = self.path("fcos_for_infer.pt")
        r = run_cli("convert", "--config", self.config, self.pth, converted)
        self.assertEqual(r.returncode, 0, r.stderr)
        outputs = []
        for ckpt in (self.pth, converted):
            out = self.path(os.path.basename(ckpt) + ".json")
            r = run_cli("infer", "--config", self.config, "--checkpoint", ckpt, "--json", out,
                        self.image)
            self.assertEqual(r.returncode, 0, r.stderr)
            with open(out) as f:
                outputs.append(json.load(f))
        self.assertGreater(len(outputs[0][0]["detections"]), 0)
        self.assertEqual(outputs[0], outputs[1])

    def test_test_command_reads_pth(self):
        data = self.path("synth")
        r = run_cli("data", "synth", "--out", data, "--num-train", "1", "--num-val", "2",
                    "--seed", "4", "--size", "128")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = run_cli("test", self.config, self.pth, "--set",
                    f"data.val.dataset.data_root={data}/", "--set", "data.val.batch_size=2")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("imported from a torch.save state_dict", r.stdout)

    def run_import(self, state, config=None):
        path = self.path("variant.pth")
        torch.save(state, path)
        return path, run_cli("inspect-weights", "--config", config or self.config, path)

    def test_missing_unexpected_and_shape_errors_name_file_and_tensors(self):
        sd = torch.load(self.pth)["state_dict"]
        del sd["module.backbone.body.layer1.0.conv1.weight"]
        sd["module.head.classification_head.cls_logits.bias"] = torch.zeros(3)
        sd["module.head.surplus"] = torch.zeros(1)
        path, r = self.run_import(sd)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"setdet: error: {path}: the weights do not fit the model", r.stderr)
        self.assertIn("1 missing (in the model, not in the file): "
                      "backbone.body.layer1.0.conv1.weight", r.stderr)
        self.assertIn("1 unexpected (in the file, not in the model): head.surplus "
                      "(file: module.head.surplus)", r.stderr)
        self.assertIn("head.classification_head.cls_logits.bias "
                      "(file: module.head.classification_head.cls_logits.bias) "
                      "file [3] vs model [8]", r.stderr)

    def test_without_rename_rules_names_are_listed_up_to_ten(self):
        path, r = self.run_import(torch.load(self.pth), config=DEMO_CONFIG)
        self.assertNotEqual(r.returncode, 0)
        n = len(self.model_entries)
        self.assertIn(f"{path}: the weights do not fit the model: {n} missing", r.stderr)
        self.assertIn(f"({n - 10} more)", r.stderr)
        self.assertIn("module.backbone.body.conv1.weight", r.stderr)

    def test_bad_checkpoint_import_config_names_the_key(self):
        config = self.path("bad_import.yaml")
        with open(config, "w") as f:
            f.write(f"_base_: {DEMO_CONFIG}\ncheckpoint_import: {{renam: []}}\n")
        r = run_cli("infer", "--config", config, "--checkpoint", self.pth, "--json",
                    self.path("never.json"), self.image)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn(f"{config}: unknown key 'checkpoint_import.renam'", r.stderr)


if __name__ == "__main__":
    unittest.main()
