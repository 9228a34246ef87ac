#!/usr/bin/env python3
"""End-to-end test of Ollama's POST /api/pull on `fathom serve --allow-pull`, against
tests/hub/fake_hf.py (an imitation of the Hugging Face endpoints) serving `fathom synth` models:
the NDJSON progress streamed and not, the model landing in the store (`fathom list`), 403
without --allow-pull, 401 without the API key, one pull at a time (429), a client going away
cancelling the transfer (its .partial resumed by the next pull), and shutdown cancelling one.

usage: ollama_pull_test.py --fathom BIN --shared DIR --tmp DIR
"""
import hashlib
import http.client
import json
import os
import shutil
import signal
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "hub"))
from hub_test_env import Env, check, fail  # noqa: E402

ENV = Env("ollama_pull_test")
TMP, ROOT, STORE, LOG, VOCAB = ENV.tmp, ENV.root, ENV.store, ENV.log, ENV.vocab
synth, cdn_log = ENV.synth, ENV.cdn_log
KEY = "test-key"
TINY, SLOW, SLOW2 = "fathom-test/tiny-GGUF", "fathom-test/slow-GGUF", "fathom-test/slow2-GGUF"
FILE = "tiny-Q8_0.gguf"
TRANSFER_SECONDS = 4  # a throttled file's first GET takes this long


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def serve(*extra):
    env = dict(os.environ, FATHOM_MODELS=STORE, HF_ENDPOINT=ENDPOINT)
    env.pop("HF_TOKEN", None)
    proc = subprocess.Popen([ENV.fathom, "serve", "-m", VOCAB, "--port", "0", "-t", "1", *extra], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    check("listening on http://" in line, f"fathom serve did not start: {line!r}")
    port = int(line.strip().rsplit(":", 1)[1])
    return proc, port


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        fail("fathom serve did not exit on SIGTERM")


def request(port, body, key=KEY):
    """Sends POST /api/pull and returns the open response (read it, then close the connection)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    conn.request("POST", "/api/pull", body=json.dumps(body), headers=headers)
    return conn, conn.getresponse()


def pull(port, body, key=KEY):
    conn, r = request(port, body, key)
    text = r.read().decode()
    conn.close()
    return r.status, r.getheader("Content-Type"), text


def ndjson(text):
    return [json.loads(line) for line in text.splitlines()]


def check_progress(lines, path, what):
    """The NDJSON sequence of a successful pull of the one file at `path`."""
    statuses = [l.get("status") for l in lines]
    check(statuses[0] == "pulling manifest", f"{what}: first line {lines[0]}")
    check(statuses[-3:] == ["verifying sha256 digest", "writing manifest", "success"], f"{what}: last lines {lines[-3:]}")
    files = lines[1:-3]
    size, digest = os.path.getsize(path), "sha256:" + sha256(path)
    check(len(files) >= 1, f"{what}: no progress lines")
    for l in files:
        check(l == {"status": "pulling " + FILE, "digest": digest, "total": size, "completed": l["completed"]},
              f"{what}: progress line {l}")
    done = [l["completed"] for l in files]
    check(done == sorted(done) and done[-1] == size, f"{what}: completed goes {done}, size {size}")


shutil.rmtree(TMP, ignore_errors=True)
os.makedirs(TMP)
synth(os.path.join(ROOT, TINY, FILE), "--type", "q8_0")
synth(os.path.join(ROOT, TINY, "tiny-F32.gguf"))
for repo in (SLOW, SLOW2):
    os.makedirs(os.path.join(ROOT, repo))
    shutil.copy(os.path.join(ROOT, TINY, FILE), os.path.join(ROOT, repo, FILE))
SIZE = os.path.getsize(os.path.join(ROOT, TINY, FILE))
RATE = SIZE // TRANSFER_SECONDS

hub = subprocess.Popen([sys.executable, os.path.join(os.path.dirname(__file__), "..", "hub", "fake_hf.py"), "--root", ROOT,
                        "--log", LOG, "--throttle", f"{SLOW}/{FILE}:{RATE}", "--throttle", f"{SLOW2}/{FILE}:{RATE}"],
                       stdout=subprocess.PIPE, text=True)
procs = [hub]
try:
    port_line = hub.stdout.readline()
    check(port_line.startswith("PORT "), f"fake_hf.py did not start: {port_line!r}")
    ENDPOINT = f"http://127.0.0.1:{int(port_line.split()[1])}"

    # 1. Without --allow-pull: 403 naming the flag, and nothing fetched.
    proc, port = serve("--api-key", KEY)
    procs.append(proc)
    status, _, text = pull(port, {"model": TINY + ":Q8_0"})
    check(status == 403 and "--allow-pull" in json.loads(text)["error"], f"without --allow-pull: {status} {text}")
    check(not cdn_log(), "a refused pull fetched files")
    print(f"without --allow-pull: {status} {text}")
    stop(proc)

    proc, port = serve("--api-key", KEY, "--allow-pull")
    procs.append(proc)
    # 2. Behind the API key like every route; bad bodies are 400s naming the field.
    status, _, text = pull(port, {"model": TINY + ":Q8_0"}, key=None)
    check(status == 401, f"without the key: {status} {text}")
    for body, field in (({"model": 3}, "model"), ({"model": TINY, "insecure": True}, "insecure"),
                        ({"model": TINY, "stream": "yes"}, "stream"), ({"model": TINY, "username": "x"}, "username")):
        status, _, text = pull(port, body)
        check(status == 400 and field in json.loads(text)["error"], f"{body}: {status} {text}")

    # 3. A streamed pull: Ollama's NDJSON progress, then the model is in the store.
    t0 = time.time()
    status, ctype, text = pull(port, {"model": TINY + ":Q8_0"})
    check(status == 200 and ctype == "application/x-ndjson", f"streamed pull: {status} {ctype} {text}")
    lines = ndjson(text)
    check_progress(lines, os.path.join(ROOT, TINY, FILE), "streamed pull")
    listed = subprocess.run([ENV.fathom, "list"], env=dict(os.environ, FATHOM_MODELS=STORE), capture_output=True,
                            text=True, check=True).stdout
    check(TINY + ":Q8_0" in listed, "fathom list after the pull:\n" + listed)
    print(f"streamed pull ({time.time() - t0:.2f} s): " + "\n  ".join(json.dumps(l) for l in lines))

    # 4. Not streamed: one {"status": "success"}; a missing model is a 404 before any byte.
    status, _, text = pull(port, {"model": TINY + ":F32", "stream": False})
    check(status == 200 and json.loads(text) == {"status": "success"}, f"non-streamed pull: {status} {text}")
    check(TINY + ":F32" in subprocess.run([ENV.fathom, "list"], env=dict(os.environ, FATHOM_MODELS=STORE),
                                          capture_output=True, text=True).stdout, "F32 model not listed")
    status, _, text = pull(port, {"model": "fathom-test/missing-GGUF", "stream": False})
    check(status == 404 and "404" in json.loads(text)["error"], f"missing model: {status} {text}")
    status, _, text = pull(port, {"model": "fathom-test/missing-GGUF"})
    check(status == 200 and "error" in ndjson(text)[-1], f"missing model, streamed: {status} {text}")
    print(f"non-streamed pull: {text and 'ok'}; missing model streamed: {ndjson(text)[-1]}")

    # 5. One pull at a time; the client going away cancels the transfer, and the next pull
    #    resumes from the .partial file.
    conn, r = request(port, {"model": SLOW})
    first = [json.loads(r.readline())]
    while "completed" not in first[-1] or first[-1]["completed"] == 0:
        first.append(json.loads(r.readline()))
    status, _, text = pull(port, {"model": TINY + ":Q8_0"})
    check(status == 429 and "one at a time" in json.loads(text)["error"], f"second pull: {status} {text}")
    t_close = time.time()
    conn.sock.shutdown(2)
    conn.close()
    model_dir = os.path.join(STORE, SLOW.replace("/", "%2F"))
    while True:  # the slot frees once the transfer has stopped
        status, _, text = pull(port, {"model": SLOW, "stream": False})
        if status != 429:
            break
        check(time.time() - t_close < 3, "the pull slot stayed busy after the client went away")
        time.sleep(0.1)
    cancelled_after = time.time() - t_close
    for _ in range(50):  # fake_hf.py logs a transfer just after its last byte
        log = [g for g in cdn_log() if g["path"] == f"{SLOW}/{FILE}"]
        if len(log) == 2:
            break
        time.sleep(0.02)
    check(status == 200 and json.loads(text) == {"status": "success"}, f"pull after the cancel: {status} {text}")
    log.sort(key=lambda g: g["start"])  # the cancelled transfer logs when its next write fails, maybe last
    check(len(log) == 2 and log[0]["start"] == 0 and log[0]["sent"] < SIZE and log[1]["status"] == 206 and
          0 < log[1]["start"] < SIZE and log[1]["start"] + log[1]["sent"] == SIZE,
          f"the cancelled transfer was not resumed: {log} (size {SIZE})")
    check(sorted(os.listdir(model_dir)) == ["manifest.json", FILE] and
          sha256(os.path.join(model_dir, FILE)) == sha256(os.path.join(ROOT, SLOW, FILE)),
          f"store after the resume: {os.listdir(model_dir)}")
    print(f"disconnect: cancelled {cancelled_after:.2f} s after the client left, {log[0]['sent']} of {SIZE} bytes sent; "
          f"the next pull resumed from byte {log[1]['start']}")

    # 6. Shutdown cancels a pull in progress, and its client is told why.
    conn, r = request(port, {"model": SLOW2})
    line = json.loads(r.readline())
    while "completed" not in line or line["completed"] == 0:
        line = json.loads(r.readline())
    t_stop = time.time()
    proc.send_signal(signal.SIGTERM)
    rest = ndjson(r.read().decode())
    conn.close()
    proc.wait(timeout=10)
    stopped = time.time() - t_stop
    check(rest and "shutting down" in rest[-1].get("error", ""), f"shutdown during a pull: {rest}")
    check(stopped < TRANSFER_SECONDS - 1, f"shutdown took {stopped:.2f} s")
    check(SLOW2 not in subprocess.run([ENV.fathom, "list"], env=dict(os.environ, FATHOM_MODELS=STORE),
                                      capture_output=True, text=True).stdout, "a cancelled pull is listed")
    print(f"shutdown: exited {stopped:.2f} s after SIGTERM; last line {rest[-1]}")
    print("PASS")
finally:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
