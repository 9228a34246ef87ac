#!/usr/bin/env bash
# Two `fathom serve` replicas behind nginx with the shipped configuration (deploy/nginx), on a
# synth model, all on this machine:
#   1. 64 concurrent streaming requests, sent again and again through nginx (least_conn) while one
#      replica gets SIGTERM, drains (its /health stops answering 200), exits and starts again:
#      a rolling restart. Every request must succeed with a complete stream ([DONE]), and both
#      replicas, the restarted one included, must have served some.
#   2. Affinity: turns of one conversation (X-Conversation-Id) all reach one replica, and only
#      that replica's metrics move (requests, prompt tokens, prefix-cache hit rate).
#   3. The TLS example (fathom-tls.conf) with a self-signed certificate: a stream over HTTPS,
#      and plain HTTP redirected.
# usage: deploy/local-test.sh     (FATHOM_BIN=path/to/fathom; KEEP_WORK=1 keeps the temp folder)
set -euo pipefail
source "$(dirname "$0")/testing/lib.sh"
deploy_init local-test
CLIENT=$DEPLOY_DIR/testing/stream_load.py

"$FATHOM" synth --arch llama --preset tiny -o "$WORK/tiny.gguf" >"$WORK/synth.log" 2>&1 || die "synth: $(cat "$WORK/synth.log")"
serve_args() {  # the options of replica $1
  echo -m "$WORK/tiny.gguf" -t 1 --parallel 16 --max-queue 64 --shutdown-timeout 10 \
    --api-key test-key --audit-log "$WORK/audit-$1.jsonl"
}
start_replica a 0 $(serve_args a)
start_replica b 0 $(serve_args b)
wait_healthy a
wait_healthy b
A=${REPLICA_PORT[a]} B=${REPLICA_PORT[b]}

# The TLS example, its ports, certificate and include path replaced.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj /CN=localhost \
  -keyout "$WORK/privkey.pem" -out "$WORK/fullchain.pem" 2>/dev/null
TLS_PORT=$(free_port) REDIRECT_PORT=$(free_port) NGINX_PORT=$(free_port)
sed -e "s|listen 443 ssl http2;|listen 127.0.0.1:$TLS_PORT ssl http2;|" \
    -e "s|listen 80;|listen 127.0.0.1:$REDIRECT_PORT;|" \
    -e "s|/etc/ssl/fathom/|$WORK/|" \
    -e "s|/etc/nginx/fathom-proxy.conf|$WORK/nginx/fathom-proxy.conf|" \
    "$DEPLOY_DIR/nginx/fathom-tls.conf" >"$WORK/fathom-tls.conf"
NGINX_EXTRA="include $WORK/fathom-tls.conf;" start_nginx "$NGINX_PORT" "$A" "$B"
URL=http://127.0.0.1:$NGINX_PORT
COMPLETIONS_200='fathom_requests_total{route="/v1/completions",status="200"}'

echo "== rolling restart under 64 concurrent streams ($SECONDS s)"
python3 "$CLIENT" load --url "$URL" --api-key test-key --concurrency 64 --max-tokens 48 \
  --stop-file "$WORK/stop" >"$WORK/load.json" &
LOAD_PID=$!
EXTRA_PIDS+=" $LOAD_PID"
# /health of replica b, polled from before its SIGTERM until it exits: "start-time status" lines.
python3 - "${REPLICA_PID[b]}" "$B" >"$WORK/health-b.txt" <<'PY' &
import http.client, os, sys, time
pid, port = sys.argv[1], int(sys.argv[2])

def alive():
    # The replica may exit between any two reads of /proc: gone or a zombie both mean it exited.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return False

while alive():
    t = time.time()
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/health"); status = c.getresponse().status
    except OSError:
        status = "refused"
    print(f"{t:.3f} {status}", flush=True)
    time.sleep(0.02)
PY
POLL_PID=$!
EXTRA_PIDS+=" $POLL_PID"
sleep 1
[[ -s $WORK/health-b.txt ]] || sleep 1
kill -TERM "${REPLICA_PID[b]}"
t_term=$(date +%s.%N)
wait "${REPLICA_PID[b]}" || die "replica b exited with status $? after SIGTERM (expected 0)"
t_exit=$(date +%s.%N)
wait "$POLL_PID"
# Probes that began 0.1 s or more after the signal must not see 200.
drain_codes=$(awk -v t="$t_term" '$1 >= t + 0.1 { n[$2]++ } END { for (s in n) printf "%s x%d ", s, n[s] }' "$WORK/health-b.txt")
[[ -n $drain_codes ]] || drain_codes="(none: it exited within 0.1 s)"
[[ $(awk -v t="$t_term" '$1 < t && $2 == 200' "$WORK/health-b.txt") ]] || die "the /health poller saw no 200 before SIGTERM"
[[ $drain_codes != *"200 x"* ]] || die "replica b answered /health 200 while draining: $drain_codes"
start_replica b "$B" $(serve_args b)
wait_healthy b
t_ready=$(date +%s.%N)
# The load goes on until the restarted replica has served 16 streams of it.
for ((i = 0; i < 200; i++)); do
  n=$(metric "$B" "$COMPLETIONS_200")
  [[ $n != absent && $n -ge 16 ]] && break
  sleep 0.1
done
touch "$WORK/stop"
wait "$LOAD_PID"
python3 - "$WORK/load.json" "$A" "$B" <<'PY' || die "load: $(cat "$WORK/load.json")"
import json, sys
r = json.load(open(sys.argv[1]))
a, b = (f"127.0.0.1:{p}" for p in sys.argv[2:4])
retried = sum(n for u, n in r["by_upstream"].items() if "," in u)
print(f"requests {r['requests']}, failed {r['failed']}, SSE chunks {r['chunks']}, by replica {r['by_upstream']} "
      f"({retried} passed on by nginx to the other replica: X-Upstream lists both)")
assert r["failed"] == 0, r["failures"]
assert r["requests"] >= 64, "fewer requests than clients"
assert r["by_upstream"].get(a, 0) > 0 and r["by_upstream"].get(b, 0) > 0, "a replica served nothing"
PY
python3 -c 'import sys; t, e, r = map(float, sys.argv[1:]); print(f"restart: SIGTERM to exit (drain) {e - t:.2f} s, start to /health 200 {r - e:.2f} s, total {r - t:.2f} s")' \
  "$t_term" "$t_exit" "$t_ready"
echo "/health of the draining replica: $drain_codes (refused: its listener is closed, as readiness probes see it)"

echo "== affinity: one conversation, one replica ($SECONDS s)"
snapshot() {  # requests served, prompt tokens, prefix hit rate of replica port $1
  echo "$(metric "$1" "$COMPLETIONS_200") $(metric "$1" fathom_prompt_tokens_total) $(metric "$1" fathom_prefix_cache_hit_rate)"
}
before_a=$(snapshot "$A") before_b=$(snapshot "$B")
conv=$(python3 "$CLIENT" conversation --url "$URL" --api-key test-key --conversation conv-alpha --turns 4)
after_a=$(snapshot "$A") after_b=$(snapshot "$B")
python3 - "$conv" "$A" "$B" "$before_a" "$after_a" "$before_b" "$after_b" <<'PY' || die "affinity"
import json, sys
conv = json.loads(sys.argv[1])[0]
ports = sys.argv[2:4]
snaps = [[list(map(float, s.split())) for s in sys.argv[i:i + 2]] for i in (4, 6)]
ups = set(conv["upstreams"])
assert len(ups) == 1, f"turns spread over {ups}"
chosen = ports.index(ups.pop().split(":")[1])
(b0, a0), (b1, a1) = snaps[chosen], snaps[1 - chosen]
print(f"conv-alpha: 4 turns, all on replica {'ab'[chosen]}; its requests +{a0[0] - b0[0]:.0f}, prompt tokens "
      f"+{a0[1] - b0[1]:.0f}, prefix hit rate {b0[2]:.3f} -> {a0[2]:.3f}; the other replica: "
      f"requests +{a1[0] - b1[0]:.0f}, prompt tokens +{a1[1] - b1[1]:.0f}, hit rate {b1[2]:.3f} -> {a1[2]:.3f}")
assert a0[0] - b0[0] == 4 and a0[2] > b0[2], "the chosen replica's metrics did not move"
assert a1 == b1, "the other replica's metrics moved"
PY
# Sixteen more conversations: each stays on one replica, and the ring uses both.
python3 "$CLIENT" conversation --url "$URL" --api-key test-key --conversation $(seq -f conv-%g 1 16) \
  --turns 2 --max-tokens 4 >"$WORK/conversations.json" || die "16 conversations"
python3 - "$WORK/conversations.json" <<'PY' || die "16 conversations: $(cat "$WORK/conversations.json")"
import json, sys
convs = json.load(open(sys.argv[1]))
assert all(len(set(c["upstreams"])) == 1 for c in convs), "a conversation spread over replicas"
assert len({c["upstreams"][0] for c in convs}) == 2, "all conversations hashed to one replica"
PY
echo "16 conversations of 2 turns: each on one replica, both replicas used"

echo "== TLS termination (fathom-tls.conf, self-signed certificate) ($SECONDS s)"
python3 "$CLIENT" conversation --url "https://127.0.0.1:$TLS_PORT" --cafile "$WORK/fullchain.pem" \
  --api-key test-key --conversation tls --turns 1 >/dev/null || die "stream over TLS"
redirect=$(python3 -c 'import http.client, sys; c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1])); c.request("GET", "/v1/models"); r = c.getresponse(); print(r.status, r.getheader("Location"))' "$REDIRECT_PORT")
[[ $redirect == "308 https://"*/v1/models ]] || die "plain HTTP answered '$redirect', not a 308 to https"
echo "a stream over HTTPS completed; plain HTTP: $redirect"

# The audit log (what deploy/audit ships) bills each request to its key.
python3 - "$WORK"/audit-a.jsonl <<'PY' || die "audit log"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
assert lines and all(l["key"].startswith("key-") and l["completion_tokens"] >= 0 and l["prompt_tokens"] > 0
                     for l in lines if l["status"] == 200), lines[:3]
print(f"audit log of replica a: {len(lines)} JSON lines, each with key, prompt_tokens, completion_tokens")
PY
echo "local-test: PASS in $SECONDS s"
