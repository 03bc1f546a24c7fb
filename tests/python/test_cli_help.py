"""`setdet ... --help` lists every option's default, and a mistyped option gets the closest one."""
import unittest

from cli_testing import CliTestCase


def option_line(help_text, option):
    """The help line that introduces OPTION (its name, type and default)."""
    for line in help_text.splitlines():
        words = line.split()
        if words and words[0].split(",")[-1] == option:
            return line
    raise AssertionError(f"{option} not in the help:\n{help_text}")


class CliHelpTest(CliTestCase):
    def test_help_shows_the_defaults(self):
        synth = self.run_cli("data", "synth", "--help").stdout
        self.assertIn("]=256", option_line(synth, "--size"))
        synth = self.run_cli("data", "synth", "--help").stdout
        self.assertIn("=2000", option_line(synth, "--num-train"))
        self.assertIn("=jpg", option_line(synth, "--format"))
        predict = self.run_cli("vrd", "predict", "--help").stdout
        self.assertIn("=stage3", option_line(predict, "--variant"))

    def test_sentinel_values_are_not_shown_as_defaults(self):
        # 0 means "not given" for these; the help text says what happens instead
        train = self.run_cli("train", "--help").stdout
        for option in ("--nproc", "--master-port"):
            self.assertNotIn("=0", option_line(train, option))
        dedup = self.run_cli("dedup", "--help").stdout
        for option in ("--iou-thr", "--sigma", "--min-score", "--max-dets"):
            self.assertNotIn("=0", option_line(dedup, option))

    def test_a_mistyped_option_gets_the_closest_one(self):
        proc = self.run_cli("eval", "--gt", "a.json", "--dt", "b.json", "--jsn", "out.json",
                            ok=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertIn("unknown option '--jsn'; did you mean '--json'?", proc.stderr)
        # the value after the unknown option is taken for the positional: still suggested
        proc = self.run_cli("infer", "--config", "c.yaml", "--checkpoint", "m.pt", "--scor-thr",
                            "0.5", "image.jpg", ok=False)
        self.assertIn("unknown option '--scor-thr'; did you mean '--score-thr'?", proc.stderr)
        proc = self.run_cli("--thread", "2", "eval", ok=False)
        self.assertIn("unknown subcommand '2'", proc.stderr)
        self.assertIn("unknown option '--thread'; did you mean '--threads'?", proc.stderr)

    def test_nothing_is_suggested_for_a_far_off_option(self):
        proc = self.run_cli("eval", "--gt", "a.json", "--dt", "b.json", "--zzzzzzzz", ok=False)
        self.assertNotEqual(proc.returncode, 0)
        self.assertNotIn("did you mean", proc.stderr)


if __name__ == "__main__":
    unittest.main()
