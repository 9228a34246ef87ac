# Shared by deploy/local-test.sh, deploy/scale-bench.sh and tests/deploy/*: fathom replicas and
# an nginx built from the shipped configuration, all under one temporary folder ($WORK), all
# stopped on exit. Source it, then call deploy_init.
DEPLOY_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
declare -A REPLICA_PID REPLICA_PORT

deploy_init() {  # deploy_init NAME: $WORK, $FATHOM, cleanup trap
  FATHOM=${FATHOM_BIN:-$DEPLOY_DIR/../build/bin/fathom}
  [[ -x $FATHOM ]] || { echo "$1: no fathom binary at $FATHOM (set FATHOM_BIN)" >&2; exit 1; }
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/fathom-$1.XXXXXX")
  EXTRA_PIDS=""  # other processes to stop at exit (nginx, prometheus, clients)
  trap deploy_cleanup EXIT
}

deploy_cleanup() {
  local pid
  for pid in "${REPLICA_PID[@]}" $EXTRA_PIDS; do kill "$pid" 2>/dev/null || true; done
  for pid in "${REPLICA_PID[@]}" $EXTRA_PIDS; do wait "$pid" 2>/dev/null || true; done
  if [[ ${KEEP_WORK:-0} == 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}

die() { echo "FAIL: $*" >&2; exit 1; }

free_port() {  # a port nothing listens on now (the kernel's pick; free again when closed)
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_replica NAME PORT [serve options...]: starts `fathom serve` in the background on PORT
# (0 = any) and waits for its "listening" line; sets REPLICA_PORT[NAME] and REPLICA_PID[NAME].
# Its output goes to $WORK/NAME.<time>.log.
start_replica() {
  local name=$1 port=$2; shift 2
  local log
  log=$WORK/$name.$(date +%s%N).log  # a log per start: a restart must not read the last one's lines
  "$FATHOM" serve --port "$port" "$@" >>"$log" 2>&1 &
  REPLICA_PID[$name]=$!
  local i
  for ((i = 0; i < 200; i++)); do
    local line
    line=$(grep -o 'listening on http://[0-9.]*:[0-9]*' "$log" | tail -1 || true)
    if [[ -n $line ]]; then
      REPLICA_PORT[$name]=${line##*:}
      return 0
    fi
    kill -0 "${REPLICA_PID[$name]}" 2>/dev/null || { cat "$log" >&2; die "replica $name exited at start"; }
    sleep 0.05
  done
  die "replica $name did not listen within 10 s"
}

health_code() {  # the status of GET /health on PORT, 000 when the connection fails
  python3 - "$1" <<'PY'
import http.client, sys
try:
    c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
    c.request("GET", "/health"); print(c.getresponse().status)
except OSError:
    print("000")
PY
}

wait_healthy() {  # wait_healthy NAME: until /health answers 200 (30 s at most)
  local i
  for ((i = 0; i < 300; i++)); do
    [[ $(health_code "${REPLICA_PORT[$1]}") == 200 ]] && return 0
    sleep 0.1
  done
  die "replica $1 not healthy within 30 s"
}

metrics() { python3 -c 'import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())' "http://127.0.0.1:$1/metrics"; }

metric() {  # metric PORT SAMPLE: the value of one sample line (e.g. 'fathom_prompt_tokens_total')
  metrics "$1" | awk -v name="$2" '$1 == name { print $2; found = 1 } END { if (!found) print "absent" }'
}

# start_nginx PORT UPSTREAM_PORT...: nginx with deploy/nginx/fathom.conf, its two upstreams
# listing the given replicas, in $WORK/nginx (own prefix, pid, logs, temp paths; runs as the
# current user). Responses carry X-Upstream (the replica that answered) for the checks.
start_nginx() {
  local port=$1; shift
  local dir=$WORK/nginx servers="" p
  mkdir -p "$dir/logs" "$dir/tmp"
  for p in "$@"; do servers+="    server 127.0.0.1:$p max_fails=1 fail_timeout=2s;\n"; done
  # The shipped file with its replica list and listen port replaced, nothing else.
  awk -v servers="$servers" -v port="$port" -v proxy="$dir/fathom-proxy.conf" '
    /^upstream / { emitted = 0 }
    /^ *server 127\.0\.0\.1:808[0-9]/ { if (!emitted) printf "%s", servers; emitted = 1; next }
    /^ *listen 8080;/ { print "    listen 127.0.0.1:" port ";"; next }
    { gsub("/etc/nginx/fathom-proxy.conf", proxy); print }
  ' "$DEPLOY_DIR/nginx/fathom.conf" >"$dir/fathom.conf"
  cp "$DEPLOY_DIR/nginx/fathom-proxy.conf" "$dir/fathom-proxy.conf"
  cat >"$dir/nginx.conf" <<CONF
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log $dir/logs/access.log;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    add_header X-Upstream \$upstream_addr always;
    include $dir/fathom.conf;
    ${NGINX_EXTRA:-}
}
CONF
  [[ $(id -u) == 0 ]] && sed -i "1i user root;" "$dir/nginx.conf"
  local nginx_bin
  nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
  "$nginx_bin" -t -q -p "$dir" -c "$dir/nginx.conf" || die "nginx -t rejects the configuration ($dir)"
  "$nginx_bin" -p "$dir" -c "$dir/nginx.conf" -g 'daemon off;' 2>>"$dir/logs/error.log" &
  EXTRA_PIDS+=" $!"
  local i
  for ((i = 0; i < 100; i++)); do
    python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 1)' "$port" 2>/dev/null && return 0
    sleep 0.05
  done
  die "nginx did not listen on $port"
}
