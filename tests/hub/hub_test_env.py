"""What the end-to-end tests against fake_hf.py share (tests/hub/pull_test.py,
tests/server/ollama_pull_test.py): their arguments and folders, failing with a message, the
`fathom synth` models their repositories hold, and fake_hf.py's transfer log."""
import argparse
import json
import os
import subprocess
import sys


class Env:
    """The test's arguments (--fathom BIN --shared DIR --tmp DIR) and its folders under --tmp."""

    def __init__(self, name):
        p = argparse.ArgumentParser()
        p.add_argument("--fathom", required=True)
        p.add_argument("--shared", required=True)
        p.add_argument("--tmp", required=True)
        args = p.parse_args()
        self.fathom = args.fathom
        self.tmp = os.path.join(args.tmp, name)
        self.root = os.path.join(self.tmp, "repos")  # fake_hf.py's --root: ORG/REPO/<files>
        self.store = os.path.join(self.tmp, "store")  # FATHOM_MODELS
        self.log = os.path.join(self.tmp, "cdn.log")  # fake_hf.py's --log
        self.vocab = os.path.join(args.shared, "models", "tinyllamas-stories-260k-f32.gguf")

    def synth(self, path, *extra):
        """A tiny random-weight llama model at `path` (with the shared model's vocabulary)."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        subprocess.run([self.fathom, "synth", "--arch", "llama", "--preset", "tiny", "--vocab", self.vocab, "-q", "-o", path,
                        *extra], check=True)

    def cdn_log(self):
        """fake_hf.py's log: one dict per /cdn GET (path, start, sent, status)."""
        if not os.path.exists(self.log):
            return []
        with open(self.log) as f:
            return [json.loads(line) for line in f]


def fail(msg):
    print("FAIL: " + msg, flush=True)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)
