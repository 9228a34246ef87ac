#!/usr/bin/env python3
"""An imitation of the Hugging Face Hub endpoints `fathom pull` uses, for the tests.

Serves the repositories under --root (ROOT/ORG/REPO/<files>) as Hugging Face does:
  GET /api/models/ORG/REPO[?blobs=true]   model info: commit sha and siblings (with sizes and
                                           LFS sha256 when blobs=true)
  GET|HEAD /ORG/REPO/resolve/REV/PATH      302 to /cdn/... with ETag, X-Linked-Etag (sha256),
                                           X-Linked-Size and X-Repo-Commit
  GET /cdn/ORG/REPO/PATH                   the bytes, with Range support (206, 416)
Errors carry X-Error-Code / X-Error-Message like the Hub. Fault injection for the tests:
  --gated ORG/REPO --token T   the repo answers 401 without "Authorization: Bearer T"
  --drop-after PATH:N          the first GET of PATH closes the connection after N body bytes
  --corrupt PATH:OFFSET        the byte at OFFSET of PATH is served flipped (sha256 stays right)
  --ignore-range PATH           Range requests for PATH get the whole file (200), as some servers do
  --listed-size PATH:N         the listing gives N as PATH's size (a model too large for the disk)
  --throttle PATH:N            the first GET of PATH sends N bytes per second (in tenths), to cancel mid-transfer
  --log FILE                   one JSON line per /cdn GET: path, range start, bytes sent (also when
                               the client went away)
Prints "PORT <n>" on stdout once listening.
"""
import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def parse_args():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--gated", action="append", default=[])
    p.add_argument("--token", default="")
    p.add_argument("--drop-after", action="append", default=[])
    p.add_argument("--corrupt", action="append", default=[])
    p.add_argument("--listed-size", action="append", default=[])
    p.add_argument("--ignore-range", action="append", default=[])
    p.add_argument("--throttle", action="append", default=[])
    p.add_argument("--log", default="")
    return p.parse_args()


ARGS = parse_args()
DROP = {k: int(v) for k, v in (s.rsplit(":", 1) for s in ARGS.drop_after)}
CORRUPT = {k: int(v) for k, v in (s.rsplit(":", 1) for s in ARGS.corrupt)}
LISTED_SIZE = {k: int(v) for k, v in (s.rsplit(":", 1) for s in ARGS.listed_size)}
THROTTLE = {k: int(v) for k, v in (s.rsplit(":", 1) for s in ARGS.throttle)}
LOCK = threading.Lock()
SHA_CACHE = {}


def sha256_of(path):
    key = (path, os.path.getmtime(path), os.path.getsize(path))
    if key not in SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        SHA_CACHE[key] = h.hexdigest()
    return SHA_CACHE[key]


def repo_files(repo_dir):
    out = []
    for dirpath, _, names in os.walk(repo_dir):
        for n in names:
            full = os.path.join(dirpath, n)
            out.append(os.path.relpath(full, repo_dir).replace(os.sep, "/"))
    return sorted(out)


def commit_of(repo_dir):
    h = hashlib.sha1()
    for rel in repo_files(repo_dir):
        h.update(rel.encode() + b"\0" + sha256_of(os.path.join(repo_dir, rel)).encode())
    return h.hexdigest()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def error(self, status, code, message):
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def repo_dir(self, org, repo):
        """The repository's directory, or None after answering an error."""
        name = f"{org}/{repo}"
        if name in ARGS.gated and self.headers.get("Authorization") != f"Bearer {ARGS.token}":
            self.error(401, "GatedRepo", f"Access to model {name} is restricted. You must have access to it and be authenticated to access it. Please log in.")
            return None
        d = os.path.join(ARGS.root, org, repo)
        if not os.path.isdir(d):
            self.error(404, "RepoNotFound", f"Repository Not Found for url: {self.path}.")
            return None
        return d

    def do_HEAD(self):
        self.do_GET()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        path = urllib.parse.unquote(url.path)
        query = urllib.parse.parse_qs(url.query)
        m = re.fullmatch(r"/api/models/([^/]+)/([^/]+)", path)
        if m:
            return self.model_info(m.group(1), m.group(2), query.get("blobs", ["false"])[0] == "true")
        m = re.fullmatch(r"/([^/]+)/([^/]+)/resolve/([^/]+)/(.+)", path)
        if m:
            return self.resolve(*m.groups())
        m = re.fullmatch(r"/cdn/([^/]+)/([^/]+)/(.+)", path)
        if m:
            return self.cdn(*m.groups())
        self.error(404, "EntryNotFound", f"no route {path}")

    def model_info(self, org, repo, blobs):
        d = self.repo_dir(org, repo)
        if d is None:
            return
        siblings = []
        for rel in repo_files(d):
            s = {"rfilename": rel}
            if blobs:
                size = LISTED_SIZE.get(f"{org}/{repo}/{rel}", os.path.getsize(os.path.join(d, rel)))
                s.update({"size": size, "blobId": hashlib.sha1(rel.encode()).hexdigest(),
                          "lfs": {"sha256": sha256_of(os.path.join(d, rel)), "size": size, "pointerSize": 135}})
            siblings.append(s)
        body = json.dumps({"id": f"{org}/{repo}", "modelId": f"{org}/{repo}", "sha": commit_of(d),
                           "private": False, "gated": f"{org}/{repo}" in ARGS.gated and "manual",
                           "tags": ["gguf"], "siblings": siblings}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def resolve(self, org, repo, rev, rel):
        d = self.repo_dir(org, repo)
        if d is None:
            return
        commit = commit_of(d)
        if rev not in ("main", commit):
            return self.error(404, "RevisionNotFound", f"Invalid rev id: {rev}")
        full = os.path.join(d, rel)
        if not os.path.isfile(full) or ".." in rel.split("/"):
            return self.error(404, "EntryNotFound", f"{rel} does not exist in {org}/{repo}")
        sha = sha256_of(full)
        self.send_response(302)
        self.send_header("Location", "/cdn/" + urllib.parse.quote(f"{org}/{repo}/{rel}") + "?X-Amz-Signature=test")
        self.send_header("ETag", f'"{sha}"')
        self.send_header("X-Linked-Etag", f'"{sha}"')
        self.send_header("X-Linked-Size", str(os.path.getsize(full)))
        self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def cdn(self, org, repo, rel):
        full = os.path.join(ARGS.root, org, repo, rel)
        if not os.path.isfile(full) or ".." in rel.split("/"):
            return self.error(404, "EntryNotFound", f"no object {rel}")
        size = os.path.getsize(full)
        start, end = 0, size - 1
        status = 200
        key = f"{org}/{repo}/{rel}"
        rng = self.headers.get("Range")
        if rng and key not in ARGS.ignore_range:
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if not m or int(m.group(1)) >= size:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{sha256_of(full)}"')
        self.send_header("Content-Length", str(end - start + 1))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        if self.command == "HEAD":
            return
        with LOCK:
            drop = DROP.pop(key, None)  # only the first GET is dropped
            throttle = THROTTLE.pop(key, None)  # or throttled
        with open(full, "rb") as f:
            f.seek(start)
            data = bytearray(f.read(end - start + 1))
        if key in CORRUPT and start <= CORRUPT[key] <= end:
            data[CORRUPT[key] - start] ^= 0xFF
        sent = len(data) if drop is None else min(drop, len(data))
        if throttle is not None:
            sent = self.send_throttled(bytes(data[:sent]), throttle)
        else:
            self.wfile.write(bytes(data[:sent]))
            self.wfile.flush()
        if ARGS.log:
            with LOCK, open(ARGS.log, "a") as log:
                log.write(json.dumps({"path": key, "start": start, "sent": sent, "status": status}) + "\n")
        if drop is not None:
            self.close_connection = True
            self.connection.shutdown(2)

    def send_throttled(self, data, per_second):
        """Writes data at per_second bytes/s; returns the bytes sent before the client went away."""
        step = max(1, per_second // 10)
        for at in range(0, len(data), step):
            try:
                self.wfile.write(data[at:at + step])
                self.wfile.flush()
            except OSError:
                self.close_connection = True
                return at
            time.sleep(0.1)
        return len(data)


def main():
    server = ThreadingHTTPServer(("127.0.0.1", ARGS.port), Handler)
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
