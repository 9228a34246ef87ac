#!/usr/bin/env python3
"""Streaming clients for the deployment tests (standard library only).

load:          CONCURRENCY workers, each sending streaming /v1/completions one after the other
               until STOP_FILE exists; prints a JSON summary. A request succeeds when it answers
               200 and its stream is complete: every event is JSON without "error", the last
               choice has a finish_reason, and the stream ends with "data: [DONE]".
conversation:  for each conversation named, TURNS requests (X-Conversation-Id), each prompt the
               previous one plus a new turn; prints the replica (X-Upstream) that answered each turn.
"""
import argparse
import concurrent.futures
import http.client
import json
import os
import ssl
import sys
import threading
import time
import urllib.parse

WORDS = ("once upon a time there was a little robot who liked to count the stars over the sea "
         "and every night it wrote the numbers into a book that nobody else could read").split()


def stream_completion(url, prompt, max_tokens, headers, cafile=None):
    """One streaming request; returns (status, upstream, complete, n_chunks, error text)."""
    u = urllib.parse.urlsplit(url)
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=cafile)
        ctx.check_hostname = False  # the test certificate names localhost, the URL an address
        conn = http.client.HTTPSConnection(u.hostname, u.port, timeout=60, context=ctx)
    else:
        conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "stream": True, "temperature": 0})
    try:
        conn.request("POST", "/v1/completions", body,
                     {"Content-Type": "application/json", **headers})
        resp = conn.getresponse()
        upstream = resp.getheader("X-Upstream", "")
        data = resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as e:
        return 0, "", False, 0, f"{type(e).__name__}: {e}"
    finally:
        conn.close()
    if resp.status != 200:
        return resp.status, upstream, False, 0, data[:200]
    events = [line[6:] for line in data.split("\n") if line.startswith("data: ")]
    if not events or events[-1] != "[DONE]":
        return 200, upstream, False, len(events), "stream did not end with data: [DONE]"
    finish = None
    for e in events[:-1]:
        chunk = json.loads(e)
        if "error" in chunk:
            return 200, upstream, False, len(events), f"error event: {e[:200]}"
        for choice in chunk.get("choices", []):
            finish = choice.get("finish_reason") or finish
    if finish is None:
        return 200, upstream, False, len(events), "no finish_reason"
    return 200, upstream, True, len(events) - 1, ""


def run_load(args):
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    results, lock = [], threading.Lock()

    def worker(i):
        n = 0
        while not os.path.exists(args.stop_file):
            # A prompt of its own per request, so the prefix cache plays no part in the load.
            prompt = f"{i}-{n} " + " ".join(WORDS[(i + n) % len(WORDS):][:12])
            t0 = time.monotonic()
            r = stream_completion(args.url, prompt, args.max_tokens, headers)
            with lock:
                results.append((*r, time.monotonic() - t0))
            n += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    by_upstream = {}
    for r in results:
        by_upstream[r[1]] = by_upstream.get(r[1], 0) + 1
    failures = [r for r in results if not r[2]]
    json.dump({"requests": len(results), "failed": len(failures),
               "failures": [{"status": f[0], "upstream": f[1], "error": f[4]} for f in failures[:10]],
               "chunks": sum(r[3] for r in results), "by_upstream": by_upstream}, sys.stdout)
    print()


def run_conversation(args):
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}

    def one(conversation):  # its turns one after the other; conversations run side by side
        prompt, upstreams = "", []
        for turn in range(args.turns):
            prompt += f" user turn {turn}: " + " ".join(WORDS[turn:turn + 10]) + "\nassistant:"
            status, upstream, complete, _, error = stream_completion(
                args.url, prompt, args.max_tokens, {**headers, "X-Conversation-Id": conversation}, args.cafile)
            if not complete:
                return {"conversation": conversation, "error": f"turn {turn}: status {status}: {error}"}
            upstreams.append(upstream)
        return {"conversation": conversation, "upstreams": upstreams}

    with concurrent.futures.ThreadPoolExecutor(len(args.conversation)) as pool:
        out = list(pool.map(one, args.conversation))
    failed = [c for c in out if "error" in c]
    if failed:
        sys.exit(f"conversation {failed[0]['conversation']} {failed[0]['error']}")
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="mode", required=True)
    load = sub.add_parser("load")
    load.add_argument("--concurrency", type=int, default=64)
    load.add_argument("--stop-file", required=True)
    conv = sub.add_parser("conversation")
    conv.add_argument("--conversation", nargs="+", required=True)
    conv.add_argument("--turns", type=int, default=4)
    conv.add_argument("--cafile")
    for s in (load, conv):
        s.add_argument("--url", required=True)
        s.add_argument("--max-tokens", type=int, default=32)
        s.add_argument("--api-key")
    args = p.parse_args()
    run_load(args) if args.mode == "load" else run_conversation(args)


if __name__ == "__main__":
    main()
