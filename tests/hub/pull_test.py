#!/usr/bin/env python3
"""End-to-end test of `fathom pull`, the model store and `-m NAME`, against fake_hf.py (an
imitation of the Hugging Face endpoints) serving models written by `fathom synth`.

usage: pull_test.py --fathom BIN --shared DIR --tmp DIR
Prints the numbers the issue's closing note asks for; exits non-zero on the first failure.
"""
import os
import shutil
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
from hub_test_env import Env, check, fail  # noqa: E402

ENV = Env("hub_pull_test")
TMP, ROOT, STORE, LOG, VOCAB = ENV.tmp, ENV.root, ENV.store, ENV.log, ENV.vocab
synth, cdn_log = ENV.synth, ENV.cdn_log
SPLIT_REPO = "fathom-test/tiny-split-GGUF"
SPLIT_PART2 = "Q8_0/tiny-Q8_0-00002-of-00003.gguf"
DROP_AT = 20000  # bytes of part 2 sent before the connection drops
CORRUPT_REPO = "fathom-test/corrupt-GGUF"
GATED_REPO = "fathom-test/gated-GGUF"
NORANGE_REPO = "fathom-test/norange-GGUF"  # its server answers Range requests with the whole file
HUGE_REPO = "fathom-test/huge-GGUF"  # listed as 1.9 TiB: more than the disk has
TOKEN = "hf_test_secret"


def fathom(*args, env=None, expect=0):
    e = dict(os.environ, FATHOM_MODELS=STORE, HF_ENDPOINT=ENDPOINT)
    e.pop("HF_TOKEN", None)
    e.update(env or {})
    r = subprocess.run([ENV.fathom, *args], env=e, capture_output=True, text=True, timeout=120)
    out = r.stdout + r.stderr
    if expect is not None and r.returncode != expect:
        fail(f"fathom {' '.join(args)}: exit {r.returncode}, expected {expect}\n{out}")
    return out


shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)
# The repositories: a split model (3 parts, in a folder as unsloth lays them out), a repo with
# two quantizations, one to corrupt and one gated.
synth(os.path.join(ROOT, SPLIT_REPO, "Q8_0", "tiny-Q8_0.gguf"), "--type", "q8_0", "--split", "3")
synth(os.path.join(TMP, "tiny-Q8_0.gguf"), "--type", "q8_0")  # the same model in one file
synth(os.path.join(ROOT, "fathom-test/tiny-GGUF/tiny-Q8_0.gguf"), "--type", "q8_0")
synth(os.path.join(ROOT, "fathom-test/tiny-GGUF/tiny-F32.gguf"))
synth(os.path.join(ROOT, CORRUPT_REPO, "tiny-Q8_0.gguf"), "--type", "q8_0")
synth(os.path.join(ROOT, GATED_REPO, "tiny-Q8_0.gguf"), "--type", "q8_0")
os.makedirs(os.path.join(ROOT, NORANGE_REPO))
shutil.copy(os.path.join(TMP, "tiny-Q8_0.gguf"), os.path.join(ROOT, NORANGE_REPO, "tiny-Q8_0.gguf"))
os.makedirs(os.path.join(ROOT, HUGE_REPO))
shutil.copy(os.path.join(TMP, "tiny-Q8_0.gguf"), os.path.join(ROOT, HUGE_REPO, "huge-Q8_0.gguf"))
with open(os.path.join(ROOT, SPLIT_REPO, "README.md"), "w") as f:
    f.write("not a model\n")
part2_size = os.path.getsize(os.path.join(ROOT, SPLIT_REPO, SPLIT_PART2))
check(part2_size > DROP_AT, f"part 2 is only {part2_size} bytes")

server = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "fake_hf.py"), "--root", ROOT,
                           "--log", LOG, "--drop-after", f"{SPLIT_REPO}/{SPLIT_PART2}:{DROP_AT}",
                           "--drop-after", f"{NORANGE_REPO}/tiny-Q8_0.gguf:{DROP_AT}", "--ignore-range", f"{NORANGE_REPO}/tiny-Q8_0.gguf",
                           "--corrupt", f"{CORRUPT_REPO}/tiny-Q8_0.gguf:5000",
                           "--listed-size", f"{HUGE_REPO}/huge-Q8_0.gguf:{19 * 2**40 // 10}", "--gated", GATED_REPO, "--token", TOKEN],
                          stdout=subprocess.PIPE, text=True)
try:
    port_line = server.stdout.readline()
    check(port_line.startswith("PORT "), f"fake_hf.py did not start: {port_line!r}")
    ENDPOINT = f"http://127.0.0.1:{int(port_line.split()[1])}"
    name = SPLIT_REPO + ":Q8_0"

    # 1. A multi-part model whose second part breaks off mid-file: the pull fails, naming the
    #    interruption, and installs nothing.
    out = fathom("pull", name, expect=1)
    check("interrupted after" in out and "again to resume" in out, "interrupted pull message:\n" + out)
    print("interrupted pull: " + [l for l in out.splitlines() if "interrupted after" in l][0])
    check(name not in fathom("list"), "a failed pull is listed")
    # 2. The second pull fetches only the rest of part 2, and part 3.
    before = len(cdn_log())
    out = fathom("pull", name)
    again = cdn_log()[before:]
    paths = [g["path"].split("/")[-1] for g in again]
    check(paths == ["tiny-Q8_0-00002-of-00003.gguf", "tiny-Q8_0-00003-of-00003.gguf"], f"second pull fetched {paths}")
    check(again[0]["start"] == DROP_AT and again[0]["status"] == 206, f"resume did not start at {DROP_AT}: {again[0]}")
    check(again[0]["sent"] == part2_size - DROP_AT, f"resume fetched {again[0]['sent']} of {part2_size}")
    check(f"resuming tiny-Q8_0-00002-of-00003.gguf" in out and f"resumed {DROP_AT})" in out, out)
    progress_lines = [l for l in out.splitlines() if "tiny-Q8_0-00003-of-00003.gguf" in l and "MiB/s" in l]
    check(1 <= len(progress_lines) <= 10 and "100%" in progress_lines[-1], "progress lines:\n" + "\n".join(progress_lines))
    print(f"resumed transfer: part 2 is {part2_size} bytes; the first pull got {DROP_AT} before the drop, "
          f"the second fetched {again[0]['sent']} (Range from byte {again[0]['start']})")
    print("multi-part pull:\n  " + "\n  ".join(l for l in out.splitlines() if "MiB/s" not in l))

    # 3. `fathom run -m NAME` runs the three parts as one model: the same greedy text as the
    #    single-file model with the same weights.
    run_args = ["run", "-p", "Once upon a time", "-n", "12", "--temp", "0", "-t", "1"]
    text = fathom(*run_args, "-m", name)
    single = fathom(*run_args, "-m", os.path.join(TMP, "tiny-Q8_0.gguf"))
    generated = lambda s: s.split("\nload: ")[0]  # the text, without the timing lines after it
    check(generated(text) == generated(single), f"split model output differs:\n{text}\nvs\n{single}")
    print(f"fathom run -m {name}:\n  " + "\n  ".join(text.strip().splitlines()))

    # 4. Pulling again finds it up to date and fetches nothing.
    before = len(cdn_log())
    check("is up to date" in fathom("pull", name), "second pull not up to date")
    check(len(cdn_log()) == before, "an up-to-date pull fetched files")

    # 4b. A server that ignores Range: the resumed pull starts the file over and still verifies it.
    fathom("pull", NORANGE_REPO, expect=1)
    before = len(cdn_log())
    fathom("pull", NORANGE_REPO)
    again = cdn_log()[before:]
    size = os.path.getsize(os.path.join(ROOT, NORANGE_REPO, "tiny-Q8_0.gguf"))
    check(len(again) == 1 and again[0]["status"] == 200 and again[0]["sent"] == size, f"no-range resume: {again}")

    # 5. A corrupted byte: the sha256 check rejects the file and nothing stays behind.
    out = fathom("pull", CORRUPT_REPO, expect=1)
    check("sha256 mismatch" in out and "corrupt" in out, "corruption message:\n" + out)
    corrupt_dir = os.path.join(STORE, CORRUPT_REPO.replace("/", "%2F"))
    check(os.listdir(corrupt_dir) == [], f"corrupt files kept: {os.listdir(corrupt_dir)}")
    print("corruption caught: " + [l for l in out.splitlines() if "sha256" in l][0])

    # 6. 404s and a 401, with messages that say what to do.
    out = fathom("pull", "fathom-test/no-such-GGUF", expect=1)
    check("404 Not Found" in out and "fathom-test/no-such-GGUF" in out and "Repository Not Found" in out, out)
    out = fathom("pull", "fathom-test/tiny-GGUF:Q5_K", expect=1)
    check("has no Q5_K file" in out and "F32, Q8_0" in out, out)
    out = fathom("pull", "fathom-test/tiny-GGUF:missing.gguf", expect=1)
    check("has no file missing.gguf" in out, out)
    out = fathom("pull", GATED_REPO, expect=1)
    check("401 Unauthorized" in out and "HF_TOKEN" in out, out)
    out = fathom("pull", GATED_REPO, env={"HF_TOKEN": "wrong"}, expect=1)
    check("401 Unauthorized" in out and "token in HF_TOKEN is not allowed" in out, out)
    fathom("pull", GATED_REPO, env={"HF_TOKEN": TOKEN})
    out = fathom("pull", HUGE_REPO, expect=1)
    check("not enough disk space" in out and "FATHOM_MODELS" in out, out)
    check(not [g for g in cdn_log() if g["path"].startswith(HUGE_REPO)], "a download began without the space for it")

    # 7. HF_ENDPOINT is where pull goes; --endpoint overrides it.
    out = fathom("pull", "fathom-test/tiny-GGUF:F32", env={"HF_ENDPOINT": "http://127.0.0.1:9"}, expect=1)
    check("127.0.0.1:9" in out, "HF_ENDPOINT not used:\n" + out)
    fathom("pull", "fathom-test/tiny-GGUF:F32", "--endpoint", ENDPOINT, env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    out = fathom("pull", "x/y", "--endpoint", "ftp://example", expect=2)
    check("not an http:// or https:// URL" in out, out)

    # 8. list, show, rm.
    out = fathom("list")
    for n, quant in [(name, "Q8_0"), ("fathom-test/tiny-GGUF:F32", "F32"), (GATED_REPO, "Q8_0")]:
        row = [l for l in out.splitlines() if l.startswith(n + " ")]
        check(len(row) == 1 and quant in row[0] and "MiB" in row[0], f"list row for {n}:\n{out}")
    check(CORRUPT_REPO not in out, "the corrupt model is listed")
    out = fathom("show", name)
    for want in ["architecture   llama", "parameters", "context", "chat template", "q8_0:", "3, "]:
        check(want in out, f"show lacks '{want}':\n{out}")
    fathom("rm", "fathom-test/tiny-GGUF:F32")
    check("tiny-GGUF:F32" not in fathom("list"), "rm left the model listed")
    check("no model" in fathom("rm", "fathom-test/tiny-GGUF:F32", expect=1), "rm of a missing model")
    out = fathom("run", "-m", "deepseek-r1:1.5b", "-p", "hi", expect=1)
    check("fathom pull deepseek-r1:1.5b" in out, out)

    # 9. ps asks a running server what it has loaded.
    serve = subprocess.Popen([ENV.fathom, "serve", "-m", name, "--port", "0", "-t", "1"],
                             env=dict(os.environ, FATHOM_MODELS=STORE), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port = None
        for line in serve.stdout:
            if "listening on" in line:
                port = line.strip().rsplit(":", 1)[1]
                break
        check(port is not None, "fathom serve did not start")
        for _ in range(100):
            out = fathom("ps", "--port", port)
            if "server" in out and ": ok" in out:
                break
            time.sleep(0.1)
        check(": ok" in out and name in out, "ps (the pulled name is the served model id):\n" + out)
        print("fathom ps:\n  " + "\n  ".join(out.strip().splitlines()))
    finally:
        serve.terminate()
        serve.wait(timeout=30)
    out = fathom("ps", "--port", "9", expect=1)
    check("no server at http://127.0.0.1:9" in out, out)
    print("PASS")
finally:
    server.terminate()
    server.wait(timeout=10)
