"""Shared helpers for the Python tests that drive the setdet CLI binary (SETDET_BIN)."""
import json
import os
import subprocess
import tempfile
import unittest

SETDET_BIN = os.environ.get("SETDET_BIN", "setdet")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


class CliTestCase(unittest.TestCase):
    """A test case with a fresh temporary directory per test and a `setdet` runner."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def run_cli(self, *args, ok=True):
        """Runs `setdet ARGS`; with ok=True a non-zero exit fails the test with its stderr."""
        proc = subprocess.run([SETDET_BIN, *args], capture_output=True, text=True)
        if ok:
            self.assertEqual(proc.returncode, 0, f"setdet {' '.join(args)} failed:\n{proc.stderr}")
        return proc
