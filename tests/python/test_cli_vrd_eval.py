"""`setdet vrd eval` end to end: the printed reference key lines, --json against the reference's
values for tests/data/vrd/random200 (expected.json names the tensorflow/models commits), the
behaviours setdet defines where the reference crashes, and input errors."""
import json
import os
import re

from cli_testing import CliTestCase

DATA = os.path.join(os.environ.get("SETDET_TEST_DATA_DIR", "../data"), "vrd")
HEADER = ("ImageID,LabelName1,LabelName2,XMin1,XMax1,YMin1,YMax1,XMin2,XMax2,YMin2,YMax2,"
          "RelationshipLabel")
LINE_RE = re.compile(r"^(VRDMetric_(Relationships|Phrases)_[^,]+),(\d+\.\d{6})$")


class VrdEvalCliTest(CliTestCase):
    def write(self, name, text):
        path = self.path(name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def evaluate(self, gt, labels, dt, ok=True):
        out = self.path("metrics.json")
        proc = self.run_cli("vrd", "eval", "--gt", gt, "--labels", labels, "--dt", dt, "--json",
                            out, ok=ok)
        if not ok:
            return proc, None
        with open(out) as f:
            return proc, json.load(f)

    def test_random200_matches_the_reference(self):
        case = os.path.join(DATA, "random200")
        with open(os.path.join(case, "expected.json")) as f:
            expected = json.load(f)
        proc, got = self.evaluate(*(os.path.join(case, n) for n in ("gt.csv", "labels.csv",
                                                                   "dt.csv")))
        for key in ("mAP_relationship", "recall50_relationship", "mAP_phrase", "recall50_phrase",
                    "score", "weightedAP_relationship", "recall100_relationship",
                    "weightedAP_phrase", "recall100_phrase"):
            self.assertAlmostEqual(got[key], expected[key], places=14, msg=key)
        for key in ("AP_relationship_per_predicate", "AP_phrase_per_predicate"):
            self.assertEqual(set(got[key]), set(expected[key]))
            for predicate, ap in expected[key].items():
                self.assertAlmostEqual(got[key][predicate], ap, places=14, msg=predicate)
        self.assertAlmostEqual(got["score"], 0.4 * got["mAP_relationship"] +
                               0.2 * got["recall50_relationship"] + 0.4 * got["mAP_phrase"],
                               places=15)
        self.assertEqual(got["num_ground_truth"], 685)

        # stdout: the reference's metric names with 6 decimals, then the challenge score
        printed = {}
        lines = proc.stdout.splitlines()
        for line in lines[:-1]:
            m = LINE_RE.match(line)
            self.assertIsNotNone(m, line)
            printed[m.group(1)] = float(m.group(3))
        for task, prefix in (("relationship", "Relationships"), ("phrase", "Phrases")):
            names = {f"VRDMetric_{prefix}_mAP@0.5IOU": got["mAP_" + task],
                     f"VRDMetric_{prefix}_Recall@50@0.5IOU": got["recall50_" + task],
                     f"VRDMetric_{prefix}_Recall@100@0.5IOU": got["recall100_" + task],
                     f"VRDMetric_{prefix}_weightedAP@0.5IOU": got["weightedAP_" + task]}
            for predicate, ap in got[f"AP_{task}_per_predicate"].items():
                names[f"VRDMetric_{prefix}_AP@0.5IOU/{predicate}"] = ap
            for name, value in names.items():
                self.assertAlmostEqual(printed.pop(name), value, delta=5e-7, msg=name)
        self.assertEqual(printed, {})
        self.assertTrue(lines[-1].startswith("challenge score"), lines[-1])
        self.assertAlmostEqual(float(lines[-1].split(",")[-1]), got["score"], delta=5e-7)
        self.assertEqual([n for n in os.listdir(self.dir) if ".tmp" in n], [])

    def test_header_only_detections_give_zero(self):
        # the reference crashes on a detections file without rows
        gt = self.write("gt.csv", HEADER + "\ni,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on\n")
        labels = self.write("labels.csv", "ImageID,LabelName,Confidence\n")
        dt = self.write("dt.csv", HEADER + ",Score\n")
        _, got = self.evaluate(gt, labels, dt)
        self.assertEqual(got["AP_relationship_per_predicate"], {"on": 0.0})
        self.assertEqual((got["mAP_relationship"], got["recall50_phrase"], got["score"]),
                         (0.0, 0.0, 0.0))

    def test_input_errors_name_file_line_and_column(self):
        gt = self.write("gt.csv", HEADER + "\ni,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on\n")
        labels = self.write("labels.csv", "ImageID,LabelName,Confidence\n")
        dt = self.write("dt.csv", HEADER + ",Score\n"
                        "i,a,b,0.1,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on,0.5\n"
                        "i,a,b,0.6,0.5,0.1,0.5,0.5,0.9,0.5,0.9,on,0.5\n")
        proc, _ = self.evaluate(gt, labels, dt, ok=False)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(f"{dt}:3: column 'XMin1' (4): box is inverted: xmin 0.6 > xmax 0.5",
                      proc.stderr)
        self.assertFalse(os.path.exists(self.path("metrics.json")))

        bad_labels = self.write("bad_labels.csv", "ImageID,Label\ni,a\n")
        proc, _ = self.evaluate(gt, bad_labels, dt, ok=False)
        self.assertIn("missing column 'LabelName' (header: ImageID, Label)", proc.stderr)

        proc = self.run_cli("vrd", "eval", "--gt", gt, "--labels", labels, "--dt",
                            self.path("missing.csv"), ok=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("missing.csv", proc.stderr)

        proc = self.run_cli("vrd", ok=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("A subcommand is required", proc.stderr)
        self.assertIn("eval", self.run_cli("vrd", "--help").stdout)
